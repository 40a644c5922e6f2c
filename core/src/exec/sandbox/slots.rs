//! Reused TMPDIRs and rulesets: a job whose group the kernel proved empty at its end (its
//! cgroup leaf removed) leaves its TMPDIR, emptied, to a later job of the same executor, with
//! the Landlock ruleset built for it. A ruleset names the TMPDIR's inode, so a fresh directory
//! per job means a fresh ruleset per job: about 45 rules added, a directory made and removed.
//! Reusing both keeps the sandbox's cost per job to a few `statx` and the child's
//! `landlock_restrict_self`.
//!
//! What keeps a TMPDIR private: one job at a time holds a slot (it is out of the pool while
//! the job runs); it goes back only when the job's cgroup leaf was removed, which the kernel
//! refuses while any process is left in it, and only once its contents are gone; a slot
//! whose directory changed (another inode, a mode other than 0700, another owner, a symlink)
//! or could not be emptied is removed instead. Jobs without a cgroup (mode `none`, where no
//! kill is proven complete) and jobs run as another user never reuse a TMPDIR: theirs is
//! removed after the job, as before.
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::landlock_rules::ReadRules;
use super::{remove_tree, SandboxMode};

/// What every TMPDIR's name starts with (then the id of the job it was made for). Earlier
/// builds named theirs `job-ID` and took no lock on them: the sweep leaves those alone, since
/// such a vigil may still be running their jobs.
pub(crate) const TMPDIR_PREFIX: &str = "jobtmp-";
/// A TMPDIR's mode from its `mkdir` until it is locked and opened up to 0700: the sweep leaves
/// such a directory alone for [`MAKING_GRACE`].
pub(crate) const TMPDIR_MODE_MAKING: u32 = 0o500;
/// How long a TMPDIR still being made is left alone by the sweep (its maker died between
/// `mkdir` and `flock` if it is older).
const MAKING_GRACE: Duration = Duration::from_secs(60);

/// Opens directory `dir` (never through a symlink) and takes a `flock` on it: shared (a
/// TMPDIR in use, held by its maker) or exclusive without waiting (the sweep: no one holds
/// it).
pub(crate) fn lock_dir(dir: &Path, exclusive: bool) -> std::io::Result<OwnedFd> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)?;
    let op = if exclusive {
        libc::LOCK_EX | libc::LOCK_NB
    } else {
        libc::LOCK_SH
    };
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), op) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(OwnedFd::from(f))
}

/// Removes the TMPDIRs in `base` that no live vigil holds; returns what could not be removed.
/// A base that is a symlink, another user's, or writable by others is not swept: it was put
/// there by someone else (`/tmp/vigil-jobs-UID` by any local user, a data dir's `tmp/` swapped
/// while a job had opened it), and vigil would remove the `jobtmp-*` trees it points at.
pub(crate) fn sweep(base: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::symlink_metadata(base) else {
        return Vec::new();
    };
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return vec![format!(
            "{} was not swept: it is not a directory of uid {uid} that only it may write (a \
             symlink, or planted by someone else?); remove it",
            base.display()
        )];
    }
    let Ok(entries) = fs::read_dir(base) else {
        return Vec::new();
    };
    let mut failed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(TMPDIR_PREFIX) {
            continue;
        }
        let path = e.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let making = meta.mode() & 0o7777 == TMPDIR_MODE_MAKING;
        let young = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_none_or(|age| age < MAKING_GRACE);
        if making && young {
            continue;
        }
        // Held by a live vigil: in use, or kept for its next job.
        let Ok(lock) = lock_dir(&path, true) else {
            continue;
        };
        remove_tree(&path);
        drop(lock);
        if fs::symlink_metadata(&path).is_ok() {
            failed.push(format!(
                "the TMPDIR {} of a vigil that is gone could not be removed",
                path.display()
            ));
        }
    }
    failed
}

/// Free slots kept per executor; one more is removed at release.
const SLOTS_KEPT: usize = 16;
/// Rulesets kept per slot (one per mode and root in use), the oldest dropped first.
const RULESETS_KEPT: usize = 4;
/// Jobs a kept ruleset serves before it is built anew: a root job's child adds a rule for its
/// own devpts instance to the ruleset it applies (see `spawn`'s private terminals), so a kept
/// ruleset grows by one (dead) rule per such job, and every domain made from it copies them.
const RULESET_USES_MAX: u32 = 16;

