//! The redaction corpus: each secret kind in each position a job can put it (arguments, an env
//! value holding a quote, backslash, tab or newline, the command string, argv, stdin, stdout,
//! stderr, an error message, and across the output cap's head and tail cut at every offset)
//! goes through a real job on a temporary data dir; then the raw bytes of every file of the
//! log are searched for the secret and for every 8-byte fragment of it, raw and JSON-escaped.
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::TempDir;
use serde_json::{json, Value};
use vigil_runtime::exec::Limits;
use vigil_runtime::runtime::{JobOutcome, JobRequest, Runtime, RuntimeOptions};

/// (text as a job would carry it, the part of it that is secret).
fn corpus() -> Vec<(String, String)> {
    let pem_body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj";
    vec![
        ("ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A".into(), String::new()),
        ("gho_Zy9xW8vU7tS6rQ5pO4nM3lK2jI1hG0fE9dC8".into(), String::new()),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv".into(), String::new()),
        ("AKIAIOSFODNN7EXAMPLE".into(), String::new()),
        ("ASIAJ7Q2W3E4R5T6Y7U8".into(), String::new()),
        ("xoxb-123456789012-abcdefghijABCD".into(), String::new()),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".into(),
            String::new(),
        ),
        (
            format!("-----BEGIN RSA PRIVATE KEY-----\n{pem_body}\n-----END RSA PRIVATE KEY-----"),
            pem_body.into(),
        ),
        ("Authorization: Bearer s3cr3tB3ar3rT0k3nValue".into(), "s3cr3tB3ar3rT0k3nValue".into()),
        ("curl -u alice:Sup3rS3cretPassw0rd https://example.com".into(), "Sup3rS3cretPassw0rd".into()),
        ("https://bob:UrlPassw0rdS3cret@example.com/r.git".into(), "UrlPassw0rdS3cret".into()),
    ]
    .into_iter()
    .map(|(text, secret)| {
        let secret = if secret.is_empty() { text.clone() } else { secret };
        (text, secret)
    })
    .collect()
}

/// A value held under a secret-named env key, with the characters JSON escapes.
const KNOWN: &str = "pa\"ss\\wo\trd\nK3pt-0ut-0f-the-log";

fn options(dir: &Path) -> RuntimeOptions {
    let mut o = RuntimeOptions::new(dir);
    o.sample_interval = Duration::from_millis(200);
    o
}

fn request(capability: &str, args: Value, root: &Path, max_output: Option<u64>) -> JobRequest {
    let mut limits = Limits {
        timeout: Some(Duration::from_secs(30)),
        ..Limits::default()
    };
    if let Some(cap) = max_output {
        limits.max_output_bytes = cap;
    }
    JobRequest {
        capability: capability.into(),
        args,
        limits,
        root: root.to_path_buf(),
        session: None,
        dry_run: false,
        require_enforcement: false,
    }
}

/// `s` quoted for /bin/sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Every 8-byte window of `secret`, raw and JSON-escaped.
fn fragments(secret: &str) -> Vec<Vec<u8>> {
    let escaped = Value::String(secret.into()).to_string();
    let escaped = &escaped[1..escaped.len() - 1];
    let mut out = Vec::new();
    for form in [secret, escaped] {
        out.extend(form.as_bytes().windows(8).map(<[u8]>::to_vec));
    }
    out
}

/// The raw bytes of every file under the data dir (the log's segments and whatever else).
fn log_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p.display().to_string(), b));
            }
        }
    }
    out
}

/// Every file under the data dir is searched in one pass per file for every fragment of every
/// secret (the segments are large and mostly zeros: a window holding a NUL is skipped whole).
fn assert_not_logged(data: &Path, secrets: &[String], what: &str) {
    let files = log_bytes(data);
    assert!(
        files.iter().any(|(_, b)| !b.is_empty()),
        "the log holds something"
    );
    let mut frags: HashMap<[u8; 8], &str> = HashMap::new();
    for s in secrets {
        for f in fragments(s) {
            frags.insert(f.try_into().unwrap(), s);
        }
    }
    for (name, bytes) in &files {
        let mut i = 0;
        while i + 8 <= bytes.len() {
            if bytes[i + 7] == 0 {
                i += 8;
                continue;
            }
            let w: [u8; 8] = bytes[i..i + 8].try_into().unwrap();
            if let Some(secret) = frags.get(&w) {
                panic!(
                    "{what}: fragment {:?} of {secret:?} is in {name} at {i}",
                    String::from_utf8_lossy(&w)
                );
            }
            i += 1;
        }
    }
}

