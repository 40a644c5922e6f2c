//! One cgroup leaf per job, across every hierarchy the host mode uses, and the sweep of leaves
//! left behind by a dead vigil instance.
//!
//! A leaf is named `<job id>.<owner pid>-<owner start time>`: the owner marker lets a new
//! instance tell its own live leaves (owner alive, same start time) from a dead instance's (owner
//! gone or pid reused), so the sweep never touches a running instance's jobs.
//!
//! The kill path never relies on signals reaching processes that try to escape: it first stops
//! new forks (`pids.max` = 0), then kills the whole group at once (`cgroup.kill`; on v1 the freezer
//! stops every task before SIGKILL so none can fork or move between the listing and the kill),
//! and finally waits until the group is empty before removing it.//!
//! Parts: `kill` (stop forks, kill the group at once, wait until it is empty), `usage` (CPU,
//! memory, OOM kills, refused forks) and `sweep` (leaves of dead instances).
mod kill;
mod sweep;
mod usage;

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::host::{CgroupMode, Host};
use super::{ExecError, Limits};
use crate::procfs::cgroup as procfs;

pub(crate) use sweep::instance_alive;
pub use sweep::{instance_marker, sweep_stale, SweepReport};
pub use usage::CgroupUsage;

/// How long the kill path waits for a group to empty before giving up (and reporting it).
pub const KILL_WAIT_MS_MAX: u64 = 5_000;
/// Longest cgroup interface file vigil reads (cgroup.procs of a huge group is cut here).
const CGROUP_FILE_BYTES_MAX: u64 = 1 << 20;

/// Reads a small cgroup file whole (bounded).
fn read_small(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    fs::File::open(path)?
        .take(CGROUP_FILE_BYTES_MAX)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Value of `key` in a flat-keyed cgroup file (`cgroup.events`), via the shared parser.
fn flat_value(text: &str, key: &[u8]) -> Option<u64> {
    let mut found = None;
    procfs::for_each_flat_keyed(text.as_bytes(), |k, v| {
        if k == key {
            found = Some(v);
        }
    })
    .ok()?;
    found
}

fn counter(path: &Path) -> Option<u64> {
    read_small(path)
        .ok()
        .and_then(|t| procfs::parse_counter(t.as_bytes()).ok())
}

fn write_file(path: &Path, value: &str) -> Result<(), ExecError> {
    fs::write(path, value).map_err(|e| ExecError::Cgroup {
        path: path.to_path_buf(),
        action: format!("write {value:?}"),
        source: e,
    })
}

/// A job's leaf in every hierarchy of the host mode. Dropping an un-removed leaf kills what is
/// in it and removes it, so no error path leaves processes or directories behind.
#[derive(Debug)]
pub struct CgroupLeaf {
    name: String,
    mode: CgroupMode,
    unified: Option<PathBuf>,
    /// O_PATH|O_DIRECTORY handle of the cgroup2 leaf for CLONE_INTO_CGROUP.
    unified_dir_fd: Option<OwnedFd>,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
    freezer: Option<PathBuf>,
    has_cgroup_kill: bool,
    has_cgroup_freeze: bool,
    removed: bool,
}

/// Job ids become directory names: keep them to a safe alphabet.
pub fn validate_job_id(job_id: &str) -> Result<(), ExecError> {
    let ok = !job_id.is_empty()
        && job_id.len() <= 128
        && job_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ExecError::InvalidJobId(job_id.to_string()))
    }
}

