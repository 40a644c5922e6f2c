//! vigil out of a job's reach: vigil is non-dumpable, so a job running as vigil's own
//! (non-root) uid cannot read /proc/<vigil>/environ (a canary secret in vigil's environment)
//! nor list /proc/<vigil>/fd. Run as root, the test starts vigil as `nobody` (65534); as
//! anything else it says so and checks the flag only. A job running as root can still read
//! those files (they belong to root): against root jobs, jobs must run as another user.
mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;

use common::{vigil_bin, TempDir};
use serde_json::Value;

const CANARY: &str = "vigil-canary-secret-5c1e0a";
const NOBODY: u32 = 65534;

#[test]
fn a_same_uid_job_cannot_read_vigils_environ_or_fds() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("note: not root; cannot start vigil as another user here, test skipped");
        return;
    }
    let dir = TempDir::new("reach");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for p in [dir.path(), data.as_path()] {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let cmd = "echo \"comm=$(cat /proc/$PPID/comm)\"; \
               if cat /proc/$PPID/environ >/dev/null 2>&1; then echo environ=read; else echo environ=refused; fi; \
               tr '\\0' '\\n' < /proc/$PPID/environ 2>/dev/null; \
               if ls /proc/$PPID/fd >/dev/null 2>&1; then echo fd=read; else echo fd=refused; fi; \
               echo \"uid=$(id -u)\"";
    let args = serde_json::json!({ "cmd": cmd }).to_string();
    let out = Command::new(vigil_bin())
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "run",
            "shell",
            "--args",
            &args,
        ])
        .args(["--root", dir.path().to_str().unwrap(), "--json"])
        .env("VIGIL_TEST_CANARY", CANARY)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    let job_out = v["stdout"].as_str().unwrap_or_default();
    assert!(
        job_out.contains("comm=vigil"),
        "the job's parent is vigil: {v}"
    );
    assert!(job_out.contains(&format!("uid={NOBODY}")), "{v}");
    assert!(job_out.contains("environ=refused"), "{v}");
    assert!(job_out.contains("fd=refused"), "{v}");
    assert!(!job_out.contains(CANARY), "vigil's environment leaked: {v}");
}
