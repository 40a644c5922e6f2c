//! This machine's processes as /proc lists them: one process's stat line, every pid, and
//! vigil's own children (where orphans handed to it as subreaper appear).
use std::fs;
use std::io::Read;

use crate::procfs::PidStat;

/// Longest /proc/PID/stat read: 52 numeric fields and a command name of at most 64 bytes fit
/// well within it; the fields vigil uses come first.
const PID_STAT_BYTES_MAX: usize = 4096;

/// /proc/PID/stat of `pid`, read into a stack buffer; `None` when the process is gone or the
/// line does not parse.
pub(crate) fn proc_stat(pid: i32) -> Option<PidStat> {
    let mut f = fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; PID_STAT_BYTES_MAX];
    let mut len = 0;
    while len < buf.len() {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    PidStat::parse(&buf[..len]).ok()
}

/// Every pid /proc lists now.
pub(super) fn all_pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

/// Orphans handed to vigil as subreaper (and any child of its main thread): the kernel hands
/// an orphan to the subreaper's first live thread, the main thread, so one file holds them all
/// (/proc/self/task/<pid>/children) however many threads vigil runs.
pub(crate) fn own_orphans() -> Vec<i32> {
    let path = format!("/proc/self/task/{}/children", std::process::id());
    fs::read_to_string(path)
        .map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Pids of vigil's own children (threads included), from /proc/self/task/*/children.
pub(crate) fn own_children() -> Vec<i32> {
    let mut kids = Vec::new();
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return kids;
    };
    for t in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(t.path().join("children")) {
            kids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    kids
}
