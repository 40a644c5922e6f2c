//! The Model Context Protocol's JSON-RPC layer, for both eras a client may speak:
//!
//! - legacy (2024-11-05 .. 2025-11-25): an `initialize` handshake negotiates the version once;
//!   requests carry no protocol metadata.
//! - modern (2026-07-28): no handshake; a client may probe `server/discover`; every request
//!   names its protocol version, client info and capabilities in `params._meta`, and every
//!   result carries `resultType`.
//!
//! The era is judged per request (a request whose `_meta` names a protocol version is
//! modern), so one connection serves either kind of client. Nothing here does I/O: a line in,
//! a parsed message or the error line to answer out.
use serde_json::{json, Map, Value};

/// Revisions reachable through the `initialize` handshake, oldest first.
pub const HANDSHAKE_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// Revisions that use the per-request envelope, oldest first.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];

/// `_meta` keys of the 2026-07-28 envelope.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// Error codes. JSON-RPC's own, MCP's unsupported-version code, and vigil's: the socket
/// protocol's server codes moved out of the band (-32000..-32099) MCP reserves for itself.
pub mod code {
    use vigil_core::protocol::code as rpc;
    pub use vigil_core::protocol::code::{
        INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR,
    };

    /// A code of the socket protocol as `vigil mcp` says it: out of MCP's reserved band.
    pub const fn out_of_band(code: i64) -> i64 {
        if code >= -32099 && code <= -32000 {
            code + 1000
        } else {
            code
        }
    }

    /// MCP (2026-07-28): the request's protocol version is not one the server speaks.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// Too many calls running and queued; retry later.
    pub const BUSY: i64 = out_of_band(rpc::BUSY);
    /// No such job.
    pub const NOT_FOUND: i64 = out_of_band(rpc::NOT_FOUND);
    /// The server is stopping.
    pub const SHUTTING_DOWN: i64 = out_of_band(rpc::SHUTTING_DOWN);
    /// A request line over the size cap.
    pub const REQUEST_TOO_LARGE: i64 = out_of_band(rpc::REQUEST_TOO_LARGE);
    /// The runtime failed (not the job: a job's failure is a tool result).
    pub const RUNTIME_ERROR: i64 = out_of_band(rpc::RUNTIME_ERROR);
    /// vigil's log is damaged; `data` says where.
    pub const LOG_DAMAGED: i64 = out_of_band(rpc::LOG_DAMAGED);
}

/// Which protocol era a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    Legacy,
    Modern,
}

/// A request to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Value,
    pub method: String,
    pub params: Map<String, Value>,
    pub era: Era,
    /// `params._meta.progressToken`, when the client wants progress notifications.
    pub progress_token: Option<Value>,
}

/// One line from the client, understood.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request(Request),
    Notification {
        method: String,
        params: Map<String, Value>,
    },
    /// Answer this error line (and nothing else).
    Reject(String),
    /// Nothing to do: a blank line, a response (this server sends no requests), or a
    /// malformed notification (never answered).
    Ignore,
}

/// A JSON-RPC error response line.
pub fn error_line(id: &Value, code: i64, message: &str, data: Option<Value>) -> String {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error}).to_string()
}

