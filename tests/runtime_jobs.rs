//! The runtime end to end: jobs and refusals recorded in the WAL, sessions, the index rebuilt
//! on reopen, and a runtime killed mid-job (SIGKILL) whose job is `interrupted` on restart,
//! with its processes dead and its cgroup leaf gone, in every cgroup mode this host can give.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{vigil_bin, TempDir};
use serde_json::{json, Value};
use vigil_runtime::exec::Limits;
use vigil_runtime::guard::Thresholds;
use vigil_runtime::model::{JobState, JobStatus};
use vigil_runtime::runtime::{
    CancelOutcome, JobIndex, JobRequest, Runtime, RuntimeOptions, INTERRUPTED_REASON,
};
use vigil_runtime::sample::Percent;

fn options(dir: &Path) -> RuntimeOptions {
    let mut o = RuntimeOptions::new(dir);
    o.sample_interval = Duration::from_millis(50);
    o
}

fn shell(cmd: &str, root: &Path) -> JobRequest {
    JobRequest {
        capability: "shell".into(),
        args: json!({ "cmd": cmd }),
        limits: Limits {
            timeout: Some(Duration::from_secs(20)),
            ..Limits::default()
        },
        root: root.to_path_buf(),
        session: None,
        dry_run: false,
        require_enforcement: false,
    }
}

#[test]
fn a_job_is_recorded_from_start_to_finish_with_telemetry_and_survives_reopen() {
    let dir = TempDir::new("rt-jobs");
    let rt = Runtime::open(options(dir.path())).unwrap();
    let out = rt.run(&shell("echo hello; exit 4", dir.path())).unwrap();
    assert_eq!(out.result.status.as_str(), "failed");
    assert_eq!(out.result.exit_code, Some(4));
    assert!(!out.succeeded());
    let lsn = out.lsn.expect("finished record has an LSN");
    assert!(
        rt.wal().durable_lsn() >= lsn,
        "acknowledged only once durable"
    );
    let json = out.to_json();
    assert_eq!(json["job_id"], json!(out.job_id));
    assert_eq!(json["lsn"], json!(lsn));
    assert_eq!(json["stdout"], "hello\n");

    let detail = rt.job_detail(out.job_id).unwrap();
    assert_eq!(detail["args"]["cmd"], "echo hello; exit 4");
    assert_eq!(detail["result"]["exit_code"], 4);
    assert_eq!(detail["result"]["stdout"], "hello\n");
    assert_eq!(detail["limits"]["timeout_ms"], 20000);
    assert!(
        detail["telemetry_before"]["memory"]["total_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(detail["telemetry_after"]["seq"].as_u64().is_some());
    let first_id = out.job_id;
    drop(rt);

    let rt = Runtime::open(options(dir.path())).unwrap();
    let jobs = rt.jobs(None, None);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status.as_str(), "failed");
    assert!(rt.recovery().interrupted.is_empty());
    let next = rt.run(&shell("true", dir.path())).unwrap();
    assert_eq!(next.job_id, first_id + 1, "ids continue after reopen");
    assert!(next.succeeded());
}

#[test]
fn a_last_job_has_its_end_and_the_closing_checkpoint_made_durable_by_one_sync() {
    let dir = TempDir::new("rt-last");
    let rt = Runtime::open(options(dir.path())).unwrap();
    let syncs = rt.wal().stats().syncs;
    let out = rt.run_last(&shell("echo last", dir.path())).unwrap();
    assert!(out.succeeded());
    let lsn = out.lsn.expect("finished record has an LSN");
    let wal = rt.wal();
    assert_eq!(wal.last_lsn(), lsn + 1, "the checkpoint follows the end");
    assert_eq!(
        wal.durable_lsn(),
        lsn + 1,
        "acknowledged with the checkpoint durable"
    );
    assert_eq!(
        wal.stats().syncs,
        syncs + 2,
        "one sync for the start, one for the end and the checkpoint"
    );
    wal.checkpoint().unwrap();
    assert_eq!(
        wal.stats().syncs,
        syncs + 2,
        "the close synced the log again"
    );
    assert_eq!(
        wal.last_lsn(),
        lsn + 1,
        "the close appended a second checkpoint"
    );
    drop(rt);

    let rt = Runtime::open(options(dir.path())).unwrap();
    assert_eq!(rt.wal().recovery().scan.fault, None);
    let jobs = rt.jobs(None, None);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status.as_str(), "completed");
    // More jobs after a last one are allowed: its checkpoint is then a frame in the middle.
    let next = rt.run(&shell("true", dir.path())).unwrap();
    assert_eq!(next.job_id, out.job_id + 1);
}

