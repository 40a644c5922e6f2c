//! Boots Debian's kernel under qemu (software emulation, so it runs on any x86-64 host, nested
//! or not) on a pure cgroup v2 hierarchy (`cgroup_no_v1=all`), from an initramfs this module
//! builds: a static busybox, tests/vm/init.sh as /init, a script it runs, and the binaries the
//! caller names with the libraries they link. Shared by tests/vm_cgroup2.rs and
//! benches/exec_spawn_vm.rs.
#![allow(dead_code)]
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Marker the VM's /init prints, with the script's exit code, right before powering off.
pub const EXIT_MARKER: &str = "VIGIL-VM-EXIT ";

/// What booting the VM needs from the host.
pub struct VmTools {
    qemu: PathBuf,
    kernel: PathBuf,
    busybox: PathBuf,
    cpio: PathBuf,
}

pub fn which(name: &str) -> Option<PathBuf> {
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

pub fn find_tools() -> Result<VmTools, String> {
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

/// Builds the initramfs (newc cpio): busybox, tests/vm/init.sh as /init, `script` as
/// /scenarios.sh (what /init runs), and each `(binary, path in the VM)` with the libraries it
/// links. Returns the image's path.
pub fn build_initramfs(
    tools: &VmTools,
    work: &Path,
    script: &Path,
    binaries: &[(&Path, &str)],
) -> PathBuf {
    let root = work.join("root");
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm");
    copy_into(&root, &tools.busybox, "/bin/busybox");
    copy_into(&root, &here.join("init.sh"), "/init");
    copy_into(&root, script, "/scenarios.sh");
    for (bin, dest) in binaries {
        copy_into(&root, bin, dest);
        // The release profile keeps debug info; the VM unpacks the initramfs slowly
        // (emulated), so drop it where binutils is at hand.
        if let Some(objcopy) = which("objcopy") {
            let _ = Command::new(objcopy)
                .arg("--strip-debug")
                .arg(root.join(dest.trim_start_matches('/')))
                .status();
        }
        for lib in linked_libraries(bin) {
            let real = fs::canonicalize(&lib).unwrap_or_else(|_| lib.clone());
            copy_into(&root, &real, &lib.to_string_lossy());
        }
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

/// Boots the VM and returns its console output; panics when it does not power off within
/// `run_s_max` seconds.
pub fn boot(tools: &VmTools, initramfs: &Path, work: &Path, run_s_max: u64) -> String {
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
    let until = Instant::now() + Duration::from_secs(run_s_max);
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
        "the VM did not power off within {run_s_max} s; console:\n{text}"
    );
    text
}
