//! C and C++ hosts of libvigil: tests/c/*.c{,pp} compiled with -Wall -Wextra -Wpedantic
//! -Werror as C11 and C++17, linked statically and dynamically against the library this
//! workspace builds, and run. Also: every exported symbol is declared in the header and every
//! declared function is exported.
mod common;

use std::path::Path;
use std::process::Command;

use common::{compile_c_host as compile, lib_dir, repo, TempDir};

/// Runs a host binary on a fresh data directory (its only argument), under `wrapper` (e.g.
/// valgrind) when given, and checks it passed every check.
fn run_host(bin: &Path, wrapper: &[&str]) {
    let data = TempDir::new("c-host-data");
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let out = cmd.arg(data.path()).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed ({}): {}{}",
        bin.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all checks passed"));
}

/// Compiles host `name` (tests/c/NAME.c, or NAME_cpp.cpp as C++17), links it statically and
/// dynamically, and runs both.
fn host_passes(name: &str, cpp: bool) {
    let dir = TempDir::new("c-host");
    let source = if cpp {
        format!("{name}_cpp.cpp")
    } else {
        format!("{name}.c")
    };
    for link_static in [true, false] {
        let bin = dir.path().join(format!("{name}-{cpp}-{link_static}"));
        compile(&source, cpp, link_static, &bin);
        run_host(&bin, &[]);
    }
}

#[test]
fn c11_telemetry_host_linked_statically_and_dynamically() {
    host_passes("telemetry", false);
}

#[test]
fn cpp17_telemetry_host_linked_statically_and_dynamically() {
    host_passes("telemetry", true);
}

#[test]
fn c11_wal_host_linked_statically_and_dynamically() {
    host_passes("wal", false);
}

#[test]
fn cpp17_wal_host_linked_statically_and_dynamically() {
    host_passes("wal", true);
}

#[test]
fn c11_jobs_host_linked_statically_and_dynamically() {
    host_passes("jobs", false);
}

#[test]
fn cpp17_jobs_host_linked_statically_and_dynamically() {
    host_passes("jobs", true);
}

#[test]
fn c11_handles_host_linked_statically_and_dynamically() {
    host_passes("handles", false);
}

#[test]
fn cpp17_handles_host_linked_statically_and_dynamically() {
    host_passes("handles", true);
}

#[test]
fn c_hosts_are_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("skipped: valgrind is not installed");
        return;
    }
    let dir = TempDir::new("c-valgrind");
    for name in ["telemetry", "wal", "jobs", "handles"] {
        let bin = dir.path().join(format!("{name}-valgrind"));
        compile(&format!("{name}.c"), false, false, &bin);
        run_host(
            &bin,
            &[
                "valgrind",
                "--error-exitcode=99",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "-q",
            ],
        );
    }
}

#[test]
fn exported_symbols_and_header_declarations_agree() {
    let so = lib_dir().join("libvigil.so");
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut exported: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, kind, name) = (f.next()?, f.next()?, f.next()?);
            (kind == "T" && name.starts_with("vigil_")).then(|| name.to_string())
        })
        .collect();
    exported.sort();
    let header = std::fs::read_to_string(repo().join("include/vigil.h")).unwrap();
    // A declared function: an identifier `vigil_...` directly followed by `(`.
    let mut declared: Vec<String> = header
        .match_indices("vigil_")
        .filter(|(at, _)| {
            *at == 0
                || !header.as_bytes()[at - 1].is_ascii_alphanumeric()
                    && header.as_bytes()[at - 1] != b'_'
        })
        .filter_map(|(at, _)| {
            let rest = &header[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            rest[end..]
                .starts_with('(')
                .then(|| rest[..end].to_string())
        })
        .collect();
    declared.sort();
    declared.dedup();
    assert!(!exported.is_empty());
    assert_eq!(exported, declared);
}

#[test]
fn header_and_library_versions_agree() {
    let header = std::fs::read_to_string(repo().join("include/vigil.h")).unwrap();
    let version = |name: &str| -> u32 {
        header
            .lines()
            .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} missing"))
            .trim()
            .parse()
            .unwrap()
    };
    let v: Vec<u32> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(version("VIGIL_VERSION_MAJOR"), v[0]);
    assert_eq!(version("VIGIL_VERSION_MINOR"), v[1]);
    assert_eq!(version("VIGIL_VERSION_PATCH"), v[2]);
}
