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
        Executor::new(self.executor_config(force_abi, require)).expect("executor")
    }

    fn executor_config(&self, force_abi: Option<i32>, require: bool) -> ExecutorConfig {
        ExecutorConfig {
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
                write_bounds: Vec::new(),
                force_abi,
            },
            user: None,
        }
    }

    fn run(&self, ex: &Executor, mode: SandboxMode, cmd: &str) -> JobResult {
        self.run_spec(ex, mode, &sh(cmd))
    }

    fn run_spec(&self, ex: &Executor, mode: SandboxMode, spec: &ProcessSpec) -> JobResult {
        self.run_spec_in(ex, mode, spec, self.root.path())
    }

    fn run_spec_in(
        &self,
        ex: &Executor,
        mode: SandboxMode,
        spec: &ProcessSpec,
        root: &Path,
    ) -> JobResult {
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
            spec.cwd = Some(root.to_path_buf());
        }
        spec.env.insert("OUT".into(), path_str(self.outside.path()));
        spec.env.insert("DATA".into(), path_str(self.data.path()));
        spec.env.insert("SECRET".into(), path_str(&self.secret()));
        spec.env
            .insert("SIBLING".into(), path_str(self.parent_of_secret.path()));
        spec.env
            .insert("VIGIL_PID".into(), std::process::id().to_string());
        ex.run_process_in(&id, &spec, &l, Some(root), None)
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

/// As root, a job under `workspace` cannot move itself out of its cgroup: the top of each
/// hierarchy's `cgroup.procs` lies outside its root, so Landlock refuses the write and the job
/// stays in its leaf. Without the sandbox the same write moves it (the short-lived shell leaves
/// its leaf and exits at once), and the record carries the notice that says so.
/// As root with Landlock: `Dirs` and an executor in the host's cgroup mode whose data dir is
/// theirs; `None` (and why, printed) elsewhere.
fn as_root(why: &str) -> Option<(Dirs, Executor)> {
    use exec_support::{config, is_root};
    if !landlock() {
        return None;
    }
    if !is_root() {
        eprintln!("skipped: not root ({why})");
        return None;
    }
    let d = Dirs::new();
    let mut cfg = config(None);
    cfg.sandbox.data_dir = Some(d.data.path().to_path_buf());
    let ex = Executor::new(cfg).expect("executor");
    Some((d, ex))
}

#[test]
fn a_root_job_in_the_workspace_cannot_leave_its_cgroup() {
    let Some((d, ex)) = as_root("moving between cgroups needs root") else {
        return;
    };
    if !ex.host().has_cgroups() {
        eprintln!("skipped: no cgroups here");
        return;
    }
    // Each hierarchy's top-level cgroup.procs (the v2 root, and the v1 ones on hybrid hosts).
    let tops: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" - cgroup2 ") || l.contains(" - cgroup "))
        .filter_map(|l| l.split(' ').nth(4).map(|m| format!("{m}/cgroup.procs")))
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(!tops.is_empty(), "no cgroup hierarchy mounted");
    // Where the shell is before and after it tries each top: by writing its pid into the
    // top's cgroup.procs, and (with perl, where there is one) by clone3(CLONE_INTO_CGROUP) on
    // the top opened for reading, which Landlock does not see.
    let clone3 = "use POSIX; $| = 1; sysopen(my $h, $ARGV[0], O_RDONLY|O_DIRECTORY) or exit; \
                  my $a = pack(\"Q11\", 0x200000000, 0, 0, 0, 17, 0, 0, 0, 0, 0, fileno($h)); \
                  my $p = syscall(435, $a, 88); \
                  if ($p == 0) { print \"MOVED\\n\"; POSIX::_exit(0) } elsif ($p > 0) { waitpid($p, 0) }";
    let script = format!(
        "cat /proc/$$/cgroup; echo ---; for top in {}; do echo $$ > \"$top\" 2>/dev/null && \
         echo MOVED; command -v perl >/dev/null && perl -e '{clone3}' \"$(dirname $top)\"; \
         done; echo ---; cat /proc/$$/cgroup",
        tops.join(" ")
    );
    let places = |r: &JobResult| {
        let text = out(r);
        let parts: Vec<String> = text.split("---").map(|p| p.trim().to_string()).collect();
        assert_eq!(parts.len(), 3, "{text}");
        (parts[0].clone(), parts[1].clone(), parts[2].clone())
    };
    let r = d.run(&ex, SandboxMode::Workspace, &script);
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    let (before, moved, after) = places(&r);
    assert!(before.contains("sbx-"), "not in its leaf: {before}");
    assert_eq!(moved, "", "left its cgroup");
    assert_eq!(before, after, "left its cgroup");
    assert!(r.enforcement.notices.is_empty(), "{r:?}");
    // Without the sandbox the job can leave, and its record says it could.
    let r = d.run(&ex, SandboxMode::Off, &script);
    let (before, moved, after) = places(&r);
    assert!(moved.contains("MOVED") && before != after, "{r:?}");
    assert_eq!(
        r.enforcement.notices,
        [vigil_core::exec::enforcement::ROOT_LEAVES_CGROUP_NOTICE],
        "{r:?}"
    );
}

