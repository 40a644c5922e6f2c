//! Finding the other mounts of the host's terminals in a mount table, without allocating: the
//! spawned child reads its own namespace's `/proc/self/mountinfo` into a buffer it maps itself
//! and detaches each devpts mount this finds, until it finds none.

/// Longest mount table the child reads (as host detection: a longer one is not read in part).
pub(super) const MOUNT_TABLE_BYTES_MAX: usize = 4 << 20;
/// Longest mount point the child can detach by path (`PATH_MAX`, with its NUL).
pub(super) const MOUNT_POINT_BYTES_MAX: usize = 4096;

/// What a look through a mount table found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum OtherTerminals {
    /// No devpts mount but `/dev/pts` (the job's own instance, and any beneath it).
    None,
    /// One at this mount point, unescaped into the buffer, NUL-terminated: this many bytes
    /// before the NUL.
    At(usize),
    /// One whose mount point is too long to name (it cannot be detached by path).
    Unnamed,
}

/// The first devpts mount in mountinfo `table` whose mount point is neither `/dev/pts` nor
/// beneath it. A mount beneath `/dev/pts` lies on the host's instance, which the job's own
/// covers (no path reaches it), or on the job's own instance, on which nothing is mounted.
pub(super) fn first_other(table: &[u8], point: &mut [u8; MOUNT_POINT_BYTES_MAX]) -> OtherTerminals {
    for line in table.split(|&b| b == b'\n') {
        let Some(dash) = line.windows(3).position(|w| w == b" - ") else {
            continue;
        };
        if line[dash + 3..].split(|&b| b == b' ').next() != Some(&b"devpts"[..]) {
            continue;
        }
        let Some(field) = line[..dash].split(|&b| b == b' ').nth(4) else {
            continue;
        };
        let Some(len) = unescape_into(field, point) else {
            return OtherTerminals::Unnamed;
        };
        let name = &point[..len];
        if name == b"/dev/pts" || name.starts_with(b"/dev/pts/") {
            continue;
        }
        return OtherTerminals::At(len);
    }
    OtherTerminals::None
}

/// Undoes mountinfo's octal escapes (`\040`) of `field` into `out`, NUL-terminated; its length,
/// or `None` when it does not fit.
fn unescape_into(field: &[u8], out: &mut [u8; MOUNT_POINT_BYTES_MAX]) -> Option<usize> {
    let (mut i, mut n) = (0, 0);
    while i < field.len() {
        let octal = field.get(i + 1..i + 4).filter(|d| {
            field[i] == b'\\'
                && d.iter()
                    .all(|c| (b'0'..=b'3').contains(&d[0]) && (b'0'..=b'7').contains(c))
        });
        let b = match octal {
            Some(d) => {
                i += 4;
                (d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0')
            }
            None => {
                i += 1;
                field[i - 1]
            }
        };
        if n + 1 >= out.len() || b == 0 {
            return None;
        }
        out[n] = b;
        n += 1;
    }
    out[n] = 0;
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(table: &[u8]) -> (OtherTerminals, Vec<u8>) {
        let mut point = [0u8; MOUNT_POINT_BYTES_MAX];
        let found = first_other(table, &mut point);
        let name = match found {
            OtherTerminals::At(n) => point[..n].to_vec(),
            _ => Vec::new(),
        };
        (found, name)
    }

    #[test]
    fn the_first_devpts_off_dev_pts_is_found_byte_for_byte() {
        let table = b"25 30 0:23 / /dev/pts rw,nosuid - devpts devpts rw,gid=5\n\
            26 25 0:23 /3 /dev/pts/1 rw - devpts devpts rw\n\
            33 30 0:24 / /dev/shm rw shared:4 - tmpfs tmpfs rw\n\
            34 30 0:25 / /mnt/devpts-not rw - tmpfs devpts rw\n\
            32 30 0:23 /3 /srv/c\\040d/cons\\134ole rw master:1 - devpts devpts rw\n\
            31 30 0:23 / /srv/chroot/dev/pts rw - devpts devpts rw\n";
        let (found, name) = first(table);
        assert_eq!(found, OtherTerminals::At(name.len()));
        assert_eq!(name, b"/srv/c d/cons\\ole");
        let (found, name) = first(b"1 2 0:3 / /a\xff\\012b rw - devpts devpts rw\n");
        assert_eq!(
            (found, name),
            (OtherTerminals::At(5), b"/a\xff\nb".to_vec())
        );
        assert_eq!(first(&table[..table.len() / 2]).0, OtherTerminals::None);
        assert_eq!(first(b"").0, OtherTerminals::None);
        assert_eq!(first(b"garbage\n - devpts\n").0, OtherTerminals::None);
    }

    #[test]
    fn a_mount_point_too_long_to_name_or_holding_a_nul_is_unnamed() {
        let long = format!("1 2 0:3 / /{} rw - devpts devpts rw\n", "x".repeat(5000));
        assert_eq!(first(long.as_bytes()).0, OtherTerminals::Unnamed);
        assert_eq!(
            first(b"1 2 0:3 / /a\\000b rw - devpts devpts rw\n").0,
            OtherTerminals::Unnamed
        );
        let fits = format!("1 2 0:3 / /{} rw - devpts devpts rw\n", "x".repeat(4094));
        assert_eq!(first(fits.as_bytes()).0, OtherTerminals::At(4095));
    }
}
