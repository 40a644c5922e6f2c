//! File access confined beneath a root directory, for the `file.read` and `file.write`
//! capabilities.
//!
//! Every path is relative to a root directory fd. Absolute paths and `..` components are refused
//! before any system call. Resolution is then done by the kernel: openat2 with
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, which follows symlinks only while they stay beneath
//! the root and never through /proc magic links, atomically with the open (no check-then-use
//! race). Where openat2 is missing, a component-wise walk opens each directory with
//! `O_NOFOLLOW | O_DIRECTORY` relative to the previous one and refuses every symlink — stricter
//! than openat2 (an in-root symlink is refused too), never looser.
//!
//! Only regular files are read or replaced. Opens use `O_NONBLOCK`, so a FIFO cannot hang the
//! open, and the type is checked on the opened fd (`fstat`), not on the path. Writes are atomic:
//! a temporary file in the same directory, fsync, `renameat` over the target, fsync of the
//! directory. `append` is the same atomic replacement with the old bytes copied first.
//! Replacing an existing file keeps its owner, group and permission bits (the temporary file is
//! given them with `fchown`/`fchmod` before the rename; setuid, setgid and sticky bits are
//! dropped); when they cannot be kept (not root, and the file belongs to someone else), the
//! write is refused and the file left as it was.
//!
//! A regular file with more than one hard link is refused for reading and writing unless the
//! request allows it ([`ConfinedRoot::allow_hardlinks`]): a link planted beneath the root may
//! share its inode with a file outside it (/etc/shadow), which no path check can see. Allowed,
//! a write replaces the directory entry and leaves the other links' file untouched.
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use super::ExecError;

/// linux/openat2.h `RESOLVE_NO_MAGICLINKS`.
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// linux/openat2.h `RESOLVE_BENEATH`.
const RESOLVE_BENEATH: u64 = 0x08;
/// openat2 returns EAGAIN when a concurrent rename could have let a `..` escape; retry this often.
const OPENAT2_RETRIES_MAX: u32 = 16;
/// Longest path accepted (bytes).
pub const PATH_BYTES_MAX: usize = 4096;
/// `file.read` returns at most this many bytes when the request says nothing.
pub const FILE_READ_BYTES_DEFAULT: u64 = 1 << 20;
/// Largest `max_bytes` a `file.read` may ask for.
pub const FILE_READ_BYTES_MAX: u64 = 64 << 20;
/// Largest file `file.write` produces (content, plus the old file in append mode).
pub const FILE_WRITE_BYTES_MAX: u64 = 64 << 20;

/// linux/openat2.h `struct open_how` (24 bytes, the first published size).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct OpenHow {
    /// open(2) flags.
    pub flags: u64,
    /// Mode for O_CREAT.
    pub mode: u64,
    /// RESOLVE_* flags.
    pub resolve: u64,
}
const _: () = assert!(std::mem::size_of::<OpenHow>() == 24);

/// A root directory that file capabilities may not leave.
#[derive(Debug)]
pub struct ConfinedRoot {
    dir: OwnedFd,
    display: String,
    use_openat2: bool,
    allow_hardlinks: bool,
    denied: Vec<Denied>,
}

/// A path file capabilities may not read or write (the data dir, the deny list): its canonical
/// path and its inode.
/// Entries searched at most in one denied directory for a hard-linked file's inode.
pub const LINKED_SEARCH_ENTRIES_MAX: usize = 50_000;

/// Whether the tree at `dir` (symlinks not followed, other file systems not entered) holds a
/// file with inode `id`; `None` when it has more than `max` entries.
fn holds_inode(dir: &std::path::Path, id: (u64, u64), max: usize) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let mut pending = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > max {
                return None;
            }
            let Ok(m) = e.metadata() else {
                continue;
            };
            if m.dev() != id.0 {
                continue;
            }
            if m.ino() == id.1 && !m.is_dir() {
                return Some(true);
            }
            if m.is_dir() {
                pending.push(e.path());
            }
        }
    }
    Some(false)
}

