//! The admission guard: a pure function from the latest [`Sample`] and [`Thresholds`] to
//! admit or refuse-with-reason. It reads nothing and remembers nothing, so the same inputs
//! always give the same decision and the runtime can record exactly why it refused.
use crate::sample::{Percent, Sample};

/// Limits beyond which new work is refused. `None` disables a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Thresholds {
    /// Refuse when MemAvailable / MemTotal falls below this.
    pub memory_available_min: Option<Percent>,
    /// Refuse when aggregate CPU busy (steal included) is above this.
    pub cpu_busy_max: Option<Percent>,
    /// Refuse when memory PSI `some avg10` is above this (hundredths of a percent).
    pub psi_memory_some_avg10_max_centi: Option<u32>,
    /// Refuse when CPU PSI `some avg10` is above this (hundredths of a percent).
    pub psi_cpu_some_avg10_max_centi: Option<u32>,
    /// Refuse when there is no sample at all (telemetry not running).
    pub refuse_without_sample: bool,
}

impl Default for Thresholds {
    /// Conservative defaults: refuse only when the machine is clearly in trouble.
    fn default() -> Self {
        Self {
            memory_available_min: Percent::new(500),
            cpu_busy_max: None,
            psi_memory_some_avg10_max_centi: Some(5_000),
            psi_cpu_some_avg10_max_centi: None,
            refuse_without_sample: false,
        }
    }
}

/// Which limit refused the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RefusalReason {
    /// Available memory fell below [`Thresholds::memory_available_min`].
    MemoryAvailableLow,
    /// Aggregate CPU busy rose above [`Thresholds::cpu_busy_max`].
    CpuBusyHigh,
    /// Memory pressure (PSI `some avg10`) rose above its threshold.
    MemoryPressureHigh,
    /// CPU pressure (PSI `some avg10`) rose above its threshold.
    CpuPressureHigh,
    /// There is no sample at all and [`Thresholds::refuse_without_sample`] is set.
    NoTelemetry,
}

/// A refusal with the observed value and the limit, both in hundredths of a percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    /// Which check refused.
    pub reason: RefusalReason,
    /// The value observed, in hundredths of a percent (0 for [`RefusalReason::NoTelemetry`]).
    pub observed_centi: u32,
    /// The threshold it crossed, in hundredths of a percent (0 for [`RefusalReason::NoTelemetry`]).
    pub limit_centi: u32,
    /// The sequence number of the sample the decision was taken on (0 without one).
    pub sample_seq: u64,
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (what, cmp) = match self.reason {
            RefusalReason::MemoryAvailableLow => ("memory available", "below the minimum of"),
            RefusalReason::CpuBusyHigh => ("CPU busy", "above the maximum of"),
            RefusalReason::MemoryPressureHigh => ("memory pressure (some avg10)", "above"),
            RefusalReason::CpuPressureHigh => ("CPU pressure (some avg10)", "above"),
            RefusalReason::NoTelemetry => return f.write_str("no telemetry sample to decide on"),
        };
        write!(
            f,
            "machine overloaded: {what} {}.{:02}% is {cmp} {}.{:02}% (sample {})",
            self.observed_centi / 100,
            self.observed_centi % 100,
            self.limit_centi / 100,
            self.limit_centi % 100,
            self.sample_seq
        )
    }
}

/// The guard's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run the job.
    Admit,
    /// Refuse the job, and why.
    Refuse(Refusal),
}

