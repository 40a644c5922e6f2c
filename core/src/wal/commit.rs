//! Group commit: the durable watermark, the callers waiting on it, and the poison a failed
//! sync leaves. The first caller that needs a sync leads one pass (the writer's
//! `sync_pass`); every other caller parks until a pass covers its LSN; whoever arrives during
//! a pass is covered by the next.
//!
//! Commit delay (PostgreSQL's `commit_delay`/`commit_siblings`): when the last pass covered
//! several committers, they were just released and are about to append again. The next leader
//! waits for their records before it syncs, until as many records as that pass covered are
//! appended, or for at most half a recent sync's duration (and [`COMMIT_DELAY_MAX`]), so one
//! sync covers them all instead of each paying for one of its own. After a pass that covered a
//! single committer (a lone writer) nothing waits.
//!
//! A failed sync poisons the log for good: the kernel may have dropped the dirty pages it
//! failed to write, so nothing after that point can honestly be acknowledged.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::error::WalError;
use super::frame::Lsn;

/// A durable, in-order position in the log shared with the group commit.
struct DurableState {
    durable_lsn: Lsn,
    syncing: bool,
    poisoned: Option<String>,
    /// Producers parked until their LSN is durable. The leader that finishes a sync unparks
    /// exactly the satisfied ones (and one more to lead the next sync): no thundering herd
    /// through a shared mutex, which on a busy two-core machine cost more than the sync.
    waiters: Vec<(Lsn, std::thread::Thread)>,
}

/// Waiters the durable state holds without reallocating.
const SYNC_WAITERS_CAPACITY: usize = 64;
/// Waiters yield instead of parking only where a sync pass takes at most this long (a fast
/// device, where the wake-ups would cost as much as the sync); they yield for at most one
/// pass.
const SPIN_PASS_MAX: Duration = Duration::from_micros(200);
/// The longest a leader waits for the committers of the last pass to append again.
pub const COMMIT_DELAY_MAX: Duration = Duration::from_millis(2);

