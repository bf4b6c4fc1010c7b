#!/bin/sh
# PID 1 of the lab guest (L1). Every sysfs write of the lab happens here, inside the guest.
# lab.stage (kernel command line):
#   boot     node runs (the host's own binary)                       - infrastructure step (a)
#   libvirt  libvirtd + virsh: manual detach, `virsh start` of the L2 domain with a
#            <hostdev managed='no'>, manual reattach                  - infrastructure step (b)
#   addon    the project's native addon opens qemu:///system         - infrastructure step (c)
#   full     install.sh --no-build, then the checks of issue 5 (checks.mjs)   (default)
TAG=LAB
. /lib.sh
since() { echo "$(up) $1" | awk '{printf "%.1f", $1-$2}'; }
stage=$(arg lab.stage)
# knobs of the checks, passed by run-lab.mjs as lab.env.NAME=value
for a in $(cat /proc/cmdline); do case $a in lab.env.LAB_*=*) export "${a#lab.env.}" ;; esac; done
stage=${stage:-full}
info "guest up at $(up)s, kernel $(uname -r), stage $stage"

for m in $(arg lab.modules | tr , ' '); do modprobe "$m" || fail "modprobe $m"; done
check "iommu active with interrupt remapping" sh -c 'dmesg | grep -q "DMAR-IR: Enabled IRQ remapping" && [ -n "$(ls /sys/class/iommu)" ]'
for d in /sys/bus/pci/devices/*; do
    b=${d##*/}
    info "pci $b $(ids "$b") group=$(basename "$(readlink "$d/iommu_group")") driver=$(drv "$b")"
done

t0=$(up)
v=$(node -e 'console.log(process.version)' 2>&1)
check "node $v runs in the guest ($(command -v node), $(since "$t0")s for node -e)" [ "${v#v}" != "$v" ]

libvirt_setup() {
    mkdir -p /etc/libvirt /var/lib/libvirt/qemu /var/cache/libvirt /var/log/libvirt/qemu /var/log/lab /run/libvirt
    # an initramfs has no cgroups, namespaces, security labels or virtlogd: QEMU runs as root, plainly
    cat > /etc/libvirt/qemu.conf <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
seccomp_sandbox = 0
stdio_handler = "file"
EOF
    cat > /etc/libvirt/libvirtd.conf <<'EOF'
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log 1:file:/var/log/libvirt/libvirtd-debug.log"
log_filters = "1:util.pci 1:hypervisor.virhostdev 1:node_device 1:util.hook 1:util.command 3:*"
EOF
    t0=$(up)
    libvirtd -d
    n=0
    while [ ! -S /run/libvirt/libvirt-sock ] && [ $n -lt 120 ]; do sleep 1; n=$((n + 1)); done
    check "libvirtd listening ($(since "$t0")s)" [ -S /run/libvirt/libvirt-sock ]
}