/// Decides on the latest sample. Checks whose data is missing (no PSI on this kernel, no CPU
/// delta yet) do not refuse: absence of evidence is not overload.
pub fn decide(latest: Option<&Sample>, t: &Thresholds) -> Decision {
    let Some(s) = latest else {
        return if t.refuse_without_sample {
            Decision::Refuse(Refusal {
                reason: RefusalReason::NoTelemetry,
                observed_centi: 0,
                limit_centi: 0,
                sample_seq: 0,
            })
        } else {
            Decision::Admit
        };
    };
    let refuse = |reason, observed_centi: u32, limit_centi: u32| {
        Decision::Refuse(Refusal {
            reason,
            observed_centi,
            limit_centi,
            sample_seq: s.seq,
        })
    };
    if let (Some(min), Some(avail)) = (t.memory_available_min, s.memory.and_then(|m| m.available()))
    {
        if avail < min {
            return refuse(
                RefusalReason::MemoryAvailableLow,
                u32::from(avail.basis_points()),
                u32::from(min.basis_points()),
            );
        }
    }
    // A share since boot (a sampler's first reading, flag `CPU_SINCE_BOOT`) says nothing
    // about the load now: judged as no CPU figure at all.
    let cpu_now = s
        .cpu
        .filter(|_| s.flags & crate::sample::flags::CPU_SINCE_BOOT == 0);
    if let (Some(max), Some(cpu)) = (t.cpu_busy_max, cpu_now) {
        if cpu.busy > max {
            return refuse(
                RefusalReason::CpuBusyHigh,
                u32::from(cpu.busy.basis_points()),
                u32::from(max.basis_points()),
            );
        }
    }
    if let (Some(max), Some(psi)) = (t.psi_memory_some_avg10_max_centi, s.pressure.memory) {
        if psi.some.avg10_centi > max {
            return refuse(RefusalReason::MemoryPressureHigh, psi.some.avg10_centi, max);
        }
    }
    if let (Some(max), Some(psi)) = (t.psi_cpu_some_avg10_max_centi, s.pressure.cpu) {
        if psi.some.avg10_centi > max {
            return refuse(RefusalReason::CpuPressureHigh, psi.some.avg10_centi, max);
        }
    }
    Decision::Admit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::{Psi, PsiLine};
    use crate::sample::{CpuUsage, MemorySample};

    fn sample(avail_pct: u64, busy: u16, psi_mem: u32) -> Sample {
        Sample {
            seq: 9,
            memory: Some(MemorySample {
                total_bytes: 100,
                available_bytes: avail_pct,
                ..MemorySample::default()
            }),
            cpu: Some(CpuUsage {
                busy: Percent::new(busy).unwrap(),
                ..CpuUsage::default()
            }),
            pressure: crate::sample::Pressure {
                memory: Some(Psi {
                    some: PsiLine {
                        avg10_centi: psi_mem,
                        ..PsiLine::default()
                    },
                    full: None,
                }),
                ..Default::default()
            },
            ..Sample::default()
        }
    }

    fn strict() -> Thresholds {
        Thresholds {
            memory_available_min: Percent::new(1000),
            cpu_busy_max: Percent::new(9000),
            psi_memory_some_avg10_max_centi: Some(2000),
            psi_cpu_some_avg10_max_centi: Some(2000),
            refuse_without_sample: true,
        }
    }

    #[test]
    fn healthy_machine_is_admitted() {
        assert_eq!(
            decide(Some(&sample(50, 1000, 0)), &strict()),
            Decision::Admit
        );
    }

    #[test]
    fn each_limit_refuses_with_its_reason_and_figures() {
        let Decision::Refuse(r) = decide(Some(&sample(5, 1000, 0)), &strict()) else {
            panic!()
        };
        assert_eq!(r.reason, RefusalReason::MemoryAvailableLow);
        assert_eq!(
            (r.observed_centi, r.limit_centi, r.sample_seq),
            (500, 1000, 9)
        );
        let text = std::format!("{r}");
        assert!(text.contains("5.00%") && text.contains("10.00%"), "{text}");

        let Decision::Refuse(r) = decide(Some(&sample(50, 9500, 0)), &strict()) else {
            panic!()
        };
        assert_eq!(r.reason, RefusalReason::CpuBusyHigh);
        let Decision::Refuse(r) = decide(Some(&sample(50, 10, 2001)), &strict()) else {
            panic!()
        };
        assert_eq!(r.reason, RefusalReason::MemoryPressureHigh);
    }

    #[test]
    fn a_cpu_share_since_boot_is_not_judged_as_the_load_now() {
        let mut first = sample(50, 9500, 0);
        first.flags |= crate::sample::flags::CPU_SINCE_BOOT;
        assert_eq!(decide(Some(&first), &strict()), Decision::Admit);
        first.flags &= !crate::sample::flags::CPU_SINCE_BOOT;
        assert!(matches!(
            decide(Some(&first), &strict()),
            Decision::Refuse(Refusal {
                reason: RefusalReason::CpuBusyHigh,
                ..
            })
        ));
    }

    #[test]
    fn missing_data_does_not_refuse_but_a_missing_sample_can() {
        let empty = Sample::default();
        assert_eq!(decide(Some(&empty), &strict()), Decision::Admit);
        assert!(matches!(
            decide(None, &strict()),
            Decision::Refuse(Refusal {
                reason: RefusalReason::NoTelemetry,
                ..
            })
        ));
        assert_eq!(decide(None, &Thresholds::default()), Decision::Admit);
    }
}
