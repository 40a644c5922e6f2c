//! The exec_spawn bench (isolated /bin/true against a bare spawn, same run, interleaved) inside
//! a VM on pure cgroup v2, where vigil is `delegated` (moved into its supervisor leaf, memory,
//! pids and cpu handed down to job leaves): what this hybrid host cannot measure. The VM is
//! emulated (tcg), so only the ratios mean anything.
//!
//! `cargo bench --bench exec_spawn_vm` (needs what tests/vm_cgroup2.rs needs: qemu, a kernel in
//! /boot, a static busybox, cpio; prints why it skipped otherwise).
#[path = "../tests/vm/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Bound on the VM run (boot plus two modes of exec_spawn, emulated).
const VM_RUN_S_MAX: u64 = 900;

/// Builds the exec_spawn bench and returns its executable.
fn exec_spawn_binary() -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .args([
            "bench",
            "--bench",
            "exec_spawn",
            "--no-run",
            "--message-format=json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo bench --no-run");
    assert!(out.status.success(), "building exec_spawn failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "exec_spawn")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("exec_spawn executable in cargo's messages")
}

fn main() {
    let tools = match harness::find_tools() {
        Ok(t) => t,
        Err(why) => {
            println!("skipped: cannot boot the cgroup v2 VM: {why}");
            return;
        }
    };
    let bench = exec_spawn_binary();
    let work = std::env::temp_dir().join(format!("vigil-vm-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/bench.sh");
    let image = harness::build_initramfs(&tools, &work, &script, &[(&bench, "/bin/exec_spawn")]);
    println!("exec_spawn_vm: pure cgroup v2 VM (qemu tcg, 2 vCPU), vigil delegated; ratios only");
    let console = harness::boot(&tools, &image, &work, VM_RUN_S_MAX);
    let _ = std::fs::remove_dir_all(&work);
    let mut inside = false;
    for line in console.lines().map(str::trim_end) {
        match line.trim() {
            "BENCH-BEGIN" => inside = true,
            "BENCH-END" => inside = false,
            _ if inside && !line.starts_with('[') => println!("{line}"),
            _ => {}
        }
    }
    let ok = console
        .lines()
        .any(|l| l.trim() == format!("{}0", harness::EXIT_MARKER));
    assert!(ok, "the bench failed in the VM:\n{console}");
}
