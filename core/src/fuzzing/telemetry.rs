//! Bodies of the telemetry fuzz targets in `fuzz/`, as plain functions so that a stable
//! `#[test]` replays the committed corpus through exactly the code the fuzzer runs.
//!
//! Each body feeds arbitrary bytes to a parser and checks the invariants its output promises;
//! a violated invariant panics, which is what the fuzzer reports.
use crate::procfs::cgroup::{self, CpuStat, MemoryEvents, OomControl, PidsEvents};
use crate::procfs::{LoadAvg, MemInfo, PidStat, ProcStat, Psi};
use crate::sample::{cpu_delta, CpuDelta, MemorySample, Percent, Sample};

/// /proc/stat: parse, then take a delta against a fixed baseline and against itself.
pub fn proc_stat(data: &[u8]) {
    let mut stat = ProcStat::<64>::default();
    if stat.parse_into(data).is_err() {
        return;
    }
    assert!((4..=10).contains(&stat.total.columns));
    assert!(stat.cpus.len() <= 64);
    let mut baseline = ProcStat::<64>::default();
    baseline
        .parse_into(b"cpu 1 1 1 1 1 1 1 1 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n")
        .expect("baseline parses");
    for prev in [&baseline, &stat] {
        let mut sample = Sample::default();
        sample.set_cpu(Some(prev), &stat, 1_000_000_000);
        if let Some(cpu) = sample.cpu {
            assert!(cpu.busy <= Percent::FULL && cpu.busy_no_steal <= cpu.busy);
            assert!(cpu.total_ticks > 0);
        }
        for c in &sample.per_cpu {
            assert!(c.busy.is_none_or(|b| b <= Percent::FULL));
        }
    }
    assert!(matches!(
        cpu_delta(&stat.total, &stat.total),
        CpuDelta::NoData | CpuDelta::Rebaselined
    ));
}

/// /proc/meminfo: parse; available never exceeds total, whatever the text says.
pub fn proc_meminfo(data: &[u8]) {
    let mut m = MemInfo::default();
    let mut quick = MemInfo::default();
    let quick_ok = quick.parse_sample_into(data).is_ok();
    if m.parse_into(data).is_ok() {
        assert!(m.available_bytes <= m.total_bytes);
        if let Some(p) = MemorySample::from_meminfo(&m).available() {
            assert!(p <= Percent::FULL);
        }
        // The sampler's partial parse accepts it too, with the same figures.
        assert!(quick_ok);
        assert_eq!(
            MemorySample::from_meminfo(&quick),
            MemorySample::from_meminfo(&m)
        );
        assert_eq!(quick.available_clamped, m.available_clamped);
    }
    if quick_ok {
        assert!(quick.available_bytes <= quick.total_bytes);
    }
}

/// Hundredths as the kernel prints them (`617` -> `6.17`).
struct Centi(u32);

impl core::fmt::Display for Centi {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// /proc/loadavg: whatever parses, printed back the kernel's way, parses to the same value.
pub fn proc_loadavg(data: &[u8]) {
    use core::fmt::Write;
    if let Ok(l) = LoadAvg::parse(data) {
        let mut text: heapless::String<128> = heapless::String::new();
        writeln!(
            text,
            "{} {} {} {}/{} {}",
            Centi(l.load1_centi),
            Centi(l.load5_centi),
            Centi(l.load15_centi),
            l.runnable,
            l.entities,
            l.last_pid
        )
        .expect("fits");
        assert_eq!(LoadAvg::parse(text.as_bytes()), Ok(l));
    }
}

/// /proc/pressure/* and cgroup `*.pressure`: same round trip as loadavg.
pub fn proc_pressure(data: &[u8]) {
    use core::fmt::Write;
    if let Ok(p) = Psi::parse(data) {
        let mut text: heapless::String<256> = heapless::String::new();
        let lines = [("some", Some(p.some)), ("full", p.full)];
        for (name, line) in lines {
            if let Some(l) = line {
                writeln!(
                    text,
                    "{name} avg10={} avg60={} avg300={} total={}",
                    Centi(l.avg10_centi),
                    Centi(l.avg60_centi),
                    Centi(l.avg300_centi),
                    l.total_us
                )
                .expect("fits");
            }
        }
        assert_eq!(Psi::parse(text.as_bytes()), Ok(p));
    }
}

/// Every cgroup accounting file parser over the same bytes.
pub fn cgroup_files(data: &[u8]) {
    let counter = cgroup::parse_counter(data);
    match cgroup::parse_limit(data) {
        Ok(None) => assert_eq!(crate::parse::trim(data), b"max"),
        Ok(Some(limit)) => assert_eq!(counter, Ok(limit)),
        Err(_) => assert!(counter.is_err()),
    }
    let _ = CpuStat::parse(data);
    let _ = MemoryEvents::parse(data);
    let _ = OomControl::parse(data);
    let _ = PidsEvents::parse(data);
}

/// /proc/PID/stat: parse; what parses is a plausible process whatever the command name holds,
/// and a name replaced by one full of parentheses and spaces parses to the same fields.
pub fn proc_pid_stat(data: &[u8]) {
    let Ok(st) = PidStat::parse(data) else {
        return;
    };
    assert!(st.pid >= 0 && st.ppid >= 0 && st.pgrp >= 0 && st.session >= 0);
    assert!(st.state.is_ascii_graphic());
    let (Some(open), Some(close)) = (
        data.iter().position(|&b| b == b'('),
        data.iter().rposition(|&b| b == b')'),
    ) else {
        panic!("a line without its parentheses parsed");
    };
    let mut renamed = [0u8; 4096];
    let name: &[u8] = b"(x) S 1 2 3 (";
    let head = &data[..=open];
    let tail = &data[close..];
    if head.len() + name.len() + tail.len() <= renamed.len() {
        let mut at = 0;
        for part in [head, name, tail] {
            renamed[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        assert_eq!(PidStat::parse(&renamed[..at]).ok(), Some(st));
    }
}