/// The durable watermark and its waiters.
pub(super) struct GroupCommit {
    state: Mutex<DurableState>,
    changed: Condvar,
    durable_lsn: AtomicU64,
    poisoned: AtomicBool,
    /// The last LSN appended in this process. Stored by appends under the writer lock only:
    /// a gathering leader sees it through that lock (see [`GroupCommit::gather`]).
    appended: AtomicU64,
    /// The LSN a gathering leader waits for (0: no one gathers).
    gather_goal: AtomicU64,
    gather_leader: Mutex<Option<std::thread::Thread>>,
    /// Committers the last pass covered (the leader and the waiters it satisfied).
    siblings: AtomicU64,
    /// Recent pass duration, nanoseconds (moving average).
    pass_ns: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state is consistent at every point a panic could leave it: keep serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GroupCommit {
    /// Everything up to `durable_lsn` is durable already.
    pub(super) fn new(durable_lsn: Lsn) -> GroupCommit {
        GroupCommit {
            state: Mutex::new(DurableState {
                durable_lsn,
                syncing: false,
                poisoned: None,
                waiters: Vec::with_capacity(SYNC_WAITERS_CAPACITY),
            }),
            changed: Condvar::new(),
            durable_lsn: AtomicU64::new(durable_lsn),
            poisoned: AtomicBool::new(false),
            appended: AtomicU64::new(durable_lsn),
            gather_goal: AtomicU64::new(0),
            gather_leader: Mutex::new(None),
            siblings: AtomicU64::new(0),
            pass_ns: AtomicU64::new(0),
        }
    }

    /// Notes that this process appended `lsn` (so a gathering leader knows when its siblings
    /// are in). Called under the writer lock, with LSNs that only grow: plain stores and
    /// loads, no read-modify-write or fence per append.
    pub(super) fn appended(&self, lsn: Lsn) {
        self.appended.store(lsn, Ordering::Release);
        let goal = self.gather_goal.load(Ordering::Acquire);
        if goal != 0 && lsn >= goal {
            if let Some(leader) = lock(&self.gather_leader).as_ref() {
                leader.unpark();
            }
        }
    }

    /// Before a pass: waits (bounded) for the committers the last pass covered to append
    /// again. Returns at once after a pass that covered one committer.
    ///
    /// `appends_fence` takes and releases the writer lock, under which every append stores
    /// `appended` and then loads the goal: an append that held it before sees no goal, but its
    /// `appended` is seen here after the fence; one that holds it after sees the goal set
    /// before the fence, and wakes this leader. No wake-up is lost, without a fence per append.
    fn gather(&self, appends_fence: &dyn Fn()) {
        let siblings = self.siblings.load(Ordering::Relaxed);
        if siblings <= 1 {
            return;
        }
        let goal = self.durable_lsn.load(Ordering::Acquire) + siblings;
        if self.appended.load(Ordering::Acquire) >= goal {
            return;
        }
        let bound = Duration::from_nanos(self.pass_ns.load(Ordering::Relaxed) / 2);
        let bound = bound.min(COMMIT_DELAY_MAX);
        if bound.is_zero() {
            return;
        }
        let deadline = Instant::now() + bound;
        *lock(&self.gather_leader) = Some(std::thread::current());
        self.gather_goal.store(goal, Ordering::Release);
        appends_fence();
        // On a fast device, yielding rather than parking: the committers are on their way,
        // and a parked leader needs a wake-up system call from the one that completes the
        // goal. On a slow one the wait is long enough to park.
        let spin = bound <= SPIN_PASS_MAX / 2;
        while self.appended.load(Ordering::Acquire) < goal {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if spin {
                std::thread::yield_now();
            } else {
                std::thread::park_timeout(deadline - now);
            }
        }
        self.gather_goal.store(0, Ordering::Release);
        *lock(&self.gather_leader) = None;
    }

    /// Every record up to this LSN is durable.
    pub(super) fn durable_lsn(&self) -> Lsn {
        self.durable_lsn.load(Ordering::Acquire)
    }

    /// Whether a sync has failed.
    pub(super) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Records that a sync failed: nothing is acknowledged from now on, and every waiter
    /// learns it.
    pub(super) fn poison(&self, cause: &str) {
        let mut durable = lock(&self.state);
        durable.poisoned.get_or_insert_with(|| cause.to_string());
        self.poisoned.store(true, Ordering::Release);
        for (_, thread) in durable.waiters.drain(..) {
            thread.unpark();
        }
        drop(durable);
        self.changed.notify_all();
    }

    pub(super) fn poison_error(&self) -> WalError {
        let cause = lock(&self.state)
            .poisoned
            .clone()
            .unwrap_or_else(|| "sync failed".to_string());
        WalError::Poisoned { cause }
    }

    /// Waits up to `timeout` for the durable LSN to reach `lsn`; true if it did.
    pub(super) fn wait_durable(&self, lsn: Lsn, timeout: std::time::Duration) -> bool {
        let guard = lock(&self.state);
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |d| {
                d.durable_lsn < lsn && d.poisoned.is_none()
            })
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.durable_lsn >= lsn
    }

