//! vigil's own environment never reaches a capability unless passed explicitly, and a job's root
//! process is inside its cgroup leaf from its first instruction.
mod exec_support;

use std::collections::BTreeMap;

use exec_support::*;
use serde_json::json;
use vigil_core::exec::capability::{CapabilityRegistry, JobContext};
use vigil_core::exec::host::{CgroupMode, Host};
use vigil_core::exec::ProcessSpec;
use vigil_core::model::JobStatus;

const SECRET_VALUE: &str = "s3cr3t-value-that-must-not-leak";

fn test_modes() -> Vec<CgroupMode> {
    let m = modes();
    if m.is_empty() {
        // Mode none needs no privilege: the environment check still runs.
        vec![CgroupMode::None]
    } else {
        m
    }
}

#[test]
fn secrets_in_vigils_environment_do_not_reach_the_capability() {
    // SAFETY: set before any job runs; tests in this binary only read it through child processes.
    unsafe {
        std::env::set_var("VIGIL_TEST_API_TOKEN", SECRET_VALUE);
        std::env::set_var("HOME", "/root/should-not-leak");
    }
    let registry = CapabilityRegistry::builtin();
    for mode in test_modes() {
        let ex = executor(mode);
        let id = job_id("env", mode);
        let limits = limits(5_000);
        let root = std::env::temp_dir();
        let ctx = JobContext {
            executor: &ex,
            job_id: &id,
            limits: &limits,
            root: &root,
            cancel: None,
        };
        let r = registry.run(
            "exec",
            &ctx,
            &json!({"argv": ["env"], "env": {"PASSED": "yes"}}),
        );
        assert_eq!(r.status, JobStatus::Completed, "{mode:?}: {r:?}");
        let out = String::from_utf8_lossy(&r.stdout.bytes).into_owned();
        assert!(
            !out.contains(SECRET_VALUE),
            "{mode:?}: secret leaked: {out}"
        );
        assert!(!out.contains("VIGIL_TEST_API_TOKEN"), "{mode:?}: {out}");
        assert!(
            !out.lines().any(|l| l.starts_with("HOME=")),
            "{mode:?}: HOME leaked: {out}"
        );
        assert!(
            out.lines().any(|l| l == "PASSED=yes"),
            "{mode:?}: passed variable missing: {out}"
        );
        assert!(
            out.lines().any(|l| l.starts_with("PATH=")),
            "{mode:?}: PATH missing: {out}"
        );
        // Explicitly passed, it does arrive.
        let r = registry.run(
            "shell",
            &ctx,
            &json!({"cmd": "printf %s \"$TOKEN\"", "env": {"TOKEN": "given"}}),
        );
        assert_eq!(r.stdout.bytes, b"given", "{mode:?}: {r:?}");
        assert_nothing_left(&r, &format!("env ({mode:?})"));
    }
}

#[test]
fn inherited_file_descriptors_are_closed_and_stdin_is_dev_null_or_given() {
    for mode in test_modes() {
        let ex = executor(mode);
        // An fd vigil holds open without CLOEXEC must not reach the job.
        let f = std::fs::File::open("/etc/hostname")
            .or_else(|_| std::fs::File::open("/proc/version"))
            .unwrap();
        use std::os::fd::AsRawFd;
        let fd = f.as_raw_fd();
        // SAFETY: clear CLOEXEC on our own fd.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        let r = ex.run_process(
            &job_id("fds", mode),
            &sh("ls /proc/self/fd | sort -n | tr '\\n' ' '; read x; echo \"[$x]\""),
            &limits(5_000),
        );
        let out = String::from_utf8_lossy(&r.stdout.bytes).into_owned();
        // 0,1,2 and the fd of `ls` reading its own directory (3).
        assert!(
            out.starts_with("0 1 2 3 "),
            "{mode:?}: unexpected fds: {out}"
        );
        assert!(
            !out.split(' ').any(|x| x == fd.to_string()) || fd == 3,
            "{mode:?}: fd {fd} leaked: {out}"
        );
        assert!(
            out.ends_with("[]\n"),
            "{mode:?}: stdin is not /dev/null: {out}"
        );
        let spec = ProcessSpec {
            argv: vec!["cat".into()],
            stdin: Some(b"fed".to_vec()),
            env: BTreeMap::new(),
            cwd: None,
        };
        let r = ex.run_process(&job_id("stdin", mode), &spec, &limits(5_000));
        assert_eq!(r.stdout.bytes, b"fed", "{mode:?}: {r:?}");
    }
}

