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
use vigil_core::exec::host::CgroupMode;
use vigil_core::exec::job::{Executor, ExecutorConfig, JobResult, JobStatus};
use vigil_core::exec::{Limits, OUTPUT_BYTES_DEFAULT};
use vigil_core::runtime::{JobRequest, Runtime, RuntimeOptions};

use crate::units::{parse_duration, parse_size};
use crate::{default_data_dir, Cli};

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
    /// Session the job belongs to (created with `vigil call sessions.create` or the API).
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

/// The executor configuration for `--cgroup-mode` (`None`: the best the host offers).
pub fn executor_config(mode: Option<&str>) -> Result<ExecutorConfig, String> {
    let force_mode = match mode {
        None => None,
        Some(m) => Some(
            CgroupMode::parse(m)
                .ok_or_else(|| format!("--cgroup-mode {m:?}: expected v2, hybrid, v1 or none"))?,
        ),
    };
    Ok(ExecutorConfig::with_mode(force_mode))
}

/// Executor for the CLI, with the mode forced when asked.
pub fn executor(mode: Option<&str>) -> Result<Executor, String> {
    Executor::new(executor_config(mode)?).map_err(|e| e.to_string())
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

/// Opens the runtime under the CLI's data directory with the requested cgroup mode.
pub fn open_runtime(cli: &Cli, mode: Option<&str>) -> Result<Runtime, String> {
    let executor = executor_config(mode)?;
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    let mut options = RuntimeOptions::new(data_dir);
    options.proc_root = cli.proc_root.clone();
    options.executor = executor;
    Runtime::open(options).map_err(|e| e.to_string())
}

pub fn run(cli: &Cli, args: &RunArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("vigil run: {msg}");
        ExitCode::from(2)
    };
    let parsed: serde_json::Value = match serde_json::from_str(&args.args) {
        Ok(v) => v,
        Err(e) if args.json => {
            // The same object as any refusal, so scripts parse one shape; nothing ran, so
            // nothing is recorded and there is no job id.
            let error = format!("--args is not valid JSON: {e}");
            let enforcement = match executor(args.cgroup_mode.as_deref()) {
                Ok(ex) => ex.enforcement(&Limits::default()),
                Err(e) => return fail(e),
            };
            let result = JobResult::refused("", JobStatus::Rejected, error, enforcement);
            let mut obj = result.to_json(&args.capability, None);
            obj["job_id"] = serde_json::Value::Null;
            println!("{obj}");
            return ExitCode::from(exit_code_for(&result));
        }
        Err(e) => return fail(format!("--args is not valid JSON: {e}")),
    };
    let root = match &args.root {
        Some(r) => r.clone(),
        None => match std::env::current_dir() {
            Ok(d) => d,
            Err(e) => return fail(format!("current directory: {e}")),
        },
    };
    let runtime = match open_runtime(cli, args.cgroup_mode.as_deref()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    for f in &runtime.recovery().sweep_failed {
        eprintln!("vigil run: stale cgroup leaf not removed: {f}");
    }
    let request = JobRequest {
        capability: args.capability.clone(),
        args: parsed,
        limits: Limits {
            timeout: args.timeout,
            cpu_time: args.cpu_time,
            memory_bytes: args.memory,
            pids: args.pids,
            max_output_bytes: args.max_output.unwrap_or(OUTPUT_BYTES_DEFAULT),
        },
        root,
        session: args.session.clone(),
        dry_run: args.dry_run,
    };
    let outcome = match runtime.run(&request) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vigil run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = &outcome.result;
    if args.json {
        println!("{}", outcome.to_json());
    } else if let Some(report) = &outcome.dry_run {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
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
            outcome.job_id,
            result.status.as_str(),
            result.wall_ms,
            result
                .error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    ExitCode::from(exit_code_for(result))
}
