#!/bin/sh
# libvirtd.service's ExecStartPre: the lab's libvirt configuration (as test/lab/guest/init.sh).
mkdir -p /etc/libvirt /var/lib/libvirt/qemu /var/cache/libvirt /var/log/libvirt/qemu /var/log/lab /run/libvirt
cat > /etc/libvirt/qemu.conf <<'CONF'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
seccomp_sandbox = 0
stdio_handler = "file"
CONF
cat > /etc/libvirt/libvirtd.conf <<'CONF'
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
CONF
