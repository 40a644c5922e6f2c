//! Escapes and abuse: whatever a job does (fork bombs, double forks, setsid, ignoring signals,
//! holding pipes, flooding output, eating memory or CPU, making zombies), when it ends every
//! process it created is dead and its cgroup leaf is gone. Each case runs under every cgroup mode
//! this host provides (hybrid, v1-only, none here).
mod exec_support;

use std::time::Duration;

use exec_support::*;
use vigil_core::exec::host::CgroupMode;
use vigil_core::model::JobStatus;

#[test]
fn fork_bomb_is_stopped_by_the_pids_limit_and_killed_at_the_deadline() {
    for mode in modes() {
        let ex = executor(mode);
        let id = job_id("forkbomb", mode);
        let mut l = limits(1_000);
        l.pids = Some(64);
        // Without a pids controller a real bomb would take the machine down: bound its depth.
        let cmd = if ex.host().v1.pids.is_some() || mode == CgroupMode::V2 {
            "b() { while :; do b & done; }; b"
        } else {
            "b() { if [ $1 -gt 0 ]; then b $(($1-1)) & b $(($1-1)) & fi; wait; sleep 30; }; b 6"
        };
        let r = ex.run_process(&id, &sh(cmd), &l);
        // dash exits 2 when a fork is refused: the job then ends early (failed), with whatever
        // bomb processes survive killed as stragglers (possibly none: each of them exits on its
        // own refused fork too); otherwise the deadline ends it. An early end must come from the
        // pids limit refusing forks.
        assert!(
            matches!(r.status, JobStatus::TimedOut | JobStatus::Failed),
            "{mode:?}: {r:?}"
        );
        assert!(
            r.status == JobStatus::TimedOut || r.pids_limit_hit,
            "{mode:?}: {r:?}"
        );
        if ex.host().v1.pids.is_some() {
            assert!(
                r.pids_limit_hit,
                "{mode:?}: the pids limit must have refused forks: {r:?}"
            );
        }
        assert!(r.wall_ms < 4_000, "{mode:?}: took {} ms", r.wall_ms);
        assert_nothing_left(&r, &format!("fork bomb ({mode:?})"));
    }
}

#[test]
fn double_forked_orphan_is_killed_when_the_root_exits() {
    for mode in modes() {
        let ex = executor(mode);
        let id = job_id("doublefork", mode);
        let r = ex.run_process(
            &id,
            &sh("(sh -c 'sleep 300 &' &); echo started"),
            &limits(5_000),
        );
        assert_eq!(r.status, JobStatus::Completed, "{mode:?}: {r:?}");
        assert!(
            r.wall_ms < 2_000,
            "{mode:?}: the orphan held the job for {} ms",
            r.wall_ms
        );
        assert_eq!(r.stdout.bytes, b"started\n");
        assert_nothing_left(&r, &format!("double fork ({mode:?})"));
    }
}

#[test]
fn setsid_background_process_cannot_outlive_a_2s_deadline() {
    for mode in modes() {
        let ex = executor(mode);
        let id = job_id("setsid", mode);
        let r = ex.run_process(&id, &sh("(setsid sleep 777 &); sleep 30"), &limits(2_000));
        assert_eq!(r.status, JobStatus::TimedOut, "{mode:?}: {r:?}");
        assert!(
            (1_990..3_000).contains(&r.wall_ms),
            "{mode:?}: must end at ~2 s, took {} ms",
            r.wall_ms
        );
        assert_nothing_left(&r, &format!("setsid + background ({mode:?})"));
    }
}

#[test]
fn process_ignoring_sigterm_is_killed() {
    for mode in modes() {
        let ex = executor(mode);
        let id = job_id("noterm", mode);
        let r = ex.run_process(
            &id,
            &sh("trap '' TERM INT HUP; while :; do sleep 1; done"),
            &limits(1_000),
        );
        assert_eq!(r.status, JobStatus::TimedOut, "{mode:?}: {r:?}");
        assert!(r.wall_ms < 2_500, "{mode:?}: took {} ms", r.wall_ms);
        assert_nothing_left(&r, &format!("SIGTERM ignorer ({mode:?})"));
    }
}

