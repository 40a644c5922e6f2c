//! Capabilities: what a job may ask vigil to do. Each one names itself, validates its JSON
//! arguments strictly (unknown keys are refused, so a typo never silently drops a limit), runs,
//! and can describe a run without doing it (`dry_run`).
//!
//! Built-ins: `shell` {cmd, cwd?, env?, stdin?} runs `/bin/sh -c cmd`; `exec` {argv, cwd?, env?,
//! stdin?} runs a program directly; `file.read` {path, max_bytes?} and `file.write` {path,
//! content, append?} work on regular files beneath the job's root (see [`super::fsroot`]); both
//! take `allow_hardlinks?` (a file with more than one hard link is refused unless it is true).
//!
//! Process capabilities start in the job's root directory (`cwd` is taken relative to it and
//! must lie beneath it, else the job is `rejected`); beyond the executor's limits, the job's
//! sandbox ([`super::sandbox`]) confines where they write, what they read, and the network.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

use super::fsroot::{
    ConfinedRoot, FILE_READ_BYTES_DEFAULT, FILE_READ_BYTES_MAX, FILE_WRITE_BYTES_MAX,
};
use super::job::{CancelToken, Enforcement, Executor, JobResult};
use super::output::{CapturedOutput, OutputCut};
use super::spawn::{check_env_name, ProcessSpec};
use super::{ExecError, Limits};
use crate::model::JobStatus;

/// Largest `stdin` a process capability accepts.
pub const STDIN_BYTES_MAX: usize = 16 << 20;
/// Most environment variables a request may pass.
pub const ENV_VARS_MAX: usize = 256;
/// Most argv entries of `exec`.
pub const ARGV_ENTRIES_MAX: usize = 4096;

/// What a capability needs to run one job.
pub struct JobContext<'a> {
    /// Runs processes.
    pub executor: &'a Executor,
    /// The job's id (names its cgroup leaf).
    pub job_id: &'a str,
    /// The job's limits.
    pub limits: &'a Limits,
    /// The directory file capabilities are confined to and process capabilities start in.
    pub root: &'a Path,
    /// Ends a running process job early (`interrupted`), when given.
    pub cancel: Option<&'a CancelToken>,
}

/// What `dry_run` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunReport {
    /// Capability name.
    pub capability: String,
    /// The arguments were valid.
    pub valid: bool,
    /// Why not, when not.
    pub error: Option<String>,
    /// What would happen.
    pub plan: Option<String>,
    /// How the limits would be enforced here.
    pub enforcement: Enforcement,
}

/// A kind of work vigil runs on request.
pub trait Capability: Send + Sync {
    /// The name requests use (`shell`, `file.read`, ...).
    fn name(&self) -> &'static str;
    /// Checks the arguments and describes what would be done, without side effects.
    fn plan(&self, ctx: &JobContext<'_>, args: &Value) -> Result<String, ExecError>;
    /// Runs the job. Invalid arguments give a `rejected` result; nothing panics.
    fn execute(&self, ctx: &JobContext<'_>, args: &Value) -> JobResult;
    /// Validates and reports without side effects.
    fn dry_run(&self, ctx: &JobContext<'_>, args: &Value) -> DryRunReport {
        let process = matches!(self.name(), "shell" | "exec");
        let enforcement = ctx
            .executor
            .enforcement_for(ctx.limits, Some(ctx.root), process);
        // The job's user is part of whether it can run (an unknown name, a switch vigil may
        // not make).
        let plan = self
            .plan(ctx, args)
            .and_then(|plan| ctx.executor.job_user(ctx.limits).map(|_| plan));
        match plan {
            Ok(plan) => DryRunReport {
                capability: self.name().into(),
                valid: true,
                error: None,
                plan: Some(plan),
                enforcement,
            },
            Err(e) => DryRunReport {
                capability: self.name().into(),
                valid: false,
                error: Some(e.to_string()),
                plan: None,
                enforcement,
            },
        }
    }
}

fn invalid(cap: &str, msg: impl std::fmt::Display) -> ExecError {
    ExecError::InvalidRequest(format!("{cap}: {msg}"))
}

/// The argument object, refusing unknown keys.
fn object<'a>(
    cap: &str,
    args: &'a Value,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, ExecError> {
    let obj = args
        .as_object()
        .ok_or_else(|| invalid(cap, "arguments must be a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid(
            cap,
            format!("unknown argument {k:?} (allowed: {})", allowed.join(", ")),
        ));
    }
    Ok(obj)
}

