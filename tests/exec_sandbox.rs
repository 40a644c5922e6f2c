//! The job sandbox on this kernel: each rule is shown refused under the sandbox and allowed
//! without it (so each test fails if its rule is missing), and the labels say who holds what,
//! including with a lower Landlock ABI forced (the fallback path).
mod exec_support;

use std::path::{Path, PathBuf};

use exec_support::{limits, sh};
use vigil_core::exec::host::{CgroupMode, HostConfig};
use vigil_core::exec::job::{Executor, ExecutorConfig, JobResult, Strength};
use vigil_core::exec::sandbox::{kernel_abi, SandboxConfig, SandboxMode, ABI_NET, ABI_SCOPE};
use vigil_core::exec::{Limits, ProcessSpec};
use vigil_core::model::JobStatus;

/// The directories of one test: the job's root, vigil's data dir, a denied directory and its
/// readable sibling, and a directory outside all of them.
struct Dirs {
    root: tempfile::TempDir,
    data: tempfile::TempDir,
    parent_of_secret: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let d = Dirs {
            root: tempfile::tempdir().unwrap(),
            data: tempfile::tempdir().unwrap(),
            parent_of_secret: tempfile::tempdir().unwrap(),
            outside: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir(d.secret()).unwrap();
        std::fs::write(d.secret().join("key"), "private").unwrap();
        std::fs::write(d.parent_of_secret.path().join("open.txt"), "public").unwrap();
        std::fs::write(d.data.path().join("wal.log"), "log bytes").unwrap();
        d
    }

    fn secret(&self) -> PathBuf {
        self.parent_of_secret.path().join("secret")
    }

    fn executor(&self, force_abi: Option<i32>, require: bool) -> Executor {
        Executor::new(ExecutorConfig {
            host: HostConfig {
                force_mode: Some(CgroupMode::None),
                ..HostConfig::default()
            },
            subreaper: false,
            require_enforcement: require,
            sandbox: SandboxConfig {
                default_mode: None,
                floor: None,
                data_dir: Some(self.data.path().to_path_buf()),
                deny_read: Some(vec![self.secret()]),
                allow_write: Vec::new(),
                force_abi,
            },
            user: None,
        })
        .expect("executor")
    }

    fn run(&self, ex: &Executor, mode: SandboxMode, cmd: &str) -> JobResult {
        self.run_spec(ex, mode, &sh(cmd))
    }

    fn run_spec(&self, ex: &Executor, mode: SandboxMode, spec: &ProcessSpec) -> JobResult {
        let mut l: Limits = limits(20_000);
        if !ex.host().has_cgroups() {
            // Mode none holds no wall limit completely: leave it out so that
            // `require_enforcement` judges the sandbox alone.
            l.timeout = None;
        }
        l.sandbox.mode = Some(mode);
        let id = format!("sbx-{}-{}", std::process::id(), next());
        let mut spec = spec.clone();
        if spec.cwd.is_none() {
            spec.cwd = Some(self.root.path().to_path_buf());
        }
        spec.env.insert("OUT".into(), path_str(self.outside.path()));
        spec.env.insert("DATA".into(), path_str(self.data.path()));
        spec.env.insert("SECRET".into(), path_str(&self.secret()));
        spec.env
            .insert("SIBLING".into(), path_str(self.parent_of_secret.path()));
        spec.env
            .insert("VIGIL_PID".into(), std::process::id().to_string());
        ex.run_process_in(&id, &spec, &l, Some(self.root.path()), None)
    }
}

fn next() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_string()
}

/// The kernel has Landlock; else the test says why it is skipped.
fn landlock() -> bool {
    let abi = kernel_abi();
    if abi < 1 {
        eprintln!("skipped: this kernel has no Landlock");
    }
    abi >= 1
}

fn out(r: &JobResult) -> String {
    String::from_utf8_lossy(&r.stdout.bytes).trim().to_string()
}

fn rule<'a>(r: &'a JobResult, name: &str) -> &'a vigil_core::exec::job::LimitEnforcement {
    r.enforcement
        .limits
        .iter()
        .find(|l| l.limit == name)
        .unwrap_or_else(|| panic!("no {name} entry in {:?}", r.enforcement.limits))
}

