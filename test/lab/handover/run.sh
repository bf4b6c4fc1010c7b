#!/bin/sh
# lab-handover.service: installs the project as the existing stage does (install.sh --no-build
# while libvirtd probes QEMU), runs checks.mjs, prints the verdict and powers the guest off.
# Runs only inside the hand-over lab guest, under systemd.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
P=0
F=0
pass() { P=$((P + 1)); echo "LAB PASS: $*"; }
fail() { F=$((F + 1)); echo "LAB FAIL: $*"; }
check() { desc=$1; shift; if "$@"; then pass "$desc"; else fail "$desc"; fi; }
info() { echo "LAB: $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
since() { echo "$(up) $1" | awk '{printf "%.1f", $1-$2}'; }

info "hand-over stage: systemd $(systemctl --version | head -1 | cut -d' ' -f2) is PID 1 ($(cat /proc/1/comm)), checks start at $(up)s; system $(systemctl is-system-running)"
systemctl --no-legend --failed | sed 's/^/LAB failed unit: /'
info "dbus $(systemctl is-active dbus.service), logind $(systemctl is-active systemd-logind.service), sessions: $(loginctl list-sessions --no-legend 2>&1 | wc -l)"
t0=$(up)
n=0
while [ ! -S /run/libvirt/libvirt-sock ] && [ $n -lt 600 ]; do sleep 0.2; n=$((n + 1)); done
check "libvirtd.service listening ($(since "$t0")s)" [ -S /run/libvirt/libvirt-sock ]
# the first qemu:///system connection probes QEMU (tens of seconds under TCG): meanwhile, install
virsh -q -c qemu:///system list > /run/probe.out 2>&1 &
probe=$!
t0=$(up)
(cd /lab/qemu-hook && ./install.sh --no-build) > /var/log/lab/install.log 2>&1
rc=$?
sed 's/^/LAB install.sh| /' /var/log/lab/install.log
check "install.sh --no-build (rc=$rc, $(since "$t0")s)" [ $rc = 0 ]
check "resident hook: qemu-hook.socket and qemu-hook.service active ($(systemctl is-active qemu-hook.socket qemu-hook.service | tr '\n' ' '))" \
    sh -c 'systemctl is-active --quiet qemu-hook.socket && systemctl is-active --quiet qemu-hook.service'
wait $probe
check "virsh reaches qemu:///system ($(since "$t0")s)" [ $? = 0 ]
node /lab/handover/checks.mjs
rc=$?
if [ -s /run/lab-counts ]; then read -r cp cf < /run/lab-counts; P=$((P + cp)); F=$((F + cf)); else fail "checks.mjs ended with rc=$rc before reporting"; fi
if [ "$F" != 0 ]; then
    for f in /var/log/libvirt/qemu-hook.log /var/log/libvirt/libvirtd.log; do
        [ -s "$f" ] && tail -40 "$f" | cut -c1-400 | sed "s|^|LAB tail $f: |"
    done
    journalctl -b --no-pager -n 60 -o short-monotonic 2>/dev/null | cut -c1-300 | sed 's/^/LAB journal| /'
fi
dmesg | grep -E 'DMAR.*fault|BUG:|WARNING:|Oops' | head -8 | sed 's/^/LAB dmesg: /'
info "done at $(up)s"
echo "LAB RESULT: $P passed, $F failed"
sync
systemctl poweroff --force --force
