#!/bin/bash
# The README's quick start on a machine without libvirt and QEMU, whatever this machine has:
#
#   npm ci && node dist/cli/main.cjs --simulate win11 prepare --root fixtures/hosts/workstation
#   npm test
#
# run in a fresh clone, in a private mount namespace where every file of the installed libvirt and
# QEMU packages (and libvirt's runtime folders) is gone: overlay mounts over the folders that hold
# them, with a whiteout for each. A whiteout makes a path absent (ENOENT), as on a machine where the
# packages were never installed, not merely empty. Nothing outside the namespace changes.
#
# Tests the working tree as it is (in CI: the commit), so that a bug can be reintroduced by hand to
# see this fail. Needs root (mounts). Takes a few minutes: most of it is npm test.
set -euo pipefail

if [ "${1:-}" = --inside ]; then
    work=$2
    clone=$work/clone

    # Hide: every non-folder file of the libvirt/QEMU packages, every folder of theirs named for
    # libvirt or QEMU (whole), and libvirt's runtime folders.
    mapfile -t pkgs < <(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 2>/dev/null |
        awk '$1 ~ /^.i/ && $2 ~ /libvirt|qemu/ { print $2 }')
    declare -A physical=()
    {
        for p in "${pkgs[@]}"; do dpkg -L "$p"; done | while IFS= read -r f; do
            [ -e "$f" ] || [ -L "$f" ] || continue
            if [ -d "$f" ] && [ ! -L "$f" ]; then
                case ${f##*/} in *libvirt*|*qemu*) ;; *) continue ;; esac
            fi
            # The physical path (/lib is /usr/lib on a merged-/usr system).
            d=${f%/*}
            [ -n "${physical[$d]:-}" ] || physical[$d]=$(readlink -f "${d:-/}")
            echo "${physical[$d]%/}/${f##*/}"
        done
        for d in /etc/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /run/libvirt /usr/include/libvirt; do
            if [ -e "$d" ]; then echo "$d"; fi
        done
    } | sort -u | awk '
        # Drop what lies below a path already hidden (a whiteout hides the whole folder).
        { n = split($0, part, "/"); p = ""; below = 0
          for (i = 2; i < n; i++) { p = p "/" part[i]; if (p in hidden) { below = 1; break } }
          if (!below) { hidden[$0] = 1; print } }' >"$work/hidden"

    # One overlay per top-level folder that holds something to hide; mounts below it are carried over.
    for top in $(cut -d/ -f2 "$work/hidden" | sort -u); do
        ov=$work/overlay/$top
        mkdir -p "$ov/upper" "$ov/work" "$ov/keep"
        grep "^/$top/" "$work/hidden" | while IFS= read -r f; do
            mkdir -p "$ov/upper$(dirname "${f#/"$top"}")"
            mknod "$ov/upper${f#/"$top"}" c 0 0
        done
        mapfile -t sub < <(awk -v t="/$top/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo)
        for i in "${!sub[@]}"; do
            touch "$ov/keep/$i"
            [ -d "${sub[$i]}" ] && { rm "$ov/keep/$i"; mkdir "$ov/keep/$i"; }
            mount --bind "${sub[$i]}" "$ov/keep/$i"
        done
        mount -t overlay overlay -o "lowerdir=/$top,upperdir=$ov/upper,workdir=$ov/work" "/$top"
        for i in "${!sub[@]}"; do mount --move "$ov/keep/$i" "${sub[$i]}"; done
    done

    # Prove they are gone before trusting the result.
    fail() { echo "bare-quickstart: $* is still visible: the environment is not bare" >&2; exit 1; }
    hash -r
    for prog in virsh libvirtd virtqemud qemu-system-x86_64 qemu-img; do
        if command -v "$prog" >/dev/null; then fail "$prog ($(command -v "$prog"))"; fi
    done
    if pkg-config --exists libvirt 2>/dev/null; then fail "pkg-config's libvirt"; fi
    [ ! -e /etc/libvirt ] || fail /etc/libvirt
    # The loader's cache still names libvirt.so: each path it names must be gone.
    left=$( { ldconfig -p 2>/dev/null | awk '/libvirt/ { print $NF }'
              find /usr/lib /usr/lib/*-linux-gnu /usr/lib64 -maxdepth 1 -name 'libvirt*.so*' 2>/dev/null; } |
            while IFS= read -r f; do if [ -e "$f" ]; then echo "$f"; fi; done | head -1)
    [ ! -e /usr/include/libvirt ] || fail /usr/include/libvirt
    [ -z "$left" ] || fail "$left"
    echo "bare-quickstart: hidden $(wc -l <"$work/hidden") paths of ${#pkgs[@]} packages; no virsh, QEMU, libvirt.pc, libvirt.so or /etc/libvirt"

    cd "$clone"
    # As a new user runs it: no CI switches that turn a skipped e2e test into a failure.
    unset QEMU_HOOK_E2E CI
    set -x
    npm ci --no-audit --no-fund && node dist/cli/main.cjs --simulate win11 prepare --root fixtures/hosts/workstation
    npm test
    set +x
    # The binding needs libvirt's headers: built here, it would mean libvirt was not hidden.
    if [ -e native/build/Release/qemu_hook_libvirt.node ]; then fail "the libvirt binding (it was built)"; fi
    echo "bare-quickstart: the README's quick start passed without libvirt and QEMU"
    exit 0
fi

[ "$(id -u)" = 0 ] || { echo "bare-quickstart: needs root (mount namespaces)" >&2; exit 2; }
src=$(cd "$(dirname "$0")/.." && pwd)
# The overlays' upper layers live here: not on an overlay file system itself (TMPDIR to move it).
work=$(mktemp -d "${TMPDIR:-/tmp}/qemu-hook-bare.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The working tree as it is (committed or not, untracked files too, .gitignore respected), as a
# commit made through a private index: the real index and the branch are left alone.
cp "$(git -C "$src" rev-parse --path-format=absolute --git-path index)" "$work/index" 2>/dev/null || true
GIT_INDEX_FILE=$work/index git -C "$src" add -A
tree=$(GIT_INDEX_FILE=$work/index git -C "$src" write-tree)
rev=$(git -C "$src" commit-tree "$tree" -p HEAD -m 'bare-quickstart: the working tree')
# --shared: the clone borrows the objects, so that commit (referenced by nothing) is there too.
git clone -q --shared --no-checkout "$src" "$work/clone"
git -C "$work/clone" -c advice.detachedHead=false checkout -q --detach "$rev"
echo "bare-quickstart: the working tree of $(git -C "$src" rev-parse --short HEAD), in $work/clone"
unshare --mount --propagation private -- "$0" --inside "$work"
