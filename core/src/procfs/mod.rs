//! Parsers for the kernel's text files: /proc/stat, /proc/meminfo, /proc/loadavg,
//! /proc/pressure/*, /proc/PID/stat, and the cgroup v1/v2 accounting files.
//!
//! Every parser reads `&[u8]`, fills a caller-owned value in place (so the sampler can reuse
//! it), never allocates and never panics. This module knows nothing of files or time: reading
//! is the [`crate::sampler`]'s job, interpretation (deltas, percentages) is [`crate::sample`]'s.
pub mod cgroup;
pub mod loadavg;
pub mod meminfo;
pub mod pid_stat;
pub mod pressure;
pub mod stat;

pub use loadavg::LoadAvg;
pub use meminfo::MemInfo;
pub use pid_stat::PidStat;
pub use pressure::{Psi, PsiLine};
pub use stat::{CpuLine, CpuTimes, ProcStat};
