//! The executor benches inside a VM on pure cgroup v2, where vigil is `delegated` (moved into its
//! supervisor leaf, memory, pids and cpu handed down to job leaves): what this hybrid host cannot
//! measure. exec_spawn (isolated /bin/true against a bare spawn, same run, interleaved) and
//! exec_kill (deadline to every process of a 200-process setsid'd tree dead, against the kill
//! path alone). The VM is emulated (tcg), so only the ratios mean anything.
//!
//! `cargo bench --bench exec_vm` (needs what tests/vm_cgroup2.rs needs: qemu, a kernel in /boot,
//! a static busybox, cpio; prints why it skipped otherwise).
#[path = "../tests/vm/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Bound on the VM run (boot plus two modes of each bench, emulated).
const VM_RUN_S_MAX: u64 = 1_500;
/// The benches run in the VM, in this order (tests/vm/bench.sh).
const BENCHES: [&str; 2] = ["exec_spawn", "exec_kill"];

/// Builds the bench `name` and returns its executable.
fn bench_binary(name: &str) -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .args([
            "bench",
            "--bench",
            name,
            "--no-run",
            "--message-format=json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo bench --no-run");
    assert!(out.status.success(), "building {name} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("{name} executable in cargo's messages"))
}

fn main() {
    let tools = match harness::find_tools() {
        Ok(t) => t,
        Err(why) => {
            println!("skipped: cannot boot the cgroup v2 VM: {why}");
            return;
        }
    };
    let binaries: Vec<(PathBuf, String)> = BENCHES
        .iter()
        .map(|b| (bench_binary(b), format!("/bin/{b}")))
        .collect();
    let work = std::env::temp_dir().join(format!("vigil-vm-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/bench.sh");
    let in_vm: Vec<(&Path, &str)> = binaries
        .iter()
        .map(|(b, d)| (b.as_path(), d.as_str()))
        .collect();
    let image = harness::build_initramfs(&tools, &work, &script, &in_vm);
    println!("exec_vm: pure cgroup v2 VM (qemu tcg, 2 vCPU), vigil delegated; ratios only");
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
