//! Mode `none` (no cgroup: every non-root user without delegation) tells the truth: the job's
//! own peak memory, never vigil's; a CPU budget held to the millisecond by the supervisor, not
//! rounded to RLIMIT_CPU's whole seconds; an allocation refused by RLIMIT_AS reported as the
//! memory limit; and the job marker, by which vigil finds the job's processes, not settable by
//! the request. Mode `none` is forced, so these need no privilege.
mod exec_support;

use std::collections::BTreeMap;
use std::time::Duration;

use exec_support::{assert_nothing_left, config, limits, sh};
use serde_json::json;
use vigil_core::exec::capability::{CapabilityRegistry, JobContext};
use vigil_core::exec::host::CgroupMode;
use vigil_core::exec::job::Executor;
use vigil_core::exec::spawn::JOB_MARKER_ENV;
use vigil_core::model::JobStatus;

fn executor_none() -> Executor {
    Executor::new(config(Some(CgroupMode::None))).expect("mode none is always available")
}

fn job_id(test: &str) -> String {
    format!("t-none-{test}-{}", std::process::id())
}

/// python3, or `None` with the reason printed (a failure under CI, which installs it).
fn python3() -> Option<&'static str> {
    let ok = std::process::Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI needs python3");
        eprintln!("skipped: python3 not found");
        return None;
    }
    Some("python3")
}

#[test]
fn peak_memory_is_the_jobs_own_not_vigils() {
    let Some(py) = python3() else { return };
    // Make this process (vigil's side here) large first: its high-water mark must not leak
    // into the job's figure the way rusage's ru_maxrss carries it across exec.
    let ballast: Vec<u8> = vec![7u8; 256 << 20];
    std::hint::black_box(&ballast);
    let ex = executor_none();
    let small = ex.run_process(&job_id("peak-small"), &sh("echo hi"), &limits(5_000));
    assert_eq!(small.status, JobStatus::Completed, "{small:?}");
    // A job this short may end before any sample: then its peak is unknown, never vigil's.
    assert!(
        small.memory_peak_bytes.is_none_or(|p| p < 64 << 20),
        "echo's peak must be its own, not vigil's 256 MiB: {small:?}"
    );
    let big = ex.run_process(
        &job_id("peak-big"),
        &sh(&format!(
            "{py} -c 'x = bytearray(96 << 20); import time; time.sleep(0.5)'"
        )),
        &limits(10_000),
    );
    assert_eq!(big.status, JobStatus::Completed, "{big:?}");
    let peak = big.memory_peak_bytes.expect("measured");
    assert!(
        (96 << 20..256 << 20).contains(&peak),
        "a 96 MiB job peaks at 96 MiB or more, and not at vigil's 256 MiB: {peak}"
    );
    drop(ballast);
}

#[test]
fn cpu_budget_is_held_to_the_millisecond_not_rounded_to_seconds() {
    let ex = executor_none();
    for (cmd, what) in [
        ("while :; do :; done", "one spinner"),
        // Two spinners, one a child the root never waits for: the tree's CPU counts.
        (
            "sh -c 'while :; do :; done' & while :; do :; done",
            "two spinners",
        ),
    ] {
        let mut l = limits(20_000);
        l.cpu_time = Some(Duration::from_millis(300));
        let r = ex.run_process(&job_id("cpu"), &sh(cmd), &l);
        assert_eq!(r.status, JobStatus::TimedOut, "{what}: {r:?}");
        assert_eq!(r.limit_hit, Some("cpu_time"), "{what}: {r:?}");
        let used_ms = r.cpu_usage_us.expect("measured") / 1_000;
        // RLIMIT_CPU alone would have let it run a whole second (or two, with its backstop
        // margin); the supervisor stops it within a few polls of the budget.
        assert!(
            (300..600).contains(&used_ms),
            "{what}: used {used_ms} ms of a 300 ms budget: {r:?}"
        );
        let error = r.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("budget of 300 ms") && error.contains(&format!("({used_ms} ms used)")),
            "{what}: the error gives the real budget and use: {error}"
        );
        assert_nothing_left(&r, what);
    }
}

#[test]
fn an_allocation_refused_by_rlimit_as_is_reported_as_the_memory_limit() {
    let Some(py) = python3() else { return };
    let ex = executor_none();
    let mut l = limits(10_000);
    l.memory_bytes = Some(64 << 20);
    let r = ex.run_process(
        &job_id("rlimit-as"),
        &sh(&format!("{py} -c 'x = bytearray(300 << 20)'")),
        &l,
    );
    assert_eq!(r.limit_hit, Some("memory"), "{r:?}");
    assert_eq!(r.status, JobStatus::Failed, "refused, not killed: {r:?}");
    let error = r.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("memory limit of 64M") && error.contains("RLIMIT_AS"),
        "{error}"
    );
    // The same failure without a memory limit is not blamed on one.
    let r = ex.run_process(
        &job_id("no-limit"),
        &sh("echo 'Cannot allocate memory' >&2; exit 1"),
        &limits(5_000),
    );
    assert_eq!((r.status, r.limit_hit), (JobStatus::Failed, None), "{r:?}");
}

#[test]
fn a_request_cannot_set_the_job_marker() {
    let ex = executor_none();
    let marker = std::env::temp_dir().join(format!("vigil-marker-ran-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let cmd = format!("(setsid sleep 300 &); touch {}", marker.display());
    // Through the executor: a spec whose env names the marker.
    let mut spec = sh(&cmd);
    spec.env = BTreeMap::from([(JOB_MARKER_ENV.to_string(), "someone-else".to_string())]);
    let r = ex.run_process(&job_id("marker"), &spec, &limits(5_000));
    assert_eq!(r.status, JobStatus::Rejected, "{r:?}");
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.contains(JOB_MARKER_ENV)),
        "{r:?}"
    );
    // Through the capabilities, the way requests arrive.
    let l = limits(5_000);
    let root = std::env::temp_dir();
    let ctx = JobContext {
        executor: &ex,
        job_id: &job_id("marker-cap"),
        limits: &l,
        root: &root,
        cancel: None,
    };
    for (cap, args) in [
        ("shell", json!({"cmd": cmd, "env": {JOB_MARKER_ENV: "x"}})),
        (
            "exec",
            json!({"argv": ["/bin/sh", "-c", cmd], "env": {JOB_MARKER_ENV: "x"}}),
        ),
    ] {
        let r = CapabilityRegistry::builtin().run(cap, &ctx, &args);
        assert_eq!(r.status, JobStatus::Rejected, "{cap}: {r:?}");
        assert!(
            r.error
                .as_deref()
                .is_some_and(|e| e.contains(JOB_MARKER_ENV) && e.contains("cannot be set")),
            "{cap}: {r:?}"
        );
    }
    assert!(!marker.exists(), "a rejected job ran");
    // Other variables still pass, and the marker is vigil's.
    let mut spec = sh("echo $VIGIL_JOB_ID $MINE");
    spec.env = BTreeMap::from([("MINE".to_string(), "ok".to_string())]);
    let id = job_id("marker-ok");
    let r = ex.run_process(&id, &spec, &limits(5_000));
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    assert_eq!(r.stdout.bytes, format!("{id} ok\n").into_bytes());
}
