//! The sandbox's cost: isolated /bin/true with sandbox `off`, `workspace` and `strict`, and a
//! bare `std::process::Command` spawn + wait, interleaved in one run so every side sees the same
//! machine noise. Goal: `workspace` and `strict` add at most 5% to the p50 of `off`.
//!
//!
//! Beside them, the kernel's own floor: `/bin/true` forked and exec'd by `std::process::Command`
//! (a `pre_exec` hook, so every raw side forks the same way) with, in the child, nothing, a
//! Landlock domain of as many rules as `workspace` adds here, `strict`'s seccomp program, or both.
//! What those add to the raw spawn is what the kernel charges a process for the two mechanisms
//! (preparing them at install, freeing them at reap), whatever runs them.
//!
//! `cargo bench --bench exec_sandbox` (as root for the cgroup mode; `none` otherwise).
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Instant;

use hdrhistogram::Histogram;
use vigil_core::exec::host::{CgroupMode, HostConfig};
use vigil_core::exec::job::{Executor, ExecutorConfig};
use vigil_core::exec::sandbox::{kernel_abi, SandboxConfig, SandboxMode};
use vigil_core::exec::{Limits, ProcessSpec};
use vigil_core::model::JobStatus;

/// Measured iterations per side.
const ITERATIONS: u32 = 400;
/// Unmeasured iterations first (page cache, dentries, lazy setup).
const WARMUP_ITERATIONS: u32 = 30;

fn pct(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:>6} us  p99 {:>6} us  p999 {:>6} us",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999)
    )
}

fn ratio(a: &Histogram<u64>, b: &Histogram<u64>, q: f64) -> f64 {
    a.value_at_quantile(q) as f64 / b.value_at_quantile(q).max(1) as f64
}

/// What a raw child applies before exec.
#[derive(Clone, Copy)]
struct Raw {
    landlock: bool,
    seccomp: bool,
}

/// A Landlock ruleset like the sandbox's: every file right of this ABI handled, and (as
/// `strict` has them, where the ABI does) the network rights and the scopes; a read rule for
/// each entry of `/` and of the home directory, which is how the deny list's rules are laid
/// out (about as many as `workspace` adds here). Returns the ruleset and its rule count.
fn raw_ruleset(abi: i32) -> (OwnedFd, usize) {
    use landlock::{
        Access, AccessFs, AccessNet, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
        Scope, ABI,
    };
    let level = abi;
    let abi = ABI::from(abi);
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .expect("handled fs rights");
    // Empty sets are refused: network rights from ABI 4, scopes from ABI 6.
    if level >= 4 {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .expect("handled net rights");
    }
    if level >= 6 {
        ruleset = ruleset.scope(Scope::from_all(abi)).expect("scopes");
    }
    let mut rs = ruleset.create().expect("ruleset");
    let mut rules = 0;
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    for dir in [Some(std::path::PathBuf::from("/")), home]
        .into_iter()
        .flatten()
    {
        for entry in std::fs::read_dir(&dir).expect("list").flatten() {
            let Ok(fd) = PathFd::new(entry.path()) else {
                continue;
            };
            rs = rs
                .add_rule(PathBeneath::new(fd, AccessFs::from_read(abi)))
                .expect("rule");
            rules += 1;
        }
    }
    (Option::<OwnedFd>::from(rs).expect("ruleset fd"), rules)
}

