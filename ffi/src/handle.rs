//! The registry of live handles.
//!
//! The value a C caller holds for a handle is not an address: it is a token naming a slot of a
//! fixed table, the slot's generation and the handle's kind. Closing a handle moves its slot on
//! to the next generation, so the old token never matches again, whatever the allocator does
//! with the memory the handle used: a stale handle is reported (`VIGIL_E_CLOSED`), never
//! dereferenced, and never taken for the handle that uses its slot (or its memory) now.
//!
//! Checking a handle (every call) is a shift, a mask and three loads, with no lock; opening and
//! closing are a compare-exchange or two. Slots are taken round-robin, so a closed slot is
//! reused late, and each reuse raises its generation by one. A slot whose generation is
//! exhausted is retired instead of wrapping (on 64-bit targets a slot has 2^46 generations).
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Low bits of a token and of a slot's state: the handle's kind (1..=3), or a slot tag.
const KIND_BITS: u32 = 3;
const KIND_MASK: usize = (1 << KIND_BITS) - 1;
/// Slot tag: nothing is registered here (the generation bits keep the last one handed out).
const TAG_FREE: usize = 0;
/// Slot tag: an open is writing its value into this slot.
const TAG_RESERVED: usize = KIND_MASK;
/// Bits of a token naming the slot.
const INDEX_BITS: u32 = 15;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
/// The generation is the rest of the token.
const GEN_SHIFT: u32 = KIND_BITS + INDEX_BITS;
/// The last generation a slot can carry; a slot that reached it is retired when closed.
const GEN_MAX: usize = usize::MAX >> GEN_SHIFT;

/// Slots of the process-wide registry: at most this many handles are open at once.
pub(crate) const HANDLE_SLOTS: usize = 1 << INDEX_BITS;

/// Why a token is not a live handle of the kind asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a live handle: closed (or never handed out).
    Closed,
    /// A live handle, of this other kind.
    OtherKind(usize),
}

/// Why a handle could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

struct Slot {
    /// The live handle's token, or a generation with a tag (free, reserved).
    state: AtomicUsize,
    /// What the live handle refers to; meaningful only while `state` is its token.
    value: AtomicPtr<()>,
}

/// A fixed table of `N` handle slots (`N` <= [`HANDLE_SLOTS`]).
pub(crate) struct Registry<const N: usize> {
    slots: [Slot; N],
    /// Where the next open starts looking for a free slot.
    cursor: AtomicUsize,
    /// Slots reserved or live.
    open: AtomicUsize,
}

impl<const N: usize> Registry<N> {
    /// An empty registry.
    pub(crate) const fn new() -> Self {
        const { assert!(N > 0 && N <= HANDLE_SLOTS) };
        Registry {
            slots: [const {
                Slot {
                    state: AtomicUsize::new(TAG_FREE),
                    value: AtomicPtr::new(std::ptr::null_mut()),
                }
            }; N],
            cursor: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
        }
    }

