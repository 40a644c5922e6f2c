//! Host detection: which cgroup hierarchies exist and where this process sits in them, whether
//! vigil may create its own groups there (delegation), and which process and file syscalls the
//! kernel offers (clone3 with CLONE_INTO_CGROUP, pidfd, openat2, close_range).
//!
//! Everything is found from what the kernel says — `statfs` magic numbers, /proc/self/mountinfo
//! and /proc/self/cgroup — never from a guess that `/sys/fs/cgroup` looks a certain way. The mode
//! can be forced *down* by configuration (hybrid -> v1-only -> none) so that every fallback this
//! host can provide is exercised by tests; a mode the host lacks cannot be forced up.
//!
//! Placement follows the kernel's no-internal-process rule and systemd's delegation rules: a
//! group that hands controllers down holds no processes (only the real root cgroup is exempt).
//! So where vigil must enable controllers in the group it was started in, it first moves itself
//! into a leaf of its own, `<group>/supervisor` (the name systemd's `DelegateSubgroup=` would
//! use), and its job leaves go in the sibling subtree `<group>/<parent group name>`. Each case
//! is a [`Placement`], which `doctor` reports:
//! - `root_cgroup`: vigil runs in the real root cgroup (exempt); jobs under `/<name>`;
//! - `delegated`: vigil's group is delegated to it and holds no other process than vigil's
//!   (a `Delegate=yes` service, a user's `systemd-run --user --scope -p Delegate=yes` scope, a
//!   container's own group); vigil moves into `<group>/supervisor`, jobs under `<group>/<name>`.
//!   Other vigil processes that share the group (parallel CLI runs, a CLI next to `serve`) find
//!   it split already and join the same supervisor leaf; none removes another's groups;
//! - `shared_root`: vigil runs as root in a group shared with other processes (a login
//!   session): it leaves the session alone and puts its jobs under a dedicated `/<name>` group
//!   in the real root cgroup, which it creates;
//! - `shared`: an unprivileged vigil may write its group but shares it with other processes:
//!   controllers cannot be handed down, job leaves under `<group>/<name>` only kill and count CPU;
//! - `own_group`: v1 or hybrid hosts (a controller-less cgroup2 hands nothing down): leaves
//!   under `<own group>/<name>` in each hierarchy, as there is no rule to follow;
//! - `undelegated`: no group vigil may create (an unprivileged user without delegation).
//!
//! This module owns detection and vigil's parent groups. Per-job leaves live in
//! [`super::cgroup`].
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `statfs` magic of a cgroup2 mount (linux/magic.h CGROUP2_SUPER_MAGIC).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// `statfs` magic of a cgroup v1 mount (linux/magic.h CGROUP_SUPER_MAGIC).
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
/// Longest mountinfo / cgroup file vigil reads during detection; a host with more is truncated
/// into an error rather than read without bound.
const PROC_TABLE_BYTES_MAX: u64 = 4 << 20;
/// vigil's own leaf inside a delegated group it splits (systemd's `DelegateSubgroup=` name).
pub const SUPERVISOR_LEAF: &str = "supervisor";
/// How long a vigil that moved into the supervisor leaf waits for other vigil processes that
/// started in the same group at the same moment to move too, before controllers can be enabled.
const PEER_SPLIT_WAIT_MS_MAX: u64 = 2_000;
/// Controllers vigil hands down to job leaves on cgroup2.
const V2_CONTROLLERS_WANTED: [&str; 3] = ["cpu", "memory", "pids"];
/// The line that gives an unprivileged user a delegated scope of their own.
pub const USER_SCOPE_FIX: &str = "systemd-run --user --scope -p Delegate=yes -- vigil";

/// Where vigil's cgroup2 groups sit relative to the group it was started in (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In the real root cgroup: jobs under `/<name>`.
    RootCgroup,
    /// Alone (or with other vigil processes) in a delegated group: moved into
    /// `<group>/supervisor`, jobs under `<group>/<name>`.
    Delegated,
    /// Root in a group shared with other processes: jobs under `/<name>` in the real root.
    SharedRoot,
    /// Unprivileged, in a writable group shared with other processes: no controllers.
    Shared,
    /// v1 or hybrid: leaves under the own group in each hierarchy.
    OwnGroup,
    /// No group vigil may create.
    Undelegated,
}