#[test]
fn grandchild_holding_the_output_pipe_does_not_hold_the_job() {
    for mode in modes() {
        let ex = executor(mode);
        let id = job_id("pipeholder", mode);
        let r = ex.run_process(
            &id,
            &sh("(sleep 30; echo late) & echo early"),
            &limits(10_000),
        );
        assert_eq!(r.status, JobStatus::Completed, "{mode:?}: {r:?}");
        assert!(
            r.wall_ms < 2_000,
            "{mode:?}: the pipe holder kept the job for {} ms",
            r.wall_ms
        );
        assert_eq!(r.stdout.bytes, b"early\n", "{mode:?}");
        assert!(
            r.stragglers_killed >= 1,
            "{mode:?}: the holder must have been killed: {r:?}"
        );
        assert_nothing_left(&r, &format!("pipe holder ({mode:?})"));
    }
}

#[test]
fn stdout_flood_is_capped_with_bounded_memory_and_flagged() {
    for mode in modes() {
        let ex = executor(mode);
        let id = job_id("flood", mode);
        let mut l = limits(1_000);
        l.max_output_bytes = 64 << 10;
        let r = ex.run_process(&id, &sh("yes vigil-flood"), &l);
        assert_eq!(r.status, JobStatus::TimedOut, "{mode:?}: {r:?}");
        assert!(r.stdout.truncated, "{mode:?}");
        assert!(
            r.stdout.total_bytes > 16 << 20,
            "{mode:?}: only {} bytes drained in 1 s",
            r.stdout.total_bytes
        );
        assert!(
            r.stdout.bytes.len() < (64 << 10) + 100,
            "{mode:?}: kept {} bytes",
            r.stdout.bytes.len()
        );
        assert!(
            r.stdout.bytes.starts_with(b"vigil-flood\n") && r.stdout.bytes.ends_with(b"flood\n"),
            "{mode:?}"
        );
        assert_nothing_left(&r, &format!("flood ({mode:?})"));
    }
}

#[test]
fn memory_hog_is_reported_oom_killed() {
    for mode in modes() {
        let ex = executor(mode);
        let id = job_id("memhog", mode);
        let mut l = limits(10_000);
        l.memory_bytes = Some(32 << 20);
        // dash keeps a command substitution's whole output in memory.
        let r = ex.run_process(
            &id,
            &sh("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}"),
            &l,
        );
        if mode == CgroupMode::None {
            // Only RLIMIT_AS per process: the allocation fails inside the job instead.
            assert_ne!(r.status, JobStatus::Completed, "{mode:?}: {r:?}");
        } else {
            assert_eq!(r.status, JobStatus::OomKilled, "{mode:?}: {r:?}");
            assert!(
                r.memory_peak_bytes.is_some_and(|p| p <= 33 << 20),
                "{mode:?}: peak {:?}",
                r.memory_peak_bytes
            );
        }
        assert!(r.wall_ms < 8_000, "{mode:?}: took {} ms", r.wall_ms);
        assert_nothing_left(&r, &format!("memory hog ({mode:?})"));
    }
}

#[test]
fn cpu_spinner_is_stopped_by_the_cpu_time_budget() {
    for mode in modes() {
        let ex = executor(mode);
        let id = job_id("spinner", mode);
        let mut l = limits(10_000);
        l.cpu_time = Some(Duration::from_millis(300));
        let r = ex.run_process(&id, &sh("while :; do :; done"), &l);
        assert_eq!(r.status, JobStatus::TimedOut, "{mode:?}: {r:?}");
        assert_eq!(r.limit_hit, Some("cpu_time"), "{mode:?}: {r:?}");
        if mode == CgroupMode::None {
            // RLIMIT_CPU rounds the budget up to whole seconds.
            assert!(r.wall_ms < 4_000, "{mode:?}: took {} ms", r.wall_ms);
        } else {
            let used = r.cpu_usage_us.unwrap_or(0);
            assert!(
                (300_000..600_000).contains(&used),
                "{mode:?}: used {used} us of a 300 ms budget"
            );
            assert!(r.wall_ms < 2_000, "{mode:?}: took {} ms", r.wall_ms);
        }
        assert_nothing_left(&r, &format!("CPU spinner ({mode:?})"));
    }
}