/// Asserts that `/proc/self/cgroup`, as the job's first program printed it, names the job's leaf
/// in every hierarchy the job has one in (the job was run with a pids limit, so the v1 pids
/// leaf exists too).
fn assert_job_in_its_leaf(h: &Host, id: &str, proc_self_cgroup: &str, what: &str) {
    // Hybrid uses cgroup2 for CPU accounting and the kill: no cpuacct or freezer leaf there.
    let v1_only = h.unified_parent.is_none();
    let expect: Vec<&str> = [
        h.unified_parent.as_ref().map(|_| "0::"),
        h.v1.memory.as_ref().map(|_| ":memory:"),
        h.v1.pids.as_ref().map(|_| ":pids:"),
        h.v1.cpuacct
            .as_ref()
            .filter(|_| v1_only)
            .map(|_| ":cpuacct:"),
        h.v1.freezer
            .as_ref()
            .filter(|_| v1_only)
            .map(|_| ":freezer:"),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(!expect.is_empty(), "{what}: no hierarchy to check");
    for key in expect {
        let line = proc_self_cgroup
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_default();
        assert!(
            line.contains(&format!("/{id}.")),
            "{what}: {key} line {line:?} is not the job's leaf:\n{proc_self_cgroup}"
        );
    }
}

#[test]
fn root_process_is_in_every_leaf_from_its_first_instruction() {
    for mode in modes() {
        if mode == CgroupMode::None {
            continue;
        }
        let ex = executor(mode);
        let id = job_id("placed", mode);
        // `cat` execs straight away: what it prints is where it was born. A pids limit makes
        // the pids leaf exist too.
        let mut l = limits(5_000);
        l.pids = Some(64);
        let r = ex.run_process(
            &id,
            &ProcessSpec {
                argv: vec!["cat".into(), "/proc/self/cgroup".into()],
                ..ProcessSpec::default()
            },
            &l,
        );
        assert_eq!(r.status, JobStatus::Completed, "{mode:?}: {r:?}");
        let out = String::from_utf8_lossy(&r.stdout.bytes).into_owned();
        assert_job_in_its_leaf(ex.host(), &id, &out, &format!("{mode:?}"));
        assert_nothing_left(&r, &format!("placement ({mode:?})"));
    }
}

/// An executor in the best mode here and vigil's parent groups it sweeps; `None` (with the
/// reason printed) where there is no cgroup.
fn sweep_executor() -> Option<(vigil_core::exec::job::Executor, Vec<std::path::PathBuf>)> {
    let ms = modes();
    let &mode = ms.first()?;
    if mode == CgroupMode::None {
        eprintln!("skipped: no cgroups to sweep");
        return None;
    }
    let ex = executor(mode);
    let h = ex.host();
    let parents = h
        .unified_parent
        .iter()
        .cloned()
        .chain(h.v1.present().map(|(_, p)| p.to_path_buf()))
        .collect();
    Some((ex, parents))
}

#[test]
fn stale_leaves_of_a_dead_instance_are_killed_and_removed_but_live_ones_kept() {
    let Some((ex, parents)) = sweep_executor() else {
        return;
    };
    // A leaf owned by an instance that cannot exist (pid 0x7ffffffe with start time 1).
    let dead = format!("t-sweep-{}.2147483646-1", std::process::id());
    let live = format!(
        "t-keep-{}.{}",
        std::process::id(),
        vigil_core::exec::cgroup::instance_marker()
    );
    let mut sleeper = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    for p in &parents {
        std::fs::create_dir(p.join(&dead)).unwrap();
        std::fs::create_dir(p.join(&live)).unwrap();
        std::fs::write(p.join(&dead).join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    }
    let report = ex.sweep_stale();
    let status = sleeper.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the stale leaf's process was not killed"
    );
    assert!(report.removed.contains(&dead), "{report:?}");
    assert!(
        !report.removed.contains(&live),
        "a live instance's leaf was swept: {report:?}"
    );
    for p in &parents {
        assert!(!p.join(&dead).exists(), "{:?} still there", p.join(&dead));
        assert!(p.join(&live).exists(), "live leaf removed in {p:?}");
        let _ = std::fs::remove_dir(p.join(&live));
    }
}

/// (state, start ticks) of a process, from /proc/PID/stat.
fn state_and_start(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(19)?.parse().ok()?,
    ))
}

