#!/bin/bash
# Builds the passthrough lab's guest from Debian packages (see test/lab/README.md).
#
#   lab.sh prepare   install the host tools the lab needs (root), apt-get download the kernel and
#                    busybox-static into the cache, unpack what the guest uses
#   lab.sh build     assemble the two initramfs images (L1: busybox, kernel modules, the host's own
#                    node binary, libvirtd/virsh/qemu, the project checkout, test/lab/guest/*;
#                    L2: busybox + e1000e), skipped when the hash of every input is unchanged
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
L1=$CACHE/stage-l1 L2=$CACHE/stage-l2
# pci-stub: check 5a parks the edu on a driver the kernel would not pick for it.
L1_MODULES="e1000e e1000 8139cp pci-stub vfio-pci vfio_iommu_type1"
L2_MODULES="e1000e"
LIBVIRT_DRIVERS=/usr/lib/x86_64-linux-gnu/libvirt/connection-driver
# firmware the nested QEMU loads: SeaBIOS, the -kernel option ROMs (pvh.bin for the PVH entry)
QEMU_FILES="/usr/share/seabios/bios-256k.bin /usr/share/qemu/linuxboot_dma.bin /usr/share/qemu/pvh.bin /usr/share/qemu/kvmvapic.bin"

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
    local pkg; pkg=$(kernel_pkg)
    if [ -z "$pkg" ] || [ ${#need[@]} -gt 0 ]; then apt-get update -qq || missing "apt-get update failed"; pkg=$(kernel_pkg); fi
    if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
            || missing "apt-get install ${need[*]} failed"
    fi
    [ -n "$pkg" ] || missing "apt cannot resolve linux-image-amd64"
    mkdir -p "$DEBS"
    # keep exactly one version of each package: a new kernel in the archive means a new cache
    local want
    for want in "$pkg" busybox-static; do
        local ver; ver=$(apt-cache policy "$want" | awk '/Candidate:/{print $2}')
        local have; have=$(ls "$DEBS/${want}_"*.deb 2>/dev/null | head -1 || true)
        if [ -n "$have" ] && [ "$(deb_version "$have")" = "$ver" ]; then continue; fi
        rm -f "$DEBS/${want}_"*.deb
        log "apt-get download $want ($ver)"
        ( cd "$DEBS" && apt-get download -qq "$want" 2>&1 | { grep -v unsandboxed || true; } )
        ls "$DEBS/${want}_"*.deb >/dev/null 2>&1 || missing "apt-get download $want failed"
    done
    local kdeb; kdeb=$(ls "$DEBS/${pkg}_"*.deb)
    local bdeb; bdeb=$(ls "$DEBS"/busybox-static_*.deb)
    if [ "$(cat "$KPKG/.from" 2>/dev/null)" != "$(basename "$kdeb")" ]; then
        # only the kernel image, its config, modules.* and the driver folders the lab uses
        log "unpacking $(basename "$kdeb")"
        rm -rf "$KPKG"; mkdir -p "$KPKG"
        dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$KPKG" --wildcards \
            './boot/vmlinuz-*' './boot/config-*' './lib/modules/*/modules.*' \
            './lib/modules/*/kernel/drivers/vfio' './lib/modules/*/kernel/drivers/net' \
            './lib/modules/*/kernel/drivers/pci' './lib/modules/*/kernel/virt'
        basename "$kdeb" > "$KPKG/.from"
    fi
    if [ "$(cat "$BB/.from" 2>/dev/null)" != "$(basename "$bdeb")" ]; then
        rm -rf "$BB"; mkdir -p "$BB"; dpkg-deb -x "$bdeb" "$BB"; basename "$bdeb" > "$BB/.from"
    fi
    local kv; kv=$(ls "$KPKG/lib/modules")
    [ -s "$KPKG/vmlinux" ] || extract_vmlinux "$KPKG/boot/vmlinuz-$kv" "$KPKG/vmlinux" || true
    # the package ships no modules.dep (its postinst makes it)
    [ -s "$KPKG/lib/modules/$kv/modules.dep" ] || "$BB/bin/busybox" depmod -b "$KPKG" "$kv"
    local o; for o in VFIO_PCI VFIO_IOMMU_TYPE1 INTEL_IOMMU IRQ_REMAP E1000E PCI_STUB; do
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
    for f in package.json package-lock.json install.sh; do [ -e "$f" ] && echo "$f"; done
    for f in dist hooks scripts examples; do [ -d "$f" ] && find "$f" -type f; done
    [ -d native ] && find native -type f -not -path 'native/build/*' -not -path 'native/node_modules/*'
    [ -d native/build/Release ] && find native/build/Release -maxdepth 1 -type f -name '*.node'
    true
}
inputs() {
    local kv; kv=$(ls "$KPKG/lib/modules")
    echo "kernel $(cat "$KPKG/.from") $kv"
    echo "busybox $(cat "$BB/.from")"
    echo "l2 kernel $([ -s "$KPKG/vmlinux" ] && echo vmlinux-pvh || echo bzImage)"
    echo "node $NODE_PATH_AS_RUN $(sha256sum < "$NODE_BIN" | cut -c1-16)"
    dpkg-query -W -f '${Package} ${Version}\n' qemu-system-x86 libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt0 bash 2>/dev/null || true
    ( cd "$HERE" && find . -type f -not -name '*.md' | LC_ALL=C sort | xargs sha256sum )
    ( cd "$REPO" && project_files | LC_ALL=C sort | xargs -r sha256sum )
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
    printf 'root:x:0:0:root:/root:/bin/sh\nlibvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin\n' > "$dir/etc/passwd"
    printf 'root:x:0:\nkvm:x:64054:\nlibvirt-qemu:x:64055:\nlibvirt:x:64056:\n' > "$dir/etc/group"
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

# The L2 domain boots the kernel's uncompressed ELF through its PVH entry point (CONFIG_PVH): no
# decompressor and no real-mode setup, which under TCG-in-TCG saves about 40% of L2's boot.
# Like the kernel's scripts/extract-vmlinux: try each xz/zstd/gzip header until one yields an ELF.
extract_vmlinux() {  # $1 = bzImage, $2 = output
    local magic off tool
    for magic in 'xz:\xfd7zXZ\x00' 'zstd:\x28\xb5\x2f\xfd' 'gzip:\x1f\x8b\x08'; do
        tool=${magic%%:*}
        command -v "$tool" >/dev/null || continue
        for off in $(LC_ALL=C grep -obUaP "${magic#*:}" "$1" | cut -d: -f1); do
            tail -c +$((off + 1)) "$1" | "$tool" -dcq 2>/dev/null > "$2.tmp" || true
            if [ "$(head -c 4 "$2.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then mv "$2.tmp" "$2"; return 0; fi
        done
    done
    rm -f "$2.tmp"
    return 1
}

pack() {  # $1 = folder, $2 = image; uncompressed cpio: the guest unpacks it faster than gzip under TCG
    ( cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet ) > "$2.tmp"
    mv "$2.tmp" "$2"
}

build_l2() {
    stage_base "$L2" $L2_MODULES
    install -m755 "$HERE/guest/lib.sh" "$L2/lib.sh"
    install -m755 "$HERE/guest/l2-init.sh" "$L2/init"
    ( cd "$L2" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1 ) > "$OUT/l2-initrd.gz"
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
    for addon in "$REPO"/native/build/Release/*.node; do
        [ -e "$addon" ] && copy_libs "$s" "$addon"
    done
    # the guest side of the lab
    install -m755 "$HERE/guest/lib.sh" "$s/lib.sh"
    install -m755 "$HERE/guest/init.sh" "$s/init"
    mkdir -p "$s/lab/guest"; cp -r "$HERE"/guest/. "$s/lab/guest/"
    mkdir -p "$s/lab/l2"; cp "$OUT/l2-initrd.gz" "$s/lab/l2/initrd.gz"
    if [ -s "$KPKG/vmlinux" ]; then cp "$KPKG/vmlinux" "$s/lab/l2/kernel"
    else log "no uncompressed kernel: L2 boots the bzImage (slower)"; cp "$KPKG/boot/vmlinuz-$KV" "$s/lab/l2/kernel"; fi
    pack "$s" "$OUT/initrd.cpio"
}

build() {
    [ -d "$KPKG/lib/modules" ] && [ -x "$BB/bin/busybox" ] || { log "run '$0 prepare' first"; exit 1; }
    KV=$(ls "$KPKG/lib/modules")
    mkdir -p "$OUT"
    local hash; hash=$(inputs | sha256sum | cut -c1-32)
    if [ "$(cat "$OUT/inputs.hash" 2>/dev/null)" = "$hash" ] && [ -s "$OUT/initrd.cpio" ] && [ -s "$OUT/vmlinuz" ]; then
        log "guest image up to date ($hash)"; return 0
    fi
    rm -f "$OUT/inputs.hash"
    local t0=$SECONDS
    build_l2
    build_l1
    cp "$KPKG/boot/vmlinuz-$KV" "$OUT/vmlinuz"
    inputs > "$OUT/inputs.txt"
    echo "$hash" > "$OUT/inputs.hash"
    rm -rf "$L1" "$L2"   # the images are what the runs use; the staging trees only double the cache
    log "guest image built in $((SECONDS - t0))s: initramfs $(du -h "$OUT/initrd.cpio" | cut -f1) ($hash)"
}

case "${1:-}" in
    prepare) prepare ;;
    build) build ;;
    inputs) KV=$(ls "$KPKG/lib/modules"); inputs ;;
    *) echo "usage: $0 prepare|build|inputs" >&2; exit 2 ;;
esac
