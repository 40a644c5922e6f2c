//! Each cgroup hierarchy walked: where vigil sits, whether it may create groups there, and
//! where its job leaves go (the placements of the module doc).
use std::fs;
use std::io;
use std::path::Path;

use super::groups::{
    enable_controllers, ensure_parent, has_foreign_processes, is_real_root, wanted_controllers,
    writable,
};
use super::mounts::{own_group_dir, statfs_magic, CgroupMount};
use super::{Host, Placement, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, SUPERVISOR_LEAF};

/// How long a vigil that moved into the supervisor leaf waits for other vigil processes that
/// started in the same group at the same moment to move too, before controllers can be enabled.
const PEER_SPLIT_WAIT_MS_MAX: u64 = 2_000;

impl Host {
    pub(super) fn detect_unified(
        &mut self,
        mounts: &[CgroupMount],
        own: &[(String, String)],
        name: &str,
    ) {
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

    pub(super) fn detect_v1(
        &mut self,
        mounts: &[CgroupMount],
        own: &[(String, String)],
        name: &str,
    ) {
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
}
