//! File capabilities never read or write outside their root: `..`, absolute paths, symlinks out
//! of the root, a symlink swapped in during the request, /proc magic links and FIFOs are all
//! refused — with openat2 and with the forced component-wise fallback walk.
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use vigil_core::exec::capability::{
    Capability, FileReadCapability, FileWriteCapability, JobContext,
};
use vigil_core::exec::host::{CgroupMode, HostConfig};
use vigil_core::exec::job::{Executor, ExecutorConfig, JobResult};
use vigil_core::exec::Limits;
use vigil_core::model::JobStatus;

const OUTSIDE_SECRET: &str = "outside-secret-9f2c";

/// A scratch tree: `root/` (the capability root) and `outside/` next to it; removed on drop.
struct Tree {
    base: PathBuf,
}

impl Tree {
    fn new(tag: &str) -> Tree {
        let base = std::env::temp_dir().join(format!("vigil-files-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("root/sub")).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        fs::write(base.join("outside/secret"), OUTSIDE_SECRET).unwrap();
        fs::write(base.join("root/sub/inside.txt"), "inside").unwrap();
        Tree { base }
    }
    fn root(&self) -> PathBuf {
        self.base.join("root")
    }
    fn outside(&self) -> PathBuf {
        self.base.join("outside")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// Executors for both resolvers: openat2 (when the kernel has it) and the forced walk.
fn resolvers() -> Vec<(&'static str, Executor)> {
    let mk = |no_openat2: bool| {
        Executor::new(ExecutorConfig {
            host: HostConfig {
                force_mode: Some(CgroupMode::None),
                force_no_openat2: no_openat2,
                ..HostConfig::default()
            },
            subreaper: false,
            ..ExecutorConfig::default()
        })
        .unwrap()
    };
    let mut out = vec![("walk", mk(true))];
    let with = mk(false);
    if with.host().openat2 {
        out.push(("openat2", with));
    } else {
        eprintln!("note: openat2 is missing on this kernel; only the fallback walk is tested");
    }
    out
}

fn read(ex: &Executor, root: &Path, path: &str) -> JobResult {
    let limits = Limits::default();
    let ctx = JobContext {
        executor: ex,
        job_id: "file-read",
        limits: &limits,
        root,
        cancel: None,
    };
    FileReadCapability.execute(&ctx, &json!({ "path": path }))
}

fn write(ex: &Executor, root: &Path, path: &str, content: &str, append: bool) -> JobResult {
    let limits = Limits::default();
    let ctx = JobContext {
        executor: ex,
        job_id: "file-write",
        limits: &limits,
        root,
        cancel: None,
    };
    FileWriteCapability.execute(
        &ctx,
        &json!({ "path": path, "content": content, "append": append }),
    )
}

fn assert_rejected(r: &JobResult, what: &str) {
    assert_eq!(r.status, JobStatus::Rejected, "{what}: {r:?}");
    assert!(
        !String::from_utf8_lossy(&r.stdout.bytes).contains(OUTSIDE_SECRET),
        "{what}: leaked the outside file"
    );
}

#[test]
fn regular_files_beneath_the_root_are_read_and_written_atomically() {
    for (name, ex) in resolvers() {
        let t = Tree::new(&format!("ok-{name}"));
        let r = read(&ex, &t.root(), "sub/inside.txt");
        assert_eq!(r.status, JobStatus::Completed, "{name}: {r:?}");
        assert_eq!(r.stdout.bytes, b"inside");
        let w = write(&ex, &t.root(), "sub/new.txt", "one\n", false);
        assert_eq!(w.status, JobStatus::Completed, "{name}: {w:?}");
        let a = write(&ex, &t.root(), "sub/new.txt", "two\n", true);
        assert_eq!(a.status, JobStatus::Completed, "{name}: {a:?}");
        assert_eq!(
            fs::read_to_string(t.root().join("sub/new.txt")).unwrap(),
            "one\ntwo\n"
        );
        // No temporary file is left next to the target.
        let names: Vec<String> = fs::read_dir(t.root().join("sub"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains("vigil-tmp")),
            "{name}: {names:?}"
        );
        // max_bytes cuts and flags.
        let limits = Limits::default();
        let ctx = JobContext {
            executor: &ex,
            job_id: "cap",
            limits: &limits,
            root: &t.root(),
            cancel: None,
        };
        let r =
            FileReadCapability.execute(&ctx, &json!({"path": "sub/inside.txt", "max_bytes": 3}));
        assert_eq!(r.stdout.bytes, b"ins");
        assert!(r.stdout.truncated);
    }
}

#[test]
fn dotdot_and_absolute_paths_are_rejected() {
    for (name, ex) in resolvers() {
        let t = Tree::new(&format!("dotdot-{name}"));
        let abs = t.outside().join("secret");
        for p in [
            "../outside/secret",
            "sub/../../outside/secret",
            abs.to_str().unwrap(),
            "/etc/passwd",
        ] {
            assert_rejected(&read(&ex, &t.root(), p), &format!("{name} read {p}"));
            assert_rejected(
                &write(&ex, &t.root(), p, "x", false),
                &format!("{name} write {p}"),
            );
        }
        assert_eq!(
            fs::read_to_string(&abs).unwrap(),
            OUTSIDE_SECRET,
            "{name}: outside file changed"
        );
    }
}

#[test]
fn symlinks_out_of_the_root_are_rejected_for_read_and_write() {
    for (name, ex) in resolvers() {
        let t = Tree::new(&format!("symlink-{name}"));
        symlink(t.outside(), t.root().join("abs_dir")).unwrap();
        symlink("../outside", t.root().join("rel_dir")).unwrap();
        symlink(t.outside().join("secret"), t.root().join("abs_file")).unwrap();
        symlink("../../outside/secret", t.root().join("sub/rel_file")).unwrap();
        for p in [
            "abs_dir/secret",
            "rel_dir/secret",
            "abs_file",
            "sub/rel_file",
        ] {
            assert_rejected(&read(&ex, &t.root(), p), &format!("{name} read {p}"));
        }
        for p in [
            "abs_dir/planted",
            "rel_dir/planted",
            "abs_file",
            "sub/rel_file",
        ] {
            assert_rejected(
                &write(&ex, &t.root(), p, "planted", false),
                &format!("{name} write {p}"),
            );
        }
        assert!(
            !t.outside().join("planted").exists(),
            "{name}: wrote outside the root"
        );
        assert_eq!(
            fs::read_to_string(t.outside().join("secret")).unwrap(),
            OUTSIDE_SECRET,
            "{name}"
        );
    }
}

#[test]
fn proc_magic_links_inside_the_root_are_rejected() {
    for (name, ex) in resolvers() {
        let t = Tree::new(&format!("magic-{name}"));
        symlink("/proc/self/root", t.root().join("procroot")).unwrap();
        symlink("/proc/self/cwd", t.root().join("proccwd")).unwrap();
        let f = fs::File::open(t.outside().join("secret")).unwrap();
        use std::os::fd::AsRawFd;
        symlink(
            format!("/proc/self/fd/{}", f.as_raw_fd()),
            t.root().join("procfd"),
        )
        .unwrap();
        let via_root = format!("procroot{}", t.outside().join("secret").display());
        for p in [
            via_root.as_str(),
            "procroot/etc/passwd",
            "proccwd/Cargo.toml",
            "procfd",
        ] {
            assert_rejected(&read(&ex, &t.root(), p), &format!("{name} read {p}"));
        }
        assert_rejected(
            &write(&ex, &t.root(), "procfd", "x", false),
            &format!("{name} write procfd"),
        );
        assert_eq!(
            fs::read_to_string(t.outside().join("secret")).unwrap(),
            OUTSIDE_SECRET,
            "{name}"
        );
    }
}

#[test]
fn fifo_targets_are_rejected_without_hanging() {
    for (name, ex) in resolvers() {
        let t = Tree::new(&format!("fifo-{name}"));
        let fifo = t.root().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let started = Instant::now();
        assert_rejected(&read(&ex, &t.root(), "pipe"), &format!("{name} read fifo"));
        assert_rejected(
            &write(&ex, &t.root(), "pipe", "x", false),
            &format!("{name} write fifo"),
        );
        assert_rejected(
            &write(&ex, &t.root(), "pipe", "x", true),
            &format!("{name} append fifo"),
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{name}: a FIFO made the capability wait"
        );
        assert!(
            fs::symlink_metadata(&fifo)
                .unwrap()
                .file_type()
                .is_fifo_like(),
            "{name}: the FIFO was replaced"
        );
    }
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_fifo()
    }
}

#[test]
fn symlink_swapped_in_during_requests_never_leaks_or_plants_outside() {
    for (name, ex) in resolvers() {
        let t = Tree::new(&format!("race-{name}"));
        let swap = t.root().join("swap");
        let stop = Arc::new(AtomicBool::new(false));
        let flipper = {
            let (swap, outside, stop) = (swap.clone(), t.outside(), stop.clone());
            std::thread::spawn(move || {
                let real = swap.with_file_name("swap-real");
                let link = swap.with_file_name("swap-link");
                fs::create_dir_all(&real).unwrap();
                fs::write(real.join("secret"), "inside-copy").unwrap();
                let _ = symlink(&outside, &link);
                let mut flips = 0u64;
                // Atomically alternate `swap` between a real directory and a link out of the root.
                while !stop.load(Ordering::Relaxed) {
                    let _ = fs::remove_file(&swap).or_else(|_| fs::remove_dir(&swap));
                    let _ = std::os::unix::fs::symlink(
                        if flips.is_multiple_of(2) {
                            "swap-real"
                        } else {
                            outside.to_str().unwrap()
                        },
                        &swap,
                    );
                    flips += 1;
                }
                flips
            })
        };
        let until = Instant::now() + Duration::from_millis(400);
        let (mut reads, mut inside_hits) = (0u32, 0u32);
        while Instant::now() < until {
            let r = read(&ex, &t.root(), "swap/secret");
            assert!(
                !String::from_utf8_lossy(&r.stdout.bytes).contains(OUTSIDE_SECRET),
                "{name}: leaked during the race: {r:?}"
            );
            if r.status == JobStatus::Completed {
                inside_hits += 1;
            }
            let w = write(&ex, &t.root(), "swap/planted", "x", false);
            let _ = w;
            reads += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let flips = flipper.join().unwrap();
        assert!(
            flips > 10 && reads > 10,
            "{name}: the race did not run (flips {flips}, reads {reads})"
        );
        assert!(
            !t.outside().join("planted").exists(),
            "{name}: a write landed outside the root during the race"
        );
        // openat2 follows the in-root symlink when it points inside; the walk refuses every symlink.
        eprintln!("{name}: {reads} reads, {inside_hits} resolved inside, {flips} flips");
    }
}

#[test]
fn dry_run_validates_without_side_effects() {
    let (_, ex) = resolvers().pop().unwrap();
    let t = Tree::new("dry");
    let limits = Limits::default();
    let ctx = JobContext {
        executor: &ex,
        job_id: "dry",
        limits: &limits,
        root: &t.root(),
        cancel: None,
    };
    let ok = FileWriteCapability.dry_run(&ctx, &json!({"path": "dry.txt", "content": "x"}));
    assert!(ok.valid, "{ok:?}");
    assert!(!t.root().join("dry.txt").exists());
    let bad = FileWriteCapability.dry_run(&ctx, &json!({"path": "../x", "content": "x"}));
    assert!(!bad.valid && bad.error.is_some(), "{bad:?}");
    let unknown = FileReadCapability.dry_run(&ctx, &json!({"path": "a", "mode": "fast"}));
    assert!(!unknown.valid, "unknown keys must be refused: {unknown:?}");
}

fn run_file(
    ex: &Executor,
    root: &Path,
    cap: &dyn Capability,
    args: serde_json::Value,
) -> JobResult {
    let limits = Limits::default();
    let ctx = JobContext {
        executor: ex,
        job_id: "file-links",
        limits: &limits,
        root,
        cancel: None,
    };
    cap.execute(&ctx, &args)
}

#[test]
fn a_hard_link_to_a_file_outside_the_root_is_refused_for_read_and_write() {
    for (name, ex) in resolvers() {
        let t = Tree::new(&format!("hardlink-{name}"));
        fs::hard_link(t.outside().join("secret"), t.root().join("sub/link")).unwrap();
        let r = read(&ex, &t.root(), "sub/link");
        assert_rejected(&r, &format!("{name}: read through a hard link"));
        assert!(
            r.error.as_deref().unwrap_or("").contains("hard link"),
            "{name}: {r:?}"
        );
        let w = write(&ex, &t.root(), "sub/link", "planted", false);
        assert_rejected(&w, &format!("{name}: write over a hard link"));
        let a = write(&ex, &t.root(), "sub/link", "planted", true);
        assert_rejected(&a, &format!("{name}: append through a hard link"));
        assert_eq!(
            fs::read_to_string(t.outside().join("secret")).unwrap(),
            OUTSIDE_SECRET
        );
        assert_eq!(
            fs::read_to_string(t.root().join("sub/link")).unwrap(),
            OUTSIDE_SECRET,
            "{name}: the refused write left the link as it was"
        );
        // Allowed on request: the read sees the file; the write replaces the entry beneath the
        // root and leaves the outside file untouched.
        let r = run_file(
            &ex,
            &t.root(),
            &FileReadCapability,
            json!({"path": "sub/link", "allow_hardlinks": true}),
        );
        assert_eq!(r.status, JobStatus::Completed, "{name}: {r:?}");
        let w = run_file(
            &ex,
            &t.root(),
            &FileWriteCapability,
            json!({"path": "sub/link", "content": "new", "allow_hardlinks": true}),
        );
        assert_eq!(w.status, JobStatus::Completed, "{name}: {w:?}");
        assert_eq!(
            fs::read_to_string(t.outside().join("secret")).unwrap(),
            OUTSIDE_SECRET
        );
        let bad = run_file(
            &ex,
            &t.root(),
            &FileReadCapability,
            json!({"path": "sub/inside.txt", "allow_hardlinks": "yes"}),
        );
        assert_eq!(bad.status, JobStatus::Rejected, "{name}: {bad:?}");
    }
}

#[test]
fn file_write_keeps_the_owner_group_and_mode_of_the_file_it_replaces() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid has no preconditions.
    let root_user = unsafe { libc::geteuid() } == 0;
    for (name, ex) in resolvers() {
        let t = Tree::new(&format!("owner-{name}"));
        let target = t.root().join("sub/owned.txt");
        fs::write(&target, "old").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
        let (uid, gid) = if root_user {
            // nobody:nogroup (65534), a user other than the one vigil runs as.
            std::os::unix::fs::chown(&target, Some(65534), Some(65534)).unwrap();
            (65534, 65534)
        } else {
            let m = fs::metadata(&target).unwrap();
            (m.uid(), m.gid())
        };
        for append in [false, true] {
            let w = write(&ex, &t.root(), "sub/owned.txt", "new\n", append);
            assert_eq!(w.status, JobStatus::Completed, "{name}: {w:?}");
            let m = fs::metadata(&target).unwrap();
            assert_eq!((m.uid(), m.gid()), (uid, gid), "{name}: owner kept");
            assert_eq!(m.mode() & 0o7777, 0o640, "{name}: mode kept");
        }
        assert_eq!(fs::read_to_string(&target).unwrap(), "new\nnew\n");
        if !root_user {
            eprintln!("note: not root; the owner of another user's file is not tested");
        }
    }
}

#[test]
fn the_data_dir_and_the_deny_list_hold_for_file_jobs_unless_the_sandbox_is_off() {
    // vigil does a file job's I/O itself: its deny list and its data dir are checked on what it
    // opened, even where they lie beneath the job's root (a process job's Landlock rules cannot
    // deny a path beneath a writable one).
    let t = Tree::new("deny");
    let data = t.root().join("data");
    fs::create_dir_all(data.join("wal")).unwrap();
    fs::write(data.join("wal/IDENTITY"), "log").unwrap();
    let denied = t.root().join("secrets");
    fs::create_dir_all(&denied).unwrap();
    fs::write(denied.join("key"), OUTSIDE_SECRET).unwrap();
    let ex = Executor::new(ExecutorConfig {
        host: HostConfig {
            force_mode: Some(CgroupMode::None),
            ..HostConfig::default()
        },
        subreaper: false,
        sandbox: vigil_core::exec::sandbox::SandboxConfig {
            default_mode: Some(vigil_core::exec::sandbox::SandboxMode::Workspace),
            data_dir: Some(fs::canonicalize(&data).unwrap()),
            deny_read: Some(vec![denied.clone()]),
            ..Default::default()
        },
        ..ExecutorConfig::default()
    })
    .unwrap();
    let root = t.root();
    assert_rejected(&read(&ex, &root, "secrets/key"), "read a denied file");
    assert_rejected(&read(&ex, &root, "data/wal/IDENTITY"), "read the log");
    let w = write(&ex, &root, "data/wal/IDENTITY", "garbage", false);
    assert_eq!(w.status, JobStatus::Rejected, "{w:?}");
    assert_eq!(
        fs::read_to_string(data.join("wal/IDENTITY")).unwrap(),
        "log"
    );
    let w = write(&ex, &root, "secrets/new", "planted", false);
    assert_eq!(w.status, JobStatus::Rejected, "{w:?}");
    assert!(!denied.join("new").exists());
    let w = write(&ex, &root, "data/new", "planted", false);
    assert_eq!(w.status, JobStatus::Rejected, "{w:?}");
    // The rest of the root is as before.
    let r = read(&ex, &root, "sub/inside.txt");
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    // A symlink inside the root to a denied file is refused too.
    symlink("secrets/key", root.join("link")).unwrap();
    assert_rejected(&read(&ex, &root, "link"), "read through an in-root symlink");
    // A hard link into the root to a file inside a denied directory, planted from outside
    // and allowed by the request: its path and inode are not the denied ones, yet it is
    // refused (the directory is searched for its inode). Another hard-linked file is read.
    fs::hard_link(data.join("wal/IDENTITY"), root.join("hard-log")).unwrap();
    fs::hard_link(denied.join("key"), root.join("hard-key")).unwrap();
    fs::write(root.join("plain"), "plain").unwrap();
    fs::hard_link(root.join("plain"), root.join("plain-too")).unwrap();
    for path in ["hard-log", "hard-key"] {
        let args = json!({ "path": path, "allow_hardlinks": true });
        let r = run_file(&ex, &root, &FileReadCapability, args.clone());
        assert_rejected(&r, path);
        assert!(
            r.error
                .as_deref()
                .unwrap_or("")
                .contains("is a hard link to a file in"),
            "{r:?}"
        );
        let r = run_file(
            &ex,
            &root,
            &FileWriteCapability,
            json!({ "path": path, "content": "x", "append": true, "allow_hardlinks": true }),
        );
        assert_eq!(r.status, JobStatus::Rejected, "append to {path}: {r:?}");
    }
    let args = json!({ "path": "plain-too", "allow_hardlinks": true });
    let r = run_file(&ex, &root, &FileReadCapability, args);
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    assert_eq!(r.stdout.bytes, b"plain");
    fs::remove_file(root.join("hard-key")).unwrap();
    // With sandbox off, as before: nothing is denied.
    let limits = Limits {
        sandbox: vigil_core::exec::sandbox::SandboxRequest {
            mode: Some(vigil_core::exec::sandbox::SandboxMode::Off),
            ..Default::default()
        },
        ..Limits::default()
    };
    let ctx = JobContext {
        executor: &ex,
        job_id: "file-read-off",
        limits: &limits,
        root: &root,
        cancel: None,
    };
    let r = FileReadCapability.execute(&ctx, &json!({ "path": "secrets/key" }));
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
}
