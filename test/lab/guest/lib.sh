# Shared by the lab guest's init scripts (sourced; busybox sh). Runs only inside a lab guest.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /tmp /run && mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /dev/shm
mount -t devpts devpts /dev/pts
hostname lab

P=0
F=0
pass() { P=$((P + 1)); echo "$TAG PASS: $*"; }
fail() { F=$((F + 1)); echo "$TAG FAIL: $*"; }
check() { desc=$1; shift; if "$@"; then pass "$desc"; else fail "$desc"; fi; }
info() { echo "$TAG: $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
arg() { for a in $(cat /proc/cmdline); do case $a in "$1"=*) echo "${a#*=}" ;; esac; done; }
drv() { l=$(readlink "/sys/bus/pci/devices/$1/driver" 2>/dev/null) && basename "$l" || echo none; }
ids() { echo "$(cat "/sys/bus/pci/devices/$1/vendor"):$(cat "/sys/bus/pci/devices/$1/device")"; }
netif() { ls "/sys/bus/pci/devices/$1/net" 2>/dev/null | head -1; }
