//! A simulated segment store for crash tests: every file has a *live* image (what the process
//! sees, like the page cache) and a *durable* image (what survives a crash).
//!
//! `sync` copies live to durable, unless a fault is planned: a crash during the Nth sync (some
//! sectors reach the durable image, the rest do not, and the store is dead afterwards) or an
//! EIO from the Nth sync (nothing reaches the durable image, as when the kernel drops dirty
//! pages after a failed writeback). [`SimStore::crash_image`] builds the store a restarted
//! process would find: the durable images, plus a random choice of each unsynced sector's new
//! or old content (torn and dropped writes). Creating and removing segments is durable at once,
//! as the real store fsyncs the directory.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::storage::{with_hint, CheckpointHint, LogIdentity, SegmentFile, SegmentStore};
use super::sync::SyncEngine;

/// The atomic unit of a simulated disk write.
pub const SECTOR_BYTES: usize = 512;

/// Faults to inject, counted over all syncs and creates of the store (1-based).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The Nth sync crashes midway: the store is dead afterwards.
    pub crash_at_sync: Option<u64>,
    /// The Nth sync fails with EIO and persists nothing.
    pub eio_at_sync: Option<u64>,
    /// Every segment creation from the Nth on fails with ENOSPC (a full disk).
    pub enospc_from_create: Option<u64>,
}

/// A small deterministic generator (xorshift64*), so a failing seed replays exactly.
#[derive(Clone, Copy, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator seeded with `seed` (any value; 0 included).
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next pseudo-random number of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

struct SimState {
    files: BTreeMap<u64, Arc<SimFile>>,
    identity: Option<LogIdentity>,
    /// Durable once set (it counts as a sync: a planned EIO or crash can strike it).
    hint: Option<CheckpointHint>,
    plan: FaultPlan,
    syncs: u64,
    creates: u64,
    dead: bool,
    rng: SimRng,
}

/// The simulated store. Cloning shares the same state.
#[derive(Clone)]
pub struct SimStore {
    state: Arc<Mutex<SimState>>,
}

/// One simulated segment.
pub struct SimFile {
    live: *mut u8,
    len: usize,
    durable: Mutex<Vec<u8>>,
    store: std::sync::Weak<Mutex<SimState>>,
}

// SAFETY: `live` is an owned heap buffer; concurrent access follows the writer/reader
// discipline documented on `SegmentFile`, as for a real mapping.
unsafe impl Send for SimFile {}
// SAFETY: as above.
unsafe impl Sync for SimFile {}

impl Drop for SimFile {
    fn drop(&mut self) {
        // SAFETY: `live` came from `Box::into_raw` of a boxed slice of `len` bytes.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.live, self.len)) });
    }
}

impl SimFile {
    fn new(image: Vec<u8>, store: &Arc<Mutex<SimState>>) -> SimFile {
        let len = image.len();
        let live = Box::into_raw(image.clone().into_boxed_slice()) as *mut u8;
        SimFile {
            live,
            len,
            durable: Mutex::new(image),
            store: Arc::downgrade(store),
        }
    }