#[test]
fn a_sandboxed_root_job_reads_only_the_usual_devices() {
    let Some((d, ex)) = as_root("uid 0 owns the devices") else {
        return;
    };
    // A device root may read here (a disk, the console's screen, the kernel's log): a raw
    // disk holds every denied file, vigil's log included.
    let mut candidates: Vec<String> = std::fs::read_dir("/sys/class/block")
        .map(|e| {
            e.flatten()
                .map(|e| format!("/dev/{}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    candidates.extend(["/dev/vcs", "/dev/vcsa", "/dev/kmsg", "/dev/mem"].map(String::from));
    // And a root-only file of /sys (the firmware's tables), where there is one.
    let firmware = "/sys/firmware/dmi/tables/DMI";
    let firmware_check = if std::fs::File::open(firmware).is_ok() {
        format!("head -c 1 {firmware} >/dev/null 2>&1 && echo FIRMWARE; ")
    } else {
        String::new()
    };
    let readable = candidates
        .into_iter()
        .find(|p| std::fs::File::open(p).is_ok());
    let Some(device) = readable else {
        eprintln!("skipped: no device root may read here");
        return;
    };
    let script = format!(
        "{firmware_check}head -c 1 {device} >/dev/null 2>&1 && echo DEVICE; \
         head -c 4 /dev/urandom | wc -c; echo quiet > /dev/null && echo NULL"
    );
    for mode in [SandboxMode::Workspace, SandboxMode::Strict] {
        let r = d.run(&ex, mode, &script);
        let text = out(&r);
        assert!(!text.contains("DEVICE"), "{mode:?}: read {device}: {text}");
        assert!(
            !text.contains("FIRMWARE"),
            "{mode:?}: read {firmware}: {text}"
        );
        assert!(
            text.contains("4\nNULL"),
            "{mode:?}: the usual devices: {text}"
        );
        let read = r
            .enforcement
            .limits
            .iter()
            .find(|l| l.limit == "sandbox.read")
            .unwrap();
        assert!(read.mechanism.contains("/dev"), "{read:?}");
    }
    let r = d.run(&ex, SandboxMode::Off, &script);
    assert!(out(&r).contains("DEVICE"), "{}", out(&r));
}

/// A pseudo-terminal pair made here, as another session's terminal is: its master (kept open,
/// so the terminal stays) and the slave's path, `/dev/pts/N`.
fn other_terminal() -> (std::os::fd::OwnedFd, String) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors; name, termios and winsize are not asked for.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    let path = std::fs::read_link(format!("/proc/self/fd/{slave}")).unwrap();
    // SAFETY: both descriptors were just opened by openpty and nothing else owns them.
    let master = unsafe { std::os::fd::OwnedFd::from_raw_fd(master) };
    // SAFETY: as above.
    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(slave) });
    (master, path.to_string_lossy().into_owned())
}

#[test]
fn a_sandboxed_root_job_opens_no_other_terminal_and_makes_its_own() {
    let Some((d, ex)) = as_root("the other terminal is root's, as a root session's is") else {
        return;
    };
    let (_master, pts) = other_terminal();
    // Read it, write it; then a terminal of its own, as programs make one (the C library's
    // openpty: /dev/ptmx and the peer through it), and `script`, which runs a command in one.
    let script = format!(
        "( exec 3<{pts} ) 2>/dev/null && echo READ_OTHER; \
         ( exec 3>{pts} ) 2>/dev/null && echo WROTE_OTHER; \
         python3 -c 'import os, pty; m, s = pty.openpty(); os.write(m, b\"ok\\n\"); \
         print(os.read(s, 3).decode().strip() + \"_OWN_PTY\")'; \
         script -qc 'echo IN_SCRIPT' /dev/null"
    );
    for mode in [SandboxMode::Workspace, SandboxMode::Strict] {
        let r = d.run(&ex, mode, &script);
        let text = out(&r);
        let err = String::from_utf8_lossy(&r.stderr.bytes);
        assert!(!text.contains("READ_OTHER"), "{mode:?} read {pts}: {text}");
        assert!(
            !text.contains("WROTE_OTHER"),
            "{mode:?} wrote {pts}: {text}"
        );
        assert!(
            text.contains("ok_OWN_PTY") && text.contains("IN_SCRIPT"),
            "{mode:?}: a terminal of its own: {text} / {err}"
        );
        let terminals = rule(&r, "sandbox.terminals");
        assert!(terminals.held, "{terminals:?}");
    }
    // Nor through a working directory or a root opened in vigil's mount namespace before the
    // job's own devpts is mounted (the host's devpts, then): such a job is refused.
    let name = Path::new(&pts)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut in_pts = sh(&format!("cat ./{name}; echo x > ./{name}"));
    in_pts.cwd = Some(PathBuf::from("/dev/pts"));
    let r = d.run_spec_in(&ex, SandboxMode::Workspace, &in_pts, Path::new("/"));
    assert_eq!(r.status, JobStatus::Rejected, "cwd /dev/pts: {r:?}");
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.contains("terminals directory")),
        "{r:?}"
    );
    let r = d.run_spec_in(&ex, SandboxMode::Strict, &sh("true"), Path::new("/dev/pts"));
    assert_eq!(r.status, JobStatus::Rejected, "root /dev/pts: {r:?}");
    // The control: without the sandbox, uid 0 opens root's terminal both ways.
    let r = d.run(&ex, SandboxMode::Off, &script);
    let text = out(&r);
    assert!(
        text.contains("READ_OTHER") && text.contains("WROTE_OTHER"),
        "{text}"
    );
    assert!(
        !r.enforcement
            .limits
            .iter()
            .any(|l| l.limit == "sandbox.terminals"),
        "no sandbox, no label"
    );
    // Where vigil may not make a mount namespace (a container without CAP_SYS_ADMIN, forced
    // here), the job runs with the host's terminals and its record says they are not held.
    let mut cfg = exec_support::config(None);
    cfg.sandbox.data_dir = Some(d.data.path().to_path_buf());
    cfg.host.force_no_mount_namespace = true;
    let weaker = Executor::new(cfg).expect("executor");
    let r = d.run(&weaker, SandboxMode::Workspace, &script);
    let text = out(&r);
    assert!(text.contains("ok_OWN_PTY"), "{text}");
    let terminals = rule(&r, "sandbox.terminals");
    assert!(!terminals.held, "{terminals:?}");
    assert!(
        terminals
            .not_held_reason
            .as_deref()
            .is_some_and(|why| why.contains("/dev/pts")),
        "{terminals:?}"
    );
    // The lines `vigil run` prints as warnings (its view's `limits_not_held`) name it.
    let lines = r.enforcement.not_held_messages();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("sandbox.terminals rule of sandbox workspace not held")),
        "{lines:?}"
    );
}

