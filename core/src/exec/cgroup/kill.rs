//! The kill path: no new forks, the whole group killed at once where the kernel can, then a
//! wait until the group is empty.
use std::fs;
use std::io::{self, Read, Seek};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{flat_value, read_small, write_file, CgroupLeaf, KILL_WAIT_MS_MAX};
use crate::exec::ExecError;

/// How long the v1 freezer may take to reach FROZEN before vigil kills without it.
const FREEZE_WAIT_MS_MAX: u64 = 1_000;
/// Rounds of "list and SIGKILL" on hosts without cgroup.kill or freezer.
const KILL_ROUNDS_MAX: u32 = 1_000;

impl CgroupLeaf {
    /// Kills every process of the job and waits until the group is empty. Returns the pids that
    /// were in the group when the kill began (their zombies may need reaping).
    pub fn kill_all(&self) -> Result<Vec<i32>, ExecError> {
        let members = self.procs();
        // 1. No new processes from here on.
        for dir in [&self.pids].into_iter().flatten() {
            let _ = fs::write(dir.join("pids.max"), "0");
        }
        if let Some(u) = &self.unified {
            let pm = u.join("pids.max");
            if pm.exists() {
                let _ = fs::write(pm, "0");
            }
        }
        // 2. Kill the whole group.
        if let (true, Some(u)) = (self.has_cgroup_kill, &self.unified) {
            write_file(&u.join("cgroup.kill"), "1")?;
        } else if let (true, Some(u)) = (self.has_cgroup_freeze, &self.unified) {
            self.freeze2_kill_thaw(u)?;
        } else if let Some(f) = &self.freezer {
            self.freeze_kill_thaw(f)?;
        } else {
            self.kill_rounds();
        }
        // 3. Wait for it to be empty.
        self.wait_empty(Duration::from_millis(KILL_WAIT_MS_MAX))?;
        Ok(members)
    }

    /// cgroup2 freezer: freeze, wait for `frozen 1` in cgroup.events, SIGKILL every member,
    /// thaw. Frozen tasks cannot fork, so the listing is complete.
    fn freeze2_kill_thaw(&self, unified: &Path) -> Result<(), ExecError> {
        write_file(&unified.join("cgroup.freeze"), "1")?;
        let events = unified.join("cgroup.events");
        let until = Instant::now() + Duration::from_millis(FREEZE_WAIT_MS_MAX);
        let mut pause_us = 50;
        while read_small(&events)
            .ok()
            .and_then(|t| flat_value(&t, b"frozen"))
            != Some(1)
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_micros(pause_us));
            pause_us = (pause_us * 2).min(5_000);
        }
        for pid in self.procs() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        write_file(&unified.join("cgroup.freeze"), "0")?;
        self.kill_rounds();
        Ok(())
    }

    fn freeze_kill_thaw(&self, freezer: &Path) -> Result<(), ExecError> {
        let state = freezer.join("freezer.state");
        write_file(&state, "FROZEN")?;
        let until = Instant::now() + Duration::from_millis(FREEZE_WAIT_MS_MAX);
        let mut pause_us = 50;
        while read_small(&state)
            .map(|s| s.trim() != "FROZEN")
            .unwrap_or(true)
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_micros(pause_us));
            pause_us = (pause_us * 2).min(5_000);
        }
        // Frozen tasks cannot fork or exit; SIGKILL is delivered when they thaw.
        for pid in self.procs() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        write_file(&state, "THAWED")?;
        // Anything that slipped in between (should be nothing: pids.max is 0) is killed in rounds.
        self.kill_rounds();
        Ok(())
    }

    fn kill_rounds(&self) {
        for _ in 0..KILL_ROUNDS_MAX {
            let procs = self.procs();
            if procs.is_empty() {
                return;
            }
            for pid in procs {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Waits until the group has no process, with `cgroup.events` notifications where they
    /// exist (POLLPRI on a modification) and short sleeps otherwise.
    pub fn wait_empty(&self, max: Duration) -> Result<(), ExecError> {
        let until = Instant::now() + max;
        // Reading cgroup.events through the fd that is polled re-arms its notification; a read
        // through another fd would leave POLLPRI set and turn the wait into a spin.
        let mut events = self
            .unified
            .as_ref()
            .and_then(|u| fs::File::open(u.join("cgroup.events")).ok());
        let mut pause_us = 20;
        let mut text = String::new();
        loop {
            let empty = match events.as_mut() {
                Some(f) => {
                    text.clear();
                    let read = f
                        .seek(io::SeekFrom::Start(0))
                        .and_then(|_| f.read_to_string(&mut text));
                    match read {
                        Ok(_) => flat_value(&text, b"populated") == Some(0),
                        Err(_) => self.is_empty(),
                    }
                }
                None => self.is_empty(),
            };
            if empty {
                return Ok(());
            }
            let now = Instant::now();
            if now >= until {
                return Err(ExecError::KillTimeout {
                    leaf: self.name.clone(),
                    remaining: self.procs(),
                });
            }
            let left_ms = (until - now).as_millis().min(50) as i32;
            if let Some(f) = &events {
                let mut pfd = libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLPRI,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, left_ms.max(1)) };
            } else {
                std::thread::sleep(Duration::from_micros(pause_us));
                pause_us = (pause_us * 2).min(2_000);
            }
        }
    }
}
