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
//! and finally waits until the group is empty before removing it.
use std::fs;
use std::io::{self, Read, Seek};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::host::{CgroupMode, Host};
use super::{ExecError, Limits};
use crate::procfs::cgroup as procfs;

/// How long the kill path waits for a group to empty before giving up (and reporting it).
pub const KILL_WAIT_MS_MAX: u64 = 5_000;
/// How long the v1 freezer may take to reach FROZEN before vigil kills without it.
const FREEZE_WAIT_MS_MAX: u64 = 1_000;
/// Longest cgroup interface file vigil reads (cgroup.procs of a huge group is cut here).
const CGROUP_FILE_BYTES_MAX: u64 = 1 << 20;
/// Rounds of "list and SIGKILL" on hosts without cgroup.kill or freezer.
const KILL_ROUNDS_MAX: u32 = 1_000;

/// This process's identity for leaf names: pid and start time (clock ticks since boot), which
/// together are never reused while the machine runs.
pub fn instance_marker() -> &'static str {
    static MARKER: OnceLock<String> = OnceLock::new();
    MARKER.get_or_init(|| {
        let pid = std::process::id();
        let start = process_start_ticks(pid as i32).unwrap_or(0);
        format!("{pid}-{start}")
    })
}

/// Field 22 (starttime) of /proc/PID/stat.
pub(crate) fn process_start_ticks(pid: i32) -> Option<u64> {
    super::reaper::proc_stat(pid).map(|st| st.start_ticks)
}

/// True when the instance named by a marker `pid-start` is still running: that pid exists,
/// started at that time (not a reused pid), and is not a zombie or dying (an instance that
/// has exited but not been reaped runs nothing and will never remove its leaves).
fn instance_alive(marker: &str) -> bool {
    let Some((pid, start)) = marker.split_once('-') else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<i32>(), start.parse::<u64>()) else {
        return false;
    };
    super::reaper::proc_stat(pid)
        .is_some_and(|st| st.start_ticks == start && !matches!(st.state, b'Z' | b'X' | b'x'))
}

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

