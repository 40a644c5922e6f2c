//! The Landlock side of the sandbox: the kernel's ABI, the read rules of "everywhere except
//! the denied paths", and the ruleset built before the fork.
use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope, ABI,
};

use super::{ResolvedSandbox, SandboxMode, ABI_NET, ABI_SCOPE, DEVICES};
use crate::exec::ExecError;

/// landlock_create_ruleset's `LANDLOCK_CREATE_RULESET_VERSION`.
const CREATE_RULESET_VERSION: u32 = 1;

/// The Landlock ABI of the running kernel (0: none, or disabled at boot).
pub fn kernel_abi() -> i32 {
    static ABI_CACHE: OnceLock<i32> = OnceLock::new();
    *ABI_CACHE.get_or_init(|| {
        // SAFETY: the version query takes no attribute (NULL, 0) and returns an integer.
        let v = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<u8>(),
                0usize,
                CREATE_RULESET_VERSION,
            )
        };
        if v < 0 {
            0
        } else {
            v.min(i64::from(i32::MAX)) as i32
        }
    })
}

/// The paths that get read rules so that everything is readable except `denied` (canonical
/// paths): `/` itself when nothing is denied; otherwise every entry of each directory on the
/// way down to a denied path, except the denied path and the directories holding one, which
/// are descended into instead. A symlink is kept only when its target neither is nor holds
/// nor lies beneath a denied path (a rule follows it to its target).
pub fn read_rule_paths(denied: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if denied.is_empty() {
        out.push(PathBuf::from("/"));
        return out;
    }
    if denied.iter().any(|d| d == Path::new("/")) {
        return out;
    }
    descend(Path::new("/"), denied, &mut out, 0);
    out
}

/// Deepest directory level descended (a deny list of absurd depth stops here, denying more).
const DESCEND_MAX: usize = 64;

fn descend(dir: &Path, denied: &[PathBuf], out: &mut Vec<PathBuf>, depth: usize) {
    if depth > DESCEND_MAX {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let is_link = e.file_type().is_ok_and(|t| t.is_symlink());
        if is_link {
            let Ok(target) = fs::canonicalize(&p) else {
                continue;
            };
            let dangerous = denied
                .iter()
                .any(|d| target.starts_with(d) || d.starts_with(&target));
            if !dangerous {
                out.push(p);
            }
            continue;
        }
        if denied.iter().any(|d| d == &p) {
            continue;
        }
        if denied.iter().any(|d| d.starts_with(&p)) {
            descend(&p, denied, out, depth + 1);
        } else {
            out.push(p);
        }
    }
}

fn ll_err(e: impl std::fmt::Display) -> ExecError {
    ExecError::Io {
        context: format!("building the job's Landlock ruleset: {e}"),
        source: std::io::Error::other("landlock"),
    }
}

/// The job's ruleset, created (not applied): the child applies its fd.
pub(super) fn build(r: &ResolvedSandbox, tmp: &Path) -> Result<OwnedFd, ExecError> {
    let abi = ABI::from(r.abi);
    let strict = r.mode == SandboxMode::Strict;
    // Hard requirement: every right asked for is one this ABI has, and none is dropped quietly.
    let mut rs = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(ll_err)?;
    if strict && r.abi >= ABI_NET {
        rs = rs.handle_access(AccessNet::from_all(abi)).map_err(ll_err)?;
    }
    if r.abi >= ABI_SCOPE {
        rs = if strict {
            rs.scope(Scope::from_all(abi))
        } else {
            rs.scope(Scope::Signal)
        }
        .map_err(ll_err)?;
    }
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let dev = AccessFs::from_file(abi) | AccessFs::ReadDir;
    let created = rs
        .create()
        .map_err(ll_err)?
        .add_rules(path_beneath_rules(read_rule_paths(&r.denied), read))
        .map_err(ll_err)?
        .add_rules(path_beneath_rules(
            r.writable.iter().map(PathBuf::as_path).chain([tmp]),
            all,
        ))
        .map_err(ll_err)?
        .add_rules(path_beneath_rules(DEVICES, dev))
        .map_err(ll_err)?;
    Option::<OwnedFd>::from(created).ok_or_else(|| ll_err("the kernel returned no ruleset"))
}
