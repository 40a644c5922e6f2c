//! Tests of the runtime's C entry points.

use super::*;

#[test]
fn options_from_an_older_header_are_read_up_to_their_struct_size_only() {
    let mut full = vigil_runtime_options {
        struct_size: RUNTIME_OPTIONS_BYTES_V1 as u32,
        data_dir: c"/tmp/x".as_ptr(),
        proc_root: std::ptr::null(),
        sample_interval_ms: 7,
        job_root: std::ptr::null(),
        default_limits: std::ptr::null(),
        wal_segment_bytes: 12345,
        wal_retain_bytes: 678,
    };
    // SAFETY: `full` holds more than struct_size bytes.
    let Ok(read) = (unsafe { read_options(&full) }) else {
        panic!("a v1 struct_size is accepted")
    };
    assert_eq!(read.sample_interval_ms, 7);
    assert_eq!((read.wal_segment_bytes, read.wal_retain_bytes), (0, 0));
    assert_eq!(read.data_dir, full.data_dir);

    full.struct_size = std::mem::size_of::<vigil_runtime_options>() as u32;
    // SAFETY: as above.
    let Ok(read) = (unsafe { read_options(&full) }) else {
        panic!("the current struct_size is accepted")
    };
    assert_eq!(
        (read.wal_segment_bytes, read.wal_retain_bytes),
        (12345, 678)
    );

    full.struct_size = RUNTIME_OPTIONS_BYTES_V1 as u32 - 1;
    // SAFETY: as above.
    let refused = unsafe { read_options(&full) };
    assert_eq!(
        refused.err().map(|e| e.status),
        Some(VIGIL_E_INVALID_ARGUMENT)
    );
}

fn limits(struct_size: usize, require: u32) -> vigil_limits {
    vigil_limits {
        struct_size: struct_size as u32,
        timeout_ms: 1500,
        cpu_time_ms: 0,
        memory_bytes: 64 << 20,
        pids: 0,
        max_output_bytes: 0,
        require_enforcement: require,
        allow_write: std::ptr::null(),
        allow_write_count: 0,
        deny_read: std::ptr::null(),
        deny_read_count: 0,
        sandbox: VIGIL_SANDBOX_DEFAULT,
        user: std::ptr::null(),
    }
}

#[test]
fn sandbox_fields_are_read_only_from_callers_that_have_them() {
    let base = RunLimits::default();
    let paths = [c"/srv/out".as_ptr(), c"/srv/other".as_ptr()];
    let deny = [c"/home/u/.ssh".as_ptr()];
    let full = vigil_limits {
        sandbox: VIGIL_SANDBOX_STRICT,
        allow_write: paths.as_ptr(),
        allow_write_count: 2,
        deny_read: deny.as_ptr(),
        deny_read_count: 1,
        ..limits(std::mem::size_of::<vigil_limits>(), 0)
    };
    // SAFETY: a live struct of the size it declares, with live path arrays.
    let got = unsafe { limits_over(&full, &base) }.ok().unwrap();
    assert_eq!(got.limits.sandbox.mode, Some(SandboxMode::Strict));
    assert_eq!(got.limits.sandbox.allow_write.len(), 2);
    assert_eq!(
        got.limits.sandbox.deny_read,
        vec![PathBuf::from("/home/u/.ssh")]
    );
    // The struct of the previous version (56 bytes): the fields are not read.
    let old = vigil_limits {
        struct_size: LIMITS_REQUIRE_END.next_multiple_of(8) as u32,
        ..full
    };
    // SAFETY: as above.
    let got = unsafe { limits_over(&old, &base) }.ok().unwrap();
    assert_eq!(got.limits.sandbox.mode, None);
    assert!(got.limits.sandbox.allow_write.is_empty());
    let bad_mode = vigil_limits { sandbox: 4, ..full };
    // SAFETY: as above.
    assert!(unsafe { limits_over(&bad_mode, &base) }.is_err());
    let relative = [c"srv".as_ptr()];
    let bad_path = vigil_limits {
        allow_write: relative.as_ptr(),
        allow_write_count: 1,
        ..full
    };
    // SAFETY: as above.
    assert!(unsafe { limits_over(&bad_path, &base) }.is_err());
    let missing = vigil_limits {
        allow_write: std::ptr::null(),
        allow_write_count: 3,
        ..full
    };
    // SAFETY: as above (a NULL array with a count is refused before any read).
    assert!(unsafe { limits_over(&missing, &base) }.is_err());
}

