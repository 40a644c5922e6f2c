//! The tools `vigil mcp` offers: their schemas and annotations, and the checking of a call's
//! arguments against the same input schema the client is shown (so the two cannot drift).
use serde_json::{json, Map, Value};

/// What a validated `tools/call` asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolCall {
    /// A job: capability name (`shell`, `exec`, `file.read`, `file.write`), its arguments,
    /// and the limits object (possibly empty).
    Job {
        capability: &'static str,
        args: Map<String, Value>,
        limits: Map<String, Value>,
    },
    Telemetry,
    JobsList {
        session: Option<String>,
        status: Option<String>,
    },
    JobGet {
        job_id: u64,
    },
}

/// The limit arguments: name, least value, description.
const LIMITS: &[(&str, u64, &str)] = &[
    (
        "timeout_ms",
        1,
        "Wall-clock limit in milliseconds; every process of the job is killed when it passes.",
    ),
    (
        "cpu_time_ms",
        1,
        "CPU-time budget of all the job's processes together, in milliseconds.",
    ),
    (
        "memory_bytes",
        1,
        "Memory limit of the job in bytes (no swap); past it the job is OOM-killed.",
    ),
    ("pids", 1, "Most processes and threads alive at once."),
    (
        "max_output_bytes",
        0,
        "Output kept per stream (head and tail), in bytes.",
    ),
];