#[test]
fn guard_refusal_and_bad_requests_are_rejected_jobs_in_the_log() {
    let dir = TempDir::new("rt-reject");
    let mut o = options(dir.path());
    o.thresholds = Thresholds {
        memory_available_min: Some(Percent::FULL),
        ..Thresholds::default()
    };
    let rt = Runtime::open(o).unwrap();
    let refused = rt
        .run(&shell("touch should-not-exist", dir.path()))
        .unwrap();
    assert_eq!(refused.result.status.as_str(), "rejected");
    let reason = refused.result.error.clone().unwrap();
    assert!(reason.contains("memory available"), "{reason}");
    assert!(!dir.path().join("should-not-exist").exists());
    let detail = rt.job_detail(refused.job_id).unwrap();
    assert_eq!(detail["result"]["status"], "rejected");
    assert_eq!(detail["result"]["error"], json!(reason));

    let mut bad = shell("x", dir.path());
    bad.capability = "no.such".into();
    let unknown = rt.run(&bad).unwrap();
    assert_eq!(unknown.result.status.as_str(), "rejected");
    let mut bad_args = shell("x", dir.path());
    bad_args.args = json!({"cmd": 42});
    assert_eq!(
        rt.run(&bad_args).unwrap().result.status.as_str(),
        "rejected"
    );
    assert_eq!(rt.jobs(None, JobState::from_name("rejected")).len(), 3);
    let m = rt.job_metrics();
    assert_eq!(m.guard_refusals, 1, "only the first was the guard's");
    assert_eq!(m.jobs[&("shell".to_string(), JobStatus::Rejected)], 2);
    assert_eq!(
        m.jobs[&("unknown".to_string(), JobStatus::Rejected)],
        1,
        "an unregistered name is counted as unknown"
    );
    assert!(m.durations.is_empty(), "nothing ran");
}

#[test]
fn without_a_sampling_thread_the_guard_judges_the_jobs_own_start_sample() {
    // A one-shot run's runtime: no sampling thread, so no sample before its job. The job's
    // start sample is taken first: the guard judges it (not "no telemetry"), a refused job's
    // record carries it, and a job that runs carries it as telemetry_before, with the end sample
    // next: two samples per job.
    let dir = TempDir::new("rt-no-thread");
    let mut o = options(dir.path());
    o.background_sampling = false;
    o.thresholds = Thresholds {
        memory_available_min: Some(Percent::FULL),
        refuse_without_sample: true,
        ..Thresholds::default()
    };
    let rt = Runtime::open(o).unwrap();
    assert!(rt.telemetry().latest().is_none(), "nothing sampled at open");
    let refused = rt.run(&shell("true", dir.path())).unwrap();
    assert_eq!(refused.result.status.as_str(), "rejected");
    let reason = refused.result.error.clone().unwrap();
    assert!(reason.contains("memory available"), "{reason}");
    let detail = rt.job_detail(refused.job_id).unwrap();
    assert_eq!(detail["telemetry_before"]["seq"], json!(1), "{detail}");
    drop(rt);

    let mut o = options(dir.path());
    o.background_sampling = false;
    let rt = Runtime::open(o).unwrap();
    let out = rt.run_last(&shell("true", dir.path())).unwrap();
    assert_eq!(out.result.status.as_str(), "completed");
    let detail = rt.job_detail(out.job_id).unwrap();
    assert_eq!(detail["telemetry_before"]["seq"], json!(1), "{detail}");
    assert_eq!(detail["telemetry_after"]["seq"], json!(2), "{detail}");
    assert_eq!(
        rt.telemetry().latest().unwrap().seq,
        1,
        "the start was published"
    );
    drop(rt);

    // That start sample's CPU share is since boot, not the load now: a CPU threshold any
    // running machine exceeds since boot does not refuse on it.
    let mut o = options(dir.path());
    o.background_sampling = false;
    o.thresholds = Thresholds {
        cpu_busy_max: Percent::new(1),
        ..Thresholds::default()
    };
    let rt = Runtime::open(o).unwrap();
    let out = rt.run_last(&shell("true", dir.path())).unwrap();
    assert_eq!(
        out.result.status.as_str(),
        "completed",
        "{:?}",
        out.result.error
    );
}

