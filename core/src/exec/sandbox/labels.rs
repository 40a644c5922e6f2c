//! Each sandbox rule as a labelled entry: who holds it, or why it is not held.

use std::path::PathBuf;

use super::*;

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ResolvedSandbox {
    /// One entry per sandbox rule: who holds it, or why it is not held.
    // Longer than 70 lines on purpose: one entry per rule, in the order doctor and the record
    // list them; each is a short, independent statement of who holds that rule here.
    pub(crate) fn enforcement(&self) -> Vec<LimitEnforcement> {
        let mode = self.mode;
        let mut out = Vec::new();
        let raised = self
            .raised_from
            .map(|a| format!(" (asked for {}, raised to the server's floor)", a.as_str()))
            .unwrap_or_default();
        if mode == SandboxMode::Off {
            out.push(rule(
                "sandbox",
                mode,
                Strength::NotRequested,
                true,
                format!("off{raised}: the job writes, reads, connects and signals wherever its user can"),
                None,
            ));
            return out;
        }
        let abi = self.abi;
        let no_landlock = || {
            Some(if abi <= 0 {
                "this kernel has no Landlock (or vigil was told to use none)".to_string()
            } else {
                format!("Landlock ABI {abi}")
            })
        };
        out.push(rule(
            "sandbox",
            mode,
            if abi >= 1 {
                Strength::Kernel
            } else {
                Strength::NotEnforced
            },
            abi >= 1,
            format!(
                "{}{raised}: Landlock ABI {abi} applied in the child before exec",
                mode.as_str()
            ),
            (abi < 1).then(|| no_landlock().unwrap_or_default()),
        ));
        let (s, h) = if abi >= 1 {
            (Strength::Kernel, true)
        } else {
            (Strength::NotEnforced, false)
        };
        out.push(rule(
            "sandbox.write",
            mode,
            s,
            h,
            format!(
                "Landlock: writes only beneath {}, the job's private TMPDIR and the devices {}",
                if self.writable.is_empty() {
                    "the job's root".to_string()
                } else {
                    list(&self.writable)
                },
                DEVICES.join(" ")
            ),
            (!h).then(|| no_landlock().unwrap_or_default()),
        ));
        let trunc = abi >= ABI_TRUNCATE;
        out.push(rule(
            "sandbox.truncate",
            mode,
            if trunc { Strength::Kernel } else { Strength::NotEnforced },
            trunc,
            "Landlock LANDLOCK_ACCESS_FS_TRUNCATE: truncate(2) only where writes are allowed".into(),
            (!trunc).then(|| {
                format!(
                    "{}: truncate(2) of a file outside the writable paths is not refused (needs ABI {ABI_TRUNCATE}, Linux 6.2)",
                    no_landlock().unwrap_or_default()
                )
            }),
        ));
        let read_held = abi >= 1 && self.denied_unheld.is_empty();
        out.push(rule(
            "sandbox.read",
            mode,
            if abi >= 1 { Strength::Kernel } else { Strength::NotEnforced },
            read_held,
            format!("Landlock: reads and executes everywhere except {}", list(&self.denied)),
            if abi < 1 {
                no_landlock()
            } else if !self.denied_unheld.is_empty() {
                Some(format!(
                    "{} lie beneath a writable path, and Landlock cannot deny beneath what it allows",
                    list(&self.denied_unheld)
                ))
            } else {
                None
            },
        ));
        let scope = abi >= ABI_SCOPE;
        out.push(rule(
            "sandbox.signal",
            mode,
            if scope { Strength::Kernel } else { Strength::NotEnforced },
            scope,
            "Landlock LANDLOCK_SCOPE_SIGNAL: no signal to a process outside the job's domain (vigil included)".into(),
            (!scope).then(|| {
                format!(
                    "{}: no signal scoping (needs ABI {ABI_SCOPE}, Linux 6.12); a job of vigil's user can signal vigil",
                    no_landlock().unwrap_or_default()
                )
            }),
        ));
        if mode == SandboxMode::Strict {
            let net_ll = if abi >= ABI_NET {
                "; Landlock also refuses every TCP bind and connect"
            } else {
                ""
            };
            out.push(rule(
                "sandbox.network",
                mode,
                if self.seccomp {
                    Strength::Kernel
                } else {
                    Strength::NotEnforced
                },
                self.seccomp,
                format!("seccomp: socket(2) refused (EPERM) for every family but AF_UNIX{net_ll}"),
                (!self.seccomp).then(|| "this kernel has no seccomp filters".to_string()),
            ));
            out.push(rule(
                "sandbox.io_uring",
                mode,
                if self.seccomp {
                    Strength::Kernel
                } else {
                    Strength::NotEnforced
                },
                self.seccomp,
                "seccomp: io_uring_setup, io_uring_enter and io_uring_register refused (EPERM)"
                    .into(),
                (!self.seccomp).then(|| "this kernel has no seccomp filters".to_string()),
            ));
        }
        out.push(rule(
            "sandbox.tmpdir",
            mode,
            Strength::Supervisor,
            true,
            "vigil gives each job an empty private TMPDIR (0700) that no other job holds while it runs, sets TMPDIR, TMP and TEMP to it, and empties it after the job; when the job's cgroup was removed (the kernel's proof that none of its processes is left) the empty directory is kept for a later job of this vigil, else removed, and vigil removes the ones it kept when it exits (if vigil dies first, the next vigil that opens the data dir removes them: in the data dir's tmp/, or for a job of another user in vigil-jobs-UID in the temporary directory)".into(),
            None,
        ));
        out
    }
}

/// The Landlock rights an ABI has (file system, network, scoping), as the kernel names them.
pub fn landlock_rights(abi: i32) -> Vec<&'static str> {
    let mut out = Vec::new();
    if abi >= 1 {
        out.extend([
            "fs.execute",
            "fs.write_file",
            "fs.read_file",
            "fs.read_dir",
            "fs.remove_dir",
            "fs.remove_file",
            "fs.make_char",
            "fs.make_dir",
            "fs.make_reg",
            "fs.make_sock",
            "fs.make_fifo",
            "fs.make_block",
            "fs.make_sym",
        ]);
    }
    if abi >= 2 {
        out.push("fs.refer");
    }
    if abi >= ABI_TRUNCATE {
        out.push("fs.truncate");
    }
    if abi >= ABI_NET {
        out.extend(["net.bind_tcp", "net.connect_tcp"]);
    }
    if abi >= 5 {
        out.push("fs.ioctl_dev");
    }
    if abi >= ABI_SCOPE {
        out.extend(["scope.abstract_unix_socket", "scope.signal"]);
    }
    out
}
