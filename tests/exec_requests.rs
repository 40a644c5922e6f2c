//! Requests: strict argument validation (unknown keys, wrong types, NUL bytes are refused, never
//! panicked on), start-up failures reported with their stage, and stdin/stdout pumped concurrently
//! without deadlock. Runs in mode `none` where no cgroup is needed, so it needs no privilege.
mod exec_support;

use proptest::prelude::*;
use serde_json::{json, Value};
use vigil_core::exec::capability::{CapabilityRegistry, JobContext};
use vigil_core::exec::host::CgroupMode;
use vigil_core::exec::job::Executor;
use vigil_core::exec::{Limits, ProcessSpec};
use vigil_core::model::JobStatus;

use exec_support::{config, limits};

fn executor_none() -> Executor {
    Executor::new(config(Some(CgroupMode::None))).expect("mode none is always available")
}

fn run(cap: &str, args: Value) -> vigil_core::exec::JobResult {
    let ex = executor_none();
    let l = limits(5_000);
    let root = std::env::temp_dir();
    let ctx = JobContext {
        executor: &ex,
        job_id: "req",
        limits: &l,
        root: &root,
        cancel: None,
    };
    CapabilityRegistry::builtin().run(cap, &ctx, &args)
}

#[test]
fn malformed_arguments_are_rejected_with_a_reason() {
    let cases = [
        ("shell", json!({})),
        ("shell", json!({"cmd": 5})),
        ("shell", json!({"cmd": "true", "timeout": 3})),
        ("shell", json!({"cmd": "a\u{0}b"})),
        ("shell", json!({"cmd": "true", "env": {"A=B": "x"}})),
        ("shell", json!({"cmd": "true", "env": {"A": 1}})),
        ("shell", json!({"cmd": "true", "env": ["A"]})),
        ("exec", json!({"argv": []})),
        ("exec", json!({"argv": "ls"})),
        ("exec", json!({"argv": ["ls", 3]})),
        ("exec", json!({"argv": [""]})),
        ("file.read", json!({"path": "x", "max_bytes": -1})),
        ("file.read", json!({"path": "x", "max_bytes": 1u64 << 40})),
        ("file.write", json!({"path": "x"})),
        (
            "file.write",
            json!({"path": "x", "content": "y", "append": "yes"}),
        ),
        ("nope", json!({})),
        ("shell", json!("echo hi")),
        ("shell", Value::Null),
    ];
    for (cap, args) in cases {
        let r = run(cap, args.clone());
        assert_eq!(r.status, JobStatus::Rejected, "{cap} {args}: {r:?}");
        assert!(
            r.error.as_deref().is_some_and(|e| !e.is_empty()),
            "{cap} {args}: no reason"
        );
    }
}

#[test]
fn start_up_failures_say_what_failed() {
    let r = run("exec", json!({"argv": ["definitely-not-a-program-vigil"]}));
    assert_eq!(r.status, JobStatus::Failed, "{r:?}");
    assert!(
        r.error.as_deref().is_some_and(|e| e.contains("not found")),
        "{r:?}"
    );
    let r = run("exec", json!({"argv": ["/etc/hostname"]}));
    assert_eq!(r.status, JobStatus::Failed, "{r:?}");
    assert!(
        r.error.as_deref().is_some_and(|e| e.contains("exec")),
        "{r:?}"
    );
    let r = run("shell", json!({"cmd": "true", "cwd": "no/such/dir/vigil"}));
    assert_eq!(r.status, JobStatus::Failed, "{r:?}");
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.contains("working directory")),
        "{r:?}"
    );
}

#[test]
fn large_stdin_and_stdout_are_pumped_concurrently_without_deadlock() {
    let ex = executor_none();
    // 4 MiB in, 4 MiB out: far beyond a pipe buffer in both directions at once.
    let input: Vec<u8> = (0..4u32 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let spec = ProcessSpec {
        argv: vec!["cat".into()],
        stdin: Some(input.clone()),
        ..ProcessSpec::default()
    };
    let l = Limits {
        max_output_bytes: 8 << 20,
        ..limits(20_000)
    };
    let r = ex.run_process("req-pump", &spec, &l);
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    assert!(!r.stdout.truncated);
    assert!(
        r.stdout.bytes == input,
        "output differs from input ({} vs {} bytes)",
        r.stdout.bytes.len(),
        input.len()
    );
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("cmd".to_string()),
                    Just("argv".to_string()),
                    Just("path".to_string()),
                    Just("env".to_string()),
                    Just("content".to_string()),
                    Just("max_bytes".to_string()),
                    ".{0,6}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    /// Any JSON as arguments of any capability: a plan or a refusal, never a panic, and no side
    /// effect (dry run only).
    #[test]
    fn dry_run_never_panics_on_arbitrary_arguments(args in arb_json(), cap in prop_oneof![Just("shell"), Just("exec"), Just("file.read"), Just("file.write")]) {
        let ex = executor_none();
        let l = Limits::default();
        let root = std::env::temp_dir();
        let ctx = JobContext { executor: &ex, job_id: "fuzz", limits: &l, root: &root, cancel: None };
        let report = CapabilityRegistry::builtin().get(cap).unwrap().dry_run(&ctx, &args);
        prop_assert!(report.valid == report.error.is_none());
        prop_assert!(report.valid == report.plan.is_some());
    }
}
