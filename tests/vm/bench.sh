# benches/exec_spawn_vm.rs inside the VM: the exec_spawn bench, started alone in a delegated
# service group (as systemd's Delegate=yes would start it) on pure cgroup v2.
CG=/sys/fs/cgroup
G=$CG/system.slice/vigil-bench.service
mkdir -p $G
echo "+cpu +memory +pids" > $CG/system.slice/cgroup.subtree_control
echo "BENCH-BEGIN"
sh -c 'echo $$ > "$1/cgroup.procs"; exec /bin/exec_spawn' bench "$G"
rc=$?
echo "BENCH-END"
exit $rc