#[derive(Debug)]
struct Denied {
    path: std::path::PathBuf,
    id: (u64, u64),
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn reject(path: &str, reason: impl Into<String>) -> ExecError {
    ExecError::PathRejected {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Refuses paths that can never be beneath the root (absolute, `..`, empty, NUL), without
/// touching the file system.
pub fn check_path(path: &str) -> Result<(), ExecError> {
    components(path).map(|_| ())
}

/// Splits a request path into plain components, refusing absolute paths, `..`, NUL bytes and
/// empty paths before anything touches the file system.
fn components(path: &str) -> Result<Vec<&str>, ExecError> {
    if path.is_empty() {
        return Err(reject(path, "empty path"));
    }
    if path.len() > PATH_BYTES_MAX || path.contains('\0') {
        return Err(reject(path, "path too long or contains a NUL byte"));
    }
    if path.starts_with('/') {
        return Err(reject(
            path,
            "absolute paths are not allowed; paths are relative to the root",
        ));
    }
    let mut out = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => out.push(
                s.to_str()
                    .ok_or_else(|| reject(path, "path is not UTF-8"))?,
            ),
            Component::CurDir => {}
            Component::ParentDir => return Err(reject(path, "`..` is not allowed")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(reject(path, "absolute paths are not allowed"))
            }
        }
    }
    if out.is_empty() {
        return Err(reject(path, "path names the root itself, not a file"));
    }
    Ok(out)
}

fn map_open_error(path: &str, e: i32) -> ExecError {
    match e {
        libc::EXDEV => reject(path, "resolves outside the root"),
        libc::ELOOP => reject(path, "goes through a symlink that is not allowed (magic link, or symlinks refused by the fallback walk)"),
        libc::ENOTDIR => reject(path, "a component is not a directory (or is a symlink the walk refuses)"),
        libc::ENXIO => reject(path, "is a FIFO or socket with no peer, not a regular file"),
        _ => ExecError::Io { context: format!("open {path:?} beneath the root"), source: std::io::Error::from_raw_os_error(e) },
    }
}

fn fd_from(rc: libc::c_long) -> OwnedFd {
    // SAFETY: callers pass only non-negative fds just returned by the kernel.
    unsafe { OwnedFd::from_raw_fd(rc as i32) }
}

impl ConfinedRoot {
    /// Opens `root` as the confinement directory. `use_openat2` false forces the component walk.
    pub fn open(root: &Path, use_openat2: bool) -> Result<ConfinedRoot, ExecError> {
        let c = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| ExecError::InvalidRequest("root contains a NUL byte".into()))?;
        // SAFETY: valid C string.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(ExecError::Io {
                context: format!("open root directory {}", root.display()),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(ConfinedRoot {
            dir: fd_from(fd as libc::c_long),
            display: root.display().to_string(),
            use_openat2,
            allow_hardlinks: false,
            denied: Vec::new(),
        })
    }

    /// Opens the directory `rel` (relative, no `..`) beneath the root as an `O_PATH`
    /// descriptor, resolved as file paths are: what a process job's child enters with
    /// `fchdir`, so no rename or symlink swapped in after the check can move it out.
    pub fn open_dir(&self, rel: &str) -> Result<OwnedFd, ExecError> {
        let comps = if rel.is_empty() || rel == "." {
            Vec::new()
        } else {
            components(rel)?
        };
        if comps.is_empty() {
            // SAFETY: openat on the root fd this struct owns, a static C string.
            let fd = unsafe {
                libc::openat(
                    self.dir.as_raw_fd(),
                    c".".as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(reject(rel, format!("cannot open: errno {}", errno())));
            }
            return Ok(fd_from(fd as libc::c_long));
        }
        self.open_beneath(rel, &comps, libc::O_PATH | libc::O_DIRECTORY, 0)
    }

    /// Which resolver is in use: `openat2` or `walk`.
    pub fn resolver(&self) -> &'static str {
        if self.use_openat2 {
            "openat2(RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS)"
        } else {
            "component walk (O_NOFOLLOW, symlinks refused)"
        }
    }

