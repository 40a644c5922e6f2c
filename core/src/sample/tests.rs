use super::*;

fn stat(text: &[u8]) -> ProcStat<8> {
    let mut s = ProcStat::<8>::default();
    s.parse_into(text).unwrap();
    s
}

fn times(cols: [u64; 10]) -> CpuTimes {
    let [user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice] = cols;
    CpuTimes {
        user,
        nice,
        system,
        idle,
        iowait,
        irq,
        softirq,
        steal,
        guest,
        guest_nice,
        columns: 10,
    }
}

#[test]
fn busy_idle_iowait_steal_share_one_denominator() {
    let prev = times([100, 0, 50, 1000, 10, 0, 0, 5, 0, 0]);
    let cur = times([160, 0, 70, 1100, 30, 0, 0, 25, 0, 0]);
    // deltas: user 60, system 20, idle 100, iowait 20, steal 20 => total 220
    let CpuDelta::Usage(u) = cpu_delta(&prev, &cur) else {
        panic!("expected usage")
    };
    assert_eq!(u.total_ticks, 220);
    assert_eq!(u.busy, Percent::ratio(100, 220).unwrap());
    assert_eq!(u.busy_no_steal, Percent::ratio(80, 220).unwrap());
    assert_eq!(u.iowait, Percent::ratio(20, 220).unwrap());
    assert_eq!(u.steal, Percent::ratio(20, 220).unwrap());
    assert_eq!(u.idle, Percent::ratio(100, 220).unwrap());
}

#[test]
fn guest_is_taken_out_of_user_and_counted_once() {
    let prev = times([100, 10, 0, 0, 0, 0, 0, 0, 40, 5]);
    let cur = times([200, 20, 0, 100, 0, 0, 0, 0, 90, 10]);
    // user' 60->110 (+50), nice' 5->10 (+5), idle +100, guest +50, guest_nice +5 => 210
    let CpuDelta::Usage(u) = cpu_delta(&prev, &cur) else {
        panic!()
    };
    assert_eq!(u.total_ticks, 210);
    assert_eq!(u.guest, Percent::ratio(55, 210).unwrap());
    assert_eq!(u.user, Percent::ratio(50, 210).unwrap());
}

#[test]
fn guest_greater_than_user_by_one_tick_saturates() {
    let prev = times([10, 0, 0, 0, 0, 0, 0, 0, 10, 0]);
    let cur = times([20, 0, 0, 10, 0, 0, 0, 0, 21, 0]);
    let CpuDelta::Usage(u) = cpu_delta(&prev, &cur) else {
        panic!()
    };
    // user' stays 0 (saturated), guest +11, idle +10 => 21
    assert_eq!(u.total_ticks, 21);
    assert_eq!(u.user, Percent(0));
    assert!(u.busy <= Percent::FULL);
}

#[test]
fn a_percent_is_checked_when_built_and_when_decoded() {
    assert_eq!(Percent::new(10_000), Some(Percent::FULL));
    assert_eq!(Percent::new(10_001), None);
    assert_eq!(Percent::new(u16::MAX), None);
    assert_eq!(Percent::new(2550).map(Percent::basis_points), Some(2550));
    assert_eq!(Percent::FULL.complement(), Percent::ZERO);
    assert_eq!(Percent::ratio(u64::MAX, 1), Some(Percent::FULL));
    // The encoding is the bare u16, as before the check: logged samples still decode.
    let mut buf = [0u8; 8];
    let bytes = postcard::to_slice(&Percent::FULL, &mut buf).unwrap();
    assert_eq!(
        bytes,
        postcard::to_slice(&10_000u16, &mut [0u8; 8]).unwrap()
    );
    assert_eq!(postcard::from_bytes::<Percent>(bytes), Ok(Percent::FULL));
    let too_big = postcard::to_slice(&10_001u16, &mut buf).unwrap();
    assert!(postcard::from_bytes::<Percent>(too_big).is_err());
    let whole = CpuUsage {
        busy: Percent::FULL,
        ..CpuUsage::default()
    };
    let mut buf = [0u8; 64];
    let bytes = postcard::to_slice(&whole, &mut buf).unwrap();
    assert_eq!(postcard::from_bytes::<CpuUsage>(bytes), Ok(whole));
    // `busy` comes first, as the varint 0x90 0x4e (10000): make it 10001.
    assert_eq!(bytes[..2], [0x90, 0x4e]);
    let mut raised = [0u8; 64];
    raised[..bytes.len()].copy_from_slice(bytes);
    raised[0] += 1;
    assert!(postcard::from_bytes::<CpuUsage>(&raised[..bytes.len()]).is_err());
}

