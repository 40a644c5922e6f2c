//! README.md, "Use from C": the `host.c` it shows, built with the exact shell lines it gives
//! (static, dynamic, and through the rendered pkg-config file), runs and does what it says.
//! The lines run in a scratch directory laid out like the repository (`include/`, `ffi/`, and
//! `target/release/` holding the library this test's profile built), except the `cargo build`
//! line: the test builds the library itself, in its own profile.
mod common;

use std::path::Path;
use std::process::Command;

use common::{cargo_build, profile_dir, TempDir};

/// The section of README.md under `heading`, up to the next `## `.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README.md has no {heading:?}"));
    let rest = &readme[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The fenced code blocks of `text` in language `lang`.
fn code_blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    text.match_indices(&fence)
        .map(|(at, _)| {
            let body = &text[at + fence.len()..];
            &body[..body.find("```").expect("an unclosed code block")]
        })
        .collect()
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link)
        .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
}

#[test]
fn the_readme_c_host_builds_and_runs_with_the_readme_lines() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let usage = section(&readme, "## Use from C\n");
    let [host] = code_blocks(usage, "c")[..] else {
        panic!("\"Use from C\" should show one C block");
    };
    let [lines] = code_blocks(usage, "sh")[..] else {
        panic!("\"Use from C\" should show one sh block");
    };
    let script: Vec<&str> = lines
        .lines()
        .filter(|l| !l.starts_with("cargo build"))
        .collect();
    assert!(script.iter().any(|l| l.contains("libvigil.a")));
    assert!(script.iter().any(|l| l.contains("-lvigil")));
    assert!(script.iter().any(|l| l.contains("pkg-config")));

    cargo_build("vigil-ffi");
    let dir = TempDir::new("c-readme");
    let work = dir.path();
    std::fs::write(work.join("host.c"), host).unwrap();
    symlink(&repo.join("include"), &work.join("include"));
    symlink(&repo.join("ffi"), &work.join("ffi"));
    let release = work.join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    for lib in ["libvigil.a", "libvigil.so"] {
        symlink(&profile_dir().join(lib), &release.join(lib));
    }

    let out = Command::new("sh")
        .args(["-e", "-x", "-c", &script.join("\n")])
        .current_dir(work)
        .output()
        .expect("run sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "README lines failed:\n{stdout}\n{stderr}"
    );
    // Three hosts ran, each recorded a record and ran a job that printed its line.
    assert_eq!(
        stdout.matches("hi from a job").count(),
        3,
        "unexpected output:\n{stdout}"
    );
    assert!(stdout.contains("ended with status 1:"), "{stdout}");

    // The rendered pkg-config file names this version and the build tree.
    let pc = std::fs::read_to_string(release.join("vigil.pc")).unwrap();
    assert!(pc.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))));
    assert!(
        !pc.contains('@'),
        "unrendered placeholder in vigil.pc:\n{pc}"
    );
    let modversion = Command::new("pkg-config")
        .args(["--modversion", "vigil"])
        .env("PKG_CONFIG_PATH", &release)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&modversion.stdout).trim(),
        env!("CARGO_PKG_VERSION")
    );
}