    /// Opens `rel` beneath the root with `flags` (O_CLOEXEC|O_NOCTTY are always added).
    fn open_beneath(
        &self,
        path: &str,
        comps: &[&str],
        flags: i32,
        mode: u32,
    ) -> Result<OwnedFd, ExecError> {
        // openat2 refuses O_PATH with any flag but O_CLOEXEC, O_DIRECTORY and O_NOFOLLOW.
        let flags = if flags & libc::O_PATH != 0 {
            flags | libc::O_CLOEXEC
        } else {
            flags | libc::O_CLOEXEC | libc::O_NOCTTY
        };
        if self.use_openat2 {
            let rel =
                CString::new(comps.join("/")).map_err(|_| reject(path, "contains a NUL byte"))?;
            let how = OpenHow {
                flags: flags as u64,
                mode: mode as u64,
                resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
            };
            for _ in 0..OPENAT2_RETRIES_MAX {
                // SAFETY: valid dirfd, C string and open_how of its published size.
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_openat2,
                        self.dir.as_raw_fd(),
                        rel.as_ptr(),
                        &how as *const OpenHow,
                        std::mem::size_of::<OpenHow>(),
                    )
                };
                if rc >= 0 {
                    return Ok(fd_from(rc));
                }
                let e = errno();
                if e != libc::EAGAIN && e != libc::EINTR {
                    return Err(map_open_error(path, e));
                }
            }
            return Err(reject(path, "resolution kept racing with renames; refused"));
        }
        let (last, dirs) = comps
            .split_last()
            .ok_or_else(|| reject(path, "empty path"))?;
        let parent = self.walk_dirs(path, dirs)?;
        let c = CString::new(*last).map_err(|_| reject(path, "contains a NUL byte"))?;
        // SAFETY: valid dirfd and C string.
        let rc = unsafe {
            libc::openat(
                parent.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW,
                mode,
            )
        };
        if rc < 0 {
            return Err(map_open_error(path, errno()));
        }
        Ok(fd_from(rc as libc::c_long))
    }

    /// Opens each directory component with O_NOFOLLOW|O_DIRECTORY relative to the previous one.
    fn walk_dirs(&self, path: &str, dirs: &[&str]) -> Result<OwnedFd, ExecError> {
        // SAFETY: dup of an owned fd.
        let rc = unsafe { libc::fcntl(self.dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        if rc < 0 {
            return Err(ExecError::Io {
                context: "dup root fd".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        let mut cur = fd_from(rc as libc::c_long);
        for d in dirs {
            let c = CString::new(*d).map_err(|_| reject(path, "contains a NUL byte"))?;
            // SAFETY: valid dirfd and C string.
            let rc = unsafe {
                libc::openat(
                    cur.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            if rc < 0 {
                return Err(map_open_error(path, errno()));
            }
            cur = fd_from(rc as libc::c_long);
        }
        Ok(cur)
    }

    /// The directory holding the last component, opened beneath the root.
    fn open_parent(&self, path: &str, comps: &[&str]) -> Result<OwnedFd, ExecError> {
        let (_, dirs) = comps
            .split_last()
            .ok_or_else(|| reject(path, "empty path"))?;
        if dirs.is_empty() {
            return self.walk_dirs(path, &[]);
        }
        if self.use_openat2 {
            self.open_beneath(path, dirs, libc::O_RDONLY | libc::O_DIRECTORY, 0)
        } else {
            self.walk_dirs(path, dirs)
        }
    }

    /// Allows files with more than one hard link (refused by default).
    pub fn allow_hardlinks(mut self, allow: bool) -> ConfinedRoot {
        self.allow_hardlinks = allow;
        self
    }

    /// Refuses every file in or beneath `paths` (canonical paths, some perhaps not existing
    /// yet), for reading and for writing, wherever the root is.
    pub fn deny(mut self, paths: &[std::path::PathBuf]) -> ConfinedRoot {
        use std::os::unix::fs::MetadataExt;
        self.denied = paths
            .iter()
            .map(|p| Denied {
                path: p.clone(),
                // One that does not exist (yet) is refused by where it lies only.
                id: std::fs::metadata(p).map_or((u64::MAX, u64::MAX), |m| (m.dev(), m.ino())),
            })
            .collect();
        self
    }

    /// Refuses `fd` (the file read, or the directory a file is written in, with the name
    /// written and the inode of an existing target) when it lies in a denied path: by where
    /// the kernel says the descriptor is (`/proc/self/fd`), and by inode (the file, or the
    /// directory, is itself a denied one: a bind mount of it, say).
    fn check_denied(
        &self,
        path: &str,
        fd: &OwnedFd,
        name: Option<&str>,
        target: Option<(u64, u64)>,
    ) -> Result<(), ExecError> {
        if self.denied.is_empty() {
            return Ok(());
        }
        // SAFETY: zeroed stat out-parameter; a valid fd.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(reject(path, "cannot tell where it lies (fstat failed)"));
        }
        let own = (st.st_dev, st.st_ino);
        let at = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| reject(path, format!("cannot tell where it lies: {e}")))?;
        let at = match name {
            Some(n) => at.join(n),
            None => at,
        };
        for d in &self.denied {
            if at.starts_with(&d.path) || own == d.id || target == Some(d.id) {
                return Err(reject(
                    path,
                    format!(
                        "lies in {}, which jobs may not read or write (vigil's data dir or the \
                         sandbox's deny list)",
                        d.path.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A file with several hard links (allowed by the request) may be one of the files inside a
    /// denied directory (vigil's data dir, `~/.ssh`, ...), linked into the root from outside:
    /// its path and inode then say nothing. Each denied directory on the file's device is
    /// searched for its inode (without following symlinks), and the file is refused when it is
    /// there, or when the directory is too large to search whole
    /// ([`LINKED_SEARCH_ENTRIES_MAX`]).
    fn check_linked_denied(&self, path: &str, st: &libc::stat) -> Result<(), ExecError> {
        if st.st_nlink <= 1 {
            return Ok(());
        }
        use std::os::unix::fs::MetadataExt;
        let own = (st.st_dev, st.st_ino);
        for d in &self.denied {
            let Ok(meta) = std::fs::symlink_metadata(&d.path) else {
                continue;
            };
            if !meta.is_dir() || meta.dev() != own.0 {
                continue;
            }
            match holds_inode(&d.path, own, LINKED_SEARCH_ENTRIES_MAX) {
                Some(false) => {}
                Some(true) => {
                    return Err(reject(
                        path,
                        format!(
                            "is a hard link to a file in {}, which jobs may not read or write \
                             (vigil's data dir or the sandbox's deny list)",
                            d.path.display()
                        ),
                    ))
                }
                None => {
                    return Err(reject(
                        path,
                        format!(
                            "has {} hard links, and {} (which jobs may not read) is too large \
                             to tell whether it holds this file",
                            st.st_nlink,
                            d.path.display()
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Refuses a file with several hard links unless they are allowed.
    fn check_links(&self, path: &str, st: &libc::stat) -> Result<(), ExecError> {
        if st.st_nlink > 1 && !self.allow_hardlinks {
            return Err(reject(
                path,
                format!(
                    "has {} hard links (a link may share its file with one outside the root); \
                     set \"allow_hardlinks\": true to allow it",
                    st.st_nlink
                ),
            ));
        }
        Ok(())
    }

    /// Reads at most `max_bytes` of the regular file `path`. Returns the bytes, whether the file
    /// held more, and its size.
    pub fn read(&self, path: &str, max_bytes: u64) -> Result<(Vec<u8>, bool, u64), ExecError> {
        let comps = components(path)?;
        let fd = self.open_beneath(path, &comps, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
        let st = regular_stat(path, &fd)?;
        self.check_links(path, &st)?;
        self.check_denied(path, &fd, None, None)?;
        self.check_linked_denied(path, &st)?;
        let size = st.st_size as u64;
        let mut file = File::from(fd);
        let mut buf = Vec::with_capacity(size.min(max_bytes) as usize);
        (&mut file)
            .take(max_bytes)
            .read_to_end(&mut buf)
            .map_err(|e| ExecError::Io {
                context: format!("read {path:?}"),
                source: e,
            })?;
        let mut probe = [0u8; 1];
        let more =
            buf.len() as u64 == max_bytes && file.read(&mut probe).map(|n| n > 0).unwrap_or(false);
        Ok((buf, more, size))
    }

    /// Atomically replaces (or, with `append`, extends) the regular file `path` with `content`.
    /// Returns the new file size.
    pub fn write(&self, path: &str, content: &[u8], append: bool) -> Result<u64, ExecError> {
        let comps = components(path)?;
        let name = *comps.last().ok_or_else(|| reject(path, "empty path"))?;
        let parent = self.open_parent(path, &comps)?;
        let cname = CString::new(name).map_err(|_| reject(path, "contains a NUL byte"))?;
        self.check_denied(
            path,
            &parent,
            Some(name),
            stat_at(&parent, &cname).map(|st| (st.st_dev, st.st_ino)),
        )?;
        let (keep, mode, old) = self.existing_target(&parent, &cname, path, append)?;
        let total = (old.len() + content.len()) as u64;
        if total > FILE_WRITE_BYTES_MAX {
            return Err(ExecError::InvalidRequest(format!("{path:?}: result of {total} bytes exceeds the {FILE_WRITE_BYTES_MAX}-byte write limit")));
        }
        let target = Target {
            parent: &parent,
            name,
            cname: &cname,
            path,
        };
        target.replace(mode, keep, &[&old, content])?;
        Ok(total)
    }

    /// The owner and group a write keeps (for an existing target), the mode, and, for `append`,
    /// the bytes it extends: the existing target must be a regular file (never followed:
    /// AT_SYMLINK_NOFOLLOW) with a single link unless links are allowed; a new one gets 0644.
    fn existing_target(
        &self,
        parent: &OwnedFd,
        cname: &CString,
        path: &str,
        append: bool,
    ) -> Result<(Option<Owner>, libc::mode_t, Vec<u8>), ExecError> {
        let Some(st) = stat_at(parent, cname) else {
            return Ok((None, 0o644, Vec::new()));
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(reject(path, "target exists and is not a regular file"));
        }
        self.check_links(path, &st)?;
        let keep = Some((st.st_uid, st.st_gid));
        let mode = st.st_mode & 0o7777 & !0o7000;
        if !append {
            return Ok((keep, mode, Vec::new()));
        }
        let (bytes, more, _) = self.read(path, FILE_WRITE_BYTES_MAX)?;
        if more {
            return Err(reject(
                path,
                format!("file is larger than the {FILE_WRITE_BYTES_MAX}-byte append limit"),
            ));
        }
        Ok((keep, mode, bytes))
    }
    /// The root as given (for messages).
    pub fn display(&self) -> &str {
        &self.display
    }
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    (NEXT.fetch_add(1, Ordering::Relaxed) << 32) ^ nanos
}

/// The owner and group of a replaced file.
type Owner = (libc::uid_t, libc::gid_t);

/// Gives the temporary file the replaced file's owner, group and permission bits (nothing for a
/// new file, `keep` None). `fchown` runs only when they differ from the temporary file's own (it needs
/// privilege); `fchmod` always runs, after it (a chown clears setuid bits; the umask narrowed
/// the create mode).
fn keep_owner_and_mode(tmp: &File, keep: Option<Owner>, mode: libc::mode_t) -> std::io::Result<()> {
    let fd = tmp.as_raw_fd();
    // A new file keeps the create mode as the umask left it.
    let Some((uid, gid)) = keep else {
        return Ok(());
    };
    {
        // SAFETY: zeroed out-parameter of the right type.
        let mut cur: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on an fd the caller owns into a stat out-parameter of the right type.
        if unsafe { libc::fstat(fd, &mut cur) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fchown on an fd the caller owns.
        if (cur.st_uid, cur.st_gid) != (uid, gid) && unsafe { libc::fchown(fd, uid, gid) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: fchmod on an fd the caller owns.
    if unsafe { libc::fchmod(fd, mode) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The stat of `name` in `dir`, if it exists (never followed).
fn stat_at(dir: &OwnedFd, name: &CString) -> Option<libc::stat> {
    // SAFETY: zeroed stat out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid directory fd, a NUL-terminated name and a stat out-parameter.
    let found = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } == 0;
    found.then_some(st)
}

/// The stat of an opened file, refusing anything but a regular file.
fn regular_stat(path: &str, fd: &OwnedFd) -> Result<libc::stat, ExecError> {
    // SAFETY: zeroed out-parameter, owned fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on an fd owned by the caller into a stat out-parameter of the right type.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(ExecError::Io {
            context: format!("fstat {path:?}"),
            source: std::io::Error::last_os_error(),
        });
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(reject(path, "not a regular file"));
    }
    Ok(st)
}

/// The entry a file write replaces: its directory (an owned fd beneath the root) and name.
struct Target<'a> {
    parent: &'a OwnedFd,
    name: &'a str,
    cname: &'a CString,
    /// The path as requested (for messages).
    path: &'a str,
}

impl Target<'_> {
    /// Writes `parts` into a new temporary file beside the target, syncs it, renames it over the
    /// target and syncs the directory: readers see the old file or the new one, never a mix.
    /// `keep`: the replaced file's owner and group, given to the new one (or the write is
    /// refused).
    fn replace(
        &self,
        mode: libc::mode_t,
        keep: Option<Owner>,
        parts: &[&[u8]],
    ) -> Result<(), ExecError> {
        let (parent, path) = (self.parent, self.path);
        let tmp_name = format!(
            ".{}.vigil-tmp-{}-{}",
            self.name,
            std::process::id(),
            unique_suffix()
        );
        let ctmp =
            CString::new(tmp_name.as_str()).map_err(|_| reject(path, "contains a NUL byte"))?;
        // SAFETY: valid dirfd and C string; O_EXCL|O_NOFOLLOW never opens an existing entry.
        let rc = unsafe {
            libc::openat(
                parent.as_raw_fd(),
                ctmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode,
            )
        };
        if rc < 0 {
            return Err(ExecError::Io {
                context: format!("create temporary file for {path:?}"),
                source: std::io::Error::last_os_error(),
            });
        }
        let mut tmp = File::from(fd_from(rc as libc::c_long));
        // SAFETY: unlinkat on the parent directory fd this function holds and a NUL-terminated
        // name.
        let unlink_tmp = || unsafe { libc::unlinkat(parent.as_raw_fd(), ctmp.as_ptr(), 0) };
        let io = |context: &str, e: std::io::Error| ExecError::Io {
            context: format!("{context} {path:?}"),
            source: e,
        };
        if let Err(e) = keep_owner_and_mode(&tmp, keep, mode) {
            unlink_tmp();
            return Err(reject(
                path,
                format!("cannot keep the file's owner, group and mode ({e}); not written"),
            ));
        }
        let written = parts
            .iter()
            .try_for_each(|p| tmp.write_all(p))
            .and_then(|_| tmp.sync_all());
        if let Err(e) = written {
            unlink_tmp();
            return Err(io("write", e));
        }
        drop(tmp);
        // SAFETY: both names are relative to the same owned dirfd; rename replaces the entry
        // itself, never a symlink's target.
        if unsafe {
            libc::renameat(
                parent.as_raw_fd(),
                ctmp.as_ptr(),
                parent.as_raw_fd(),
                self.cname.as_ptr(),
            )
        } != 0
        {
            let e = std::io::Error::last_os_error();
            unlink_tmp();
            return Err(io("rename into place", e));
        }
        // SAFETY: fsync on an owned directory fd makes the rename durable.
        if unsafe { libc::fsync(parent.as_raw_fd()) } != 0 {
            return Err(io("fsync directory of", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_checks_refuse_absolute_dotdot_and_empty() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/..", ".", "a\0b"] {
            assert!(
                matches!(components(bad), Err(ExecError::PathRejected { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(components("./a//b/c").ok(), Some(vec!["a", "b", "c"]));
    }
}
