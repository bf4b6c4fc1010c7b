#!/bin/sh
# PID 1 of the nested (L2) guest that libvirt starts inside L1 with the e1000e as a <hostdev>.
# It proves the device works behind vfio (driver binds, TX DMA completes), prints its verdict on
# the serial port (a file in L1), and then idles: L1 ends the domain with `virsh destroy`.
TAG=L2
. /lib.sh
info "up at $(up)s"
modprobe e1000e
b=""
for d in /sys/bus/pci/devices/*; do [ "$(ids "${d##*/}")" = 0x8086:0x10d3 ] && b=${d##*/}; done
if [ -n "$b" ] && [ "$(drv "$b")" = e1000e ]; then pass "e1000e bound to the assigned device $b"; else fail "no e1000e-bound device"; fi
i=$(netif "$b")
if [ -n "$i" ]; then
    # IPv6 router solicitations go out on their own: TX descriptors and their writeback are DMA
    ip link set "$i" up
    n=0
    while [ "$(cat "/sys/class/net/$i/statistics/tx_packets")" = 0 ] && [ $n -lt 30 ]; do sleep 1; n=$((n + 1)); done
    tx=$(cat "/sys/class/net/$i/statistics/tx_packets")
    check "tx ($tx packets completed by the device)" [ "$tx" -gt 0 ]
fi
echo "L2 RESULT: $P passed, $F failed"
while :; do sleep 3600; done
