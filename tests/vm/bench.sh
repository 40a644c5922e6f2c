# benches/exec_vm.rs inside the VM: exec_spawn, then exec_kill, each started alone in a
# delegated service group of its own (as systemd's Delegate=yes would start it) on pure cgroup v2.
CG=/sys/fs/cgroup
mkdir -p $CG/system.slice
echo "+cpu +memory +pids" > $CG/system.slice/cgroup.subtree_control
rc=0
echo "BENCH-BEGIN"
# Under emulation a 200-process tree needs seconds to start: a 900 ms deadline would fire first.
export VIGIL_BENCH_DEADLINE_MS=6000
for b in exec_spawn exec_kill; do
  G=$CG/system.slice/vigil-$b.service
  mkdir -p $G
  sh -c 'echo $$ > "$1/cgroup.procs"; exec "$2"' bench "$G" /bin/$b || rc=1
done
echo "BENCH-END"
exit $rc
