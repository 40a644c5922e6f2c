//! `vigil doctor [--json]`: what this host offers (cgroup mode, delegation, kernel features),
//! what vigil will actually enforce here, limit by limit and by whom (`kernel`, vigil's
//! `supervisor`, ...), and how the log makes records durable (io_uring or fdatasync, and why).
use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};
use vigil_core::exec::enforcement::Enforcement;
use vigil_core::exec::host::{Host, Placement};
use vigil_core::exec::sandbox::{SandboxMode, SandboxReport, SandboxRequest};
use vigil_core::exec::Limits;
use vigil_core::wal::sync::{SyncEngine, SyncMethod};

use crate::config::{executor_config, CgroupModeArg, Global};
use vigil_core::exec::job::Executor;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Use at most this cgroup mode: v2, hybrid, v1 or none.
    #[arg(long = "cgroup-mode", env = "VIGIL_CGROUP_MODE", value_enum)]
    pub cgroup_mode: Option<CgroupModeArg>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Global, args: &DoctorArgs) -> ExitCode {
    let mut config = executor_config(args.cgroup_mode);
    // The data dir a job of this CLI would be kept from (as `vigil run` does).
    config.sandbox.data_dir = Some(cli.data_dir());
    let ex = match Executor::new(config).map_err(|e| e.to_string()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("vigil doctor: {e}");
            return ExitCode::from(2);
        }
    };
    let h = ex.host();
    // Every limit requested, to show how each one would be held.
    let all = Limits {
        timeout: Some(std::time::Duration::from_secs(1)),
        cpu_time: Some(std::time::Duration::from_secs(1)),
        memory_bytes: Some(1 << 30),
        pids: Some(100),
        ..Limits::default()
    };
    let mut enforcement = ex.enforcement(&all);
    // The sandbox's rules have their own section, mode by mode.
    enforcement
        .limits
        .retain(|l| !l.limit.starts_with("sandbox"));
    let sandbox = ex.sandbox_report();
    // What a job of vigil's own user gets with the sandbox off: as root, it may leave its
    // cgroup.
    let off = Limits {
        sandbox: SandboxRequest {
            mode: Some(SandboxMode::Off),
            ..SandboxRequest::default()
        },
        ..all.clone()
    };
    let sandbox_off_notice = ex.enforcement(&off).notices.into_iter().next();
    let sync = log_sync_method();
    if args.json {
        let mut report = report_json(h, &enforcement, &sync);
        report["sandbox"] = serde_json::to_value(&sandbox).unwrap_or(Value::Null);
        report["sandbox_off_notice"] = json!(sandbox_off_notice);
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_report(h, &enforcement, &sync);
        print_sandbox(&sandbox);
        if let Some(n) = sandbox_off_notice {
            println!("notice:        a job with sandbox off and no --user: {n}");
        }
    }
    ExitCode::SUCCESS
}

/// The `--json` report.
fn report_json(h: &Host, enforcement: &Enforcement, sync: &(&str, String)) -> Value {
    let (sync_method, sync_why) = sync;
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    json!({
        "cgroup": {
            "detected_mode": h.detected_mode.as_str(),
            "mode": h.mode.as_str(),
            "placement": h.placement.as_str(),
            "own_group": path(&h.own_group),
            "supervisor_leaf": path(&h.supervisor_leaf),
            "unified_parent": path(&h.unified_parent),
            "v2_controllers": h.v2_controllers,
            "v1_parents": {
                "memory": path(&h.v1.memory),
                "pids": path(&h.v1.pids),
                "cpuacct": path(&h.v1.cpuacct),
                "freezer": path(&h.v1.freezer),
            },
            "cgroup_kill": h.cgroup_kill,
            "cgroup_freeze": h.cgroup_freeze,
        },
        "root": h.is_root,
        "kernel": {
            "clone3": h.clone3,
            "clone_into_cgroup": h.clone_into_cgroup,
            "pidfd": h.pidfd,
            "openat2": h.openat2,
            "close_range": h.close_range,
            "mount_namespace": h.mount_namespace,
        },
        "file_resolver": if h.openat2 { "openat2(RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS)" } else { "component walk (O_NOFOLLOW, symlinks refused)" },
        "enforcement": enforcement,
        "fix": h.fix_hint(),
        "wal": {
            "sync_method": sync_method,
            "sync_method_reason": sync_why,
        },
        "notes": h.notes,
    })
}

