//! The cgroup mounts (/proc/self/mountinfo) and this process's own groups (/proc/self/cgroup).
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Longest mountinfo / cgroup file vigil reads during detection; a host with more is truncated
/// into an error rather than read without bound.
const PROC_TABLE_BYTES_MAX: u64 = 4 << 20;

/// One cgroup mount from /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub(super) struct CgroupMount {
    /// Root of the mount within the hierarchy (usually `/`).
    pub(super) root: String,
    pub(super) mount_point: PathBuf,
    /// `None` for cgroup2, the v1 controllers (and `name=`) otherwise.
    pub(super) controllers: Option<Vec<String>>,
}

/// Room reserved before reading such a file: procfs reports no size, and from an empty
/// buffer the reads would start at 32 bytes and double (eight reads for a 2 KB mountinfo);
/// with this much room a typical host's file comes in one read and the end in a second.
const PROC_TABLE_READ_BYTES: usize = 16 << 10;

/// The file's text, whole: longer than [`PROC_TABLE_BYTES_MAX`] is an error, never a cut
/// (a table read in part answers wrongly about what lies past the cut). Bytes that are not
/// UTF-8 (a mount point may hold any) are read as U+FFFD: use [`read_bounded_bytes`] where the
/// exact bytes matter.
pub(super) fn read_bounded(path: &Path) -> io::Result<String> {
    read_bounded_bytes(path).map(|b| match String::from_utf8(b) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// [`read_bounded`], as bytes.
fn read_bounded_bytes(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = fs::File::open(path)?;
    let mut bytes = Vec::with_capacity(PROC_TABLE_READ_BYTES);
    file.take(PROC_TABLE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > PROC_TABLE_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is longer than {} MiB",
                path.display(),
                PROC_TABLE_BYTES_MAX >> 20
            ),
        ));
    }
    Ok(bytes)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub(super) fn unescape_mountinfo(field: &str) -> String {
    String::from_utf8_lossy(&unescape_mountinfo_bytes(field.as_bytes())).into_owned()
}

/// [`unescape_mountinfo`], byte for byte (a mount point need not be UTF-8).
fn unescape_mountinfo_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..(i + 4).min(bytes.len())];
            if oct.len() == 3 && oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = (oct[0] - b'0') as u32 * 64
                    + (oct[1] - b'0') as u32 * 8
                    + (oct[2] - b'0') as u32;
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

pub(super) fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let (root, mount_point) = (unescape_mountinfo(pre[3]), unescape_mountinfo(pre[4]));
        let controllers = match post[0] {
            "cgroup2" => None,
            "cgroup" => Some(
                post[2]
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("relatime"))
                    .map(str::to_string)
                    .collect(),
            ),
            _ => continue,
        };
        mounts.push(CgroupMount {
            root,
            mount_point: PathBuf::from(mount_point),
            controllers,
        });
    }
    mounts
}

/// /proc/self/cgroup as (controllers, path): `("", path)` is the cgroup2 entry.
pub(super) fn parse_proc_cgroup(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some((ctrls.to_string(), path.to_string()))
        })
        .collect()
}

pub(super) fn statfs_magic(path: &Path) -> Option<i64> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: c is a valid NUL-terminated path; buf is a properly sized out-parameter.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a NUL-terminated path and buf a statfs out-parameter of the right type.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    (rc == 0).then_some(buf.f_type as i64)
}

/// The directory of this process's own group in a hierarchy: mount point + (path in the
/// hierarchy relative to the mount's root).
pub(super) fn own_group_dir(mount: &CgroupMount, own_path: &str) -> Option<PathBuf> {
    let rel = if mount.root == "/" {
        own_path
    } else {
        own_path.strip_prefix(mount.root.as_str())?
    };
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rel.is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(rel)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_longer_than_the_bound_is_an_error_not_a_cut() {
        let dir = std::env::temp_dir().join(format!("vigil-bounded-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("table");
        let max = PROC_TABLE_BYTES_MAX as usize;
        fs::write(&path, vec![b'a'; max]).unwrap();
        assert_eq!(read_bounded_bytes(&path).unwrap().len(), max);
        fs::write(&path, vec![b'a'; max + 1]).unwrap();
        let e = read_bounded_bytes(&path).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        assert!(read_bounded(&path).is_err());
        // A mount point that is not UTF-8 makes the text lossy, not an error.
        fs::write(&path, b"1 2 0:3 / /mnt/bad\xff rw - tmpfs tmpfs rw\n").unwrap();
        assert!(read_bounded(&path).unwrap().contains("/mnt/bad"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mountinfo_finds_v1_and_v2_mounts_and_unescapes() {
        let text = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                    42 31 0:39 / /mnt/with\\040space rw - cgroup cgroup rw,pids,cpuacct\n\
                    50 1 8:1 / / rw - ext4 /dev/sda rw\n\
                    garbage line\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0].controllers.as_deref(),
            Some(&["memory".to_string()][..])
        );
        assert!(m[1].controllers.is_none());
        assert_eq!(m[2].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[2].controllers.as_ref().map(|c| c.len()), Some(2));
    }

    #[test]
    fn own_group_dir_strips_mount_root_and_refuses_dotdot() {
        let m = CgroupMount {
            root: "/a".into(),
            mount_point: "/cg".into(),
            controllers: None,
        };
        assert_eq!(own_group_dir(&m, "/a/b/c"), Some(PathBuf::from("/cg/b/c")));
        assert_eq!(own_group_dir(&m, "/x"), None);
        let r = CgroupMount {
            root: "/".into(),
            mount_point: "/cg".into(),
            controllers: None,
        };
        assert_eq!(own_group_dir(&r, "/"), Some(PathBuf::from("/cg")));
        assert_eq!(own_group_dir(&r, "/../etc"), None);
    }

    #[test]
    fn proc_cgroup_lines_split_on_first_two_colons() {
        let v = parse_proc_cgroup("4:memory:/a:b\n0::/\nbad\n");
        assert_eq!(
            v,
            vec![("memory".into(), "/a:b".into()), ("".into(), "/".into())]
        );
    }
}
