//! What a job's group used: CPU time, peak memory, OOM kills, forks the pids limit refused.
use std::path::Path;

use super::{counter, read_small, CgroupLeaf};
use crate::exec::host::CgroupMode;
use crate::procfs::cgroup as procfs;

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

impl CgroupLeaf {
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
}
