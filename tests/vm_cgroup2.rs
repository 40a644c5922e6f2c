//! Pure cgroup v2, which this hybrid host cannot show: boots the distribution's kernel under qemu
//! (software emulation) with `cgroup_no_v1=all`, from an initramfs holding a static busybox, the
//! release `vigil` binary and the libraries it links, and runs tests/vm/scenarios.sh in every
//! placement (root cgroup, delegated service, root in a login session, a user's delegated scope,
//! a user without delegation). The VM prints one `RESULT` line per check on its serial console;
//! this test requires each expected line and fails on any FAIL.
//!
//! Needs `qemu-system-x86_64`, a kernel in /boot, a static busybox and `cpio` (.ci/run installs
//! them). Without them the test fails under CI=true and prints why it skipped elsewhere.
mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on one boot, scenarios included (emulated: boot ~4 s, each vigil start ~1.5 s).
const VM_RUN_S_MAX: u64 = 300;
/// Marker the VM's /init prints, with the scenarios' exit code, right before powering off.
const EXIT_MARKER: &str = "VIGIL-VM-EXIT ";
/// Checks every placement where the kernel holds the limits must pass (tests/vm/scenarios.sh's
/// `held_suite`).
const HELD_CHECKS: &[&str] = &[
    "doctor_placement",
    "doctor_text_placement",
    "doctor_memory_kernel",
    "doctor_pids_kernel",
    "hog_allocates",
    "memory_oom_killed",
    "pids_limit_hit",
    "escape_timed_out",
    "escape_none_left",
    "orphans_none_left",
    "kill9_interrupted",
    "kill9_processes_killed",
    "leaves_gone",
];
/// Placements, whether the held suite runs there, and their further checks. SKIP is accepted
/// only where the scenario says the flag it needs is not in this build.
const EXPECTED: &[(&str, bool, &[&str])] = &[
    (
        "root_cgroup",
        true,
        &["require_enforcement", "warning_line"],
    ),
    ("delegated_service", true, &["parallel_all_held"]),
    ("root_session", true, &[]),
    ("user_delegated", true, &["parallel_all_held"]),
    (
        "user_undelegated",
        false,
        &[
            "doctor_placement",
            "doctor_text_placement",
            "doctor_fix_line",
            "require_enforcement",
            "warning_line",
        ],
    ),
];

/// What booting the VM needs from the host.
struct VmTools {
    qemu: PathBuf,
    kernel: PathBuf,
    busybox: PathBuf,
    cpio: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// True when `ldd` says the binary is not dynamic (a static busybox runs without libraries).
fn is_static(bin: &Path) -> bool {
    Command::new("ldd")
        .arg(bin)
        .output()
        .map(|o| {
            !o.status.success() || String::from_utf8_lossy(&o.stdout).contains("not a dynamic")
        })
        .unwrap_or(false)
}

/// The newest /boot/vmlinuz-*.
fn newest_kernel() -> Option<PathBuf> {
    let mut kernels: Vec<PathBuf> = fs::read_dir("/boot")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    kernels.sort();
    kernels.pop()
}

fn find_tools() -> Result<VmTools, String> {
    let qemu = which("qemu-system-x86_64")
        .ok_or("no qemu-system-x86_64 (apt-get install qemu-system-x86)")?;
    let kernel = newest_kernel().ok_or("no /boot/vmlinuz-* (apt-get install linux-image-amd64)")?;
    // A kernel image readable only by root cannot be booted by others.
    fs::File::open(&kernel).map_err(|e| format!("{}: {e}", kernel.display()))?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file() && is_static(p))
        .ok_or("no static busybox (apt-get install busybox-static)")?;
    let cpio = which("cpio").ok_or("no cpio (apt-get install cpio)")?;
    Ok(VmTools {
        qemu,
        kernel,
        busybox,
        cpio,
    })
}

/// Libraries (and the loader) `ldd` names for `bin`.
fn linked_libraries(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().expect("run ldd");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect()
}

fn copy_into(root: &Path, src: &Path, dest: &str) {
    let to = root.join(dest.trim_start_matches('/'));
    fs::create_dir_all(to.parent().expect("parent")).expect("mkdir in initramfs");
    fs::copy(src, &to)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", src.display(), to.display()));
}

