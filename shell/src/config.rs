//! Options more than one subcommand takes: the global flags (data directory, /proc root, log
//! options), where the server's socket is by default, and the cgroup mode. Parsed once, by
//! clap; subcommands read them from here and never from each other.
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::{Map, Value};
use vigil_core::exec::host::CgroupMode;
use vigil_core::exec::identity::{RunAs, UserSpec};
use vigil_core::exec::job::{Executor, ExecutorConfig};
use vigil_core::exec::sandbox::{host_default_mode, SandboxMode, SandboxRequest};
use vigil_core::exec::{Limits, OUTPUT_BYTES_DEFAULT};
use vigil_core::model;
use vigil_core::runtime::RuntimeOptions;
use vigil_core::view::limits::limits_json;
use vigil_core::wal::log::WalOptions;

use crate::units::{parse_duration, parse_size};

/// The flags every subcommand accepts.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Where vigil keeps its WAL and state.
    #[arg(long, global = true, env = "VIGIL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Read /proc files beneath this directory instead of /proc (a host /proc mounted elsewhere,
    /// or a captured tree).
    #[arg(long, global = true, default_value = "/proc")]
    pub proc_root: PathBuf,
    /// Size of each new log segment (e.g. 64M; small values make a log rotate and retire
    /// segments quickly).
    #[arg(long, global = true, env = "VIGIL_WAL_SEGMENT_BYTES", value_parser = parse_size)]
    pub wal_segment_bytes: Option<u64>,
    /// How much log to keep: older segments are retired past this size (e.g. 4G).
    #[arg(long, global = true, env = "VIGIL_WAL_RETAIN_BYTES", value_parser = parse_size)]
    pub wal_retain_bytes: Option<u64>,
}

impl Global {
    /// The data directory asked for, else the default one.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    /// The log options the flags ask for.
    pub fn wal_options(&self) -> WalOptions {
        let mut options = WalOptions::default();
        if let Some(bytes) = self.wal_segment_bytes {
            options.segment_bytes = bytes;
        }
        if let Some(bytes) = self.wal_retain_bytes {
            options.retention.bytes_max = Some(bytes);
        }
        options
    }

    /// Runtime options for the data directory, /proc root, log options and cgroup mode.
    pub fn runtime_options(&self, mode: Option<CgroupModeArg>) -> RuntimeOptions {
        let mut options = RuntimeOptions::new(self.data_dir());
        options.proc_root = self.proc_root.clone();
        options.wal = self.wal_options();
        options.executor = executor_config(mode);
        options
    }

    /// The server's socket: `socket` if given, else vigil.sock in the data directory.
    pub fn socket_path(&self, socket: Option<&Path>) -> PathBuf {
        socket.map_or_else(|| self.data_dir().join("vigil.sock"), Path::to_path_buf)
    }
}

/// The default data directory: `$XDG_STATE_HOME/vigil`, else `~/.local/state/vigil`, else
/// `/var/lib/vigil` for root without a home.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("vigil");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/state/vigil");
    }
    PathBuf::from("/var/lib/vigil")
}

/// A job's limits as flags (`vigil run`, and `vigil mcp`'s defaults for every job).
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
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
}

impl LimitArgs {
    /// The limits asked for.
    pub fn limits(&self) -> Limits {
        Limits {
            timeout: self.timeout,
            cpu_time: self.cpu_time,
            memory_bytes: self.memory,
            pids: self.pids,
            max_output_bytes: self.max_output.unwrap_or(OUTPUT_BYTES_DEFAULT),
            ..Limits::default()
        }
    }

    /// The socket protocol's `limits` object (the limits view): `null` where no limit was
    /// asked for, which the receiver reads as its default.
    pub fn to_json(&self) -> Map<String, Value> {
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64);
        let limits = model::Limits {
            timeout_ms: ms(self.timeout),
            cpu_time_ms: ms(self.cpu_time),
            memory_bytes: self.memory,
            pids: self.pids,
            max_output_bytes: self.max_output,
        };
        match limits_json(&limits) {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

/// `--cgroup-mode`: the most a job may use (the host may offer less).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CgroupModeArg {
    V2,
    Hybrid,
    V1,
    None,
}

impl From<CgroupModeArg> for CgroupMode {
    fn from(mode: CgroupModeArg) -> CgroupMode {
        match mode {
            CgroupModeArg::V2 => CgroupMode::V2,
            CgroupModeArg::Hybrid => CgroupMode::Hybrid,
            CgroupModeArg::V1 => CgroupMode::V1,
            CgroupModeArg::None => CgroupMode::None,
        }
    }
}

/// The executor configuration for `--cgroup-mode` (`None`: the best the host offers), with
/// the sandbox's default: `workspace` where the kernel has Landlock, else `off`.
pub fn executor_config(mode: Option<CgroupModeArg>) -> ExecutorConfig {
    let mut config = ExecutorConfig::with_mode(mode.map(CgroupMode::from));
    config.sandbox.default_mode = Some(host_default_mode());
    config
}

/// `--sandbox`: how a `shell` or `exec` job is confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SandboxModeArg {
    /// No sandbox.
    Off,
    /// Writes only beneath the root, a private TMPDIR and the usual devices; reads all but
    /// vigil's data dir and the deny list; cannot signal vigil (Landlock).
    Workspace,
    /// `workspace` without network (only AF_UNIX sockets) and without io_uring (seccomp).
    Strict,
}