#[test]
fn a_cancelled_job_ends_interrupted_with_the_reason_and_is_counted() {
    let dir = TempDir::new("rt-cancel");
    let rt = std::sync::Arc::new(Runtime::open(options(dir.path())).unwrap());
    let worker = {
        let rt = rt.clone();
        let root = dir.path().to_path_buf();
        std::thread::spawn(move || rt.run(&shell("sleep 30 & sleep 30", &root)).unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let job_id = loop {
        if let Some(&id) = rt.active_jobs().first() {
            if rt.job(id).is_some_and(|j| j.status.as_str() == "running") {
                break id;
            }
        }
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    let asked = Instant::now();
    assert_eq!(
        rt.cancel(job_id, "cancelled by test").unwrap(),
        CancelOutcome::Cancelled
    );
    let out = worker.join().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "cancel was prompt"
    );
    assert_eq!(out.result.status.as_str(), "interrupted");
    let error = out.result.error.clone().unwrap();
    assert!(error.starts_with("cancelled by test"), "{error}");
    assert_eq!(rt.job(job_id).unwrap().status.as_str(), "interrupted");
    assert!(rt.active_jobs().is_empty());
    assert_eq!(
        rt.cancel(job_id, "again").unwrap(),
        CancelOutcome::AlreadyEnded
    );
    assert!(rt.cancel(job_id + 100, "none").is_err());
    let m = rt.job_metrics();
    assert_eq!(m.jobs[&("shell".to_string(), JobStatus::Interrupted)], 1);
    assert_eq!(m.durations["shell"].count(), 1);
}

#[test]
fn secrets_in_arguments_never_reach_the_log() {
    let dir = TempDir::new("rt-secret");
    let rt = Runtime::open(options(dir.path())).unwrap();
    let mut req = shell("echo $API_TOKEN", dir.path());
    req.args = json!({"cmd": "echo $API_TOKEN", "env": {"API_TOKEN": "tok-9f8e7d"}});
    let out = rt.run(&req).unwrap();
    assert_eq!(
        out.result.stdout.bytes, b"tok-9f8e7d\n",
        "the job itself gets it"
    );
    let detail = rt.job_detail(out.job_id).unwrap().to_string();
    assert!(!detail.contains("tok-9f8e7d"), "{detail}");
    drop(rt);
    // And not anywhere in the log's bytes either.
    for entry in std::fs::read_dir(dir.path().join("wal")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(memchr::memmem::find(&bytes, b"tok-9f8e7d").is_none());
    }
}

#[test]
fn sessions_group_jobs_and_closed_or_unknown_sessions_refuse_work() {
    let dir = TempDir::new("rt-sessions");
    let rt = Runtime::open(options(dir.path())).unwrap();
    let s = rt.create_session(&json!({"agent": "test"})).unwrap();
    let mut req = shell("true", dir.path());
    req.session = Some(s.session.clone());
    assert!(rt.run(&req).unwrap().succeeded());
    assert_eq!(rt.jobs(Some(&s.session), None).len(), 1);
    assert_eq!(rt.session(&s.session).unwrap().jobs, 1);
    rt.close_session(&s.session, "done").unwrap();
    assert_eq!(rt.run(&req).unwrap().result.status.as_str(), "rejected");
    req.session = Some("nope".into());
    assert_eq!(rt.run(&req).unwrap().result.status.as_str(), "rejected");
    drop(rt);
    let rt = Runtime::open(options(dir.path())).unwrap();
    let again = rt.session(&s.session).unwrap();
    assert!(again.closed_unix_ms.is_some());
    assert_eq!(again.meta["agent"], "test");
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if memchr::memmem::find(&cmdline, marker.as_bytes()).is_some() {
                found.push(pid);
            }
        }
    }
    found
}

