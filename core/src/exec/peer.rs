//! Whether a process is (part of) a vigil job: for a server that must not take requests from
//! the jobs it, or another vigil, runs. A sandboxed job may reach a server's socket (Landlock
//! does not mediate `connect(2)` to a path socket, and `strict` allows `AF_UNIX`), and through
//! it ask for a job without the sandbox.
//!
//! Two marks a job cannot shed: its cgroup leaf (a sandboxed job cannot leave it: Landlock
//! keeps it from `cgroup.procs`, seccomp from `clone3(CLONE_INTO_CGROUP)`), named
//! `JOB_ID.PID-START` (see [`super::cgroup::CgroupLeaf::create`]), and, for this server's own
//! jobs, its ancestry: every process of a job descends from the server (an orphan is handed
//! to it, as subreaper).
use super::proctable::proc_stat;

/// Ancestors followed at most (a chain longer than this is not a job's).
const ANCESTRY_MAX: usize = 256;

/// Why process `pid` is part of a vigil job, or `None`: its cgroup is a job's leaf (any vigil
/// instance's), or it descends from process `server` (this server's jobs, where no cgroup
/// marks them).
pub fn job_of(pid: i32, server: i32) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
        if let Some(leaf) = job_leaf_in(&text) {
            return Some(format!("it runs in the cgroup of vigil job {leaf}"));
        }
    }
    let mut at = pid;
    for _ in 0..ANCESTRY_MAX {
        if at <= 1 {
            return None;
        }
        let st = proc_stat(at)?;
        if st.ppid == server {
            return Some(format!("it descends from this server (pid {server})"));
        }
        at = st.ppid;
    }
    None
}

/// The first component of a path in `/proc/PID/cgroup` text (`ID:CONTROLLERS:PATH` lines) that
/// names a job's leaf: `JOB_ID.PID-START`, the job id 1-128 characters of `[A-Za-z0-9_-]`,
/// PID and START decimal.
pub fn job_leaf_in(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .flat_map(|path| path.split('/'))
        .find(|c| is_leaf_name(c))
}

fn is_leaf_name(component: &str) -> bool {
    let Some((id, marker)) = component.rsplit_once('.') else {
        return false;
    };
    let Some((pid, start)) = marker.split_once('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    super::cgroup::validate_job_id(id).is_ok() && digits(pid) && digits(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_leaf_is_found_in_any_hierarchy_and_other_groups_are_not() {
        let hybrid = "12:memory:/process_api/ab/vigil/2ffa3c66-4.28542-6075292\n0::/vigil/x\n";
        assert_eq!(job_leaf_in(hybrid), Some("2ffa3c66-4.28542-6075292"));
        let v2 = "0::/system.slice/vigil.service/vigil/sbx-6774-0.6773-99\n";
        assert_eq!(job_leaf_in(v2), Some("sbx-6774-0.6773-99"));
        for other in [
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            "0::/system.slice/app-foo-1234.scope\n",
            "0::/\n",
            "12:pids:/docker/4f1c.2-x\n",
            "0::/a/.1-2\n",
            "",
            "garbage without colons",
        ] {
            assert_eq!(job_leaf_in(other), None, "{other:?}");
        }
    }

    #[test]
    fn this_process_is_no_job_and_descends_from_its_parent() {
        let me = std::process::id() as i32;
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        if job_leaf_in(&own).is_none() {
            assert_eq!(job_of(me, -1), None);
        }
        let parent = proc_stat(me).unwrap().ppid;
        assert!(job_of(me, parent)
            .unwrap()
            .contains("descends from this server"));
    }
}
