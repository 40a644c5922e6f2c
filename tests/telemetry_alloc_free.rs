//! Proves the telemetry hot path allocates nothing in steady state: a counting global
//! allocator watches `Sampler::sample_into` + `SampleRing::push`, a job's start and end
//! samples (`sample_span_start` / `sample_span_end` with a reused `SpanStart`) and the parsers.
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the thread being watched: the test harness's own threads allocate now and then
    /// (more so on a loaded machine), and those are not the sampler's.
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if WATCHED.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: every call forwards to the system allocator unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged: the caller upholds GlobalAlloc::alloc's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from System through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged: `ptr` came from System with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while `f` runs.
fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    WATCHED.with(|w| w.set(true));
    f();
    WATCHED.with(|w| w.set(false));
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

// One test function: the counter is process-wide, so parallel tests would disturb each other.
#[test]
fn steady_state_sampling_and_parsing_allocate_nothing() {
    // The counter itself must see allocations, or a zero below would prove nothing.
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 64]))) >= 1);

    let mut sampler = vigil_runtime::sampler::Sampler::open(Path::new("/proc")).unwrap();
    let mut ring = vigil_runtime::sample::SampleRing::<64>::new_boxed();
    let mut sample = vigil_runtime::sample::Sample::default();
    // Warm-up: buffers reach their steady size.
    for _ in 0..3 {
        sampler.sample_into(&mut sample).unwrap();
        ring.push(sample.clone());
    }
    let n = allocations_during(|| {
        for _ in 0..200 {
            sampler.sample_into(&mut sample).unwrap();
            ring.push(sample.clone());
        }
    });
    assert_eq!(n, 0, "allocations in 200 steady-state samples");
    assert_eq!(ring.latest().unwrap().seq, 203);

    let mut start = vigil_runtime::sampler::SpanStart::default();
    let mut end = vigil_runtime::sample::Sample::default();
    sampler.sample_span_start(&mut start, &mut sample).unwrap();
    sampler.sample_span_end(&start, &mut end).unwrap();
    let n = allocations_during(|| {
        for _ in 0..100 {
            sampler.sample_span_start(&mut start, &mut sample).unwrap();
            sampler.sample_span_end(&start, &mut end).unwrap();
        }
    });
    assert_eq!(n, 0, "allocations in 100 job start and end samples");
    assert!(end.seq > sample.seq);

    let big = vigil_runtime::procfs::stat::synthetic(1024);
    let mut stat = Box::new(vigil_runtime::procfs::ProcStat::<1024>::default());
    let mut meminfo = vigil_runtime::procfs::MemInfo::default();
    let meminfo_text = std::fs::read("/proc/meminfo").unwrap();
    let n = allocations_during(|| {
        for _ in 0..20 {
            stat.parse_into(&big).unwrap();
            meminfo.parse_into(&meminfo_text).unwrap();
            vigil_runtime::procfs::LoadAvg::parse(b"0.1 0.2 0.3 1/2 3").unwrap();
        }
    });
    assert_eq!(n, 0, "allocations while parsing");
}