    fn live(&self) -> &[u8] {
        // SAFETY: the sim is only inspected when no writer is storing (sync holds the
        // store lock while the log's writer is not mid-copy in the tests that use it).
        unsafe { std::slice::from_raw_parts(self.live, self.len) }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SegmentFile for SimFile {
    fn len(&self) -> usize {
        self.len
    }

    fn base_ptr(&self) -> *mut u8 {
        self.live
    }

    fn sync(&self, _engine: &mut SyncEngine) -> io::Result<()> {
        let Some(store) = self.store.upgrade() else {
            return Err(io::Error::other("simulated store is gone"));
        };
        let mut state = lock(&store);
        if state.dead {
            return Err(io::Error::other("simulated machine has crashed"));
        }
        state.syncs += 1;
        let n = state.syncs;
        let mut durable = lock(&self.durable);
        if state.plan.eio_at_sync == Some(n) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        if state.plan.crash_at_sync == Some(n) {
            // Power fails while the sync runs: some dirty sectors made it, others did not.
            let live = self.live().to_vec();
            for (sector, (new, old)) in live
                .chunks(SECTOR_BYTES)
                .zip(durable.chunks_mut(SECTOR_BYTES))
                .enumerate()
            {
                let _ = sector;
                if new != old && state.rng.below(2) == 0 {
                    old.copy_from_slice(new);
                }
            }
            state.dead = true;
            return Err(io::Error::other("simulated crash during sync"));
        }
        durable.copy_from_slice(self.live());
        Ok(())
    }
}

impl SimStore {
    /// An empty store.
    pub fn new(plan: FaultPlan, seed: u64) -> SimStore {
        let state = SimState {
            files: BTreeMap::new(),
            identity: None,
            hint: None,
            plan,
            syncs: 0,
            creates: 0,
            dead: false,
            rng: SimRng::new(seed),
        };
        SimStore {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Whether a planned crash has happened.
    pub fn is_dead(&self) -> bool {
        lock(&self.state).dead
    }

    /// Syncs performed so far (including failed ones).
    pub fn syncs(&self) -> u64 {
        lock(&self.state).syncs
    }

    /// The store a restarted machine finds: the durable images, with each unsynced sector
    /// independently kept (written) or dropped (old content), so multi-sector writes tear.
    /// The new store has no faults planned.
    pub fn crash_image(&self, seed: u64) -> SimStore {
        let mut rng = SimRng::new(seed);
        let identity = lock(&self.state).identity;
        let hint = lock(&self.state).hint;
        let images: Vec<(u64, Vec<u8>)> = {
            let state = lock(&self.state);
            state
                .files
                .iter()
                .map(|(&seq, file)| {
                    let mut image = lock(&file.durable).clone();
                    if !state.dead {
                        for (new, old) in file
                            .live()
                            .chunks(SECTOR_BYTES)
                            .zip(image.chunks_mut(SECTOR_BYTES))
                        {
                            if new != old && rng.below(2) == 0 {
                                old.copy_from_slice(new);
                            }
                        }
                    }
                    (seq, image)
                })
                .collect()
        };
        let restarted = SimStore::new(FaultPlan::default(), rng.next_u64());
        {
            let mut state = lock(&restarted.state);
            state.identity = identity;
            state.hint = hint;
            for (seq, image) in images {
                let file = Arc::new(SimFile::new(image, &restarted.state));
                state.files.insert(seq, file);
            }
        }
        restarted
    }

    /// The durable image of segment `seq`, for tests that damage bytes on "disk".
    pub fn durable_image(&self, seq: u64) -> Option<Vec<u8>> {
        lock(&self.state)
            .files
            .get(&seq)
            .map(|f| lock(&f.durable).clone())
    }

    /// Every segment's durable image, for tests that check an open changed nothing.
    pub fn durable_images(&self) -> Vec<(u64, Vec<u8>)> {
        lock(&self.state)
            .files
            .iter()
            .map(|(&seq, f)| (seq, lock(&f.durable).clone()))
            .collect()
    }

    /// Replaces segment `seq` with `image` (live and durable), for tests that damage bytes.
    pub fn put_image(&self, seq: u64, image: Vec<u8>) {
        let file = Arc::new(SimFile::new(image, &self.state));
        lock(&self.state).files.insert(seq, file);
    }
}

impl SegmentStore for SimStore {
    fn list(&self) -> io::Result<Vec<u64>> {
        Ok(lock(&self.state).files.keys().copied().collect())
    }

    fn create(&self, seq: u64, bytes: u64) -> io::Result<Arc<dyn SegmentFile>> {
        let mut state = lock(&self.state);
        if state.dead {
            return Err(io::Error::other("simulated machine has crashed"));
        }
        state.creates += 1;
        if state
            .plan
            .enospc_from_create
            .is_some_and(|n| state.creates >= n)
        {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("create sim:{seq}: no space left on device"),
            ));
        }
        if state.files.contains_key(&seq) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("sim:{seq} exists"),
            ));
        }
        let file = Arc::new(SimFile::new(vec![0u8; bytes as usize], &self.state));
        state.files.insert(seq, file.clone());
        Ok(file)
    }

    fn open(&self, seq: u64, _writable: bool) -> io::Result<Arc<dyn SegmentFile>> {
        let state = lock(&self.state);
        match state.files.get(&seq) {
            Some(file) => Ok(file.clone()),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("sim:{seq} not found"),
            )),
        }
    }

    fn remove(&self, seq: u64) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.dead {
            return Err(io::Error::other("simulated machine has crashed"));
        }
        state.files.remove(&seq);
        Ok(())
    }

    fn describe(&self, seq: u64) -> String {
        format!("sim:{seq:020}")
    }

    fn identity(&self) -> io::Result<Option<LogIdentity>> {
        let state = lock(&self.state);
        Ok(state.identity.map(|id| with_hint(id, state.hint)))
    }

    fn set_identity(&self, identity: LogIdentity) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.dead {
            return Err(io::Error::other("simulated machine has crashed"));
        }
        state.identity = Some(identity);
        Ok(())
    }

    fn describe_identity(&self) -> String {
        "sim:IDENTITY".to_string()
    }

    fn checkpoint_hint(&self) -> io::Result<Option<CheckpointHint>> {
        Ok(lock(&self.state).hint)
    }

    fn set_checkpoint_hint(&self, hint: CheckpointHint) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.dead {
            return Err(io::Error::other("simulated machine has crashed"));
        }
        state.syncs += 1;
        let n = state.syncs;
        if state.plan.eio_at_sync == Some(n) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        if state.plan.crash_at_sync == Some(n) {
            // Power fails during the write: the copy being written is torn or made it; the
            // other copy holds the claim before it.
            if state.rng.below(2) == 0 {
                state.hint = Some(hint);
            }
            state.dead = true;
            return Err(io::Error::other("simulated machine crashed during a sync"));
        }
        state.hint = Some(hint);
        Ok(())
    }

    fn creates_in_background(&self) -> bool {
        false
    }
}
