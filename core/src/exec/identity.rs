//! The user a process job runs as (`--user NAME|UID`): the request's words for it
//! ([`UserSpec`]), resolved in the parent before the fork into ids ([`RunAs`]) from the password
//! and group databases, and the rules for when vigil may switch to it.
//!
//! Rules:
//! - a name must exist in the password database; a number without an entry runs with the
//!   primary group of the same number and no supplementary groups;
//! - a user equal to vigil's own effective uid is a no-op (nothing is switched);
//! - switching to another user needs root (vigil's effective uid 0); otherwise the job is
//!   refused before anything runs;
//! - a process job's child switches; a file job (`file.read`, `file.write`) runs in a thread
//!   of vigil's that switches its filesystem ids (groups, fsgid, fsuid), then does the file
//!   operation and ends ([`Executor::as_job_user`]): the kernel checks that user's
//!   permissions on every path, while the thread's real and saved ids stay vigil's, so the
//!   user's processes can neither signal it nor change its limits.
//!
//! Both switch with raw system calls, which change the calling thread only (glibc's wrappers
//! signal every thread of the process to switch them all, which neither a vfork-style child
//! nor one thread of a running vigil may do). The child calls `setgroups`, `setresgid`,
//! `setresuid` after its cgroup placement and before Landlock and seccomp (see
//! `spawn::child`).
use std::ffi::{CStr, CString};
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::job::Executor;
use super::{ExecError, Limits};

/// Largest buffer given to getpwnam_r / getpwuid_r (they answer ERANGE when it is too small).
const PASSWD_BUF_BYTES_MAX: usize = 1 << 20;
/// Most supplementary groups taken from the group database (the kernel's NGROUPS_MAX).
pub const GROUPS_MAX: usize = 65_536;
/// Longest user name a request may give.
pub const USER_NAME_BYTES_MAX: usize = 256;

/// A user as a request names it: a name, or a numeric uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserSpec {
    /// A numeric uid.
    Uid(u32),
    /// A name in the password database.
    Name(String),
}

impl UserSpec {
    /// `NAME` or `UID` (all digits is a uid). Refuses an empty or over-long name, a NUL byte,
    /// and uid 4294967295 (the kernel's "no change" value).
    pub fn parse(text: &str) -> Result<UserSpec, String> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse::<u32>()
                .ok()
                .map(UserSpec::Uid)
                .ok_or_else(|| format!("user id {text} is out of range"))
                .and_then(UserSpec::checked);
        }
        UserSpec::Name(text.to_string()).checked()
    }

    /// This spec, or why no user can have it.
    pub fn checked(self) -> Result<UserSpec, String> {
        match &self {
            UserSpec::Uid(u32::MAX) => Err("user id 4294967295 is not a user".into()),
            UserSpec::Uid(_) => Ok(self),
            UserSpec::Name(n) if n.is_empty() => Err("user name is empty".into()),
            UserSpec::Name(n) if n.len() > USER_NAME_BYTES_MAX => Err(format!(
                "user name is longer than {USER_NAME_BYTES_MAX} bytes"
            )),
            UserSpec::Name(n) if n.contains('\0') => Err("user name contains a NUL byte".into()),
            UserSpec::Name(_) => Ok(self),
        }
    }
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserSpec::Uid(u) => write!(f, "{u}"),
            UserSpec::Name(n) => f.write_str(n),
        }
    }
}

/// A user resolved to ids: what the child switches to and what the record shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunAs {
    /// The name in the password database; `None` for a uid without an entry.
    pub user: Option<String>,
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// The supplementary groups (from the group database; the primary gid included).
    pub groups: Vec<u32>,
    /// The home directory from the password database (its credentials join the deny list).
    #[serde(skip)]
    pub home: Option<PathBuf>,
}

impl RunAs {
    /// Looks `spec` up in the password and group databases.
    pub fn resolve(spec: &UserSpec) -> Result<RunAs, String> {
        let spec = spec.clone().checked()?;
        let entry = match &spec {
            UserSpec::Name(n) => {
                let c = CString::new(n.as_bytes()).map_err(|_| "user name contains a NUL byte")?;
                passwd_by_name(&c)?
                    .ok_or_else(|| format!("no user named {n:?} in the password database"))?
            }
            UserSpec::Uid(u) => match passwd_by_uid(*u)? {
                Some(e) => e,
                // No entry: the same number as the group, no supplementary groups.
                None => {
                    return Ok(RunAs {
                        user: None,
                        uid: *u,
                        gid: *u,
                        groups: vec![*u],
                        home: None,
                    })
                }
            },
        };
        let groups = group_list(&entry.name, entry.gid)?;
        Ok(RunAs {
            user: entry.name.to_str().ok().map(str::to_string),
            uid: entry.uid,
            gid: entry.gid,
            groups,
            home: entry.home,
        })
    }