#[test]
fn a_jobs_writable_paths_are_held_to_the_bounds_on_what_was_opened() {
    if !landlock() {
        return;
    }
    // A server's floor bounds where its jobs write (its root and --allow-write). The bound is
    // checked on the descriptor the rule is built from: a root that is (or was swapped for) a
    // symlink out of the bounds is refused, whatever a check of its path said before.
    let d = Dirs::new();
    let mut cfg = d.executor_config(None, false);
    cfg.sandbox.write_bounds = vec![std::fs::canonicalize(d.outside.path()).unwrap()];
    let ex = Executor::new(cfg).unwrap();
    let link = d.outside.path().join("link");
    std::os::unix::fs::symlink(d.root.path(), &link).unwrap();
    let inside = d.outside.path().join("inside");
    std::fs::create_dir(&inside).unwrap();
    let spec = sh("echo ran > here; echo ran");
    let r = d.run_spec_in(&ex, SandboxMode::Workspace, &spec, &link);
    assert_eq!(r.status, JobStatus::Rejected, "{r:?}");
    assert!(
        r.error
            .as_deref()
            .unwrap_or("")
            .contains("outside the server's root"),
        "{r:?}"
    );
    assert!(!d.root.path().join("here").exists(), "the job ran");
    let r = d.run_spec_in(&ex, SandboxMode::Workspace, &spec, &inside);
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    assert!(inside.join("here").exists());
}

