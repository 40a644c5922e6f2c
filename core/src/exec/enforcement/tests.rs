//! Who holds each limit, for hosts built by hand: no process, no cgroup.
use super::*;

#[test]
fn strength_labels_match_their_serialized_names() {
    for s in [
        Strength::NotRequested,
        Strength::Kernel,
        Strength::KernelPerProcess,
        Strength::Supervisor,
        Strength::NotEnforced,
    ] {
        assert_eq!(serde_json::to_value(s).ok(), Some(s.as_str().into()));
    }
}

#[test]
fn requested_values_read_the_way_people_write_them() {
    assert_eq!(size_text(64 << 20), "64M");
    assert_eq!(size_text(1 << 30), "1G");
    assert_eq!(size_text(512 << 10), "512K");
    assert_eq!(size_text(1000), "1000");
    assert_eq!(size_text(0), "0");
    assert_eq!(duration_text(Duration::from_secs(2)), "2s");
    assert_eq!(duration_text(Duration::from_millis(1500)), "1500ms");
    assert_eq!(duration_text(Duration::from_millis(0)), "0ms");
}

#[test]
fn only_requested_limits_not_held_are_reported_and_refused() {
    let limit = |name, requested: Option<&str>, strength, held| LimitEnforcement {
        limit: name,
        requested: requested.map(str::to_string),
        strength,
        held,
        mechanism: "m".into(),
        not_held_reason: (!held).then(|| "why".to_string()),
    };
    let mut e = Enforcement {
        mode: "none",
        placement: None,
        kill: String::new(),
        kill_complete: false,
        accounting: String::new(),
        limits: vec![
            limit("wall", None, Strength::NotRequested, true),
            limit("memory", Some("64M"), Strength::KernelPerProcess, false),
            limit("output", Some("1M"), Strength::Supervisor, true),
        ],
        run_as: None,
        notices: Vec::new(),
    };
    assert_eq!(
        e.not_held_messages(),
        vec!["memory limit 64M not held: why".to_string()]
    );
    assert!(e
        .refusal()
        .is_some_and(|r| r.contains("memory limit 64M not held: why")));
    e.limits.remove(1);
    assert!(e.not_held_messages().is_empty());
    assert_eq!(e.refusal(), None);
}

/// A host of `mode` with the given v1 controllers and cgroup2 controllers, nothing probed.
fn host(mode: CgroupMode, v1: &[&str], v2: &[&str]) -> Host {
    let dir = |c: &str| {
        v1.contains(&c)
            .then(|| std::path::PathBuf::from("/cg").join(c))
    };
    Host {
        mode,
        detected_mode: mode,
        is_root: true,
        placement: crate::exec::host::Placement::OwnGroup,
        own_group: None,
        supervisor_leaf: None,
        unified_parent: (mode != CgroupMode::None && mode != CgroupMode::V1)
            .then(|| "/cg/unified/vigil".into()),
        v2_controllers: v2.iter().map(|c| c.to_string()).collect(),
        v1: crate::exec::host::V1Parents {
            memory: dir("memory"),
            pids: dir("pids"),
            cpuacct: dir("cpuacct"),
            freezer: dir("freezer"),
        },
        cgroup_kill: mode != CgroupMode::None,
        cgroup_freeze: false,
        clone3: true,
        clone_into_cgroup: false,
        pidfd: true,
        openat2: true,
        vfork: true,
        close_range: true,
        mount_namespace: true,
        notes: vec!["pids: not mounted".into()],
    }
}

fn limits_all() -> Limits {
    Limits {
        timeout: Some(Duration::from_secs(2)),
        cpu_time: Some(Duration::from_millis(500)),
        memory_bytes: Some(64 << 20),
        pids: Some(16),
        max_output_bytes: 1 << 20,
        ..Limits::default()
    }
}

fn by_name<'e>(e: &'e Enforcement, name: &str) -> &'e LimitEnforcement {
    e.limits.iter().find(|l| l.limit == name).unwrap()
}