    /// Returns when every record up to `lsn` is durable. `last_lsn` is the last one
    /// appended; `pass` runs one sync of everything appended so far and returns the LSN it
    /// made durable; `appends_fence` waits out an append in progress (see
    /// [`GroupCommit::gather`]). One caller at a time leads a pass; the others park until it
    /// covers them.
    // Longer than 70 lines on purpose: the group commit's one loop (covered, lead a pass, or park)
    // with its lock held across the decisions; splitting it would split the reasoning about that
    // lock.
    pub(super) fn sync_to(
        &self,
        lsn: Lsn,
        last_lsn: Lsn,
        pass: &dyn Fn() -> io::Result<Lsn>,
        appends_fence: &dyn Fn(),
    ) -> Result<(), WalError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.poison_error());
        }
        if lsn <= self.durable_lsn.load(Ordering::Acquire) {
            return Ok(());
        }
        if lsn > last_lsn {
            return Err(WalError::LsnNotAppended { lsn, last_lsn });
        }
        loop {
            let mut durable = lock(&self.state);
            if let Some(cause) = &durable.poisoned {
                return Err(WalError::Poisoned {
                    cause: cause.clone(),
                });
            }
            if durable.durable_lsn >= lsn {
                return Ok(());
            }
            if durable.syncing {
                durable.waiters.push((lsn, std::thread::current()));
                drop(durable);
                self.park_until_called(lsn);
                continue;
            }
            durable.syncing = true;
            drop(durable);
            self.gather(appends_fence);
            let started = Instant::now();
            let result = pass();
            let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let average = self.pass_ns.load(Ordering::Relaxed);
            let average = if average == 0 {
                took
            } else {
                average - average / 8 + took / 8
            };
            self.pass_ns.store(average, Ordering::Relaxed);
            let mut durable = lock(&self.state);
            durable.syncing = false;
            match result {
                Ok(target) => {
                    assert!(
                        target >= durable.durable_lsn,
                        "the durable LSN never goes backwards"
                    );
                    durable.durable_lsn = target;
                    self.durable_lsn.store(target, Ordering::Release);
                }
                Err(error) => {
                    durable.poisoned = Some(error.to_string());
                    self.poisoned.store(true, Ordering::Release);
                }
            }
            // Wake every waiter this sync satisfied (all of them if it failed), and the first
            // unsatisfied one to lead the next sync. Every waiter registered while `syncing`
            // was set, so this pass sees it: no wakeup is lost.
            let (target, failed) = (durable.durable_lsn, durable.poisoned.is_some());
            let mut next_leader = false;
            let mut covered = 1u64; // this leader
            durable.waiters.retain(|(waiting_for, thread)| {
                let wake = failed || *waiting_for <= target || !next_leader;
                next_leader |= *waiting_for > target;
                covered += u64::from(*waiting_for <= target);
                if wake {
                    thread.unpark();
                }
                !wake
            });
            drop(durable);
            self.siblings.store(covered, Ordering::Relaxed);
            self.changed.notify_all();
        }
    }

    /// Before parking, where a pass takes at most [`SPIN_PASS_MAX`]: yields the core for up
    /// to the recent pass duration, checking the durable LSN between yields, so a committer
    /// the pass in flight covers goes on (to append its next record) as soon as the sync
    /// returns, without waiting for the leader to unpark it (a system call and a wake-up per
    /// committer, which on two cores cost more than the sync). A stale unpark the leader
    /// sends later only makes a later park return once.
    fn spin_until_durable(&self, lsn: Lsn) -> bool {
        let bound = Duration::from_nanos(self.pass_ns.load(Ordering::Relaxed));
        if bound > SPIN_PASS_MAX {
            return false; // A slow device: parking costs little against its sync.
        }
        let deadline = Instant::now() + bound;
        loop {
            if self.durable_lsn.load(Ordering::Acquire) >= lsn
                || self.poisoned.load(Ordering::Acquire)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::yield_now();
        }
    }

    /// Parks until a finishing sync removed this thread from the waiters (or `lsn` became
    /// durable, or the log was poisoned). Spurious unparks just park again.
    fn park_until_called(&self, lsn: Lsn) {
        if self.spin_until_durable(lsn) {
            return;
        }
        let me = std::thread::current().id();
        loop {
            std::thread::park();
            if self.durable_lsn.load(Ordering::Acquire) >= lsn
                || self.poisoned.load(Ordering::Acquire)
            {
                return;
            }
            if !lock(&self.state)
                .waiters
                .iter()
                .any(|(_, thread)| thread.id() == me)
            {
                return;
            }
        }
    }
}
