//! `vigil run CAPABILITY --args JSON [limits] [--json]`: one job, start to end, in this process.
//!
//! Exit codes: 0 when the job completed with exit code 0; otherwise 1 (failed; the job's own
//! exit code when it is 1..=125), 2 (rejected), 124 (timed out, as timeout(1)), 137 (OOM-killed),
//! 3 (interrupted).
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use vigil_core::exec::capability::{CapabilityRegistry, JobContext};
use vigil_core::exec::host::{CgroupMode, HostConfig};
use vigil_core::exec::job::{new_job_id, Executor, ExecutorConfig, JobResult, JobStatus};
use vigil_core::exec::{Limits, OUTPUT_BYTES_DEFAULT};

use crate::units::{parse_duration, parse_size};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Capability: shell, exec, file.read, file.write.
    pub capability: String,
    /// Arguments as a JSON object, e.g. '{"cmd": "ls -l"}'.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// Wall-clock limit (e.g. 500ms, 2s, 1m).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// CPU-time budget of all the job's processes together.
    #[arg(long = "cpu-time", value_parser = parse_duration)]
    pub cpu_time: Option<Duration>,
    /// Memory limit of the job (no swap), e.g. 256M.
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Most processes and threads alive at once.
    #[arg(long)]
    pub pids: Option<u64>,
    /// Output kept per stream (head and tail), e.g. 64K.
    #[arg(long = "max-output", value_parser = parse_size)]
    pub max_output: Option<u64>,
    /// Root directory: file capabilities are confined beneath it, processes start in it
    /// (default: the current directory).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Session the job belongs to (echoed in the result).
    #[arg(long)]
    pub session: Option<String>,
    /// Validate and show what would run, without running it.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Use at most this cgroup mode: v2, hybrid, v1 or none (default: the best the host offers).
    #[arg(long = "cgroup-mode", env = "VIGIL_CGROUP_MODE")]
    pub cgroup_mode: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Executor for the CLI, with the mode forced when asked.
pub fn executor(mode: Option<&str>) -> Result<Executor, String> {
    let force_mode = match mode {
        None => None,
        Some(m) => Some(
            CgroupMode::parse(m)
                .ok_or_else(|| format!("--cgroup-mode {m:?}: expected v2, hybrid, v1 or none"))?,
        ),
    };
    Executor::new(ExecutorConfig {
        host: HostConfig {
            force_mode,
            ..HostConfig::default()
        },
        subreaper: true,
        ..ExecutorConfig::default()
    })
    .map_err(|e| e.to_string())
}

fn exit_code_for(r: &JobResult) -> u8 {
    match r.status {
        JobStatus::Completed if r.exit_code.unwrap_or(0) == 0 => 0,
        JobStatus::Completed | JobStatus::Failed => r
            .exit_code
            .filter(|c| (1..=125).contains(c))
            .map_or(1, |c| c as u8),
        JobStatus::Rejected => 2,
        JobStatus::Interrupted => 3,
        JobStatus::TimedOut => 124,
        JobStatus::OomKilled => 137,
    }
}

pub fn run(args: &RunArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("vigil run: {msg}");
        ExitCode::from(2)
    };
    let ex = match executor(args.cgroup_mode.as_deref()) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    // A one-shot run is also an instance start: clear what dead instances left behind.
    let swept = ex.sweep_stale();
    for f in &swept.failed {
        eprintln!("vigil run: stale cgroup leaf not removed: {f}");
    }
    let root = match &args.root {
        Some(r) => r.clone(),
        None => match std::env::current_dir() {
            Ok(d) => d,
            Err(e) => return fail(format!("current directory: {e}")),
        },
    };
    let limits = Limits {
        timeout: args.timeout,
        cpu_time: args.cpu_time,
        memory_bytes: args.memory,
        pids: args.pids,
        max_output_bytes: args.max_output.unwrap_or(OUTPUT_BYTES_DEFAULT),
    };
    let registry = CapabilityRegistry::builtin();
    let job_id = new_job_id();
    let ctx = JobContext {
        executor: &ex,
        job_id: &job_id,
        limits: &limits,
        root: &root,
        cancel: None,
    };
    let parsed: Result<serde_json::Value, String> =
        serde_json::from_str(&args.args).map_err(|e| format!("--args is not valid JSON: {e}"));
    if args.dry_run {
        let report = match (&parsed, registry.get(&args.capability)) {
            (Ok(v), Some(cap)) => serde_json::to_value(cap.dry_run(&ctx, v)).unwrap_or_default(),
            (Err(e), _) => {
                serde_json::json!({"capability": args.capability, "valid": false, "error": e})
            }
            (_, None) => {
                serde_json::json!({"capability": args.capability, "valid": false, "error": format!("unknown capability {:?}", args.capability)})
            }
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return if report["valid"] == serde_json::Value::Bool(true) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    }
    let result = match parsed {
        Ok(v) => registry.run(&args.capability, &ctx, &v),
        Err(e) => JobResult::refused(&job_id, JobStatus::Rejected, e, ex.enforcement(&limits)),
    };
    if args.json {
        let mut obj = result.to_json(&args.capability, None);
        obj["session"] = args
            .session
            .clone()
            .map_or(serde_json::Value::Null, serde_json::Value::String);
        println!("{}", serde_json::to_string(&obj).unwrap_or_default());
    } else {
        let _ = std::io::stdout().write_all(&result.stdout.bytes);
        let _ = std::io::stderr().write_all(&result.stderr.bytes);
        let how = match (result.exit_code, result.signal) {
            (Some(c), _) => format!("exit {c}"),
            (_, Some(s)) => format!("signal {s}"),
            _ => "no exit status".into(),
        };
        eprintln!(
            "vigil: job {} {} ({how}, {} ms){}",
            result.job_id,
            result.status.as_str(),
            result.wall_ms,
            result
                .error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    ExitCode::from(exit_code_for(&result))
}
