//! Crash tests over the simulated store: the machine dies at the Nth sync or after the Nth
//! append, unsynced sectors are kept or dropped at random (torn writes), and syncs fail with
//! EIO. After every crash, recovery must open the log (a crash is never "corruption"), every
//! acknowledged record must be there intact, and nothing returned may differ from what was
//! written under that LSN.

use std::collections::BTreeMap;
use std::sync::Arc;

use vigil_runtime::wal::frame::Lsn;
use vigil_runtime::wal::frame::SEGMENT_HEADER_BYTES;
use vigil_runtime::wal::log::{Retention, Wal, WalError, WalOptions};
use vigil_runtime::wal::reader::Reader;
use vigil_runtime::wal::record::kind;
use vigil_runtime::wal::recovery::{scan_log_from_checkpoint, SegmentState};
use vigil_runtime::wal::scan::RecoveryMode;
use vigil_runtime::wal::sim::{FaultPlan, SimRng, SimStore};
use vigil_runtime::wal::storage::{CheckpointHint, LogIdentity, SegmentFile, SegmentStore};
use vigil_runtime::wal::sync::SyncMethod;

/// Seeds to run: the default keeps the suite fast; `VIGIL_WAL_SIM_SEEDS` runs more.
fn seeds(default: u64) -> u64 {
    std::env::var("VIGIL_WAL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn options(segment_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes,
        sync_method: SyncMethod::Fdatasync,
        recovery_mode: RecoveryMode::Tail,
        retention: Retention {
            bytes_max: None,
            segments_max: None,
        },
        zero_fill_segments: false,
        open_from_checkpoint: false,
    }
}

/// Every frame the recovered log holds, in order: (LSN, kind, payload).
fn frames(store: &SimStore) -> Vec<(Lsn, u16, Vec<u8>)> {
    let mut reader = Reader::over_store(Arc::new(store.clone()), 1).unwrap();
    let mut out = Vec::new();
    let mut keep = |f: vigil_runtime::wal::Frame<'_>| out.push((f.lsn, f.kind, f.payload.to_vec()));
    while reader.read_batch(500, &mut keep).unwrap() > 0 {}
    out
}

/// The records the log holds (closing checkpoints left out).
fn contents(store: &SimStore) -> Vec<(Lsn, Vec<u8>)> {
    frames(store)
        .into_iter()
        .filter(|f| f.1 != kind::CHECKPOINT)
        .map(|f| (f.0, f.2))
        .collect()
}

struct History {
    /// What was appended under each LSN by the incarnation that wrote it last.
    written: BTreeMap<Lsn, Vec<u8>>,
    /// Acknowledged durable: must survive every later crash.
    acked: BTreeMap<Lsn, Vec<u8>>,
}

/// Runs one incarnation: appends and syncs until the planned fault or `appends` appends.
fn run(wal: &Wal, rng: &mut SimRng, appends: u64, history: &mut History) {
    for _ in 0..appends {
        let len = rng.below(700) as usize;
        let fill = rng.next_u64() as u8;
        let body: Vec<u8> = (0..len).map(|i| fill ^ i as u8).collect();
        let lsn = match wal.append_raw(kind::USER, &body) {
            Ok(lsn) => lsn,
            Err(_) => return,
        };
        // An unacknowledged LSN may be reused after a crash; the newest write is what counts.
        history.written.insert(lsn, body);
        if rng.below(4) == 0 {
            match wal.sync_all() {
                Ok(durable) => {
                    for (&l, b) in history.written.range(..=durable) {
                        history.acked.insert(l, b.clone());
                    }
                }
                Err(error) => {
                    assert!(matches!(error, WalError::Poisoned { .. }), "{error}");
                    return;
                }
            }
        }
    }
}

fn check(store: &SimStore, history: &History, context: &str) {
    for (i, frame) in frames(store).iter().enumerate() {
        assert_eq!(frame.0, i as u64 + 1, "{context}: LSNs dense from 1");
    }
    let got: BTreeMap<Lsn, Vec<u8>> = contents(store).into_iter().collect();
    for (lsn, body) in &got {
        assert_eq!(
            history.written.get(lsn),
            Some(body),
            "{context}: LSN {lsn} returned altered"
        );
    }
    for (lsn, body) in &history.acked {
        assert_eq!(
            got.get(lsn),
            Some(body),
            "{context}: acknowledged LSN {lsn} lost or altered"
        );
    }
}

fn recover(store: &SimStore, context: &str) -> Wal {
    match Wal::open_with_store(Arc::new(store.clone()), options(4096 * 3)) {
        Ok(wal) => wal,
        Err(error) => panic!("{context}: recovery refused after a crash: {error}"),
    }
}

