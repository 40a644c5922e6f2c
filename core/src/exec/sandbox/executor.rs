//! The executor's side of the sandbox: what `doctor` reports, each job's labels, and the
//! preparation in the parent before the fork.

use super::*;
use crate::exec::identity::RunAs;
use crate::exec::job::Executor;
use std::os::unix::fs::OpenOptionsExt;

/// What `doctor` says of the sandbox on this host.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxReport {
    /// The running kernel's Landlock ABI (0: none).
    pub landlock_abi_kernel: i32,
    /// The ABI vigil uses (lower when forced).
    pub landlock_abi_used: i32,
    /// The Landlock rights of that ABI.
    pub landlock_rights: Vec<&'static str>,
    /// The kernel takes seccomp filters.
    pub seccomp: bool,
    /// Mode of a job that names none.
    pub default_mode: &'static str,
    /// The weakest mode a request may ask for, if any.
    pub floor: Option<&'static str>,
    /// Each rule of `workspace`, and who holds it here.
    pub workspace: Vec<LimitEnforcement>,
    /// Each rule of `strict`, and who holds it here.
    pub strict: Vec<LimitEnforcement>,
}

impl Executor {
    /// The sandbox on this host, mode by mode (what `doctor` reports).
    pub fn sandbox_report(&self) -> SandboxReport {
        let c = &self.sandbox;
        let rules = |mode| {
            let req = SandboxRequest {
                mode: Some(mode),
                ..SandboxRequest::default()
            };
            let unfloored = SandboxConfig {
                floor: None,
                ..c.clone()
            };
            unfloored
                .resolve(Some(&req), None)
                .map(|r| r.enforcement())
                .unwrap_or_default()
        };
        let used = effective_abi(c.force_abi);
        SandboxReport {
            landlock_abi_kernel: kernel_abi(),
            landlock_abi_used: used,
            landlock_rights: landlock_rights(used),
            seccomp: seccomp::available(),
            default_mode: c.default_mode.unwrap_or(SandboxMode::Off).as_str(),
            floor: c.floor.map(SandboxMode::as_str),
            workspace: rules(SandboxMode::Workspace),
            strict: rules(SandboxMode::Strict),
        }
    }

    /// The sandbox rules a job with this request rooted at `root` would get here, labelled
    /// (part of the record), and whether they confine its writes (a mode other than `off`, on
    /// a kernel with Landlock). The rules are resolved once for both.
    pub(crate) fn sandbox_judged(
        &self,
        req: Option<&SandboxRequest>,
        root: Option<&Path>,
    ) -> (Vec<LimitEnforcement>, bool, Option<ResolvedSandbox>) {
        match self.sandbox.resolve(req, root) {
            // A root job stays in its cgroup when Landlock confines its writes (no
            // cgroup.procs) and seccomp refuses clone3 (no CLONE_INTO_CGROUP; the guard is
            // x86_64's).
            Ok(r) => (
                r.enforcement(),
                r.mode != SandboxMode::Off
                    && r.abi >= 1
                    && r.seccomp
                    && cfg!(target_arch = "x86_64"),
                Some(r),
            ),
            Err(_) => (Vec::new(), false, None),
        }
    }

    /// The read rules for `denied`, from the cache while they are fresh.
    fn read_rules(&self, denied: &[PathBuf]) -> Arc<ReadRules> {
        let mut cache = self.sandbox_reads.lock().unwrap_or_else(|p| p.into_inner());
        match cache.as_ref() {
            Some(r) if r.fresh(denied) => Arc::clone(r),
            _ => {
                let r = Arc::new(ReadRules::build(denied));
                *cache = Some(Arc::clone(&r));
                r
            }
        }
    }

    /// The sandbox settings.
    pub fn sandbox_config(&self) -> &SandboxConfig {
        &self.sandbox
    }