fn req_str<'a>(cap: &str, obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, ExecError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(cap, format!("{key:?} must be a string"))),
        None => Err(invalid(cap, format!("missing required argument {key:?}"))),
    }
}

fn opt_str<'a>(
    cap: &str,
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, ExecError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(cap, format!("{key:?} must be a string"))),
    }
}

/// The arguments every process capability shares: cwd, env, stdin.
type ProcessCommon = (Option<PathBuf>, BTreeMap<String, String>, Option<Vec<u8>>);

/// Common process arguments: cwd (relative to the root), env, stdin.
fn process_common(
    cap: &str,
    obj: &Map<String, Value>,
    root: &Path,
) -> Result<ProcessCommon, ExecError> {
    let cwd = match opt_str(cap, obj, "cwd")? {
        None => Some(root.to_path_buf()),
        Some(c) if c.contains('\0') => return Err(invalid(cap, "cwd contains a NUL byte")),
        Some(c) => Some(root.join(c)),
    };
    let mut env = BTreeMap::new();
    match obj.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            if m.len() > ENV_VARS_MAX {
                return Err(invalid(
                    cap,
                    format!("at most {ENV_VARS_MAX} environment variables"),
                ));
            }
            for (k, v) in m {
                let v = v
                    .as_str()
                    .ok_or_else(|| invalid(cap, format!("env value of {k:?} must be a string")))?;
                check_env_name(k).map_err(|e| invalid(cap, e))?;
                if v.contains('\0') {
                    return Err(invalid(
                        cap,
                        format!("env value of {k:?} contains a NUL byte"),
                    ));
                }
                env.insert(k.clone(), v.to_string());
            }
        }
        Some(_) => return Err(invalid(cap, "\"env\" must be an object of strings")),
    }
    let stdin = opt_str(cap, obj, "stdin")?.map(|s| s.as_bytes().to_vec());
    if stdin.as_ref().is_some_and(|s| s.len() > STDIN_BYTES_MAX) {
        return Err(invalid(
            cap,
            format!("stdin larger than {STDIN_BYTES_MAX} bytes"),
        ));
    }
    Ok((cwd, env, stdin))
}

/// `shell`: `/bin/sh -c cmd`.
pub struct ShellCapability;
/// `exec`: a program and its arguments, no shell.
pub struct ExecCapability;
/// `file.read`: a regular file beneath the root.
pub struct FileReadCapability;
/// `file.write`: atomically replace or extend a regular file beneath the root.
pub struct FileWriteCapability;

impl ShellCapability {
    fn spec(&self, ctx: &JobContext<'_>, args: &Value) -> Result<ProcessSpec, ExecError> {
        let obj = object("shell", args, &["cmd", "cwd", "env", "stdin"])?;
        let cmd = req_str("shell", obj, "cmd")?;
        if cmd.contains('\0') {
            return Err(invalid("shell", "cmd contains a NUL byte"));
        }
        let (cwd, env, stdin) = process_common("shell", obj, ctx.root)?;
        Ok(ProcessSpec {
            argv: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            env,
            cwd,
            stdin,
        })
    }
}

impl ExecCapability {
    fn spec(&self, ctx: &JobContext<'_>, args: &Value) -> Result<ProcessSpec, ExecError> {
        let obj = object("exec", args, &["argv", "cwd", "env", "stdin"])?;
        let argv = match obj.get("argv") {
            Some(Value::Array(a)) if !a.is_empty() && a.len() <= ARGV_ENTRIES_MAX => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .filter(|s| !s.contains('\0'))
                        .map(str::to_string)
                        .ok_or_else(|| {
                            invalid("exec", "argv entries must be strings without NUL bytes")
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(invalid(
                    "exec",
                    format!(
                        "\"argv\" must be a non-empty array of at most {ARGV_ENTRIES_MAX} strings"
                    ),
                ))
            }
            None => return Err(invalid("exec", "missing required argument \"argv\"")),
        };
        if argv[0].is_empty() {
            return Err(invalid("exec", "argv[0] is empty"));
        }
        let (cwd, env, stdin) = process_common("exec", obj, ctx.root)?;
        Ok(ProcessSpec {
            argv,
            env,
            cwd,
            stdin,
        })
    }
}

fn plan_process(spec: &ProcessSpec) -> String {
    format!(
        "run {:?} in {:?} with {} extra environment variable(s)",
        spec.argv,
        spec.cwd.as_deref().unwrap_or(Path::new(".")),
        spec.env.len()
    )
}

fn rejected(ctx: &JobContext<'_>, e: ExecError, process: bool) -> JobResult {
    JobResult::without_process(
        ctx.job_id,
        e.job_status(),
        Some(e.to_string()),
        ctx.executor
            .enforcement_for(ctx.limits, Some(ctx.root), process),
    )
}

/// Runs a process capability's validated spec, or rejects the job with why it is invalid.
fn run_spec(ctx: &JobContext<'_>, spec: Result<ProcessSpec, ExecError>) -> JobResult {
    match spec {
        Ok(spec) => {
            ctx.executor
                .run_process_in(ctx.job_id, &spec, ctx.limits, Some(ctx.root), ctx.cancel)
        }
        Err(e) => rejected(ctx, e, true),
    }
}

impl Capability for ShellCapability {
    fn name(&self) -> &'static str {
        "shell"
    }
    fn plan(&self, ctx: &JobContext<'_>, args: &Value) -> Result<String, ExecError> {
        self.spec(ctx, args).map(|s| plan_process(&s))
    }
    fn execute(&self, ctx: &JobContext<'_>, args: &Value) -> JobResult {
        run_spec(ctx, self.spec(ctx, args))
    }
}

