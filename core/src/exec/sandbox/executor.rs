//! The executor's side of the sandbox: what `doctor` reports, each job's labels, and the
//! preparation in the parent before the fork.

use super::*;
use crate::exec::job::Executor;

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

    /// The sandbox rules a job with `limits` would get here, labelled (part of the record).
    pub(crate) fn sandbox_enforcement(
        &self,
        req: Option<&SandboxRequest>,
        root: Option<&Path>,
    ) -> Vec<LimitEnforcement> {
        match self.sandbox.resolve(req, root) {
            Ok(r) => r.enforcement(),
            Err(_) => Vec::new(),
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

    /// Builds the job's sandbox before the fork: the TMPDIR (its path added to `env`), the
    /// Landlock ruleset and the seccomp program. `None` for mode `off`.
    pub(crate) fn prepare_sandbox(
        &self,
        job_id: &str,
        req: Option<&SandboxRequest>,
        root: &Path,
        env: &mut std::collections::BTreeMap<String, String>,
    ) -> Result<Option<PreparedSandbox>, ExecError> {
        let resolved = self.sandbox.resolve(req, Some(root))?;
        if resolved.mode == SandboxMode::Off {
            return Ok(None);
        }
        let base = match &self.sandbox.data_dir {
            Some(d) => d.join("tmp"),
            None => {
                // SAFETY: geteuid has no preconditions.
                let uid = unsafe { libc::geteuid() };
                std::env::temp_dir().join(format!("vigil-tmp-{uid}"))
            }
        };
        let io = |context: String| move |source| ExecError::Io { context, source };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .map_err(io(format!("creating {}", base.display())))?;
        let tmp = base.join(format!("job-{job_id}"));
        if tmp.exists() {
            remove_tree(&tmp);
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(io(format!("creating the job's TMPDIR {}", tmp.display())))?;
        let mut prepared = PreparedSandbox {
            ruleset: None,
            bpf: Vec::new(),
            tmpdir: Some(tmp.clone()),
        };
        let tmp_s = tmp.display().to_string();
        for k in ["TMPDIR", "TMP", "TEMP"] {
            env.insert(k.to_string(), tmp_s.clone());
        }
        if resolved.abi >= 1 {
            let reads = self.read_rules(&resolved.denied);
            prepared.ruleset = Some(landlock_rules::build(&resolved, &reads, &tmp)?);
        }
        if resolved.mode == SandboxMode::Strict && resolved.seccomp {
            prepared.bpf = seccomp::strict_program()?;
        }
        Ok(Some(prepared))
    }
}
