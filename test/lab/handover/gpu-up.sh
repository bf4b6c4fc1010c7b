#!/bin/sh
# lab-gpu.service: what the console looked like at boot (efifb from OVMF), then bochs takes over.
mkdir -p /run/lab
{
    echo "== /proc/fb at boot"; cat /proc/fb
    echo "== platform framebuffers at boot"; ls -d /sys/bus/platform/devices/*-framebuffer.* 2>/dev/null
    echo "== vtcons at boot"; for v in /sys/class/vtconsole/vtcon*; do echo "${v##*/} $(cat "$v/bind") $(cat "$v/name")"; done
} > /run/lab/boot-fb.txt 2>&1
modprobe vfio-pci && modprobe vfio_iommu_type1 && modprobe bochs || exit 1
n=0
while { [ ! -e /dev/dri/card0 ] || [ ! -e /dev/fb0 ]; } && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
[ -e /dev/dri/card0 ] && [ -e /dev/fb0 ]
