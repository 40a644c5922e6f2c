//! What the job's root process runs, prepared in the parent before the fork: its environment
//! (an allowlist of vigil's own, the request's variables, the job marker), the program found in
//! the job's PATH, and every C string and array the child will use.
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::super::identity::RunAs;
use super::super::ExecError;

/// Fallback bound when close_range is missing and RLIMIT_NOFILE is unlimited.
const CLOSE_FDS_MAX: u64 = 65_536;

/// Environment variables taken from vigil's own environment; nothing else is inherited.
///
/// `HOME`, `USER` and `SHELL` are deliberately absent: a home directory points a command at
/// dotfiles (`.netrc`, cloud credentials) the caller did not choose to expose. A request that
/// wants them passes them explicitly.
pub const ENV_ALLOWLIST: &[&str] = &["PATH", "LANG", "TZ"];
/// Prefix of further allowed variables (`LC_ALL`, `LC_CTYPE`, ...).
pub const ENV_ALLOWED_PREFIX: &str = "LC_";
/// PATH given to a job when vigil's own environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Marker variable naming the job in every process it starts (documented; used to find a job's
/// processes when no cgroup holds them).
pub const JOB_MARKER_ENV: &str = "VIGIL_JOB_ID";

/// What the job's root process runs.
#[derive(Debug, Clone, Default)]
pub struct ProcessSpec {
    /// Program and arguments; `argv[0]` is looked up in the job's PATH unless it holds a `/`.
    pub argv: Vec<String>,
    /// Variables added to the allowlisted environment (they win over inherited ones).
    pub env: BTreeMap<String, String>,
    /// Working directory (default: vigil's own).
    pub cwd: Option<PathBuf>,
    /// Bytes fed to stdin; `None` means /dev/null.
    pub stdin: Option<Vec<u8>>,
}

/// Everything the child needs, built before fork so the child allocates nothing.
pub(crate) struct PreparedCommand {
    pub(super) program: CString,
    _argv: Vec<CString>,
    pub(super) argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    pub(super) envp_ptrs: Vec<*const libc::c_char>,
    pub(super) cwd: Option<CString>,
    /// The working directory opened beneath the job's root (`O_PATH`), entered with `fchdir`
    /// instead of `cwd`'s path when set.
    pub(crate) cwd_fd: Option<std::os::fd::OwnedFd>,
    pub(crate) rlimit_cpu_s: Option<u64>,
    pub(crate) rlimit_as_bytes: Option<u64>,
    pub(super) empty_sigset: libc::sigset_t,
    pub(super) nofile_max: u64,
    /// The job's Landlock ruleset, applied by the child after no_new_privs (-1: none).
    pub(crate) landlock_fd: i32,
    /// The job's seccomp program, installed by the child last (empty: none).
    pub(crate) seccomp: Vec<libc::sock_filter>,
    /// The user the child switches to before the sandbox (`None`: vigil's own).
    pub(crate) ids: Option<ChildIds>,
    /// A sandboxed job that runs as root keeps no capability: the child empties its bounding
    /// set (so exec gives uid 0 none), its inheritable and ambient sets.
    pub(crate) drop_capabilities: bool,
    /// Give the job terminals of its own (a devpts instance in a mount namespace of its own),
    /// where the kernel allows it: a sandboxed root job with a Landlock ruleset.
    pub(crate) private_terminals: bool,
    /// The Landlock rights the child gives that devpts instance in the ruleset (the device
    /// rules' rights of the ruleset's ABI).
    pub(crate) pts_rule_access: u64,
}

/// The ids a child switches to: its groups, then its gid, then its uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChildIds {
    pub(crate) uid: libc::uid_t,
    pub(crate) gid: libc::gid_t,
    pub(crate) groups: Vec<libc::gid_t>,
}

impl ChildIds {
    /// The ids of a resolved user.
    pub(crate) fn of(user: &RunAs) -> ChildIds {
        ChildIds {
            uid: user.uid,
            gid: user.gid,
            groups: user.groups.clone(),
        }
    }
}