/// The arguments every process tool takes beside its own: cwd, env, stdin and the limits.
fn process_properties() -> Map<String, Value> {
    let mut m: Map<String, Value> = [
        ("cwd", json!({"type": "string", "description": "Working directory, relative to the server's root."})),
        ("env", json!({"type": "object", "additionalProperties": {"type": "string"}, "description": "Environment variables for the job (nothing of the server's own environment is passed)."})),
        ("stdin", json!({"type": "string", "description": "Text fed to the job's standard input (default: empty)."})),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (name, minimum, description) in LIMITS {
        m.insert(
            (*name).to_string(),
            json!({"type": "integer", "minimum": minimum, "description": description}),
        );
    }
    m
}

fn input_schema(mut properties: Map<String, Value>, own: Value, required: &[&str]) -> Value {
    if let Value::Object(own) = own {
        properties.extend(own);
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// The job run object (`vigil run --json`): the output schema of the job tools.
fn run_output_schema() -> Value {
    let int_or_null = json!({"type": ["integer", "null"]});
    let str_or_null = json!({"type": ["string", "null"]});
    json!({
        "type": "object",
        "properties": {
            "job_id": int_or_null,
            "capability": {"type": "string"},
            "status": {"type": "string", "enum": ["completed", "failed", "timed_out", "oom_killed", "rejected", "interrupted"]},
            "exit_code": int_or_null,
            "signal": int_or_null,
            "stdout": {"type": "string"},
            "stderr": {"type": "string"},
            "stdout_truncated": {"type": "boolean"},
            "stderr_truncated": {"type": "boolean"},
            "wall_ms": {"type": "integer"},
            "cpu_usage_us": int_or_null,
            "memory_peak_bytes": int_or_null,
            "lsn": int_or_null,
            "error": str_or_null,
        },
        "required": ["job_id", "capability", "status", "exit_code", "signal", "stdout", "stderr", "wall_ms", "error"],
    })
}

/// The `tools` array of `tools/list`.
// Longer than 70 lines on purpose: the `tools` array written out as one JSON literal, tool by tool,
// so it reads as a client receives it; each tool is a few schema lines.
pub fn list() -> Value {
    let process_hints = json!({"readOnlyHint": false, "destructiveHint": true, "idempotentHint": false, "openWorldHint": true});
    let read_hints = json!({"readOnlyHint": true, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false});
    json!([
        {
            "name": "shell",
            "title": "Run a shell command",
            "description": "Runs `/bin/sh -c cmd` as an isolated job under vigil: its own cgroup, the limits given (and the server's defaults), confined to the server's root, recorded in vigil's log. The result is the job's run object (status, exit code, stdout, stderr, usage, who held each limit); a job that fails, times out, is OOM-killed or is refused is an error result that says why.",
            "inputSchema": input_schema(process_properties(), json!({"cmd": {"type": "string", "description": "The command line, run by /bin/sh -c."}}), &["cmd"]),
            "outputSchema": run_output_schema(),
            "annotations": process_hints,
        },
        {
            "name": "exec",
            "title": "Run a program",
            "description": "Runs a program with its arguments (no shell) as an isolated job under vigil, like `shell`.",
            "inputSchema": input_schema(process_properties(), json!({"argv": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "The program and its arguments; a program without a slash is looked up in PATH."}}), &["argv"]),
            "outputSchema": run_output_schema(),
            "annotations": process_hints,
        },
        {
            "name": "file_read",
            "title": "Read a file",
            "description": "Reads a regular file beneath the server's root (paths that escape it, by `..` or symlinks, are refused). The content is the job's stdout.",
            "inputSchema": input_schema(Map::new(), json!({
                "path": {"type": "string", "description": "Path relative to the server's root."},
                "max_bytes": {"type": "integer", "minimum": 0, "description": "Read at most this many bytes."},
                "allow_hardlinks": {"type": "boolean", "description": "Allow a file with more than one hard link (refused by default: a link may share its file with one outside the root)."},
            }), &["path"]),
            "outputSchema": run_output_schema(),
            "annotations": read_hints,
        },
        {
            "name": "file_write",
            "title": "Write a file",
            "description": "Replaces (atomically) or extends a regular file beneath the server's root; paths that escape the root are refused.",
            "inputSchema": input_schema(Map::new(), json!({
                "path": {"type": "string", "description": "Path relative to the server's root."},
                "content": {"type": "string", "description": "The text to write."},
                "append": {"type": "boolean", "description": "Append instead of replacing the file."},
                "allow_hardlinks": {"type": "boolean", "description": "Allow a file with more than one hard link (refused by default: a link may share its file with one outside the root)."},
            }), &["path", "content"]),
            "outputSchema": run_output_schema(),
            "annotations": {"readOnlyHint": false, "destructiveHint": true, "idempotentHint": false, "openWorldHint": false},
        },
        {
            "name": "telemetry",
            "title": "Machine telemetry",
            "description": "The latest telemetry sample of this machine: CPU (busy, iowait, steal, per CPU), memory, load, pressure.",
            "inputSchema": input_schema(Map::new(), json!({}), &[]),
            "outputSchema": {"type": "object", "properties": {"cpu": {"type": "object"}, "memory": {"type": "object"}, "load": {}, "pressure": {}}, "required": ["cpu", "memory"]},
            "annotations": {"readOnlyHint": true, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false},
        },
        {
            "name": "jobs_list",
            "title": "List jobs",
            "description": "Summaries of the jobs recorded in vigil's log (id, capability, status, session, start and end times, LSN), oldest first.",
            "inputSchema": input_schema(Map::new(), json!({
                "session": {"type": "string", "description": "Only jobs of this session."},
                "status": {"type": "string", "description": "Only jobs with this status (running, completed, failed, timed_out, oom_killed, rejected, interrupted)."},
            }), &[]),
            "outputSchema": {"type": "object", "properties": {"jobs": {"type": "array", "items": {"type": "object"}}}, "required": ["jobs"]},
            "annotations": {"readOnlyHint": true, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false},
        },
        {
            "name": "job_get",
            "title": "Show a job",
            "description": "One job's full record: arguments as logged, limits, result, telemetry before and after, who held each limit.",
            "inputSchema": input_schema(Map::new(), json!({"job_id": {"type": "integer", "minimum": 0, "description": "The job's id."}}), &["job_id"]),
            "outputSchema": {"type": "object", "properties": {"job_id": {"type": "integer"}, "status": {"type": "string"}}, "required": ["job_id", "status"]},
            "annotations": {"readOnlyHint": true, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false},
        },
    ])
}

/// The input schema of the tool `name`.
fn schema_of(name: &str) -> Option<Value> {
    let Value::Array(tools) = list() else {
        return None;
    };
    tools
        .into_iter()
        .find(|t| t["name"] == name)
        .map(|mut t| t["inputSchema"].take())
}

/// Checks `value` against the subset of JSON Schema the input schemas use.
fn check(path: &str, schema: &Value, value: &Value) -> Result<(), String> {
    let ty = schema["type"].as_str().unwrap_or("");
    match (ty, value) {
        ("string", Value::String(_)) | ("boolean", Value::Bool(_)) => Ok(()),
        ("integer", Value::Number(n)) => match (n.as_u64(), schema["minimum"].as_u64()) {
            (Some(v), Some(min)) if v < min => Err(format!("{path} must be at least {min}")),
            (Some(_), _) => Ok(()),
            (None, _) => Err(format!("{path} must be a non-negative integer")),
        },
        ("array", Value::Array(items)) => {
            let min = schema["minItems"].as_u64().unwrap_or(0) as usize;
            if items.len() < min {
                return Err(format!("{path} must have at least {min} item(s)"));
            }
            for (i, item) in items.iter().enumerate() {
                check(&format!("{path}[{i}]"), &schema["items"], item)?;
            }
            Ok(())
        }
        ("object", Value::Object(map)) => {
            let props = schema["properties"].as_object();
            for key in schema["required"].as_array().into_iter().flatten() {
                let key = key.as_str().unwrap_or_default();
                if !map.contains_key(key) {
                    return Err(format!("{path}.{key} is required"));
                }
            }
            for (k, v) in map {
                let sub = match (
                    props.and_then(|p| p.get(k)),
                    &schema["additionalProperties"],
                ) {
                    (Some(sub), _) => sub,
                    (None, Value::Bool(false)) => {
                        let known: Vec<&str> = props
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        return Err(format!(
                            "{path} has no argument {k:?} (known: {})",
                            known.join(", ")
                        ));
                    }
                    (None, sub @ Value::Object(_)) => sub,
                    (None, _) => continue,
                };
                check(&format!("{path}.{k}"), sub, v)?;
            }
            Ok(())
        }
        _ => Err(format!("{path} must be of type {ty}")),
    }
}

/// Validates a `tools/call`: a known tool, arguments of the right shape. The message of an
/// error is what the client is told (`Invalid params`).
pub fn parse_call(name: &str, arguments: Option<&Value>) -> Result<ToolCall, String> {
    let schema = schema_of(name).ok_or_else(|| {
        format!("no tool {name:?} (tools: shell, exec, file_read, file_write, telemetry, jobs_list, job_get)")
    })?;
    let empty = Value::Object(Map::new());
    let arguments = match arguments {
        None | Some(Value::Null) => &empty,
        Some(a) => a,
    };
    check("arguments", &schema, arguments)?;
    let mut args = arguments.as_object().cloned().unwrap_or_default();
    let string = |args: &mut Map<String, Value>, k: &str| match args.remove(k) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let job = |capability: &'static str, mut args: Map<String, Value>| {
        let mut limits = Map::new();
        // The socket protocol's `limits` object, flattened into the tool's arguments.
        for (k, _, _) in LIMITS {
            if let Some(v) = args.remove(*k) {
                limits.insert((*k).to_string(), v);
            }
        }
        ToolCall::Job {
            capability,
            args,
            limits,
        }
    };
    Ok(match name {
        "shell" => job("shell", args),
        "exec" => job("exec", args),
        "file_read" => job("file.read", args),
        "file_write" => job("file.write", args),
        "telemetry" => ToolCall::Telemetry,
        "jobs_list" => ToolCall::JobsList {
            session: string(&mut args, "session"),
            status: string(&mut args, "status"),
        },
        "job_get" => ToolCall::JobGet {
            job_id: args
                .get("job_id")
                .and_then(Value::as_u64)
                .ok_or("arguments.job_id is required")?,
        },
        _ => return Err(format!("no tool {name:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_what_model_apis_accept_and_every_tool_is_described() {
        let tools = list();
        let tools = tools.as_array().unwrap();
        assert_eq!(tools.len(), 7);
        for t in tools {
            let name = t["name"].as_str().unwrap();
            assert!(name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
            assert_eq!(t["inputSchema"]["type"], "object");
            assert_eq!(t["outputSchema"]["type"], "object");
            assert!(t["annotations"]["readOnlyHint"].is_boolean());
            assert!(t["annotations"]["destructiveHint"].is_boolean());
        }
    }

    #[test]
    fn a_shell_call_splits_limits_from_the_capability_arguments() {
        let call = parse_call(
            "shell",
            Some(&json!({"cmd": "true", "timeout_ms": 500, "env": {"A": "b"}})),
        )
        .unwrap();
        let ToolCall::Job {
            capability,
            args,
            limits,
        } = call
        else {
            panic!("not a job: {call:?}")
        };
        assert_eq!(capability, "shell");
        assert_eq!(
            Value::Object(args),
            json!({"cmd": "true", "env": {"A": "b"}})
        );
        assert_eq!(Value::Object(limits), json!({"timeout_ms": 500}));
    }

    #[test]
    fn bad_arguments_are_refused_with_a_reason() {
        let cases = [
            ("shell", json!({}), "arguments.cmd is required"),
            (
                "shell",
                json!({"cmd": 1}),
                "arguments.cmd must be of type string",
            ),
            (
                "shell",
                json!({"cmd": "x", "nope": 1}),
                "has no argument \"nope\"",
            ),
            ("shell", json!({"cmd": "x", "timeout_ms": 0}), "at least 1"),
            (
                "shell",
                json!({"cmd": "x", "timeout_ms": -5}),
                "non-negative integer",
            ),
            (
                "shell",
                json!({"cmd": "x", "env": {"A": 1}}),
                "arguments.env.A",
            ),
            ("exec", json!({"argv": []}), "at least 1 item"),
            ("exec", json!({"argv": ["ls", 2]}), "arguments.argv[1]"),
            ("job_get", json!({"job_id": "7"}), "arguments.job_id"),
            ("job_get", json!([1]), "arguments must be of type object"),
            ("nope", json!({}), "no tool \"nope\""),
        ];
        for (tool, args, want) in cases {
            let err = parse_call(tool, Some(&args)).unwrap_err();
            assert!(err.contains(want), "{tool} {args}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn no_arguments_of_any_shape_panic() {
        let values = [
            Value::Null,
            json!(true),
            json!(-1),
            json!(1.5),
            json!(u64::MAX),
            json!("x"),
            json!([]),
            json!([null, {"a": []}]),
            json!({}),
            json!({"cmd": null}),
            json!({"cmd": {}, "argv": "ls"}),
            json!({"env": [], "stdin": 3, "timeout_ms": "1"}),
            json!({"argv": [[]], "path": ["a"], "content": 1, "append": "yes"}),
            json!({"job_id": u64::MAX, "session": 1, "status": null}),
        ];
        let names = [
            "shell",
            "exec",
            "file_read",
            "file_write",
            "telemetry",
            "jobs_list",
            "job_get",
            "",
            "shell\u{0}",
        ];
        let mut accepted = 0;
        for name in names {
            for v in &values {
                let mut fields = Map::new();
                fields.insert("cmd".into(), v.clone());
                fields.insert("job_id".into(), v.clone());
                fields.insert("argv".into(), v.clone());
                for args in [v.clone(), Value::Object(fields)] {
                    match parse_call(name, Some(&args)) {
                        Ok(_) => accepted += 1,
                        Err(message) => assert!(!message.is_empty()),
                    }
                }
            }
        }
        // Only the argument-less tools take these: telemetry and jobs_list with {} or null.
        assert_eq!(accepted, 4);
    }

    #[test]
    fn tools_without_arguments_accept_none() {
        assert_eq!(parse_call("telemetry", None).unwrap(), ToolCall::Telemetry);
        assert_eq!(
            parse_call("jobs_list", Some(&Value::Null)).unwrap(),
            ToolCall::JobsList {
                session: None,
                status: None
            }
        );
        assert_eq!(
            parse_call("job_get", Some(&json!({"job_id": 3}))).unwrap(),
            ToolCall::JobGet { job_id: 3 }
        );
    }
}