#[test]
fn a_sandboxed_root_job_cannot_set_another_processs_limits() {
    let Some((d, ex)) = as_root("the kernel lets uid 0 set any uid 0 process's limits") else {
        return;
    };
    // A root process outside the job (as vigil is), and prlimit64 by raw syscall (perl, 302 on
    // x86_64) setting its open-files limit to 1; then the job's own limit, which it may set.
    if !cfg!(target_arch = "x86_64") || !Path::new("/usr/bin/perl").exists() {
        eprintln!("skipped: needs perl on x86_64");
        return;
    }
    let mut target = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let pid = target.id();
    let set = |who: &str| {
        format!(
            "perl -e 'my $l = pack(\"QQ\", 1, 1); my $r = syscall(302, {who}, 7, $l, 0); \
             print $r == 0 ? \"SET\\n\" : \"REFUSED $!\\n\"'"
        )
    };
    let limits = || std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let before = limits();
    for mode in [SandboxMode::Workspace, SandboxMode::Strict] {
        let r = d.run(
            &ex,
            mode,
            &format!("{}; {}", set(&pid.to_string()), set("0")),
        );
        let text = out(&r);
        assert!(
            text.starts_with("REFUSED Operation not permitted\nSET"),
            "{mode:?}: {text}"
        );
        assert_eq!(
            limits(),
            before,
            "{mode:?}: the other process's limits changed"
        );
    }
    // Without the sandbox a root job may (so the check above can fail).
    let r = d.run(&ex, SandboxMode::Off, &set(&pid.to_string()));
    let _ = target.kill();
    let _ = target.wait();
    assert!(out(&r).starts_with("SET"), "{}", out(&r));
}

#[test]
fn a_denied_path_created_during_the_job_is_unreadable() {
    if !landlock() {
        return;
    }
    // A path that does not exist yet is denied, by the request or by the executor's own list
    // (a server's); another process creates it while the job runs; the job cannot read it,
    // and its record names it.
    for by_request in [true, false] {
        let d = Dirs::new();
        let late = d.outside.path().join("late");
        let ready = d.outside.path().join("ready");
        let mut cfg = d.executor_config(None, false);
        let mut l: Limits = limits(20_000);
        l.timeout = None;
        l.sandbox.mode = Some(SandboxMode::Workspace);
        if by_request {
            l.sandbox.deny_read = vec![late.clone()];
        } else {
            cfg.sandbox.deny_read = Some(vec![d.secret(), late.clone()]);
        }
        let ex = Executor::new(cfg).expect("executor");
        // The job says it runs (its rules are in force) before the file is made.
        let started = d.root.path().join("started");
        let mut spec = sh(&format!(
            "touch started; while [ ! -e {} ]; do sleep 0.01; done; cat {} 2>&1 || echo UNREADABLE",
            path_str(&ready),
            path_str(&late)
        ));
        spec.cwd = Some(d.root.path().to_path_buf());
        let id = format!("sbx-{}-{}", std::process::id(), next());
        let r = std::thread::scope(|s| {
            let job = s.spawn(|| ex.run_process_in(&id, &spec, &l, Some(d.root.path()), None));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while !started.exists() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the job never started"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            std::fs::write(&late, "LATE-SECRET").unwrap();
            std::fs::write(&ready, "").unwrap();
            job.join().unwrap()
        });
        let text = out(&r);
        assert!(
            !text.contains("LATE-SECRET"),
            "by request {by_request}: {text}"
        );
        assert!(
            text.contains("UNREADABLE"),
            "by request {by_request}: {text}"
        );
        let read = rule(&r, "sandbox.read");
        assert!(read.mechanism.contains("late"), "{read:?}");
    }
}