#[test]
fn per_cpu_lines_out_of_id_order_give_no_per_cpu_data() {
    let prev = stat(b"cpu 4 0 4 8\ncpu0 1 0 1 2\ncpu2 1 0 1 2\ncpu1 2 0 2 4\n");
    let cur = stat(b"cpu 8 0 8 8\ncpu0 2 0 2 2\ncpu1 3 0 3 4\ncpu2 3 0 3 2\n");
    let mut sample = Sample::default();
    sample.set_cpu(Some(&prev), &cur, 1_000_000);
    assert!(sample.cpu.is_some(), "the aggregate line is unaffected");
    let ids: heapless::Vec<u16, 4> = sample.per_cpu.iter().map(|c| c.id).collect();
    assert_eq!(ids, [0, 1, 2]);
    assert!(sample.per_cpu.iter().all(|c| c.busy.is_none()));
    assert_ne!(sample.flags & flags::PER_CPU_REBASELINED, 0);
    // In order, the same counters give data.
    let prev = stat(b"cpu 4 0 4 8\ncpu0 1 0 1 2\ncpu1 2 0 2 4\ncpu2 1 0 1 2\n");
    sample.set_cpu(Some(&prev), &cur, 1_000_000);
    assert!(sample.per_cpu.iter().all(|c| c.busy.is_some()));
}

#[test]
fn two_identical_samples_give_no_data_not_nan() {
    let t = times([1, 2, 3, 4, 5, 6, 7, 8, 0, 0]);
    assert_eq!(cpu_delta(&t, &t), CpuDelta::NoData);
    let s = stat(b"cpu 1 2 3 4\ncpu0 1 2 3 4\n");
    let mut sample = Sample::default();
    sample.set_cpu(Some(&s), &s, 1_000_000);
    assert_eq!(sample.cpu, None);
    assert_eq!(sample.per_cpu[0].busy, None);
    assert_eq!(Percent::ratio(0, 0), None);
}

#[test]
fn iowait_decreasing_while_idle_increases_rebaselines() {
    let prev = times([10, 0, 10, 100, 50, 0, 0, 0, 0, 0]);
    let cur = times([20, 0, 20, 200, 40, 0, 0, 0, 0, 0]);
    assert_eq!(cpu_delta(&prev, &cur), CpuDelta::Rebaselined);
    // The next interval measures from the new baseline and is sane again.
    let next = times([30, 0, 30, 300, 45, 0, 0, 0, 0, 0]);
    let CpuDelta::Usage(u) = cpu_delta(&cur, &next) else {
        panic!()
    };
    assert_eq!(u.total_ticks, 125);
}

#[test]
fn cpu_unplugged_and_replugged_rebaselines_only_that_cpu() {
    let a = stat(b"cpu 40 0 40 400\ncpu0 10 0 10 100\ncpu1 10 0 10 100\ncpu2 20 0 20 200\n");
    // cpu1 went offline and came back: its counters restarted lower.
    let b = stat(b"cpu 60 0 60 600\ncpu0 20 0 20 200\ncpu1 1 0 1 5\ncpu2 30 0 30 300\n");
    let mut s = Sample::default();
    s.set_cpu(Some(&a), &b, 1_000_000_000);
    assert!(s.cpu.is_some());
    assert_eq!(s.per_cpu[0].busy, Some(Percent(1666)));
    assert_eq!(s.per_cpu[1], CpuBusy { id: 1, busy: None });
    assert_eq!(s.per_cpu[2].busy, Some(Percent(1666)));
    assert_ne!(s.flags & flags::PER_CPU_REBASELINED, 0);
    // And the interval after it measures cpu1 from its new baseline.
    let c = stat(b"cpu 80 0 80 800\ncpu0 30 0 30 300\ncpu1 11 0 11 15\ncpu2 40 0 40 400\n");
    let mut s2 = Sample::default();
    s2.set_cpu(Some(&b), &c, 1_000_000_000);
    assert_eq!(s2.per_cpu[1].busy, Some(Percent(6666)));
    assert_eq!(s2.flags & flags::PER_CPU_REBASELINED, 0);
}