/// The report for a person.
fn print_report(h: &Host, enforcement: &Enforcement, sync: &(&str, String)) {
    let (sync_method, sync_why) = sync;
    println!(
        "cgroup mode:   {} (host offers {})",
        h.mode.as_str(),
        h.detected_mode.as_str()
    );
    println!(
        "running as:    {}",
        if h.is_root {
            "root"
        } else {
            "unprivileged user"
        }
    );
    print_placement(h);
    if let Some(p) = &h.unified_parent {
        println!(
            "cgroup2 group: {} (cgroup.kill: {}, controllers: {})",
            p.display(),
            h.cgroup_kill,
            if h.v2_controllers.is_empty() {
                "none".into()
            } else {
                h.v2_controllers.join(" ")
            }
        );
    }
    for (name, p) in h.v1.present() {
        println!("v1 {name:<8}   {}", p.display());
    }
    println!(
        "kernel:        clone3 {} / into cgroup {} / pidfd {} / openat2 {} / close_range {}",
        h.clone3, h.clone_into_cgroup, h.pidfd, h.openat2, h.close_range
    );
    if h.is_root {
        println!(
            "root jobs:     {}",
            if h.mount_namespace {
                "a sandboxed one gets terminals of its own (a mount namespace and devpts each)"
            } else {
                "NOT HELD: a sandboxed one keeps the host's terminals (vigil may not make mount \
                 namespaces here: no CAP_SYS_ADMIN)"
            }
        );
    }
    println!(
        "kill path:     {}{}",
        enforcement.kill,
        if enforcement.kill_complete {
            " (reaches every process of the job)"
        } else {
            ""
        }
    );
    println!("accounting:    {}", enforcement.accounting);
    println!("limits (held by: kernel = even if vigil dies; supervisor = while vigil lives):");
    for l in &enforcement.limits {
        println!(
            "  {:<9} {:<18} {}",
            l.limit,
            l.strength.as_str(),
            l.mechanism
        );
        if let Some(why) = &l.not_held_reason {
            println!("  {:<9} {:<18} {why}", "", "NOT HELD:");
        }
    }
    println!("log sync:      {sync_method}: {sync_why}");
    for n in &h.notes {
        println!("note: {n}");
    }
    if let Some(fix) = h.fix_hint() {
        println!("to hold memory and pids limits here: {fix}");
    }
}

/// The sandbox section for a person: the ABI, then each mode's rules and who holds them.
fn print_sandbox(s: &SandboxReport) {
    println!(
        "sandbox:       default {}; Landlock ABI {} (kernel {}){}; seccomp {}",
        s.default_mode,
        s.landlock_abi_used,
        s.landlock_abi_kernel,
        if s.landlock_abi_kernel == 0 {
            ": no Landlock, so no file rules and no signal scoping"
        } else {
            ""
        },
        if s.seccomp { "yes" } else { "no" }
    );
    println!("landlock:      {}", s.landlock_rights.join(" "));
    for (mode, rules) in [("workspace", &s.workspace), ("strict", &s.strict)] {
        println!("sandbox {mode}:");
        for l in rules {
            println!(
                "  {:<16} {:<12} {}",
                l.limit,
                l.strength.as_str(),
                l.mechanism
            );
            if let Some(why) = &l.not_held_reason {
                println!("  {:<16} {:<12} {why}", "", "NOT HELD:");
            }
        }
    }
}

/// Which placement applies (vigil_core::exec::host's module doc) and the groups it uses.
fn print_placement(h: &Host) {
    let what = match h.placement {
        Placement::RootCgroup => "in the root cgroup; job groups beneath it",
        Placement::Delegated => {
            "alone in a delegated group: vigil runs in its supervisor leaf, jobs in a sibling subtree"
        }
        Placement::SharedRoot => {
            "root in a group shared with other processes: job groups in a dedicated group under the root cgroup"
        }
        Placement::Shared => {
            "in a group shared with other processes: controllers cannot be handed down"
        }
        Placement::OwnGroup => "job groups beneath vigil's own group in each hierarchy",
        Placement::Undelegated => "no cgroup vigil may create (no delegation)",
    };
    println!("placement:     {} ({what})", h.placement.as_str());
    if let Some(g) = &h.own_group {
        println!("own group:     {}", g.display());
    }
    if let Some(l) = &h.supervisor_leaf {
        println!("supervisor:    {}", l.display());
    }
}

/// The sync method a log opened here uses (the default, `auto`) and why: the same probe the
/// log makes when it opens (io_uring_setup), without opening any log.
fn log_sync_method() -> (&'static str, String) {
    match SyncEngine::new(SyncMethod::Auto) {
        Ok(engine) => {
            let why = match engine.fallback_reason() {
                None if engine.method_name() == "fdatasync" => SyncEngine::auto_reason().to_string(),
                None => "io_uring_setup succeeded: fdatasync is submitted as IORING_OP_FSYNC with IORING_FSYNC_DATASYNC".to_string(),
                Some(e) => format!("io_uring is unavailable here (io_uring_setup: {e}); plain fdatasync(2)"),
            };
            (engine.method_name(), why)
        }
        Err(e) => (
            "none",
            format!("io_uring_setup failed in a way that is not \"unavailable\" ({e}): opening a log fails"),
        ),
    }
}