#[test]
fn under_a_floor_a_request_cannot_make_outside_paths_writable() {
    if !landlock() {
        return;
    }
    let d = Dirs::new();
    let mut cfg = d.executor_config(None, false);
    cfg.sandbox.floor = Some(SandboxMode::Strict);
    let ex = Executor::new(cfg).expect("executor");
    let job = |allow: PathBuf| {
        let mut l: Limits = limits(20_000);
        l.timeout = None;
        l.sandbox.mode = Some(SandboxMode::Off);
        l.sandbox.allow_write = vec![allow];
        let mut spec = sh("echo planted > \"$OUT/planted\"; echo done");
        spec.cwd = Some(d.root.path().to_path_buf());
        spec.env.insert("OUT".into(), path_str(d.outside.path()));
        let id = format!("sbx-{}-{}", std::process::id(), next());
        ex.run_process_in(&id, &spec, &l, Some(d.root.path()), None)
    };
    let r = job(PathBuf::from("/"));
    assert_eq!(r.status, JobStatus::Rejected, "{r:?}");
    let r = job(d.outside.path().to_path_buf());
    assert_eq!(r.status, JobStatus::Rejected, "{r:?}");
    assert!(!d.outside.path().join("planted").exists());
    // Beneath its root it may.
    let sub = d.root.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let r = job(sub);
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
}

#[test]
fn a_sandboxed_root_job_keeps_no_capability() {
    let Some((d, ex)) = as_root("only a root job has capabilities to lose") else {
        return;
    };
    // A program with file capabilities (CAP_CHOWN and CAP_MKNOD, effective) in the job's
    // root: under no_new_privs its exec gains none, though the bounding set still holds them.
    let capcat = d.root.path().join("capcat");
    std::fs::copy("/bin/cat", &capcat).unwrap();
    // CAP_CHOWN is 0, CAP_MKNOD 27 (linux/capability.h).
    set_file_capabilities(&capcat, (1 << 0) | (1 << 27));
    let script = "grep -E '^(Cap(Prm|Eff|Amb|Inh)|NoNewPrivs):' /proc/self/status; \
                  ./capcat /proc/self/status | sed -n 's/^CapEff:/FILECAPS_EFFECTIVE:/p'; \
                  mknod ./node c 1 3 2>/dev/null && echo MKNOD; \
                  touch f && chown 65534 f 2>/dev/null && echo CHOWN; \
                  cat /proc/$PPID/environ >/dev/null 2>&1 && echo ENVIRON";
    for mode in [SandboxMode::Workspace, SandboxMode::Strict] {
        let r = d.run(&ex, mode, script);
        let text = out(&r);
        for set in ["CapPrm", "CapEff", "CapAmb", "CapInh", "FILECAPS_EFFECTIVE"] {
            assert!(
                text.contains(&format!("{set}:\t0000000000000000")),
                "{mode:?}: {set} not empty: {text}"
            );
        }
        assert!(text.contains("NoNewPrivs:\t1"), "{mode:?}: {text}");
        // The record says who holds it.
        for name in ["sandbox.capabilities", "sandbox.root_guard"] {
            let l = r.enforcement.limits.iter().find(|l| l.limit == name);
            assert!(
                l.is_some_and(|l| l.held),
                "{mode:?}: {name}: {:?}",
                r.enforcement
            );
        }
        for what in ["MKNOD", "CHOWN", "ENVIRON"] {
            assert!(!text.contains(what), "{mode:?}: {what} allowed: {text}");
        }
    }
    // With the sandbox off a root job is root, as before, and the file's capabilities are
    // what the test says they are (so the check above can fail).
    let r = d.run(&ex, SandboxMode::Off, script);
    assert!(
        !out(&r).contains("CapEff:\t0000000000000000"),
        "{}",
        out(&r)
    );
}