#[test]
fn writes_only_beneath_the_root() {
    if !landlock() {
        return;
    }
    let d = Dirs::new();
    let ex = d.executor(None, false);
    let r = d.run(
        &ex,
        SandboxMode::Workspace,
        "echo in > inside.txt && cat inside.txt; echo x > \"$OUT/escaped\" && echo WROTE; true",
    );
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    assert_eq!(out(&r), "in", "{r:?}");
    assert!(!d.outside.path().join("escaped").exists());
    assert!(d.root.path().join("inside.txt").exists());
    assert_eq!(rule(&r, "sandbox.write").strength, Strength::Kernel);
    assert!(rule(&r, "sandbox.write").held);
    // Without the sandbox the same write lands.
    let r = d.run(
        &ex,
        SandboxMode::Off,
        "echo x > \"$OUT/escaped\" && echo WROTE",
    );
    assert_eq!(out(&r), "WROTE", "{r:?}");
}

#[test]
fn data_dir_is_neither_readable_nor_writable() {
    if !landlock() {
        return;
    }
    let d = Dirs::new();
    let ex = d.executor(None, false);
    let r = d.run(
        &ex,
        SandboxMode::Workspace,
        "cat \"$DATA/wal.log\"; ls \"$DATA\"; echo x >> \"$DATA/wal.log\"; echo x > \"$DATA/new\"; echo done",
    );
    assert_eq!(out(&r), "done", "{r:?}");
    assert_eq!(
        std::fs::read_to_string(d.data.path().join("wal.log")).unwrap(),
        "log bytes"
    );
    assert!(!d.data.path().join("new").exists());
    let r = d.run(&ex, SandboxMode::Off, "cat \"$DATA/wal.log\"");
    assert_eq!(out(&r), "log bytes", "{r:?}");
}

#[test]
fn denied_path_is_unreadable_and_its_siblings_and_the_system_are_not() {
    if !landlock() {
        return;
    }
    let d = Dirs::new();
    let ex = d.executor(None, false);
    let r = d.run(
        &ex,
        SandboxMode::Workspace,
        "cat \"$SECRET/key\"; ls \"$SECRET\"; cat \"$SIBLING/open.txt\"; echo; head -c 4 /etc/passwd",
    );
    assert_eq!(out(&r), "public\nroot", "{r:?}");
    assert!(rule(&r, "sandbox.read").held, "{r:?}");
    let r = d.run(&ex, SandboxMode::Off, "cat \"$SECRET/key\"");
    assert_eq!(out(&r), "private", "{r:?}");
}

#[test]
fn tmpdir_is_private_usable_and_removed_after_the_job() {
    if !landlock() {
        return;
    }
    let d = Dirs::new();
    let ex = d.executor(None, false);
    let r = d.run(
        &ex,
        SandboxMode::Workspace,
        "echo t > \"$TMPDIR/f\" && cat \"$TMPDIR/f\" && stat -c %a \"$TMPDIR\" && echo \"$TMPDIR\" && [ \"$TMP\" = \"$TMPDIR\" ] && [ \"$TEMP\" = \"$TMPDIR\" ] && echo same",
    );
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    let lines: Vec<String> = out(&r).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 4, "{r:?}");
    assert_eq!(lines[0], "t");
    assert_eq!(lines[1], "700");
    let tmp = PathBuf::from(&lines[2]);
    assert!(tmp.starts_with(d.data.path().join("tmp")), "{tmp:?}");
    assert_eq!(lines[3], "same");
    assert!(!tmp.exists(), "TMPDIR {tmp:?} left behind");
}

#[test]
fn cwd_outside_the_root_is_rejected() {
    let d = Dirs::new();
    let ex = d.executor(None, false);
    std::os::unix::fs::symlink(d.outside.path(), d.root.path().join("link")).unwrap();
    for cwd in [
        PathBuf::from("/etc"),
        d.root.path().join(".."),
        d.root.path().join("link"),
    ] {
        let spec = ProcessSpec {
            cwd: Some(cwd.clone()),
            ..sh("pwd")
        };
        let r = d.run_spec(&ex, SandboxMode::Off, &spec);
        assert_eq!(r.status, JobStatus::Rejected, "{cwd:?}: {r:?}");
    }
    std::fs::create_dir(d.root.path().join("sub")).unwrap();
    let spec = ProcessSpec {
        cwd: Some(d.root.path().join("sub")),
        ..sh("pwd")
    };
    let r = d.run_spec(&ex, SandboxMode::Off, &spec);
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
}

const PY_NET: &str = r#"
import socket, ctypes, errno
def attempt(f):
    try:
        f(); return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
