#!/bin/bash
# Runs a private libvirtd in its own mount namespace, in the foreground (exec: the caller owns the PID).
#
#   libvirtd-ns.sh STATE_DIR
#
# STATE_DIR/{etc,run,lib,log,cache} are bind-mounted over /etc/libvirt, /run/libvirt, /var/lib/libvirt,
# /var/log/libvirt and /var/cache/libvirt inside the namespace only: the machine's own folders are
# never written (a missing mount point is created, empty). The sockets live in STATE_DIR/sock, which
# is not mounted over, so processes outside the namespace connect with
# qemu:///system?socket=STATE_DIR/sock/libvirt-sock. STATE_DIR/libvirtd.conf and STATE_DIR/etc/qemu.conf
# are written unless they exist. Running it again on the same STATE_DIR restarts the daemon on the
# same state (running domains are reconnected).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
state=$(realpath -e "$1")

# Never bind-mount in the caller's namespace: the first run records its namespace and re-execs itself
# under unshare; the second run proves it is somewhere else before it mounts anything.
here=$(readlink /proc/self/ns/mnt)
if [ -z "${QEMU_HOOK_E2E_OUTER_NS:-}" ]; then
  export QEMU_HOOK_E2E_OUTER_NS=$here
  exec unshare --mount --propagation private /bin/bash "$0" "$state"
fi
init=$(readlink /proc/1/ns/mnt 2>/dev/null || true)  # unreadable from some namespaces
if [ -z "$here" ] || [ "$here" = "$QEMU_HOOK_E2E_OUTER_NS" ] || [ "$here" = "$init" ]; then
  echo "libvirtd-ns: not in a private mount namespace ($here); refusing to mount" >&2
  exit 1
fi
unset QEMU_HOOK_E2E_OUTER_NS

mkdir -p "$state"/{etc,run,lib,log,cache,sock}
# realpath: etc may be a symlink to a folder the test owns (a --root host's etc/libvirt).
mount --bind "$(realpath -e "$state/etc")" /etc/libvirt
for pair in run:/run/libvirt lib:/var/lib/libvirt log:/var/log/libvirt cache:/var/cache/libvirt; do
  src=$state/${pair%%:*} dst=${pair#*:}
  # A missing mount point has to be created on the real file system; an empty folder is all it gets.
  [ -d "$dst" ] || mkdir -p "$dst"
  mount --bind "$src" "$dst"
done

# libvirtd.conf is the harness's own plumbing: it stays in STATE_DIR, outside the private /etc/libvirt.
if [ ! -e "$state/libvirtd.conf" ]; then
  cat > "$state/libvirtd.conf" <<EOC
unix_sock_dir = "$state/sock"
unix_sock_group = "root"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0770"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_level = 3
# util.hook at debug: "Found hook script ..." tells the harness a SIGHUP re-read the hooks folder.
log_filters = "1:util.hook${QEMU_HOOK_E2E_DEBUG_LOG:+ $QEMU_HOOK_E2E_DEBUG_LOG}"
log_outputs = "1:file:$state/log/libvirtd.log"
EOC
  # Two daemons on one machine migrate to each other only when their host UUIDs differ.
  if [ -n "${QEMU_HOOK_E2E_HOST_UUID:-}" ]; then
    echo "host_uuid = \"$QEMU_HOOK_E2E_HOST_UUID\"" >> "$state/libvirtd.conf"
  fi
fi
if [ ! -e /etc/libvirt/qemu.conf ]; then
  cat > /etc/libvirt/qemu.conf <<EOC
# Written by the qemu-hook e2e harness.
# QEMU writes its own log file, so no virtlogd is needed.
stdio_handler = "file"
# As libvirt-qemu, a /dev/kvm that only root may open makes libvirt re-probe QEMU on every start (~4 s).
user = "root"
group = "root"
# No cgroups: libvirt would write under the machine's /sys/fs/cgroup, and the domains of daemons
# running side by side share names (qemu-1-tiny).
cgroup_controllers = [ ]
EOC
fi

exec libvirtd --config "$state/libvirtd.conf" --pid-file "$state/libvirtd.pid"