impl CgroupLeaf {
    /// Creates the leaf in every hierarchy and writes the limits before any process is placed.
    pub fn create(host: &Host, job_id: &str, limits: &Limits) -> Result<CgroupLeaf, ExecError> {
        validate_job_id(job_id)?;
        let name = format!("{job_id}.{}", instance_marker());
        let mut leaf = CgroupLeaf {
            name: name.clone(),
            mode: host.mode,
            unified: None,
            unified_dir_fd: None,
            memory: None,
            pids: None,
            cpuacct: None,
            freezer: None,
            has_cgroup_kill: host.cgroup_kill,
            has_cgroup_freeze: host.cgroup_freeze,
            removed: false,
        };
        let mkdir = |parent: &Path| -> Result<PathBuf, ExecError> {
            let dir = parent.join(&name);
            fs::create_dir(&dir).map_err(|e| ExecError::Cgroup {
                path: dir.clone(),
                action: "mkdir".into(),
                source: e,
            })?;
            Ok(dir)
        };
        if let Some(p) = &host.unified_parent {
            let dir = mkdir(p)?;
            leaf.unified_dir_fd = open_dir_path(&dir).ok();
            leaf.unified = Some(dir);
        }
        // Every v1 leaf costs a mkdir, a migration of the child and an rmdir: create only those
        // that do something the cgroup2 leaf cannot. Memory: limit and peak accounting (always).
        // Pids: only for a pids limit (cgroup.kill and the freezer already stop forks during the
        // kill). Cpuacct and freezer: only without cgroup2 (cpu.stat and cgroup.kill replace them).
        let v1_only = host.unified_parent.is_none() || !(host.cgroup_kill || host.cgroup_freeze);
        if let Some(p) = &host.v1.memory {
            leaf.memory = Some(mkdir(p)?);
        }
        if let (Some(p), Some(_)) = (&host.v1.pids, limits.pids) {
            leaf.pids = Some(mkdir(p)?);
        }
        if let (Some(p), true) = (&host.v1.cpuacct, host.unified_parent.is_none()) {
            leaf.cpuacct = Some(mkdir(p)?);
        }
        if let (Some(p), true) = (&host.v1.freezer, v1_only) {
            leaf.freezer = Some(mkdir(p)?);
        }
        leaf.write_limits(host, limits)?;
        Ok(leaf)
    }

    fn write_limits(&self, host: &Host, limits: &Limits) -> Result<(), ExecError> {
        let v2_has =
            |c: &str| host.mode == CgroupMode::V2 && host.v2_controllers.iter().any(|x| x == c);
        if let Some(bytes) = limits.memory_bytes {
            if let Some(m) = &self.memory {
                write_file(&m.join("memory.limit_in_bytes"), &bytes.to_string())?;
                // memsw = memory + swap: equal to the memory limit means no swap at all. It must be
                // written after limit_in_bytes (the kernel keeps memsw >= limit).
                let memsw = m.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write_file(&memsw, &bytes.to_string())?;
                }
            } else if let (true, Some(u)) = (v2_has("memory"), &self.unified) {
                write_file(&u.join("memory.max"), &bytes.to_string())?;
                let swap = u.join("memory.swap.max");
                if swap.exists() {
                    write_file(&swap, "0")?;
                }
                // Kill the whole job, not one process, when it runs out of memory.
                let group = u.join("memory.oom.group");
                if group.exists() {
                    write_file(&group, "1")?;
                }
            }
        }
        if let Some(n) = limits.pids {
            if let Some(p) = &self.pids {
                write_file(&p.join("pids.max"), &n.to_string())?;
            } else if let (true, Some(u)) = (v2_has("pids"), &self.unified) {
                write_file(&u.join("pids.max"), &n.to_string())?;
            }
        }
        Ok(())
    }

    /// The leaf's directory name (`<job id>.<owner marker>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cgroup2 leaf directory, if this mode has one.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.unified.as_deref()
    }

    /// Raw fd of the cgroup2 leaf for clone3's `cgroup` field.
    pub(crate) fn unified_fd(&self) -> Option<i32> {
        self.unified_dir_fd.as_ref().map(|f| f.as_raw_fd())
    }

    /// True when a process must be moved into v1 leaves after it is created (so the child has to
    /// wait on the gate until that is done).
    pub(crate) fn needs_v1_placement(&self) -> bool {
        self.memory.is_some()
            || self.pids.is_some()
            || self.cpuacct.is_some()
            || self.freezer.is_some()
    }

    /// Moves `pid` into every v1 leaf, and into the cgroup2 leaf unless clone3 already put it
    /// there.
    pub(crate) fn place(&self, pid: i32, in_unified_already: bool) -> Result<(), ExecError> {
        let pid_text = pid.to_string();
        for dir in [&self.memory, &self.pids, &self.cpuacct, &self.freezer]
            .into_iter()
            .flatten()
        {
            write_file(&dir.join("cgroup.procs"), &pid_text)?;
        }
        if !in_unified_already {
            if let Some(u) = &self.unified {
                write_file(&u.join("cgroup.procs"), &pid_text)?;
            }
        }
        Ok(())
    }

    /// The files a vfork-style child writes "0" (itself) into, before it execs, to be in the
    /// whole leaf: each v1 leaf's `tasks`, and the cgroup2 leaf's `cgroup.procs` unless clone3
    /// created the child there (`in_unified_already`).
    ///
    /// v1 takes `tasks`, not `cgroup.procs`: a thread moving itself ("0" to `tasks`) is the one
    /// migration recent kernels make without write-locking the global threadgroup rwsem, whose
    /// write side waits for an RCU grace period when it has been idle (5-15 ms measured on a
    /// 6.18 hybrid host, against 0.1 ms; a kernel that still takes the lock for it costs what
    /// `cgroup.procs` did, no more). The child is single-threaded, so moving its thread moves
    /// the whole process. cgroup2 domain groups refuse thread moves, hence CLONE_INTO_CGROUP
    /// there.
    pub(crate) fn self_place_files(&self, in_unified_already: bool) -> Vec<PathBuf> {
        let v1 = [&self.memory, &self.pids, &self.cpuacct, &self.freezer]
            .into_iter()
            .flatten()
            .map(|d| d.join("tasks"));
        let unified = self
            .unified
            .iter()
            .filter(|_| !in_unified_already)
            .map(|d| d.join("cgroup.procs"));
        v1.chain(unified).collect()
    }

    /// The directory whose cgroup.procs lists every process of the job.
    fn membership_dir(&self) -> Option<&Path> {
        self.unified
            .as_deref()
            .or(self.freezer.as_deref())
            .or(self.pids.as_deref())
            .or(self.memory.as_deref())
            .or(self.cpuacct.as_deref())
    }

    /// Pids currently in the group (bounded read).
    pub fn procs(&self) -> Vec<i32> {
        let Some(dir) = self.membership_dir() else {
            return Vec::new();
        };
        let mut all = Vec::new();
        // v1 leaves may briefly disagree while a process is being placed: union them.
        for d in [Some(dir), self.pids.as_deref(), self.memory.as_deref()]
            .into_iter()
            .flatten()
        {
            if let Ok(text) = read_small(&d.join("cgroup.procs")) {
                all.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        all.sort_unstable();
        all.dedup();
        all
    }

    /// True when no process is left in the group.
    pub fn is_empty(&self) -> bool {
        if let Some(u) = &self.unified {
            if let Ok(text) = read_small(&u.join("cgroup.events")) {
                return flat_value(&text, b"populated") == Some(0);
            }
        }
        self.procs().is_empty()
    }
    /// Removes every directory of the leaf. The group must be empty.
    pub fn remove(mut self) -> Result<(), ExecError> {
        self.remove_dirs()
    }

    /// The leaf's directory in every hierarchy it has one in.
    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        [
            &self.unified,
            &self.memory,
            &self.pids,
            &self.cpuacct,
            &self.freezer,
        ]
        .into_iter()
        .flatten()
    }

    fn remove_dirs(&mut self) -> Result<(), ExecError> {
        self.unified_dir_fd = None;
        let mut first_err = None;
        for dir in self.dirs() {
            if let Err(e) = rmdir_retry(dir) {
                first_err.get_or_insert(e);
            }
        }
        self.removed = true;
        first_err.map_or(Ok(()), Err)
    }
}