print("tcp", attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(("127.0.0.1", 9))))
print("udp", attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)))
print("tcp6", attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM)))
print("unix", attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)))
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 4, params)
print("io_uring", "ok" if fd >= 0 else errno.errorcode.get(ctypes.get_errno(), "?"))
"#;

fn python() -> bool {
    let ok = std::process::Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: no python3");
    }
    ok
}

#[test]
fn strict_refuses_tcp_udp_and_io_uring_and_keeps_unix_sockets() {
    if !landlock() || !python() {
        return;
    }
    let d = Dirs::new();
    let ex = d.executor(None, false);
    let py = ProcessSpec {
        argv: vec!["python3".into(), "-c".into(), PY_NET.into()],
        ..ProcessSpec::default()
    };
    let r = d.run_spec(&ex, SandboxMode::Strict, &py);
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    assert_eq!(
        out(&r),
        "tcp EPERM\nudp EPERM\ntcp6 EPERM\nunix ok\nio_uring EPERM",
        "{r:?}"
    );
    assert_eq!(rule(&r, "sandbox.network").strength, Strength::Kernel);
    assert_eq!(rule(&r, "sandbox.io_uring").strength, Strength::Kernel);
    // Under `workspace` the same program gets its sockets and its ring (the TCP connect to
    // the discard port may be refused by the peer, never by the sandbox).
    let r = d.run_spec(&ex, SandboxMode::Workspace, &py);
    let text = out(&r);
    assert!(!text.contains("EPERM"), "{r:?}");
    assert!(
        text.contains("udp ok") && text.contains("io_uring ok"),
        "{r:?}"
    );
}

#[test]
fn job_cannot_signal_vigil_where_scoping_is_held() {
    if !landlock() {
        return;
    }
    let d = Dirs::new();
    let ex = d.executor(None, false);
    let r = d.run(
        &ex,
        SandboxMode::Workspace,
        "kill -0 \"$VIGIL_PID\" 2>/dev/null && echo SIGNALLED || echo refused",
    );
    let signal = rule(&r, "sandbox.signal");
    if kernel_abi() >= ABI_SCOPE {
        assert!(signal.held && signal.strength == Strength::Kernel, "{r:?}");
        assert_eq!(out(&r), "refused", "{r:?}");
    } else {
        assert!(!signal.held, "{r:?}");
        assert_eq!(out(&r), "SIGNALLED", "{r:?}");
    }
    let r = d.run(
        &ex,
        SandboxMode::Off,
        "kill -0 \"$VIGIL_PID\" 2>/dev/null && echo SIGNALLED || echo refused",
    );
    assert_eq!(out(&r), "SIGNALLED", "{r:?}");
}

#[test]
fn a_lower_abi_is_labelled_rule_by_rule_and_what_is_held_still_holds() {
    if !landlock() || kernel_abi() < 3 {
        eprintln!("skipped: needs Landlock ABI 3 to force ABI 2");
        return;
    }
    let d = Dirs::new();
    let ex = d.executor(Some(2), false);
    let r = d.run(
        &ex,
        SandboxMode::Strict,
        "echo x > \"$OUT/escaped\" 2>/dev/null; kill -0 \"$VIGIL_PID\" 2>/dev/null && echo SIGNALLED",
    );
    assert_eq!(out(&r), "SIGNALLED", "{r:?}");
    assert!(!d.outside.path().join("escaped").exists());
    assert!(rule(&r, "sandbox.write").held);
    for name in ["sandbox.signal", "sandbox.truncate"] {
        let e = rule(&r, name);
        assert!(
            !e.held && e.strength == Strength::NotEnforced,
            "{name}: {e:?}"
        );
        assert!(
            e.not_held_reason.as_deref().unwrap().contains("ABI 2"),
            "{e:?}"
        );
    }
    // The network rule stays held, by seccomp alone (no Landlock TCP rules before ABI 4).
    let net = rule(&r, "sandbox.network");
    assert!(net.held && net.strength == Strength::Kernel, "{net:?}");
    assert!(!net.mechanism.contains("Landlock"), "{net:?}");
    let msgs = r.enforcement.not_held_messages();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("sandbox.signal rule of sandbox strict not held")),
        "{msgs:?}"
    );
    if kernel_abi() >= ABI_NET {
        let ex = d.executor(None, false);
        let r = d.run(&ex, SandboxMode::Strict, "true");
        assert!(rule(&r, "sandbox.network").mechanism.contains("Landlock"));
    }
}