    /// The user vigil itself runs as: its effective ids and supplementary groups. Looked up
    /// once per set of ids (every process job's record names it).
    pub fn current() -> RunAs {
        static CURRENT: Mutex<Option<RunAs>> = Mutex::new(None);
        // SAFETY: geteuid and getegid have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let mut cached = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
        match cached.as_ref() {
            Some(c) if c.uid == uid && c.gid == gid => c.clone(),
            _ => {
                let me = RunAs::look_up_current(uid, gid);
                *cached = Some(me.clone());
                me
            }
        }
    }

    fn look_up_current(uid: u32, gid: u32) -> RunAs {
        let entry = passwd_by_uid(uid).ok().flatten();
        RunAs {
            user: entry
                .as_ref()
                .and_then(|e| e.name.to_str().ok().map(str::to_string)),
            uid,
            gid,
            groups: current_groups(),
            home: entry.and_then(|e| e.home),
        }
    }

    /// The job runs as another uid than vigil's effective one.
    pub fn switches(&self) -> bool {
        // SAFETY: geteuid has no preconditions.
        self.uid != unsafe { libc::geteuid() }
    }

    /// Why vigil may not switch to this user, if it may not: it is not root.
    pub fn refusal(&self) -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        (self.switches() && euid != 0).then(|| {
            format!(
                "vigil runs as uid {euid}, not root: it cannot run a job as {self}; \
                 leave out --user or run vigil as root"
            )
        })
    }
}

impl fmt::Display for RunAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(n) => write!(f, "user {n} (uid {}, gid {})", self.uid, self.gid),
            None => write!(f, "uid {} (gid {}, no password entry)", self.uid, self.gid),
        }
    }
}

impl Executor {
    /// The user a job with `limits` runs as: the executor's (`--user` of a server), the job's
    /// own, else vigil's. Refused ([`ExecError::User`]): a name not in the password
    /// database, a job naming another user than the executor's, and a switch vigil may not
    /// make (it is not root).
    pub fn job_user(&self, limits: &Limits) -> Result<RunAs, ExecError> {
        let fixed = self.user.as_ref().map(RunAs::resolve).transpose();
        let fixed = fixed.map_err(ExecError::User)?;
        let asked = limits.user.as_ref().map(RunAs::resolve).transpose();
        let asked = asked.map_err(ExecError::User)?;
        let user = match (fixed, asked) {
            (Some(f), Some(a)) if f.uid != a.uid => {
                return Err(ExecError::User(format!(
                    "this vigil runs every job as {f} (its --user); a job cannot ask for {a}"
                )))
            }
            (Some(f), _) => f,
            (None, Some(a)) => a,
            (None, None) => return Ok(RunAs::current()),
        };
        if let Some(why) = user.refusal() {
            return Err(ExecError::User(why));
        }
        Ok(user)
    }

    /// Runs `op` (a file job's work) as `user`: in vigil's own thread when nothing switches,
    /// else in a thread of its own that first switches its filesystem ids to the user's
    /// ([`switch_this_thread`]: raw system calls, this thread only) and ends after `op`.
    /// vigil's process stays non-dumpable throughout: a change of a thread's fsuid resets the
    /// process's dumpable flag to `fs.suid_dumpable`, which the thread sets back to 0 before
    /// anything else, and the caller again after.
    pub(crate) fn as_job_user<T: Send>(
        &self,
        user: &RunAs,
        op: impl FnOnce() -> Result<T, ExecError> + Send,
    ) -> Result<T, ExecError> {
        if !user.switches() {
            return op();
        }
        let switched = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("vigil-file-job".into())
                .spawn_scoped(s, || {
                    switch_this_thread(user)?;
                    op()
                })
                .map_err(|source| ExecError::Io {
                    context: format!("starting a thread to run the file job as {user}"),
                    source,
                })?
                .join()
                .unwrap_or_else(|_| {
                    Err(ExecError::User(format!(
                        "the thread running the file job as {user} panicked"
                    )))
                })
        });
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        switched
    }
}