/// How long removing a leaf retries on EBUSY: killed tasks leave the group as they finish
/// exiting, which on a loaded machine takes a while.
const RMDIR_BUSY_WAIT_MS_MAX: u64 = 5_000;

/// rmdir, retrying on EBUSY: the last task may still be leaving the group.
fn rmdir_retry(dir: &Path) -> Result<(), ExecError> {
    let until = Instant::now() + Duration::from_millis(RMDIR_BUSY_WAIT_MS_MAX);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => {
                return Err(ExecError::Cgroup {
                    path: dir.to_path_buf(),
                    action: "rmdir".into(),
                    source: e,
                })
            }
        }
    }
}

impl Drop for CgroupLeaf {
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.kill_all();
            let _ = self.remove_dirs();
        }
    }
}

fn open_dir_path(dir: &Path) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: valid C string; the returned fd is owned here.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_values_are_found_by_exact_key() {
        assert_eq!(flat_value("populated 1\nfrozen 0\n", b"populated"), Some(1));
        assert_eq!(flat_value("populated_x 1\n", b"populated"), None);
        assert_eq!(flat_value("populated x\n", b"populated"), None);
    }

    #[test]
    fn job_ids_are_restricted_to_a_directory_safe_alphabet() {
        assert!(validate_job_id("abc-123_x").is_ok());
        for bad in ["", "a/b", "..", "a.b", "a b", &"x".repeat(129)] {
            assert!(validate_job_id(bad).is_err(), "{bad:?}");
        }
    }
}