fn doctor(mode: &str) -> Value {
    let out = Command::new(vigil_bin())
        .args(["doctor", "--json", "--cgroup-mode", mode])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Leaf directories of job `job_id` of the instance with pid `instance_pid` under every parent
/// the mode uses (other tests' runtimes have a job 1 too).
fn leaves_of(report: &Value, job_id: u64, instance_pid: u32) -> Vec<String> {
    let mut parents: Vec<String> = Vec::new();
    if let Some(p) = report["cgroup"]["unified_parent"].as_str() {
        parents.push(p.into());
    }
    if let Some(v1) = report["cgroup"]["v1_parents"].as_object() {
        parents.extend(v1.values().filter_map(|p| p.as_str().map(str::to_string)));
    }
    // Leaves are named `<data-dir token>-<job id>.<instance pid>-<start time>`.
    let suffix = format!("-{job_id}");
    let instance = format!("{instance_pid}-");
    parents
        .iter()
        .filter_map(|p| std::fs::read_dir(p).ok())
        .flat_map(|d| d.flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.split_once('.')
                .is_some_and(|(job, owner)| job.ends_with(&suffix) && owner.starts_with(&instance))
        })
        .collect()
}

fn kill_mid_job_then_recover(mode: &str) {
    let dir = TempDir::new(&format!("rt-crash-{mode}"));
    let data = dir.path().join("data");
    let marker = format!("30{}.{}", std::process::id(), mode.len());
    let mut child = Command::new(vigil_bin())
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "run",
            "shell",
            "--timeout",
            "60s",
        ])
        .args(["--cgroup-mode", mode, "--args"])
        .arg(json!({ "cmd": format!("(setsid sleep {marker} &); sleep {marker}") }).to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the job is durably started and its processes run.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let running = JobIndex::load_dir(&data)
            .map(|i| i.jobs.values().any(|j| j.status.as_str() == "running"))
            .unwrap_or(false);
        if running && processes_with(&marker).len() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{mode}: job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let instance_pid = child.id();
    child.kill().unwrap(); // SIGKILL: no cleanup code of vigil runs.
    child.wait().unwrap();

    // Restart: a new runtime in this mode records the interruption and sweeps the leftovers.
    let mut o = options(&data);
    o.executor.host.force_mode = vigil_runtime::exec::CgroupMode::parse(mode);
    let rt = Runtime::open(o).unwrap();
    assert_eq!(rt.recovery().interrupted, vec![1], "{mode}");
    let job = rt.job(1).unwrap();
    assert_eq!(job.status.as_str(), "interrupted");
    let detail = rt.job_detail(1).unwrap();
    assert_eq!(detail["result"]["error"], INTERRUPTED_REASON);
    // Its end was never logged, but the user it ran as was, with its start.
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(detail["run_as"]["uid"], uid, "{detail}");
    let gone_by = Instant::now() + Duration::from_secs(5);
    while !processes_with(&marker).is_empty() && Instant::now() < gone_by {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        processes_with(&marker),
        Vec::<i32>::new(),
        "{mode}: job processes survived"
    );
    assert_eq!(
        leaves_of(&doctor(mode), 1, instance_pid),
        Vec::<String>::new(),
        "{mode}: leaf left behind; sweep removed {:?}, failed {:?}",
        rt.recovery().swept,
        rt.recovery().sweep_failed
    );
    drop(rt);
    // Recovering again changes nothing.
    let rt = Runtime::open(options(&data)).unwrap();
    assert!(rt.recovery().interrupted.is_empty());
    assert_eq!(rt.jobs(None, JobState::from_name("interrupted")).len(), 1);
}