impl Capability for ExecCapability {
    fn name(&self) -> &'static str {
        "exec"
    }
    fn plan(&self, ctx: &JobContext<'_>, args: &Value) -> Result<String, ExecError> {
        self.spec(ctx, args).map(|s| plan_process(&s))
    }
    fn execute(&self, ctx: &JobContext<'_>, args: &Value) -> JobResult {
        run_spec(ctx, self.spec(ctx, args))
    }
}

/// A finished file job.
fn file_result(
    ctx: &JobContext<'_>,
    started: Instant,
    stdout: Vec<u8>,
    truncated: bool,
    total: u64,
) -> JobResult {
    let mut r = JobResult::without_process(
        ctx.job_id,
        JobStatus::Completed,
        None,
        // File capabilities are confined by path resolution beneath the root, not a sandbox.
        ctx.executor
            .enforcement_for(ctx.limits, Some(ctx.root), false),
    );
    // A file operation that completed succeeded: exit code 0, as a process that did so (the
    // CLI exits 0 only for a completed job with exit code 0).
    r.exit_code = Some(0);
    // A file read cut at max_bytes keeps only a head: whatever straddled the end is partial.
    let len = stdout.len();
    r.stdout = CapturedOutput {
        bytes: stdout,
        truncated,
        total_bytes: total,
        cut: truncated.then_some(OutputCut {
            head_end: len,
            tail_start: len,
        }),
    };
    r.wall_ms = started.elapsed().as_millis() as u64;
    r
}

/// Runs `op` on the job's root, opened beneath it as the job's user: vigil's own, or another
/// one in a thread switched to it (the kernel then checks that user's permissions).
fn confined<T: Send>(
    ctx: &JobContext<'_>,
    cap: &str,
    args: &Value,
    op: impl FnOnce(&ConfinedRoot) -> Result<T, ExecError> + Send,
) -> Result<T, ExecError> {
    let user = ctx.executor.job_user(ctx.limits)?;
    let allow = allow_hardlinks(cap, args)?;
    let openat2 = ctx.executor.host().openat2;
    let root = ctx.root;
    // The sandbox's deny list and the data dir hold for file jobs too (vigil does the I/O
    // itself, so it checks them on what it opened).
    let denied = ctx.executor.file_denied(ctx.limits)?;
    ctx.executor.as_job_user(&user, || {
        op(&ConfinedRoot::open(root, openat2)?
            .allow_hardlinks(allow)
            .deny(&denied))
    })
}

/// `allow_hardlinks`: a file with more than one hard link is refused unless this is true.
fn allow_hardlinks(cap: &str, args: &Value) -> Result<bool, ExecError> {
    match args.get("allow_hardlinks") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(cap, "\"allow_hardlinks\" must be a boolean")),
    }
}

impl FileReadCapability {
    fn parse<'a>(&self, args: &'a Value) -> Result<(&'a str, u64), ExecError> {
        let obj = object("file.read", args, &["path", "max_bytes", "allow_hardlinks"])?;
        allow_hardlinks("file.read", args)?;
        let path = req_str("file.read", obj, "path")?;
        let max = match obj.get("max_bytes") {
            None | Some(Value::Null) => FILE_READ_BYTES_DEFAULT,
            Some(v) => v
                .as_u64()
                .filter(|&n| n <= FILE_READ_BYTES_MAX)
                .ok_or_else(|| {
                    invalid(
                        "file.read",
                        format!("\"max_bytes\" must be an integer 0..={FILE_READ_BYTES_MAX}"),
                    )
                })?,
        };
        Ok((path, max))
    }
}