pub(super) fn cstring(what: &str, s: &[u8]) -> Result<CString, ExecError> {
    CString::new(s).map_err(|_| ExecError::InvalidRequest(format!("{what} contains a NUL byte")))
}

/// The job's environment: allowlisted variables of vigil's own, the request's own variables,
/// then the job marker (which a request cannot replace: see [`check_env_name`]).
pub fn job_environment(job_id: &str, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        if ENV_ALLOWLIST.contains(&k) || k.starts_with(ENV_ALLOWED_PREFIX) {
            env.insert(k.to_string(), v.to_string());
        }
    }
    env.entry("PATH".to_string())
        .or_insert_with(|| DEFAULT_PATH.to_string());
    for (k, v) in extra {
        env.insert(k.clone(), v.clone());
    }
    env.insert(JOB_MARKER_ENV.to_string(), job_id.to_string());
    env
}

/// Finds `name` in `path_var` the way execvp would (an executable regular file).
fn resolve_program(name: &str, path_var: &str, cwd: Option<&Path>) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(dir)
        };
        let base = if dir.is_relative() {
            cwd.map(|c| c.join(dir))
                .unwrap_or_else(|| dir.to_path_buf())
        } else {
            dir.to_path_buf()
        };
        let candidate = base.join(name);
        let Ok(c) = CString::new(candidate.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: valid C string.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 && candidate.is_file() {
            return Some(candidate);
        }
    }
    None
}

/// Refuses a request's environment variable that names nothing or would replace the job
/// marker: the marker is how vigil finds the job's processes where no cgroup holds them, so a
/// request that set it could hide its processes from the kill.
pub fn check_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(format!("environment variable name {name:?} is not valid"));
    }
    if name == JOB_MARKER_ENV {
        return Err(format!(
            "environment variable {JOB_MARKER_ENV} is set by vigil to name the job and cannot be set by a request"
        ));
    }
    Ok(())
}

impl PreparedCommand {
    pub(crate) fn new(job_id: &str, spec: &ProcessSpec) -> Result<PreparedCommand, ExecError> {
        let Some(first) = spec.argv.first() else {
            return Err(ExecError::InvalidRequest("argv is empty".into()));
        };
        for k in spec.env.keys() {
            check_env_name(k).map_err(ExecError::InvalidRequest)?;
        }
        let env = job_environment(job_id, &spec.env);
        let path_var = env.get("PATH").map(String::as_str).unwrap_or(DEFAULT_PATH);
        let program = resolve_program(first, path_var, spec.cwd.as_deref()).ok_or_else(|| {
            ExecError::ProgramNotFound {
                program: first.clone(),
                path: path_var.to_string(),
            }
        })?;
        let program = cstring("program path", program.as_os_str().as_bytes())?;
        let argv: Vec<CString> = spec
            .argv
            .iter()
            .map(|a| cstring("an argument", a.as_bytes()))
            .collect::<Result<_, _>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| cstring("an environment value", format!("{k}={v}").as_bytes()))
            .collect::<Result<_, _>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        let cwd = spec
            .cwd
            .as_ref()
            .map(|c| cstring("cwd", c.as_os_str().as_bytes()))
            .transpose()?;
        // SAFETY: sigemptyset initialises the set it is given.
        let mut empty_sigset: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: a pointer to a live local sigset_t, which sigemptyset initialises.
        unsafe { libc::sigemptyset(&mut empty_sigset) };
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: out-parameter of the right type.
        let nofile_max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
            rl.rlim_cur.min(CLOSE_FDS_MAX)
        } else {
            CLOSE_FDS_MAX
        };
        Ok(PreparedCommand {
            program,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            cwd,
            rlimit_cpu_s: None,
            rlimit_as_bytes: None,
            empty_sigset,
            nofile_max,
            landlock_fd: -1,
            seccomp: Vec::new(),
            ids: None,
            drop_capabilities: false,
            private_terminals: false,
            pts_rule_access: 0,
            cwd_fd: None,
        })
    }
}
