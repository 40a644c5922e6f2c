//! `vigil serve`: the thin server. One runtime, a Unix socket speaking newline-delimited
//! JSON-RPC 2.0 (parsed by `vigil_core::protocol`, answered by `vigil_core::rpc`), and
//! optionally a Prometheus endpoint.
//!
//! Threads, no async runtime: an accept loop, one thread per connection (bounded), a signal
//! thread, and the metrics thread. A connection's requests are answered in order; a client that
//! wants jobs in parallel opens more connections. Every resource a client can hold is bounded:
//! connections, request size, time to finish a request line, idle time, time to take a
//! response, and jobs (running, then a bounded queue, then a `busy` error).
//!
//! Shutdown (SIGTERM or SIGINT): stop accepting, let jobs run up to the grace period, cancel
//! what is left (each recorded `interrupted` with the reason), make the log durable, remove the
//! socket, exit 0.
use std::ops::Deref;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use vigil_core::rpc::{defaults, Service, ServiceConfig};
use vigil_core::runtime::Runtime;

use crate::config::{CgroupModeArg, Global, SandboxArgs, UserArgs};
use crate::units::{duration_text, parse_duration};

mod accept;
mod framing;
mod metrics;
mod signals;
mod socket;

use socket::BoundSocket;

/// How often blocked threads look at the shutdown flag and their deadlines.
const TICK: Duration = vigil_core::rpc::TICK;
/// How long shutdown waits, after the grace period, for cancelled jobs to end and connections
/// to write their last answers.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Socket path (default: vigil.sock in the data directory).
    #[arg(long, env = "VIGIL_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP at this address (a bare port means 127.0.0.1).
    #[arg(long)]
    pub metrics: Option<String>,
    /// Jobs running at once.
    #[arg(long = "max-jobs", default_value_t = defaults::MAX_JOBS)]
    pub max_jobs: usize,
    /// Jobs waiting for a slot beyond those; past this, `run` answers `busy`.
    #[arg(long = "queue", default_value_t = defaults::QUEUE)]
    pub queue: usize,
    /// Connections open at once; past this, new ones get a `busy` error and are closed.
    #[arg(long = "max-connections", default_value_t = defaults::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Also accept peers with this uid (besides the server's own uid and root). Repeatable.
    #[arg(long = "allow-uid")]
    pub allow_uid: Vec<u32>,
    /// Close a connection that sends nothing for this long.
    #[arg(long = "idle-timeout", default_value = duration_text(defaults::IDLE_TIMEOUT),
          value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Close a connection that takes longer than this to send one request line, or to take
    /// one response.
    #[arg(long = "io-timeout", default_value = duration_text(defaults::IO_TIMEOUT),
          value_parser = parse_duration)]
    pub io_timeout: Duration,
    /// On SIGTERM/SIGINT, let running jobs finish for this long before killing them.
    #[arg(long, default_value = duration_text(defaults::GRACE), value_parser = parse_duration)]
    pub grace: Duration,
    /// Root for `run` requests that name none: file capabilities are confined beneath it
    /// (default: the server's current directory).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Time between telemetry samples.
    #[arg(long = "sample-interval", default_value = duration_text(defaults::SAMPLE_INTERVAL),
          value_parser = parse_duration)]
    pub sample_interval: Duration,
    /// Use at most this cgroup mode: v2, hybrid, v1 or none.
    #[arg(long = "cgroup-mode", env = "VIGIL_CGROUP_MODE", value_enum)]
    pub cgroup_mode: Option<CgroupModeArg>,
    /// Refuse every job whose requested limits are not all held here (see `vigil doctor`);
    /// a request's `require_enforcement: false` cannot lower it.
    #[arg(long = "require-enforcement")]
    pub require_enforcement: bool,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[command(flatten)]
    pub user: UserArgs,
}

/// Everything a connection thread needs: the service (runtime, counters, methods) and the
/// server's own options.
pub struct Server {
    pub service: Service,
    pub args: ServeArgs,
}

impl Deref for Server {
    type Target = Service;

    fn deref(&self) -> &Service {
        &self.service
    }
}