impl Capability for FileReadCapability {
    fn name(&self) -> &'static str {
        "file.read"
    }
    fn plan(&self, ctx: &JobContext<'_>, args: &Value) -> Result<String, ExecError> {
        let (path, max) = self.parse(args)?;
        super::fsroot::check_path(path)?;
        Ok(format!(
            "read at most {max} bytes of {path:?} beneath {}",
            ctx.root.display()
        ))
    }
    fn execute(&self, ctx: &JobContext<'_>, args: &Value) -> JobResult {
        let started = Instant::now();
        let run = || -> Result<JobResult, ExecError> {
            let (path, max) = self.parse(args)?;
            let (bytes, more, size) = confined(ctx, "file.read", args, |r| r.read(path, max))?;
            Ok(file_result(ctx, started, bytes, more, size))
        };
        run().unwrap_or_else(|e| rejected(ctx, e, false))
    }
}

impl FileWriteCapability {
    fn parse<'a>(&self, args: &'a Value) -> Result<(&'a str, &'a str, bool), ExecError> {
        let obj = object(
            "file.write",
            args,
            &["path", "content", "append", "allow_hardlinks"],
        )?;
        allow_hardlinks("file.write", args)?;
        let path = req_str("file.write", obj, "path")?;
        let content = req_str("file.write", obj, "content")?;
        if content.len() as u64 > FILE_WRITE_BYTES_MAX {
            return Err(invalid(
                "file.write",
                format!("content larger than {FILE_WRITE_BYTES_MAX} bytes"),
            ));
        }
        let append = match obj.get("append") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("file.write", "\"append\" must be a boolean")),
        };
        Ok((path, content, append))
    }
}

impl Capability for FileWriteCapability {
    fn name(&self) -> &'static str {
        "file.write"
    }
    fn plan(&self, ctx: &JobContext<'_>, args: &Value) -> Result<String, ExecError> {
        let (path, content, append) = self.parse(args)?;
        super::fsroot::check_path(path)?;
        let how = if append {
            "append"
        } else {
            "atomically replace with"
        };
        Ok(format!(
            "{how} {} bytes to {path:?} beneath {}",
            content.len(),
            ctx.root.display()
        ))
    }
    fn execute(&self, ctx: &JobContext<'_>, args: &Value) -> JobResult {
        let started = Instant::now();
        let run = || -> Result<JobResult, ExecError> {
            let (path, content, append) = self.parse(args)?;
            let size = confined(ctx, "file.write", args, |r| {
                r.write(path, content.as_bytes(), append)
            })?;
            let msg = format!(
                "wrote {} bytes to {path}; file is now {size} bytes\n",
                content.len()
            );
            let total = msg.len() as u64;
            Ok(file_result(ctx, started, msg.into_bytes(), false, total))
        };
        run().unwrap_or_else(|e| rejected(ctx, e, false))
    }
}

/// Capabilities by name.
pub struct CapabilityRegistry {
    caps: Vec<Box<dyn Capability>>,
}

impl CapabilityRegistry {
    /// The four built-ins.
    pub fn builtin() -> CapabilityRegistry {
        CapabilityRegistry {
            caps: vec![
                Box::new(ShellCapability),
                Box::new(ExecCapability),
                Box::new(FileReadCapability),
                Box::new(FileWriteCapability),
            ],
        }
    }

    /// Adds (or replaces) a capability.
    pub fn register(&mut self, cap: Box<dyn Capability>) {
        self.caps.retain(|c| c.name() != cap.name());
        self.caps.push(cap);
    }

    /// The capability called `name`.
    pub fn get(&self, name: &str) -> Option<&dyn Capability> {
        self.caps
            .iter()
            .find(|c| c.name() == name)
            .map(|c| c.as_ref())
    }

    /// Every registered name.
    pub fn names(&self) -> Vec<&'static str> {
        self.caps.iter().map(|c| c.name()).collect()
    }

    /// Runs `name` with `args`; an unknown capability is a `rejected` result.
    pub fn run(&self, name: &str, ctx: &JobContext<'_>, args: &Value) -> JobResult {
        match self.get(name) {
            Some(c) => c.execute(ctx, args),
            None => rejected(
                ctx,
                ExecError::InvalidRequest(format!(
                    "unknown capability {name:?} (known: {})",
                    self.names().join(", ")
                )),
                false,
            ),
        }
    }
}