impl From<SandboxModeArg> for SandboxMode {
    fn from(mode: SandboxModeArg) -> SandboxMode {
        match mode {
            SandboxModeArg::Off => SandboxMode::Off,
            SandboxModeArg::Workspace => SandboxMode::Workspace,
            SandboxModeArg::Strict => SandboxMode::Strict,
        }
    }
}

/// The sandbox flags `vigil run`, `vigil serve` and `vigil mcp` share.
#[derive(Debug, Clone, Default, Args)]
pub struct SandboxArgs {
    /// Sandbox of shell and exec jobs: off, workspace or strict (default: workspace where the
    /// kernel has Landlock, else off). For `serve` and `mcp`, also the weakest mode a request
    /// may ask for: a weaker request is raised to it, and its record says so.
    #[arg(long, value_enum)]
    pub sandbox: Option<SandboxModeArg>,
    /// Also let jobs write beneath this path. Repeatable.
    #[arg(long = "allow-write", value_name = "PATH")]
    pub allow_write: Vec<PathBuf>,
    /// Also keep jobs from reading this path (beyond vigil's data dir and the default deny
    /// list). Repeatable.
    #[arg(long = "deny-read", value_name = "PATH")]
    pub deny_read: Vec<PathBuf>,
}

impl SandboxArgs {
    /// The request one job makes with these flags.
    pub fn request(&self) -> SandboxRequest {
        SandboxRequest {
            mode: self.sandbox.map(SandboxMode::from),
            allow_write: self.allow_write.clone(),
            deny_read: self.deny_read.clone(),
        }
    }

    /// These flags as the socket protocol's `run` params (`sandbox`, `allow_write`,
    /// `deny_read`), paths made absolute; only those given.
    pub fn to_params(&self) -> Map<String, Value> {
        let abs = |ps: &[PathBuf]| -> Value {
            ps.iter()
                .map(|p| {
                    let a = std::path::absolute(p).unwrap_or_else(|_| p.clone());
                    Value::from(a.display().to_string())
                })
                .collect()
        };
        let mut m = Map::new();
        if let Some(s) = self.sandbox {
            m.insert("sandbox".into(), SandboxMode::from(s).as_str().into());
        }
        if !self.allow_write.is_empty() {
            m.insert("allow_write".into(), abs(&self.allow_write));
        }
        if !self.deny_read.is_empty() {
            m.insert("deny_read".into(), abs(&self.deny_read));
        }
        m
    }

    /// These flags as a server's defaults: the mode is the default and the floor, the paths
    /// apply to every job.
    pub fn apply_server_defaults(&self, config: &mut ExecutorConfig) {
        if let Some(m) = self.sandbox {
            config.sandbox.default_mode = Some(m.into());
            config.sandbox.floor = Some(m.into());
        }
        config
            .sandbox
            .allow_write
            .extend(self.allow_write.iter().cloned());
        if !self.deny_read.is_empty() {
            let mut deny = config
                .sandbox
                .deny_read
                .clone()
                .unwrap_or_else(vigil_core::exec::sandbox::default_deny_read);
            deny.extend(self.deny_read.iter().cloned());
            config.sandbox.deny_read = Some(deny);
        }
    }
}

/// `--user NAME|UID`, which `vigil run`, `vigil serve` and `vigil mcp` share.
#[derive(Debug, Clone, Default, Args)]
pub struct UserArgs {
    /// Run the job as this user (a name or a uid; vigil must be root to switch): a shell or
    /// exec job's process, or the thread that does a file job. For `serve` and `mcp`, every
    /// job runs as it, and a request naming another user is refused.
    #[arg(long, value_name = "NAME|UID", value_parser = UserSpec::parse)]
    pub user: Option<UserSpec>,
}

impl UserArgs {
    /// The flag as the socket protocol's `run` params (`user`), when given.
    pub fn to_params(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(u) = &self.user {
            m.insert(
                "user".into(),
                serde_json::to_value(u).unwrap_or(Value::Null),
            );
        }
        m
    }

    /// The flag as a server's identity for every job; refused (the server does not start)
    /// when no such user exists or vigil may not switch to it.
    pub fn apply_server_defaults(&self, config: &mut ExecutorConfig) -> Result<(), String> {
        if let Some(spec) = &self.user {
            let user = RunAs::resolve(spec).map_err(|e| format!("--user {spec}: {e}"))?;
            if let Some(why) = user.refusal() {
                return Err(format!("--user {spec}: {why}"));
            }
        }
        config.user.clone_from(&self.user);
        Ok(())
    }
}

/// An executor for the CLI, with the mode forced when asked.
pub fn executor(mode: Option<CgroupModeArg>) -> Result<Executor, String> {
    Executor::new(executor_config(mode)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cgroup_mode_name_is_the_one_core_prints() {
        for arg in CgroupModeArg::value_variants() {
            let name = arg
                .to_possible_value()
                .expect("a value")
                .get_name()
                .to_string();
            assert_eq!(CgroupMode::from(*arg).as_str(), name);
            assert_eq!(CgroupMode::parse(&name), Some(CgroupMode::from(*arg)));
        }
        assert_eq!(CgroupModeArg::value_variants().len(), 4);
    }
}
