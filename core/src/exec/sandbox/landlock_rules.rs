//! The Landlock side of the sandbox: the kernel's ABI, the read rules of "everywhere except
//! the denied paths", and the ruleset built before the fork.
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, Scope, ABI,
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
    read_rule_walk(denied)
        .0
        .into_iter()
        .map(|r| r.path)
        .collect()
}

/// A path that gets a read rule.
struct RulePath {
    path: PathBuf,
    /// Whether it is a directory, when the listing said so (not for symlinks, whose target
    /// decides): one `stat` less per rule.
    dir: Option<bool>,
    /// A symlink's target, opened when it was judged (the rule's descriptor: the judged
    /// target is the one the rule names).
    opened: Option<PathFd>,
}

/// [`read_rule_paths`] and the directories it listed to find them.
fn read_rule_walk(denied: &[PathBuf]) -> (Vec<RulePath>, Vec<PathBuf>) {
    let mut out = Vec::new();
    let mut walked = Vec::new();
    if denied.is_empty() {
        out.push(RulePath {
            path: PathBuf::from("/"),
            dir: Some(true),
            opened: None,
        });
        return (out, walked);
    }
    if denied.iter().any(|d| d == Path::new("/")) {
        return (out, walked);
    }
    descend(Path::new("/"), denied, &mut out, &mut walked, 0);
    (out, walked)
}

/// What says a directory's entries are unchanged: device, inode, mtime (s, ns).
type DirStamp = (u64, u64, i64, i64);

fn stamp(p: &Path) -> Option<DirStamp> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec()))
}

/// The read rules of one deny list, opened (O_PATH) once and reused by every job while the
/// directories listed to find them are unchanged (same inode and mtime): listing `/` and the
/// directories down to each denied path, and opening every entry, costs far more than a spawn.
#[derive(Debug)]
pub(crate) struct ReadRules {
    denied: Vec<PathBuf>,
    walked: Vec<(PathBuf, Option<DirStamp>)>,
    /// Each rule's fd and whether it is a directory (files take file rights only).
    rules: Vec<(PathFd, bool)>,
}

impl ReadRules {
    pub(crate) fn build(denied: &[PathBuf]) -> ReadRules {
        // Stamps first: a change made while listing shows as stale on the next job.
        let (paths, walked) = read_rule_walk(denied);
        crate::phase::mark("rr_walk");
        let walked: Vec<_> = walked
            .into_iter()
            .map(|d| {
                let s = stamp(&d);
                (d, s)
            })
            .collect();
        crate::phase::mark("rr_stamps");
        let rules = paths
            .into_iter()
            .filter_map(|r| {
                let fd = match r.opened {
                    Some(fd) => fd,
                    None => PathFd::new(&r.path).ok()?,
                };
                let dir = r.dir.unwrap_or_else(|| fd_is_dir(&fd));
                Some((fd, dir))
            })
            .collect();
        crate::phase::mark("rr_open");
        ReadRules {
            denied: denied.to_vec(),
            walked,
            rules,
        }
    }

    /// Still right for `denied`: the same list, and no listed directory changed.
    pub(crate) fn fresh(&self, denied: &[PathBuf]) -> bool {
        self.denied == denied && self.walked.iter().all(|(d, s)| stamp(d) == *s)
    }
}

/// Deepest directory level descended (a deny list of absurd depth stops here, denying more).
const DESCEND_MAX: usize = 64;

fn descend(
    dir: &Path,
    denied: &[PathBuf],
    out: &mut Vec<RulePath>,
    walked: &mut Vec<PathBuf>,
    depth: usize,
) {
    if depth > DESCEND_MAX {
        return;
    }
    walked.push(dir.to_path_buf());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let file_type = e.file_type().ok();
        let is_link = file_type.is_some_and(|t| t.is_symlink());
        if is_link {
            // Opened through the link: where the descriptor lies, as the kernel names it, is
            // the link's canonical target (one open and one readlink, where canonicalizing
            // reads each component's link). A dangling link gets no rule.
            let Ok(fd) = PathFd::new(&p) else {
                continue;
            };
            let Some(target) = fd_path(&fd) else {
                continue;
            };
            let dangerous = denied
                .iter()
                .any(|d| beneath_or_same(&target, d) || beneath_or_same(d, &target));
            if !dangerous {
                out.push(RulePath {
                    path: p,
                    dir: None,
                    opened: Some(fd),
                });
            }
            continue;
        }
        if denied.iter().any(|d| same_path(d, &p)) {
            continue;
        }
        if denied.iter().any(|d| beneath_or_same(d, &p)) {
            descend(&p, denied, out, walked, depth + 1);
        } else {
            let dir = file_type.map(|t| t.is_dir());
            out.push(RulePath {
                path: p,
                dir,
                opened: None,
            });
        }
    }
}

/// Where `fd` lies, as the kernel names it (`/proc/self/fd`); `None` for a file that was
/// removed or lies outside this process's root.
fn fd_path(fd: &PathFd) -> Option<PathBuf> {
    use std::os::fd::{AsFd, AsRawFd};
    let at = fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).ok()?;
    at.is_absolute().then_some(at)
}