/// Usage read from a job's group just before it is removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// CPU time of every process that ran in the group.
    pub cpu_usage_us: Option<u64>,
    /// Highest memory charge of the group.
    pub memory_peak_bytes: Option<u64>,
    /// Processes the kernel OOM-killed inside the group.
    pub oom_kills: Option<u64>,
    /// Forks refused because the pids limit was reached.
    pub pids_limit_hits: Option<u64>,
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

    /// Every cgroup.procs file a process must be written into to be in the whole leaf (the child
    /// of a vfork-style spawn writes "0", meaning itself, into each before it execs).
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        [
            &self.unified,
            &self.memory,
            &self.pids,
            &self.cpuacct,
            &self.freezer,
        ]
        .into_iter()
        .flatten()
        .map(|d| d.join("cgroup.procs"))
        .collect()
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

    /// Kills every process of the job and waits until the group is empty. Returns the pids that
    /// were in the group when the kill began (their zombies may need reaping).
    pub fn kill_all(&self) -> Result<Vec<i32>, ExecError> {
        let members = self.procs();
        // 1. No new processes from here on.
        for dir in [&self.pids].into_iter().flatten() {
            let _ = fs::write(dir.join("pids.max"), "0");
        }
        if let Some(u) = &self.unified {
            let pm = u.join("pids.max");
            if pm.exists() {
                let _ = fs::write(pm, "0");
            }
        }
        // 2. Kill the whole group.
        if let (true, Some(u)) = (self.has_cgroup_kill, &self.unified) {
            write_file(&u.join("cgroup.kill"), "1")?;
        } else if let (true, Some(u)) = (self.has_cgroup_freeze, &self.unified) {
            self.freeze2_kill_thaw(u)?;
        } else if let Some(f) = &self.freezer {
            self.freeze_kill_thaw(f)?;
        } else {
            self.kill_rounds();
        }
        // 3. Wait for it to be empty.
        self.wait_empty(Duration::from_millis(KILL_WAIT_MS_MAX))?;
        Ok(members)
    }

    /// cgroup2 freezer: freeze, wait for `frozen 1` in cgroup.events, SIGKILL every member,
    /// thaw. Frozen tasks cannot fork, so the listing is complete.
    fn freeze2_kill_thaw(&self, unified: &Path) -> Result<(), ExecError> {
        write_file(&unified.join("cgroup.freeze"), "1")?;
        let events = unified.join("cgroup.events");
        let until = Instant::now() + Duration::from_millis(FREEZE_WAIT_MS_MAX);
        let mut pause_us = 50;
        while read_small(&events)
            .ok()
            .and_then(|t| flat_value(&t, b"frozen"))
            != Some(1)
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_micros(pause_us));
            pause_us = (pause_us * 2).min(5_000);
        }
        for pid in self.procs() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        write_file(&unified.join("cgroup.freeze"), "0")?;
        self.kill_rounds();
        Ok(())
    }

    fn freeze_kill_thaw(&self, freezer: &Path) -> Result<(), ExecError> {
        let state = freezer.join("freezer.state");
        write_file(&state, "FROZEN")?;
        let until = Instant::now() + Duration::from_millis(FREEZE_WAIT_MS_MAX);
        let mut pause_us = 50;
        while read_small(&state)
            .map(|s| s.trim() != "FROZEN")
            .unwrap_or(true)
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_micros(pause_us));
            pause_us = (pause_us * 2).min(5_000);
        }
        // Frozen tasks cannot fork or exit; SIGKILL is delivered when they thaw.
        for pid in self.procs() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        write_file(&state, "THAWED")?;
        // Anything that slipped in between (should be nothing: pids.max is 0) is killed in rounds.
        self.kill_rounds();
        Ok(())
    }

    fn kill_rounds(&self) {
        for _ in 0..KILL_ROUNDS_MAX {
            let procs = self.procs();
            if procs.is_empty() {
                return;
            }
            for pid in procs {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Waits until the group has no process, with `cgroup.events` notifications where they
    /// exist (POLLPRI on a modification) and short sleeps otherwise.
    pub fn wait_empty(&self, max: Duration) -> Result<(), ExecError> {
        let until = Instant::now() + max;
        // Reading cgroup.events through the fd that is polled re-arms its notification; a read
        // through another fd would leave POLLPRI set and turn the wait into a spin.
        let mut events = self
            .unified
            .as_ref()
            .and_then(|u| fs::File::open(u.join("cgroup.events")).ok());
        let mut pause_us = 20;
        let mut text = String::new();
        loop {
            let empty = match events.as_mut() {
                Some(f) => {
                    text.clear();
                    let read = f
                        .seek(io::SeekFrom::Start(0))
                        .and_then(|_| f.read_to_string(&mut text));
                    match read {
                        Ok(_) => flat_value(&text, b"populated") == Some(0),
                        Err(_) => self.is_empty(),
                    }
                }
                None => self.is_empty(),
            };
            if empty {
                return Ok(());
            }
            let now = Instant::now();
            if now >= until {
                return Err(ExecError::KillTimeout {
                    leaf: self.name.clone(),
                    remaining: self.procs(),
                });
            }
            let left_ms = (until - now).as_millis().min(50) as i32;
            if let Some(f) = &events {
                let mut pfd = libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLPRI,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, left_ms.max(1)) };
            } else {
                std::thread::sleep(Duration::from_micros(pause_us));
                pause_us = (pause_us * 2).min(2_000);
            }
        }
    }

    /// OOM kills in the group so far (v1 memory.oom_control or v2 memory.events).
    pub fn oom_kills(&self) -> Option<u64> {
        if let Some(m) = &self.memory {
            let t = read_small(&m.join("memory.oom_control")).ok()?;
            return procfs::OomControl::parse(t.as_bytes()).ok()?.oom_kill;
        }
        if self.mode != CgroupMode::V2 {
            return None;
        }
        let t = read_small(&self.unified.as_ref()?.join("memory.events")).ok()?;
        procfs::MemoryEvents::parse(t.as_bytes())
            .ok()
            .map(|e| e.oom_kill)
    }

    /// CPU, peak memory, OOM kills and refused forks, from whichever hierarchy has them.
    pub fn usage(&self) -> CgroupUsage {
        let mut u = CgroupUsage {
            cpu_usage_us: self.cpu_usage_us(),
            ..CgroupUsage::default()
        };
        let text = |dir: &Path, file: &str| read_small(&dir.join(file)).ok();
        if let Some(m) = &self.memory {
            u.memory_peak_bytes = counter(&m.join("memory.max_usage_in_bytes"));
            u.oom_kills = text(m, "memory.oom_control")
                .and_then(|t| procfs::OomControl::parse(t.as_bytes()).ok())
                .and_then(|o| o.oom_kill);
        } else if let (CgroupMode::V2, Some(d)) = (self.mode, &self.unified) {
            u.memory_peak_bytes = counter(&d.join("memory.peak"));
            u.oom_kills = text(d, "memory.events")
                .and_then(|t| procfs::MemoryEvents::parse(t.as_bytes()).ok())
                .map(|e| e.oom_kill);
        }
        u.pids_limit_hits = self.pids_limit_hits();
        u
    }

    /// Forks refused by the pids limit so far: the `max` counter of pids.events (v1 leaf, or
    /// the cgroup2 leaf on v2). Read it before [`CgroupLeaf::kill_all`], whose pids.max=0
    /// refuses forks of its own.
    pub fn pids_limit_hits(&self) -> Option<u64> {
        let dir = self.pids.as_deref().or(if self.mode == CgroupMode::V2 {
            self.unified.as_deref()
        } else {
            None
        })?;
        let text = read_small(&dir.join("pids.events")).ok()?;
        procfs::PidsEvents::parse(text.as_bytes())
            .ok()
            .map(|e| e.max)
    }

    /// CPU usage so far (for the CPU-time budget): cpuacct.usage on v1, else cpu.stat's
    /// usage_usec, which every cgroup2 group has with or without the cpu controller.
    pub fn cpu_usage_us(&self) -> Option<u64> {
        if let Some(c) = &self.cpuacct {
            return counter(&c.join("cpuacct.usage")).map(|ns| ns / 1_000);
        }
        let d = self.unified.as_ref()?;
        let t = read_small(&d.join("cpu.stat")).ok()?;
        procfs::CpuStat::parse(t.as_bytes()).ok()?.usage_usec
    }

    /// Removes every directory of the leaf. The group must be empty.
    pub fn remove(mut self) -> Result<(), ExecError> {
        self.remove_dirs()
    }

    fn remove_dirs(&mut self) -> Result<(), ExecError> {
        self.unified_dir_fd = None;
        let mut first_err = None;
        for dir in [
            &self.unified,
            &self.memory,
            &self.pids,
            &self.cpuacct,
            &self.freezer,
        ]
        .into_iter()
        .flatten()
        {
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

/// What the start-up sweep did.
#[derive(Debug, Default, Clone)]
pub struct SweepReport {
    /// Leaf names of dead instances that were killed and removed.
    pub removed: Vec<String>,
    /// Leaves that could not be removed, with the reason.
    pub failed: Vec<String>,
}

/// Kills and removes every leaf under vigil's parent groups whose owner instance is dead.
/// Leaves of live instances (this one included) are left alone.
pub fn sweep_stale(host: &Host) -> SweepReport {
    let mut names: Vec<String> = Vec::new();
    let parents: Vec<&Path> = host
        .unified_parent
        .iter()
        .map(|p| p.as_path())
        .chain(host.v1.present().map(|(_, p)| p))
        .collect();
    for parent in &parents {
        let Ok(entries) = fs::read_dir(parent) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if let Some(n) = e.file_name().to_str() {
                    if !names.iter().any(|x| x == n) {
                        names.push(n.to_string());
                    }
                }
            }
        }
    }
    let mut report = SweepReport::default();
    for name in names {
        let Some((_, owner)) = name.rsplit_once('.') else {
            continue;
        };
        if instance_alive(owner) {
            continue;
        }
        let at = |p: Option<&PathBuf>| p.map(|p| p.join(&name)).filter(|d| d.is_dir());
        let leaf = CgroupLeaf {
            name: name.clone(),
            mode: host.mode,
            unified: at(host.unified_parent.as_ref()),
            unified_dir_fd: None,
            memory: at(host.v1.memory.as_ref()),
            pids: at(host.v1.pids.as_ref()),
            cpuacct: at(host.v1.cpuacct.as_ref()),
            freezer: at(host.v1.freezer.as_ref()),
            has_cgroup_kill: host.cgroup_kill,
            has_cgroup_freeze: host.cgroup_freeze,
            removed: false,
        };
        let outcome = leaf.kill_all().and_then(|_| leaf.remove());
        match outcome {
            Ok(()) => report.removed.push(name),
            Err(e) => report.failed.push(format!("{name}: {e}")),
        }
    }
    report
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
    fn own_instance_is_alive_and_garbage_markers_are_dead() {
        assert!(instance_alive(instance_marker()));
        assert!(!instance_alive("nonsense"));
        assert!(!instance_alive("1-0"));
    }

    #[test]
    fn job_ids_are_restricted_to_a_directory_safe_alphabet() {
        assert!(validate_job_id("abc-123_x").is_ok());
        for bad in ["", "a/b", "..", "a.b", "a b", &"x".repeat(129)] {
            assert!(validate_job_id(bad).is_err(), "{bad:?}");
        }
    }
}