#[test]
fn stale_leaves_of_a_zombie_or_reused_pid_instance_are_killed_and_removed() {
    let Some((ex, parents)) = sweep_executor() else {
        return;
    };
    // An old instance that exited and was never reaped: a zombie, with its pid and start time.
    let mut zombie = std::process::Command::new("true").spawn().unwrap();
    let zpid = zombie.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let zstart = loop {
        match state_and_start(zpid) {
            Some(('Z', start)) => break start,
            _ if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            other => panic!("no zombie: {other:?}"),
        }
    };
    // And one whose pid now belongs to another process (the sleeper, started later).
    let mut sleeper = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    let (_, sleeper_start) = state_and_start(sleeper.id()).unwrap();
    let of_zombie = format!("t-zsweep-{}.{zpid}-{zstart}", std::process::id());
    let of_reused = format!(
        "t-rsweep-{}.{}-{}",
        std::process::id(),
        sleeper.id(),
        sleeper_start.saturating_sub(1)
    );
    for p in &parents {
        for leaf in [&of_zombie, &of_reused] {
            std::fs::create_dir(p.join(leaf)).unwrap();
        }
        std::fs::write(
            p.join(&of_zombie).join("cgroup.procs"),
            sleeper.id().to_string(),
        )
        .unwrap();
    }
    let report = ex.sweep_stale();
    let _ = zombie.wait();
    // The sweep waits for the leaf to empty: the process is dying or dead.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let status = loop {
        match sleeper.try_wait().unwrap() {
            Some(status) => break status,
            None if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            None => {
                let _ = sleeper.kill();
                let _ = sleeper.wait();
                panic!("the zombie instance's leaf kept its process: {report:?}");
            }
        }
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{report:?}");
    for leaf in [&of_zombie, &of_reused] {
        assert!(
            report.removed.contains(leaf),
            "{leaf} not swept: {report:?}"
        );
        for p in &parents {
            assert!(!p.join(leaf).exists(), "{:?} still there", p.join(leaf));
        }
    }
}

/// The placement each spawn variant reports in `mode`: the vfork-style spawn is born in the
/// cgroup2 leaf where there is one (hybrid, v2) and moves itself otherwise; v1 never clones into
/// a cgroup2 leaf, so the fork-like clone3 falls back to the gate there.
fn expected_placement(mode: CgroupMode, variant: &str) -> &'static str {
    let unified = matches!(mode, CgroupMode::Hybrid | CgroupMode::V2);
    match variant {
        _ if mode == CgroupMode::None => "none",
        "vfork" if unified => "clone3_vfork_into_cgroup",
        "vfork" | "vfork-no-clone3" => "vfork_self_placed_before_exec",
        "clone3-into-cgroup" if unified => "clone3_into_cgroup",
        _ => "fork_then_gate",
    }
}