/// Whether `fd` is a directory (`fstat`; an O_PATH descriptor may be stat'ed).
fn fd_is_dir(fd: &PathFd) -> bool {
    use std::os::fd::{AsFd, AsRawFd};
    // SAFETY: a zeroed stat is a valid out-parameter for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor `fd` owns.
    let ok = unsafe { libc::fstat(fd.as_fd().as_raw_fd(), &mut st) } == 0;
    ok && st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// `a` and `b` are the same path, byte for byte: both are canonical (absolute, no `.`, `..`,
/// repeated or trailing `/`), so comparing their bytes is comparing their components, without
/// parsing them (a listing compares each entry with each denied path).
fn same_path(a: &Path, b: &Path) -> bool {
    a.as_os_str().as_bytes() == b.as_os_str().as_bytes()
}

/// `a` is `b` or lies beneath it (`Path::starts_with` on canonical paths, by bytes): `b` is a
/// prefix of `a` that ends at a component's end.
fn beneath_or_same(a: &Path, b: &Path) -> bool {
    let (a, b) = (a.as_os_str().as_bytes(), b.as_os_str().as_bytes());
    a.starts_with(b) && (a.len() == b.len() || b.ends_with(b"/") || a[b.len()] == b'/')
}

fn ll_err(e: impl std::fmt::Display) -> ExecError {
    ExecError::Io {
        context: format!("building the job's Landlock ruleset: {e}"),
        source: std::io::Error::other("landlock"),
    }
}

/// The writable paths, opened (O_PATH) for their rules.
pub(super) fn open_writable(
    writable: &[PathBuf],
    bounds: &[PathBuf],
) -> Result<Vec<PathFd>, ExecError> {
    writable
        .iter()
        .map(|p| {
            let fd = PathFd::new(p).map_err(ll_err)?;
            if !bounds.is_empty() {
                within_bounds(p, &fd, bounds)?;
            }
            Ok(fd)
        })
        .collect()
}

/// Where the opened `fd` (for writable path `p`) lies, as the kernel names it, must be beneath
/// one of `bounds`: the rule is bound to this inode, so a directory swapped for a symlink
/// after any earlier check of the path cannot widen it.
fn within_bounds(p: &Path, fd: &PathFd, bounds: &[PathBuf]) -> Result<(), ExecError> {
    use std::os::fd::{AsFd, AsRawFd};
    let at = fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).map_err(|e| {
        ExecError::PathRejected {
            path: p.display().to_string(),
            reason: format!("cannot tell where it lies: {e}"),
        }
    })?;
    if bounds.iter().any(|b| at.starts_with(b)) {
        return Ok(());
    }
    Err(ExecError::PathRejected {
        path: p.display().to_string(),
        reason: format!(
            "a writable path of the job lies at {}, outside the server's root and its writable \
             paths",
            at.display()
        ),
    })
}

/// The rights the device rules give (files' rights and listing), as the bits of ABI `abi`.
pub(super) fn device_access(abi: i32) -> u64 {
    (AccessFs::from_file(ABI::from(abi)) | AccessFs::ReadDir).bits()
}

/// The job's ruleset, created (not applied): the child applies its fd. `writable` are the
/// job's writable paths opened by [`open_writable`].
pub(super) fn build(
    r: &ResolvedSandbox,
    reads: &ReadRules,
    writable: &[PathFd],
    tmp: &Path,
) -> Result<OwnedFd, ExecError> {
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
    debug_assert_eq!(dev.bits(), device_access(r.abi));
    let file_read = read & AccessFs::from_file(abi);
    let created = rs
        .create()
        .map_err(ll_err)?
        .add_rules(reads.rules.iter().map(|(fd, dir)| {
            Ok::<_, landlock::RulesetError>(PathBeneath::new(
                fd,
                if *dir { read } else { file_read },
            ))
        }))
        .map_err(ll_err)?
        .add_rules(
            writable
                .iter()
                .map(|fd| Ok::<_, landlock::RulesetError>(PathBeneath::new(fd, all))),
        )
        .map_err(ll_err)?
        .add_rules(path_beneath_rules([tmp], all))
        .map_err(ll_err)?
        .add_rules(path_beneath_rules(DEVICES, dev))
        .map_err(ll_err)?;
    Option::<OwnedFd>::from(created).ok_or_else(|| ll_err("the kernel returned no ruleset"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_beneath_another_only_at_a_components_end() {
        let p = |s: &str| PathBuf::from(s);
        assert!(beneath_or_same(&p("/a/b"), &p("/a/b")));
        assert!(beneath_or_same(&p("/a/b/c"), &p("/a/b")));
        assert!(beneath_or_same(&p("/a/b"), &p("/")));
        assert!(!beneath_or_same(&p("/a/bc"), &p("/a/b")));
        assert!(!beneath_or_same(&p("/a"), &p("/a/b")));
        assert!(same_path(&p("/a/b"), &p("/a/b")));
        assert!(!same_path(&p("/a/b"), &p("/a/bc")));
        // The same answers as Path::starts_with, on canonical paths.
        for (a, b) in [
            ("/x/y", "/x"),
            ("/x", "/x/y"),
            ("/xy", "/x"),
            ("/", "/"),
            ("/x", "/"),
        ] {
            assert_eq!(
                beneath_or_same(&p(a), &p(b)),
                p(a).starts_with(p(b)),
                "{a} {b}"
            );
        }
    }

    #[test]
    fn a_descriptors_path_is_its_canonical_target() {
        let t = std::env::temp_dir().join(format!("vigil-fdpath-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        fs::create_dir_all(t.join("real")).unwrap();
        std::os::unix::fs::symlink(t.join("real"), t.join("link")).unwrap();
        let fd = PathFd::new(t.join("link")).unwrap();
        assert_eq!(
            fd_path(&fd),
            Some(fs::canonicalize(t.join("real")).unwrap())
        );
        assert!(fd_is_dir(&fd));
        fs::remove_dir_all(&t).unwrap();
    }
}