#[test]
fn acknowledged_records_survive_crashes_at_any_sync_or_append_with_torn_sectors() {
    for seed in 0..seeds(300) {
        let mut rng = SimRng::new(seed);
        let plan = FaultPlan {
            crash_at_sync: Some(2 + rng.below(30)),
            ..FaultPlan::default()
        };
        let mut store = SimStore::new(plan, seed);
        let mut history = History {
            written: BTreeMap::new(),
            acked: BTreeMap::new(),
        };
        let wal = Wal::open_with_store(Arc::new(store.clone()), options(4096 * 3)).unwrap();
        let appends = 1 + rng.below(250);
        run(&wal, &mut rng, appends, &mut history);
        wal.abandon();
        // Three generations: crash, recover, write more, crash again.
        for generation in 0..3 {
            let context = format!("seed {seed} generation {generation}");
            store = store.crash_image(seed * 31 + generation);
            let wal = recover(&store, &context);
            check(&store, &history, &context);
            // Anything not acknowledged is gone or intact; from here on the recovered log is
            // what was written.
            let recovered: BTreeMap<Lsn, Vec<u8>> = contents(&store).into_iter().collect();
            history.written = recovered;
            let appends = rng.below(120);
            run(&wal, &mut rng, appends, &mut history);
            wal.abandon();
        }
    }
}

#[test]
fn a_sync_failing_with_eio_is_never_acknowledged_and_recovery_keeps_the_acknowledged() {
    for seed in 0..seeds(100) {
        let mut rng = SimRng::new(seed ^ 0xE10);
        let eio_at = 2 + rng.below(20);
        let plan = FaultPlan {
            eio_at_sync: Some(eio_at),
            ..FaultPlan::default()
        };
        let store = SimStore::new(plan, seed);
        let mut history = History {
            written: BTreeMap::new(),
            acked: BTreeMap::new(),
        };
        let wal = Wal::open_with_store(Arc::new(store.clone()), options(4096 * 3)).unwrap();
        run(&wal, &mut rng, 400, &mut history);
        let acked_before = history.acked.len();
        if store.syncs() >= eio_at {
            assert!(
                wal.is_poisoned(),
                "seed {seed}: EIO at sync {eio_at} poisoned the log"
            );
            assert!(wal.sync_all().is_err() && wal.append_raw(kind::USER, b"x").is_err());
            assert!(wal.durable_lsn() <= history.acked.keys().last().copied().unwrap_or(0));
        }
        assert_eq!(history.acked.len(), acked_before);
        wal.abandon();
        let crashed = store.crash_image(seed);
        let context = format!("eio seed {seed}");
        drop(recover(&crashed, &context));
        check(&crashed, &history, &context);
    }
}

#[test]
fn a_full_disk_at_segment_creation_is_an_error_that_loses_nothing() {
    // Creation 1 is the first segment, 2 its pre-created successor; from 3 on the disk is full.
    let plan = FaultPlan {
        enospc_from_create: Some(3),
        ..FaultPlan::default()
    };
    let store = SimStore::new(plan, 5);
    let wal = Wal::open_with_store(Arc::new(store.clone()), options(4096)).unwrap();
    let mut history = History {
        written: BTreeMap::new(),
        acked: BTreeMap::new(),
    };
    let mut failure = None;
    for i in 0..200u64 {
        let body = vec![i as u8; 300];
        match wal.append_raw(kind::USER, &body) {
            Ok(lsn) => {
                history.written.insert(lsn, body.clone());
                wal.sync(lsn).unwrap();
                history.acked.insert(lsn, body);
            }
            Err(error) => {
                failure = Some(error.to_string());
                break;
            }
        }
    }
    let failure = failure.expect("two 4 KiB segments cannot hold 200 records of 300 bytes");
    assert!(
        failure.contains("no space left") && failure.contains("sim:"),
        "{failure}"
    );
    assert!(
        !wal.is_poisoned(),
        "a full disk loses nothing, so it poisons nothing"
    );
    assert!(
        history.acked.len() >= 20,
        "both segments were used: {}",
        history.acked.len()
    );
    // Still full: a record that needs a new segment fails the same way and changes nothing.
    assert!(wal.append_raw(kind::USER, &[7u8; 300]).is_err());
    wal.abandon();
    check(&store.crash_image(1), &history, "enospc");
}

