//! `vigil mcp` end to end. The official MCP Python SDK drives it in both client modes
//! (tests/mcp/driver.py: legacy initialize, and auto, which discovers and speaks 2026-07-28):
//! tools and schemas, every tool, error results, progress, a call the client abandons, 8 calls
//! at once. Raw JSON lines (no SDK) check each era's wire format, malformed input, cancellation,
//! end of input, and `--socket` (jobs handed to a running `vigil serve`).
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{vigil_bin, vigil_output, TempDir};
use serde_json::{json, Value};

/// How long any one answer may take before the test fails instead of hanging.
const ANSWER_WAIT: Duration = Duration::from_secs(120);

const MODERN_META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}"#;

/// Whether the official SDK (`mcp` 2.x) can be imported; outside CI a missing SDK skips the
/// SDK tests with the reason, under CI it fails them.
fn python_sdk() -> bool {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import mcp.client, importlib.metadata as m; assert m.version('mcp').startswith('2.')",
        ])
        .output();
    if probe.is_ok_and(|o| o.status.success()) {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !ci,
        "CI must install the MCP Python SDK 2.x (.ci/run does: pip install 'mcp>=2,<3')"
    );
    eprintln!("skipped: the MCP Python SDK 2.x is not installed (pip install 'mcp>=2,<3')");
    false
}

/// Every line the server wrote on stdout is one JSON-RPC 2.0 message.
fn assert_only_protocol(stdout: &str) {
    assert!(!stdout.is_empty(), "the server wrote nothing");
    assert!(stdout.ends_with('\n'), "a partial line: {stdout:?}");
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON on stdout ({e}): {line:?}"));
        assert_eq!(v["jsonrpc"], "2.0", "not JSON-RPC: {line}");
        assert!(
            v.get("result").is_some() || v.get("error").is_some() || v.get("method").is_some(),
            "neither a response nor a notification: {line}"
        );
    }
}

/// `vigil job ID --json` on `data`.
fn job(data: &Path, id: u64) -> Value {
    let (code, out, err) = vigil_output(data, &["job", &id.to_string(), "--json"]);
    assert_eq!(code, 0, "vigil job {id}: {err}");
    serde_json::from_str(&out).unwrap()
}

fn sdk_drives_both_kinds_of_job(mode: &str, version: &str) {
    if !python_sdk() {
        return;
    }
    let dir = TempDir::new(&format!("mcp-sdk-{mode}"));
    let data = dir.path().join("data");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let stdout_log = dir.path().join("stdout.log");
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/driver.py");
    let out = Command::new("python3")
        .arg(&driver)
        .args([mode, vigil_bin().to_str().unwrap()])
        .args([&data, &root, &stdout_log])
        .env_remove("VIGIL_CGROUP_MODE")
        .output()
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the SDK driver failed:\n{stderr}");
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no report ({e}): {stderr}"));
    assert_eq!(report["mode"], mode);
    assert_eq!(report["protocol_version"], version, "{report}");
    assert!(report["progress_notifications"].as_u64().unwrap() >= 1);
    assert_eq!(report["concurrent_jobs"].as_array().unwrap().len(), 8);

    // The abandoned call's job was killed and the log says so (the server exits only after
    // every job it ran is recorded).
    let cancelled = report["cancelled_job"].as_u64().unwrap();
    let detail = job(&data, cancelled);
    assert_eq!(detail["status"], "interrupted", "{detail}");
    let error = detail["result"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("cancelled by the MCP client"), "{detail}");

    assert_only_protocol(&std::fs::read_to_string(&stdout_log).unwrap());
}

#[test]
fn the_python_sdk_drives_vigil_mcp_as_a_legacy_client() {
    sdk_drives_both_kinds_of_job("legacy", "2025-11-25");
}

#[test]
fn the_python_sdk_drives_vigil_mcp_as_a_2026_client() {
    sdk_drives_both_kinds_of_job("auto", "2026-07-28");
}

/// A `vigil mcp` child spoken to in raw lines. Everything it writes on stdout is kept and must
/// parse as JSON (a line that does not fails the test where it is read).
struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stdout: String,
    dir: TempDir,
}

