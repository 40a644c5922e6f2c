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
//! [`super::cgroup`].//!
//! Parts: `mounts` reads the cgroup mounts and this process's groups from /proc, `groups`
//! creates and inspects vigil's parent groups, `detect` walks each hierarchy, `probe` asks
//! the kernel which syscalls it has.
mod detect;
mod groups;
mod mounts;
mod probe;

use std::path::{Path, PathBuf};

use mounts::{parse_mountinfo, parse_proc_cgroup, read_bounded};
use probe::{probe_cap_sys_admin, probe_clone3, probe_close_range, probe_openat2, probe_pidfd};

/// `statfs` magic of a cgroup2 mount (linux/magic.h CGROUP2_SUPER_MAGIC).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// `statfs` magic of a cgroup v1 mount (linux/magic.h CGROUP_SUPER_MAGIC).
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
/// vigil's own leaf inside a delegated group it splits (systemd's `DelegateSubgroup=` name).
pub const SUPERVISOR_LEAF: &str = "supervisor";
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
    /// Pretend clone3 is missing: the vfork-style spawn goes through glibc's clone and the child
    /// writes itself into the cgroup2 leaf too (the fallback where a kernel or a seccomp filter
    /// refuses clone3); without the vfork-style spawn, fork + placement through the pipe gate.
    /// Tests use it to exercise those paths.
    pub force_no_clone3: bool,
    /// Keep clone3 but never CLONE_INTO_CGROUP: the child is moved into the cgroup2 leaf by a
    /// write to its cgroup.procs (by itself, or by the parent through the gate).
    pub force_no_clone_into_cgroup: bool,
    /// Pretend `cgroup.kill` is missing (tests of the cgroup2 freezer kill path).
    pub force_no_cgroup_kill: bool,
    /// Never use the vfork-style spawn (CLONE_VM|CLONE_VFORK, child places itself); use clone3 or
    /// fork with the gate instead.
    pub force_no_vfork: bool,
    /// Pretend vigil may not make mount namespaces (as in a container without CAP_SYS_ADMIN):
    /// a sandboxed root job keeps the host's terminals, and its record says so.
    pub force_no_mount_namespace: bool,
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
            force_no_mount_namespace: false,
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
    /// Spawn with CLONE_VM|CLONE_VFORK (through clone3 into the cgroup2 leaf where allowed): no
    /// page-table copy and no copy-on-write faults in vigil's threads.
    pub vfork: bool,
    /// close_range (kernel >= 5.9; CLOSE_RANGE_CLOEXEC >= 5.11).
    pub close_range: bool,
    /// vigil holds CAP_SYS_ADMIN, so a job may get a mount namespace of its own (a root job's
    /// terminals of its own), and it is not forced off.
    pub mount_namespace: bool,
    /// Why a hierarchy or feature was not used: read by `doctor` and the job record.
    pub notes: Vec<String>,
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
            mount_namespace: probe_cap_sys_admin(),
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
        if config.force_no_mount_namespace {
            host.mount_namespace = false;
            host.notes
                .push("mount namespaces forced off by configuration".into());
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
        crate::phase::mark("host.mountinfo");
        let own = match read_bounded(Path::new("/proc/self/cgroup")) {
            Ok(t) => parse_proc_cgroup(&t),
            Err(e) => {
                host.notes.push(format!("/proc/self/cgroup: {e}"));
                Vec::new()
            }
        };
        crate::phase::mark("host.own_cgroup");
        host.detect_unified(&mounts, &own, name);
        crate::phase::mark("host.unified");
        host.detect_v1(&mounts, &own, name);
        crate::phase::mark("host.v1");
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