#[test]
fn every_spawn_path_places_the_child_before_it_runs_and_kills_escapes() {
    use vigil_core::exec::job::Executor;
    for mode in modes() {
        // (name, force_no_vfork, force_no_clone_into_cgroup, force_no_clone3)
        let variants: [(&str, bool, bool, bool); 5] = [
            ("vfork", false, false, false),
            ("vfork-no-clone3", false, false, true),
            ("clone3-into-cgroup", true, false, false),
            ("clone3-gate", true, true, false),
            ("fork-gate", true, true, true),
        ];
        for (name, no_vfork, no_into, no_clone3) in variants {
            let mut cfg = config(Some(mode));
            cfg.host.force_no_vfork = no_vfork;
            cfg.host.force_no_clone_into_cgroup = no_into;
            cfg.host.force_no_clone3 = no_clone3;
            let ex = Executor::new(cfg).unwrap();
            let id = job_id(&format!("path-{name}"), mode);
            let mut l = limits(1_000);
            l.pids = Some(64);
            // `cat` is the job's first program: what it reads is where the root process was
            // before its first instruction of the job (placement is done before exec).
            let r = ex.run_process(
                &id,
                &sh("cat /proc/self/cgroup; (setsid sleep 777 &); sleep 30"),
                &l,
            );
            assert_eq!(r.status, JobStatus::TimedOut, "{mode:?}/{name}: {r:?}");
            let placement = r.enforcement.placement.unwrap_or("missing");
            assert_eq!(placement, expected_placement(mode, name), "{mode:?}/{name}");
            if mode != CgroupMode::None {
                let out = String::from_utf8_lossy(&r.stdout.bytes).into_owned();
                assert_job_in_its_leaf(ex.host(), &id, &out, &format!("{mode:?}/{name}"));
            }
            assert_nothing_left(&r, &format!("{name} ({mode:?})"));
        }
    }
}

/// A seccomp filter that answers clone3 with `errno` and allows everything else, installed in
/// the calling thread (and inherited by the threads and processes it creates), as container
/// runtimes do.
fn refuse_clone3_in_this_thread(errno: u32) {
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let filter = [
        // seccomp_data: nr at offset 0, arch at offset 4.
        stmt(load, 4),
        jeq(AUDIT_ARCH_X86_64, 0, 2),
        stmt(load, 0),
        jeq(libc::SYS_clone3 as u32, 1, 0),
        stmt(ret, SECCOMP_RET_ALLOW),
        stmt(ret, SECCOMP_RET_ERRNO | errno),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: plain prctls on this thread; the program outlives the call (the kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog as libc::c_ulong,
                0,
                0
            ),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn a_clone3_refused_at_run_time_falls_back_to_self_placement_before_exec() {
    let unified: Vec<CgroupMode> = modes()
        .into_iter()
        .filter(|m| matches!(m, CgroupMode::Hybrid | CgroupMode::V2))
        .collect();
    // ENOSYS, as container runtimes answer (glibc's pthread_create falls back to clone on
    // ENOSYS only, so a filter answering EPERM would break thread creation in the whole test).
    let errno = libc::ENOSYS;
    for &mode in &unified {
        // A thread of its own: the filter stays with it and the threads it creates.
        std::thread::spawn(move || {
            refuse_clone3_in_this_thread(errno as u32);
            let ex = executor(mode);
            let id = job_id(&format!("seccomp-{errno}"), mode);
            let mut l = limits(5_000);
            l.pids = Some(64);
            let r = ex.run_process(&id, &sh("cat /proc/self/cgroup"), &l);
            let what = format!("{mode:?}, clone3 refused with errno {errno}");
            assert_eq!(r.status, JobStatus::Completed, "{what}: {r:?}");
            assert_eq!(
                r.enforcement.placement,
                Some("vfork_self_placed_before_exec"),
                "{what}"
            );
            let out = String::from_utf8_lossy(&r.stdout.bytes).into_owned();
            assert_job_in_its_leaf(ex.host(), &id, &out, &what);
            assert_nothing_left(&r, &what);
        })
        .join()
        .expect("the job thread");
    }
}