/// What a cached ruleset was built for.
#[derive(Debug)]
pub(crate) struct RulesetKey {
    pub mode: SandboxMode,
    pub abi: i32,
    /// The writable paths, canonical, and the (device, inode) each had when the ruleset was
    /// built: a root removed and made again at the same path is another inode.
    pub writable: Vec<(PathBuf, Option<(u64, u64)>)>,
    /// The read rules it holds (compared by identity: rebuilt read rules, another ruleset).
    pub reads: Arc<ReadRules>,
}

impl RulesetKey {
    /// The key of a ruleset whose writable rules are built from `opened`: the same
    /// descriptors the stamps are taken from, so a path renamed in between cannot give a key
    /// of one inode to rules of another.
    pub(crate) fn new(
        mode: SandboxMode,
        abi: i32,
        writable: &[PathBuf],
        opened: &[landlock::PathFd],
        reads: &Arc<ReadRules>,
    ) -> RulesetKey {
        RulesetKey {
            mode,
            abi,
            writable: writable
                .iter()
                .zip(opened)
                .map(|(p, fd)| (p.clone(), fd_dev_ino(fd)))
                .collect(),
            reads: Arc::clone(reads),
        }
    }

    /// The key the rules of `writable` would have now (paths stat'ed): compared with a kept
    /// key, a root removed and made again at the same path is another inode.
    pub(crate) fn current(
        mode: SandboxMode,
        abi: i32,
        writable: &[PathBuf],
        reads: &Arc<ReadRules>,
    ) -> RulesetKey {
        RulesetKey {
            mode,
            abi,
            writable: writable.iter().map(|p| (p.clone(), dev_ino(p))).collect(),
            reads: Arc::clone(reads),
        }
    }

    /// `newer` is for the same mode and paths, so this one is stale.
    fn replaced_by(&self, newer: &RulesetKey) -> bool {
        self.mode == newer.mode
            && self.abi == newer.abi
            && self.writable.len() == newer.writable.len()
            && self
                .writable
                .iter()
                .zip(&newer.writable)
                .all(|((a, _), (b, _))| a == b)
    }

    fn same(&self, other: &RulesetKey) -> bool {
        self.mode == other.mode
            && self.abi == other.abi
            && self.writable == other.writable
            && Arc::ptr_eq(&self.reads, &other.reads)
    }
}

fn dev_ino(p: &Path) -> Option<(u64, u64)> {
    fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

fn fd_dev_ino(fd: &landlock::PathFd) -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    // SAFETY: a zeroed stat is a valid out-parameter for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor `fd` owns (O_PATH descriptors may be fstat'ed).
    let ok = unsafe { libc::fstat(fd.as_fd().as_raw_fd(), &mut st) } == 0;
    ok.then_some((st.st_dev, st.st_ino))
}

/// A job's TMPDIR and, once built, the ruleset that names it.
#[derive(Debug)]
pub(crate) struct TmpSlot {
    pub path: PathBuf,
    /// (device, inode) of the directory when it was made.
    id: Option<(u64, u64)>,
    /// May go back to the pool after the job (vigil's own user, and made for reuse).
    pub reusable: bool,
    /// The shared `flock` that marks the directory in use, released after its removal.
    _lock: OwnedFd,
    rulesets: Vec<(RulesetKey, Arc<OwnedFd>, u32)>,
}

impl TmpSlot {
    /// A slot for a directory just made at `path`, held by `lock` ([`lock_dir`]).
    pub(crate) fn made(path: PathBuf, lock: OwnedFd, reusable: bool) -> TmpSlot {
        let id = fs::symlink_metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        TmpSlot {
            path,
            id,
            reusable,
            _lock: lock,
            rulesets: Vec::new(),
        }
    }

    /// The cached ruleset built for `key`, if any (one that served [`RULESET_USES_MAX`] jobs
    /// is dropped instead).
    pub(crate) fn ruleset_for(&mut self, key: &RulesetKey) -> Option<Arc<OwnedFd>> {
        let at = self.rulesets.iter().position(|(k, _, _)| k.same(key))?;
        if self.rulesets[at].2 >= RULESET_USES_MAX {
            self.rulesets.remove(at);
            return None;
        }
        self.rulesets[at].2 += 1;
        Some(Arc::clone(&self.rulesets[at].1))
    }