pub fn run(cli: &Global, args: ServeArgs) -> ExitCode {
    match serve(cli, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil serve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cli: &Global, args: ServeArgs) -> Result<(), String> {
    if args.max_jobs == 0 || args.max_connections == 0 {
        return Err("--max-jobs and --max-connections must be at least 1".into());
    }
    // Signals are taken by one thread with sigwait; every other thread, including those the
    // runtime starts, inherits the blocked mask. (Job processes reset it before exec.)
    let signals = signals::block_shutdown_signals();
    let socket_path = cli.socket_path(args.socket.as_deref());
    let default_root = match &args.root {
        Some(r) => r.clone(),
        None => std::env::current_dir().map_err(|e| format!("current directory: {e}"))?,
    };
    let mut options = cli.runtime_options(args.cgroup_mode);
    args.sandbox.apply_server_defaults(&mut options.executor);
    args.user.apply_server_defaults(&mut options.executor)?;
    let sandbox = &mut options.executor.sandbox;
    if sandbox
        .floor
        .is_some_and(|f| f != vigil_core::exec::sandbox::SandboxMode::Off)
    {
        // Under a floor every job writes only beneath the server's root and --allow-write
        // paths, checked on the descriptors its rules are built from.
        let bounds = std::iter::once(&default_root).chain(sandbox.allow_write.iter());
        sandbox.write_bounds = bounds
            .map(|p| std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display())))
            .collect::<Result<_, _>>()?;
    }
    options.sample_interval = args.sample_interval;
    options.concurrent_jobs_max = args.max_jobs;
    // The runtime first: it holds the log's lock, so a second server on the same data
    // directory fails here, before touching the socket.
    let runtime = Runtime::open(options).map_err(|e| e.to_string())?;
    let recovery = runtime.recovery();
    if !recovery.interrupted.is_empty() {
        eprintln!(
            "vigil serve: recorded {} job(s) interrupted by the previous instance: {:?}",
            recovery.interrupted.len(),
            recovery.interrupted
        );
    }
    let mut bound = BoundSocket::bind(&socket_path)?;
    let metrics_listener = match &args.metrics {
        Some(addr) => Some(metrics::bind(addr)?),
        None => None,
    };
    let config = ServiceConfig {
        default_root,
        socket_path: socket_path.clone(),
        max_jobs: args.max_jobs,
        queue: args.queue,
        require_enforcement: args.require_enforcement,
    };
    let server = Arc::new(Server {
        service: Service::new(runtime, config),
        args,
    });
    let (wake_read, wake_write) = signals::wake_pipe().map_err(|e| format!("pipe: {e}"))?;
    let signal_thread = signals::spawn_signal_thread(signals, server.clone(), wake_write)?;
    if let Some(listener) = metrics_listener {
        let local = listener
            .local_addr()
            .map_err(|e| format!("metrics address: {e}"))?;
        eprintln!("vigil serve: metrics on http://{local}/metrics");
        let server = server.clone();
        std::thread::Builder::new()
            .name("vigil-metrics".into())
            .spawn(move || metrics::serve(listener, &server))
            .map_err(|e| format!("starting the metrics thread: {e}"))?;
    }
    eprintln!(
        "vigil serve: listening on {} (pid {})",
        socket_path.display(),
        std::process::id()
    );

    accept::accept_loop(&server, &bound, &wake_read);
    // New clients are refused from here on instead of queueing on a listener nobody accepts.
    bound.close_listener();
    let signal = signal_thread.join().unwrap_or(0);
    let closed = shut_down(&server, signal);
    bound.remove();
    eprintln!("vigil serve: stopped");
    closed
}

/// Lets jobs finish up to the grace period, cancels the rest, waits for the last responses and
/// makes the log durable. An error when the log could not be made durable (a poisoned log):
/// the server then exits non-zero.
fn shut_down(server: &Server, signal: i32) -> Result<(), String> {
    let rt = &server.runtime;
    let name = signals::signal_name(signal);
    let admitted = || server.jobs_admitted.load(Ordering::Acquire);
    eprintln!(
        "vigil serve: {name}: no new connections; {} job(s) running or queued, grace {:?}",
        admitted(),
        server.args.grace
    );
    // Admission counts a job from before the runtime knows it, so a request that raced the
    // signal is waited for (and cancelled) too.
    let deadline = Instant::now() + server.args.grace;
    while admitted() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let reason = format!("vigil serve stopped ({name}) before the job ended");
    let drain_deadline = Instant::now() + DRAIN_WAIT;
    let mut cancelled = 0;
    while (admitted() > 0 || server.connections.load(Ordering::Acquire) > 0)
        && Instant::now() < drain_deadline
    {
        // Repeated: a job that registers after one pass is caught by the next.
        cancelled += rt.cancel_all(&reason);
        std::thread::sleep(Duration::from_millis(20));
    }
    if cancelled > 0 {
        eprintln!("vigil serve: grace period over; cancelled the jobs still running");
    }
    rt.wal()
        .checkpoint()
        .map_err(|e| format!("final sync of the log failed: {e}"))?;
    eprintln!(
        "vigil serve: log durable through LSN {}",
        rt.wal().durable_lsn()
    );
    Ok(())
}
