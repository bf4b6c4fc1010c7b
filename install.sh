#!/bin/sh
# Install qemu-hook as libvirt's qemu hook.
#
#   sudo ./install.sh                 build and install (program, `qemu-hook` command, the hook)
#   sudo ./install.sh --uninstall     remove it and put back the hook that was there before
#   options: --prefix DIR   where the program goes (default /usr/local/lib/qemu-hook)
#            --root DIR     install into DIR as if it were /; the hook installed so reads every
#                           host path below DIR at run time and moves only the fixture's driver
#                           links (how the tests give a real libvirtd a fixture host)
#            --no-build     use the checkout as it is (npm ci and the build already done)
#            --no-resident  no resident hook (qemu-hook.socket/.service): Node starts at every event
#   NODE=/path/to/node ./install.sh   the Node.js the hook runs (default: node on PATH); it must be
#            root's: owned by root, in folders only root can write
#
# Idempotent. Never overwrites a config; keeps (and still runs) a foreign hook, except a
# VFIO-Tools-style dispatcher, which qemu-hook replaces (it runs qemu.d/<vm>/<op>/<subop> itself).
set -eu
# Modes are set explicitly below; this only covers what a tool creates on its own.
umask 022

PREFIX=/usr/local/lib/qemu-hook
ROOT=/
BUILD=1
RESIDENT=1
ACTION=install
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) PREFIX=${2:?--prefix needs a folder}; shift 2 ;;
        --prefix=*) PREFIX=${1#*=}; shift ;;
        --root) ROOT=${2:?--root needs a folder}; shift 2 ;;
        --root=*) ROOT=${1#*=}; shift ;;
        --no-build) BUILD=; shift ;;
        --no-resident) RESIDENT=; shift ;;
        --uninstall) ACTION=uninstall; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf 'qemu-hook install: %s\n' "$*"; }
die() { printf 'qemu-hook install: %s\n' "$*" >&2; exit 1; }

SRC=$(cd "$(dirname "$0")" && pwd)
case $ROOT in /*) ;; *) ROOT=$(cd "$ROOT" && pwd) ;; esac
R=${ROOT%/}
DEST=$R$PREFIX
BIN=$R/usr/local/bin/qemu-hook
HOOKS=$R/etc/libvirt/hooks
HOOK=$HOOKS/qemu
SAVED=$HOOKS/qemu.before-qemu-hook       # a foreign hook we chain to
REPLACED=$HOOKS/qemu.vfio-tools.bak      # a dispatcher we replaced
CONFIG=$R/etc/qemu-hook/config.yaml

[ "$(id -u)" = 0 ] || [ "$R" != "" ] || die "run as root (sudo ./install.sh): it writes to /etc/libvirt/hooks and $PREFIX"

family() {
    if [ -r /etc/os-release ]; then
        . /etc/os-release
        case " ${ID:-} ${ID_LIKE:-} " in
            *" debian "*|*" ubuntu "*) echo debian; return ;;
            *" fedora "*|*" rhel "*|*" centos "*) echo fedora; return ;;
            *" arch "*) echo arch; return ;;
            *" suse "*|*" opensuse "*) echo suse; return ;;
        esac
    fi
    echo other
}

hint() {   # $1 = what is missing: node | build
    case $(family) in
        debian) [ "$1" = node ] && echo "install Node.js >= 20 (e.g. from NodeSource; Debian 12's nodejs is 18)" \
                || echo "apt-get install libvirt-dev pkg-config g++ make python3" ;;
        fedora) [ "$1" = node ] && echo "dnf install nodejs (>= 20)" || echo "dnf install libvirt-devel pkgconf gcc-c++ make python3" ;;
        arch)   [ "$1" = node ] && echo "pacman -S nodejs npm" || echo "pacman -S libvirt base-devel python" ;;
        suse)   [ "$1" = node ] && echo "zypper install nodejs20" || echo "zypper install libvirt-devel pkg-config gcc-c++ make python3" ;;
        *)      [ "$1" = node ] && echo "install Node.js >= 20" || echo "install libvirt's development files, pkg-config, a C++ compiler, make and python3" ;;
    esac
}

# The VFIO-Tools hook helper (and its many copies) only runs qemu.d/<vm>/<op>/<subop>: qemu-hook
# does that itself, so chaining it would run every per-VM script twice. Recognised by shape: every
# line that is not a comment is one of the dispatcher's own.
is_dispatcher() {
    grep -q 'qemu\.d/\$GUEST_NAME/\$HOOK_NAME/\$STATE_NAME' "$1" || return 1
    ! sed -e 's/^[[:space:]]*//' -e '/^#/d' -e '/^$/d' "$1" | grep -Ev \
        '^(GUEST_NAME|HOOK_NAME|STATE_NAME|MISC|BASEDIR|HOOKPATH)=|^set -e|^(if|elif|else|fi|then|while|do|done)\b|^eval |^done <<<|^#!' \
        | grep -q .
}