#[test]
fn zombie_factory_leaves_no_zombie() {
    for mode in modes() {
        let ex = executor(mode);
        let id = job_id("zombies", mode);
        // The children exit at once; `exec sleep` never reaps them.
        let r = ex.run_process(&id, &sh("for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do true & done; exec sleep 30"), &limits(1_000));
        assert_eq!(r.status, JobStatus::TimedOut, "{mode:?}: {r:?}");
        assert_nothing_left(&r, &format!("zombie factory ({mode:?})"));
    }
}

#[test]
fn plain_command_completes_with_output_exit_code_and_usage() {
    for mode in modes() {
        let ex = executor(mode);
        let id = job_id("plain", mode);
        let r = ex.run_process(&id, &sh("echo out; echo err >&2; exit 3"), &limits(5_000));
        assert_eq!(r.status, JobStatus::Failed, "{mode:?}: {r:?}");
        assert_eq!(r.exit_code, Some(3));
        assert_eq!(r.stdout.bytes, b"out\n");
        assert_eq!(r.stderr.bytes, b"err\n");
        // From the group, or in mode none from vigil's own samples and the root's rusage.
        assert!(r.cpu_usage_us.is_some(), "{mode:?}: no CPU accounting");
        // Mode none cannot sample a job that ends before the first look: its peak is then
        // unknown (never vigil's own, see tests/exec_mode_none.rs).
        assert!(
            r.memory_peak_bytes.is_some_and(|b| b > 0)
                || (mode == CgroupMode::None && r.memory_peak_bytes.is_none()),
            "{mode:?}: no memory accounting"
        );
        assert_nothing_left(&r, &format!("plain ({mode:?})"));
    }
}

#[test]
fn cancellation_kills_every_process_of_the_job_promptly() {
    use vigil_core::exec::job::CancelToken;
    for mode in modes() {
        let ex = executor(mode);
        let id = job_id("cancel", mode);
        let token = CancelToken::new().expect("eventfd");
        let canceller = {
            let token = token.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                token.cancel();
            })
        };
        let r = ex.run_process_cancellable(
            &id,
            &sh("(setsid sleep 777 &); sleep 30"),
            &limits(10_000),
            Some(&token),
        );
        canceller.join().unwrap();
        assert_eq!(r.status, JobStatus::Interrupted, "{mode:?}: {r:?}");
        assert!(
            (300..1_500).contains(&r.wall_ms),
            "{mode:?}: cancel took effect after {} ms",
            r.wall_ms
        );
        assert_nothing_left(&r, &format!("cancelled job ({mode:?})"));
    }
}

#[test]
fn policy_requiring_kernel_enforcement_refuses_what_the_mode_cannot_hold() {
    use vigil_core::exec::job::{Executor, ExecutorConfig};
    let ms = modes();
    if ms.is_empty() {
        return;
    }
    let marker = std::env::temp_dir().join(format!("vigil-policy-{}", std::process::id()));
    for mode in ms {
        let ex = Executor::new(ExecutorConfig {
            require_enforcement: true,
            ..config(Some(mode))
        })
        .unwrap();
        let mut l = limits(5_000);
        l.pids = Some(32);
        l.memory_bytes = Some(64 << 20);
        let _ = std::fs::remove_file(&marker);
        let r = ex.run_process(
            &job_id("policy", mode),
            &sh(&format!("touch {}", marker.display())),
            &l,
        );
        if mode == CgroupMode::None {
            assert_eq!(r.status, JobStatus::Rejected, "{mode:?}: {r:?}");
            assert!(
                r.error
                    .as_deref()
                    .is_some_and(|e| e.contains("enforcement required")
                        && e.contains("memory limit 64M not held")),
                "{r:?}"
            );
            assert!(!marker.exists(), "{mode:?}: a refused job ran");
        } else {
            assert_eq!(r.status, JobStatus::Completed, "{mode:?}: {r:?}");
            assert!(marker.exists(), "{mode:?}: the job did not run");
        }
    }
    let _ = std::fs::remove_file(&marker);
}