#[test]
fn a_runtime_killed_mid_job_leaves_an_interrupted_job_and_nothing_running() {
    if !is_root() {
        eprintln!("skipped: killing jobs' cgroups needs root");
        return;
    }
    for mode in ["hybrid", "v1", "none"] {
        let report = doctor(mode);
        if report["cgroup"]["mode"] != json!(mode) {
            eprintln!(
                "skipped mode {mode}: this host gives {}",
                report["cgroup"]["mode"]
            );
            continue;
        }
        kill_mid_job_then_recover(mode);
    }
}

#[test]
fn a_secret_across_the_output_cut_and_over_long_arguments_are_logged_safely() {
    let dir = TempDir::new("rt-secret-cut");
    let rt = Runtime::open(options(dir.path())).unwrap();
    // 65 531 bytes of padding put the secret across the 64 KiB cut of the logged output.
    let mut req = shell(
        "head -c 65531 /dev/zero | tr '\\0' x; echo $API_TOKEN",
        dir.path(),
    );
    req.args = json!({
        "cmd": "head -c 65531 /dev/zero | tr '\\0' x; echo $API_TOKEN",
        "env": {"API_TOKEN": "hunter2-secret"},
        "stdin": "y".repeat(70_000),
    });
    let out = rt.run(&req).unwrap();
    assert_eq!(
        out.result.status.as_str(),
        "completed",
        "{:?}",
        out.result.error
    );
    let detail = rt.job_detail(out.job_id).unwrap();
    assert_eq!(detail["args"]["args_truncated"], true, "{}", detail["args"]);
    assert!(detail["args"]["bytes"].as_u64().unwrap() > 70_000);
    drop(rt);
    for entry in std::fs::read_dir(dir.path().join("wal")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            memchr::memmem::find(&bytes, b"hunte").is_none(),
            "no piece of the secret at the cut"
        );
    }
}

/// Runs `held` on a runtime of one slot and, once it runs, `queued`, which waits for the slot;
/// returns both jobs' threads once the second is queued.
fn hold_and_queue(
    rt: &std::sync::Arc<Runtime>,
    root: &Path,
    held: &'static str,
    queued: &'static str,
) -> (
    std::thread::JoinHandle<vigil_runtime::runtime::JobOutcome>,
    std::thread::JoinHandle<vigil_runtime::runtime::JobOutcome>,
) {
    let spawn = |cmd: &'static str| {
        let rt = rt.clone();
        let root = root.to_path_buf();
        std::thread::spawn(move || rt.run(&shell(cmd, &root)).unwrap())
    };
    let holder = spawn(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rt.jobs_running() == 0 {
        assert!(Instant::now() < deadline, "the first job never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    let waiter = spawn(queued);
    while rt.active_jobs().len() < 2 {
        assert!(Instant::now() < deadline, "the second job never queued");
        std::thread::sleep(Duration::from_millis(10));
    }
    (holder, waiter)
}

#[test]
fn without_a_sampling_thread_a_job_that_waits_for_a_slot_starts_its_span_after_the_wait() {
    // Its start sample is taken before the guard judges it; when it then waits for a slot, the
    // span is started again once it has one, after the job it waited for ended.
    let dir = TempDir::new("rt-no-thread-queue");
    let mut o = options(dir.path());
    o.background_sampling = false;
    o.concurrent_jobs_max = 1;
    let rt = std::sync::Arc::new(Runtime::open(o).unwrap());
    let (holder, queued) = hold_and_queue(&rt, dir.path(), "sleep 3", "true");
    let holder = holder.join().unwrap();
    let queued = queued.join().unwrap();
    assert_eq!(queued.result.status.as_str(), "completed");
    let held = rt.job_detail(holder.job_id).unwrap();
    let waited = rt.job_detail(queued.job_id).unwrap();
    let held_end = held["telemetry_after"]["seq"].as_u64().unwrap();
    let waited_start = waited["telemetry_before"]["seq"].as_u64().unwrap();
    assert!(
        waited_start > held_end,
        "the queued job's span started at sample {waited_start}, before the holder's end {held_end}"
    );
}

#[test]
fn a_queued_job_cancels_at_once_and_sessions_created_at_once_are_distinct() {
    let dir = TempDir::new("rt-queue-cancel");
    let mut o = options(dir.path());
    o.concurrent_jobs_max = 1;
    let rt = std::sync::Arc::new(Runtime::open(o).unwrap());
    let (holder, queued) = hold_and_queue(&rt, dir.path(), "sleep 3", "true");
    let queued_id = rt.active_jobs()[1];
    let asked = Instant::now();
    rt.cancel(queued_id, "cancelled by test").unwrap();
    let out = queued.join().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "did not wait for the slot: {:?}",
        asked.elapsed()
    );
    assert_eq!(out.result.status.as_str(), "rejected");
    assert!(out.result.error.unwrap().contains("before it started"));
    assert_eq!(holder.join().unwrap().result.status.as_str(), "completed");

    let ids: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..20)
                        .map(|_| rt.create_session(&json!({})).unwrap().session)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 160);
    assert_eq!(rt.sessions().len(), 160);
}