/// A notification line.
pub fn notification_line(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

/// The server's name and version, as both eras report it.
pub fn server_info() -> Value {
    json!({"name": "vigil", "title": "vigil capability runtime", "version": env!("CARGO_PKG_VERSION")})
}

/// A success response line; a modern request's result carries `resultType` and the server's
/// identity in `_meta`.
pub fn result_line(request: &Request, mut result: Value) -> String {
    if request.era == Era::Modern || request.method == "server/discover" {
        if let Value::Object(m) = &mut result {
            m.insert("resultType".into(), json!("complete"));
            let meta = m.entry("_meta").or_insert_with(|| json!({}));
            if let Value::Object(meta) = meta {
                meta.insert(META_SERVER_INFO.into(), server_info());
            }
        }
    }
    json!({"jsonrpc": "2.0", "id": request.id, "result": result}).to_string()
}

/// Parses one line (without its newline).
// Longer than 70 lines on purpose: one pass over a message in the order its members are checked
// (JSON, object, id, jsonrpc, method, params, era); each step answers or ignores a failure by the
// id read before it, so it stays one sequence.
pub fn parse(line: &[u8]) -> Message {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Message::Ignore;
    }
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Message::Reject(error_line(
                &Value::Null,
                code::PARSE_ERROR,
                &format!("parse error: {e}"),
                None,
            ))
        }
    };
    let invalid =
        |id: &Value, msg: &str| Message::Reject(error_line(id, code::INVALID_REQUEST, msg, None));
    let mut obj = match value {
        Value::Object(o) => o,
        Value::Array(_) => {
            return invalid(
                &Value::Null,
                "JSON-RPC batches are not part of MCP; send one message per line",
            )
        }
        _ => return invalid(&Value::Null, "a message must be a JSON object"),
    };
    // An id MCP allows (a string or an integer); anything else is answered with a null id.
    let id = match obj.remove("id") {
        None => None,
        Some(id @ Value::String(_)) => Some(id),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(Value::Number(n)),
        Some(_) => {
            return invalid(&Value::Null, "id must be a string or an integer");
        }
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc") != Some(&json!("2.0")) {
        return match id {
            Some(_) => invalid(&reply_id, "jsonrpc must be \"2.0\""),
            None => Message::Ignore,
        };
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        Some(_) => {
            return match id {
                Some(_) => invalid(&reply_id, "method must be a string"),
                None => Message::Ignore,
            }
        }
        // A response to a request of ours: this server sends none, so it is dropped.
        None if obj.contains_key("result") || obj.contains_key("error") => return Message::Ignore,
        None => return invalid(&reply_id, "a request needs a method"),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => {
            return match id {
                Some(_) => Message::Reject(error_line(
                    &reply_id,
                    code::INVALID_PARAMS,
                    "params must be an object",
                    None,
                )),
                None => Message::Ignore,
            }
        }
    };
    let Some(id) = id else {
        return Message::Notification { method, params };
    };
    let meta = params.get("_meta");
    if meta.is_some_and(|m| !m.is_object()) {
        return Message::Reject(error_line(
            &id,
            code::INVALID_PARAMS,
            "_meta must be an object",
            None,
        ));
    }
    let era = match meta.and_then(|m| m.get(META_PROTOCOL_VERSION)) {
        None => Era::Legacy,
        Some(Value::String(v)) if MODERN_VERSIONS.contains(&v.as_str()) => Era::Modern,
        Some(requested) => {
            let supported: Vec<&str> = MODERN_VERSIONS
                .iter()
                .chain(HANDSHAKE_VERSIONS)
                .copied()
                .collect();
            return Message::Reject(error_line(
                &id,
                code::UNSUPPORTED_PROTOCOL_VERSION,
                &format!(
                    "unsupported protocol version {requested}; this server speaks {} (and {} through initialize)",
                    MODERN_VERSIONS.join(", "),
                    HANDSHAKE_VERSIONS.join(", ")
                ),
                Some(json!({"supported": supported, "requested": requested})),
            ));
        }
    };
    let progress_token = meta
        .and_then(|m| m.get("progressToken"))
        .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
        .cloned();
    Message::Request(Request {
        id,
        method,
        params,
        era,
        progress_token,
    })
}

/// What every era says the server can do.
fn capabilities() -> Value {
    json!({"tools": {"listChanged": false}})
}

const INSTRUCTIONS: &str = "vigil runs shell commands, programs and file reads/writes as isolated \
jobs: each in its own cgroup under hard limits (wall time, CPU time, memory, processes, output), \
confined beneath the server's root, and recorded in a crash-safe log. A job's result says how it \
ended and who held each limit; jobs_list and job_get read the log.";