#[test]
fn no_landlock_is_labelled_and_nothing_is_pretended() {
    let d = Dirs::new();
    let ex = d.executor(Some(0), false);
    let r = d.run(
        &ex,
        SandboxMode::Workspace,
        "echo x > \"$OUT/escaped\" && echo WROTE",
    );
    // Not held, and indeed not held: the label matches what happened.
    assert_eq!(out(&r), "WROTE", "{r:?}");
    for name in ["sandbox", "sandbox.write", "sandbox.read", "sandbox.signal"] {
        let e = rule(&r, name);
        assert!(
            !e.held && e.strength == Strength::NotEnforced,
            "{name}: {e:?}"
        );
        assert!(
            e.not_held_reason
                .as_deref()
                .unwrap()
                .contains("no Landlock"),
            "{e:?}"
        );
    }
}

#[test]
fn require_enforcement_refuses_a_rule_that_is_not_held() {
    let d = Dirs::new();
    let ex = d.executor(Some(0), true);
    let r = d.run(&ex, SandboxMode::Workspace, "echo x > \"$OUT/escaped\"");
    assert_eq!(r.status, JobStatus::Rejected, "{r:?}");
    assert!(
        r.error.as_deref().unwrap().contains("sandbox.write"),
        "{r:?}"
    );
    assert!(!d.outside.path().join("escaped").exists());
    if kernel_abi() >= ABI_SCOPE {
        // Everything `workspace` asks is held here: the same job runs.
        let ex = d.executor(None, true);
        let r = d.run(&ex, SandboxMode::Workspace, "echo ran");
        assert_eq!(out(&r), "ran", "{r:?}");
    }
}

#[test]
fn the_sandbox_holds_on_every_spawn_path() {
    if !landlock() {
        return;
    }
    let d = Dirs::new();
    for mode in exec_support::modes() {
        let ex = Executor::new(ExecutorConfig {
            sandbox: SandboxConfig {
                data_dir: Some(d.data.path().to_path_buf()),
                deny_read: Some(vec![d.secret()]),
                ..SandboxConfig::default()
            },
            ..exec_support::config(Some(mode))
        })
        .expect("executor");
        let r = d.run(
            &ex,
            SandboxMode::Strict,
            "echo x > \"$OUT/escaped\"; cat \"$SECRET/key\"; echo in > inside && cat inside",
        );
        assert_eq!(r.status, JobStatus::Completed, "{mode:?}: {r:?}");
        assert_eq!(out(&r), "in", "{mode:?}: {r:?}");
        assert!(!d.outside.path().join("escaped").exists(), "{mode:?}");
    }
}

#[test]
fn a_file_created_beside_a_denied_path_after_a_job_is_readable_by_the_next() {
    if !landlock() {
        return;
    }
    let d = Dirs::new();
    let ex = d.executor(None, false);
    let r = d.run(&ex, SandboxMode::Workspace, "cat \"$SIBLING/open.txt\"");
    assert_eq!(out(&r), "public", "{r:?}");
    // The read rules of that job were kept; the sibling directory has changed since.
    std::fs::write(d.parent_of_secret.path().join("later.txt"), "fresh").unwrap();
    let r = d.run(
        &ex,
        SandboxMode::Workspace,
        "cat \"$SIBLING/later.txt\"; cat \"$SECRET/key\"",
    );
    assert_eq!(out(&r), "fresh", "{r:?}");
}

#[test]
fn a_data_dir_inside_the_root_is_labelled_not_held_in_the_record() {
    if !landlock() {
        return;
    }
    let d = Dirs::new();
    let inner = d.root.path().join("data");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(inner.join("wal.log"), "log bytes").unwrap();
    let ex = Executor::new(ExecutorConfig {
        host: HostConfig {
            force_mode: Some(CgroupMode::None),
            ..HostConfig::default()
        },
        subreaper: false,
        sandbox: SandboxConfig {
            data_dir: Some(inner.clone()),
            deny_read: Some(Vec::new()),
            ..SandboxConfig::default()
        },
        ..ExecutorConfig::default()
    })
    .unwrap();
    let r = d.run(&ex, SandboxMode::Workspace, "cat data/wal.log");
    // Landlock cannot deny beneath what it allows: the job reads it, and the record says so.
    assert_eq!(out(&r), "log bytes", "{r:?}");
    let read = rule(&r, "sandbox.read");
    assert!(!read.held, "{read:?}");
    assert!(
        read.not_held_reason
            .as_deref()
            .unwrap()
            .contains("beneath a writable path"),
        "{read:?}"
    );
}
