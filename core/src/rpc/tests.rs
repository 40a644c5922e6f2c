//! `Service::handle_line` against a real runtime on a temporary data directory, no socket.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Service, ServiceConfig};
use crate::protocol::code;
use crate::runtime::{Runtime, RuntimeOptions};

/// A data directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("vigil-rpc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn service(dir: &TempDir) -> Service {
    let mut options = RuntimeOptions::new(dir.path().join("data"));
    options.sample_interval = Duration::from_millis(50);
    let runtime = Runtime::open(options).unwrap();
    Service::new(
        runtime,
        ServiceConfig {
            default_root: dir.path().to_path_buf(),
            socket_path: dir.path().join("vigil.sock"),
            max_jobs: 2,
            queue: 2,
            require_enforcement: false,
        },
    )
}

/// The answer to `line`, parsed; panics where there is none.
fn answer(service: &Service, line: &str) -> Value {
    let text = service.handle_line(line.as_bytes()).expect("an answer");
    assert!(!text.contains('\n'), "one line: {text}");
    serde_json::from_str(&text).unwrap()
}

fn request(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"].as_i64().unwrap_or_else(|| {
        panic!("an error answer: {answer}");
    })
}

#[test]
fn malformed_requests_get_their_errors() {
    let dir = TempDir::new("malformed");
    let s = service(&dir);
    let bad_json = answer(&s, "{not json");
    assert_eq!(error_code(&bad_json), code::PARSE_ERROR);
    assert_eq!(bad_json["id"], Value::Null);
    let invalid_utf8 = s.handle_line(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}");
    let invalid_utf8: Value = serde_json::from_str(&invalid_utf8.unwrap()).unwrap();
    assert_eq!(error_code(&invalid_utf8), code::PARSE_ERROR);
    let unknown = answer(&s, &request(7, "no.such.method", json!({})));
    assert_eq!(error_code(&unknown), code::METHOD_NOT_FOUND);
    assert_eq!(unknown["id"], 7);
    let wrong = answer(&s, &request(8, "jobs.get", json!({"job_id": "seven"})));
    assert_eq!(error_code(&wrong), code::INVALID_PARAMS);
    let unknown_param = answer(&s, &request(9, "health", json!({"verbose": true})));
    assert_eq!(error_code(&unknown_param), code::INVALID_PARAMS);
    let missing = answer(&s, &request(10, "jobs.get", json!({"job_id": 999})));
    assert_eq!(error_code(&missing), code::NOT_FOUND);
    // Blank lines and notifications (even bad ones) get no answer.
    assert_eq!(s.handle_line(b"  \t"), None);
    assert_eq!(
        s.handle_line(br#"{"jsonrpc":"2.0","method":"no.such"}"#),
        None
    );
    let errors = s
        .stats
        .request_errors
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(errors, 7, "every refused request is counted");
}

#[test]
fn health_and_a_telemetry_sample_answer() {
    let dir = TempDir::new("health");
    let s = service(&dir);
    let health = answer(&s, &request(1, "health", json!({})));
    assert_eq!(health["id"], 1);
    assert_eq!(health["result"]["status"], "ok");
    assert_eq!(health["result"]["max_jobs"], 2);
    assert_eq!(health["result"]["pid"], std::process::id());
    // The sampler's first sample may still be on its way on a loaded machine; until it is
    // there, the method says so rather than answering something made up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.runtime.telemetry().with_latest(|x| x.is_none()) {
        let early = answer(&s, &request(2, "telemetry.sample", json!({})));
        if early.get("error").is_some() {
            assert_eq!(error_code(&early), code::RUNTIME_ERROR);
        }
        assert!(Instant::now() < deadline, "no sample within 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sample = answer(&s, &request(3, "telemetry.sample", json!({})));
    let result = &sample["result"];
    assert!(
        result["memory"]["total_bytes"].as_u64().unwrap() > 0,
        "{sample}"
    );
    assert!(
        result["cpu"].is_object() || result["cpu"].is_null(),
        "{sample}"
    );
}

#[test]
fn run_of_bin_true_completes_and_is_listed() {
    let dir = TempDir::new("run");
    let s = service(&dir);
    let run = answer(
        &s,
        &request(
            5,
            "run",
            json!({"capability": "exec", "args": {"argv": ["/bin/true"]},
                   "limits": {"timeout_ms": 20000}}),
        ),
    );
    let result = &run["result"];
    assert_eq!(result["status"], "completed", "{run}");
    assert_eq!(result["exit_code"], 0);
    let job_id = result["job_id"].as_u64().unwrap();
    let detail = answer(&s, &request(6, "jobs.get", json!({"job_id": job_id})));
    assert_eq!(
        detail["result"]["result"]["status"], "completed",
        "{detail}"
    );
    let list = answer(&s, &request(7, "jobs.list", json!({})));
    let jobs = list["result"].as_array().expect("unpaged, an array");
    assert_eq!(jobs.len(), 1, "{list}");
    assert_eq!(jobs[0]["job_id"], job_id);
    assert_eq!(jobs[0]["status"], "completed");
    // The admission is released once the job is answered.
    assert_eq!(
        s.jobs_admitted.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn a_batch_answers_each_member_on_its_own_and_skips_notifications() {
    let dir = TempDir::new("batch");
    let s = service(&dir);
    let line = format!(
        "[{},{},{},{},{},{}]",
        request(1, "health", json!({})),
        // A notification, valid: runs, gets no entry.
        json!({"jsonrpc": "2.0", "method": "health"}),
        request(2, "no.such.method", json!({})),
        // Not a request object.
        json!(7),
        // A notification that is invalid: no entry either.
        json!({"jsonrpc": "2.0", "method": "no.such"}),
        request(3, "jobs.get", json!({"job_id": "x"})),
    );
    let answers = answer(&s, &line);
    let answers = answers.as_array().expect("an array");
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert_eq!(answers[0]["id"], 1);
    assert_eq!(answers[0]["result"]["status"], "ok");
    assert_eq!(answers[1]["id"], 2);
    assert_eq!(error_code(&answers[1]), code::METHOD_NOT_FOUND);
    assert_eq!(answers[2]["id"], Value::Null);
    assert_eq!(error_code(&answers[2]), code::INVALID_REQUEST);
    assert_eq!(answers[3]["id"], 3);
    assert_eq!(error_code(&answers[3]), code::INVALID_PARAMS);
    // Two health requests ran, the notification among them.
    let health = crate::protocol::METHODS
        .iter()
        .position(|m| *m == "health")
        .unwrap();
    let counted = s.stats.requests[health].load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(counted, 2);
}

#[test]
fn empty_oversized_unreadable_and_all_notification_batches() {
    let dir = TempDir::new("batch-edges");
    let s = service(&dir);
    // An empty array is one Invalid Request error, not an empty array.
    let empty = answer(&s, " [ ] ");
    assert_eq!(error_code(&empty), code::INVALID_REQUEST);
    assert_eq!(empty["id"], Value::Null);
    // [1,2]: each member is its own invalid request.
    let numbers = answer(&s, "[1,2]");
    let numbers = numbers.as_array().expect("an array");
    assert_eq!(numbers.len(), 2);
    assert!(numbers
        .iter()
        .all(|a| error_code(a) == code::INVALID_REQUEST));
    // A batch inside a batch is not a request.
    let nested = answer(&s, &format!("[[{}]]", request(1, "health", json!({}))));
    assert_eq!(error_code(&nested[0]), code::INVALID_REQUEST);
    // Over the bound: refused whole, nothing runs.
    let many = vec![request(1, "health", json!({})); crate::protocol::BATCH_REQUESTS_MAX + 1];
    let too_many = answer(&s, &format!("[{}]", many.join(",")));
    assert_eq!(error_code(&too_many), code::INVALID_REQUEST);
    let at_bound = vec![request(1, "health", json!({})); crate::protocol::BATCH_REQUESTS_MAX];
    let at_bound = answer(&s, &format!("[{}]", at_bound.join(",")));
    assert_eq!(
        at_bound.as_array().map(Vec::len),
        Some(crate::protocol::BATCH_REQUESTS_MAX)
    );
    // Not JSON: one parse error.
    let broken = answer(&s, r#"[{"jsonrpc":"2.0","method":"health"},"#);
    assert_eq!(error_code(&broken), code::PARSE_ERROR);
    // Only notifications: nothing at all to write.
    let quiet = json!([
        {"jsonrpc": "2.0", "method": "health"},
        {"jsonrpc": "2.0", "method": "no.such"},
    ]);
    assert_eq!(s.handle_line(quiet.to_string().as_bytes()), None);
}

#[test]
fn sessions_are_paged_by_their_id() {
    let dir = TempDir::new("sessions-pages");
    let s = service(&dir);
    let mut created = Vec::new();
    for i in 0..5 {
        let session = answer(
            &s,
            &request(i, "sessions.create", json!({"meta": {"n": i}})),
        );
        created.push(session["result"]["session"].as_str().unwrap().to_string());
    }
    created.sort();
    // Unpaged: the whole array, as before paging existed.
    let all = answer(&s, &request(9, "sessions.list", json!({})));
    assert_eq!(all["result"].as_array().map(Vec::len), Some(5));
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        let params = json!({"limit": 2, "cursor": cursor});
        let page = answer(&s, &request(10, "sessions.list", params));
        let result = &page["result"];
        let entries = result["sessions"].as_array().expect("a page");
        assert!(entries.len() <= 2);
        seen.extend(
            entries
                .iter()
                .map(|e| e["session"].as_str().unwrap().to_string()),
        );
        pages += 1;
        cursor = result["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
        assert!(pages < 10, "the cursor moves on");
    }
    assert_eq!(seen, created);
    assert_eq!(pages, 3);
    let zero = answer(&s, &request(11, "sessions.list", json!({"limit": 0})));
    assert_eq!(error_code(&zero), code::INVALID_PARAMS);
    let bad_cursor = answer(&s, &request(12, "jobs.list", json!({"cursor": "s1"})));
    assert_eq!(error_code(&bad_cursor), code::INVALID_PARAMS);
}