/// Answers the methods that need no runtime: the handshakes, `ping`, `tools/list`. `None` for
/// any other method (the caller's to answer).
pub fn answer_static(request: &Request) -> Option<Result<Value, (i64, String)>> {
    Some(Ok(match request.method.as_str() {
        "initialize" => {
            let offered = request
                .params
                .get("protocolVersion")
                .and_then(Value::as_str);
            // The client's revision when this server speaks it, else the newest handshake
            // revision (the client decides whether it can go on).
            let version = match offered {
                Some(v) if HANDSHAKE_VERSIONS.contains(&v) => v,
                _ => HANDSHAKE_VERSIONS[HANDSHAKE_VERSIONS.len() - 1],
            };
            json!({
                "protocolVersion": version,
                "capabilities": capabilities(),
                "serverInfo": server_info(),
                "instructions": INSTRUCTIONS,
            })
        }
        "server/discover" => json!({
            "supportedVersions": MODERN_VERSIONS,
            "capabilities": capabilities(),
            "instructions": INSTRUCTIONS,
            "cacheScope": "private",
            "ttlMs": 0,
        }),
        "ping" => json!({}),
        "tools/list" => {
            let mut r = json!({"tools": super::tools::list()});
            if request.era == Era::Modern {
                r["cacheScope"] = json!("private");
                r["ttlMs"] = json!(0);
            }
            r
        }
        "tools/call" => return None,
        other => {
            return Some(Err((
                code::METHOD_NOT_FOUND,
                format!("no method {other:?} (this server offers tools only)"),
            )))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(line: &str) -> Request {
        match parse(line.as_bytes()) {
            Message::Request(r) => r,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn rejected(line: &[u8]) -> Value {
        match parse(line) {
            Message::Reject(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn a_legacy_handshake_negotiates_a_version_the_server_speaks() {
        for (offered, agreed) in [
            ("2025-11-25", "2025-11-25"),
            ("2025-03-26", "2025-03-26"),
            ("2024-11-05", "2024-11-05"),
            ("2026-07-28", "2025-11-25"),
            ("1999-01-01", "2025-11-25"),
        ] {
            let r = request(&format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{offered}","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#
            ));
            assert_eq!(r.era, Era::Legacy);
            let result = answer_static(&r).unwrap().unwrap();
            assert_eq!(result["protocolVersion"], agreed, "offered {offered}");
            assert_eq!(result["capabilities"]["tools"]["listChanged"], false);
            assert_eq!(result["serverInfo"]["name"], "vigil");
            let line: Value = serde_json::from_str(&result_line(&r, result)).unwrap();
            assert_eq!(line["id"], 1);
            assert!(line["result"].get("resultType").is_none());
        }
    }

    #[test]
    fn a_modern_request_is_recognised_by_its_meta_and_answered_with_result_type() {
        let r = request(
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}"#,
        );
        assert_eq!(r.era, Era::Modern);
        let result = answer_static(&r).unwrap().unwrap();
        let line: Value = serde_json::from_str(&result_line(&r, result)).unwrap();
        assert_eq!(line["id"], "a");
        assert_eq!(line["result"]["resultType"], "complete");
        assert_eq!(line["result"]["cacheScope"], "private");
        assert_eq!(line["result"]["ttlMs"], 0);
        assert_eq!(line["result"]["_meta"][META_SERVER_INFO]["name"], "vigil");
        assert_eq!(line["result"]["tools"].as_array().unwrap().len(), 7);
    }

    #[test]
    fn discover_lists_the_modern_revisions() {
        let r = request(
            r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        let line: Value =
            serde_json::from_str(&result_line(&r, answer_static(&r).unwrap().unwrap())).unwrap();
        assert_eq!(line["result"]["supportedVersions"], json!(["2026-07-28"]));
        assert_eq!(line["result"]["resultType"], "complete");
        assert!(line["result"]["capabilities"]["tools"].is_object());
    }

    #[test]
    fn an_unknown_modern_version_names_those_supported() {
        let v = rejected(
            br#"{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01"}}}"#,
        );
        assert_eq!(v["id"], 9);
        assert_eq!(v["error"]["code"], code::UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(v["error"]["data"]["requested"], "2099-01-01");
        let supported = v["error"]["data"]["supported"].as_array().unwrap();
        assert!(supported.contains(&json!("2026-07-28")));
        assert!(supported.contains(&json!("2025-11-25")));
    }

    #[test]
    fn no_line_panics() {
        let pieces: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            "\"jsonrpc\":\"2.0\"",
            "\"id\":1",
            "\"id\":\"x\"",
            "\"id\":null",
            "\"method\":\"tools/call\"",
            "\"method\":\"initialize\"",
            "\"method\":\"server/discover\"",
            "\"params\":{}",
            "\"params\":{\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":7}}",
            "\"params\":{\"protocolVersion\":[]}",
            ",",
            ":",
            "null",
            "\u{0}",
            "\"\\ud800\"",
            "1e999",
        ];
        // Every sequence of up to three pieces, and each of those wrapped in braces.
        let mut lines = Vec::new();
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    lines.push(format!("{a}{b}{c}"));
                    lines.push(format!("{{{a},{b},{c}}}"));
                }
            }
        }
        let (mut requests, mut rejected) = (0, 0);
        for line in &lines {
            match parse(line.as_bytes()) {
                Message::Request(r) => {
                    requests += 1;
                    if let Some(Ok(result)) = answer_static(&r) {
                        let answer: Value = serde_json::from_str(&result_line(&r, result)).unwrap();
                        assert_eq!(answer["id"], r.id);
                    }
                }
                Message::Reject(text) => {
                    rejected += 1;
                    let answer: Value = serde_json::from_str(&text).unwrap();
                    assert!(answer["error"]["code"].is_i64(), "{line}: {text}");
                }
                Message::Notification { .. } | Message::Ignore => {}
            }
        }
        // The sweep reaches both the handlers and the refusals.
        assert!(requests > 0 && rejected > 0, "{requests} {rejected}");
    }

    #[test]
    fn progress_tokens_are_taken_from_meta() {
        let r = request(
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"shell","arguments":{"cmd":"true"},"_meta":{"progressToken":"p1"}}}"#,
        );
        assert_eq!(r.progress_token, Some(json!("p1")));
        assert_eq!(r.era, Era::Legacy);
        assert!(answer_static(&r).is_none());
    }

    #[test]
    fn malformed_lines_get_errors_and_notifications_none() {
        let cases: &[(&[u8], i64, Value)] = &[
            (b"{not json", code::PARSE_ERROR, Value::Null),
            (b"\xff\xfe", code::PARSE_ERROR, Value::Null),
            (b"[1,2]", code::INVALID_REQUEST, Value::Null),
            (b"42", code::INVALID_REQUEST, Value::Null),
            (
                br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                code::INVALID_REQUEST,
                Value::Null,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
                code::INVALID_REQUEST,
                Value::Null,
            ),
            (
                br#"{"jsonrpc":"1.0","id":4,"method":"ping"}"#,
                code::INVALID_REQUEST,
                json!(4),
            ),
            (
                br#"{"jsonrpc":"2.0","id":5,"method":7}"#,
                code::INVALID_REQUEST,
                json!(5),
            ),
            (
                br#"{"jsonrpc":"2.0","id":6}"#,
                code::INVALID_REQUEST,
                json!(6),
            ),
            (
                br#"{"jsonrpc":"2.0","id":7,"method":"ping","params":[1]}"#,
                code::INVALID_PARAMS,
                json!(7),
            ),
            (
                br#"{"jsonrpc":"2.0","id":8,"method":"ping","params":{"_meta":3}}"#,
                code::INVALID_PARAMS,
                json!(8),
            ),
        ];
        for (line, want, id) in cases {
            let v = rejected(line);
            assert_eq!(
                v["error"]["code"],
                *want,
                "{}",
                String::from_utf8_lossy(line)
            );
            assert_eq!(&v["id"], id, "{}", String::from_utf8_lossy(line));
        }
        for line in [
            &b""[..],
            b"   ",
            br#"{"jsonrpc":"2.0","method":"notifications/x","params":5}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            br#"{"jsonrpc":"1.0","method":"notifications/initialized"}"#,
        ] {
            assert_eq!(
                parse(line),
                Message::Ignore,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let r = request(r#"{"jsonrpc":"2.0","id":1,"method":"resources/list"}"#);
        assert_eq!(
            answer_static(&r).unwrap().unwrap_err().0,
            code::METHOD_NOT_FOUND
        );
    }
}
