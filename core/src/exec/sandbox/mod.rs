//! The job sandbox: what a `shell` or `exec` job may write, read, connect to and signal,
//! held by the kernel (Landlock, seccomp) from before exec, so it holds even if vigil dies.
//!
//! Modes ([`SandboxMode`]):
//! - `workspace`: Landlock lets the job write only beneath its root, a private per-job TMPDIR
//!   (0700, empty at the start, emptied after the job and kept for a later one when the
//!   kernel proved the job's processes gone, see `slots`) and the usual devices, plus any
//!   `allow_write` path; it reads and executes everywhere except vigil's data dir and the deny
//!   list ([`default_deny_read`] plus `deny_read`); where the ABI has signal scoping (6), it
//!   cannot signal any process outside its own domain, vigil included. Network on.
//! - `strict`: `workspace` plus no network (a seccomp filter refuses socket(2) for any family
//!   but AF_UNIX; Landlock's TCP bind/connect rules too where the ABI has them, and abstract
//!   UNIX socket scoping) and no io_uring (io_uring_setup/enter/register refused: its
//!   operations bypass seccomp).
//! - `off`: no sandbox.
//!
//! Landlock denies what a ruleset handles and no rule allows, and a rule on a directory grants
//! everything beneath it. "Read everywhere except X" is therefore a set of read rules on every
//! entry of `/` and, along the path down to each denied X, on every sibling of that path, but
//! never on X or a directory holding X. The directories along that path cannot themselves be
//! listed (`ls /` fails while a path beneath `/` is denied); what lies in them opens as usual.
//!
//! Everything (the ruleset fd, the BPF program, the TMPDIR) is prepared in the parent before
//! the fork (`Executor::prepare_sandbox`); the child makes two system calls
//! (`landlock_restrict_self`, `prctl(PR_SET_SECCOMP)`) after `no_new_privs`.
mod landlock_rules;
mod seccomp;
pub(crate) mod slots;

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::enforcement::{LimitEnforcement, Strength};
use super::ExecError;

mod executor;
mod labels;

pub use executor::SandboxReport;
pub(crate) use executor::{on_devpts, refuse_terminals_dir};
pub use labels::landlock_rights;
pub(crate) use landlock_rules::ReadRules;
pub use landlock_rules::{kernel_abi, read_rule_paths};

/// The seccomp program `strict` installs in each job (classic BPF, as `PR_SET_SECCOMP` takes
/// it), for measuring what the kernel charges a process for it apart from vigil
/// (benches/exec_sandbox.rs).
pub fn strict_seccomp_program() -> Result<Vec<libc::sock_filter>, ExecError> {
    seccomp::strict_program()
}
pub(crate) use slots::TmpSlots;

/// The executor's cache of read rules (see [`ReadRules`]).
pub(crate) type ReadRulesCache = Mutex<Option<Arc<ReadRules>>>;

/// Environment variable that lowers the Landlock ABI vigil uses (`0`: as if the kernel had
/// no Landlock): how the fallback labelling is tested on a newer kernel. Never raises it.
pub const FORCE_ABI_ENV: &str = "VIGIL_SANDBOX_FORCE_ABI";

/// Landlock ABI with signal scoping (Linux 6.12).
pub const ABI_SCOPE: i32 = 6;
/// Landlock ABI with TCP bind/connect rules (Linux 6.7).
pub const ABI_NET: i32 = 4;
/// Landlock ABI that handles truncate(2) (Linux 6.2).
pub const ABI_TRUNCATE: i32 = 3;

/// How a process job is confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// No sandbox.
    Off,
    /// Writes beneath the root, TMPDIR and devices; reads all but the data dir and deny list.
    Workspace,
    /// `workspace` without network and io_uring.
    Strict,
}

impl SandboxMode {
    /// `off`, `workspace`, `strict`.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Off => "off",
            SandboxMode::Workspace => "workspace",
            SandboxMode::Strict => "strict",
        }
    }

    /// The mode named `s`.
    pub fn parse(s: &str) -> Option<SandboxMode> {
        match s {
            "off" => Some(SandboxMode::Off),
            "workspace" => Some(SandboxMode::Workspace),
            "strict" => Some(SandboxMode::Strict),
            _ => None,
        }
    }

    /// Order of strength: off < workspace < strict.
    pub fn rank(self) -> u8 {
        match self {
            SandboxMode::Off => 0,
            SandboxMode::Workspace => 1,
            SandboxMode::Strict => 2,
        }
    }
}