    /// Builds the job's sandbox before the fork: the TMPDIR (its path added to `env`; owned by
    /// `owner`, the user the job switches to, if any), the Landlock ruleset and the seccomp
    /// program. `None` for mode `off`. A TMPDIR left emptied by an earlier job whose group
    /// the kernel proved empty is reused, with its ruleset while that is still right
    /// ([`slots`]); `reusable`: this job's may be reused after it (it runs in a cgroup).
    /// `resolved`: the rules already resolved for this request and root (the record's labels
    /// were judged from them), so the job gets exactly the rules it reports; `None` resolves
    /// them here.
    // The job's inputs, each its own thing; a struct for them would be built at one call site.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn prepare_sandbox(
        &self,
        job_id: &str,
        req: Option<&SandboxRequest>,
        root: &Path,
        resolved: Option<ResolvedSandbox>,
        owner: Option<&RunAs>,
        reusable: bool,
        env: &mut std::collections::BTreeMap<String, String>,
    ) -> Result<Option<PreparedSandbox>, ExecError> {
        let resolved = match resolved {
            Some(resolved) => resolved,
            None => self.sandbox.resolve(req, Some(root))?,
        };
        if resolved.mode == SandboxMode::Off {
            return Ok(None);
        }
        for p in &resolved.writable {
            // O_PATH: nothing is opened for real (a FIFO would block, a device would act).
            let at = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
                .open(p)
                .map_err(|e| ExecError::PathRejected {
                    path: p.display().to_string(),
                    reason: format!("cannot be opened: {e}"),
                })?;
            refuse_terminals_dir(p, on_devpts(&at))?;
        }
        let reusable = reusable && owner.is_none();
        let pooled = if reusable {
            self.sandbox_slots.take()
        } else {
            None
        };
        let slot = match pooled {
            Some(s) => s,
            None => self.make_tmpdir(job_id, owner, reusable)?,
        };
        crate::phase::mark("sb_tmpdir");
        let tmp_s = slot.path.display().to_string();
        let mut prepared = PreparedSandbox {
            ruleset: None,
            device_access: 0,
            bpf: Vec::new(),
            tmpdir: Some(slot),
        };
        for k in ["TMPDIR", "TMP", "TEMP"] {
            env.insert(k.to_string(), tmp_s.clone());
        }
        if resolved.abi >= 1 {
            let reads = self.read_rules(&resolved.denied);
            crate::phase::mark("sb_read_rules");
            let (mode, abi, writable) = (resolved.mode, resolved.abi, &resolved.writable);
            let now = slots::RulesetKey::current(mode, abi, writable, &reads);
            let slot = prepared.tmpdir.as_mut().expect("set above");
            let fd = match slot.ruleset_for(&now) {
                Some(fd) => fd,
                None => {
                    // The writable paths opened once: the rules and the kept key both come
                    // from these descriptors.
                    let opened =
                        landlock_rules::open_writable(writable, &self.sandbox.write_bounds)?;
                    crate::phase::mark("sb_open_writable");
                    let fd = landlock_rules::build(&resolved, &reads, &opened, &slot.path)?;
                    crate::phase::mark("sb_ll_build");
                    let fd = Arc::new(fd);
                    if slot.reusable {
                        let key = slots::RulesetKey::new(mode, abi, writable, &opened, &reads);
                        slot.keep_ruleset(key, Arc::clone(&fd));
                    }
                    fd
                }
            };
            prepared.ruleset = Some(fd);
            prepared.device_access = landlock_rules::device_access(resolved.abi);
        }
        crate::phase::mark("sb_ruleset_done");
        // SAFETY: geteuid has no preconditions.
        let root_job = owner.map_or(unsafe { libc::geteuid() } == 0, |u| u.uid == 0);
        if resolved.seccomp {
            if resolved.mode == SandboxMode::Strict {
                prepared.bpf = seccomp::strict_program()?;
            } else if root_job {
                prepared.bpf = seccomp::root_program()?;
            }
        }
        crate::phase::mark("sb_seccomp");
        Ok(Some(prepared))
    }

    /// Removes the TMPDIRs kept for later jobs (as dropping the executor does).
    pub fn remove_idle_tmpdirs(&self) {
        self.sandbox_slots.remove_all();
    }

    /// Ends a job's sandbox: its TMPDIR emptied and kept for a later job when the job's
    /// group is proven empty (`group_empty`: its cgroup leaf was removed), else removed.
    pub(crate) fn release_sandbox(&self, mut sandbox: PreparedSandbox, group_empty: bool) {
        if let Some(slot) = sandbox.tmpdir.take() {
            self.sandbox_slots.release(slot, group_empty);
        }
    }

    /// A new TMPDIR for `job_id`, 0700, handed to `owner` if the job switches user. It is
    /// made 0500, locked (a shared `flock` held as long as this vigil holds the directory:
    /// what tells [`Executor::sweep_stale_tmpdirs`] it is in use), then opened up to 0700.
    fn make_tmpdir(
        &self,
        job_id: &str,
        owner: Option<&RunAs>,
        reusable: bool,
    ) -> Result<slots::TmpSlot, ExecError> {
        let io = |context: String| move |source| ExecError::Io { context, source };
        let base = self.tmp_base(owner.is_some())?;
        let tmp = base.join(format!("{}{job_id}", slots::TMPDIR_PREFIX));
        if fs::symlink_metadata(&tmp).is_ok() {
            // Left by a vigil that died with this job id: removed only when no vigil holds it.
            match slots::lock_dir(&tmp, true) {
                Ok(_lock) => remove_tree(&tmp),
                Err(e) => {
                    return Err(io(format!(
                        "the job's TMPDIR {} exists and another vigil holds it",
                        tmp.display()
                    ))(e))
                }
            }
        }
        fs::DirBuilder::new()
            .mode(slots::TMPDIR_MODE_MAKING)
            .create(&tmp)
            .map_err(io(format!("creating the job's TMPDIR {}", tmp.display())))?;
        let made = slots::lock_dir(&tmp, false)
            .and_then(|lock| {
                if let Some(u) = owner {
                    std::os::unix::fs::chown(&tmp, Some(u.uid), Some(u.gid))?;
                }
                fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700))?;
                Ok(lock)
            })
            .map_err(io(format!(
                "setting up the job's TMPDIR {}{}",
                tmp.display(),
                owner.map_or(String::new(), |u| format!(" for uid {}", u.uid))
            )));
        match made {
            Ok(lock) => Ok(slots::TmpSlot::made(tmp, lock, reusable)),
            Err(e) => {
                remove_tree(&tmp);
                Err(e)
            }
        }
    }

    /// Removes the TMPDIRs of vigil processes that are gone (no shared `flock` on them), in
    /// every place this executor makes TMPDIRs: the data dir's `tmp/` and the temporary
    /// directory's `vigil-jobs-UID` (and `vigil-tmp-UID` without a data dir). Call it after
    /// their jobs' processes were killed. Returns what could not be removed, with why.
    pub fn sweep_stale_tmpdirs(&self) -> Vec<String> {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let tmp = std::env::temp_dir();
        let mut bases = vec![tmp.join(format!("vigil-jobs-{uid}"))];
        bases.push(match &self.sandbox.data_dir {
            Some(d) => d.join("tmp"),
            None => tmp.join(format!("vigil-tmp-{uid}")),
        });
        bases.iter().flat_map(|b| slots::sweep(b)).collect()
    }
}

