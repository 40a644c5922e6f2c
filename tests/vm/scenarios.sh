# vigil's executor scenarios on a pure cgroup v2 hierarchy, once per placement (run by
# tests/vm/init.sh inside the VM; tests/vm_cgroup2.rs reads the console).
#
# Each check prints one line `RESULT <placement> <scenario> PASS|FAIL <detail>`; the host side
# requires every expected line to PASS. A placement is set up the way systemd
# would set it up (a delegated service group, a login session, a user's delegated scope), and
# `vig` starts vigil inside it exactly as the service manager would start the main process.
CG=/sys/fs/cgroup
VIGIL=/bin/vigil
UID_USER=1000
failures=0

result() {
  echo "RESULT $PLACEMENT $1 $2 $3 (at $(cut -d' ' -f1 /proc/uptime) s)"
  [ "$2" = FAIL ] && failures=$((failures + 1))
  return 0
}

# check SCENARIO DETAIL COMMAND...: PASS when COMMAND succeeds.
check() {
  name=$1 detail=$2
  shift 2
  if "$@"; then result "$name" PASS "$detail"; else result "$name" FAIL "$detail"; return 1; fi
}

# Compact JSON (one line, no blanks) so grep can match `"key":value`.
compact() { tr -d ' \n\t' < "$1"; }
has() { compact "$1" | grep -q -- "$2"; }
# check_json SCENARIO FILE PATTERN: PASS when vigil's JSON in FILE matches; shows it otherwise.
check_json() {
  if has "$2" "$3"; then
    result "$1" PASS "$(compact "$2" | grep -o "$3")"
  else
    result "$1" FAIL "expected $3 in: $(compact "$2" | head -c 1500)"
  fi
}

# Pids of busybox processes (the jobs' shells and sleeps, not vigil, whose own command line
# holds the job's arguments) whose command line contains $1 (busybox has no pgrep).
procs_matching() {
  for d in /proc/[0-9]*; do
    [ "$(readlink "$d/exe" 2>/dev/null)" = /bin/busybox ] || continue
    cmd=$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null) || continue
    case "$cmd" in *"$1"*) echo "${d#/proc/}" ;; esac
  done
}
# The pid of the running vigil whose command line contains $1.
vigil_matching() {
  for d in /proc/[0-9]*; do
    [ "$(readlink "$d/exe" 2>/dev/null)" = $VIGIL ] || continue
    case "$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null)" in *"$1"*) echo "${d#/proc/}" ;; esac
  done
}
none_matching() { [ -z "$(procs_matching "$1")" ]; }

# Job leaves (`<job>.<pid>-<start>`) anywhere in the hierarchy.
leaves_left() { find $CG -mindepth 1 -type d -name '*.[0-9]*-[0-9]*' 2>/dev/null; }

# enable_down DIR...: hand cpu, memory and pids down from each group (as a manager would).
enable_down() {
  for d in "$@"; do
    mkdir -p "$d"
    echo "+cpu +memory +pids" > "$d/cgroup.subtree_control"
  done
}

# Starts vigil in the placement: the process moves into $ENTER (falling back to the
# supervisor leaf vigil made there once the group is split, as systemd's DelegateSubgroup
# would), drops to $AS_USER if set, then execs vigil, so the pid stays vigil's.
# Single-quotes each argument for `su -c`.
quote_args() {
  for a in "$@"; do
    printf "'%s' " "$(printf '%s' "$a" | sed "s/'/'\\\\''/g")"
  done
}
vig() {
  if [ -n "$AS_USER" ]; then
    sh -c 'echo $$ > "$1/cgroup.procs" 2>/dev/null || echo $$ > "$1/supervisor/cgroup.procs"
           exec su -s /bin/sh "$2" -c "exec $3"' enter "$ENTER" "$AS_USER" \
      "$(quote_args $VIGIL --data-dir "$DD" "$@")"
  else
    sh -c 'echo $$ > "$1/cgroup.procs" 2>/dev/null || echo $$ > "$1/supervisor/cgroup.procs"; shift
           exec "$@"' enter "$ENTER" $VIGIL --data-dir "$DD" "$@"
  fi
}