impl Placement {
    /// Stable lower-case name used by `doctor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::RootCgroup => "root_cgroup",
            Placement::Delegated => "delegated",
            Placement::SharedRoot => "shared_root",
            Placement::Shared => "shared",
            Placement::OwnGroup => "own_group",
            Placement::Undelegated => "undelegated",
        }
    }
}

/// How vigil confines a job's processes on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CgroupMode {
    /// No usable cgroup: process group + child subreaper + PDEATHSIG, rlimits as limits.
    None,
    /// Legacy v1 controllers only (memory, pids, cpuacct, freezer); the freezer makes the kill
    /// race-free.
    V1,
    /// v1 controllers for limits and accounting plus a controller-less cgroup2 hierarchy that
    /// gives `cgroup.kill`, `cgroup.events` and CLONE_INTO_CGROUP.
    Hybrid,
    /// Pure cgroup2 with controllers.
    V2,
}

impl CgroupMode {
    /// Stable lower-case name used in job records, `doctor` and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupMode::None => "none",
            CgroupMode::V1 => "v1",
            CgroupMode::Hybrid => "hybrid",
            CgroupMode::V2 => "v2",
        }
    }

    /// Parses the names [`CgroupMode::as_str`] prints.
    pub fn parse(text: &str) -> Option<CgroupMode> {
        match text {
            "none" => Some(CgroupMode::None),
            "v1" => Some(CgroupMode::V1),
            "hybrid" => Some(CgroupMode::Hybrid),
            "v2" => Some(CgroupMode::V2),
            _ => None,
        }
    }
}

/// What the caller wants detection to use; defaults use everything the host offers.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Use at most this mode (a lower mode than detected is honoured; a higher one is an error).
    pub force_mode: Option<CgroupMode>,
    /// Name of vigil's parent group inside each hierarchy (created beneath this process's own
    /// group there).
    pub parent_group_name: String,
    /// Pretend openat2 is missing (tests of the component-wise walk).
    pub force_no_openat2: bool,
    /// Pretend clone3 is missing (fork + placement through the pipe gate).
    pub force_no_clone3: bool,
    /// Keep clone3 but place through the gate instead of CLONE_INTO_CGROUP.
    pub force_no_clone_into_cgroup: bool,
    /// Pretend `cgroup.kill` is missing (tests of the cgroup2 freezer kill path).
    pub force_no_cgroup_kill: bool,
    /// Never use the vfork-style spawn (CLONE_VM|CLONE_VFORK, child places itself); use clone3 or
    /// fork with the gate instead.
    pub force_no_vfork: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            force_mode: None,
            parent_group_name: "vigil".to_string(),
            force_no_openat2: false,
            force_no_clone3: false,
            force_no_clone_into_cgroup: false,
            force_no_vfork: false,
            force_no_cgroup_kill: false,
        }
    }
}

/// vigil's parent group in each v1 controller hierarchy it uses.
#[derive(Debug, Clone, Default)]
pub struct V1Parents {
    /// memory controller: limit (limit_in_bytes + memsw), peak, OOM kill count.
    pub memory: Option<PathBuf>,
    /// pids controller: pids.max, fork-refusal count.
    pub pids: Option<PathBuf>,
    /// cpuacct controller: CPU usage in ns.
    pub cpuacct: Option<PathBuf>,
    /// freezer controller: stop the group before killing it.
    pub freezer: Option<PathBuf>,
}

impl V1Parents {
    /// Every present parent, with its controller name.
    pub fn present(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        [
            ("memory", self.memory.as_deref()),
            ("pids", self.pids.as_deref()),
            ("cpuacct", self.cpuacct.as_deref()),
            ("freezer", self.freezer.as_deref()),
        ]
        .into_iter()
        .filter_map(|(n, p)| p.map(|p| (n, p)))
    }
}

