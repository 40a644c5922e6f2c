//! Properties of the /proc parsers and CPU deltas: arbitrary bytes never panic, and
//! well-formed input generated from arbitrary numbers parses back to those numbers.
use proptest::prelude::*;
use vigil_runtime::procfs::{LoadAvg, MemInfo, ProcStat, Psi};
use vigil_runtime::sample::{cpu_delta, CpuDelta, Percent, Sample};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_any_parser(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        vigil_runtime::fuzzing::telemetry::proc_stat(&data);
        vigil_runtime::fuzzing::telemetry::proc_meminfo(&data);
        vigil_runtime::fuzzing::telemetry::proc_loadavg(&data);
        vigil_runtime::fuzzing::telemetry::proc_pressure(&data);
        vigil_runtime::fuzzing::telemetry::cgroup_files(&data);
    }

    #[test]
    fn line_shaped_noise_never_panics(lines in proptest::collection::vec(
        ("(cpu[0-9]{0,3}|intr|ctxt|procs_running|MemTotal:|MemFree:|some|full)",
         proptest::collection::vec("[0-9a-z=. ]{0,24}", 0..12)), 0..16)) {
        let mut text = String::new();
        for (label, cols) in &lines {
            text.push_str(label);
            for c in cols { text.push(' '); text.push_str(c); }
            text.push('\n');
        }
        vigil_runtime::fuzzing::telemetry::proc_stat(text.as_bytes());
        vigil_runtime::fuzzing::telemetry::proc_meminfo(text.as_bytes());
        vigil_runtime::fuzzing::telemetry::proc_pressure(text.as_bytes());
    }

    #[test]
    fn generated_stat_parses_back_to_its_numbers(
        total in proptest::array::uniform10(any::<u64>()),
        cpus in proptest::collection::btree_map(0u32..4096, proptest::array::uniform10(any::<u64>()), 0..32),
    ) {
        let line = |label: String, v: &[u64; 10]| {
            let cols: Vec<String> = v.iter().map(u64::to_string).collect();
            format!("{label} {}\n", cols.join(" "))
        };
        let mut text = line("cpu ".into(), &total);
        for (id, v) in &cpus { text += &line(format!("cpu{id}"), v); }
        text += "ctxt 77\n";
        let mut s = Box::new(ProcStat::<64>::default());
        s.parse_into(text.as_bytes()).unwrap();
        prop_assert_eq!(s.total.user, total[0]);
        prop_assert_eq!(s.total.guest_nice, total[9]);
        prop_assert_eq!(s.cpus.len(), cpus.len());
        for (id, v) in &cpus {
            let c = s.cpu(*id).unwrap();
            prop_assert_eq!(c.times.idle, v[3]);
            prop_assert_eq!(c.times.steal, v[7]);
        }
        prop_assert_eq!(s.ctxt, Some(77));
    }

    #[test]
    fn deltas_are_bounded_or_no_data(
        a in proptest::array::uniform10(0u64..1u64 << 40),
        d in proptest::array::uniform10(0u64..1u64 << 20),
    ) {
        let mut prev = ProcStat::<1>::default();
        let mut cur = ProcStat::<1>::default();
        let fmt = |v: &[u64; 10]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
        let b: Vec<u64> = a.iter().zip(d.iter()).map(|(x, y)| x + y).collect();
        prev.parse_into(format!("cpu {}\n", fmt(&a)).as_bytes()).unwrap();
        cur.parse_into(format!("cpu {}\n", fmt(&b.clone().try_into().unwrap())).as_bytes()).unwrap();
        match cpu_delta(&prev.total, &cur.total) {
            CpuDelta::Usage(u) => {
                prop_assert!(u.busy <= Percent::FULL);
                prop_assert!(u.busy_no_steal <= u.busy);
                prop_assert!(u.total_ticks > 0);
            }
            CpuDelta::NoData => prop_assert!(d.iter().all(|&x| x == 0)),
            // guest growing faster than user moves user' backwards: a legitimate re-baseline.
            CpuDelta::Rebaselined => prop_assert!(d[8] > d[0] || d[9] > d[1]),
        }
        // Time running backwards in any plain counter re-baselines; it never yields usage.
        if d[2..8].iter().any(|&x| x > 0) {
            prop_assert_eq!(cpu_delta(&cur.total, &prev.total), CpuDelta::Rebaselined);
        }
        let mut s = Sample::default();
        s.set_cpu(Some(&prev), &cur, 1_000_000_000);
        prop_assert_eq!(s.cpu.is_some(), matches!(cpu_delta(&prev.total, &cur.total), CpuDelta::Usage(_)));
    }

    #[test]
    fn generated_meminfo_and_loadavg_parse_back(total in 1u64..1 << 40, free in 0u64..1 << 40, l1 in 0u32..100_000, run in any::<u32>()) {
        let mut m = MemInfo::default();
        m.parse_into(format!("MemTotal: {total} kB\nMemFree: {free} kB\nMemAvailable: {free} kB\n").as_bytes()).unwrap();
        prop_assert_eq!(m.total_bytes, total * 1024);
        prop_assert!(!m.available_estimated);
        let l = LoadAvg::parse(format!("{}.{:02} 0.00 0.00 {run}/9 1\n", l1 / 100, l1 % 100).as_bytes()).unwrap();
        prop_assert_eq!(l.load1_centi, l1);
        prop_assert_eq!(l.runnable, run);
        let p = Psi::parse(format!("some avg10={}.{:02} avg60=0.00 avg300=0.00 total={total}\n", l1 / 100, l1 % 100).as_bytes()).unwrap();
        prop_assert_eq!(p.some.avg10_centi, l1);
        prop_assert_eq!(p.full, None);
    }
}
