//! Redaction: secret-looking argument values never reach the log, and their values are
//! scrubbed from logged output and arguments.
use serde_json::{json, Value};

use super::RECORD_OUTPUT_BYTES_MAX;

/// Argument keys whose values never reach the log (matched case-insensitively, as substrings).
const SECRET_KEY_PARTS: &[&str] = &[
    "secret",
    "token",
    "password",
    "passwd",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "private_key",
    "credential",
];
const REDACTED: &str = "[REDACTED]";
/// Secret values shorter than this are not searched for in output (too many false hits).
const SECRET_VALUE_BYTES_MIN: usize = 4;

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// Replaces the values of secret-looking keys, at any depth, and collects the secret strings
/// so they can also be scrubbed from output.
pub fn redact_args(args: &Value, secrets: &mut Vec<String>) -> Value {
    fn collect(v: &Value, secrets: &mut Vec<String>) {
        match v {
            Value::String(s) if s.len() >= SECRET_VALUE_BYTES_MIN => secrets.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| collect(x, secrets)),
            Value::Object(o) => o.values().for_each(|x| collect(x, secrets)),
            _ => {}
        }
    }
    match args {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    if is_secret_key(k) {
                        collect(v, secrets);
                        (k.clone(), Value::String(REDACTED.into()))
                    } else {
                        (k.clone(), redact_args(v, secrets))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redact_args(v, secrets)).collect())
        }
        other => other.clone(),
    }
}

/// The head of `bytes`, at most [`RECORD_OUTPUT_BYTES_MAX`], with every secret value replaced.
pub(super) fn redact_output(bytes: &[u8], secrets: &[String]) -> (Vec<u8>, bool) {
    let mut out = scrub(bytes, secrets);
    // Scrubbed first, cut second: a secret across the cut would otherwise leave its head.
    let cut = out.len() > RECORD_OUTPUT_BYTES_MAX;
    out.truncate(RECORD_OUTPUT_BYTES_MAX);
    (out, cut)
}

/// Logged arguments longer than this are replaced by a placeholder holding their head.
const RECORD_ARGS_BYTES_MAX: usize = 64 * 1024;
/// Bytes of over-long arguments kept in the placeholder.
const RECORD_ARGS_HEAD_BYTES: usize = 4 * 1024;

/// Arguments as logged: the (redacted) JSON text when it fits, else a valid JSON placeholder
/// that says so and keeps the head, so the record is always JSON and always fits.
pub(super) fn bounded_args_json(args_json: String) -> String {
    if args_json.len() <= RECORD_ARGS_BYTES_MAX {
        return args_json;
    }
    let mut head = RECORD_ARGS_HEAD_BYTES;
    while !args_json.is_char_boundary(head) {
        head -= 1;
    }
    json!({
        "args_truncated": true,
        "bytes": args_json.len(),
        "head": &args_json[..head],
    })
    .to_string()
}

/// `bytes` with every secret value replaced by the redaction marker.
pub(super) fn scrub(bytes: &[u8], secrets: &[String]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for secret in secrets {
        let needle = secret.as_bytes();
        let mut i = 0;
        while let Some(at) = memchr::memmem::find(&out[i..], needle) {
            let start = i + at;
            out.splice(start..start + needle.len(), REDACTED.bytes());
            i = start + REDACTED.len();
        }
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_redacted_at_any_depth_and_their_values_scrubbed_from_output() {
        let args = json!({
            "cmd": "curl -H 'x: hunter22' example",
            "env": {"API_TOKEN": "hunter22", "PATH": "/bin"},
            "nested": [{"password": "pw-1234"}],
            "Authorization": "Bearer abc.def",
        });
        let mut secrets = Vec::new();
        let red = redact_args(&args, &mut secrets);
        assert_eq!(red["env"]["API_TOKEN"], REDACTED);
        assert_eq!(red["env"]["PATH"], "/bin");
        assert_eq!(red["nested"][0]["password"], REDACTED);
        assert_eq!(red["Authorization"], REDACTED);
        assert!(!red.to_string().contains("pw-1234"));
        let (out, cut) = redact_output(b"token=hunter22 and pw-1234!", &secrets);
        assert_eq!(out, b"token=[REDACTED] and [REDACTED]!");
        assert!(!cut);
        let big = vec![b'a'; RECORD_OUTPUT_BYTES_MAX + 10];
        let (out, cut) = redact_output(&big, &secrets);
        assert_eq!(out.len(), RECORD_OUTPUT_BYTES_MAX);
        assert!(cut);
    }
}