#[test]
fn offline_cpu_gaps_keep_ids_aligned() {
    let a = stat(b"cpu 0 0 0 0\ncpu0 0 0 0 100\ncpu3 0 0 0 100\n");
    let b = stat(b"cpu 0 0 0 0\ncpu0 50 0 0 150\ncpu2 5 0 0 5\ncpu3 0 0 0 200\n");
    let mut s = Sample::default();
    s.set_cpu(Some(&a), &b, 1);
    let got: heapless::Vec<(u16, Option<Percent>), 4> =
        s.per_cpu.iter().map(|c| (c.id, c.busy)).collect();
    assert_eq!(
        got.as_slice(),
        &[(0, Some(Percent(5000))), (2, None), (3, Some(Percent(0)))]
    );
    assert_eq!(s.cpu, None, "aggregate did not move: no data");
}

#[test]
fn aggregate_comes_from_the_cpu_line_not_the_per_cpu_sum() {
    // The aggregate says 50 % busy; the per-CPU lines would sum to something else.
    let a = stat(b"cpu 0 0 0 0\ncpu0 0 0 0 0\ncpu1 0 0 0 0\n");
    let b = stat(b"cpu 100 0 0 100\ncpu0 90 0 0 10\ncpu1 90 0 0 10\n");
    let mut s = Sample::default();
    s.set_cpu(Some(&a), &b, 1);
    assert_eq!(s.cpu.unwrap().busy, Percent(5000));
    assert_eq!(s.per_cpu[0].busy, Some(Percent(9000)));
}

#[test]
fn first_sample_has_no_cpu_data_and_says_so() {
    let a = stat(b"cpu 1 0 1 10\ncpu0 1 0 1 10\n");
    let mut s = Sample::default();
    s.set_cpu(None, &a, 0);
    assert_eq!(s.cpu, None);
    assert_ne!(s.flags & flags::FIRST, 0);
    assert_eq!(s.per_cpu.len(), 1);
}

#[test]
fn more_cpus_than_the_sample_holds_are_counted() {
    let text = crate::procfs::stat::synthetic(300);
    let mut a = std::boxed::Box::new(ProcStat::<1024>::default());
    a.parse_into(&text).unwrap();
    let mut s = Sample::default();
    s.set_cpu(Some(&a), &a, 1);
    assert_eq!(s.per_cpu.len(), SAMPLE_CPUS_MAX);
    assert_eq!(s.per_cpu_dropped, 300 - SAMPLE_CPUS_MAX as u32);
    assert_ne!(s.flags & flags::PER_CPU_DROPPED, 0);
}

#[test]
fn ring_reads_latest_since_and_last() {
    let mut ring = SampleRing::<4>::new();
    assert!(ring.latest().is_none());
    for seq in 1..=6 {
        ring.push(Sample {
            seq,
            ..Sample::default()
        });
    }
    assert_eq!(ring.len(), 4);
    assert_eq!(ring.latest().unwrap().seq, 6);
    let since: heapless::Vec<u64, 4> = ring.since(4).map(|s| s.seq).collect();
    assert_eq!(since.as_slice(), &[5, 6]);
    let since_old: heapless::Vec<u64, 4> = ring.since(0).map(|s| s.seq).collect();
    assert_eq!(since_old.as_slice(), &[3, 4, 5, 6]);
    let last: heapless::Vec<u64, 4> = ring.last(3).map(|s| s.seq).collect();
    assert_eq!(last.as_slice(), &[4, 5, 6]);
    assert_eq!(ring.last(10).count(), 4);
    assert_eq!(ring.since(6).count(), 0);
}