#[test]
fn telemetry_after_is_taken_at_the_job_end_and_its_cpu_delta_covers_the_job() {
    let dir = TempDir::new("rt-span");
    let rt = Runtime::open(options(dir.path())).unwrap();
    // Spins until the shell's own CPU time (utime + stime in /proc/self/stat, USER_HZ ticks)
    // reaches 50 ticks: half a second of CPU, however loaded the machine is (with a deadline
    // for a machine shared eight ways and more).
    const SPIN_TICKS: u64 = 50;
    let spin = format!(
        "while :; do read -r _ _ _ _ _ _ _ _ _ _ _ _ _ ut st _ < /proc/$$/stat; \
         [ $((ut + st)) -ge {SPIN_TICKS} ] && break; done"
    );
    let mut req = shell(&spin, dir.path());
    req.limits.timeout = Some(Duration::from_secs(300));
    let out = rt.run(&req).unwrap();
    assert_eq!(out.result.status.as_str(), "completed", "{:?}", out.result);
    let detail = rt.job_detail(out.job_id).unwrap();
    let (before, after) = (&detail["telemetry_before"], &detail["telemetry_after"]);
    let u = |v: &Value, what: &str| {
        v.as_u64()
            .unwrap_or_else(|| panic!("{what}: {v} in {detail}"))
    };

    // Two samples: the one at the start and a fresh one at the end.
    assert!(u(&after["seq"], "after.seq") > u(&before["seq"], "before.seq"));
    let (t0, t1) = (
        u(&before["timestamp_ns"], "before.timestamp_ns"),
        u(&after["timestamp_ns"], "after.timestamp_ns"),
    );
    assert!(t1 > t0);
    // The start sample stands alone: its CPU shares are since boot, and say so.
    let since_boot = u64::from(vigil_runtime::sample::flags::CPU_SINCE_BOOT);
    assert_eq!(u(&before["flags"], "before.flags") & since_boot, since_boot);
    assert!(before["cpu"]["busy_pct"].is_number(), "{before}");
    // The end sample's interval is exactly from the start sample to it (not from the sampler
    // thread's last tick, 50 ms before at most): it contains the whole job.
    let interval_ms = after["interval_ms"].as_f64().expect("after.interval_ms");
    assert!(
        (interval_ms * 1e6 - (t1 - t0) as f64).abs() < 1_000.0,
        "{interval_ms} ms vs {t0}..{t1}"
    );
    assert!(interval_ms + 1.0 >= out.result.wall_ms as f64);
    assert_eq!(u(&after["flags"], "after.flags") & since_boot, 0);

    // The machine's busy ticks between the two readings include every tick the job ran. The
    // job's CPU time in USER_HZ ticks (10 ms) is from its cgroup (or rusage); /proc/stat rounds
    // each of the aggregate line's fields down to a tick at each reading, so the busy delta may
    // fall short of the true figure by under one tick per busy field (user, nice, system,
    // irq, softirq, steal, guest, guest_nice: 8), and the busy share is rounded down to
    // 0.01 %.
    let job_cpu_ticks = match out.result.cpu_usage_us {
        Some(us) => us / 10_000,
        None => SPIN_TICKS,
    };
    assert!(
        job_cpu_ticks >= SPIN_TICKS - 1,
        "the job spun: {job_cpu_ticks} ticks"
    );
    let total_ticks = u(&after["cpu"]["total_ticks"], "after.cpu.total_ticks");
    let busy_bp = (after["cpu"]["busy_pct"]
        .as_f64()
        .expect("after.cpu.busy_pct")
        * 100.0)
        .round() as u64;
    let busy_ticks_at_most = ((busy_bp + 1) * total_ticks).div_ceil(10_000);
    const ROUNDING_TICKS: u64 = 8;
    assert!(
        busy_ticks_at_most + ROUNDING_TICKS >= job_cpu_ticks,
        "busy {busy_ticks_at_most} of {total_ticks} ticks during a job of {job_cpu_ticks} CPU ticks"
    );
}

