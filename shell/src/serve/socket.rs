//! The listening socket: created mode 0600, a stale socket file replaced only when nothing
//! answers on it, peers identified by SO_PEERCRED, and the file removed on exit only if it is
//! still the one this server created.
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A bound listener and the identity of the file it made.
pub struct BoundSocket {
    listener: Option<UnixListener>,
    pub path: PathBuf,
    dev_ino: (u64, u64),
    /// `<path>.lock`, flocked for the server's life: two servers starting on one path cannot
    /// both decide the socket is stale and remove each other's.
    _lock: std::fs::File,
}

impl BoundSocket {
    /// Binds `path` with mode 0600. An existing socket file is replaced only when a connect to
    /// it is refused (its server is gone); a live socket or any other kind of file is an error.
    pub fn bind(path: &Path) -> Result<BoundSocket, String> {
        let shown = path.display();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let lock = lock_beside(path)?;
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(_) => return Err(format!("{shown}: a server is already listening there")),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)
                        .map_err(|e| format!("{shown}: removing the stale socket: {e}"))?;
                }
                Err(e) => return Err(format!("{shown}: probing the existing socket: {e}")),
            },
            Ok(_) => {
                return Err(format!(
                    "{shown} exists and is not a socket; not replacing it"
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{shown}: {e}")),
        }
        // The umask makes the file 0600 from the moment it exists: no window where another
        // user could connect. It is process-wide, so this runs before any thread starts work.
        // SAFETY: umask has no failure mode.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let listener = bound.map_err(|e| format!("{shown}: bind: {e}"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{shown}: chmod 0600: {e}"))?;
        let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{shown}: {e}"))?;
        Ok(BoundSocket {
            listener: Some(listener),
            path: path.to_path_buf(),
            dev_ino: (meta.dev(), meta.ino()),
            _lock: lock,
        })
    }

    /// The listening descriptor (-1 once closed).
    pub fn listener_fd(&self) -> i32 {
        self.listener.as_ref().map_or(-1, |l| l.as_raw_fd())
    }

    pub fn accept(&self) -> io::Result<(UnixStream, std::os::unix::net::SocketAddr)> {
        match &self.listener {
            Some(l) => l.accept(),
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    /// Stops listening: connects are refused from now on. The file stays until [`remove`].
    ///
    /// [`remove`]: BoundSocket::remove
    pub fn close_listener(&mut self) {
        self.listener = None;
    }

    /// Removes the socket file if it is still the one bound here (a newer server may own the
    /// path by now).
    pub fn remove(&self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.dev_ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Opens and flocks `<path>.lock` (created 0600), or says another server holds it.
fn lock_beside(path: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!(
            "{}: a server is already listening there (its lock {} is held)",
            path.display(),
            lock_path.display()
        ));
    }
    Ok(file)
}

/// Same uid as the server, root, or listed.
pub fn peer_allowed(uid: u32, allowed: &[u32]) -> bool {
    // SAFETY: geteuid has no failure mode.
    let me = unsafe { libc::geteuid() };
    uid == me || uid == 0 || allowed.contains(&uid)
}
