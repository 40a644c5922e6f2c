//! Shared by the end-to-end tests: the path of the `vigil` binary (built on first use when
//! `cargo test` did not build it), C hosts of libvigil compiled against this build, and
//! scratch directories removed on drop.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// target/<profile> of this test binary.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Builds `package` in this test binary's profile. Always runs cargo: it is a no-op when up to
/// date, and a stale artifact would test old code.
pub fn cargo_build(package: &str) {
    let release = profile_dir().file_name().is_some_and(|n| n == "release");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", package]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building {package} failed");
}

/// The `vigil` binary of the same profile as this test binary.
pub fn vigil_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        cargo_build("vigil-shell");
        let bin = profile_dir().join("vigil");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
}

/// Runs `vigil ARGS` on the data directory `data` (and the best cgroup mode unless ARGS force
/// one): (exit code, stdout, stderr).
pub fn vigil_output(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(vigil_bin())
        .env("VIGIL_DATA_DIR", data)
        .env_remove("VIGIL_CGROUP_MODE")
        .args(args)
        .output()
        .expect("run vigil");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A scratch directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vigil-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding libvigil.a and libvigil.so, built once.
pub fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        cargo_build("vigil-ffi");
        let dir = profile_dir();
        for lib in ["libvigil.a", "libvigil.so"] {
            assert!(dir.join(lib).exists(), "{lib} missing in {}", dir.display());
        }
        dir
    })
}

/// The system libraries a static Rust library needs.
const STATIC_LIBS: &[&str] = &["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s", "-lc"];

/// Compiles the host tests/c/`source` (C11, or C++17 with `cpp`) with every warning an error,
/// linked statically or dynamically against the libvigil of this build, into `out`.
pub fn compile_c_host(source: &str, cpp: bool, link_static: bool, out: &Path) {
    let lib = lib_dir();
    let mut cmd = Command::new(if cpp { "g++" } else { "gcc" });
    cmd.arg(if cpp { "-std=c++17" } else { "-std=c11" })
        .args([
            "-Wall",
            "-Wextra",
            "-Wpedantic",
            "-Werror",
            "-g",
            "-pthread",
            "-I",
        ])
        .arg(repo().join("include"))
        .arg(repo().join("tests/c").join(source))
        .arg("-o")
        .arg(out);
    if link_static {
        cmd.arg(lib.join("libvigil.a")).args(STATIC_LIBS);
    } else {
        cmd.arg("-L").arg(lib).arg("-lvigil");
        cmd.arg(format!("-Wl,-rpath,{}", lib.display()));
    }
    let output = cmd.output().expect("run the C compiler");
    assert!(
        output.status.success(),
        "compiling {source} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// TOML text as JSON, read by Python's standard parser (tomllib, Python 3.11+).
pub fn toml_as_json(text: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, tomllib; print(json.dumps(tomllib.loads(sys.argv[1])))",
            text,
        ])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "not TOML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python3")
}

/// Pages of `path` in `range` (bytes) that are in the page cache: mincore over a fresh
/// read-only mapping, which itself reads nothing.
pub fn resident_pages(path: &Path, range: std::ops::Range<usize>) -> usize {
    use std::os::fd::AsRawFd;
    const PAGE: usize = 4096;
    let file = std::fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    // SAFETY: a read-only shared mapping of a file we opened; never dereferenced.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED);
    let mut vec = vec![0u8; len.div_ceil(PAGE)];
    // SAFETY: `vec` has one byte per page of the mapping.
    let rc = unsafe { libc::mincore(base, len, vec.as_mut_ptr()) };
    assert_eq!(rc, 0);
    // SAFETY: unmapping what we mapped.
    unsafe { libc::munmap(base, len) };
    let pages = range.start / PAGE..range.end.div_ceil(PAGE).min(vec.len());
    vec[pages].iter().filter(|&&b| b & 1 != 0).count()
}