#[test]
fn cgroup2_freezer_kill_path_leaves_nothing_when_cgroup_kill_is_missing() {
    use vigil_core::exec::job::Executor;
    for mode in modes() {
        if !matches!(mode, CgroupMode::Hybrid | CgroupMode::V2) {
            continue;
        }
        let mut cfg = config(Some(mode));
        cfg.host.force_no_cgroup_kill = true;
        let ex = Executor::new(cfg).unwrap();
        if !ex.host().cgroup_freeze {
            eprintln!("skipped: no cgroup.freeze on this kernel");
            continue;
        }
        let id = job_id("freeze2", mode);
        let mut l = limits(1_000);
        l.pids = Some(128);
        let r = ex.run_process(
            &id,
            &sh("(setsid sleep 777 &); b() { while :; do sleep 5 & done; }; b"),
            &l,
        );
        assert!(
            r.enforcement.kill.contains("cgroup.freeze"),
            "{mode:?}: {}",
            r.enforcement.kill
        );
        assert!(
            matches!(r.status, JobStatus::TimedOut | JobStatus::Failed),
            "{mode:?}: {r:?}"
        );
        assert!(
            r.stragglers_killed > 100,
            "{mode:?}: the freezer path had little to kill: {r:?}"
        );
        assert_nothing_left(&r, &format!("cgroup2 freezer kill ({mode:?})"));
    }
}

#[test]
fn an_oom_kill_anywhere_in_the_job_ends_the_whole_job() {
    for mode in modes() {
        if mode == CgroupMode::None {
            continue; // no group: RLIMIT_AS makes allocations fail instead of OOM kills
        }
        let ex = executor(mode);
        let id = job_id("oomgroup", mode);
        let mut l = limits(10_000);
        l.memory_bytes = Some(32 << 20);
        // The hog is a background child; the root would sleep for 30 s.
        let r = ex.run_process(
            &id,
            &sh("(x=$(head -c 200000000 /dev/zero | tr '\\0' a)) & sleep 30"),
            &l,
        );
        assert_eq!(r.status, JobStatus::OomKilled, "{mode:?}: {r:?}");
        assert!(
            r.wall_ms < 5_000,
            "{mode:?}: the job outlived its OOM kill by {} ms",
            r.wall_ms
        );
        assert_nothing_left(&r, &format!("OOM in a child ({mode:?})"));
    }
}

/// Modes whose pids limit the kernel holds here.
fn pids_modes() -> Vec<CgroupMode> {
    modes()
        .into_iter()
        .filter(|&m| {
            let ex = executor(m);
            ex.host().v1.pids.is_some() || ex.host().v2_controllers.iter().any(|c| c == "pids")
        })
        .collect()
}

#[test]
fn pids_limit_hit_is_reported_when_the_root_exits_at_once_after_a_refused_fork() {
    for mode in pids_modes() {
        let ex = executor(mode);
        let id = job_id("pids-root-exits", mode);
        let mut l = limits(5_000);
        l.pids = Some(16);
        // A subshell forks more than the limit allows and dies of the refusal; the root
        // exits 0 at once, so the job completes, with the storm's survivors killed.
        let r = ex.run_process(
            &id,
            &sh("(for i in $(seq 64); do sleep 30 & done) 2>/dev/null; exit 0"),
            &l,
        );
        assert_eq!(r.status, JobStatus::Completed, "{mode:?}: {r:?}");
        assert!(
            r.pids_limit_hit,
            "{mode:?}: forks were refused by the limit: {r:?}"
        );
        assert!(r.stragglers_killed > 0, "{mode:?}: {r:?}");
        assert_nothing_left(&r, &format!("storm whose root exits ({mode:?})"));
    }
}

#[test]
fn forks_refused_by_the_kill_are_not_the_pids_limit() {
    for mode in pids_modes() {
        let ex = executor(mode);
        let id = job_id("pids-kill", mode);
        let mut l = limits(5_000);
        l.pids = Some(64);
        // A forker far below its limit, still forking when the root's exit starts the kill
        // (which sets pids.max to 0 before killing).
        let r = ex.run_process(
            &id,
            &sh("for i in 1 2 3 4 5 6 7 8; do (while :; do /bin/true; done) & done; sleep 0.2; exit 0"),
            &l,
        );
        assert_eq!(r.status, JobStatus::Completed, "{mode:?}: {r:?}");
        assert!(
            !r.pids_limit_hit,
            "{mode:?}: the limit of 64 was never reached: {r:?}"
        );
        assert_nothing_left(&r, &format!("forker killed ({mode:?})"));
    }
}