/// What this host provides and what vigil will use.
#[derive(Debug, Clone)]
pub struct Host {
    /// Mode in use (after forcing).
    pub mode: CgroupMode,
    /// Mode the host offers.
    pub detected_mode: CgroupMode,
    /// Effective uid is 0.
    pub is_root: bool,
    /// Where vigil's groups sit (module doc).
    pub placement: Placement,
    /// The cgroup2 group vigil was started in (before any move into the supervisor leaf).
    pub own_group: Option<PathBuf>,
    /// vigil's own leaf when it split a delegated group (`<group>/supervisor`).
    pub supervisor_leaf: Option<PathBuf>,
    /// vigil's parent group in the cgroup2 hierarchy (hybrid and v2), created.
    pub unified_parent: Option<PathBuf>,
    /// Controllers enabled for children of `unified_parent` (v2 only; empty on hybrid).
    pub v2_controllers: Vec<String>,
    /// vigil's parent groups in v1 hierarchies (hybrid and v1), created.
    pub v1: V1Parents,
    /// `cgroup.kill` exists (kernel >= 5.14) in the cgroup2 hierarchy.
    pub cgroup_kill: bool,
    /// `cgroup.freeze` exists (kernel >= 5.2): the cgroup2 freezer, used to kill race-free where
    /// `cgroup.kill` is missing.
    pub cgroup_freeze: bool,
    /// clone3 exists (kernel >= 5.3) and is not forced off.
    pub clone3: bool,
    /// clone3 can place a child into a cgroup2 group (kernel >= 5.7, cgroup2 in use).
    pub clone_into_cgroup: bool,
    /// pidfd_open / CLONE_PIDFD (kernel >= 5.3): wait on a child with poll.
    pub pidfd: bool,
    /// openat2 with RESOLVE_BENEATH (kernel >= 5.6) and not forced off.
    pub openat2: bool,
    /// Spawn with CLONE_VM|CLONE_VFORK where the child must be moved into v1 leaves (or there
    /// is no cgroup): no page-table copy and no copy-on-write faults in vigil's threads.
    pub vfork: bool,
    /// close_range (kernel >= 5.9; CLOSE_RANGE_CLOEXEC >= 5.11).
    pub close_range: bool,
    /// Why a hierarchy or feature was not used: read by `doctor` and the job record.
    pub notes: Vec<String>,
}

/// One cgroup mount from /proc/self/mountinfo.
#[derive(Debug, Clone)]
struct CgroupMount {
    /// Root of the mount within the hierarchy (usually `/`).
    root: String,
    mount_point: PathBuf,
    /// `None` for cgroup2, the v1 controllers (and `name=`) otherwise.
    controllers: Option<Vec<String>>,
}

fn read_bounded(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let file = fs::File::open(path)?;
    let mut text = String::new();
    file.take(PROC_TABLE_BYTES_MAX).read_to_string(&mut text)?;
    Ok(text)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..(i + 4).min(bytes.len())];
            if oct.len() == 3 && oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = (oct[0] - b'0') as u32 * 64
                    + (oct[1] - b'0') as u32 * 8
                    + (oct[2] - b'0') as u32;
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let (root, mount_point) = (unescape_mountinfo(pre[3]), unescape_mountinfo(pre[4]));
        let controllers = match post[0] {
            "cgroup2" => None,
            "cgroup" => Some(
                post[2]
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("relatime"))
                    .map(str::to_string)
                    .collect(),
            ),
            _ => continue,
        };
        mounts.push(CgroupMount {
            root,
            mount_point: PathBuf::from(mount_point),
            controllers,
        });
    }
    mounts
}

/// /proc/self/cgroup as (controllers, path): `("", path)` is the cgroup2 entry.
fn parse_proc_cgroup(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some((ctrls.to_string(), path.to_string()))
        })
        .collect()
}

fn statfs_magic(path: &Path) -> Option<i64> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: c is a valid NUL-terminated path; buf is a properly sized out-parameter.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    (rc == 0).then_some(buf.f_type as i64)
}

