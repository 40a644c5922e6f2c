//! cgroup v1 and v2 accounting files, as the executor reads them for per-job usage and limits.
//!
//! Three shapes cover them all: a single counter (`memory.current`, `memory.peak`,
//! `memory.max_usage_in_bytes`, `pids.current`, `cpuacct.usage`), a limit that may be `max`
//! (`memory.max`, `pids.max`), and flat-keyed `key value` lines (`cpu.stat`, `memory.events`,
//! `memory.oom_control`, `pids.events`). Unknown keys are ignored; known ones must be numbers.
use crate::parse::{parse_u64, trim, Cursor, ParseError, ParseErrorKind};

/// A file holding one unsigned number and a newline.
pub fn parse_counter(text: &[u8]) -> Result<u64, ParseError> {
    parse_u64(trim(text)).map_err(|k| ParseError::new(k, 1))
}

/// A limit file: `max` means unlimited (`None`), otherwise a number.
pub fn parse_limit(text: &[u8]) -> Result<Option<u64>, ParseError> {
    match trim(text) {
        b"max" => Ok(None),
        number => parse_u64(number)
            .map(Some)
            .map_err(|k| ParseError::new(k, 1)),
    }
}

/// Calls `on_pair(key, value)` for every `key value` line. A line with a non-numeric value is
/// an error; blank lines are skipped.
pub fn for_each_flat_keyed(
    text: &[u8],
    mut on_pair: impl FnMut(&[u8], u64),
) -> Result<(), ParseError> {
    let mut c = Cursor::new(text);
    while !c.is_empty() {
        let key = c.token();
        if !key.is_empty() {
            let value = c.number().map_err(|k| c.error(k))?;
            on_pair(key, value.ok_or(c.error(ParseErrorKind::MissingField))?);
        }
        c.next_line();
    }
    Ok(())
}

/// `cpu.stat`: v2 (`usage_usec`, `user_usec`, `system_usec`, throttling) or v1 (`nr_periods`,
/// `nr_throttled`, `throttled_time` in ns). Fields the file lacks stay `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStat {
    /// CPU time of every process of the cgroup, user and system, in µs (v2 only).
    pub usage_usec: Option<u64>,
    /// User-mode CPU time of the cgroup, in µs (v2 only).
    pub user_usec: Option<u64>,
    /// Kernel-mode CPU time of the cgroup, in µs (v2 only).
    pub system_usec: Option<u64>,
    /// Enforcement periods of the CPU quota that have elapsed; `None` without a quota controller.
    pub nr_periods: Option<u64>,
    /// Periods in which the cgroup was throttled (ran out of quota).
    pub nr_throttled: Option<u64>,
    /// Total time the cgroup was throttled, in µs (v1's `throttled_time` in ns is converted).
    pub throttled_usec: Option<u64>,
}

impl CpuStat {
    /// Parses a `cpu.stat` file; an error when a line's value is not a number.
    pub fn parse(text: &[u8]) -> Result<Self, ParseError> {
        let mut s = Self::default();
        for_each_flat_keyed(text, |key, value| match key {
            b"usage_usec" => s.usage_usec = Some(value),
            b"user_usec" => s.user_usec = Some(value),
            b"system_usec" => s.system_usec = Some(value),
            b"nr_periods" => s.nr_periods = Some(value),
            b"nr_throttled" => s.nr_throttled = Some(value),
            b"throttled_usec" => s.throttled_usec = Some(value),
            b"throttled_time" => s.throttled_usec = Some(value / 1000),
            _ => {}
        })?;
        Ok(s)
    }
}

/// `memory.events` (v2): how often each memory boundary was hit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    /// Times usage went below `memory.low` while reclaim was under way (protection broken).
    pub low: u64,
    /// Times usage exceeded `memory.high` and the cgroup was throttled and reclaimed.
    pub high: u64,
    /// Times usage was about to exceed `memory.max` (allocation failed or reclaim forced).
    pub max: u64,
    /// Times the cgroup hit its limit and reclaim could not free enough (the OOM killer was invoked
    /// or the allocation failed).
    pub oom: u64,
    /// Processes of the cgroup killed by the OOM killer.
    pub oom_kill: u64,
    /// Times the OOM killer killed the cgroup as a whole (`memory.oom.group`).
    pub oom_group_kill: u64,
}

