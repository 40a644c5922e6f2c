//! Admission slots (a bound on jobs running at once) and the set of jobs that can be
//! cancelled while they run or wait.
use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::exec::job::CancelToken;

use super::{Runtime, RuntimeError};

/// A bound on jobs running at once.
pub(super) struct JobSlots {
    running: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl JobSlots {
    /// At most `max` jobs at once (at least one: no slot at all would make every job wait
    /// for ever).
    pub(super) fn new(max: usize) -> Self {
        JobSlots {
            running: Mutex::new(0),
            freed: Condvar::new(),
            max: max.max(1),
        }
    }

    /// Waits for a free slot; `None` when `cancelled` turns true first.
    pub(super) fn acquire(&self, cancelled: impl Fn() -> bool) -> Option<SlotGuard<'_>> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut waited = false;
        while *running >= self.max {
            if cancelled() {
                return None;
            }
            waited = true;
            running = self.freed.wait(running).unwrap_or_else(|p| p.into_inner());
        }
        *running += 1;
        debug_assert!(
            *running <= self.max,
            "{} slots taken of {}",
            *running,
            self.max
        );
        Some(SlotGuard {
            slots: self,
            waited,
        })
    }

    /// Wakes every waiter to look at its cancellation again. Taken under the slot lock, so a
    /// waiter that has just found itself not cancelled is already waiting.
    pub(super) fn wake_waiters(&self) {
        let _running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        self.freed.notify_all();
    }
}

/// One taken slot, given back on drop. Only [`JobSlots::acquire`] makes one, after counting
/// it, so every decrement has its increment and the counter never underflows.
pub(super) struct SlotGuard<'a> {
    slots: &'a JobSlots,
    waited: bool,
}

impl SlotGuard<'_> {
    /// Whether the slot had to be waited for (none was free when asked).
    pub(super) fn waited(&self) -> bool {
        self.waited
    }
}

/// Removes a job from the cancellable set when its run ends, however it ends.
pub(super) struct RunningRegistration<'a> {
    runtime: &'a Runtime,
    job_id: u64,
}

impl Drop for RunningRegistration<'_> {
    fn drop(&mut self) {
        self.runtime.running().remove(&self.job_id);
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut running = self.slots.running.lock().unwrap_or_else(|p| p.into_inner());
        debug_assert!(*running > 0, "a slot given back that was never taken");
        *running = running.saturating_sub(1);
        self.slots.freed.notify_one();
    }
}

pub(super) struct RunningJob {
    cancel: CancelToken,
    cancelled_because: Option<String>,
}

/// What [`Runtime::cancel`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was running (or waiting for a slot); it is being killed.
    Cancelled,
    /// The job had already ended; nothing was done.
    AlreadyEnded,
}

impl Runtime {
    pub(super) fn running(&self) -> MutexGuard<'_, BTreeMap<u64, RunningJob>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `job_id` cancellable until the returned guard drops.
    pub(super) fn register_running(
        &self,
        job_id: u64,
        cancel: &CancelToken,
    ) -> RunningRegistration<'_> {
        self.running().insert(
            job_id,
            RunningJob {
                cancel: cancel.clone(),
                cancelled_because: None,
            },
        );
        RunningRegistration {
            runtime: self,
            job_id,
        }
    }

    pub(super) fn cancelled_because(&self, job_id: u64) -> Option<String> {
        self.running()
            .get(&job_id)
            .and_then(|j| j.cancelled_because.clone())
    }

    /// Cancels a job that is running or waiting for a slot: every process of it is killed and
    /// it ends `interrupted` (or `rejected`, if it had not started), with `reason` as its error.
    pub fn cancel(&self, job_id: u64, reason: &str) -> Result<CancelOutcome, RuntimeError> {
        let mut running = self.running();
        if let Some(job) = running.get_mut(&job_id) {
            job.cancelled_because
                .get_or_insert_with(|| reason.to_string());
            job.cancel.cancel();
            drop(running);
            self.slots.wake_waiters();
            return Ok(CancelOutcome::Cancelled);
        }
        drop(running);
        match self.job(job_id) {
            Some(_) => Ok(CancelOutcome::AlreadyEnded),
            None => Err(RuntimeError::JobNotFound(job_id)),
        }
    }

    /// Cancels every job running or waiting (shutdown); returns how many.
    pub fn cancel_all(&self, reason: &str) -> usize {
        let mut running = self.running();
        for job in running.values_mut() {
            job.cancelled_because
                .get_or_insert_with(|| reason.to_string());
            job.cancel.cancel();
        }
        let n = running.len();
        drop(running);
        self.slots.wake_waiters();
        n
    }

    /// Ids of jobs admitted and not yet ended (running or waiting for a slot), oldest first.
    pub fn active_jobs(&self) -> Vec<u64> {
        self.running().keys().copied().collect()
    }

    /// Bytes a job still running has written to stdout and stderr so far (`None` once it
    /// has ended).
    pub fn job_output_bytes(&self, job_id: u64) -> Option<u64> {
        self.running().get(&job_id).map(|j| j.cancel.output_bytes())
    }

    /// Jobs holding a slot right now (at most `concurrent_jobs_max`).
    pub fn jobs_running(&self) -> usize {
        *self.slots.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(slots: &JobSlots) -> usize {
        *slots.running.lock().unwrap()
    }

    #[test]
    fn slots_are_counted_up_to_the_bound_and_back_to_zero() {
        let slots = JobSlots::new(2);
        let a = slots.acquire(|| false).unwrap();
        let b = slots.acquire(|| false).unwrap();
        assert_eq!(taken(&slots), 2);
        // Full: a cancelled waiter gives up instead of taking a third slot.
        assert!(slots.acquire(|| true).is_none());
        assert_eq!(taken(&slots), 2);
        drop(a);
        assert_eq!(taken(&slots), 1);
        let c = slots.acquire(|| true).unwrap();
        drop((b, c));
        assert_eq!(taken(&slots), 0);
    }

    #[test]
    fn a_waiter_takes_the_slot_given_back_by_another_thread() {
        let slots = JobSlots::new(1);
        let held = slots.acquire(|| false).unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| slots.acquire(|| false).is_some());
            drop(held);
            assert!(waiter.join().unwrap());
        });
        assert_eq!(taken(&slots), 0);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "never taken")]
    fn giving_back_a_slot_never_taken_is_caught_in_debug_builds() {
        let slots = JobSlots::new(1);
        drop(SlotGuard {
            slots: &slots,
            waited: false,
        });
    }

    #[test]
    fn a_slot_says_whether_it_was_waited_for() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let slots = JobSlots::new(1);
        let held = slots.acquire(|| false).unwrap();
        assert!(!held.waited(), "a free slot is taken at once");
        let found_full = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                // Asked only when every slot is taken, right before it waits.
                let slot = slots.acquire(|| {
                    found_full.store(true, Ordering::SeqCst);
                    false
                });
                slot.map(|g| g.waited())
            });
            while !found_full.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            drop(held);
            assert_eq!(waiter.join().unwrap(), Some(true));
        });
    }

    #[test]
    fn no_slot_at_all_is_one_slot() {
        let slots = JobSlots::new(0);
        let one = slots.acquire(|| true);
        assert!(one.is_some());
        assert!(slots.acquire(|| true).is_none());
    }
}