/// The directory of this process's own group in a hierarchy: mount point + (path in the
/// hierarchy relative to the mount's root).
fn own_group_dir(mount: &CgroupMount, own_path: &str) -> Option<PathBuf> {
    let rel = if mount.root == "/" {
        own_path
    } else {
        own_path.strip_prefix(mount.root.as_str())?
    };
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rel.is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(rel)
    })
}

/// Creates (or reuses) vigil's parent group under `own`; `Err` means no delegation there.
fn ensure_parent(own: &Path, name: &str) -> io::Result<PathBuf> {
    let dir = own.join(name);
    match fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // SAFETY: valid C string; access only checks permissions.
            let c = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
            if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
                Ok(dir)
            } else {
                Err(io::Error::last_os_error())
            }
        }
        Err(e) => Err(e),
    }
}

/// The controllers vigil wants that `group` may hand down (its cgroup.controllers).
fn wanted_controllers(group: &Path) -> Vec<String> {
    let available = fs::read_to_string(group.join("cgroup.controllers")).unwrap_or_default();
    available
        .split_whitespace()
        .filter(|c| V2_CONTROLLERS_WANTED.contains(c))
        .map(str::to_string)
        .collect()
}

/// Enables each controller in `dir`'s cgroup.subtree_control (one write each, so one the
/// kernel refuses does not hide the others); the first error is returned.
fn enable_controllers(dir: &Path, controllers: &[String]) -> io::Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let mut first_err = None;
    for c in controllers {
        if let Err(e) = fs::write(&file, format!("+{c}")) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// The real root cgroup has no `cgroup.type`; a namespace's root (a container) has one.
fn is_real_root(mount_point: &Path) -> bool {
    !mount_point.join("cgroup.type").exists()
}

/// This process may create groups and move processes in `group`.
fn writable(group: &Path) -> bool {
    let Ok(c) = CString::new(group.join("cgroup.procs").as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: valid C string; access only checks permissions.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// True when `group` holds a process that is neither this one nor another vigil (same
/// executable): such a process keeps the group from handing controllers down.
fn has_foreign_processes(group: &Path) -> bool {
    let Ok(text) = read_bounded(&group.join("cgroup.procs")) else {
        return true;
    };
    let me = std::process::id();
    let my_exe = fs::read_link("/proc/self/exe").ok();
    text.lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .any(|pid| {
            let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
            exe.is_none() || exe != my_exe
        })
}

fn syscall_exists(probe: impl FnOnce() -> libc::c_long) -> bool {
    let rc = probe();
    !(rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
}

/// clone3(NULL, 0) fails with EINVAL when the syscall exists and ENOSYS when it does not.
fn probe_clone3() -> bool {
    // SAFETY: a zero size makes the kernel reject the call before touching the pointer.
    syscall_exists(|| unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) })
}

fn probe_pidfd() -> bool {
    // SAFETY: pidfd_open on our own pid; the fd is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd >= 0 {
        unsafe { libc::close(fd as i32) };
        true
    } else {
        false
    }
}

fn probe_openat2() -> bool {
    let how = super::fsroot::OpenHow {
        flags: (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: 0,
    };
    // SAFETY: valid path and open_how of the published size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            &how as *const super::fsroot::OpenHow,
            std::mem::size_of::<super::fsroot::OpenHow>(),
        )
    };
    if fd >= 0 {
        unsafe { libc::close(fd as i32) };
        true
    } else {
        false
    }
}

fn probe_close_range() -> bool {
    // SAFETY: closing the empty range [MAX, MAX] closes nothing.
    syscall_exists(|| unsafe { libc::syscall(libc::SYS_close_range, u32::MAX, u32::MAX, 0u32) })
}

impl Host {
    /// Detects the host with default configuration.
    pub fn detect() -> Host {
        Host::detect_with(&HostConfig::default()).unwrap_or_else(|e| Host::none(vec![e]))
    }