impl MemoryEvents {
    /// Parses a `memory.events` file; keys it lacks stay 0, a non-numeric value is an error.
    pub fn parse(text: &[u8]) -> Result<Self, ParseError> {
        let mut e = Self::default();
        for_each_flat_keyed(text, |key, value| match key {
            b"low" => e.low = value,
            b"high" => e.high = value,
            b"max" => e.max = value,
            b"oom" => e.oom = value,
            b"oom_kill" => e.oom_kill = value,
            b"oom_group_kill" => e.oom_group_kill = value,
            _ => {}
        })?;
        Ok(e)
    }
}

/// `memory.oom_control` (v1). `oom_kill` exists since Linux 4.13; older kernels lack it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OomControl {
    /// The OOM killer is disabled for the cgroup (tasks hang instead of being killed).
    pub oom_kill_disable: bool,
    /// The cgroup is under OOM right now (its tasks are stalled waiting for memory).
    pub under_oom: bool,
    /// Processes of the cgroup killed by the OOM killer; `None` on kernels before 4.13.
    pub oom_kill: Option<u64>,
}

impl OomControl {
    /// Parses a `memory.oom_control` file; a non-numeric value is an error.
    pub fn parse(text: &[u8]) -> Result<Self, ParseError> {
        let mut o = Self::default();
        for_each_flat_keyed(text, |key, value| match key {
            b"oom_kill_disable" => o.oom_kill_disable = value != 0,
            b"under_oom" => o.under_oom = value != 0,
            b"oom_kill" => o.oom_kill = Some(value),
            _ => {}
        })?;
        Ok(o)
    }
}

/// `pids.events`: how many forks failed on `pids.max`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PidsEvents {
    /// Forks refused because the cgroup reached `pids.max`.
    pub max: u64,
}

impl PidsEvents {
    /// Parses a `pids.events` file; 0 when it has no `max` line, an error on a non-numeric value.
    pub fn parse(text: &[u8]) -> Result<Self, ParseError> {
        let mut e = Self::default();
        for_each_flat_keyed(text, |key, value| {
            if key == b"max" {
                e.max = value;
            }
        })?;
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_limits() {
        assert_eq!(parse_counter(b"123456\n"), Ok(123456));
        assert_eq!(parse_counter(b"18446744073709551615\n"), Ok(u64::MAX));
        assert!(parse_counter(b"").is_err());
        assert!(parse_counter(b"12 34\n").is_err());
        assert_eq!(parse_limit(b"max\n"), Ok(None));
        assert_eq!(parse_limit(b"1048576\n"), Ok(Some(1048576)));
        assert!(parse_limit(b"maxx\n").is_err());
    }

    #[test]
    fn cpu_stat_v2_and_v1() {
        let v2 = CpuStat::parse(
            b"usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n\
nr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n",
        )
        .unwrap();
        assert_eq!(v2.usage_usec, Some(1500));
        assert_eq!(v2.system_usec, Some(500));
        let v1 =
            CpuStat::parse(b"nr_periods 10\nnr_throttled 2\nthrottled_time 5000000\n").unwrap();
        assert_eq!(v1.usage_usec, None);
        assert_eq!(v1.throttled_usec, Some(5000));
        assert!(CpuStat::parse(b"usage_usec\n").is_err());
        assert!(CpuStat::parse(b"usage_usec abc\n").is_err());
    }

    #[test]
    fn memory_events_and_oom_control() {
        let e =
            MemoryEvents::parse(b"low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
                .unwrap();
        assert_eq!((e.max, e.oom, e.oom_kill), (12, 1, 1));
        let o = OomControl::parse(b"oom_kill_disable 0\nunder_oom 1\noom_kill 3\n").unwrap();
        assert_eq!(
            o,
            OomControl {
                oom_kill_disable: false,
                under_oom: true,
                oom_kill: Some(3)
            }
        );
        let old = OomControl::parse(b"oom_kill_disable 1\nunder_oom 0\n").unwrap();
        assert_eq!(old.oom_kill, None);
        assert_eq!(PidsEvents::parse(b"max 7\n").unwrap().max, 7);
        assert_eq!(PidsEvents::parse(b"").unwrap().max, 0);
    }
}