/// Builds the initramfs (newc cpio) and returns its path.
fn build_initramfs(tools: &VmTools, work: &Path) -> PathBuf {
    let root = work.join("root");
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm");
    copy_into(&root, &tools.busybox, "/bin/busybox");
    copy_into(&root, &here.join("init.sh"), "/init");
    copy_into(&root, &here.join("scenarios.sh"), "/scenarios.sh");
    let vigil = common::vigil_bin();
    copy_into(&root, vigil, "/bin/vigil");
    for lib in linked_libraries(vigil) {
        let real = fs::canonicalize(&lib).unwrap_or_else(|_| lib.clone());
        copy_into(&root, &real, &lib.to_string_lossy());
    }
    fs::create_dir_all(root.join("etc")).expect("mkdir /etc");
    fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").expect("write /etc/passwd");
    fs::write(root.join("etc/group"), "root:x:0:\n").expect("write /etc/group");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(root.join("init"), fs::Permissions::from_mode(0o755)).expect("chmod /init");
    let image = work.join("initramfs.cpio");
    let list = Command::new("find")
        .arg(".")
        .current_dir(&root)
        .output()
        .expect("list initramfs files");
    let mut cpio = Command::new(&tools.cpio)
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(fs::File::create(&image).expect("create initramfs"))
        .spawn()
        .expect("run cpio");
    cpio.stdin
        .take()
        .expect("cpio stdin")
        .write_all(&list.stdout)
        .expect("feed cpio");
    assert!(cpio.wait().expect("wait cpio").success(), "cpio failed");
    image
}

/// Boots the VM and returns its console output; panics when it does not finish in time.
fn boot(tools: &VmTools, initramfs: &Path, work: &Path) -> String {
    let console = work.join("console.log");
    let mut qemu = Command::new(&tools.qemu)
        .args([
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            "1G",
        ])
        .args(["-nographic", "-no-reboot", "-monitor", "none", "-serial"])
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(&tools.kernel)
        .arg("-initrd")
        .arg(initramfs)
        .args([
            "-append",
            "console=ttyS0 cgroup_no_v1=all panic=-1 rdinit=/init",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start qemu");
    let until = Instant::now() + Duration::from_secs(VM_RUN_S_MAX);
    let status = loop {
        if let Some(s) = qemu.try_wait().expect("wait qemu") {
            break Some(s);
        }
        if Instant::now() >= until {
            let _ = qemu.kill();
            let _ = qemu.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = fs::read_to_string(&console).unwrap_or_default();
    assert!(
        status.is_some(),
        "the VM did not power off within {VM_RUN_S_MAX} s; console:\n{text}"
    );
    text
}

#[test]
fn every_placement_on_pure_cgroup2_holds_the_limits_in_a_vm() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let tools = match find_tools() {
        Ok(t) => t,
        Err(why) if ci => panic!("CI=true and the VM cannot boot: {why}"),
        Err(why) => {
            println!("skipped: cannot boot the cgroup v2 VM: {why}");
            return;
        }
    };
    let work = common::TempDir::new("vm");
    let initramfs = build_initramfs(&tools, work.path());
    let started = Instant::now();
    let console = boot(&tools, &initramfs, work.path());
    println!("VM run took {:.0} s", started.elapsed().as_secs_f64());
    let exit = console
        .lines()
        .find_map(|l| l.trim().strip_prefix(EXIT_MARKER))
        .map(str::trim);
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for line in console.lines() {
        let Some(rest) = line.trim().strip_prefix("RESULT ") else {
            continue;
        };
        println!("{}", line.trim());
        let mut it = rest.splitn(4, ' ');
        let (Some(placement), Some(check), Some(verdict)) = (it.next(), it.next(), it.next())
        else {
            continue;
        };
        let detail = it.next().unwrap_or("");
        match verdict {
            "PASS" => {}
            "SKIP" if detail.contains("--require-enforcement not available") => {}
            _ => problems.push(format!("{placement} {check}: {verdict} {detail}")),
        }
        seen.insert((placement.to_string(), check.to_string()));
    }
    for (placement, held, extra) in EXPECTED {
        let held_checks = if *held { HELD_CHECKS } else { &[] };
        for check in held_checks.iter().chain(extra.iter()) {
            if !seen.contains(&(placement.to_string(), check.to_string())) {
                problems.push(format!("{placement} {check}: never reported"));
            }
        }
    }
    if exit != Some("0") || !problems.is_empty() {
        panic!(
            "VM scenarios failed (exit marker {exit:?}):\n{}\n--- console ---\n{console}",
            problems.join("\n")
        );
    }
}