/// `/bin/true` by fork + exec, with `raw` applied in the child; the wall time in microseconds.
fn raw_spawn(raw: Raw, ruleset: i32, filter: &[libc::sock_filter]) -> u64 {
    let prog = libc::sock_fprog {
        len: filter.len() as libc::c_ushort,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    let prog_addr = &prog as *const libc::sock_fprog as usize;
    let mut cmd = Command::new("/bin/true");
    // SAFETY: the hook makes only system calls (no allocation, no lock) in the forked child;
    // `prog` and the filter it points to outlive the spawn, which waits for the exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if raw.landlock && libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if raw.seccomp
                && libc::prctl(libc::PR_SET_SECCOMP, 2 as libc::c_ulong, prog_addr, 0, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let t = Instant::now();
    let st = cmd.status().expect("raw spawn");
    let us = t.elapsed().as_micros() as u64;
    assert!(st.success());
    us
}

fn main() {
    if kernel_abi() < 1 {
        println!("exec_sandbox: this kernel has no Landlock; nothing to measure");
        return;
    }
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // The data dir where vigil's default one is, beneath the home directory: the read rules are
    // rebuilt whenever a directory on the way to a denied path changes, and /tmp on a busy
    // machine changes all the time (a data dir there pays for listing it on most jobs).
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let data = match &home {
        Some(h) => tempfile::tempdir_in(h).expect("data dir"),
        None => tempfile::tempdir().expect("data dir"),
    };
    let job_root = tempfile::tempdir().expect("job root");
    let mode = if root { None } else { Some(CgroupMode::None) };
    let ex = Executor::new(ExecutorConfig {
        host: HostConfig {
            force_mode: mode,
            ..HostConfig::default()
        },
        sandbox: SandboxConfig {
            data_dir: Some(data.path().to_path_buf()),
            ..SandboxConfig::default()
        },
        ..ExecutorConfig::default()
    })
    .expect("executor");
    let spec = ProcessSpec {
        argv: vec!["/bin/true".into()],
        cwd: Some(job_root.path().to_path_buf()),
        ..ProcessSpec::default()
    };
    let limits = |m: SandboxMode| {
        let mut l = Limits {
            pids: Some(64),
            memory_bytes: Some(256 << 20),
            ..Limits::default()
        };
        l.sandbox.mode = Some(m);
        l
    };
    let sides = [
        ("off", limits(SandboxMode::Off)),
        ("workspace", limits(SandboxMode::Workspace)),
        ("strict", limits(SandboxMode::Strict)),
    ];
    println!(
        "exec_sandbox: /bin/true, {ITERATIONS} iterations per side, interleaved; cgroup mode {}, Landlock ABI {}",
        ex.host().mode.as_str(),
        kernel_abi()
    );
    let (ruleset, rules) = raw_ruleset(kernel_abi());
    let filter = vigil_core::exec::sandbox::strict_seccomp_program().expect("strict filter");
    let raws = [
        (
            "fork+exec",
            Raw {
                landlock: false,
                seccomp: false,
            },
        ),
        (
            "+ Landlock",
            Raw {
                landlock: true,
                seccomp: false,
            },
        ),
        (
            "+ seccomp",
            Raw {
                landlock: false,
                seccomp: true,
            },
        ),
        (
            "+ both",
            Raw {
                landlock: true,
                seccomp: true,
            },
        ),
    ];
    let mut raw_hists: Vec<Histogram<u64>> = (0..raws.len())
        .map(|_| Histogram::new(3).expect("histogram"))
        .collect();
    let mut bare = Histogram::<u64>::new(3).expect("histogram");
    let mut hists: Vec<Histogram<u64>> = (0..sides.len())
        .map(|_| Histogram::new(3).expect("histogram"))
        .collect();
    for i in 0..(WARMUP_ITERATIONS + ITERATIONS) {
        let t = Instant::now();
        let st = Command::new("/bin/true").status().expect("spawn");
        let bare_us = t.elapsed().as_micros() as u64;
        assert!(st.success());
        if i >= WARMUP_ITERATIONS {
            bare.record(bare_us).expect("record");
        }
        for k in 0..raws.len() {
            let s = (k + i as usize) % raws.len();
            let us = raw_spawn(raws[s].1, ruleset.as_raw_fd(), &filter);
            if i >= WARMUP_ITERATIONS {
                raw_hists[s].record(us).expect("record");
            }
        }
        // Rotate the order so no side always runs right after the bare spawn.
        for k in 0..sides.len() {
            let s = (k + i as usize) % sides.len();
            let (name, l) = &sides[s];
            let t = Instant::now();
            let r = ex.run_process_in(
                &format!("bench-sbx-{name}-{i}"),
                &spec,
                l,
                Some(job_root.path()),
                None,
            );
            let us = t.elapsed().as_micros() as u64;
            assert_eq!(r.status, JobStatus::Completed, "{name}: {r:?}");
            if i >= WARMUP_ITERATIONS {
                hists[s].record(us).expect("record");
            }
        }
    }
    println!("  baseline std::process::Command   {}", pct(&bare));
    for (s, (name, _)) in sides.iter().enumerate() {
        println!("  vigil isolated, sandbox {name:<9} {}", pct(&hists[s]));
    }
    for s in 1..sides.len() {
        println!(
            "  ratio {}/off  p50 {:.3}x  p99 {:.3}x  p999 {:.3}x",
            sides[s].0,
            ratio(&hists[s], &hists[0], 0.5),
            ratio(&hists[s], &hists[0], 0.99),
            ratio(&hists[s], &hists[0], 0.999)
        );
    }
    for (s, (name, _)) in sides.iter().enumerate() {
        println!(
            "  ratio {name}/bare  p50 {:.2}x  p99 {:.2}x",
            ratio(&hists[s], &bare, 0.5),
            ratio(&hists[s], &bare, 0.99)
        );
    }
    // The kernel's floor: what each mechanism adds to a raw fork + exec, as a share of `off`.
    println!(
        "  kernel floor, no vigil code ({rules} Landlock rules, a {}-instruction filter):",
        filter.len()
    );
    for (s, (name, _)) in raws.iter().enumerate() {
        println!("    raw {name:<10} {}", pct(&raw_hists[s]));
    }
    let off = hists[0].value_at_quantile(0.5).max(1) as f64;
    let plain = raw_hists[0].value_at_quantile(0.5) as f64;
    for (s, (name, _)) in raws.iter().enumerate().skip(1) {
        let added = raw_hists[s].value_at_quantile(0.5) as f64 - plain;
        println!(
            "    {name:<10} adds {added:>5.0} us at p50 = {:.1}% of `off`",
            added / off * 100.0
        );
    }
}
