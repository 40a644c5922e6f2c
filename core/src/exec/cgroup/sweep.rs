//! Leaves left behind by a dead vigil instance: found by their owner marker, killed and
//! removed. Leaves of live instances are never touched.
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::CgroupLeaf;
use crate::exec::host::Host;

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
    crate::exec::proctable::proc_stat(pid).map(|st| st.start_ticks)
}

/// True when the instance named by a marker `pid-start` is still running: that pid exists,
/// started at that time (not a reused pid), and is not a zombie or dying (an instance that
/// has exited but not been reaped runs nothing and will never remove its leaves).
pub(crate) fn instance_alive(marker: &str) -> bool {
    let Some((pid, start)) = marker.split_once('-') else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<i32>(), start.parse::<u64>()) else {
        return false;
    };
    crate::exec::proctable::proc_stat(pid)
        .is_some_and(|st| st.start_ticks == start && !st.is_dead())
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
            Err(e) => report.failed.push(format!(
                "the cgroup leaf {name} of a vigil that is gone could not be removed: {e}"
            )),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_instance_is_alive_and_garbage_markers_are_dead() {
        assert!(instance_alive(instance_marker()));
        assert!(!instance_alive("nonsense"));
        assert!(!instance_alive("1-0"));
    }
}