    pub(crate) fn keep_ruleset(&mut self, key: RulesetKey, fd: Arc<OwnedFd>) {
        // Rulesets of stale read rules or writable paths are never matched again.
        self.rulesets.retain(|(k, _, _)| !k.replaced_by(&key));
        if self.rulesets.len() >= RULESETS_KEPT {
            self.rulesets.remove(0);
        }
        self.rulesets.push((key, fd, 1));
    }

    /// The directory is still the one made for this slot: same inode, a directory (not a
    /// symlink) of vigil's user, mode 0700, and no extended attribute a job can set (a
    /// `user.*` note or an ACL, default or not, would reach the next job).
    fn intact(&self) -> bool {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        fs::symlink_metadata(&self.path).is_ok_and(|m| {
            m.file_type().is_dir()
                && Some((m.dev(), m.ino())) == self.id
                && m.uid() == uid
                && m.mode() & 0o7777 == 0o700
        }) && !has_job_xattrs(&self.path)
    }

    /// Empties the directory; true when it is intact and empty afterwards.
    fn empty(&self) -> bool {
        if !self.intact() {
            return false;
        }
        let Ok(entries) = fs::read_dir(&self.path) else {
            return false;
        };
        let mut any = false;
        for e in entries {
            let Ok(e) = e else { return false };
            any = true;
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&p);
            } else if fs::remove_file(&p).is_err() {
                return false;
            }
        }
        // Anything left (an entry that resisted removal) and the slot is not reused.
        !any || fs::read_dir(&self.path).is_ok_and(|mut r| r.next().is_none())
    }
}

/// Whether `path` carries an extended attribute other than the `security.*` ones a security
/// module sets (which a job cannot); unreadable counts as carrying one.
fn has_job_xattrs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    let mut names = vec![0u8; 4096];
    // SAFETY: llistxattr writes at most `names.len()` bytes into `names`.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        let unsupported = std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOTSUP);
        return !unsupported;
    }
    names[..n as usize]
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .any(|name| !name.starts_with(b"security."))
}

/// The executor's free slots.
#[derive(Debug, Default)]
pub(crate) struct TmpSlots {
    free: Mutex<Vec<TmpSlot>>,
}

impl TmpSlots {
    /// A free slot whose directory is intact, if any (one that is not is removed).
    pub(crate) fn take(&self) -> Option<TmpSlot> {
        loop {
            let slot = self.lock().pop()?;
            if slot.intact() {
                return Some(slot);
            }
            remove_tree(&slot.path);
        }
    }

    /// Returns a slot after its job: emptied and pooled when the job's processes are proven
    /// gone (`group_empty`), else removed.
    pub(crate) fn release(&self, slot: TmpSlot, group_empty: bool) {
        if !(slot.reusable && group_empty && slot.empty()) {
            remove_tree(&slot.path);
            return;
        }
        let mut free = self.lock();
        if free.len() >= SLOTS_KEPT {
            drop(free);
            remove_tree(&slot.path);
        } else {
            free.push(slot);
        }
    }

    /// Removes every pooled slot's directory.
    pub(crate) fn remove_all(&self) {
        let free = std::mem::take(&mut *self.lock());
        for slot in free {
            remove_tree(&slot.path);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TmpSlot>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for TmpSlots {
    fn drop(&mut self) {
        self.remove_all();
    }
}

#[cfg(test)]
mod sweep_tests {
    use super::*;

    #[test]
    fn a_base_that_is_a_symlink_is_not_swept_and_what_it_points_at_stays() {
        let dir = std::env::temp_dir().join(format!("vigil-sweep-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let elsewhere = dir.join("elsewhere");
        fs::create_dir_all(elsewhere.join(format!("{TMPDIR_PREFIX}x-1/sub"))).unwrap();
        fs::write(
            elsewhere.join(format!("{TMPDIR_PREFIX}x-1/sub/precious")),
            "p",
        )
        .unwrap();
        // Old enough that a real base's sweep would remove it (not "being made").
        let base = dir.join("base");
        std::os::unix::fs::symlink(&elsewhere, &base).unwrap();
        let said = sweep(&base);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("was not swept"), "{said:?}");
        assert!(elsewhere
            .join(format!("{TMPDIR_PREFIX}x-1/sub/precious"))
            .exists());
        // The real directory itself is swept (the control).
        let said = sweep(&elsewhere);
        assert!(said.is_empty(), "{said:?}");
        assert!(!elsewhere.join(format!("{TMPDIR_PREFIX}x-1")).exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
