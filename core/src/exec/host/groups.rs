//! vigil's parent groups: created, checked for write access and for processes that are not
//! vigil's, and given the controllers vigil hands down.
use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::mounts::read_bounded;

/// Controllers vigil hands down to job leaves on cgroup2.
const V2_CONTROLLERS_WANTED: [&str; 3] = ["cpu", "memory", "pids"];

/// Creates (or reuses) vigil's parent group under `own`; `Err` means no delegation there.
pub(super) fn ensure_parent(own: &Path, name: &str) -> io::Result<PathBuf> {
    let dir = own.join(name);
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // The group exists on every run but the first: one access(2) then, not a failed mkdir
    // before it.
    if may_write(&c) {
        return Ok(dir);
    }
    let missing = io::Error::last_os_error();
    if missing.kind() != io::ErrorKind::NotFound {
        return Err(missing);
    }
    match fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        // Created meanwhile by another vigil.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if may_write(&c) {
                Ok(dir)
            } else {
                Err(io::Error::last_os_error())
            }
        }
        Err(e) => Err(e),
    }
}

/// access(2) with W_OK: this process may write in `path`.
fn may_write(path: &CStr) -> bool {
    // SAFETY: access only reads the NUL-terminated path.
    unsafe { libc::access(path.as_ptr(), libc::W_OK) == 0 }
}

/// The controllers vigil wants that `group` may hand down (its cgroup.controllers).
pub(super) fn wanted_controllers(group: &Path) -> Vec<String> {
    let available = fs::read_to_string(group.join("cgroup.controllers")).unwrap_or_default();
    available
        .split_whitespace()
        .filter(|c| V2_CONTROLLERS_WANTED.contains(c))
        .map(str::to_string)
        .collect()
}

/// Enables each controller in `dir`'s cgroup.subtree_control (one write each, so one the
/// kernel refuses does not hide the others); the first error is returned.
pub(super) fn enable_controllers(dir: &Path, controllers: &[String]) -> io::Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let mut first_err = None;
    for c in controllers {
        if let Err(e) = fs::write(&file, format!("+{c}")) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// The real root cgroup has no `cgroup.type`; a namespace's root (a container) has one.
pub(super) fn is_real_root(mount_point: &Path) -> bool {
    !mount_point.join("cgroup.type").exists()
}

/// This process may create groups and move processes in `group`.
pub(super) fn writable(group: &Path) -> bool {
    let Ok(c) = CString::new(group.join("cgroup.procs").as_os_str().as_bytes()) else {
        return false;
    };
    may_write(&c)
}

/// True when `group` holds a process that is neither this one nor another vigil (same
/// executable): such a process keeps the group from handing controllers down.
pub(super) fn has_foreign_processes(group: &Path) -> bool {
    let Ok(text) = read_bounded(&group.join("cgroup.procs")) else {
        return true;
    };
    let me = std::process::id();
    let my_exe = fs::read_link("/proc/self/exe").ok();
    text.lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .any(|pid| {
            let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
            exe.is_none() || exe != my_exe
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_holding_only_this_process_has_no_foreign_process() {
        let dir = std::env::temp_dir().join(format!("vigil-host-procs-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("cgroup.procs"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        assert!(!has_foreign_processes(&dir));
        // pid 1 is init, not vigil (and an unreadable exe counts as foreign too).
        fs::write(
            dir.join("cgroup.procs"),
            format!("{}\n1\n", std::process::id()),
        )
        .unwrap();
        assert!(has_foreign_processes(&dir));
        // A group that cannot be read is not assumed to be empty.
        fs::remove_file(dir.join("cgroup.procs")).unwrap();
        assert!(has_foreign_processes(&dir));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_controllers_vigil_uses_are_handed_down() {
        let dir = std::env::temp_dir().join(format!("vigil-host-ctrl-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma\n",
        )
        .unwrap();
        assert_eq!(wanted_controllers(&dir), ["cpu", "memory", "pids"]);
        fs::write(dir.join("cgroup.controllers"), "\n").unwrap();
        assert!(wanted_controllers(&dir).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