#[test]
fn require_enforcement_is_read_only_from_callers_that_have_the_field() {
    let base = RunLimits::default();
    let full = limits(std::mem::size_of::<vigil_limits>(), 1);
    // SAFETY: a live struct of the size it declares.
    let got = unsafe { limits_over(&full, &base) }.ok().unwrap();
    assert!(got.require_enforcement);
    assert_eq!(got.limits.memory_bytes, Some(64 << 20));
    assert_eq!(got.limits.timeout, Some(Duration::from_millis(1500)));
    // A caller built before the field existed declares the shorter size: the field is
    // not read (whatever lies there), and the rest still is.
    let old = limits(LIMITS_V1_BYTES, 1);
    // SAFETY: as above (the struct is larger than it declares, which is allowed).
    let got = unsafe { limits_over(&old, &base) }.ok().unwrap();
    assert!(!got.require_enforcement);
    assert_eq!(got.limits.memory_bytes, Some(64 << 20));
    let short = limits(LIMITS_V1_BYTES - 8, 0);
    // SAFETY: as above.
    assert!(unsafe { limits_over(&short, &base) }.is_err());
}

#[test]
fn limits_out_of_range_are_refused_naming_the_field() {
    let base = RunLimits::default();
    let at_most = vigil_limits {
        timeout_ms: vigil_core::exec::TIMEOUT_MS_MAX,
        pids: vigil_core::exec::PIDS_MAX,
        ..limits(std::mem::size_of::<vigil_limits>(), 0)
    };
    // SAFETY: a live struct of the size it declares.
    let got = unsafe { limits_over(&at_most, &base) }.ok().unwrap();
    assert_eq!(got.limits.pids, Some(vigil_core::exec::PIDS_MAX));
    for (field, bad) in [
        (
            "pids",
            vigil_limits {
                pids: vigil_core::exec::PIDS_MAX + 1,
                ..at_most
            },
        ),
        (
            "pids",
            vigil_limits {
                pids: u64::MAX,
                ..at_most
            },
        ),
        (
            "timeout_ms",
            vigil_limits {
                timeout_ms: u64::MAX,
                ..at_most
            },
        ),
        (
            "cpu_time_ms",
            vigil_limits {
                cpu_time_ms: u64::MAX,
                ..at_most
            },
        ),
        (
            "max_output_bytes",
            vigil_limits {
                max_output_bytes: (64 << 20) + 1,
                ..at_most
            },
        ),
    ] {
        // SAFETY: as above.
        let Err(e) = (unsafe { limits_over(&bad, &base) }) else {
            panic!("{field} out of range is refused")
        };
        assert_eq!(e.status, VIGIL_E_INVALID_ARGUMENT);
        assert!(
            e.message.starts_with(&format!("limits: {field} ")),
            "{}",
            e.message
        );
    }
}

#[test]
fn a_runtime_default_requiring_enforcement_cannot_be_lowered_by_a_job() {
    let base = RunLimits {
        require_enforcement: true,
        ..RunLimits::default()
    };
    let job = limits(std::mem::size_of::<vigil_limits>(), 0);
    // SAFETY: a live struct of the size it declares.
    let got = unsafe { limits_over(&job, &base) }.ok().unwrap();
    assert!(got.require_enforcement);
    // SAFETY: NULL takes the default.
    let default = unsafe { limits_over(std::ptr::null(), &base) };
    assert!(default.ok().unwrap().require_enforcement);
}

#[test]
fn the_user_is_read_only_from_callers_that_have_the_field_and_bad_ones_are_refused() {
    use vigil_core::exec::identity::UserSpec;
    let base = RunLimits {
        limits: Limits {
            user: Some(UserSpec::Name("daemon".into())),
            ..Limits::default()
        },
        ..RunLimits::default()
    };
    let full = vigil_limits {
        user: c"nobody".as_ptr(),
        ..limits(std::mem::size_of::<vigil_limits>(), 0)
    };
    // SAFETY: a live struct of the size it declares, with a live string.
    let got = unsafe { limits_over(&full, &base) }.ok().unwrap();
    assert_eq!(got.limits.user, Some(UserSpec::Name("nobody".into())));
    let by_uid = vigil_limits {
        user: c"65534".as_ptr(),
        ..full
    };
    // SAFETY: as above.
    let got = unsafe { limits_over(&by_uid, &base) }.ok().unwrap();
    assert_eq!(got.limits.user, Some(UserSpec::Uid(65534)));
    // NULL, or a caller built before the field: the runtime default's.
    let unset = vigil_limits {
        user: std::ptr::null(),
        ..full
    };
    // SAFETY: as above.
    let got = unsafe { limits_over(&unset, &base) }.ok().unwrap();
    assert_eq!(got.limits.user, base.limits.user);
    let old = vigil_limits {
        struct_size: LIMITS_USER_END as u32 - 1,
        ..full
    };
    // SAFETY: as above (the struct is larger than it declares).
    let got = unsafe { limits_over(&old, &base) }.ok().unwrap();
    assert_eq!(got.limits.user, base.limits.user);
    for bad in [c"", c"4294967295"] {
        let refused = vigil_limits {
            user: bad.as_ptr(),
            ..full
        };
        // SAFETY: as above.
        let Err(e) = (unsafe { limits_over(&refused, &base) }) else {
            panic!("{bad:?} is refused")
        };
        assert_eq!(e.status, VIGIL_E_INVALID_ARGUMENT);
        assert!(e.message.starts_with("limits.user: "), "{}", e.message);
    }
}