/// The user a job ran as lives in the JSON of its owner and enforcement records, which the
/// log keeps beside the postcard records (frozen): a log written before that field existed
/// reads back whole, without it, and a job run now has it.
#[test]
fn a_job_logged_before_the_record_named_its_user_reads_back_without_one() {
    use vigil_runtime::model::Usage;
    use vigil_runtime::wal::log::{Wal, WalOptions};
    use vigil_runtime::wal::record::{kind, JobFinished, JobStarted};
    use vigil_runtime::wal::Record;
    let dir = TempDir::new("rt-old-enforcement");
    let wal = Wal::open(&RuntimeOptions::wal_dir(dir.path()), WalOptions::default()).unwrap();
    wal.append(&Record::JobStarted(JobStarted {
        job_id: 1,
        unix_ms: 1_700_000_000_000,
        capability: "shell",
        args_json: r#"{"cmd":"true"}"#,
        limits: Default::default(),
        session: None,
        root: Some("/tmp"),
        telemetry_before: &[],
    }))
    .unwrap();
    let old = json!({
        "job_id": 1,
        "enforcement": {"mode": "hybrid", "placement": "clone3_into_cgroup", "kill": "cgroup.kill",
                        "kill_complete": true, "accounting": "cpu.stat", "limits": []},
        "limits_not_held": [],
    });
    wal.append_raw(kind::JOB_ENFORCEMENT, old.to_string().as_bytes())
        .unwrap();
    wal.append(&Record::JobFinished(JobFinished {
        job_id: 1,
        unix_ms: 1_700_000_000_100,
        status: JobStatus::Completed,
        exit_code: Some(0),
        signal: None,
        usage: Usage::default(),
        stdout: b"",
        stdout_truncated: false,
        stderr: b"",
        stderr_truncated: false,
        error: None,
        telemetry_after: &[],
    }))
    .unwrap();
    wal.close().unwrap();

    let rt = Runtime::open(options(dir.path())).unwrap();
    let detail = rt.job_detail(1).unwrap();
    assert_eq!(detail["status"], "completed", "{detail}");
    assert_eq!(detail["enforcement"], old["enforcement"], "{detail}");
    assert!(detail["enforcement"].get("run_as").is_none(), "{detail}");
    assert_eq!(detail["run_as"], Value::Null, "{detail}");
    let now = rt.run(&shell("true", dir.path())).unwrap();
    let detail = rt.job_detail(now.job_id).unwrap();
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(detail["enforcement"]["run_as"]["uid"], uid, "{detail}");
    assert_eq!(
        detail["run_as"], detail["enforcement"]["run_as"],
        "{detail}"
    );
}
