//! `vigil run CAPABILITY --args JSON [limits] [--json]`: one job, start to end, in this process.
//!
//! Exit codes: 0 when the job completed with exit code 0; otherwise 1 (failed; the job's own
//! exit code when it is 1..=125), 2 (rejected), 124 (timed out, as timeout(1)), 137 (OOM-killed),
//! 3 (interrupted).
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use vigil_core::exec::job::JobResult;
use vigil_core::exec::Limits;
use vigil_core::model::JobStatus;
use vigil_core::runtime::{JobRequest, Runtime};
use vigil_core::view::job::RunView;

use crate::client::call;
use crate::config::{executor, CgroupModeArg, Global, LimitArgs, SandboxArgs, UserArgs};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Capability: shell, exec, file.read, file.write.
    pub capability: String,
    /// Arguments as a JSON object, e.g. '{"cmd": "ls -l"}'.
    #[arg(long, default_value = "{}")]
    pub args: String,
    #[command(flatten)]
    pub limits: LimitArgs,
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
    #[arg(long = "cgroup-mode", env = "VIGIL_CGROUP_MODE", value_enum)]
    pub cgroup_mode: Option<CgroupModeArg>,
    /// Refuse the job (status `rejected`, exit code 2) instead of running it when a requested
    /// limit is not held here: memory and pids must be held by the kernel, wall and CPU time by
    /// vigil's supervisor with a kill that reaches every process (see `vigil doctor`).
    #[arg(long = "require-enforcement")]
    pub require_enforcement: bool,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[command(flatten)]
    pub user: UserArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Send the job to the `vigil serve` listening on this socket instead of running it in
    /// this process.
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

pub fn run(cli: &Global, args: &RunArgs) -> ExitCode {
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
            let enforcement = match executor(args.cgroup_mode) {
                Ok(ex) => ex.enforcement(&Limits::default()),
                Err(e) => return fail(e),
            };
            let result =
                JobResult::without_process("", JobStatus::Rejected, Some(error), enforcement);
            let view = RunView::new(&result, &args.capability, None, None, None);
            println!("{}", view.to_json());
            return ExitCode::from(view.process_exit_code());
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
    if let Some(socket) = &args.socket {
        // The server resolves nothing against its own directory: send an absolute root.
        let root = match std::path::absolute(&root) {
            Ok(r) => r,
            Err(e) => return fail(format!("--root {}: {e}", root.display())),
        };
        return run_remote(socket, args, parsed, root);
    }
    run_local(cli, args, parsed, root)
}

/// `vigil run` in this process: open the runtime, run the job, report it.
fn run_local(cli: &Global, args: &RunArgs, parsed: serde_json::Value, root: PathBuf) -> ExitCode {
    // One job, then exit: no history is read, so no sampling thread (the job's own samples at
    // its start and end are taken all the same).
    let mut options = cli.runtime_options(args.cgroup_mode);
    options.background_sampling = false;
    // Nor does it need the log's history: the next job id, the running jobs and their owners
    // and the open sessions are in the newest segment's index checkpoint and what follows it,
    // so its open does not read the older segments' records.
    options.wal.open_from_checkpoint = true;
    vigil_core::phase::mark("run_local");
    let runtime = match Runtime::open(options).map_err(|e| e.to_string()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vigil run: {e}");
            return ExitCode::from(2);
        }
    };
    for f in &runtime.recovery().sweep_failed {
        eprintln!("vigil run: warning: {f}");
    }
    let request = JobRequest {
        capability: args.capability.clone(),
        args: parsed,
        limits: Limits {
            sandbox: args.sandbox.request(),
            user: args.user.user.clone(),
            ..args.limits.limits()
        },
        root,
        session: args.session.clone(),
        dry_run: args.dry_run,
        require_enforcement: args.require_enforcement,
    };
    vigil_core::phase::mark("opened");
    let outcome = match runtime.run_last(&request) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vigil run: {e}");
            return ExitCode::FAILURE;
        }
    };
    vigil_core::phase::mark("ran");
    let view = outcome.view();
    // The job's own bytes, not their text form: output need not be UTF-8.
    let output = (
        &outcome.result.stdout.bytes[..],
        &outcome.result.stderr.bytes[..],
    );
    let code = report(args, &view, None, output);
    // The job's end is durable already; the close records where the log ends (for the next
    // run's open), and the process ends next, so the rest is left to the exit.
    vigil_core::phase::mark("reported");
    if let Err(e) = runtime.close_for_exit() {
        eprintln!("vigil run: warning: closing the log: {e}");
    }
    vigil_core::phase::mark("closed");
    vigil_core::phase::report();
    code
}

