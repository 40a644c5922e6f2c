use super::*;

fn write_tree(dir: &Path, stat: &[u8]) {
    std::fs::create_dir_all(dir.join("pressure")).unwrap();
    std::fs::write(dir.join("stat"), stat).unwrap();
    std::fs::write(dir.join("meminfo"), b"MemTotal: 1000 kB\nMemFree: 500 kB\n").unwrap();
    std::fs::write(dir.join("loadavg"), b"1.00 0.50 0.25 1/100 42\n").unwrap();
    std::fs::write(
        dir.join("pressure/memory"),
        b"some avg10=1.00 avg60=0.00 avg300=0.00 total=5\n",
    )
    .unwrap();
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-sampler-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn samples_a_captured_tree_and_reports_missing_pressure_as_none() {
    let dir = temp_dir("tree");
    write_tree(&dir, b"cpu 10 0 10 80\ncpu0 10 0 10 80\n");
    let mut s = Sampler::open(&dir).unwrap();
    assert_eq!(s.pressure_available(), [false, true, false]);
    let first = s.sample().unwrap();
    assert_eq!(first.seq, 1);
    assert!(first.cpu.is_none());
    std::fs::write(dir.join("stat"), b"cpu 20 0 20 140\ncpu0 20 0 20 140\n").unwrap();
    let second = s.sample().unwrap();
    assert_eq!(second.seq, 2);
    assert_eq!(second.cpu.unwrap().busy.basis_points(), 2500);
    assert_eq!(second.memory.unwrap().available_bytes, 500 * 1024);
    assert!(second.memory.unwrap().available_estimated);
    assert_eq!(second.load.unwrap().load1_centi, 100);
    assert_eq!(second.pressure.memory.unwrap().some.avg10_centi, 100);
    assert!(second.pressure.cpu.is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_span_end_takes_its_deltas_against_the_span_start_not_the_periodic_reading() {
    use crate::sample::flags;
    let dir = temp_dir("span");
    // Since boot at the span's start: 40 busy of 200 ticks; ctxt 500 over the uptime.
    write_tree(
        &dir,
        b"cpu 10 0 10 80\ncpu0 10 0 10 80\nctxt 500\nprocs_running 3\n",
    );
    let mut s = Sampler::open(&dir).unwrap();
    let periodic = s.sample().unwrap();
    std::fs::write(
        dir.join("stat"),
        b"cpu 20 0 20 160\ncpu0 20 0 20 160\nctxt 500\nprocs_running 3\n",
    )
    .unwrap();
    let mut start = SpanStart::default();
    assert_eq!(start.timestamp_ns(), None);
    let mut before = Sample::default();
    s.sample_span_start(&mut start, &mut before).unwrap();
    assert_eq!(start.timestamp_ns(), Some(before.timestamp_ns));
    assert_eq!(before.flags & flags::CPU_SINCE_BOOT, flags::CPU_SINCE_BOOT);
    assert_eq!(before.cpu.unwrap().busy.as_f64(), 20.0);
    assert_eq!(before.cpu.unwrap().total_ticks, 200);
    assert_eq!(before.per_cpu[0].busy.unwrap().as_f64(), 20.0);
    assert_eq!(before.interval_ns, before.timestamp_ns, "since boot");
    assert!(before.ctxt_per_sec.is_some());
    assert_eq!(before.procs_running, Some(3));

    // During the span: 60 busy of 100 ticks; since the periodic reading 80 of 200. A
    // periodic sample in between must not move the span's baseline, nor the span the
    // periodic one.
    std::fs::write(dir.join("stat"), b"cpu 50 0 50 200\ncpu0 50 0 50 200\n").unwrap();
    let mid = s.sample().unwrap();
    assert_eq!(
        mid.cpu.unwrap().busy.as_f64(),
        40.0,
        "against the periodic reading"
    );
    let mut after = Sample::default();
    s.sample_span_end(&start, &mut after).unwrap();
    assert_eq!(after.cpu.unwrap().busy.as_f64(), 60.0);
    assert_eq!(after.cpu.unwrap().total_ticks, 100);
    assert_eq!(after.per_cpu[0].busy.unwrap().as_f64(), 60.0);
    assert_eq!(after.interval_ns, after.timestamp_ns - before.timestamp_ns);
    assert_eq!(after.flags & (flags::FIRST | flags::CPU_SINCE_BOOT), 0);
    assert!(periodic.seq < before.seq && before.seq < mid.seq && mid.seq < after.seq);
    let next = s.sample().unwrap();
    assert!(
        next.cpu.is_none(),
        "the periodic baseline is still `mid`'s reading"
    );
    assert_eq!(next.flags & flags::FIRST, 0);

    // An end with no start reading has no CPU part.
    let mut none = Sample::default();
    s.sample_span_end(&SpanStart::default(), &mut none).unwrap();
    assert!(none.cpu.is_none());
    assert_eq!(none.flags & flags::FIRST, flags::FIRST);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_span_start_is_made_without_stack_temporaries() {
    // Jobs run on connection threads with 256 KiB stacks; the table alone is ~100 KiB.
    let made = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(|| SpanStart::default().timestamp_ns())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(made, None);
}

#[test]
fn the_sampler_thread_has_a_sample_when_spawned_and_spans_share_its_sequence() {
    let dir = temp_dir("thread");
    write_tree(&dir, b"cpu 10 0 10 80\ncpu0 10 0 10 80\n");
    let thread = SamplerThread::spawn(
        Sampler::open(&dir).unwrap(),
        Duration::from_secs(3600),
        None,
    )
    .unwrap();
    let first = thread
        .telemetry()
        .latest()
        .expect("sampled before spawn returned");
    assert_eq!(first.seq, 1);
    let mut start = SpanStart::default();
    let before = thread.span_start(&mut start).unwrap();
    std::fs::write(dir.join("stat"), b"cpu 30 0 10 100\ncpu0 30 0 10 100\n").unwrap();
    let after = thread.span_end(&start).unwrap();
    assert_eq!((before.seq, after.seq), (2, 3));
    assert_eq!(after.cpu.unwrap().busy.as_f64(), 50.0);
    assert_eq!(
        thread.telemetry().latest().unwrap().seq,
        1,
        "spans stay out of the ring"
    );
    std::fs::write(dir.join("stat"), b"garbage\n").unwrap();
    assert!(thread.span_end(&start).is_none());
    assert!(thread.telemetry().last_error().unwrap().contains("stat"));
    drop(thread);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sampler_without_a_thread_samples_only_spans_and_publishes_the_start_it_is_asked_to() {
    let dir = temp_dir("no-thread");
    write_tree(&dir, b"cpu 10 0 10 80\ncpu0 10 0 10 80\n");
    let sampler = SamplerThread::without_thread(Sampler::open(&dir).unwrap());
    assert!(sampler.handle.is_none(), "no thread was started");
    assert!(
        sampler.telemetry().latest().is_none(),
        "no sample taken yet"
    );
    let mut start = SpanStart::default();
    let before = sampler.span_start_published(&mut start).unwrap();
    assert_eq!(sampler.telemetry().latest().unwrap().seq, before.seq);
    std::fs::write(dir.join("stat"), b"cpu 30 0 10 100\ncpu0 30 0 10 100\n").unwrap();
    let after = sampler.span_end(&start).unwrap();
    assert_eq!((before.seq, after.seq), (1, 2));
    assert_eq!(after.cpu.unwrap().busy.as_f64(), 50.0);
    assert_eq!(
        sampler.telemetry().history(10).len(),
        1,
        "only the published start: the end and nothing periodic stay out"
    );
    drop(sampler);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stat_file_larger_than_the_buffer_is_read_whole() {
    let dir = temp_dir("big");
    let text = crate::procfs::stat::synthetic(1024);
    assert!(text.len() > STAT_BUF_BYTES_INITIAL * 2);
    write_tree(&dir, &text);
    let mut s = Sampler::open(&dir).unwrap();
    let sample = s.sample().unwrap();
    assert_eq!(sample.per_cpu.len(), crate::sample::SAMPLE_CPUS_MAX);
    assert_eq!(
        sample.per_cpu_dropped,
        1024 - crate::sample::SAMPLE_CPUS_MAX as u32
    );
    assert!(s.read_stats().0 >= 2, "buffer grew");
    let grows = s.read_stats().0;
    s.sample().unwrap();
    assert_eq!(s.read_stats().0, grows, "no growth once big enough");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_damaged_file_is_an_error_naming_it_and_the_baseline_survives() {
    let dir = temp_dir("bad");
    write_tree(&dir, b"cpu 10 0 10 80\n");
    let mut s = Sampler::open(&dir).unwrap();
    s.sample().unwrap();
    std::fs::write(dir.join("stat"), b"cpu 1 x\n").unwrap();
    let err = s.sample().unwrap_err().to_string();
    assert!(err.contains("stat") && err.contains("line 1"), "{err}");
    std::fs::write(dir.join("stat"), b"cpu 20 0 20 160\n").unwrap();
    let ok = s.sample().unwrap();
    assert_eq!(ok.seq, 2, "the failed attempt consumed no sequence number");
    assert_eq!(ok.cpu.unwrap().busy.basis_points(), 2000);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_required_file_is_an_error() {
    let dir = temp_dir("missing");
    std::fs::create_dir_all(&dir).unwrap();
    let err = Sampler::open(&dir).err().unwrap().to_string();
    assert!(err.contains("stat"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn live_proc_samples_and_the_thread_fills_the_ring() {
    let sampler = Sampler::open(Path::new("/proc")).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(16);
    let thread = SamplerThread::spawn(sampler, Duration::from_millis(20), Some(tx)).unwrap();
    let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let second = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(second.seq, first.seq + 1);
    assert!(second.interval_ns > 0);
    assert!(second.memory.unwrap().total_bytes > 0);
    let t = Arc::clone(thread.telemetry());
    assert!(t.latest().unwrap().seq >= 2);
    assert!(t.since(1).iter().all(|s| s.seq > 1));
    assert!(t.last_error().is_none());
    drop(thread);
}