/// What a job asks of the sandbox (part of its [`super::Limits`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxRequest {
    /// The mode; `None`: the executor's default.
    pub mode: Option<SandboxMode>,
    /// Further directories (or files) the job may write beneath.
    pub allow_write: Vec<PathBuf>,
    /// Further paths the job may not read.
    pub deny_read: Vec<PathBuf>,
}

/// The executor's sandbox settings.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// Mode of a job that names none (`None`: `off`).
    pub default_mode: Option<SandboxMode>,
    /// The weakest mode a job may ask for: a weaker request is raised to it (and the record
    /// says so).
    pub floor: Option<SandboxMode>,
    /// vigil's data dir: never readable nor writable by a sandboxed job. The private TMPDIRs
    /// live in its `tmp/`.
    pub data_dir: Option<PathBuf>,
    /// Paths no sandboxed job may read, beyond the data dir; `None`: [`default_deny_read`].
    pub deny_read: Option<Vec<PathBuf>>,
    /// Paths every sandboxed job may also write beneath (a server's defaults).
    pub allow_write: Vec<PathBuf>,
    /// Where a job's writable paths (its root first) must lie, checked on what the sandbox
    /// opened for its rules, not on a path that may change after a check: a server's root and
    /// `--allow-write` paths under its floor (empty: no bound).
    pub write_bounds: Vec<PathBuf>,
    /// Use at most this Landlock ABI (0: none); the environment's [`FORCE_ABI_ENV`] also lowers.
    pub force_abi: Option<i32>,
}

/// The mode a host should use by default: `workspace` where the kernel has Landlock.
pub fn host_default_mode() -> SandboxMode {
    if effective_abi(None) >= 1 {
        SandboxMode::Workspace
    } else {
        SandboxMode::Off
    }
}

/// The Landlock ABI vigil uses here: the kernel's, lowered by `force` and [`FORCE_ABI_ENV`].
pub fn effective_abi(force: Option<i32>) -> i32 {
    let mut abi = kernel_abi();
    if let Some(f) = force {
        abi = abi.min(f.max(0));
    }
    if let Some(f) = std::env::var(FORCE_ABI_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok())
    {
        abi = abi.min(f.max(0));
    }
    abi
}

/// The home directory of the user vigil runs as (from the password database, not `$HOME`):
/// the entry [`RunAs::current`](crate::exec::identity::RunAs::current) looks up once per
/// process anyway (every process job's record names its user), so no second lookup.
fn user_home() -> Option<PathBuf> {
    crate::exec::identity::RunAs::current().home
}

/// Credentials beneath the home directory that no sandboxed job reads by default.
pub const DEFAULT_DENY_READ_HOME: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".config/gcloud",
    ".kube",
    ".docker/config.json",
    ".netrc",
    ".git-credentials",
    ".config/gh",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    ".cargo/credentials.toml",
    ".vault-token",
];

/// The default deny list: [`DEFAULT_DENY_READ_HOME`] beneath the home of the user the job
/// runs as.
pub fn default_deny_read() -> Vec<PathBuf> {
    static DEFAULT: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| match user_home() {
            Some(h) => DEFAULT_DENY_READ_HOME.iter().map(|p| h.join(p)).collect(),
            None => Vec::new(),
        })
        .clone()
}

/// `p` made absolute against `base` and cleaned of `.` and `..` without touching the disk.
pub fn lexical_absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Checks that a process job's working directory lies beneath its root: lexically, then (when
/// it exists) after resolving symlinks. A directory that does not exist is left to the child's
/// chdir, which fails.
pub fn check_cwd(root: &Path, cwd: &Path) -> Result<PathBuf, ExecError> {
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let root_lex = lexical_absolute(&here, root);
    let root_c = fs::canonicalize(root).unwrap_or_else(|_| root_lex.clone());
    let reject = |why: &str| ExecError::PathRejected {
        path: cwd.display().to_string(),
        reason: format!("cwd {why} the job's root {}", root_c.display()),
    };
    let lex = lexical_absolute(&here, cwd);
    if !lex.starts_with(&root_lex) && !lex.starts_with(&root_c) {
        return Err(reject("lies outside"));
    }
    match fs::canonicalize(cwd) {
        Ok(c) if c.starts_with(&root_c) => Ok(c),
        Ok(_) => Err(reject("resolves outside")),
        Err(_) => Ok(cwd.to_path_buf()),
    }
}