# One read of 300 MB from /dev/zero into dd's buffer: every page is touched and held.
HOG='{"cmd":"dd if=/dev/zero of=/dev/null bs=300M count=1"}'
STORM='{"cmd":"i=0; while [ $i -lt 40 ]; do sleep 1 & i=$((i+1)); done; wait"}'

# limit_strength LIMIT STRENGTH: doctor's JSON says LIMIT is held with STRENGTH.
limit_strength() {
  compact /tmp/doctor.json | grep -o '{[^{}]*}' | grep "\"limit\":\"$1\"" | grep -q "\"strength\":\"$2\""
}

scenario_doctor() {
  vig doctor --json > /tmp/doctor.json 2>&1
  vig doctor > /tmp/doctor.txt 2>&1
  cat /tmp/doctor.txt
  check doctor_placement "placement $EXPECT_PLACEMENT" has /tmp/doctor.json "\"placement\":\"$EXPECT_PLACEMENT\""
  check doctor_text_placement "text names $EXPECT_PLACEMENT" grep -q "placement: *$EXPECT_PLACEMENT" /tmp/doctor.txt
  if [ -n "$EXPECT_KERNEL_LIMITS" ]; then
    check doctor_memory_kernel "memory held by the kernel" limit_strength memory kernel
    check doctor_pids_kernel "pids held by the kernel" limit_strength pids kernel
  else
    check doctor_fix_line "prints the systemd-run fix" grep -q 'systemd-run --user --scope -p Delegate=yes -- vigil' /tmp/doctor.txt
  fi
}

scenario_hog_is_real() {
  # Without a limit the hog's peak shows it really holds its memory.
  vig run shell --args "$HOG" --memory 1G --json > /tmp/hog_free.json 2>&1
  peak=$(compact /tmp/hog_free.json | sed -n 's/.*"memory_peak_bytes":\([0-9]*\).*/\1/p')
  check hog_allocates "peak ${peak:-none} bytes > 250 MB" [ "${peak:-0}" -gt 250000000 ]
}

scenario_oom() {
  vig run shell --args "$HOG" --memory 16M --json > /tmp/oom.json 2>&1
  check_json memory_oom_killed /tmp/oom.json '"status":"oom_killed"'
  # Pure cgroup v2: the job's root process is born in its leaf (clone3 CLONE_INTO_CGROUP),
  # never migrated there.
  check_json spawn_born_in_leaf /tmp/oom.json '"placement":"clone3_vfork_into_cgroup"'
}

scenario_pids() {
  vig run shell --args "$STORM" --pids 16 --timeout 20s --json > /tmp/pids.json 2>&1
  check_json pids_limit_hit /tmp/pids.json '"pids_limit_hit":true'
}

scenario_escapes() {
  # setsid, a double fork and a signal-ignoring process, past the wall deadline.
  vig run shell --args '{"cmd":"setsid sleep 4001 & (sleep 4002 &) ; sh -c \"trap \\\"\\\" TERM INT HUP; sleep 4003\""}' \
    --timeout 1s --json > /tmp/escape.json 2>&1
  check_json escape_timed_out /tmp/escape.json '"status":"timed_out"'
  check escape_none_left "no sleep 400[123] left" none_matching "sleep 400"
  # The root exits at once and leaves orphans behind: they die with the job.
  vig run shell --args '{"cmd":"setsid sleep 4004 & (sleep 4005 &) ; exit 0"}' --json > /tmp/orphans.json 2>&1
  check orphans_none_left "no sleep 400[45] left" none_matching "sleep 400"
}

scenario_leaves_gone() {
  left=$(leaves_left)
  check leaves_gone "left: ${left:-none}" [ -z "$left" ]
}

