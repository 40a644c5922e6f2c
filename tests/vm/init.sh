#!/bin/busybox sh
# /init of the VM that tests vigil on a pure cgroup v2 hierarchy (see tests/vm_cgroup2.rs).
# Mounts what a booted system has, hands every controller down from the root cgroup, runs
# /scenarios.sh, prints the end marker with its exit code on the console and powers off.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /run
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Terminals, as a booted system has them (a sandboxed root job gets a devpts of its own).
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs -o size=75% tmpfs /tmp
mount -t tmpfs tmpfs /run
chmod 1777 /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
  echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control
done
echo "VIGIL-VM-BOOTED kernel $(uname -r) controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
sh /scenarios.sh
rc=$?
echo "VIGIL-VM-EXIT $rc"
sync
poweroff -f