/// The rules of one job, resolved: what the parent builds and the record reports.
#[derive(Debug)]
pub(crate) struct ResolvedSandbox {
    pub mode: SandboxMode,
    /// The mode asked for, when the floor raised it.
    pub raised_from: Option<SandboxMode>,
    pub abi: i32,
    pub writable: Vec<PathBuf>,
    pub denied: Vec<PathBuf>,
    /// Denied paths beneath a writable one: Landlock cannot deny them.
    pub denied_unheld: Vec<PathBuf>,
    pub seccomp: bool,
}

/// What the child applies: the Landlock ruleset fd and the seccomp program, and the job's
/// TMPDIR ([`slots::TmpSlot`]): removed if this is dropped, or handed back to the executor
/// after the job ([`TmpSlots::release`]).
pub(crate) struct PreparedSandbox {
    pub ruleset: Option<Arc<OwnedFd>>,
    /// The device rules' Landlock rights in this ruleset's ABI (for a devpts instance the
    /// child adds: [`crate::exec::spawn`]'s private terminals).
    pub device_access: u64,
    pub bpf: Vec<libc::sock_filter>,
    pub tmpdir: Option<slots::TmpSlot>,
}

impl PreparedSandbox {
    /// The ruleset fd for the child (-1: none).
    pub fn ruleset_fd(&self) -> i32 {
        self.ruleset.as_ref().map_or(-1, |f| f.as_raw_fd())
    }
}

impl Drop for PreparedSandbox {
    fn drop(&mut self) {
        if let Some(t) = self.tmpdir.take() {
            remove_tree(&t.path);
        }
    }
}

/// Removes a job's TMPDIR, making directories the job left unwritable writable first. The
/// walk goes through directory descriptors opened without following symlinks, so a job that
/// swaps a directory for a symlink meanwhile cannot turn the chmod onto a path outside.
fn remove_tree(dir: &Path) {
    if fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return;
    }
    /// Opens directory `name` beneath `at` (or `name` itself, `at` < 0) without following a
    /// symlink, makes it 0700 through its descriptor and does the same beneath it.
    fn open_up(at: libc::c_int, name: &std::ffi::CStr, depth: usize) {
        if depth > 256 {
            return;
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let base = if at < 0 { libc::AT_FDCWD } else { at };
        // SAFETY: openat with a valid directory fd (or AT_FDCWD) and a NUL-terminated name.
        let fd = unsafe { libc::openat(base, name.as_ptr(), flags) };
        if fd < 0 {
            return; // Not a directory (or a symlink), or unreadable: nothing to open up here.
        }
        // SAFETY: `fd` was just opened and is owned here.
        let dir = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: fchmod on a descriptor we own.
        unsafe { libc::fchmod(dir.as_raw_fd(), 0o700) };
        // The entries, listed through the descriptor (its /proc link is the directory itself).
        let Ok(entries) = fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                use std::os::unix::ffi::OsStrExt;
                if let Ok(c) = std::ffi::CString::new(e.file_name().as_bytes()) {
                    open_up(dir.as_raw_fd(), &c, depth + 1);
                }
            }
        }
    }
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    if let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) {
        open_up(-1, &c, 0);
    }
    let _ = fs::remove_dir_all(dir);
}

/// The devices every sandboxed job may read and write.
pub const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/urandom",
    "/dev/random",
    "/dev/ptmx",
    "/dev/pts",
];

