#!/bin/bash
# Builds the passthrough lab's guest from Debian packages (see test/lab/README.md).
#
#   lab.sh prepare   install the host tools the lab needs (root), apt-get download the kernel and
#                    busybox-static into the cache, unpack what the guest uses
#   lab.sh build     assemble the initramfs images (L1: busybox, kernel modules, the host's own
#                    node binary, libvirtd/virsh/qemu with the firmware the nested guest boots:
#                    SeaBIOS and iPXE's e1000e ROM, the project checkout, test/lab/guest/*),
#                    skipped when the hash of every input is unchanged;
#                    and the hand-over stage's image: L1's plus an overlay (systemd, dbus, bochs,
#                    test/lab/handover/*), see test/lab/handover/README.md
#   lab.sh inputs    print what the build hash covers
#
# env: LAB_CACHE (default <repo>/.cache/lab), LAB_NODE (default: node on PATH)
# exit: 0 ok; 3 a prerequisite is missing or could not be fetched (run-lab.mjs skips, or fails in
#       CI); anything else: the build itself failed.
# Runs nothing in a guest and writes nothing under the host's /sys.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${LAB_CACHE:-$REPO/.cache/lab}
NODE_BIN=$(readlink -f "${LAB_NODE:-$(command -v node)}")
NODE_PATH_AS_RUN=${LAB_NODE:-$(command -v node)}
DEBS=$CACHE/debs KPKG=$CACHE/kernel BB=$CACHE/busybox OUT=$CACHE/out
L1=$CACHE/stage-l1
# pci-stub: check 5a parks the edu on a driver the kernel would not pick for it.
L1_MODULES="e1000e e1000 8139cp pci-stub vfio-pci vfio_iommu_type1"
LIBVIRT_DRIVERS=/usr/lib/x86_64-linux-gnu/libvirt/connection-driver
# firmware the nested QEMU loads: SeaBIOS and its vapic ROM; the L2 domain's network boot ROM
QEMU_FILES="/usr/share/seabios/bios-256k.bin /usr/share/qemu/kvmvapic.bin"
IPXE_ROM=/usr/lib/ipxe/qemu/pxe-e1000e.rom
# The hand-over stage (test/lab/handover): systemd as PID 1 with a D-Bus system bus (logind), from
# Debian's packages, unpacked into an overlay; the host provides the remaining libraries (ldd).
HO_DEBS="systemd systemd-sysv libsystemd-shared libsystemd0 libip4tc2 libkmod2 libseccomp2 dbus dbus-daemon dbus-bin dbus-system-bus-common libdbus-1-3 libexpat1 libapparmor1"
HO_MODULES="bochs vfio-pci vfio_iommu_type1"
HO_ROOT=$CACHE/handover-root HO=$CACHE/stage-handover
OVMF_CODE=/usr/share/OVMF/OVMF_CODE.fd OVMF_VARS=/usr/share/OVMF/OVMF_VARS.fd