#[test]
fn hybrid_with_memsw_holds_memory_and_pids_in_the_kernel() {
    let h = host(CgroupMode::Hybrid, &["memory", "pids", "cpuacct"], &[]);
    let facts = HostFacts {
        host: &h,
        memsw: true,
        swap: true,
    };
    let e = facts.enforcement(&limits_all());
    assert!(e.kill_complete);
    assert_eq!(e.mode, "hybrid");
    for (name, strength) in [
        ("wall", Strength::Supervisor),
        ("cpu_time", Strength::Supervisor),
        ("memory", Strength::Kernel),
        ("pids", Strength::Kernel),
        ("output", Strength::Supervisor),
    ] {
        let l = by_name(&e, name);
        assert_eq!((l.strength, l.held), (strength, true), "{name}");
    }
    assert_eq!(by_name(&e, "memory").requested.as_deref(), Some("64M"));
    assert!(by_name(&e, "memory").mechanism.contains("memsw"));
    // cgroup2 counts CPU where it exists; cpuacct only on v1 alone.
    assert!(e.accounting.starts_with("cpu.stat usage_usec"));
    let v1 = host(CgroupMode::V1, &["memory", "pids", "cpuacct"], &[]);
    let v1_facts = HostFacts { host: &v1, ..facts };
    assert!(v1_facts
        .enforcement(&limits_all())
        .accounting
        .starts_with("cpuacct.usage"));
    assert!(e.not_held_messages().is_empty());
}

#[test]
fn v1_memory_without_memsw_is_not_held_only_where_there_is_swap() {
    let h = host(CgroupMode::V1, &["memory", "pids"], &[]);
    let swap = HostFacts {
        host: &h,
        memsw: false,
        swap: true,
    };
    let m = by_name(&swap.enforcement(&limits_all()), "memory").clone();
    assert_eq!((m.strength, m.held), (Strength::Kernel, false));
    assert!(m.not_held_reason.unwrap().contains("swapaccount=1"));
    let no_swap = HostFacts {
        swap: false,
        ..swap
    };
    let m = by_name(&no_swap.enforcement(&limits_all()), "memory").clone();
    assert_eq!((m.strength, m.held), (Strength::Kernel, true));
}

#[test]
fn without_a_group_the_kill_and_the_limits_it_ends_are_not_complete() {
    let h = host(CgroupMode::None, &[], &[]);
    let facts = HostFacts {
        host: &h,
        memsw: false,
        swap: false,
    };
    let e = facts.enforcement(&limits_all());
    assert!(!e.kill_complete);
    assert!(e.kill.contains(JOB_MARKER_ENV));
    let held = |n| (by_name(&e, n).strength, by_name(&e, n).held);
    assert_eq!(held("wall"), (Strength::Supervisor, false));
    assert_eq!(held("cpu_time"), (Strength::Supervisor, false));
    assert_eq!(held("memory"), (Strength::KernelPerProcess, false));
    assert_eq!(held("pids"), (Strength::NotEnforced, false));
    assert_eq!(held("output"), (Strength::Supervisor, true));
    assert_eq!(e.not_held_messages().len(), 4);
    assert!(e.refusal().is_some());
}

#[test]
fn a_missing_controller_is_named_with_the_notes_that_say_why() {
    let h = host(CgroupMode::Hybrid, &["memory"], &[]);
    let facts = HostFacts {
        host: &h,
        memsw: true,
        swap: false,
    };
    let e = facts.enforcement(&limits_all());
    let pids = by_name(&e, "pids");
    assert_eq!((pids.strength, pids.held), (Strength::NotEnforced, false));
    assert!(pids
        .not_held_reason
        .as_deref()
        .is_some_and(|r| r.contains("pids: not mounted")));
}

#[test]
fn limits_not_requested_are_labelled_so_and_count_as_held() {
    let h = host(CgroupMode::None, &[], &[]);
    let facts = HostFacts {
        host: &h,
        memsw: false,
        swap: false,
    };
    let e = facts.enforcement(&Limits::default());
    for name in ["wall", "cpu_time", "memory", "pids"] {
        let l = by_name(&e, name);
        assert_eq!(
            (l.strength, l.held),
            (Strength::NotRequested, true),
            "{name}"
        );
        assert_eq!((&l.requested, &l.not_held_reason), (&None, &None), "{name}");
    }
    assert_eq!(e.refusal(), None);
}
