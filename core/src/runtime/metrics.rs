//! Counters the runtime keeps about its jobs, for the metrics endpoint and `health`: jobs by
//! capability and status, job durations, guard refusals. Bounded: capabilities are the
//! registry's names (anything else counts as `unknown`), statuses are the fixed set.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::histogram::Buckets;
use crate::model::JobStatus;

/// Upper bounds, in milliseconds, of the job-duration buckets.
pub static JOB_DURATION_BOUNDS_MS: [u64; 15] = [
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    u64::MAX,
];
const _: () = assert!(crate::histogram::bounds_are_valid(&JOB_DURATION_BOUNDS_MS));

/// Wall times of one capability's jobs, in milliseconds.
pub type JobDurations = Buckets<15>;

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobMetricsSnapshot {
    /// Jobs ended since this runtime opened, by (capability, status).
    pub jobs: BTreeMap<(String, JobStatus), u64>,
    /// Durations of jobs that ran (refusals excluded), by capability.
    pub durations: BTreeMap<String, JobDurations>,
    /// Jobs refused by the admission guard.
    pub guard_refusals: u64,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct JobMetrics {
    by_job: Mutex<JobMetricsSnapshot>,
    guard_refusals: AtomicU64,
}

impl JobMetrics {
    /// Counts one ended job. `ran_ms` is its wall time when it ran (`None` for a refusal).
    pub(crate) fn job_ended(&self, capability: &str, status: JobStatus, ran_ms: Option<u64>) {
        let mut m = self.by_job.lock().unwrap_or_else(|p| p.into_inner());
        *m.jobs.entry((capability.to_string(), status)).or_insert(0) += 1;
        if let Some(ms) = ran_ms {
            m.durations
                .entry(capability.to_string())
                .or_insert_with(|| Buckets::new(&JOB_DURATION_BOUNDS_MS))
                .record(ms);
        }
    }

    pub(crate) fn guard_refused(&self) {
        self.guard_refusals.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> JobMetricsSnapshot {
        let mut s = self
            .by_job
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        s.guard_refusals = self.guard_refusals.load(Ordering::Relaxed);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_bucket_by_upper_bound_and_refusals_have_none() {
        let m = JobMetrics::default();
        m.job_ended("shell", JobStatus::Completed, Some(3));
        m.job_ended("shell", JobStatus::Completed, Some(5));
        m.job_ended("shell", JobStatus::TimedOut, Some(400_000));
        m.job_ended("exec", JobStatus::Rejected, None);
        m.guard_refused();
        let s = m.snapshot();
        assert_eq!(s.jobs[&("shell".into(), JobStatus::Completed)], 2);
        assert_eq!(s.jobs[&("shell".into(), JobStatus::TimedOut)], 1);
        assert_eq!(s.jobs[&("exec".into(), JobStatus::Rejected)], 1);
        let shell = s.durations["shell"];
        assert_eq!(
            shell.counts()[0],
            2,
            "3 ms and 5 ms are within the 5 ms bound"
        );
        assert_eq!(shell.counts()[JOB_DURATION_BOUNDS_MS.len() - 1], 1);
        assert_eq!(shell.sum(), 400_008);
        assert!(
            !s.durations.contains_key("exec"),
            "a refusal ran for no time"
        );
        assert_eq!(s.guard_refusals, 1);
    }
}