log() { printf '[lab.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
missing() { log "missing prerequisite: $*"; exit 3; }

kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
deb_version() { dpkg-deb -f "$1" Version; }

# ------------------------------------------------------------------------------------------- prepare
prepare() {
    [ "$(id -u)" = 0 ] || missing "root (apt-get and the guest's libvirtd setup need it)"
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || missing "a Debian-family host (apt-get, dpkg-deb)"
    local need=()
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    [ -x /usr/sbin/libvirtd ] || need+=(libvirt-daemon)
    [ -e "$LIBVIRT_DRIVERS/libvirt_driver_qemu.so" ] || need+=(libvirt-daemon-driver-qemu)
    command -v virsh >/dev/null || need+=(libvirt-clients)
    command -v cpio >/dev/null || need+=(cpio)
    command -v xz >/dev/null || need+=(xz-utils)
    [ -e "$OVMF_CODE" ] && [ -e "$OVMF_VARS" ] || need+=(ovmf)
    [ -e "$IPXE_ROM" ] || need+=(ipxe-qemu)
    command -v gcc >/dev/null && [ -e /usr/include/linux/kd.h ] || need+=(gcc libc6-dev)
    local pkg; pkg=$(kernel_pkg)
    if [ -z "$pkg" ] || [ ${#need[@]} -gt 0 ]; then apt-get update -qq || missing "apt-get update failed"; pkg=$(kernel_pkg); fi
    if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
            || missing "apt-get install ${need[*]} failed"
    fi
    [ -n "$pkg" ] || missing "apt cannot resolve linux-image-amd64"
    mkdir -p "$DEBS"
    # keep exactly one version of each package: a new kernel in the archive means a new cache;
    # what is missing comes in one apt-get download
    local want fetch=() name ver
    local -A candidate=()   # one apt-cache call: each takes seconds on a loaded machine
    while read -r name ver; do candidate[$name]=$ver; done < <(apt-cache policy "$pkg" busybox-static $HO_DEBS | awk '/^[^ ]/{sub(/:$/, "", $1); p=$1} /Candidate:/{print p, $2}')
    for want in "$pkg" busybox-static $HO_DEBS; do
        ver=${candidate[$want]:-}
        local have; have=$(ls "$DEBS/${want}_"*.deb 2>/dev/null | head -1 || true)
        if [ -n "$have" ] && [ "$(deb_version "$have")" = "$ver" ]; then continue; fi
        rm -f "$DEBS/${want}_"*.deb
        fetch+=("$want")
    done
    if [ ${#fetch[@]} -gt 0 ]; then
        log "apt-get download ${fetch[*]}"
        ( cd "$DEBS" && apt-get download -qq "${fetch[@]}" 2>&1 | { grep -v unsandboxed || true; } )
        for want in "${fetch[@]}"; do
            ls "$DEBS/${want}_"*.deb >/dev/null 2>&1 || missing "apt-get download $want failed"
        done
    fi
    local kdeb; kdeb=$(ls "$DEBS/${pkg}_"*.deb)
    local bdeb; bdeb=$(ls "$DEBS"/busybox-static_*.deb)
    if [ "$(cat "$KPKG/.from" 2>/dev/null)" != "$(basename "$kdeb")" ] || ! ls -d "$KPKG"/lib/modules/*/kernel/drivers/gpu >/dev/null 2>&1; then
        # only the kernel image, its config, modules.* and the driver folders the lab uses
        log "unpacking $(basename "$kdeb")"
        rm -rf "$KPKG"; mkdir -p "$KPKG"
        dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$KPKG" --wildcards \
            './boot/vmlinuz-*' './boot/config-*' './lib/modules/*/modules.*' \
            './lib/modules/*/kernel/drivers/vfio' './lib/modules/*/kernel/drivers/net' \
            './lib/modules/*/kernel/drivers/pci' './lib/modules/*/kernel/virt' \
            './lib/modules/*/kernel/drivers/gpu/drm/tiny' './lib/modules/*/kernel/drivers/gpu/drm/ttm' \
            './lib/modules/*/kernel/drivers/gpu/drm/drm*.ko*'
        basename "$kdeb" > "$KPKG/.from"
    fi
    if [ "$(cat "$BB/.from" 2>/dev/null)" != "$(basename "$bdeb")" ]; then
        rm -rf "$BB"; mkdir -p "$BB"; dpkg-deb -x "$bdeb" "$BB"; basename "$bdeb" > "$BB/.from"
    fi
    # the hand-over stage's systemd root: every HO_DEBS package unpacked, redone when one changes
    local hodebs=""; for want in $HO_DEBS; do hodebs="$hodebs $(basename "$(ls "$DEBS/${want}_"*.deb)")"; done
    if [ "$(cat "$HO_ROOT/.from" 2>/dev/null)" != "$hodebs" ]; then
        log "unpacking $HO_DEBS"
        rm -rf "$HO_ROOT"; mkdir -p "$HO_ROOT"
        for want in $HO_DEBS; do dpkg-deb -x "$(ls "$DEBS/${want}_"*.deb)" "$HO_ROOT"; done
        echo "$hodebs" > "$HO_ROOT/.from"
    fi
    local kv; kv=$(ls "$KPKG/lib/modules")
    # the package ships no modules.dep (its postinst makes it)
    [ -s "$KPKG/lib/modules/$kv/modules.dep" ] || "$BB/bin/busybox" depmod -b "$KPKG" "$kv"
    local o; for o in VFIO_PCI VFIO_IOMMU_TYPE1 INTEL_IOMMU IRQ_REMAP E1000E PCI_STUB DRM_BOCHS FB_EFI FRAMEBUFFER_CONSOLE; do
        grep -qE "^CONFIG_$o=[ym]" "$KPKG/boot/config-$kv" || { log "kernel $kv lacks CONFIG_$o"; exit 1; }
    done
    log "kernel $kv, $(basename "$bdeb")"
}

# ------------------------------------------------------------------------------------------- inputs
# The project files copied into the guest, relative to the repo: what install.sh installs (dist/ is
# self-contained; no node_modules, no npm).
project_files() {
    cd "$REPO"
    local f
    for f in package.json package-lock.json install.sh README.md; do [ -e "$f" ] && echo "$f"; done
    for f in dist hooks scripts examples; do [ -d "$f" ] && find "$f" -type f; done
    [ -d native ] && find native -type f -not -path 'native/build/*' -not -path 'native/node_modules/*'
    [ -d native/build/Release ] && find native/build/Release -maxdepth 1 -type f -name '*.node'
    # the resident hook's client (hooks/qemu hands events to qemu-hook serve through it)
    [ -f native/build/Release/qemu-hook-client ] && echo native/build/Release/qemu-hook-client
    # the fixture hosts install.sh warms the startup snapshot up on (symbolic links and empty
    # folders are part of a fixture's sysfs)
    for f in fixtures/hosts/workstation fixtures/hosts/single-amd; do [ -d "$f" ] && find "$f"; done
    true
}
inputs() {
    local kv; kv=$(ls "$KPKG/lib/modules")
    echo "kernel $(cat "$KPKG/.from") $kv"
    echo "busybox $(cat "$BB/.from")"
    echo "node $NODE_PATH_AS_RUN $(sha256sum < "$NODE_BIN" | cut -c1-16)"
    dpkg-query -W -f '${Package} ${Version}\n' qemu-system-x86 ipxe-qemu seabios libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt0 bash gcc libc6-dev 2>/dev/null || true
    echo "handover debs $(cat "$HO_ROOT/.from" 2>/dev/null)"
    ( cd "$HERE" && find . -type f -not -name '*.md' | LC_ALL=C sort | xargs sha256sum )
    # regular files by content, links by target, folders by name: one sha256sum and one stat for all
    ( cd "$REPO" && project_files | LC_ALL=C sort | while read -r f; do
        if [ -f "$f" ] && [ ! -L "$f" ]; then printf '%s\0' "$f"; fi
    done | xargs -0 -r sha256sum )
    ( cd "$REPO" && project_files | LC_ALL=C sort | while read -r f; do
        if [ -L "$f" ] || [ -d "$f" ]; then printf '%s\0' "$f"; fi
    done | xargs -0 -r stat -c '%F %N' )
}

# ------------------------------------------------------------------------------------------- build
KV=
stage_base() {  # $1 = folder, rest = modules (with their dependencies from modules.dep)
    local dir=$1; shift
    rm -rf "$dir"; mkdir -p "$dir"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,root,lib/modules/$KV}
    cp "$BB/bin/busybox" "$dir/bin/"
    local a
    for a in $("$BB/bin/busybox" --list-full); do
        [ -e "$dir/$a" ] || ln -s /bin/busybox "$dir/$a"
    done
    stage_modules "$dir" "$@"
    printf 'root:x:0:0:root:/root:/bin/sh\nlibvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin\n' > "$dir/etc/passwd"
    printf 'root:x:0:\nkvm:x:64054:\nlibvirt-qemu:x:64055:\nlibvirt:x:64056:\n' > "$dir/etc/group"
}

stage_modules() {  # $1 = folder, rest = modules: their files, their dependencies', a modules.dep
    local dir=$1; shift
    local dep=$KPKG/lib/modules/$KV/modules.dep files="" m line f
    for m in "$@"; do
        line=$(grep -E "/${m//[-_]/[-_]}\.ko(\.[a-z]+)?:" "$dep") || { log "module $m not in $KV"; exit 1; }
        files="$files ${line%%:*} ${line#*:}"
    done
    for f in $(echo $files | tr ' ' '\n' | sort -u); do
        install -D -m644 "$KPKG/lib/modules/$KV/$f" "$dir/lib/modules/$KV/$f"
    done
    cp "$KPKG/lib/modules/$KV"/modules.{builtin,builtin.modinfo,order} "$dir/lib/modules/$KV/" 2>/dev/null || true
    "$BB/bin/busybox" depmod -b "$dir" "$KV"
}

copy_libs() {  # $1 = stage; the ldd closure of host executables/libraries, at the same paths
    local dir=$1 f l; shift
    for f in "$@"; do
        for l in $(ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^[[:space:]]*\/lib64\//{print $1}'); do
            [ -e "$dir$l" ] || install -D -m755 "$(readlink -f "$l")" "$dir$l"
        done
    done
}
copy_with_libs() {  # $1 = stage; host executables/libraries themselves and their ldd closure
    local dir=$1 f; shift
    for f in "$@"; do
        [ -e "$f" ] || { log "missing $f"; exit 1; }
        # -p: the mtime too (hooks/qemu starts node from the startup snapshot only for the node it fits)
        [ -e "$dir$f" ] || install -D -p -m755 "$(readlink -f "$f")" "$dir$f"
    done
    copy_libs "$dir" "$@"
}

pack() {  # $1 = folder, $2 = image; uncompressed cpio: the guest unpacks it faster than gzip under TCG
    ( cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet ) > "$2.tmp"
    mv "$2.tmp" "$2"
}

build_l1() {
    stage_base "$L1" $L1_MODULES
    local s=$L1
    # the host's own node, at the path the host runs it from (install.sh records that path)
    copy_with_libs "$s" "$NODE_BIN"
    if [ "$NODE_PATH_AS_RUN" != "$NODE_BIN" ]; then mkdir -p "$s$(dirname "$NODE_PATH_AS_RUN")"; ln -sf "$NODE_BIN" "$s$NODE_PATH_AS_RUN"; fi
    [ -e "$s/usr/bin/node" ] || ln -s "$NODE_BIN" "$s/usr/bin/node"
    # bash: install.sh and the project's scripts may be bash scripts
    copy_with_libs "$s" /bin/bash
    ln -sf /bin/bash "$s/usr/bin/bash"
    # coreutils' install: install.sh sets every mode with `install -m` (busybox has no install applet)
    copy_with_libs "$s" /usr/bin/install
    # libvirt (daemon, client, the two connection drivers the lab uses) and qemu for the L2 domain
    copy_with_libs "$s" /usr/sbin/libvirtd /usr/bin/virsh \
        "$LIBVIRT_DRIVERS/libvirt_driver_qemu.so" "$LIBVIRT_DRIVERS/libvirt_driver_nodedev.so" \
        /usr/bin/qemu-system-x86_64 /usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so
    local f
    for f in $QEMU_FILES; do install -D -m644 "$(readlink -f "$f")" "$s$f"; done
    mkdir -p "$s/usr/share/libvirt"; cp -r /usr/share/libvirt/cpu_map "$s/usr/share/libvirt/"
    mkdir -p "$s/var/lib" "$s/var/log" "$s/var/cache" "$s/etc/libvirt"; ln -s ../run "$s/var/run"
    # the project checkout, as `npm ci && npm run build` left it on the host
    local p=$s/lab/qemu-hook
    mkdir -p "$p"
    ( cd "$REPO" && project_files | cpio -pdm --quiet "$p" )
    # the native addon links libvirt: its ldd closure goes in too
    local addon
    for addon in "$REPO"/native/build/Release/*.node "$REPO"/native/build/Release/qemu-hook-client; do
        [ -e "$addon" ] && copy_libs "$s" "$addon"
    done
    # the guest side of the lab
    install -m755 "$HERE/guest/lib.sh" "$s/lib.sh"
    install -m755 "$HERE/guest/init.sh" "$s/init"
    mkdir -p "$s/lab/guest"; cp -r "$HERE"/guest/. "$s/lab/guest/"
    install -D -m644 "$IPXE_ROM" "$s/lab/l2/pxe-e1000e.rom"
    pack "$s" "$OUT/initrd.cpio"
}

# The hand-over stage's image (test/lab/handover): L1's tree (less the L2 guest's ROM) followed by an
# overlay archive (the kernel unpacks concatenated cpio archives in order, later files win):
# Debian's systemd and dbus, the bochs module, the stand-in desktop's units and programs, the checks.
build_handover() {
    local s=$HO
    rm -rf "$s"; mkdir -p "$s/etc/systemd/system/multi-user.target.wants" "$s/lab/handover/domains" "$s/lib/modules/$KV"
    cp -a "$HO_ROOT"/. "$s/"
    rm -rf "$s/.from" "$s"/usr/share/{doc,man,locale,lintian,bash-completion,zsh,fish}
    stage_modules "$s" $HO_MODULES
    # what the unpacked binaries link and the packages did not bring comes from the host
    local libdirs=$s/lib/x86_64-linux-gnu:$s/usr/lib/x86_64-linux-gnu:$s/usr/lib/x86_64-linux-gnu/systemd
    local f l
    for f in $(find "$s" -type f \( -perm -u+x -o -name '*.so*' \)); do
        [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
        for l in $(LD_LIBRARY_PATH=$libdirs ldd "$f" 2>/dev/null | awk '/not found/{print "MISSING:" $1} /=> \//{print $3} /^[[:space:]]*\/lib64\//{print $1}'); do
            case $l in
                MISSING:*) log "${f#"$s"} needs ${l#MISSING:}, which neither HO_DEBS nor the host has"; exit 1 ;;
                "$s"/*) ;;
                *) [ -e "$s$l" ] || install -D -m755 "$(readlink -f "$l")" "$s$l" ;;
            esac
        done
    done
    # the users and groups dbus, journald and libvirt run as
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'messagebus:x:100:101::/nonexistent:/usr/sbin/nologin' \
        'libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin' > "$s/etc/passwd"
    printf '%s\n' 'root:x:0:' 'messagebus:x:101:' 'systemd-journal:x:102:' 'tty:x:5:' 'video:x:44:' 'render:x:105:' \
        'kvm:x:64054:' 'libvirt-qemu:x:64055:' 'libvirt:x:64056:' > "$s/etc/group"
    printf 'PRETTY_NAME="qemu-hook hand-over lab"\nID=debian\n' > "$s/etc/os-release"
    echo 5a1bd00d5a1bd00d5a1bd00d5a1bd00d > "$s/etc/machine-id"
    echo lab > "$s/etc/hostname"
    echo LANG=C > "$s/etc/locale.conf"   # systemd's default C.UTF-8 has no locale files here
    gcc -static -O2 -Wall -o "$s/lab/handover/holder" "$HERE/handover/holder.c"
    local u
    for u in "$HERE"/handover/units/*.service; do install -m644 "$u" "$s/etc/systemd/system/"; done
    for u in lab-gpu gpu-daemon libvirtd lab-handover; do
        ln -s "../$u.service" "$s/etc/systemd/system/multi-user.target.wants/$u.service"
    done
    ln -s fake-dm.service "$s/etc/systemd/system/display-manager.service"
    for f in "$HERE"/handover/*.sh "$HERE"/handover/*.mjs; do install -m755 "$f" "$s/lab/handover/"; done
    cp "$HERE"/handover/domains/*.xml "$s/lab/handover/domains/"
    # L1's tree without the nested guest's ROM (unused here), then this
    pack "$s" "$OUT/handover-overlay.cpio"
    ( cd "$L1" && find . -path ./lab/l2 -prune -o -print | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet ) > "$OUT/initrd-handover.cpio.tmp"
    cat "$OUT/handover-overlay.cpio" >> "$OUT/initrd-handover.cpio.tmp"
    mv "$OUT/initrd-handover.cpio.tmp" "$OUT/initrd-handover.cpio"
    rm -f "$OUT/handover-overlay.cpio"
}

build() {
    [ -d "$KPKG/lib/modules" ] && [ -x "$BB/bin/busybox" ] || { log "run '$0 prepare' first"; exit 1; }
    KV=$(ls "$KPKG/lib/modules")
    mkdir -p "$OUT"
    local hash; hash=$(inputs | sha256sum | cut -c1-32)
    if [ "$(cat "$OUT/inputs.hash" 2>/dev/null)" = "$hash" ] && [ -s "$OUT/initrd.cpio" ] && [ -s "$OUT/initrd-handover.cpio" ] && [ -s "$OUT/vmlinuz" ]; then
        log "guest image up to date ($hash)"; return 0
    fi
    rm -f "$OUT/inputs.hash"
    local t0=$SECONDS
    build_l1
    build_handover
    cp "$KPKG/boot/vmlinuz-$KV" "$OUT/vmlinuz"
    inputs > "$OUT/inputs.txt"
    echo "$hash" > "$OUT/inputs.hash"
    rm -rf "$L1" "$HO"   # the images are what the runs use; the staging trees only double the cache
    log "guest images built in $((SECONDS - t0))s: initramfs $(du -h "$OUT/initrd.cpio" | cut -f1), hand-over $(du -h "$OUT/initrd-handover.cpio" | cut -f1) ($hash)"
}

case "${1:-}" in
    prepare) prepare ;;
    build) build ;;
    inputs) KV=$(ls "$KPKG/lib/modules"); inputs ;;
    *) echo "usage: $0 prepare|build|inputs" >&2; exit 2 ;;
esac