probe_qemu() {  # the first qemu:///system connection probes QEMU's capabilities: ~45 s under TCG
    t0=$(up)
    ver=$(virsh -c qemu:///system version 2>&1 | tr '\n' ' ')
    check "virsh reaches qemu:///system ($(since "$t0")s: $ver)" virsh -q -c qemu:///system list
    echo "$P $F" > /run/probe.counts   # for a caller that ran this in the background
}

stage_libvirt() {
    libvirt_setup
    probe_qemu
    b=0000:01:00.0
    orig=$(drv "$b")
    nd=pci_0000_01_00_0
    V="virsh -q -c qemu:///system"
    t0=$(up)
    $V nodedev-detach "$nd" --driver vfio 2>&1 | sed 's/^/LAB virsh: /'
    check "virsh nodedev-detach $nd -> $(drv $b) ($(since "$t0")s)" [ "$(drv $b)" = vfio-pci ]
    grep -E 'vfio|0000:01:00.0' /var/log/libvirt/libvirtd-debug.log | tail -5 | cut -c1-240 | sed 's/^/LAB libvirtd-debug: /'
    $V define /lab/guest/domains/l2.xml 2>&1 | sed 's/^/LAB virsh: /'
    t0=$(up)
    $V start l2 2>&1 | sed 's/^/LAB virsh: /'
    check "virsh start l2 with <hostdev managed='no'> ($(since "$t0")s)" sh -c "$V domstate l2 | grep -q running"
    g=$(basename "$(readlink /sys/bus/pci/devices/$b/iommu_group)")
    pid=$(cat /run/libvirt/qemu/l2.pid 2>/dev/null)
    check "L2 qemu (pid $pid) holds /dev/vfio/$g" sh -c "ls -l /proc/$pid/fd 2>/dev/null | grep -q '/dev/vfio/$g\$'"
    t0=$(up)
    n=0
    # iPXE's DHCP on the assigned e1000e: "ok" (or its failure) ends the wait
    while ! grep -aqE 'Configuring \(net0 .*(ok|succeeded)' /var/log/lab/l2-serial.log 2>/dev/null && [ $n -lt 300 ]; do
        sleep 2; n=$((n + 2))
        [ $((n % 30)) = 0 ] && info "waiting for L2 ${n}s | qemu $(cut -d' ' -f14,15 /proc/$pid/stat 2>/dev/null) ticks"
    done
    tr -d '\033' < /var/log/lab/l2-serial.log | tr '\r' '\n' | grep -a 'iPXE\|net0' | head -12 | sed 's/^/LAB L2| /'
    tail -5 /var/log/libvirt/qemu/l2.log | cut -c1-300 | sed 's/^/LAB l2.log| /'
    check "L2's iPXE drove the e1000e: link, DHCP ($(since "$t0")s after start)" grep -aqE 'Configuring \(net0 [0-9a-f:]+\)\.* ok' /var/log/lab/l2-serial.log
    t0=$(up)
    $V destroy l2 2>&1 | sed 's/^/LAB virsh: /'
    check "virsh destroy l2 ($(since "$t0")s); managed='no' leaves $b on $(drv $b)" [ "$(drv $b)" = vfio-pci ]
    $V nodedev-reattach "$nd" 2>&1 | sed 's/^/LAB virsh: /'
    check "virsh nodedev-reattach $nd -> $(drv $b), netdev $(netif $b)" [ "$(drv $b)" = "$orig" ]
}

stage_addon() {
    libvirt_setup
    probe_qemu
    t0=$(up)
    node /lab/guest/addon-smoke.mjs /lab/qemu-hook 2>&1 | sed 's/^/LAB addon: /'
    check "the project's native addon opens qemu:///system ($(since "$t0")s)" grep -q 'ADDON OK' /run/addon-smoke.out
    t0=$(up)
    node /lab/qemu-hook/dist/cli/main.cjs devices > /run/devices.out 2>&1
    rc=$?
    sed 's/^/LAB devices| /' /run/devices.out
    check "node dist/cli/main.cjs devices runs from the checkout (rc=$rc, $(since "$t0")s)" [ $rc = 0 ]
}

stage_full() {
    libvirt_setup
    # install while libvirtd probes QEMU: install.sh's SIGHUP then lands on a busy daemon, as it may
    # on any host
    (P=0 F=0; probe_qemu) > /run/probe.out 2>&1 &
    probe=$!
    t0=$(up)
    (cd /lab/qemu-hook && ./install.sh --no-build) > /var/log/lab/install.log 2>&1
    rc=$?
    wait $probe
    cat /run/probe.out
    read -r pp pf < /run/probe.counts 2>/dev/null || { pp=0; pf=1; echo "LAB FAIL: the QEMU probe did not report"; }
    P=$((P + pp)); F=$((F + pf))
    sed 's/^/LAB install.sh| /' /var/log/lab/install.log
    check "install.sh --no-build (rc=$rc, $(since "$t0")s)" [ $rc = 0 ]
    check "hook installed as /etc/libvirt/hooks/qemu" [ -x /etc/libvirt/hooks/qemu ]
    check "qemu-hook on PATH ($(command -v qemu-hook))" [ -x /usr/local/bin/qemu-hook ]
    node /lab/guest/checks.mjs
    rc=$?
    [ $rc = 0 ] || [ -s /run/lab-counts ] || fail "checks.mjs ended with rc=$rc before reporting"
}

case $stage in
    boot) ;;
    libvirt) stage_libvirt ;;
    addon) stage_addon ;;
    full) stage_full ;;
    *) fail "unknown lab.stage=$stage" ;;
esac

if [ -s /run/lab-counts ]; then read -r cp cf < /run/lab-counts; P=$((P + cp)); F=$((F + cf)); fi
if [ "$F" != 0 ]; then
    for f in /var/log/libvirt/qemu-hook.log /var/log/libvirt/libvirtd.log; do
        [ -s "$f" ] && tail -40 "$f" | cut -c1-400 | sed "s|^|LAB tail $f: |"
    done
fi
dmesg | grep -E 'DMAR.*fault|BUG:|WARNING:|Oops' | head -8 | sed 's/^/LAB dmesg: /'
info "done at $(up)s"
echo "LAB RESULT: $P passed, $F failed"
sync
poweroff -f