impl Mcp {
    fn start(tag: &str, extra: &[&str]) -> Mcp {
        let dir = TempDir::new(tag);
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        let mut child = Command::new(vigil_bin())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("mcp")
            .arg("--root")
            .arg(dir.path().join("root"))
            .args(["--progress-interval", "50ms"])
            .args(extra)
            .env_remove("VIGIL_CGROUP_MODE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("start vigil mcp");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Mcp {
            stdin: child.stdin.take(),
            child,
            lines,
            stdout: String::new(),
            dir,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// The next message the server writes.
    fn recv(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(ANSWER_WAIT)
            .unwrap_or_else(|e| panic!("no message ({e}); stderr:\n{}", self.stderr()));
        self.stdout.push_str(&line);
        assert!(line.ends_with('\n'), "a partial line: {line:?}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    /// The response to `id`, skipping notifications (kept in `notes`).
    fn response(&mut self, id: &Value, notes: &mut Vec<Value>) -> Value {
        loop {
            let v = self.recv();
            if v.get("method").is_some() {
                notes.push(v);
                continue;
            }
            assert_eq!(&v["id"], id, "answers to other requests: {v}");
            return v;
        }
    }

    fn request(&mut self, line: &str) -> Value {
        let id = serde_json::from_str::<Value>(line).unwrap()["id"].clone();
        self.send(line);
        self.response(&id, &mut Vec::new())
    }

    /// Closes stdin and waits for the server to exit; then nothing more may have been written.
    fn finish(mut self) -> (std::process::ExitStatus, String, TempDir) {
        drop(self.stdin.take());
        let deadline = Instant::now() + ANSWER_WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "vigil mcp did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push_str(&line);
        }
        let stdout = std::mem::take(&mut self.stdout);
        let dir = TempDir::new("mcp-moved");
        let dir = std::mem::replace(&mut self.dir, dir);
        (status, stdout, dir)
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shell_call(id: u64, cmd: &str, meta: &str) -> String {
    let args = json!({"cmd": cmd, "timeout_ms": 60000});
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"shell","arguments":{args}{meta}}}}}"#
    )
}