scenario_restart_after_kill9() {
  vig run shell --args '{"cmd":"setsid sleep 4010 & sleep 4011"}' --json > /tmp/k9.json 2>&1 &
  bg=$!
  n=0
  while [ -z "$(procs_matching 'sleep 4011')" ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
  pid=$(vigil_matching 'sleep 4011')
  echo "killing vigil $pid mid-job"
  kill -9 $pid
  wait $bg
  # The job's processes outlive vigil: the kernel does not kill a group whose owner died.
  vig run shell --args '{"cmd":"true"}' --json > /tmp/restart.json 2>&1
  vig jobs --json > /tmp/jobs.json 2>&1
  check_json kill9_interrupted /tmp/jobs.json '"status":"interrupted"'
  check kill9_processes_killed "no sleep 401x left" none_matching "sleep 401"
}

# three_hogs TAG: three vigil CLIs run the memory hog under --memory 16M at once, each with a
# data dir of its own (this is about sharing the cgroup); sets ok to how many ended oom_killed.
three_hogs() {
  bgs=
  for i in 1 2 3; do
    DD=$DD-$1$i vig run shell --args "$HOG" --memory 16M --json > /tmp/$1$i.json 2>&1 &
    bgs="$bgs $!"
  done
  wait $bgs
  ok=0
  for i in 1 2 3; do
    if has /tmp/$1$i.json '"status":"oom_killed"'; then ok=$((ok + 1)); else compact /tmp/$1$i.json | head -c 1500; echo; fi
    rm -rf "$DD-$1$i"
  done
}

scenario_parallel() {
  # `vigil serve` splits a fresh group; while it runs, three CLIs started in the same group
  # find it split, join its supervisor leaf and each hold their own memory limit.
  # (a data dir of its own: the server holds its log's writer lock)
  DD=$DD-serve vig serve --socket /tmp/$PLACEMENT.sock > /tmp/serve.log 2>&1 &
  serve_bg=$!
  n=0
  while [ ! -S /tmp/$PLACEMENT.sock ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
  three_hogs p
  check parallel_all_held "$ok of 3 oom_killed next to serve" [ $ok -eq 3 ]
  vig call health --socket /tmp/$PLACEMENT.sock --json > /tmp/health.json 2>&1
  check parallel_serve_alive "serve answers after the CLIs" has /tmp/health.json '"status":"ok"' ||
    { echo "serve:"; cat /tmp/serve.log; echo "call:"; cat /tmp/health.json; }
  kill -TERM "$(vigil_matching "$PLACEMENT.sock")"
  wait $serve_bg
  rm -rf /tmp/$PLACEMENT.sock /tmp/$PLACEMENT.sock.lock "$DD"-serve
}

scenario_simultaneous_start() {
  # Three vigil processes enter one fresh delegated group at the same moment, before any has
  # split it: none fails, and each job's memory limit is held (by a split group, or by the
  # placement a vigil falls back to when it sees another process in the group).
  three_hogs s
  check simultaneous_all_held "$ok of 3 oom_killed" [ $ok -eq 3 ]
}

# The cgroup limits' checks run without the sandbox: this kernel's Landlock (6.1: ABI 2) holds
# no signal scoping and no truncate rule, which scenario_sandbox checks on its own.
scenario_require_enforcement() {
  vig run shell --args '{"cmd":"true"}' --memory 64M --pids 16 --sandbox off --require-enforcement --json > /tmp/req.json 2>&1
  if [ -n "$EXPECT_KERNEL_LIMITS" ]; then
    check_json require_enforcement /tmp/req.json '"status":"completed"'
  else
    check_json require_enforcement /tmp/req.json '"status":"rejected"'
  fi
}

scenario_warning_line() {
  vig run shell --args '{"cmd":"true"}' --memory 64M --sandbox off > /tmp/warn.txt 2>&1
  if [ -n "$EXPECT_KERNEL_LIMITS" ]; then
    check warning_line "no warning where held" sh -c '! grep -qi "not held" /tmp/warn.txt'
  else
    check warning_line "names memory" grep -qi "memory.*not held\|not held.*memory" /tmp/warn.txt
  fi
}

# The sandbox on this kernel: Landlock's file rules hold (ABI 1+), so a `workspace` job cannot
# write outside its root; signal scoping (ABI 6) and truncate (ABI 3) are not held, and are
# named; `strict` holds the network rule by seccomp alone (no Landlock TCP rules before ABI 4);
# --require-enforcement refuses a job whose rules are not all held.
scenario_sandbox() {
  vig doctor --json > /tmp/sbx-doctor.json 2>&1
  abi=$(compact /tmp/sbx-doctor.json | sed -n 's/.*"landlock_abi_kernel":\([0-9]*\).*/\1/p')
  result sandbox_landlock_abi PASS "Landlock ABI ${abi:-unknown} on $(uname -r)"
  mkdir -p /tmp/sbx-root /tmp/sbx-out
  rm -f /tmp/sbx-out/escaped
  vig run shell --root /tmp/sbx-root --sandbox workspace \
    --args '{"cmd":"echo x > /tmp/sbx-out/escaped; echo in > inside; cat inside"}' --json > /tmp/sbx.json 2>/tmp/sbx.err
  if [ "${abi:-0}" -ge 1 ]; then
    check sandbox_write_refused "no file written outside the root" [ ! -e /tmp/sbx-out/escaped ]
    check_json sandbox_write_held /tmp/sbx.json '"held":true,"limit":"sandbox.write","mechanism":"Landlock:[^"]*","not_held_reason":null,"requested":"workspace","strength":"kernel"'
  else
    check sandbox_write_refused "no Landlock: the write lands, and the record says so" [ -e /tmp/sbx-out/escaped ]
    check_json sandbox_write_held /tmp/sbx.json '"held":false,"limit":"sandbox.write"'
  fi
  check_json sandbox_write_inside /tmp/sbx.json '"stdout":"in\\n"'
  # A root job's terminals: a devpts instance of its own mounted over the guest's /dev/pts
  # (two devpts mounts there in its mountinfo, one in the guest's), holding only its ptmx.
  vig run shell --root /tmp/sbx-root --sandbox workspace \
    --args '{"cmd":"grep -c \" /dev/pts \" /proc/self/mountinfo; ls /dev/pts"}' --json > /tmp/sbx-pts.json 2>&1
  if [ "${abi:-0}" -ge 1 ]; then
    check_json sandbox_terminals_held /tmp/sbx-pts.json '"held":true,"limit":"sandbox.terminals"'
    check_json sandbox_terminals_own /tmp/sbx-pts.json '"stdout":"2\\nptmx\\n"'
  else
    check_json sandbox_terminals_held /tmp/sbx-pts.json '"held":false,"limit":"sandbox.terminals"'
    result sandbox_terminals_own PASS "no Landlock: no terminals of its own"
  fi
  # Another mount of the guest's terminals, bound into the root: detached in the job's own
  # namespace, so the job finds the empty directory beneath it.
  mkdir -p /tmp/sbx-root/bound-pts
  mount --bind /dev/pts /tmp/sbx-root/bound-pts
  vig run shell --root /tmp/sbx-root --sandbox workspace \
    --args '{"cmd":"ls -A /tmp/sbx-root/bound-pts | wc -l"}' --json > /tmp/sbx-pts2.json 2>&1
  umount /tmp/sbx-root/bound-pts
  if [ "${abi:-0}" -ge 1 ]; then
    check_json sandbox_terminals_other_mount /tmp/sbx-pts2.json '"stdout":"0\\n"'
    check_json sandbox_terminals_other_held /tmp/sbx-pts2.json '"held":true,"limit":"sandbox.terminals"'
  else
    check_json sandbox_terminals_other_mount /tmp/sbx-pts2.json '"held":false,"limit":"sandbox.terminals"'
    result sandbox_terminals_other_held PASS "no Landlock: no terminals of its own"
  fi
  if [ "${abi:-0}" -lt 6 ]; then
    check_json sandbox_signal_not_held /tmp/sbx.json '"held":false,"limit":"sandbox.signal"'
  else
    check_json sandbox_signal_not_held /tmp/sbx.json '"held":true,"limit":"sandbox.signal"'
  fi
  vig run shell --root /tmp/sbx-root --sandbox strict --args '{"cmd":"true"}' > /tmp/sbx-strict.txt 2>&1
  vig run shell --root /tmp/sbx-root --sandbox strict --args '{"cmd":"true"}' --json > /tmp/sbx-strict.json 2>&1
  if [ "${abi:-0}" -lt 4 ]; then
    check_json sandbox_network_seccomp /tmp/sbx-strict.json '"held":true,"limit":"sandbox.network","mechanism":"seccomp:[^"]*AF_UNIX","not_held_reason":null'
  else
    check_json sandbox_network_seccomp /tmp/sbx-strict.json '"held":true,"limit":"sandbox.network","mechanism":"seccomp:[^"]*Landlock[^"]*"'
  fi
  if [ "${abi:-0}" -lt 6 ]; then
    check sandbox_warning_line "names the signal rule" grep -q "warning: sandbox.signal rule of sandbox strict not held" /tmp/sbx-strict.txt
    vig run shell --root /tmp/sbx-root --sandbox workspace --require-enforcement --args '{"cmd":"true"}' --json > /tmp/sbx-req.json 2>&1
    check_json sandbox_require_refused /tmp/sbx-req.json '"status":"rejected"'
  else
    check sandbox_warning_line "no sandbox warning where all is held" sh -c '! grep -q "warning: sandbox" /tmp/sbx-strict.txt'
    result sandbox_require_refused PASS "every rule held: nothing to refuse"
  fi
}

# A job as another user on this kernel: born in its leaf (clone3 into the cgroup2 leaf), then
# switched to uid 65534 (no passwd entry here: its own group, no others), with its memory limit
# held; it cannot signal vigil, which finishes the job.
scenario_user() {
  vig run shell --user 65534 --sandbox off --memory 64M \
    --args '{"cmd":"id -u; kill -9 $PPID 2>/dev/null && echo killed || echo refused"}' --json > /tmp/user.json 2>&1
  result user_detail PASS "$(compact /tmp/user.json | grep -o '"error":"[^"]*"\|"status":"[^"]*"\|"stdout":"[^"]*"\|"stderr":"[^"]*"' | tr '\n' ' ')"
  check_json user_status /tmp/user.json '"status":"completed"'
  check_json user_uid_and_kill /tmp/user.json '"stdout":"65534\\nrefused\\n"'
  check_json user_memory_held /tmp/user.json '"held":true,"limit":"memory"'
  check_json user_run_as /tmp/user.json '"uid":65534'
}

# File jobs as another user on this kernel: a thread of vigil's switches only its own
# file-system ids (setgroups, setfsgid, setfsuid) to uid 65534, so the kernel checks that
# user's permissions on every path: a world-readable file is read, a root-only one refused,
# a new file in a directory 65534 owns is 65534's, and a write where it may not is refused.
scenario_user_files() {
  R=/tmp/fu-root
  rm -rf $R
  mkdir -p $R/mine
  chmod 755 $R
  echo "for all" > $R/public.txt
  chmod 644 $R/public.txt
  echo "root only" > $R/private.txt
  chmod 600 $R/private.txt
  chown 65534:65534 $R/mine
  vig run file.read --user 65534 --root $R --args '{"path":"public.txt"}' --json > /tmp/fu-read.json 2>&1
  check_json user_file_read /tmp/fu-read.json '"stdout":"forall\\n"'
  vig run file.read --user 65534 --root $R --args '{"path":"private.txt"}' --json > /tmp/fu-private.json 2>&1
  check_json user_file_read_refused /tmp/fu-private.json '"error":"[^,]*Permissiondenied'
  vig run file.write --user 65534 --root $R --args '{"path":"mine/new.txt","content":"by 65534"}' --json > /tmp/fu-write.json 2>&1
  owner=$(ls -ln $R/mine/new.txt 2>/dev/null | awk '{print $3":"$4}')
  check user_file_write_owner "new file owned by $owner: $(compact /tmp/fu-write.json | head -c 300)" [ "$owner" = 65534:65534 ]
  vig run file.write --user 65534 --root $R --args '{"path":"planted.txt","content":"x"}' --json > /tmp/fu-plant.json 2>&1
  check user_file_write_refused "$(compact /tmp/fu-plant.json | grep -o '"error":"[^,]*')" \
    sh -c "[ ! -e $R/planted.txt ] && ! grep -q '\"status\": *\"completed\"' /tmp/fu-plant.json"
}

# Everything a placement where the kernel holds the limits must show.
held_suite() {
  scenario_doctor
  scenario_oom
  scenario_pids
  scenario_escapes
  scenario_restart_after_kill9
  scenario_leaves_gone
}

begin() {
  # Each log preallocates 64 MiB segments in the VM's RAM-backed /tmp: drop the last ones.
  [ -n "$DD" ] && rm -rf "$DD"
  PLACEMENT=$1 EXPECT_PLACEMENT=$2
  DD=/tmp/data-$PLACEMENT
  mkdir -p "$DD"
  [ -n "$AS_USER" ] && chown $UID_USER:$UID_USER "$DD"
  echo "== placement $PLACEMENT (at $(cut -d' ' -f1 /proc/uptime) s)"
}

# --- root in the root cgroup (exempt from the no-internal-process rule) ---
AS_USER= ENTER=$CG EXPECT_KERNEL_LIMITS=1
begin root_cgroup root_cgroup
scenario_hog_is_real
held_suite
scenario_require_enforcement
scenario_warning_line
scenario_sandbox
scenario_user
scenario_user_files

# --- vigil alone in a delegated service group (systemd Delegate=yes) ---
enable_down $CG/system.slice
mkdir -p $CG/system.slice/vigil.service
ENTER=$CG/system.slice/vigil.service
begin delegated_service delegated
held_suite
mkdir -p $CG/system.slice/vigil-par.service
ENTER=$CG/system.slice/vigil-par.service
scenario_parallel
mkdir -p $CG/system.slice/vigil-sim.service
ENTER=$CG/system.slice/vigil-sim.service
scenario_simultaneous_start
scenario_leaves_gone

# --- root in a login session shared with other processes ---
enable_down $CG/user.slice $CG/user.slice/user-0.slice
S=$CG/user.slice/user-0.slice/session-1.scope
mkdir -p $S
sh -c 'echo $$ > "$1/cgroup.procs"; exec sleep 100000' session "$S" &
session_pid=$!
ENTER=$S
begin root_session shared_root
held_suite
kill $session_pid

# --- an unprivileged user in a delegated scope (systemd-run --user --scope -p Delegate=yes) ---
echo "vu:x:$UID_USER:$UID_USER::/tmp:/bin/sh" >> /etc/passwd
echo "vu:x:$UID_USER:" >> /etc/group
U=$CG/user.slice/user-$UID_USER.slice/user@$UID_USER.service/app.slice
enable_down $CG/user.slice/user-$UID_USER.slice $CG/user.slice/user-$UID_USER.slice/user@$UID_USER.service $U
for scope in run-u1.scope run-u2.scope; do
  mkdir -p $U/$scope
  chown $UID_USER:$UID_USER $U/$scope $U/$scope/cgroup.procs $U/$scope/cgroup.subtree_control $U/$scope/cgroup.threads
done
AS_USER=vu ENTER=$U/run-u1.scope
begin user_delegated delegated
held_suite
ENTER=$U/run-u2.scope
scenario_parallel
scenario_leaves_gone

# --- an unprivileged user without delegation (a session scope it does not own) ---
S2=$CG/user.slice/user-$UID_USER.slice/session-2.scope
mkdir -p $S2
AS_USER=vu ENTER=$S2 EXPECT_KERNEL_LIMITS=
begin user_undelegated undelegated
scenario_doctor
scenario_escapes
scenario_require_enforcement
scenario_warning_line

echo "scenario failures: $failures"
[ $failures -eq 0 ]