#[test]
fn reopening_a_cleanly_closed_log_syncs_nothing_and_a_log_left_unsynced_is_synced_at_open() {
    let store = SimStore::new(FaultPlan::default(), 7);
    let open = |store: &SimStore| Wal::open_with_store(Arc::new(store.clone()), options(1 << 16));
    let wal = open(&store).unwrap();
    for i in 0..20u64 {
        wal.append_raw(kind::USER, &i.to_le_bytes()).unwrap();
    }
    wal.close().unwrap();
    // The close recorded its checkpoint as durable in the identity: the open proves the whole
    // log on disk from it and has nothing to sync.
    let before = store.syncs();
    let wal = open(&store).unwrap();
    assert_eq!(
        store.syncs(),
        before,
        "a clean log was synced again at open"
    );
    // Records appended and never synced, as a killed writer leaves them in the page cache.
    for i in 20..30u64 {
        wal.append_raw(kind::USER, &i.to_le_bytes()).unwrap();
    }
    std::mem::forget(wal);
    let before = store.syncs();
    let wal = open(&store).unwrap();
    assert!(
        store.syncs() > before,
        "the open must make what it recovered durable before new frames claim it"
    );
    // Nothing of the unsynced records was lost to a crash right after that open.
    let image = store.crash_image(11);
    drop(wal);
    let recovered: Vec<Lsn> = frames(&image)
        .into_iter()
        .filter(|(_, k, _)| *k == kind::USER)
        .map(|(lsn, _, _)| lsn)
        .collect();
    assert_eq!(recovered.len(), 30, "{recovered:?}");
}

/// A simulated store that notes, at each `sync_listing`, whether segment 2 already had a
/// durable header.
struct ListingWatch {
    sim: SimStore,
    /// For each `sync_listing`: segment 2's durable header was still all zeros.
    calls: std::sync::Mutex<Vec<bool>>,
}

impl SegmentStore for ListingWatch {
    fn list(&self) -> std::io::Result<Vec<u64>> {
        self.sim.list()
    }
    fn create(&self, seq: u64, bytes: u64) -> std::io::Result<Arc<dyn SegmentFile>> {
        self.sim.create(seq, bytes)
    }
    fn open(&self, seq: u64, writable: bool) -> std::io::Result<Arc<dyn SegmentFile>> {
        self.sim.open(seq, writable)
    }
    fn remove(&self, seq: u64) -> std::io::Result<()> {
        self.sim.remove(seq)
    }
    fn describe(&self, seq: u64) -> String {
        self.sim.describe(seq)
    }
    fn identity(&self) -> std::io::Result<Option<LogIdentity>> {
        self.sim.identity()
    }
    fn set_identity(&self, identity: LogIdentity) -> std::io::Result<()> {
        self.sim.set_identity(identity)
    }
    fn describe_identity(&self) -> String {
        self.sim.describe_identity()
    }
    fn creates_in_background(&self) -> bool {
        self.sim.creates_in_background()
    }
    fn sync_listing(&self) -> std::io::Result<()> {
        let header_empty = self
            .sim
            .durable_image(2)
            .is_some_and(|image| image[..SEGMENT_HEADER_BYTES].iter().all(|&b| b == 0));
        self.calls.lock().unwrap().push(header_empty);
        self.sim.sync_listing()
    }
}

#[test]
fn a_segment_found_at_open_has_its_name_synced_before_the_writer_puts_a_header_in_it() {
    let sim = SimStore::new(FaultPlan::default(), 3);
    // A first writer leaves segment 1 with records and segment 2 made ahead, unused.
    let wal = Wal::open_with_store(Arc::new(sim.clone()), options(1 << 16)).unwrap();
    wal.append_raw(kind::USER, b"first").unwrap();
    wal.close().unwrap();
    assert_eq!(sim.list().unwrap(), vec![1, 2]);
    // The next writer finds segment 2 at open and rotates into it.
    let watch = Arc::new(ListingWatch {
        sim: sim.clone(),
        calls: std::sync::Mutex::new(Vec::new()),
    });
    let wal = Wal::open_with_store(watch.clone(), options(1 << 16)).unwrap();
    assert!(
        watch.calls.lock().unwrap().is_empty(),
        "the open synced the listing"
    );
    let body = vec![7u8; 4096];
    for _ in 0..64 {
        if wal.stats().segments >= 2 {
            break;
        }
        wal.append_raw(kind::USER, &body).unwrap();
    }
    assert!(wal.stats().segments >= 2, "no rotation");
    wal.close().unwrap();
    let calls = watch.calls.lock().unwrap().clone();
    assert_eq!(
        calls.first(),
        Some(&true),
        "the listing was not synced before segment 2's header: {calls:?}"
    );
}

/// A simulated store that counts reads of the identity and opens of each segment.
struct IdentityReads {
    sim: SimStore,
    reads: std::sync::atomic::AtomicUsize,
    opens: std::sync::Mutex<BTreeMap<u64, usize>>,
}

impl IdentityReads {
    fn over(sim: &SimStore) -> IdentityReads {
        IdentityReads {
            sim: sim.clone(),
            reads: Default::default(),
            opens: Default::default(),
        }
    }
}

