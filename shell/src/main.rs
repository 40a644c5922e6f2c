//! The `vigil` binary: a thin CLI over vigil-core. Each subcommand lives in its own module;
//! this file only parses arguments and dispatches.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod call_cmd;
mod client;
mod config;
mod damage;
mod doctor_cmd;
mod jobs_cmd;
mod mcp;
mod run_cmd;
mod serve;
mod telemetry_cmd;
mod units;
mod wal_cmd;

/// vigil: a capability runtime for agents and automation on persistent Linux machines.
#[derive(Debug, Parser)]
#[command(
    name = "vigil",
    version,
    about = "A capability runtime for agents and automation: isolated jobs under kernel-enforced \
             limits, recorded in a crash-safe log with machine telemetry.",
    after_help = "Examples:
  vigil run shell --args '{\"cmd\": \"uname -a\"}' --timeout 5s
  vigil telemetry --watch
  vigil serve --socket /run/vigil/vigil.sock --metrics 9477
  vigil call jobs.list --socket /run/vigil/vigil.sock
  vigil jobs --status failed
  vigil wal verify"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: config::Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sample machine telemetry: CPU, memory, load, pressure.
    Telemetry(telemetry_cmd::TelemetryArgs),
    /// Run one capability as an isolated job under kernel-enforced limits.
    Run(run_cmd::RunArgs),
    /// List recorded jobs.
    Jobs(jobs_cmd::JobsArgs),
    /// Show one job's full record: arguments as logged, limits, result, telemetry.
    Job(jobs_cmd::JobArgs),
    /// Show what this host supports and what vigil will enforce here.
    Doctor(doctor_cmd::DoctorArgs),
    /// Inspect and recover the write-ahead log: verify, dump, stats, tail, recover.
    Wal(wal_cmd::WalArgs),
    /// Serve the runtime on a Unix socket (JSON-RPC), optionally with Prometheus metrics.
    Serve(serve::ServeArgs),
    /// Send one JSON-RPC request to a running server and print the result.
    Call(call_cmd::CallArgs),
    /// Serve the tools to agents over the Model Context Protocol on stdio.
    Mcp(mcp::McpArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// For example: vigil completions bash > /etc/bash_completion.d/vigil
    Completions { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    // Before anything else: a job running as vigil's uid cannot read vigil's environment,
    // descriptors or memory, nor ptrace it (see vigil_core::exec::dumpable).
    vigil_core::phase::mark("main");
    if let Err(e) = vigil_core::exec::dumpable::make_non_dumpable() {
        eprintln!("vigil: cannot make the process non-dumpable: {e}");
        return ExitCode::from(1);
    }
    // While this is the only thread: growing the table later, with the sampler running, waits
    // for an RCU grace period (see vigil_core::exec::fdtable). Only slower if it fails.
    let _ = vigil_core::exec::fdtable::reserve_fd_table();
    let cli = Cli::parse();
    vigil_core::phase::mark("parsed");
    if !matches!(cli.command, Command::Serve(_) | Command::Mcp(_)) {
        // A CLI whose reader went away (`vigil wal dump | head`) ends quietly, as Unix tools
        // do, instead of failing on the write. The server keeps SIGPIPE ignored: a client
        // that disconnects is an error on that connection only.
        // SAFETY: restoring the default disposition of one signal, before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match &cli.command {
        Command::Telemetry(args) => telemetry_cmd::run(&cli.global, args),
        Command::Run(args) => run_cmd::run(&cli.global, args),
        Command::Jobs(args) => jobs_cmd::list(&cli.global, args),
        Command::Job(args) => jobs_cmd::show(&cli.global, args),
        Command::Doctor(args) => doctor_cmd::run(&cli.global, args),
        Command::Wal(args) => wal_cmd::run(&cli.global, args),
        Command::Call(args) => call_cmd::run(&cli.global, args),
        Command::Serve(args) => serve::run(&cli.global, args.clone()),
        Command::Mcp(args) => mcp::run(&cli.global, args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(*shell, &mut Cli::command(), "vigil", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}