/// Prints a finished job as asked (`--json`: `raw` when given, else the view; a dry run's
/// report; else the human form with `output`) and gives the process exit code.
fn report(
    args: &RunArgs,
    view: &RunView,
    raw: Option<&serde_json::Value>,
    output: (&[u8], &[u8]),
) -> ExitCode {
    if args.json {
        match raw {
            Some(raw) => println!("{raw}"),
            None => println!("{}", view.to_json()),
        }
    } else if let Some(report) = &view.dry_run {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
    } else {
        print_human(view, output.0, output.1);
    }
    ExitCode::from(view.process_exit_code())
}

/// The job's own output on our stdout and stderr, then one warning line on stderr per
/// requested limit that was not held and one notice line per notice, then one summary line
/// on stderr.
fn print_human(f: &RunView, stdout: &[u8], stderr: &[u8]) {
    let _ = std::io::stdout().write_all(stdout);
    let _ = std::io::stderr().write_all(stderr);
    // What vigil says about the job, in one write (stderr is unbuffered: each formatted piece
    // would be a write of its own). A rejected job ran nothing: its error already says what
    // was not held.
    let mut said = String::new();
    if f.status != JobStatus::Rejected {
        for m in &f.limits_not_held {
            let _ = writeln!(said, "vigil: warning: {m}");
        }
        for m in &f.notices {
            let _ = writeln!(said, "vigil: notice: {m}");
        }
    }
    let _ = write!(said, "vigil: job ");
    match f.job_id {
        Some(id) => {
            let _ = write!(said, "{id}");
        }
        None => said.push('-'),
    }
    let _ = write!(said, " {} (", f.status.as_str());
    let _ = match (f.exit_code, f.signal) {
        (Some(c), _) => write!(said, "exit {c}"),
        (_, Some(s)) => write!(said, "signal {s}"),
        _ => write!(said, "no exit status"),
    };
    let _ = write!(said, ", {} ms)", f.wall_ms);
    if let Some(e) = &f.error {
        let _ = write!(said, ": {e}");
    }
    said.push('\n');
    let _ = std::io::stderr().write_all(said.as_bytes());
}

/// Exit code when the server turned the job away as busy (EX_TEMPFAIL: try again later).
const EXIT_BUSY: u8 = 75;

/// `vigil run --socket`: the same request, answered by a running server.
fn run_remote(socket: &Path, args: &RunArgs, parsed: serde_json::Value, root: PathBuf) -> ExitCode {
    // Unset limits (the output cap too) are left to the server's defaults.
    let mut params = serde_json::json!({
        "capability": args.capability,
        "args": parsed,
        "limits": args.limits.to_json(),
        "root": root,
        "session": args.session,
        "dry_run": args.dry_run,
        "require_enforcement": args.require_enforcement,
    });
    if let serde_json::Value::Object(p) = &mut params {
        p.extend(args.sandbox.to_params());
        p.extend(args.user.to_params());
    }
    let result = match call(socket, "run", params, None) {
        Ok(Ok(result)) => result,
        Ok(Err(error)) => {
            eprintln!(
                "vigil run: the server refused the request ({}): {}",
                error["code"],
                error["message"].as_str().unwrap_or("(no message)")
            );
            let busy = error["code"].as_i64() == Some(vigil_core::protocol::code::BUSY);
            return ExitCode::from(if busy { EXIT_BUSY } else { 2 });
        }
        Err(e) => {
            eprintln!("vigil run: {e}");
            return ExitCode::from(2);
        }
    };
    let view: RunView = match serde_json::from_value(result.clone()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vigil run: the server's answer is not a run result ({e}): {result}");
            return ExitCode::from(2);
        }
    };
    // With --json, the server's answer as it came, fields this version does not know included.
    let output = (view.stdout.as_bytes(), view.stderr.as_bytes());
    report(args, &view, Some(&result), output)
}