/// Switches the calling thread's filesystem ids (only) to `user`'s: its supplementary groups,
/// then its fsgid and fsuid. The kernel checks file access against these, and a change of the
/// fsuid from 0 drops the thread's filesystem capabilities (DAC override, chown, fowner...).
/// Its real, effective and saved ids stay vigil's: who may signal vigil, change its limits
/// (prlimit) or trace it is decided by those, so a process of the job's user can do none of
/// it to this thread, as it could if the thread took the user's uid.
pub(crate) fn switch_this_thread(user: &RunAs) -> Result<(), ExecError> {
    let fail = |what: &str| {
        ExecError::User(format!(
            "switching the file job's thread to {user} ({what}): {}",
            std::io::Error::last_os_error()
        ))
    };
    let groups: Vec<libc::gid_t> = user.groups.clone();
    // SAFETY: raw system calls with a pointer to `groups.len()` gids and integer ids; they
    // change this thread's credentials only.
    unsafe {
        if libc::syscall(
            libc::SYS_setgroups,
            groups.len() as libc::c_long,
            groups.as_ptr(),
        ) != 0
        {
            return Err(fail("setgroups"));
        }
        // setfsgid/setfsuid return the previous id and cannot report failure: each is
        // checked by asking again (-1 changes nothing and returns the current one).
        libc::syscall(libc::SYS_setfsgid, libc::c_long::from(user.gid));
        if libc::syscall(libc::SYS_setfsgid, -1 as libc::c_long) != libc::c_long::from(user.gid) {
            return Err(fail("setfsgid"));
        }
        libc::syscall(libc::SYS_setfsuid, libc::c_long::from(user.uid));
        if libc::syscall(libc::SYS_setfsuid, -1 as libc::c_long) != libc::c_long::from(user.uid) {
            return Err(fail("setfsuid"));
        }
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    Ok(())
}

/// The fields of a password entry vigil uses.
struct PasswdEntry {
    name: CString,
    uid: u32,
    gid: u32,
    home: Option<PathBuf>,
}

/// Runs a getpw*_r lookup with a buffer grown on ERANGE; `None` when there is no entry.
fn passwd_lookup(
    what: &str,
    lookup: impl Fn(*mut libc::passwd, *mut libc::c_char, usize, *mut *mut libc::passwd) -> i32,
) -> Result<Option<PasswdEntry>, String> {
    let mut len = 4096usize;
    loop {
        let mut buf = vec![0u8; len];
        // SAFETY: an all-zero passwd is a valid out-parameter that getpw*_r fills.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = lookup(&mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out);
        if rc == libc::ERANGE && len < PASSWD_BUF_BYTES_MAX {
            len *= 4;
            continue;
        }
        if rc != 0 {
            let e = std::io::Error::from_raw_os_error(rc);
            return Err(format!("looking up {what} in the password database: {e}"));
        }
        if out.is_null() || pw.pw_name.is_null() {
            return Ok(None);
        }
        // SAFETY: on success pw's strings point into `buf`, NUL-terminated, alive here.
        let (name, home) = unsafe {
            let name = CStr::from_ptr(pw.pw_name).to_owned();
            let home = (!pw.pw_dir.is_null()).then(|| {
                use std::os::unix::ffi::OsStrExt;
                let dir = CStr::from_ptr(pw.pw_dir).to_bytes();
                PathBuf::from(std::ffi::OsStr::from_bytes(dir))
            });
            (name, home)
        };
        return Ok(Some(PasswdEntry {
            name,
            uid: pw.pw_uid,
            gid: pw.pw_gid,
            home: home.filter(|h| h.is_absolute()),
        }));
    }
}

fn passwd_by_name(name: &CStr) -> Result<Option<PasswdEntry>, String> {
    let what = format!("user {:?}", name.to_string_lossy());
    passwd_lookup(&what, |pw, buf, len, out| {
        // SAFETY: a NUL-terminated name and out-parameters of the stated sizes.
        unsafe { libc::getpwnam_r(name.as_ptr(), pw, buf, len, out) }
    })
}

fn passwd_by_uid(uid: u32) -> Result<Option<PasswdEntry>, String> {
    passwd_lookup(&format!("uid {uid}"), |pw, buf, len, out| {
        // SAFETY: out-parameters of the stated sizes.
        unsafe { libc::getpwuid_r(uid, pw, buf, len, out) }
    })
}

/// The supplementary groups of this process (empty if they cannot be read).
fn current_groups() -> Vec<u32> {
    // SAFETY: getgroups(0, NULL) only counts.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n <= 0 || n as usize > GROUPS_MAX {
        return Vec::new();
    }
    let mut groups = vec![0 as libc::gid_t; n as usize];
    // SAFETY: `groups` has room for `n` entries.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    groups.truncate(got.max(0) as usize);
    groups
}