#[test]
fn each_era_gets_its_own_wire_format_on_one_connection() {
    let mut mcp = Mcp::start("mcp-eras", &[]);
    // Legacy: the handshake, then requests without metadata, results without resultType.
    let init = mcp.request(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#,
    );
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "vigil");
    assert!(init["result"]["capabilities"]["tools"].is_object());
    mcp.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let list = mcp.request(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    assert_eq!(list["result"]["tools"].as_array().unwrap().len(), 7);
    assert!(list["result"].get("resultType").is_none(), "{list}");
    let run = mcp.request(&shell_call(3, "echo legacy", ""));
    assert_eq!(run["result"]["isError"], false, "{run}");
    assert_eq!(run["result"]["structuredContent"]["stdout"], "legacy\n");
    assert!(run["result"].get("resultType").is_none());

    // 2026-07-28: discover, then every request carries its version in _meta.
    let discover = mcp.request(&format!(
        r#"{{"jsonrpc":"2.0","id":"d","method":"server/discover","params":{{{MODERN_META}}}}}"#
    ));
    assert_eq!(
        discover["result"]["supportedVersions"],
        json!(["2026-07-28"])
    );
    assert_eq!(discover["result"]["resultType"], "complete");
    let list = mcp.request(&format!(
        r#"{{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{{{MODERN_META}}}}}"#
    ));
    assert_eq!(list["result"]["resultType"], "complete", "{list}");
    assert_eq!(list["result"]["cacheScope"], "private");
    assert_eq!(list["result"]["ttlMs"], 0);
    let run = mcp.request(&shell_call(
        5,
        "echo modern; exit 4",
        &format!(",{MODERN_META}"),
    ));
    let result = &run["result"];
    assert_eq!(result["resultType"], "complete", "{run}");
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "vigil"
    );
    assert_eq!(result["isError"], true);
    assert_eq!(result["structuredContent"]["status"], "failed");
    assert_eq!(result["structuredContent"]["exit_code"], 4);
    assert!(result["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("exit code 4"));
    // A revision the server does not speak: MCP's own error, naming those it does.
    let unsupported = mcp.request(
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2030-01-01"}}}"#,
    );
    assert_eq!(unsupported["error"]["code"], -32022, "{unsupported}");
    assert_eq!(unsupported["error"]["data"]["requested"], "2030-01-01");

    let (status, stdout, _dir) = mcp.finish();
    assert!(status.success(), "{status}");
    assert_only_protocol(&stdout);
}

#[test]
fn malformed_messages_get_errors_and_the_server_lives_on() {
    let mut mcp = Mcp::start("mcp-malformed", &[]);
    let cases: &[(&str, i64, Value)] = &[
        ("{this is not json", -32700, Value::Null),
        (
            "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
            -32600,
            Value::Null,
        ),
        ("\"a string\"", -32600, Value::Null),
        (
            r#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#,
            -32600,
            Value::Null,
        ),
        (r#"{"jsonrpc":"2.0","id":7}"#, -32600, json!(7)),
        (
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":"x"}"#,
            -32602,
            json!(8),
        ),
        (
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{}}"#,
            -32602,
            json!(9),
        ),
        (
            r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"nope"}}"#,
            -32602,
            json!(10),
        ),
        (
            r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"shell","arguments":{"cmd":"true","sandbox":1}}}"#,
            -32602,
            json!(11),
        ),
        (
            r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"job_get","arguments":{"job_id":-1}}}"#,
            -32602,
            json!(12),
        ),
        (
            r#"{"jsonrpc":"2.0","id":13,"method":"resources/read","params":{}}"#,
            -32601,
            json!(13),
        ),
    ];
    for (line, code, id) in cases {
        mcp.send(line);
        let answer = mcp.recv();
        assert_eq!(answer["error"]["code"], *code, "{line} -> {answer}");
        assert_eq!(&answer["id"], id, "{line} -> {answer}");
        let code = answer["error"]["code"].as_i64().unwrap();
        assert!(
            !(-32099..=-32000).contains(&code),
            "{code} is in MCP's reserved band"
        );
    }
    // Unanswerable notifications and bytes that are not text get nothing or an error, and
    // the server goes on.
    mcp.send(
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":424242}}"#,
    );
    mcp.send(r#"{"jsonrpc":"2.0","method":"notifications/unknown","params":7}"#);
    mcp.send("");
    mcp.stdin
        .as_mut()
        .unwrap()
        .write_all(b"\xff\xfe\x00\n")
        .unwrap();
    assert_eq!(mcp.recv()["error"]["code"], -32700);
    let ping = mcp.request(r#"{"jsonrpc":"2.0","id":"alive","method":"ping"}"#);
    assert_eq!(ping["result"], json!({}));
    let run = mcp.request(&shell_call(14, "echo fine", ""));
    assert_eq!(
        run["result"]["structuredContent"]["stdout"], "fine\n",
        "{run}"
    );
    let (status, stdout, _dir) = mcp.finish();
    assert!(status.success());
    assert_only_protocol(&stdout);
}

/// Sends a shell call with a progress token and waits for the notification naming its job.
/// Starts `exec sleep 300` as call `id` and returns its job id once the job runs: its id comes
/// in a progress note as soon as it can be cancelled, which is before it starts (a cancel then
/// rejects it), so this waits for its start record in the log.
fn start_long_job(mcp: &mut Mcp, id: u64) -> u64 {
    mcp.send(&shell_call(
        id,
        "exec sleep 300",
        r#","_meta":{"progressToken":"tok"}"#,
    ));
    let job = loop {
        let note = mcp.recv();
        assert_eq!(note["method"], "notifications/progress", "{note}");
        assert_eq!(note["params"]["progressToken"], "tok");
        if let Some(job) = note["params"]["_meta"]["vigil/job_id"].as_u64() {
            break job;
        }
    };
    let data = mcp.data_dir();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (code, out, _) = vigil_output(&data, &["job", &job.to_string(), "--json"]);
        let status = serde_json::from_str::<Value>(&out).unwrap_or(Value::Null)["status"].clone();
        if code == 0 && status == "running" {
            return job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {job} never ran: {out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_cancelled_call_kills_its_job_and_gets_no_answer() {
    let mut mcp = Mcp::start("mcp-cancel", &[]);
    let job_id = start_long_job(&mut mcp, 1);
    mcp.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"user pressed stop"}}"#);
    // The next answer is the ping's: the cancelled call is never answered.
    let mut notes = Vec::new();
    mcp.send(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
    let ping = mcp.response(&json!(2), &mut notes);
    assert_eq!(ping["result"], json!({}));
    let data = mcp.data_dir();
    let (status, stdout, _dir) = mcp.finish();
    assert!(status.success());
    assert_only_protocol(&stdout);
    assert!(
        !stdout
            .lines()
            .any(|l| l.contains(r#""id":1,"#) || l.ends_with(r#""id":1}"#)),
        "the cancelled call was answered: {stdout}"
    );
    let detail = job(&data, job_id);
    assert_eq!(detail["status"], "interrupted", "{detail}");
    assert!(detail["result"]["error"]
        .as_str()
        .unwrap()
        .contains("cancelled by the MCP client: user pressed stop"));
}

#[test]
fn the_end_of_input_cancels_the_jobs_still_running() {
    let mut mcp = Mcp::start("mcp-eof", &[]);
    let job_id = start_long_job(&mut mcp, 1);
    let data = mcp.data_dir();
    let (status, stdout, _dir) = mcp.finish();
    assert!(status.success());
    assert_only_protocol(&stdout);
    let detail = job(&data, job_id);
    assert_eq!(detail["status"], "interrupted", "{detail}");
    assert!(detail["result"]["error"]
        .as_str()
        .unwrap()
        .contains("closed the connection"));
}

#[test]
fn with_socket_jobs_go_to_the_running_server() {
    let dir = TempDir::new("mcp-socket");
    let socket = dir.path().join("vigil.sock");
    let server_data = dir.path().join("server-data");
    let mut server = Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(&server_data)
        .arg("serve")
        .arg("--socket")
        .arg(&socket)
        .args(["--sample-interval", "100ms"])
        .env_remove("VIGIL_CGROUP_MODE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let server = Kill(&mut server);
    let deadline = Instant::now() + ANSWER_WAIT;
    while !vigil_output(
        &server_data,
        &["call", "health", "--socket", socket.to_str().unwrap()],
    )
    .1
    .contains("\"ok\"")
    {
        assert!(Instant::now() < deadline, "no server");
        assert!(server.0.try_wait().unwrap().is_none(), "the server exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut mcp = Mcp::start("mcp-socket-client", &["--socket", socket.to_str().unwrap()]);
    let run = mcp.request(&shell_call(1, "echo via server", ""));
    let view = &run["result"]["structuredContent"];
    assert_eq!(view["stdout"], "via server\n", "{run}");
    let job_id = view["job_id"].as_u64().unwrap();
    let telemetry = mcp.request(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"telemetry","arguments":{}}}"#,
    );
    assert!(telemetry["result"]["structuredContent"]["memory"]["total_bytes"].as_u64() > Some(0));
    let got = mcp.request(&format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"job_get","arguments":{{"job_id":{job_id}}}}}}}"#
    ));
    assert_eq!(
        got["result"]["structuredContent"]["status"], "completed",
        "{got}"
    );
    let missing = mcp.request(
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"job_get","arguments":{"job_id":777777}}}"#,
    );
    assert_eq!(missing["result"]["isError"], true, "{missing}");
    let list = mcp.request(
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"jobs_list","arguments":{}}}"#,
    );
    let jobs = list["result"]["structuredContent"]["jobs"]
        .as_array()
        .unwrap();
    assert!(jobs.iter().any(|j| j["job_id"] == job_id), "{list}");
    // A cancelled call: its job is found on the server (by the call's session) and killed.
    mcp.send(&shell_call(
        6,
        "exec sleep 300",
        r#","_meta":{"progressToken":7}"#,
    ));
    let note = mcp.recv();
    assert_eq!(note["params"]["progressToken"], 7, "{note}");
    mcp.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":6}}"#);
    let mut notes = Vec::new();
    mcp.send(r#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#);
    assert_eq!(mcp.response(&json!(8), &mut notes)["result"], json!({}));
    let mcp_data = mcp.data_dir();
    // The server's answer to the cancelled call comes only when its job has ended; the
    // client's end of input waits for it.
    let (status, stdout, _dir) = mcp.finish();
    assert!(status.success());
    assert_only_protocol(&stdout);
    let (code, jobs, err) = vigil_output(&server_data, &["jobs", "--json"]);
    assert_eq!(code, 0, "{err}");
    let jobs: Vec<Value> = serde_json::from_str(&jobs).unwrap();
    let statuses: Vec<&str> = jobs.iter().map(|j| j["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["completed", "interrupted"], "{jobs:?}");
    assert!(jobs.iter().all(|j| j["session"].is_string()), "{jobs:?}");
    // The job is in the server's log, and `vigil mcp` opened no log of its own.
    assert_eq!(job(&server_data, job_id)["status"], "completed");
    assert!(!mcp_data.exists(), "vigil mcp --socket created a data dir");
    drop(server);
}

/// The code block of `lang` that follows `after` in the README.
fn readme_block(after: &str, lang: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find(after)
        .unwrap_or_else(|| panic!("README lacks {after:?}"));
    let rest = &readme[start..];
    let open = format!("```{lang}\n");
    let body = &rest[rest.find(&open).unwrap() + open.len()..];
    body[..body.find("```").unwrap()].to_string()
}

/// Starts `vigil ARGS` (the arguments a client configuration gives) on a scratch data dir,
/// lists the tools and closes: the configuration starts a working server.
fn check_registration(args: &[String], what: &str) {
    let dir = TempDir::new("mcp-readme");
    let mut child = Command::new(vigil_bin())
        .args(args)
        .env("VIGIL_DATA_DIR", dir.path().join("data"))
        .env_remove("VIGIL_CGROUP_MODE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n")
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: {args:?}: {stderr}");
    let answer: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}: {stderr}"));
    assert_eq!(
        answer["result"]["tools"].as_array().unwrap().len(),
        7,
        "{what}"
    );
}

/// A JSON array of strings.
fn strings(v: &Value) -> Vec<String> {
    let items = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    items
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_readme_registrations_start_a_working_server() {
    // Claude Code: everything after `--` is the server's command line.
    let sh = readme_block("Register it with Claude Code", "sh");
    let line = sh
        .lines()
        .find(|l| l.starts_with("claude mcp add"))
        .unwrap();
    let command: Vec<String> = line
        .split(" -- ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(command[0], "vigil");
    check_registration(&command[1..], "Claude Code");

    // Claude Desktop and Cursor.
    let json: Value = serde_json::from_str(&readme_block("Claude Desktop (", "json")).unwrap();
    let server = &json["mcpServers"]["vigil"];
    assert_eq!(server["command"], "vigil");
    check_registration(&strings(&server["args"]), "Claude Desktop");

    // Codex: TOML, read with Python's standard parser.
    let toml = readme_block("Codex (", "toml");
    let codex = common::toml_as_json(&toml);
    let server = &codex["mcp_servers"]["vigil"];
    assert_eq!(server["command"], "vigil");
    check_registration(&strings(&server["args"]), "Codex");
}

#[test]
fn progress_says_how_much_output_a_running_job_has_written() {
    let mut mcp = Mcp::start("mcp-progress", &[]);
    // The job writes 100 bytes, then waits until this test has seen them counted.
    mcp.send(&shell_call(
        1,
        "printf '%0100d' 0; while [ ! -e seen ]; do sleep 0.01; done",
        r#","_meta":{"progressToken":"p"}"#,
    ));
    let root = mcp.dir.path().join("root");
    let mut last = -1.0;
    loop {
        let note = mcp.recv();
        assert_eq!(note["method"], "notifications/progress", "{note}");
        let progress = note["params"]["progress"].as_f64().unwrap();
        assert!(progress > last, "progress went from {last} to {progress}");
        last = progress;
        let bytes = note["params"]["_meta"]["vigil/output_bytes"].as_u64();
        if bytes == Some(100) {
            assert!(
                note["params"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("100 bytes of output"),
                "{note}"
            );
            break;
        }
    }
    std::fs::write(root.join("seen"), "").unwrap();
    let mut notes = Vec::new();
    let done = mcp.response(&json!(1), &mut notes);
    assert_eq!(
        done["result"]["structuredContent"]["stdout"]
            .as_str()
            .unwrap()
            .len(),
        100
    );
    let (status, stdout, _dir) = mcp.finish();
    assert!(status.success());
    assert_only_protocol(&stdout);
}

#[test]
fn past_the_job_bound_and_queue_a_call_is_answered_busy() {
    let mut mcp = Mcp::start("mcp-busy", &["--max-jobs", "1", "--queue", "0"]);
    let job_id = start_long_job(&mut mcp, 1);
    let busy = mcp.request(&shell_call(2, "true", ""));
    assert_eq!(busy["error"]["code"], -31001, "{busy}");
    assert!(busy["error"]["message"].as_str().unwrap().contains("busy"));
    // Quick methods are still answered while the bound is taken.
    let ping = mcp.request(r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#);
    assert_eq!(ping["result"], json!({}));
    let data = mcp.data_dir();
    let (status, stdout, _dir) = mcp.finish();
    assert!(status.success());
    assert_only_protocol(&stdout);
    assert_eq!(job(&data, job_id)["status"], "interrupted");
}

#[test]
fn the_sandbox_flags_confine_every_job_of_the_server() {
    let outside = TempDir::new("mcp-sbx-out");
    let escaped = outside.path().join("escaped");
    let mut mcp = Mcp::start("mcp-sbx", &["--sandbox", "strict"]);
    mcp.request(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#,
    );
    mcp.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let cmd = format!(
        "echo x > {} 2>/dev/null; echo in > inside && cat inside",
        escaped.display()
    );
    let run = mcp.request(&shell_call(2, &cmd, ""));
    let content = &run["result"]["structuredContent"];
    assert_eq!(content["stdout"], "in\n", "{run}");
    let rules = content["enforcement"]["limits"].as_array().unwrap();
    let rule = |name: &str| {
        rules
            .iter()
            .find(|l| l["limit"] == name)
            .unwrap_or_else(|| panic!("no {name} in {rules:?}"))
    };
    assert_eq!(rule("sandbox")["requested"], "strict", "{run}");
    let write = rule("sandbox.write");
    assert_eq!(
        escaped.exists(),
        write["held"] == false,
        "the file lies outside the root exactly when the write rule is not held: {write}"
    );
    assert!(rule("sandbox.network")["held"].is_boolean());
    let (status, _, _) = mcp.finish();
    assert!(status.success());
}

#[test]
fn with_user_every_job_runs_as_that_user_file_tools_included() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        eprintln!("skipping: vigil must be root to run jobs as another user");
        return;
    }
    let mut mcp = Mcp::start("mcp-user", &["--user", "nobody"]);
    mcp.request(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#,
    );
    mcp.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let run = mcp.request(&shell_call(2, "id -u", ""));
    let content = &run["result"]["structuredContent"];
    assert_eq!(content["stdout"], "65534\n", "{run}");
    assert_eq!(content["enforcement"]["run_as"]["user"], "nobody", "{run}");
    // File tools too: with nobody's permissions, checked by the kernel.
    let root = mcp.dir.path().join("root");
    std::fs::write(root.join("x"), "for all\n").unwrap();
    std::fs::set_permissions(root.join("x"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(root.join("secret"), "root only\n").unwrap();
    std::fs::set_permissions(root.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let tool = |id: u32, name: &str, args: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{args}}}}}"#
        )
    };
    let read = mcp.request(&tool(3, "file_read", r#"{"path":"x"}"#));
    let content = &read["result"]["structuredContent"];
    assert_eq!(content["stdout"], "for all\n", "{read}");
    assert_eq!(content["enforcement"]["run_as"]["user"], "nobody", "{read}");
    for (id, name, args) in [
        (4, "file_read", r#"{"path":"secret"}"#),
        (5, "file_write", r#"{"path":"new","content":"x"}"#),
    ] {
        let r = mcp.request(&tool(id, name, args));
        assert_eq!(r["result"]["isError"], true, "{r}");
        let err = r["result"]["structuredContent"]["error"]
            .as_str()
            .unwrap_or_default();
        assert!(err.contains("ermission denied"), "{r}");
    }
    assert!(!root.join("new").exists());
    let (status, _, _) = mcp.finish();
    assert!(status.success());
}
