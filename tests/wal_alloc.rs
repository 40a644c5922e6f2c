//! Steady-state appends and syncs allocate nothing: a counting global allocator watches a
//! loop of appends (no segment rotation) and group-commit syncs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use vigil_runtime::wal::log::{Retention, Wal, WalOptions};
use vigil_runtime::wal::record::{Record, TelemetrySample};
use vigil_runtime::wal::scan::RecoveryMode;
use vigil_runtime::wal::sync::SyncMethod;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn appends_and_syncs_allocate_nothing_in_steady_state() {
    let dir = tempfile::tempdir().unwrap();
    for method in [SyncMethod::Auto, SyncMethod::Fdatasync] {
        let options = WalOptions {
            segment_bytes: 16 << 20,
            sync_method: method,
            recovery_mode: RecoveryMode::Tail,
            retention: Retention {
                bytes_max: None,
                segments_max: None,
            },
            zero_fill_segments: false,
            open_from_checkpoint: false,
        };
        let wal = Wal::open(&dir.path().join(format!("{method:?}")), options).unwrap();
        let body = [0x5Au8; 128];
        let record = Record::TelemetrySample(TelemetrySample {
            unix_ms: 1,
            body: &body,
        });
        // Warm up: first sync, first use of every path.
        for _ in 0..10 {
            let lsn = wal.append(&record).unwrap();
            wal.sync(lsn).unwrap();
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for i in 0..20_000u64 {
            let lsn = wal.append(&record).unwrap();
            if i % 200 == 0 {
                wal.sync(lsn).unwrap();
            }
        }
        wal.sync_all().unwrap();
        let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(
            allocated, 0,
            "{method:?}: steady-state appends and syncs allocated {allocated} times"
        );
    }
}