/// The groups of `name` (the primary `gid` included), from the group database.
fn group_list(name: &CStr, gid: u32) -> Result<Vec<u32>, String> {
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let mut count = n;
        // SAFETY: `groups` has room for `count` entries; getgrouplist writes at most that many
        // and sets `count` to the number it needs.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return Ok(groups);
        }
        if count <= n || count as usize > GROUPS_MAX {
            return Err(format!(
                "the group list of user {:?} cannot be read (more than {GROUPS_MAX} groups?)",
                name.to_string_lossy()
            ));
        }
        n = count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_jobs_thread_takes_the_users_filesystem_ids_and_keeps_vigils_own() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var_os("CI").is_none(), "CI runs as root");
            eprintln!("skipped: switching ids needs root");
            return;
        }
        let user = RunAs::resolve(&UserSpec::Uid(65534)).unwrap();
        let status = std::thread::spawn(move || {
            switch_this_thread(&user).unwrap();
            std::fs::read_to_string("/proc/thread-self/status").unwrap()
        })
        .join()
        .unwrap();
        let line = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_default()
                .to_string()
        };
        // Real, effective and saved ids stay 0: no process of uid 65534 may signal this
        // thread or change its limits; the filesystem ids are the user's.
        assert_eq!(line("Uid:"), "Uid:\t0\t0\t0\t65534", "{status}");
        assert_eq!(line("Gid:"), "Gid:\t0\t0\t0\t65534", "{status}");
        // The filesystem capabilities went with fsuid 0 (CAP_DAC_OVERRIDE is bit 1).
        let eff = line("CapEff:");
        let bits = u64::from_str_radix(eff.trim_start_matches("CapEff:").trim(), 16).unwrap();
        assert_eq!(bits & 0b10, 0, "{status}");
        // This thread (vigil's) is untouched.
        let mine = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        assert!(mine.lines().any(|l| l == "Uid:\t0\t0\t0\t0"), "{mine}");
    }

    #[test]
    fn a_spec_of_digits_is_a_uid_and_anything_else_a_name() {
        assert_eq!(UserSpec::parse("65534"), Ok(UserSpec::Uid(65534)));
        assert_eq!(
            UserSpec::parse("nobody"),
            Ok(UserSpec::Name("nobody".into()))
        );
        assert_eq!(UserSpec::parse("1a"), Ok(UserSpec::Name("1a".into())));
        assert!(UserSpec::parse("").is_err());
        assert!(UserSpec::parse("4294967295").is_err());
        assert!(UserSpec::parse("99999999999").is_err());
        assert!(UserSpec::parse("a\0b").is_err());
        assert!(UserSpec::parse(&"x".repeat(USER_NAME_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn a_spec_reads_from_json_as_a_string_or_a_number() {
        let n: UserSpec = serde_json::from_str("65534").unwrap();
        assert_eq!(n, UserSpec::Uid(65534));
        let s: UserSpec = serde_json::from_str("\"nobody\"").unwrap();
        assert_eq!(s, UserSpec::Name("nobody".into()));
        assert!(serde_json::from_str::<UserSpec>("-1").is_err());
        assert!(serde_json::from_str::<UserSpec>("true").is_err());
    }

    #[test]
    fn root_resolves_by_name_and_by_number_with_its_groups() {
        let by_name = RunAs::resolve(&UserSpec::Name("root".into())).unwrap();
        assert_eq!((by_name.uid, by_name.gid), (0, 0));
        assert!(by_name.groups.contains(&0), "{by_name:?}");
        assert_eq!(by_name.user.as_deref(), Some("root"));
        let by_uid = RunAs::resolve(&UserSpec::Uid(0)).unwrap();
        assert_eq!(by_uid, by_name);
    }

    #[test]
    fn an_unknown_name_is_refused_and_an_unknown_uid_takes_its_own_number_as_group() {
        let e = RunAs::resolve(&UserSpec::Name("no-such-user-vigil".into())).unwrap_err();
        assert!(e.contains("no user named \"no-such-user-vigil\""), "{e}");
        let r = RunAs::resolve(&UserSpec::Uid(3_999_999_999)).unwrap();
        assert_eq!(
            (r.uid, r.gid, r.groups.clone()),
            (3_999_999_999, 3_999_999_999, vec![3_999_999_999])
        );
        assert_eq!(r.user, None);
        assert!(r.to_string().contains("no password entry"), "{r}");
    }

    #[test]
    fn the_current_user_never_switches_and_is_never_refused() {
        let me = RunAs::current();
        assert!(!me.switches());
        assert_eq!(me.refusal(), None);
    }
}