    fn none(notes: Vec<String>) -> Host {
        Host {
            mode: CgroupMode::None,
            detected_mode: CgroupMode::None,
            // SAFETY: geteuid has no preconditions.
            is_root: unsafe { libc::geteuid() } == 0,
            placement: Placement::Undelegated,
            own_group: None,
            supervisor_leaf: None,
            unified_parent: None,
            v2_controllers: Vec::new(),
            v1: V1Parents::default(),
            cgroup_kill: false,
            cgroup_freeze: false,
            clone3: probe_clone3(),
            clone_into_cgroup: false,
            pidfd: probe_pidfd(),
            openat2: probe_openat2(),
            vfork: true,
            close_range: probe_close_range(),
            notes,
        }
    }

    /// Detects the host and creates vigil's parent groups. Fails only when a forced mode is
    /// higher than what the host offers or the parent name is not a plain file name.
    pub fn detect_with(config: &HostConfig) -> Result<Host, String> {
        let name = config.parent_group_name.as_str();
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(format!(
                "cgroup parent group name {name:?} must be a plain directory name"
            ));
        }
        let mut host = Host::none(Vec::new());
        if config.force_no_openat2 {
            host.openat2 = false;
            host.notes
                .push("openat2 forced off by configuration".into());
        }
        if config.force_no_vfork {
            host.vfork = false;
            host.notes
                .push("vfork-style spawn forced off by configuration".into());
        }
        if config.force_no_clone3 {
            host.clone3 = false;
            host.notes.push("clone3 forced off by configuration".into());
        }
        let mounts = match read_bounded(Path::new("/proc/self/mountinfo")) {
            Ok(t) => parse_mountinfo(&t),
            Err(e) => {
                host.notes.push(format!("/proc/self/mountinfo: {e}"));
                Vec::new()
            }
        };
        let own = match read_bounded(Path::new("/proc/self/cgroup")) {
            Ok(t) => parse_proc_cgroup(&t),
            Err(e) => {
                host.notes.push(format!("/proc/self/cgroup: {e}"));
                Vec::new()
            }
        };
        host.detect_unified(&mounts, &own, name);
        host.detect_v1(&mounts, &own, name);
        if host.unified_parent.is_none() {
            host.placement = if host.v1.present().next().is_some() {
                Placement::OwnGroup
            } else {
                Placement::Undelegated
            };
        }
        let has_v1 =
            host.v1.memory.is_some() || host.v1.pids.is_some() || host.v1.cpuacct.is_some();
        host.detected_mode = match (host.unified_parent.is_some(), has_v1) {
            (true, true) => CgroupMode::Hybrid,
            (true, false) if !host.v2_controllers.is_empty() => CgroupMode::V2,
            // A controller-less cgroup2 alone still kills and accounts CPU: treat as v2 with no
            // limit controllers (doctor says which limits are missing).
            (true, false) => CgroupMode::V2,
            (false, true) => CgroupMode::V1,
            (false, false) => CgroupMode::None,
        };
        host.mode = host.detected_mode;
        if config.force_no_cgroup_kill && host.cgroup_kill {
            host.cgroup_kill = false;
            host.notes
                .push("cgroup.kill forced off by configuration".into());
        }
        if let Some(forced) = config.force_mode {
            host.force(forced)?;
        }
        host.clone_into_cgroup =
            host.clone3 && host.unified_parent.is_some() && !config.force_no_clone_into_cgroup;
        Ok(host)
    }

    fn force(&mut self, forced: CgroupMode) -> Result<(), String> {
        let allowed = match (self.detected_mode, forced) {
            (d, f) if d == f => true,
            (_, CgroupMode::None) => true,
            (CgroupMode::Hybrid, CgroupMode::V1) => true,
            _ => false,
        };
        if !allowed {
            return Err(format!(
                "cgroup mode {} was requested but this host offers {}",
                forced.as_str(),
                self.detected_mode.as_str()
            ));
        }
        if forced < CgroupMode::Hybrid {
            self.unified_parent = None;
            self.v2_controllers.clear();
            self.cgroup_kill = false;
            self.cgroup_freeze = false;
        }
        if forced == CgroupMode::None {
            self.v1 = V1Parents::default();
        }
        if forced != self.detected_mode {
            self.notes.push(format!(
                "cgroup mode forced to {} (host offers {})",
                forced.as_str(),
                self.detected_mode.as_str()
            ));
        }
        self.mode = forced;
        Ok(())
    }

    fn detect_unified(&mut self, mounts: &[CgroupMount], own: &[(String, String)], name: &str) {
        let Some(own_path) = own
            .iter()
            .find(|(c, _)| c.is_empty())
            .map(|(_, p)| p.as_str())
        else {
            return;
        };
        let Some(mount) = mounts.iter().find(|m| {
            m.controllers.is_none() && statfs_magic(&m.mount_point) == Some(CGROUP2_SUPER_MAGIC)
        }) else {
            return;
        };
        let Some(own_dir) = own_group_dir(mount, own_path) else {
            self.notes.push(format!(
                "cgroup2: own group {own_path:?} is outside mount {:?}",
                mount.mount_point
            ));
            return;
        };
        // A vigil started inside the supervisor leaf (by a split group's DelegateSubgroup, or
        // by a process already there) belongs to the delegated group above it.
        let (group, in_supervisor) = match own_dir.parent() {
            Some(up) if own_dir.file_name().is_some_and(|n| n == SUPERVISOR_LEAF) => {
                (up.to_path_buf(), true)
            }
            _ => (own_dir.clone(), false),
        };
        self.own_group = Some(group.clone());
        let wanted = wanted_controllers(&group);
        if wanted.is_empty() {
            // Nothing to hand down (hybrid's controller-less cgroup2, or no controller
            // delegated): leaves under the own group, no rule to follow.
            if !in_supervisor {
                self.use_jobs_parent(&group, name, Placement::OwnGroup, &[]);
                return;
            }
        }
        let real_root = mount.root == "/" && is_real_root(&mount.mount_point);
        if group == mount.mount_point && real_root {
            self.use_jobs_parent(&group, name, Placement::RootCgroup, &wanted);
            return;
        }
        if in_supervisor || (writable(&group) && !has_foreign_processes(&group)) {
            match self.split(&group, in_supervisor, &wanted) {
                Ok(()) => {
                    self.supervisor_leaf = Some(group.join(SUPERVISOR_LEAF));
                    self.use_jobs_parent(&group, name, Placement::Delegated, &wanted);
                    return;
                }
                Err(e) => self.notes.push(e),
            }
        }
        if self.is_root && real_root {
            self.notes.push(format!(
                "cgroup2: {} is shared with other processes; job groups go under {}",
                group.display(),
                mount.mount_point.join(name).display()
            ));
            let all = wanted_controllers(&mount.mount_point);
            self.use_jobs_parent(&mount.mount_point, name, Placement::SharedRoot, &all);
            return;
        }
        self.use_jobs_parent(&group, name, Placement::Shared, &[]);
    }

    /// Moves this process into `<group>/supervisor` (unless it is there already) and enables
    /// `wanted` in the group, waiting a bounded time for other vigil processes that started in
    /// the same group to move out of it too.
    fn split(
        &mut self,
        group: &Path,
        in_supervisor: bool,
        wanted: &[String],
    ) -> Result<(), String> {
        let leaf = group.join(SUPERVISOR_LEAF);
        if !in_supervisor {
            match fs::create_dir(&leaf) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cgroup2: mkdir {}: {e}", leaf.display())),
            }
            // "0" moves the writing process, all its threads with it.
            fs::write(leaf.join("cgroup.procs"), "0")
                .map_err(|e| format!("cgroup2: moving vigil into {}: {e}", leaf.display()))?;
        }
        let until =
            std::time::Instant::now() + std::time::Duration::from_millis(PEER_SPLIT_WAIT_MS_MAX);
        loop {
            match enable_controllers(group, wanted) {
                Ok(()) => return Ok(()),
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        && std::time::Instant::now() < until =>
                {
                    // The group held only vigil processes when this one chose to split it: the
                    // others are moving out too (or a peer is still between exec and start).
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(format!(
                        "cgroup2: enabling {} in {}: {e}",
                        wanted.join(" "),
                        group.join("cgroup.subtree_control").display()
                    ))
                }
            }
        }
    }

    /// Creates `<base>/<name>`, hands `wanted` down from `base` and into it, and records it as
    /// the parent of job leaves.
    fn use_jobs_parent(
        &mut self,
        base: &Path,
        name: &str,
        placement: Placement,
        wanted: &[String],
    ) {
        let parent = match ensure_parent(base, name) {
            Ok(p) => p,
            Err(e) => {
                self.notes.push(format!(
                    "cgroup2: cannot create {:?}: {e} (no delegation)",
                    base.join(name)
                ));
                return;
            }
        };
        self.placement = placement;
        self.cgroup_kill = parent.join("cgroup.kill").exists();
        self.cgroup_freeze = parent.join("cgroup.freeze").exists();
        for dir in [base, parent.as_path()] {
            if let Err(e) = enable_controllers(dir, wanted) {
                self.notes.push(format!(
                    "cgroup2: enabling {} in {}: {e}",
                    wanted.join(" "),
                    dir.join("cgroup.subtree_control").display()
                ));
            }
        }
        let enabled = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
        self.v2_controllers = enabled.split_whitespace().map(str::to_string).collect();
        self.unified_parent = Some(parent);
    }

    fn detect_v1(&mut self, mounts: &[CgroupMount], own: &[(String, String)], name: &str) {
        for ctrl in ["memory", "pids", "cpuacct", "freezer"] {
            let Some(mount) = mounts.iter().find(|m| {
                m.controllers
                    .as_ref()
                    .is_some_and(|cs| cs.iter().any(|c| c == ctrl))
                    && statfs_magic(&m.mount_point) == Some(CGROUP_SUPER_MAGIC)
            }) else {
                continue;
            };
            let Some(own_path) = own
                .iter()
                .find(|(cs, _)| cs.split(',').any(|c| c == ctrl))
                .map(|(_, p)| p)
            else {
                self.notes.push(format!(
                    "cgroup v1 {ctrl}: mounted but absent from /proc/self/cgroup"
                ));
                continue;
            };
            let Some(own_dir) = own_group_dir(mount, own_path) else {
                self.notes.push(format!(
                    "cgroup v1 {ctrl}: own group {own_path:?} is outside mount {:?}",
                    mount.mount_point
                ));
                continue;
            };
            match ensure_parent(&own_dir, name) {
                Ok(parent) => {
                    let slot = match ctrl {
                        "memory" => &mut self.v1.memory,
                        "pids" => &mut self.v1.pids,
                        "cpuacct" => &mut self.v1.cpuacct,
                        _ => &mut self.v1.freezer,
                    };
                    *slot = Some(parent);
                }
                Err(e) => self.notes.push(format!(
                    "cgroup v1 {ctrl}: cannot create {:?}: {e}",
                    own_dir.join(name)
                )),
            }
        }
    }

    /// True when the kernel can hold a limit of `controller` (`memory` or `pids`) here.
    pub fn holds(&self, controller: &str) -> bool {
        match self.mode {
            CgroupMode::V2 => self.v2_controllers.iter().any(|c| c == controller),
            CgroupMode::V1 | CgroupMode::Hybrid => match controller {
                "memory" => self.v1.memory.is_some(),
                "pids" => self.v1.pids.is_some(),
                _ => false,
            },
            CgroupMode::None => false,
        }
    }

    /// What would let the kernel hold memory and pids limits, when this placement cannot.
    pub fn fix_hint(&self) -> Option<String> {
        if self.holds("memory") && self.holds("pids") {
            return None;
        }
        if self.mode != self.detected_mode {
            return Some(format!(
                "the cgroup mode is forced down to {}: drop --cgroup-mode / VIGIL_CGROUP_MODE",
                self.mode.as_str()
            ));
        }
        Some(match (self.placement, self.is_root) {
            (Placement::Undelegated | Placement::Shared, false) => format!(
                "run vigil in a delegated scope of its own: {USER_SCOPE_FIX} <command> \
                 (for example: {USER_SCOPE_FIX} run shell --args '{{\"cmd\": \"make\"}}' --memory 1G)"
            ),
            (_, false) => format!(
                "systemd's user manager does not hand cpu, memory and pids down: run \
                 `sudo systemctl edit user@.service`, add `[Service]` `Delegate=cpu memory pids`, \
                 log in again, then use {USER_SCOPE_FIX} <command>"
            ),
            (_, true) => "run vigil as a service with Delegate=yes (contrib/vigil.service), or \
                 start it with: systemd-run --scope -p Delegate=yes -- vigil <command>"
                .to_string(),
        })
    }

    /// True when some cgroup confines the job (every mode but `None`).
    pub fn has_cgroups(&self) -> bool {
        self.mode != CgroupMode::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_finds_v1_and_v2_mounts_and_unescapes() {
        let text = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                    42 31 0:39 / /mnt/with\\040space rw - cgroup cgroup rw,pids,cpuacct\n\
                    50 1 8:1 / / rw - ext4 /dev/sda rw\n\
                    garbage line\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0].controllers.as_deref(),
            Some(&["memory".to_string()][..])
        );
        assert!(m[1].controllers.is_none());
        assert_eq!(m[2].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[2].controllers.as_ref().map(|c| c.len()), Some(2));
    }

    #[test]
    fn own_group_dir_strips_mount_root_and_refuses_dotdot() {
        let m = CgroupMount {
            root: "/a".into(),
            mount_point: "/cg".into(),
            controllers: None,
        };
        assert_eq!(own_group_dir(&m, "/a/b/c"), Some(PathBuf::from("/cg/b/c")));
        assert_eq!(own_group_dir(&m, "/x"), None);
        let r = CgroupMount {
            root: "/".into(),
            mount_point: "/cg".into(),
            controllers: None,
        };
        assert_eq!(own_group_dir(&r, "/"), Some(PathBuf::from("/cg")));
        assert_eq!(own_group_dir(&r, "/../etc"), None);
    }

    #[test]
    fn proc_cgroup_lines_split_on_first_two_colons() {
        let v = parse_proc_cgroup("4:memory:/a:b\n0::/\nbad\n");
        assert_eq!(
            v,
            vec![("memory".into(), "/a:b".into()), ("".into(), "/".into())]
        );
    }

    #[test]
    fn a_group_holding_only_this_process_has_no_foreign_process() {
        let dir = std::env::temp_dir().join(format!("vigil-host-procs-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("cgroup.procs"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        assert!(!has_foreign_processes(&dir));
        // pid 1 is init, not vigil (and an unreadable exe counts as foreign too).
        fs::write(
            dir.join("cgroup.procs"),
            format!("{}\n1\n", std::process::id()),
        )
        .unwrap();
        assert!(has_foreign_processes(&dir));
        // A group that cannot be read is not assumed to be empty.
        fs::remove_file(dir.join("cgroup.procs")).unwrap();
        assert!(has_foreign_processes(&dir));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_controllers_vigil_uses_are_handed_down() {
        let dir = std::env::temp_dir().join(format!("vigil-host-ctrl-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma\n",
        )
        .unwrap();
        assert_eq!(wanted_controllers(&dir), ["cpu", "memory", "pids"]);
        fs::write(dir.join("cgroup.controllers"), "\n").unwrap();
        assert!(wanted_controllers(&dir).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_fix_names_the_delegated_scope_line_for_an_unprivileged_user() {
        let mut h = Host::none(Vec::new());
        h.is_root = false;
        h.placement = Placement::Undelegated;
        let fix = h.fix_hint().unwrap();
        assert!(
            fix.contains("systemd-run --user --scope -p Delegate=yes -- vigil"),
            "{fix}"
        );
        h.is_root = true;
        assert!(h.fix_hint().unwrap().contains("Delegate=yes"));
        // Where the kernel holds both, there is nothing to fix.
        h.mode = CgroupMode::V2;
        h.detected_mode = CgroupMode::V2;
        h.v2_controllers = vec!["memory".into(), "pids".into()];
        assert_eq!(h.fix_hint(), None);
    }

    #[test]
    fn forcing_a_higher_mode_than_detected_is_an_error() {
        let mut h = Host::none(Vec::new());
        assert!(h.force(CgroupMode::Hybrid).is_err());
        assert!(h.force(CgroupMode::None).is_ok());
    }
}
