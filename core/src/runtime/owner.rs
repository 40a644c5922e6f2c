//! Who owns a running job, and whether that owner is still alive.
//!
//! Several processes (CLI runs, a server, C hosts) share one data directory. A job that
//! started and has no end is interrupted only when the process that runs it is gone, never
//! because another process opened the log. Each runtime is an *owner*: it names itself
//! `PID-START@PIDNS.N` (pid, its start time in clock ticks since boot, its pid namespace, and
//! which runtime of the process it is), holds
//! `owners/NAME.lock` with `flock` for its whole life, and writes a `JOB_OWNER` record with
//! every job it starts (in the same append batch as the `JobStarted`).
//!
//! An owner is dead when its lock is free (the kernel drops it when the process dies), or
//! when it lives in this pid namespace and that pid is gone, a zombie, or a different process
//! (a lock can outlive its process for a moment while the kernel tears the process down). A
//! job with no owner record (a crash between the two records, or an earlier version) has no
//! one to finish it: its owner is dead.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::wal::storage::{create_private_dir, PRIVATE_FILE_MODE};

/// Where owners keep their locks, under the data directory.
pub const OWNERS_DIR_NAME: &str = "owners";
const LOCK_SUFFIX: &str = ".lock";
/// Suffix of a lock file being set up (not an owner name: liveness probes never look at it).
const STAGING_SUFFIX: &str = ".lock-staging";

/// The payload of a `JOB_OWNER` record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobOwner {
    /// The job the record claims.
    pub job_id: u64,
    /// The owner's name, `PID-START@PIDNS.N` (see the module doc).
    pub owner: String,
}

/// This process's ownership: its name and the lock it holds while it lives.
#[derive(Debug)]
pub struct OwnerLock {
    name: String,
    dir: PathBuf,
    _file: File,
}

/// A new owner name for a runtime of this process.
fn new_name() -> String {
    static OPENED: AtomicU64 = AtomicU64::new(0);
    let marker = crate::exec::cgroup::instance_marker();
    let n = OPENED.fetch_add(1, Ordering::Relaxed);
    format!("{marker}@{}.{n}", pid_namespace().unwrap_or(0))
}

/// The inode of this process's pid namespace (pids are only comparable within one).
fn pid_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
}

fn lock_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{LOCK_SUFFIX}"))
}

fn flock(file: &File, operation: libc::c_int) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(error),
        }
    }
}

impl OwnerLock {
    /// Takes a new owner lock in `data_dir`, for one runtime's life.
    pub fn acquire(data_dir: &Path) -> io::Result<OwnerLock> {
        let dir = data_dir.join(OWNERS_DIR_NAME);
        create_private_dir(&dir)?;
        let name = new_name();
        let path = lock_path(&dir, &name);
        // The lock is taken on a file under a name no owner has, then renamed into place: the
        // owner's lock path is held from the moment it exists. Created in place, another
        // process's liveness probe could find it free between the create and the flock, call
        // this owner dead, remove its lock file and later interrupt its running jobs.
        let staging = dir.join(format!("{name}{STAGING_SUFFIX}"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(PRIVATE_FILE_MODE)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&staging)?;
        if !flock(&file, libc::LOCK_EX | libc::LOCK_NB)? {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("owner lock {} is held", staging.display()),
            ));
        }
        if let Err(error) = fs::rename(&staging, &path) {
            let _ = fs::remove_file(&staging);
            return Err(error);
        }
        Ok(OwnerLock {
            name,
            dir,
            _file: file,
        })
    }

    /// This owner's name, as written in `JOB_OWNER` records.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the owner `name` is alive.
    pub fn is_alive(&self, name: &str) -> bool {
        if name == self.name {
            return true;
        }
        if !is_owner_name(name) {
            return false;
        }
        let (marker, rest) = name.split_once('@').unwrap_or((name, ""));
        let namespace = rest.split_once('.').map_or(rest, |(ns, _)| ns);
        let same_namespace = namespace.parse::<u64>().ok() == pid_namespace();
        if same_namespace && !crate::exec::cgroup::instance_alive(marker) {
            return false;
        }
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(lock_path(&self.dir, name))
        {
            // Free lock: no process holds it.
            Ok(file) => !flock(&file, libc::LOCK_EX | libc::LOCK_NB).unwrap_or(false),
            Err(error) if error.kind() == io::ErrorKind::NotFound => false,
            // Cannot tell by the lock: the process check above is all there is.
            Err(_) => same_namespace,
        }
    }

    /// Removes the lock files of owners that are gone (their jobs already ended or were
    /// marked interrupted). Best effort.
    pub fn remove_dead(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(LOCK_SUFFIX)) else {
                continue;
            };
            if is_owner_name(name) && !self.is_alive(name) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Whether `name` has the form of an owner name (nothing else is looked up by it).
fn is_owner_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'@' | b'.'))
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_is_alive_while_it_holds_its_lock_and_dead_once_released() {
        let dir = std::env::temp_dir().join(format!("vigil-owner-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let me = OwnerLock::acquire(&dir).unwrap();
        assert!(me.is_alive(me.name()));
        assert!(!me.is_alive("../etc/passwd"), "not an owner name");
        assert!(!me.is_alive("1-1@1.0"), "no such lock file: dead");
        // An owner of another namespace is alive exactly while its lock is held.
        let other = format!("{}@1.0", crate::exec::cgroup::instance_marker());
        let path = lock_path(&dir.join(OWNERS_DIR_NAME), &other);
        let held = File::create(&path).unwrap();
        assert!(flock(&held, libc::LOCK_EX).unwrap());
        assert!(me.is_alive(&other), "its lock is held");
        drop(held);
        assert!(!me.is_alive(&other), "its lock is free");
        // A second runtime of this process is another owner: alive while it is open.
        let second = OwnerLock::acquire(&dir).unwrap();
        assert_ne!(second.name(), me.name());
        assert!(me.is_alive(second.name()));
        let second_name = second.name().to_string();
        drop(second);
        assert!(!me.is_alive(&second_name), "closed: its lock is free");
        me.remove_dead();
        assert!(!path.exists());
        assert!(lock_path(&dir.join(OWNERS_DIR_NAME), me.name()).exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
