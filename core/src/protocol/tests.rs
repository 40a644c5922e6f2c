//! Request parsing: every method with its parameters, and the spec's error codes.
use super::*;
use crate::exec::{OUTPUT_BYTES_DEFAULT, PIDS_MAX};
use std::time::Duration;

fn call(line: &str) -> Result<Request, Rejection> {
    parse_request(line.as_bytes())
}

#[test]
fn every_method_parses_with_its_parameters() {
    let r = call(r#"{"jsonrpc":"2.0","id":7,"method":"run","params":{"capability":"shell","args":{"cmd":"true"},"limits":{"timeout_ms":1500,"pids":64},"root":"/tmp","session":"s1","dry_run":true,"require_enforcement":true}}"#).unwrap();
    assert_eq!(r.id, Some(json!(7)));
    let Call::Run(run) = r.call else {
        panic!("not a run")
    };
    assert_eq!(run.capability, "shell");
    assert_eq!(run.limits.timeout, Some(Duration::from_millis(1500)));
    assert_eq!(run.limits.pids, Some(64));
    assert_eq!(run.limits.max_output_bytes, OUTPUT_BYTES_DEFAULT);
    assert_eq!(run.root, Some(PathBuf::from("/tmp")));
    assert!(run.dry_run);
    assert!(run.require_enforcement);
    for m in METHODS {
        let params = match *m {
            "run" => r#"{"capability":"shell"}"#,
            "jobs.get" | "jobs.cancel" => r#"{"job_id":1}"#,
            "sessions.get" => r#"{"id":"s"}"#,
            _ => "{}",
        };
        let line = format!(r#"{{"jsonrpc":"2.0","id":"x","method":"{m}","params":{params}}}"#);
        assert_eq!(call(&line).unwrap().call.method(), *m);
    }
    let ev = call(r#"{"jsonrpc":"2.0","id":1,"method":"events.read"}"#).unwrap();
    assert_eq!(
        ev.call,
        Call::EventsRead {
            cursor: 1,
            max: EVENTS_BATCH_DEFAULT,
            wait_ms: 0
        }
    );
}

#[test]
fn bad_requests_get_the_spec_codes_and_keep_the_id_when_readable() {
    let code_of = |l: &str| call(l).unwrap_err().error.code;
    assert_eq!(code_of("{not json"), code::PARSE_ERROR);
    assert_eq!(code_of("[]"), code::INVALID_REQUEST);
    assert_eq!(code_of("42"), code::INVALID_REQUEST);
    assert_eq!(
        code_of(r#"{"id":1,"method":"health"}"#),
        code::INVALID_REQUEST
    );
    assert_eq!(
        code_of(r#"{"jsonrpc":"2.0","id":{},"method":"health"}"#),
        code::INVALID_REQUEST
    );
    let unknown = call(r#"{"jsonrpc":"2.0","id":"a","method":"nope"}"#).unwrap_err();
    assert_eq!(unknown.id, json!("a"));
    assert_eq!(unknown.error.code, code::METHOD_NOT_FOUND);
    for bad in [
        r#"{"capability":1}"#,
        r#"{"capability":"shell","args":[]}"#,
        r#"{"capability":"shell","limits":{"timeout_ms":-1}}"#,
        r#"{"capability":"shell","limits":{"timeout_ms":1.5}}"#,
        r#"{"capability":"shell","limits":{"timeuot_ms":5}}"#,
        r#"{"capability":"shell","root":"relative"}"#,
        r#"{"capability":"shell","typo":1}"#,
        r#"{"capability":"shell","limits":{"max_output_bytes":1e30}}"#,
    ] {
        let line = format!(r#"{{"jsonrpc":"2.0","id":3,"method":"run","params":{bad}}}"#);
        let r = call(&line).unwrap_err();
        assert_eq!(r.error.code, code::INVALID_PARAMS, "{bad}");
        assert_eq!(r.id, json!(3));
    }
    assert_eq!(
        code_of(r#"{"jsonrpc":"2.0","id":1,"method":"jobs.get","params":{}}"#),
        code::INVALID_PARAMS
    );
    let big = vec![b' '; REQUEST_BYTES_MAX + 1];
    assert_eq!(
        parse_request(&big).unwrap_err().error.code,
        code::REQUEST_TOO_LARGE
    );
}

#[test]
fn a_request_without_id_is_a_notification() {
    let r = call(r#"{"jsonrpc":"2.0","method":"health"}"#).unwrap();
    assert_eq!(r.id, None);
    let bad = call(r#"{"jsonrpc":"2.0","method":"nope"}"#).unwrap_err();
    assert!(
        bad.notification,
        "an erroneous notification is not answered either"
    );
    let bad = call(r#"{"jsonrpc":"2.0","method":"jobs.get","params":{}}"#).unwrap_err();
    assert!(bad.notification);
    assert!(
        !call(r#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#)
            .unwrap_err()
            .notification
    );
    assert!(
        !call("{bad").unwrap_err().notification,
        "unreadable: answered, id null"
    );
    let r = call(r#"{"jsonrpc":"2.0","id":null,"method":"health"}"#).unwrap();
    assert_eq!(r.id, Some(Value::Null));
}

#[test]
fn list_paging_parameters_are_checked() {
    let list = |params: &str| {
        call(&format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"jobs.list","params":{params}}}"#
        ))
    };
    let Call::JobsList { page, .. } = list("{}").unwrap().call else {
        panic!("jobs.list");
    };
    assert_eq!(page, None, "no limit and no cursor: the whole list");
    let Call::JobsList { page, .. } = list(r#"{"cursor":7}"#).unwrap().call else {
        panic!("jobs.list");
    };
    assert_eq!(
        page,
        Some(Page {
            after: Some(7),
            limit: LIST_PAGE_DEFAULT
        })
    );
    let Call::JobsList { page, .. } = list(r#"{"limit":10,"cursor":null}"#).unwrap().call else {
        panic!("jobs.list");
    };
    assert_eq!(
        page,
        Some(Page {
            after: None,
            limit: 10
        })
    );
    for bad in [
        r#"{"limit":0}"#,
        r#"{"limit":1001}"#,
        r#"{"cursor":"x"}"#,
        r#"{"cursor":-1}"#,
    ] {
        let rejected = list(bad).unwrap_err();
        assert_eq!(rejected.error.code, code::INVALID_PARAMS, "{bad}");
    }
    let sessions =
        call(r#"{"jsonrpc":"2.0","id":1,"method":"sessions.list","params":{"cursor":"s1"}}"#);
    let Call::SessionsList { page } = sessions.unwrap().call else {
        panic!("sessions.list");
    };
    assert_eq!(page.map(|p| p.after), Some(Some("s1".to_string())));
}

#[test]
fn limits_beyond_what_the_kernel_or_a_deadline_takes_are_refused_by_name() {
    let run = |limits: &str| {
        call(&format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"run","params":{{"capability":"shell","limits":{limits}}}}}"#
        ))
    };
    let Ok(Request {
        call: Call::Run(ok),
        ..
    }) = run(&format!(
        r#"{{"pids":{PIDS_MAX},"timeout_ms":{TIMEOUT_MS_MAX}}}"#
    ))
    else {
        panic!("the largest pids and timeout are taken")
    };
    assert_eq!(ok.limits.pids, Some(PIDS_MAX));
    for (bad, name) in [
        (format!(r#"{{"pids":{}}}"#, PIDS_MAX + 1), "pids"),
        (format!(r#"{{"cpu_time_ms":{}}}"#, u64::MAX), "cpu_time_ms"),
        (
            format!(r#"{{"timeout_ms":{}}}"#, TIMEOUT_MS_MAX + 1),
            "timeout_ms",
        ),
    ] {
        let error = run(&bad).unwrap_err().error;
        assert_eq!(error.code, code::INVALID_PARAMS, "{bad}");
        assert!(error.message.starts_with(name), "{bad}: {}", error.message);
    }
}

#[test]
fn the_jobs_list_status_filter_is_a_known_state() {
    let r =
        call(r#"{"jsonrpc":"2.0","id":1,"method":"jobs.list","params":{"status":"timed_out"}}"#)
            .unwrap();
    let Call::JobsList { status, .. } = r.call else {
        panic!("not jobs.list: {:?}", r.call);
    };
    assert_eq!(
        status,
        Some(JobState::Ended(crate::model::JobStatus::TimedOut))
    );
    let r = call(r#"{"jsonrpc":"2.0","id":1,"method":"jobs.list","params":{"status":"done"}}"#)
        .unwrap_err();
    assert_eq!(r.error.code, code::INVALID_PARAMS);
    assert!(
        r.error.message.contains("\"done\"") && r.error.message.contains("running, completed"),
        "{}",
        r.error.message
    );
}

#[test]
fn run_takes_the_sandbox_and_its_paths_and_refuses_bad_ones() {
    let r = call(r#"{"jsonrpc":"2.0","id":1,"method":"run","params":{"capability":"shell","sandbox":"strict","allow_write":["/srv/out"],"deny_read":["/etc/secret","/home/u/.ssh"]}}"#).unwrap();
    let Call::Run(run) = r.call else {
        panic!("not a run")
    };
    assert_eq!(
        run.limits.sandbox.mode,
        Some(crate::exec::sandbox::SandboxMode::Strict)
    );
    assert_eq!(
        run.limits.sandbox.allow_write,
        vec![PathBuf::from("/srv/out")]
    );
    assert_eq!(run.limits.sandbox.deny_read.len(), 2);
    let r =
        call(r#"{"jsonrpc":"2.0","id":1,"method":"run","params":{"capability":"shell"}}"#).unwrap();
    let Call::Run(run) = r.call else {
        panic!("not a run")
    };
    assert_eq!(run.limits.sandbox.mode, None);
    for bad in [
        r#""sandbox":"none""#,
        r#""sandbox":1"#,
        r#""allow_write":["relative"]"#,
        r#""deny_read":"/not/an/array""#,
        r#""deny_read":[1]"#,
    ] {
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"run","params":{{"capability":"shell",{bad}}}}}"#
        );
        let e = call(&line).expect_err(bad);
        assert_eq!(e.error.code, code::INVALID_PARAMS, "{bad}");
    }
}

#[test]
fn run_takes_a_user_by_name_or_uid_and_refuses_what_names_no_user() {
    let user = |v: &str| {
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"run","params":{{"capability":"shell","user":{v}}}}}"#
        );
        call(&line).map(|r| match r.call {
            Call::Run(run) => run.limits.user,
            _ => None,
        })
    };
    use crate::exec::identity::UserSpec;
    assert_eq!(
        user(r#""nobody""#),
        Ok(Some(UserSpec::Name("nobody".into())))
    );
    assert_eq!(user(r#""65534""#), Ok(Some(UserSpec::Uid(65534))));
    assert_eq!(user("65534"), Ok(Some(UserSpec::Uid(65534))));
    assert_eq!(user("null"), Ok(None));
    for bad in [
        "\"\"",
        "-1",
        "4294967295",
        "4294967296",
        "1.5",
        "true",
        "[0]",
    ] {
        let e = user(bad).expect_err(bad);
        assert_eq!(e.error.code, code::INVALID_PARAMS, "{bad}");
        assert!(
            e.error.message.starts_with("user: "),
            "{bad}: {}",
            e.error.message
        );
    }
}