/// Gives `path` the file capabilities `caps` (permitted, and effective at exec): a
/// `security.capability` attribute of revision 2, as `setcap caps+ep` writes it.
fn set_file_capabilities(path: &Path, caps: u64) {
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;
    let words: [u32; 5] = [
        VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
        caps as u32,
        0,
        (caps >> 32) as u32,
        0,
    ];
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path and name, and a buffer of the given length.
    let rc = unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            c"security.capability".as_ptr(),
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
}

/// An executor of `d` whose jobs run in cgroup leaves (root, a host with cgroups); `None`
/// (and why, printed) elsewhere.
fn cgroup_executor(d: &Dirs) -> Option<Executor> {
    use exec_support::{config, is_root};
    if !landlock() {
        return None;
    }
    if !is_root() {
        eprintln!("skipped: not root (cgroup leaves need root)");
        return None;
    }
    let mut cfg = config(None);
    cfg.sandbox.data_dir = Some(d.data.path().to_path_buf());
    cfg.sandbox.deny_read = Some(vec![d.secret()]);
    let ex = Executor::new(cfg).expect("executor");
    if !ex.host().has_cgroups() {
        eprintln!("skipped: no cgroups here");
        return None;
    }
    Some(ex)
}

/// The entries of the data dir's `tmp/` (where the TMPDIRs live).
fn tmpdirs(d: &Dirs) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(d.data.path().join("tmp"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_reused_tmpdir_reaches_the_next_job_empty_and_private() {
    let d = Dirs::new();
    let Some(ex) = cgroup_executor(&d) else {
        return;
    };
    // The first job fills its TMPDIR, with a directory it cannot list any more and a file in
    // it, and leaves a process behind that would write there later.
    let r = d.run(
        &ex,
        SandboxMode::Workspace,
        "echo secret > \"$TMPDIR/f\" && mkdir -p \"$TMPDIR/d/e\" && echo x > \"$TMPDIR/d/e/g\" \
         && chmod 000 \"$TMPDIR/d\" && ln -s /etc \"$TMPDIR/l\" && mkfifo \"$TMPDIR/p\"; \
         (sleep 0.2; echo late > \"$TMPDIR/late\") >/dev/null 2>&1 & \
         ls -A \"$TMPDIR\" | wc -l; echo \"$TMPDIR\"",
    );
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    let lines: Vec<String> = out(&r).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "4", "the job filled its TMPDIR: {r:?}");
    let first = PathBuf::from(&lines[1]);
    assert_eq!(
        tmpdirs(&d),
        vec![first.clone()],
        "kept, emptied, for the next job"
    );
    assert_eq!(std::fs::read_dir(&first).unwrap().count(), 0, "emptied");
    let r = d.run(
        &ex,
        SandboxMode::Workspace,
        "echo \"$TMPDIR\"; stat -c %a \"$TMPDIR\"; ls -A \"$TMPDIR\"; echo end; \
         echo mine > \"$TMPDIR/m\" && cat \"$TMPDIR/m\"",
    );
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    let lines: Vec<String> = out(&r).lines().map(str::to_string).collect();
    assert_eq!(
        lines[0],
        first.display().to_string(),
        "the TMPDIR was reused"
    );
    assert_eq!(lines[1], "700");
    assert_eq!(
        lines[2], "end",
        "the first job's files reached the second: {lines:?}"
    );
    assert_eq!(lines[3], "mine");
    // The first job's background writer was killed with its group: nothing comes late.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(std::fs::read_dir(&first).unwrap().count(), 0);
    // A job the sandbox is off for gets no TMPDIR; dropping the executor removes the kept one.
    drop(ex);
    assert_eq!(
        tmpdirs(&d),
        Vec::<PathBuf>::new(),
        "kept TMPDIRs outlived the executor"
    );
}

#[test]
fn a_tmpdir_whose_job_changed_its_mode_is_not_reused() {
    let d = Dirs::new();
    let Some(ex) = cgroup_executor(&d) else {
        return;
    };
    let r = d.run(
        &ex,
        SandboxMode::Workspace,
        "chmod 755 \"$TMPDIR\" && echo \"$TMPDIR\"",
    );
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    let first = PathBuf::from(out(&r));
    assert!(
        !first.exists(),
        "a TMPDIR with another mode was kept: {first:?}"
    );
    let r = d.run(
        &ex,
        SandboxMode::Workspace,
        "stat -c %a \"$TMPDIR\"; echo \"$TMPDIR\"",
    );
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    let lines: Vec<String> = out(&r).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "700");
    assert_ne!(lines[1], first.display().to_string());
}