    /// Registers `value` as a live handle of `kind` (1..=3) and returns its token, never 0.
    pub(crate) fn open(&self, value: *mut (), kind: usize) -> Result<usize, Full> {
        debug_assert!(kind != TAG_FREE && kind < TAG_RESERVED);
        if self.open.fetch_add(1, Ordering::AcqRel) >= N {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Full);
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        for step in 0..N {
            let index = start.wrapping_add(step) % N;
            let slot = &self.slots[index];
            let state = slot.state.load(Ordering::Relaxed);
            let generation = state >> GEN_SHIFT;
            if state & KIND_MASK != TAG_FREE || generation == GEN_MAX {
                continue;
            }
            let generation = generation + 1;
            let reserved = (generation << GEN_SHIFT) | TAG_RESERVED;
            if slot
                .state
                .compare_exchange(state, reserved, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // Release: a lookup that reads this value (Acquire) then sees the reservation, so
            // a stale token read just before it cannot pass the lookup's second check.
            slot.value.store(value, Ordering::Release);
            let token = (generation << GEN_SHIFT) | (index << KIND_BITS) | kind;
            slot.state.store(token, Ordering::Release);
            return Ok(token);
        }
        // Every slot is taken or retired.
        self.open.fetch_sub(1, Ordering::AcqRel);
        Err(Full)
    }

    /// The value of the live handle `token`, if it is one of `kind`.
    pub(crate) fn get(&self, token: usize, kind: usize) -> Result<*mut (), Refused> {
        let slot = self
            .slots
            .get((token >> KIND_BITS) & INDEX_MASK)
            .ok_or(Refused::Closed)?;
        let live_kind = token & KIND_MASK;
        if live_kind == TAG_FREE
            || live_kind == TAG_RESERVED
            || slot.state.load(Ordering::Acquire) != token
        {
            return Err(Refused::Closed);
        }
        let value = slot.value.load(Ordering::Acquire);
        // The slot may have been closed and reopened between the two loads (a caller using a
        // handle while another thread closes it, which the header forbids): then the value
        // may be the new handle's, and the state no longer matches.
        if slot.state.load(Ordering::Relaxed) != token {
            return Err(Refused::Closed);
        }
        if live_kind != kind {
            return Err(Refused::OtherKind(live_kind));
        }
        Ok(value)
    }

    /// Unregisters the live handle `token` of `kind` and returns its value, which the caller
    /// now owns. Only one close of a token can succeed.
    pub(crate) fn close(&self, token: usize, kind: usize) -> Result<*mut (), Refused> {
        let value = self.get(token, kind)?;
        let slot = &self.slots[(token >> KIND_BITS) & INDEX_MASK];
        // The next open of this slot takes the next generation; the value read above is still
        // this handle's if the exchange succeeds (an open must first find the slot free).
        let freed = (token >> GEN_SHIFT << GEN_SHIFT) | TAG_FREE;
        slot.state
            .compare_exchange(token, freed, Ordering::AcqRel, Ordering::Relaxed)
            .map_err(|_| Refused::Closed)?;
        self.open.fetch_sub(1, Ordering::AcqRel);
        Ok(value)
    }

    /// Sets slot `index`'s last generation, as if it had been opened and closed that often.
    #[cfg(test)]
    fn age_slot(&self, index: usize, generation: usize) {
        self.slots[index]
            .state
            .store(generation << GEN_SHIFT, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: usize = 2;
    const READER: usize = 3;

    fn value(n: usize) -> *mut () {
        std::ptr::without_provenance_mut(n)
    }

    #[test]
    fn a_reused_slot_gives_a_new_token_and_the_stale_one_is_closed() {
        // One slot: the second handle must reuse the first one's slot.
        let r = Registry::<1>::new();
        let first = r.open(value(0x1000), JOB).unwrap();
        assert_eq!(r.get(first, JOB), Ok(value(0x1000)));
        assert_eq!(r.open(value(0x2000), JOB), Err(Full));
        assert_eq!(r.close(first, JOB), Ok(value(0x1000)));
        // The same "address" again, as an allocator reusing freed memory would hand out.
        let second = r.open(value(0x1000), JOB).unwrap();
        assert_ne!(second, first);
        assert_eq!(
            second >> KIND_BITS & INDEX_MASK,
            first >> KIND_BITS & INDEX_MASK
        );
        assert_eq!(r.get(first, JOB), Err(Refused::Closed));
        assert_eq!(r.close(first, JOB), Err(Refused::Closed));
        // The stale close touched nothing: the new handle is live and closes once.
        assert_eq!(r.get(second, JOB), Ok(value(0x1000)));
        assert_eq!(r.close(second, JOB), Ok(value(0x1000)));
        assert_eq!(r.close(second, JOB), Err(Refused::Closed));
    }

    #[test]
    fn a_token_is_checked_for_its_kind_and_garbage_is_closed() {
        let r = Registry::<4>::new();
        let reader = r.open(value(8), READER).unwrap();
        assert_eq!(r.get(reader, JOB), Err(Refused::OtherKind(READER)));
        assert_eq!(r.close(reader, JOB), Err(Refused::OtherKind(READER)));
        assert_eq!(r.get(reader, READER), Ok(value(8)));
        for junk in [
            0,
            1,
            7,
            usize::MAX,
            reader ^ 1 << GEN_SHIFT,
            reader | TAG_RESERVED,
        ] {
            assert_eq!(r.get(junk, READER), Err(Refused::Closed), "{junk:#x}");
        }
        // An index beyond a small table.
        assert_eq!(
            r.get(reader + (8 << KIND_BITS), READER),
            Err(Refused::Closed)
        );
    }

    #[test]
    fn slots_are_taken_round_robin_and_a_full_table_refuses() {
        let r = Registry::<3>::new();
        let a = r.open(value(1), JOB).unwrap();
        r.close(a, JOB).unwrap();
        // The freed slot is not the next one taken while others are free.
        let b = r.open(value(2), JOB).unwrap();
        let c = r.open(value(3), JOB).unwrap();
        let slot = |t: usize| (t >> KIND_BITS) & INDEX_MASK;
        assert_ne!(slot(b), slot(a));
        assert_ne!(slot(c), slot(a));
        let d = r.open(value(4), JOB).unwrap();
        assert_eq!(slot(d), slot(a));
        assert_eq!(r.open(value(5), JOB), Err(Full));
        for t in [b, c, d] {
            r.close(t, JOB).unwrap();
        }
        assert!(r.open(value(6), JOB).is_ok());
    }

    #[test]
    fn a_slot_whose_generations_are_used_up_is_retired_not_wrapped() {
        let r = Registry::<2>::new();
        r.age_slot(0, GEN_MAX - 1);
        let last = r.open(value(1), JOB).unwrap();
        assert_eq!(last >> GEN_SHIFT, GEN_MAX);
        r.close(last, JOB).unwrap();
        // Slot 0 can never be handed out again; slot 1 still can, and then the table is full.
        let other = r.open(value(2), JOB).unwrap();
        assert_eq!((other >> KIND_BITS) & INDEX_MASK, 1);
        assert_eq!(r.open(value(3), JOB), Err(Full));
        assert_eq!(r.get(last, JOB), Err(Refused::Closed));
    }

    #[test]
    fn concurrent_opens_and_closes_never_share_a_token() {
        let r = Registry::<64>::new();
        std::thread::scope(|s| {
            for t in 0..4usize {
                let r = &r;
                s.spawn(move || {
                    for i in 0..2_000usize {
                        let v = value((t << 20 | i) << 3);
                        let token = r.open(v, JOB).unwrap();
                        assert_eq!(r.get(token, JOB), Ok(v));
                        assert_eq!(r.close(token, JOB), Ok(v));
                        assert_eq!(r.get(token, JOB), Err(Refused::Closed));
                    }
                });
            }
        });
        assert_eq!(r.open.load(Ordering::Relaxed), 0);
    }
}