fn canonical_existing(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = paths
        .iter()
        // Most of a deny list is absent on a given machine: one lstat says so, where
        // canonicalizing costs a readlink per component.
        .filter(|p| fs::symlink_metadata(p).is_ok())
        .filter_map(|p| fs::canonicalize(p).ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `paths` made absolute and canonical where they exist; one that does not is its nearest
/// existing ancestor, canonical, with the rest of its components after it (`..` and `.`
/// resolved lexically), so it is denied when it appears.
fn canonical_planned(paths: &[PathBuf]) -> Vec<PathBuf> {
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut out: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            if let Ok(c) = fs::canonicalize(p) {
                return c;
            }
            let lex = lexical_absolute(&here, p);
            let mut base = lex.clone();
            let mut tail = Vec::new();
            while !base.exists() {
                match (base.file_name().map(|n| n.to_os_string()), base.parent()) {
                    (Some(name), Some(parent)) => {
                        tail.push(name);
                        base = parent.to_path_buf();
                    }
                    _ => break,
                }
            }
            let mut c = fs::canonicalize(&base).unwrap_or(base);
            for name in tail.iter().rev() {
                c.push(name);
            }
            c
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

impl SandboxConfig {
    /// What `file.read` and `file.write` may not touch under the job's sandbox: nothing with
    /// sandbox `off`; otherwise the same paths a process job may not read (the deny list, the
    /// data dir, the request's `deny_read`), canonical, where they exist now. vigil does these
    /// itself, so it holds them exactly, even beneath the job's root.
    pub(crate) fn file_denied(&self, req: Option<&SandboxRequest>) -> Vec<PathBuf> {
        if self.mode_for(req).0 == SandboxMode::Off {
            return Vec::new();
        }
        self.deny_list(req)
    }

    /// What a sandboxed job may not read, canonical. The default list names where credentials
    /// usually are: those that exist are denied. A path the operator or the request names is
    /// denied even if it does not exist yet (created during the job, it is still unreadable):
    /// its nearest existing directory is listed, and no rule names it. The data dir always.
    fn deny_list(&self, req: Option<&SandboxRequest>) -> Vec<PathBuf> {
        let mut deny: Vec<PathBuf> = match &self.deny_read {
            Some(list) => canonical_planned(list),
            None => canonical_existing(&default_deny_read()),
        };
        deny.extend(canonical_existing(
            &self.data_dir.iter().cloned().collect::<Vec<_>>(),
        ));
        deny.extend(canonical_planned(
            &req.map(|r| r.deny_read.clone()).unwrap_or_default(),
        ));
        deny.sort();
        deny.dedup();
        deny
    }

    /// The job's mode: its request or the default, raised to the floor.
    fn mode_for(&self, req: Option<&SandboxRequest>) -> (SandboxMode, Option<SandboxMode>) {
        let asked = req
            .and_then(|r| r.mode)
            .or(self.default_mode)
            .unwrap_or(SandboxMode::Off);
        match self.floor {
            Some(f) if f.rank() > asked.rank() => (f, Some(asked)),
            _ => (asked, None),
        }
    }

    /// Resolves the rules of a job rooted at `root` (no side effects).
    pub(crate) fn resolve(
        &self,
        req: Option<&SandboxRequest>,
        root: Option<&Path>,
    ) -> Result<ResolvedSandbox, ExecError> {
        let (mode, raised_from) = self.mode_for(req);
        let abi = effective_abi(self.force_abi);
        let mut writable = Vec::new();
        if let Some(r) = root {
            writable.push(fs::canonicalize(r).map_err(|e| ExecError::PathRejected {
                path: r.display().to_string(),
                reason: format!("the root cannot be resolved: {e}"),
            })?);
        }
        let asked = req.map(|r| r.allow_write.as_slice()).unwrap_or(&[]);
        for p in &self.allow_write {
            writable.push(fs::canonicalize(p).map_err(|e| ExecError::PathRejected {
                path: p.display().to_string(),
                reason: format!("allow_write path cannot be resolved: {e}"),
            })?);
        }
        // Under a floor (a server's `--sandbox`), a request may add writable paths only
        // beneath what it may write already (its root, the server's own): `allow_write: ["/"]`
        // would otherwise undo the floor.
        let granted = writable.clone();
        for p in asked {
            let c = fs::canonicalize(p).map_err(|e| ExecError::PathRejected {
                path: p.display().to_string(),
                reason: format!("allow_write path cannot be resolved: {e}"),
            })?;
            if self.floor.is_some() && !granted.iter().any(|g| c.starts_with(g)) {
                return Err(ExecError::PathRejected {
                    path: p.display().to_string(),
                    reason: "allow_write lies outside the job's root and the server's writable \
                             paths; a server's sandbox floor is the weakest a request gets"
                        .into(),
                });
            }
            writable.push(c);
        }
        let denied_all = self.deny_list(req);
        let (denied_unheld, denied): (Vec<_>, Vec<_>) = denied_all
            .into_iter()
            .partition(|d| writable.iter().any(|w| d.starts_with(w)));
        Ok(ResolvedSandbox {
            mode,
            raised_from,
            abi,
            writable,
            denied,
            denied_unheld,
            seccomp: seccomp::available(),
        })
    }
}

fn rule(
    name: &'static str,
    mode: SandboxMode,
    strength: Strength,
    held: bool,
    mechanism: String,
    reason: Option<String>,
) -> LimitEnforcement {
    LimitEnforcement {
        limit: name,
        requested: Some(mode.as_str().to_string()),
        strength,
        held,
        mechanism,
        not_held_reason: reason,
    }
}

#[cfg(test)]
mod tests;