impl SegmentStore for IdentityReads {
    fn list(&self) -> std::io::Result<Vec<u64>> {
        self.sim.list()
    }
    fn create(&self, seq: u64, bytes: u64) -> std::io::Result<Arc<dyn SegmentFile>> {
        self.sim.create(seq, bytes)
    }
    fn open(&self, seq: u64, writable: bool) -> std::io::Result<Arc<dyn SegmentFile>> {
        *self.opens.lock().unwrap().entry(seq).or_default() += 1;
        self.sim.open(seq, writable)
    }
    fn remove(&self, seq: u64) -> std::io::Result<()> {
        self.sim.remove(seq)
    }
    fn describe(&self, seq: u64) -> String {
        self.sim.describe(seq)
    }
    fn identity(&self) -> std::io::Result<Option<LogIdentity>> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sim.identity()
    }
    fn set_identity(&self, identity: LogIdentity) -> std::io::Result<()> {
        self.sim.set_identity(identity)
    }
    fn describe_identity(&self) -> String {
        self.sim.describe_identity()
    }
    fn creates_in_background(&self) -> bool {
        self.sim.creates_in_background()
    }
    fn checkpoint_hint(&self) -> std::io::Result<Option<CheckpointHint>> {
        self.sim.checkpoint_hint()
    }
    fn set_checkpoint_hint(&self, hint: CheckpointHint) -> std::io::Result<()> {
        self.sim.set_checkpoint_hint(hint)
    }
}

#[test]
fn opening_a_cleanly_closed_log_reads_its_identity_once_and_syncs_nothing() {
    let sim = SimStore::new(FaultPlan::default(), 5);
    let wal = Wal::open_with_store(Arc::new(sim.clone()), options(1 << 16)).unwrap();
    for i in 0..5u64 {
        wal.append_raw(kind::USER, &i.to_le_bytes()).unwrap();
    }
    wal.close().unwrap();
    let store = Arc::new(IdentityReads::over(&sim));
    let syncs = sim.syncs();
    let wal = Wal::open_with_store(store.clone(), options(1 << 16)).unwrap();
    assert_eq!(
        store.reads.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the scan's read proves the durable end too"
    );
    assert_eq!(sim.syncs(), syncs, "a clean log was synced again at open");
    assert_eq!(wal.recovery().scan.recorded_durable_lsn, 6);
    wal.abandon();
}

/// A scan from the last checkpoint looks at the newest segments more than once (their headers,
/// the hinted checkpoint, the zero header of the pre-created one, then their frames) and at
/// each older one's header: every segment is opened once all the same, however many there are.
#[test]
fn a_scan_from_the_last_checkpoint_opens_each_segment_once() {
    let sim = SimStore::new(FaultPlan::default(), 5);
    let wal = Wal::open_with_store(Arc::new(sim.clone()), options(1 << 16)).unwrap();
    wal.set_prologue(Box::new(|_| Some(b"checkpoint".to_vec())));
    wal.set_closing_checkpoint(Box::new(|_| Some(b"closing checkpoint".to_vec())));
    let mut last = 0;
    for i in 0..6000u64 {
        last = wal.append_raw(kind::USER, &[i as u8 | 1; 40]).unwrap();
    }
    wal.sync(last).unwrap();
    wal.close().unwrap();
    let store = IdentityReads::over(&sim);
    let scan = scan_log_from_checkpoint(&store, RecoveryMode::Strict, &mut |_, _, _| {}).unwrap();
    let sealed = scan
        .segments
        .iter()
        .filter(|s| s.state == SegmentState::Sealed)
        .count();
    assert!(sealed >= 5, "{sealed} sealed segments: {:?}", scan.segments);
    assert!(scan.fault.is_none(), "{:?}", scan.fault);
    let opens = store.opens.lock().unwrap().clone();
    assert_eq!(opens.len(), scan.segments.len(), "{opens:?}");
    assert!(opens.values().all(|&n| n == 1), "{opens:?}");
}

/// `Wal::finish` (a one-shot run's close before it exits) fails on a poisoned log as `close`
/// does: what was appended after the failed sync may be lost, and the caller hears of it.
#[test]
fn finishing_a_poisoned_log_is_an_error_as_closing_it_is() {
    let plan = FaultPlan {
        eio_at_sync: Some(2),
        ..FaultPlan::default()
    };
    let sim = SimStore::new(plan, 7);
    let wal = Wal::open_with_store(Arc::new(sim.clone()), options(1 << 16)).unwrap();
    let mut poisoned = false;
    for i in 0..5u64 {
        let Ok(lsn) = wal.append_raw(kind::USER, &i.to_le_bytes()) else {
            break;
        };
        if wal.sync(lsn).is_err() {
            poisoned = true;
            break;
        }
    }
    assert!(poisoned && wal.is_poisoned(), "the second sync failed");
    let error = wal.finish().unwrap_err();
    assert!(matches!(error, WalError::Poisoned { .. }), "{error}");
    // Once finished, dropping the log does nothing more (and does not panic).
    drop(wal);
}