fn live(out: &JobOutcome) -> String {
    let r = &out.result;
    format!(
        "{}{}{}",
        String::from_utf8_lossy(&r.stdout.bytes),
        String::from_utf8_lossy(&r.stderr.bytes),
        r.error.as_deref().unwrap_or("")
    )
}

/// The jobs that put `text` in each position; each returns what the caller saw (unredacted).
fn positions(rt: &Runtime, root: &Path, text: &str, env_key: &str) -> Vec<(&'static str, String)> {
    let mut seen = Vec::new();
    let env = json!({ env_key: text });
    let run = |cap: &str, args: Value| live(&rt.run(&request(cap, args, root, None)).unwrap());
    seen.push((
        "env value, stdout and stderr",
        run(
            "shell",
            json!({"cmd": "printf '%s\\n' \"$V\"; printf '%s\\n' \"$V\" >&2", "env": env_with(&env, "V", text)}),
        ),
    ));
    seen.push((
        "command string",
        run(
            "shell",
            json!({"cmd": format!("printf '%s' {}", sh_quote(text)), "env": env}),
        ),
    ));
    seen.push((
        "argv",
        run("exec", json!({"argv": ["/bin/echo", text], "env": env})),
    ));
    seen.push((
        "stdin to stdout",
        run("shell", json!({"cmd": "cat", "stdin": text, "env": env})),
    ));
    // Refused with an error that quotes the env entry's name.
    let mut bad_env = env.clone();
    bad_env[text] = json!(1);
    seen.push((
        "error message (refusal)",
        run("shell", json!({"cmd": "true", "env": bad_env})),
    ));
    if env_key != "DB_PWD" {
        // A file job has no env: only a shape can be known as a secret there.
        seen.push((
            "error message (file path)",
            run("file.read", json!({"path": format!("missing-{text}")})),
        ));
    }
    seen
}

fn env_with(env: &Value, key: &str, value: &str) -> Value {
    let mut e = env.clone();
    e[key] = json!(value);
    e
}

#[test]
fn no_secret_kind_in_any_position_reaches_the_log() {
    let dir = TempDir::new("redact-corpus");
    let data = dir.path().join("data");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let rt = Runtime::open(options(&data)).unwrap();
    let mut cases = corpus();
    cases.push((KNOWN.to_string(), KNOWN.to_string()));
    for (text, secret) in &cases {
        // The known value is a secret by its key; a shape is one by its form, under any key.
        let env_key = if text == KNOWN { "DB_PWD" } else { "PLAIN" };
        for (what, seen) in positions(&rt, &root, text, env_key) {
            // The caller's own copy shows the position was really exercised (where the job
            // or the error echoes it back).
            let debug = format!("{secret:?}");
            assert!(
                seen.contains(secret.as_str()) || seen.contains(&debug[1..debug.len() - 1]),
                "{what}: the job did not carry the secret: {seen:?}"
            );
        }
    }
    drop(rt);
    let secrets: Vec<String> = cases.into_iter().map(|(_, s)| s).collect();
    assert_not_logged(&data, &secrets, "positions");
}

/// A secret straddling the cap's cut: head side on stdout, tail side on stderr, at every
/// offset from wholly outside to wholly inside, one job per offset.
#[test]
fn a_secret_across_the_output_cap_leaves_no_fragment_at_any_offset() {
    let dir = TempDir::new("redact-cut");
    let data = dir.path().join("data");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let rt = Runtime::open(options(&data)).unwrap();
    let cap: usize = 64;
    let half = cap / 2;
    let mut cases = corpus();
    cases.push((KNOWN.to_string(), KNOWN.to_string()));
    for (text, _) in &cases {
        let env_key = if text == KNOWN { "DB_PWD" } else { "PLAIN" };
        for off in 0..=text.len() + 1 {
            // stdout: `off` bytes of the text fall inside the head (first `half` bytes).
            let head_fill = ".".repeat(half.saturating_sub(off));
            // stderr: `off` bytes of the text fall inside the tail (last `half` bytes).
            let tail_fill = ";".repeat(half.saturating_sub(off));
            let args = json!({
                "cmd": "printf '%s%s%s' \"$A\" \"$V\" \"$B\"; printf '%s%s%s' \"$B\" \"$V\" \"$C\" >&2",
                "env": {"A": head_fill, "B": ",".repeat(cap * 2), "C": tail_fill, env_key: text, "V": text},
            });
            let out = rt
                .run(&request("shell", args, &root, Some(cap as u64)))
                .unwrap();
            assert!(out.result.stdout.truncated && out.result.stderr.truncated);
        }
    }
    drop(rt);
    let secrets: Vec<String> = cases.into_iter().map(|(_, s)| s).collect();
    assert_not_logged(&data, &secrets, "cut");
}