# Octal mode (stat -c %a) with group or other write permission.
writable_by_others() { [ $(( 0$1 & 022 )) -ne 0 ]; }

# Folders and files that decide what the hook does as root (config, state, logs): root's and not
# writable by others. A wrong mode is fixed (and said); a wrong owner is refused with the fix.
# Under --root, the owner of the root folder stands for root.
check_trusted() {
    want=0
    [ "$R" = "" ] || want=$(stat -c %u "$ROOT")
    for p in "$@"; do
        [ -e "$p" ] || continue
        owner=$(stat -c %u "$p") mode=$(stat -c %a "$p")
        if [ "$owner" != "$want" ]; then
            die "$p is owned by uid $owner, not root: the hook would refuse it; check what is in it, then run: chown root:root $p"
        fi
        if writable_by_others "$mode"; then
            chmod go-w "$p"
            say "$p was writable by group or others (mode $mode): made it $(stat -c %a "$p")"
        fi
    done
}

is_ours() { grep -q 'qemu-hook:program' "$1" 2>/dev/null; }

reload_libvirt() {
    if [ "$R" != "" ]; then say "installed below $ROOT: no libvirt daemon reloaded"; return; fi
    for d in virtqemud libvirtd; do
        pids=$(pidof "$d" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            kill -HUP $pids && say "sent SIGHUP to $d so it sees the hook"
            return
        fi
    done
    say "no libvirt daemon running: it will see the hook when it starts"
}

uninstall() {
    uninstall_resident
    if [ -f "$HOOK" ] && is_ours "$HOOK"; then
        if [ -f "$SAVED" ]; then mv -f "$SAVED" "$HOOK"; say "restored the previous hook to $HOOK"
        elif [ -f "$REPLACED" ]; then mv -f "$REPLACED" "$HOOK"; say "restored the VFIO-Tools dispatcher to $HOOK"
        else rm -f "$HOOK"; say "removed $HOOK"
        fi
    else
        say "$HOOK is not qemu-hook's: left alone"
    fi
    if [ -L "$BIN" ] || [ -f "$BIN" ]; then rm -f "$BIN"; fi
    rm -rf "$DEST"
    say "removed $DEST; kept $CONFIG and the state in $R/var/lib/qemu-hook (delete them by hand if you want)"
    reload_libvirt
}

# The hook runs this node as root on every VM event: whoever can replace it owns the host.
check_node() {
    NODE=${NODE:-$(command -v node || true)}
    [ -n "$NODE" ] || die "Node.js not found: $(hint node)"
    NODE=$(readlink -f "$NODE")
    d=$NODE
    while :; do
        owner=$(stat -c %u "$d") mode=$(stat -c %a "$d")
        if [ "$owner" != 0 ] || writable_by_others "$mode"; then
            die "refusing $NODE: $d is owned by uid $owner (mode $mode); the hook runs this node as root, so it must be root's and in folders only root can write. Install Node.js as root (your distribution's or NodeSource's package) and run: sudo NODE=/usr/bin/node ./install.sh"
        fi
        [ "$d" = / ] && break
        d=$(dirname "$d")
    done
    major=$("$NODE" -p 'process.versions.node.split(".")[0]')
    [ "$major" -ge 20 ] || die "Node.js $("$NODE" --version) is too old (need >= 20): $(hint node)"
}

build() {
    [ -n "$BUILD" ] || { [ -f "$SRC/dist/qemu-hook.cjs" ] || die "--no-build, but $SRC/dist is missing: run npm ci first"; return; }
    command -v npm >/dev/null || die "npm not found: $(hint node)"
    if ! pkg-config --exists libvirt 2>/dev/null || ! command -v c++ >/dev/null; then
        die "building the libvirt binding needs libvirt's development files and a compiler: $(hint build)"
    fi
    say "npm ci (builds the libvirt binding and the program)"
    (cd "$SRC" && npm ci --no-audit --no-fund >/dev/null)
}

# Production files only: dist/ is one bundle with its dependencies inside (scripts/build.mjs),
# plus the libvirt binding, the hook and the example config.
copy_program() {
    [ -f "$SRC/native/build/Release/qemu_hook_libvirt.node" ] || die "the libvirt binding was not built: $(hint build), then npm ci"
    [ -f "$SRC/dist/qemu-hook.cjs" ] || die "$SRC/dist is incomplete: run npm ci (or npm run build)"
    mkdir -p "${DEST%/*}"
    stage=$(mktemp -d "${DEST%/*}/.qemu-hook.XXXXXX")
    # -L: a link in the checkout is copied as the file it points to, never as a link to follow later.
    cp -RL "$SRC/dist" "$SRC/hooks" "$SRC/package.json" "$stage/"
    install -d -m 755 "$stage/native" "$stage/native/build" "$stage/native/build/Release" "$stage/examples"
    install -m 644 "$SRC/native/build/Release/qemu_hook_libvirt.node" "$stage/native/build/Release/"
    client=native/build/Release/qemu-hook-client
    if [ -f "$SRC/$client" ]; then install -m 755 "$SRC/$client" "$stage/$client"; fi
    install -m 644 "$SRC/examples/config.yaml" "$stage/examples/"
    # Modes said, not left to the umask or the checkout: folders 755, files 644, the hook 755.
    find "$stage" -type d -exec chmod 755 {} +
    find "$stage" -type f -exec chmod 644 {} +
    chmod 755 "$stage/hooks/qemu"
    if [ -f "$stage/$client" ]; then chmod 755 "$stage/$client"; fi
    # Swap in the new tree in one rename; the old one goes only after.
    rm -rf "$DEST.old"
    if [ -e "$DEST" ]; then mv "$DEST" "$DEST.old"; fi
    mv "$stage" "$DEST"
    rm -rf "$DEST.old"
}

# The hook's startup snapshot fits one node binary on one CPU (see hooks/qemu). The build's is kept
# when it fits the node installed for and this CPU; otherwise it is made again here, with that node.
# Where the checkout has the fixture hosts, the snapshot's warm-up (src/cli/snapshot.ts) runs a
# start and a stop on copies of those scripts/snapshot-warmup.mjs names (QEMU_HOOK_ROOT is the
# copy: nothing of this host is read or touched), so that their functions are compiled into it, as
# in the build's; otherwise they compile at their first use. Without a snapshot, the hook starts from the code cache.
fit_snapshot() {
    d=$DEST/dist
    [ -f "$d/qemu-hook-snapshot.cjs" ] || return 0
    want="$(stat -L -c '%s %Y' "$NODE")
$(grep -m1 '^flags' /proc/cpuinfo)"
    if [ -f "$d/qemu-hook.blob" ] && [ "$(cat "$d/qemu-hook.blob.node" 2>/dev/null)" = "$want" ]; then return 0; fi
    rm -f "$d/qemu-hook.blob" "$d/qemu-hook.blob.node"
    warm=$(mktemp -d 2>/dev/null) || warm=
    list=
    if [ -n "$warm" ] && [ -d "$SRC/fixtures/hosts" ]; then
        list=$("$NODE" "$SRC/scripts/snapshot-warmup.mjs" copy "$SRC/fixtures/hosts" "$warm" 2>/dev/null) || list=
    fi
    how=
    if [ -n "$list" ] && make_snapshot "$d" "$list" \
        && "$NODE" "$SRC/scripts/snapshot-warmup.mjs" check "$warm" 2>/dev/null; then
        how=" (warmed up on copies of fixtures/hosts)"
    elif ! make_snapshot "$d" ""; then
        how=failed
    fi
    [ -n "$warm" ] && rm -rf "$warm"
    if [ "$how" = failed ]; then
        rm -f "$d/qemu-hook.blob"
        say "could not make the hook's startup snapshot: it starts from the code cache"
        return 0
    fi
    printf '%s\n' "$want" >"$d/qemu-hook.blob.node"
    say "made the hook's startup snapshot for $NODE on this CPU$how"
}

make_snapshot() {  # $1 = dist folder, $2 = warm-up list (domain@root,…) or empty
    rm -f "$1/qemu-hook.blob"
    (cd "$1" && QEMU_HOOK_SNAPSHOT_WARMUP=$2 "$NODE" --snapshot-blob qemu-hook.blob --build-snapshot qemu-hook-snapshot.cjs) </dev/null >/dev/null 2>&1
}

install_command() {
    mkdir -p "${BIN%/*}"
    tmp=$BIN.tmp.$$
    rm -f "$tmp"
    printf '#!/bin/sh\nexec %s %s/dist/cli/main.cjs "$@"\n' "$NODE" "$DEST" >"$tmp"
    chmod 755 "$tmp" && mv -f "$tmp" "$BIN"
}

install_hook() {
    mkdir -p "$HOOKS"
    chain=
    if [ -f "$HOOK" ] && ! is_ours "$HOOK"; then
        if is_dispatcher "$HOOK"; then
            cp -p "$HOOK" "$REPLACED"
            say "replaced a VFIO-Tools-style dispatcher (kept as $REPLACED): qemu-hook runs qemu.d/<vm>/<op>/<subop> scripts itself"
        else
            mv -f "$HOOK" "$SAVED"
            say "kept the existing hook as $SAVED; qemu-hook runs it first on every event"
        fi
    fi
    if [ -x "$SAVED" ]; then chain=$SAVED; fi
    program=$DEST
    tmp=$HOOK.tmp.$$
    rm -f "$tmp"
    sed -e "s|^NODE=.*# qemu-hook:node|NODE='$NODE'                      # qemu-hook:node|" \
        -e "s|^PROGRAM=.*# qemu-hook:program|PROGRAM='$program'        # qemu-hook:program|" \
        -e "s|^ROOT=.*# qemu-hook:root|ROOT='$ROOT'                                  # qemu-hook:root|" \
        -e "s|^CHAIN=.*# qemu-hook:chain|CHAIN='$chain'                                  # qemu-hook:chain|" \
        "$SRC/hooks/qemu" >"$tmp"
    chmod 755 "$tmp" && mv -f "$tmp" "$HOOK"
    mkdir -p "$HOOKS/qemu.d"
    say "hook installed: $HOOK"
}

# Before anything is written: nothing half-done when an existing folder is refused.
check_folders() {
    check_trusted "$HOOKS" "$HOOKS/qemu.d" "${CONFIG%/*}" "$CONFIG" "${CONFIG%/*}/fault-injection" \
        "$R/var/lib/qemu-hook" "$R/var/log/libvirt" "$R/var/log/qemu-hook"
}

install_config() {
    install -d -m 755 "${CONFIG%/*}" "$R/var/lib/qemu-hook"
    if [ -f "$CONFIG" ]; then say "kept the existing $CONFIG"; return; fi
    install -m 644 "$SRC/examples/config.yaml" "$CONFIG"
    say "created $CONFIG from the example: name your VMs and devices there, then run qemu-hook check"
}

check_mac() {
    [ "$R" = "" ] || return 0
    if command -v getenforce >/dev/null 2>&1 && [ "$(getenforce 2>/dev/null)" = Enforcing ]; then
        say "SELinux is enforcing: hooks are confined unless you run: setsebool -P virt_hooks_unconfined on"
    fi
}

# --- the resident hook: qemu-hook.socket and qemu-hook.service ----------------------------------
# The hook front hands events to `qemu-hook serve` through the socket when it is there (a worker
# with Node already started runs them), else starts Node itself: the units are an optimisation the
# hook never depends on. Started only on this host's own systemd (not under --root).
UNITS=$R/etc/systemd/system
SOCKET_PATH=$R/run/qemu-hook/hook.sock

service_unit() {
    cat <<EOF
# qemu-hook's resident hook; installed by qemu-hook's install.sh (removed by install.sh --uninstall).
[Unit]
Description=qemu-hook resident hook (answers libvirt's hook events without starting Node.js each time)
Documentation=man:qemu-hook(8)
Requires=qemu-hook.socket
After=qemu-hook.socket
Before=libvirtd.service virtqemud.service

[Service]
Type=simple
Environment=QEMU_HOOK_ROOT=$ROOT
ExecStart=$NODE $DEST/dist/cli/main.cjs serve
# Only the server is stopped: a worker in the middle of an event finishes it (its own process).
KillMode=process
Restart=on-failure
RestartSec=2s

[Install]
WantedBy=multi-user.target
EOF
}

socket_unit() {
    cat <<EOF
# qemu-hook's resident hook; installed by qemu-hook's install.sh (removed by install.sh --uninstall).
[Unit]
Description=qemu-hook resident hook socket

[Socket]
ListenStream=$SOCKET_PATH
SocketUser=root
SocketMode=0600
DirectoryMode=0700
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
EOF
}

host_systemd() { [ "$R" = "" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

install_resident() {
    if [ -z "$RESIDENT" ]; then uninstall_resident; say "--no-resident: Node.js starts at every hook event"; return; fi
    if [ ! -x "$DEST/native/build/Release/qemu-hook-client" ]; then
        say "no resident hook: the hook client was not built (it is built with the libvirt binding: npm ci)"
        return
    fi
    put "$UNITS/qemu-hook.service" service_unit
    put "$UNITS/qemu-hook.socket" socket_unit
    if ! host_systemd; then
        if [ "$R" != "" ]; then why="installed below $ROOT"; else why="no systemd here"; fi
        say "wrote $UNITS/qemu-hook.socket and .service, not started ($why): Node.js starts at every hook event"
        return
    fi
    systemctl daemon-reload
    # A running server still has the program that was there before: start it anew.
    systemctl stop qemu-hook.service >/dev/null 2>&1 || true
    if systemctl enable qemu-hook.socket qemu-hook.service >/dev/null 2>&1 \
        && systemctl restart qemu-hook.socket && systemctl start qemu-hook.service; then
        say "resident hook running (qemu-hook.service on $SOCKET_PATH): events no longer wait for Node.js to start"
    else
        say "could not start qemu-hook.service (see journalctl -u qemu-hook): the hook starts Node.js at every event"
    fi
}

uninstall_resident() {
    if host_systemd && [ -f "$UNITS/qemu-hook.socket" ]; then
        systemctl disable --now qemu-hook.service qemu-hook.socket >/dev/null 2>&1 || true
    fi
    if [ -f "$UNITS/qemu-hook.socket" ] || [ -f "$UNITS/qemu-hook.service" ]; then
        rm -f "$UNITS/qemu-hook.socket" "$UNITS/qemu-hook.service"
        if host_systemd; then systemctl daemon-reload; fi
        say "removed the resident hook's units"
    fi
}

# --- qemu-hook:extras: shell completion, man page, README, logrotate rule -----------------------
# The completions and the man page are made by the installed program from its own --help tables
# (qemu-hook completion bash|zsh, qemu-hook man), so they always match the program installed.
# The README goes to a fixed place: the program's error messages point there for the config
# reference, whatever --prefix was.
DOC_DIR=$R/usr/local/share/doc/qemu-hook
BASH_COMPLETION=$R/usr/local/share/bash-completion/completions/qemu-hook
ZSH_COMPLETION=$R/usr/local/share/zsh/site-functions/_qemu-hook
MAN_PAGE=$R/usr/local/share/man/man8/qemu-hook.8
LOGROTATE=$R/etc/logrotate.d/qemu-hook

# put FILE COMMAND...: COMMAND's output becomes FILE (mode 644) through a temporary file beside
# it, and only when COMMAND succeeds: never an empty or half-written file in place.
put() {
    target=$1; shift
    mkdir -p "${target%/*}"
    if "$@" >"$target.tmp.$$" && chmod 644 "$target.tmp.$$" && mv -f "$target.tmp.$$" "$target"; then
        return 0
    fi
    rm -f "$target.tmp.$$"
    die "could not write $target"
}

logrotate_rule() {
    cat <<EOF
# qemu-hook's logs; installed by qemu-hook's install.sh (removed by install.sh --uninstall).
$R/var/log/libvirt/qemu-hook*.log {
    weekly
    maxsize 20M
    rotate 8
    compress
    delaycompress
    missingok
    notifempty
    create
}
EOF
}

install_extras() {
    put "$BASH_COMPLETION" "$NODE" "$DEST/dist/cli/main.cjs" completion bash
    put "$ZSH_COMPLETION" "$NODE" "$DEST/dist/cli/main.cjs" completion zsh
    put "$MAN_PAGE" "$NODE" "$DEST/dist/cli/main.cjs" man
    # A checkout without its README (a trimmed copy) still installs; the program then points at a
    # file that is not there, so say so.
    if [ -f "$SRC/README.md" ]; then put "$DOC_DIR/README.md" cat "$SRC/README.md"
    else say "no README.md in $SRC: $DOC_DIR/README.md not installed"; fi
    # Every hook run opens the log anew (O_APPEND) and closes it when it exits; nothing holds it
    # open for long, so a plain rename is safe: the next event creates a new file. copytruncate
    # could lose the lines written between its copy and its truncate, and there is no daemon to
    # signal. `qemu-hook log --follow` moves on to the new file.
    put "$LOGROTATE" logrotate_rule
    say "installed bash and zsh completion, qemu-hook(8), $DOC_DIR/README.md and $LOGROTATE"
}

uninstall_extras() {
    rm -f "$BASH_COMPLETION" "$ZSH_COMPLETION" "$MAN_PAGE" "$LOGROTATE" "$DOC_DIR/README.md"
    rmdir "$DOC_DIR" 2>/dev/null || true
}
# --- end of qemu-hook:extras ---------------------------------------------------------------------

if [ "$ACTION" = uninstall ]; then uninstall; uninstall_extras; exit 0; fi
check_node
check_folders
build
copy_program
fit_snapshot
install_command
install_hook
install_config
install_extras
install_resident
check_mac
reload_libvirt
say "done: try qemu-hook devices, then qemu-hook --simulate <vm> prepare"