#[test]
fn jobs_at_once_get_tmpdirs_of_their_own() {
    let d = Dirs::new();
    let Some(ex) = cgroup_executor(&d) else {
        return;
    };
    // Warm the pool with one TMPDIR, then run four jobs at once: one may take it, the
    // others get new ones; each sees only its own.
    let r = d.run(&ex, SandboxMode::Workspace, "true");
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    let seen: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let (d, ex) = (&d, &ex);
                s.spawn(move || {
                    let r = d.run(
                        ex,
                        SandboxMode::Workspace,
                        &format!(
                            "echo {i} > \"$TMPDIR/who\"; sleep 0.5; cat \"$TMPDIR/who\"; \
                             ls -A \"$TMPDIR\" | wc -l; echo \"$TMPDIR\""
                        ),
                    );
                    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
                    let lines: Vec<String> = out(&r).lines().map(str::to_string).collect();
                    assert_eq!(lines[0], i.to_string(), "another job wrote here: {lines:?}");
                    assert_eq!(lines[1], "1", "{lines:?}");
                    lines[2].clone()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut distinct = seen.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{seen:?}");
}

#[test]
fn a_root_made_again_at_the_same_path_is_writable_to_the_next_job() {
    let d = Dirs::new();
    let Some(ex) = cgroup_executor(&d) else {
        return;
    };
    // A root in a directory the read rules do not list: nothing but the root itself changes.
    let root = d.root.path().join("w");
    std::fs::create_dir(&root).unwrap();
    let run = |cmd: &str| d.run_spec_in(&ex, SandboxMode::Workspace, &sh(cmd), &root);
    let r = run("echo a > f && cat f && echo \"$TMPDIR\"");
    let first: Vec<String> = out(&r).lines().map(str::to_string).collect();
    assert_eq!(first[0], "a", "{r:?}");
    // Another directory at the root's path: a ruleset kept from the first job names the old
    // inode and would refuse every write here.
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    let r = run("echo \"$TMPDIR\"; echo b > f && cat f");
    let second: Vec<String> = out(&r).lines().map(str::to_string).collect();
    assert_eq!(
        second[0], first[1],
        "the TMPDIR (and its ruleset's slot) was reused"
    );
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    assert_eq!(second.get(1).map(String::as_str), Some("b"), "{r:?}");
    // The rules still hold: outside the root stays unwritable.
    let r = run("echo c > \"$OUT/f\"");
    assert_ne!(r.status, JobStatus::Completed, "{r:?}");
    // And a ruleset kept while the root is unchanged is used again (same TMPDIR, still
    // writable root).
    let r = run("echo \"$TMPDIR\"; echo d > f && cat f");
    let third: Vec<String> = out(&r).lines().map(str::to_string).collect();
    assert_eq!(third, vec![first[1].clone(), "d".to_string()], "{r:?}");
}

#[test]
fn strict_jobs_carry_one_filter_and_vigil_none() {
    if !landlock() {
        return;
    }
    let d = Dirs::new();
    let ex = d.executor(None, false);
    for _ in 0..3 {
        let r = d.run(
            &ex,
            SandboxMode::Strict,
            "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status",
        );
        assert_eq!(r.status, JobStatus::Completed, "{r:?}");
        let text = out(&r);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        assert_eq!(field("Seccomp:").as_deref(), Some("2"), "{text}");
        assert_eq!(field("NoNewPrivs:").as_deref(), Some("1"), "{text}");
        if let Some(n) = field("Seccomp_filters:") {
            assert_eq!(n, "1", "one filter: {text}");
        }
    }
    // The filter is the job's alone: vigil carries none, nor does a later workspace job.
    let mine = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    assert!(mine.lines().any(|l| l == "Seccomp:\t0"), "{mine}");
    std::net::TcpListener::bind("127.0.0.1:0").expect("vigil is not filtered");
    // A workspace job carries no filter, or as root only its own guard (clone3 and x32
    // refused), never strict's: it may open an inet socket.
    let r = d.run(
        &ex,
        SandboxMode::Workspace,
        "grep -E '^Seccomp(_filters)?:' /proc/self/status; \
         exec 3<>/dev/tcp/127.0.0.1/9 2>&1 | grep -q 'Operation not permitted' && echo INET-REFUSED",
    );
    let text = out(&r);
    if exec_support::is_root() {
        assert!(text.contains("Seccomp:\t2"), "{text}");
        assert!(!text.contains("Seccomp_filters:\t2"), "{text}");
    } else {
        assert!(text.contains("Seccomp:\t0"), "{text}");
    }
    assert!(
        !text.contains("INET-REFUSED"),
        "a workspace job inherited the strict filter: {text}"
    );
}

#[test]
fn a_tmpdir_a_job_gave_an_extended_attribute_is_not_reused() {
    let d = Dirs::new();
    let Some(ex) = cgroup_executor(&d) else {
        return;
    };
    if !python() {
        return;
    }
    // A note on the directory itself (an ACL is one too): it would reach the next job.
    let r = d.run(
        &ex,
        SandboxMode::Workspace,
        "python3 -c 'import os; os.setxattr(os.environ[\"TMPDIR\"], \"user.note\", b\"from job A\")' \
         && echo \"$TMPDIR\"",
    );
    if r.status != JobStatus::Completed {
        eprintln!("skipped: user xattrs unsupported here: {}", out(&r));
        return;
    }
    let first = PathBuf::from(out(&r));
    assert!(
        !first.exists(),
        "a TMPDIR with a job's xattr was kept: {first:?}"
    );
    let r = d.run(
        &ex,
        SandboxMode::Workspace,
        "python3 -c 'import os; print(os.listxattr(os.environ[\"TMPDIR\"]))'",
    );
    assert_eq!(out(&r), "[]", "{r:?}");
}

#[test]
fn a_writable_path_that_is_a_fifo_is_judged_without_opening_it() {
    if !landlock() {
        return;
    }
    // The sandbox checks where each writable path lies (not on a terminals directory) by a
    // descriptor that opens nothing: opening a FIFO for reading would wait for a writer, and
    // a server's job slot with it, for ever.
    let d = Dirs::new();
    let fifo = d.root.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let ex = Executor::new(d.executor_config(None, false)).expect("executor");
    let (tx, rx) = std::sync::mpsc::channel();
    let root = d.root.path().to_path_buf();
    std::thread::spawn(move || {
        let mut l: Limits = limits(20_000);
        l.timeout = None;
        l.sandbox.mode = Some(SandboxMode::Workspace);
        l.sandbox.allow_write = vec![fifo];
        let mut spec = sh("echo ok");
        spec.cwd = Some(root.clone());
        let id = format!("sbx-{}-{}", std::process::id(), next());
        let _ = tx.send(ex.run_process_in(&id, &spec, &l, Some(&root), None));
    });
    // A hang is the failure (a minute is far beyond any job's set-up); any settled result is
    // what is asked: the job ran or was refused with a reason.
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("judging a FIFO among the writable paths hung");
    assert!(
        r.status == JobStatus::Completed || r.error.is_some(),
        "{r:?}"
    );
}