impl Executor {
    /// Where the jobs' TMPDIRs go, created: the data dir's `tmp/` (0700), reachable by jobs of
    /// vigil's own user; for a job that runs as another user, who cannot pass through the data
    /// dir, `vigil-jobs-UID` in the system's temporary directory, 0711 (entered, never listed)
    /// and refused unless it is a directory of vigil's own that no one else may write.
    fn tmp_base(&self, other_user: bool) -> Result<PathBuf, ExecError> {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let (base, mode) = match &self.sandbox.data_dir {
            Some(d) if !other_user => (d.join("tmp"), 0o700),
            None if !other_user => (std::env::temp_dir().join(format!("vigil-tmp-{uid}")), 0o700),
            _ => (
                std::env::temp_dir().join(format!("vigil-jobs-{uid}")),
                0o711,
            ),
        };
        let io = |context: String| move |source| ExecError::Io { context, source };
        if fs::symlink_metadata(&base).is_err() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&base)
                .map_err(io(format!("creating {}", base.display())))?;
        }
        let meta = fs::symlink_metadata(&base).map_err(io(format!("{}", base.display())))?;
        use std::os::unix::fs::MetadataExt;
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
            return Err(ExecError::Io {
                context: format!(
                    "{} is not a directory of uid {uid} that only it may write (a symlink, or \
                     planted by someone else?); remove it",
                    base.display()
                ),
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            });
        }
        if meta.mode() & 0o777 != mode {
            fs::set_permissions(&base, fs::Permissions::from_mode(mode))
                .map_err(io(format!("setting the mode of {}", base.display())))?;
        }
        Ok(base)
    }
}

/// devpts's `f_type` (linux/magic.h `DEVPTS_SUPER_MAGIC`).
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// Whether `file` lies on a devpts filesystem (a terminals directory).
pub(crate) fn on_devpts(file: &impl std::os::fd::AsRawFd) -> bool {
    // SAFETY: a zeroed statfs is a valid out-parameter for fstatfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs on a descriptor the caller holds.
    unsafe {
        libc::fstatfs(file.as_raw_fd(), &mut st) == 0 && st.f_type as i64 == DEVPTS_SUPER_MAGIC
    }
}

/// A sandboxed job's root, writable path or working directory may not be a terminals
/// directory: opened in vigil's mount namespace, it would be the host's devpts, whose
/// terminals a root job's own devpts keeps from it (read what is typed, write to them).
pub(crate) fn refuse_terminals_dir(path: &Path, on_devpts: bool) -> Result<(), ExecError> {
    if on_devpts {
        return Err(ExecError::PathRejected {
            path: path.display().to_string(),
            reason: "a sandboxed job may not run in or write to a terminals directory (devpts)"
                .into(),
        });
    }
    Ok(())
}
