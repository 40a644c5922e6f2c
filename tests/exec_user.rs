//! Jobs as another user (`--user`), end to end: the ids a job gets, what it can no longer do
//! to vigil (signal it, read its environment, write its data dir), its own TMPDIR, what is
//! refused (an unknown name, a switch by a vigil that is not root, a request naming another
//! user than its server's), file jobs done with that user's permissions, the protocol's
//! `user` through
//! `vigil serve`, and the notice that a root job outside the sandbox can leave its cgroup.
//! Switching needs root: CI runs these as root; elsewhere they are skipped with the reason
//! printed.
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{vigil_bin, TempDir};
use serde_json::{json, Value};

/// uid and gid of `nobody`.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True when vigil can switch users here; false (with the reason printed) otherwise; fails
/// under CI, which runs as root.
fn root_or_skip() -> bool {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    let root = is_root();
    assert!(
        root || std::env::var_os("CI").is_none(),
        "CI runs as root: {test} must run"
    );
    if !root {
        eprintln!("skipping {test}: vigil must be root to run a job as another user");
    }
    root
}

/// A [`scratch`] directory when vigil is root, else `None` ([`root_or_skip`]).
fn root_scratch(tag: &str) -> Option<TempDir> {
    root_or_skip().then(|| scratch(tag))
}

/// A scratch directory any user may enter and read (the job's root), with vigil's data dir
/// in `data/`.
fn scratch(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// `vigil --data-dir DIR/data ARGS` in DIR, as nobody through setpriv when `as_nobody`:
/// (exit code, stdout, stderr).
fn vigil_run_as(dir: &Path, args: &[&str], as_nobody: bool) -> (i32, String, String) {
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(vigil_bin());
        c
    } else {
        Command::new(vigil_bin())
    };
    let out = cmd
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .current_dir(dir)
        .env_remove("VIGIL_CGROUP_MODE")
        .output()
        .expect("run vigil");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `vigil --data-dir DIR/data ARGS` in DIR: (exit code, stdout, stderr).
fn vigil_text(dir: &Path, args: &[&str]) -> (i32, String, String) {
    vigil_run_as(dir, args, false)
}

/// [`vigil_text`] with stdout read as JSON (Null when it is not).
fn vigil(dir: &Path, args: &[&str]) -> (i32, Value, String) {
    let (code, stdout, stderr) = vigil_text(dir, args);
    (
        code,
        serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        stderr,
    )
}

/// `vigil run shell` of `cmd` with `extra` flags, `--json`.
fn shell(dir: &Path, cmd: &str, extra: &[&str]) -> (i32, Value, String) {
    let args = json!({ "cmd": cmd }).to_string();
    let mut all = vec![
        "run",
        "shell",
        "--args",
        &args,
        "--timeout",
        "20s",
        "--json",
    ];
    all.extend_from_slice(extra);
    vigil(dir, &all)
}

fn stdout_lines(v: &Value) -> Vec<String> {
    v["stdout"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_job_run_as_nobody_has_its_ids_and_none_of_roots_groups() {
    let Some(dir) = root_scratch("user-ids") else {
        return;
    };
    let (code, v, err) = shell(dir.path(), "id -u; id -g; id -G", &["--user", "nobody"]);
    assert_eq!(code, 0, "{v} {err}");
    let lines = stdout_lines(&v);
    assert_eq!(lines[0], NOBODY.to_string(), "{v}");
    let groups: Vec<&str> = lines[2].split_whitespace().collect();
    assert!(!groups.contains(&"0"), "root's group stayed: {v}");
    assert_eq!(groups, vec![lines[1].as_str()], "nobody's groups only: {v}");
    let run_as = &v["enforcement"]["run_as"];
    assert_eq!(run_as["uid"], NOBODY, "{v}");
    assert_eq!(run_as["user"], "nobody", "{v}");
    assert!(v.get("notices").is_none(), "{v}");
    // The log's record of the job names the user too.
    let job = v["job_id"].to_string();
    let (code, detail, err) = vigil(dir.path(), &["job", &job, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(detail["enforcement"]["run_as"], *run_as, "{detail}");
    assert_eq!(
        detail["run_as"], *run_as,
        "logged with the start too: {detail}"
    );
    // By number, the same user.
    let (code, v, err) = shell(dir.path(), "id -u", &["--user", "65534"]);
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(v["stdout"], "65534\n");
    // A uid without a password entry: the group of the same number, no other.
    let bare = "3000000007";
    let (code, v, err) = shell(dir.path(), "id -u; id -G", &["--user", bare]);
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(v["stdout"], format!("{bare}\n{bare}\n"), "{v}");
    assert_eq!(v["enforcement"]["run_as"]["user"], Value::Null, "{v}");
}

#[test]
fn a_job_run_as_nobody_cannot_signal_vigil_read_its_environment_or_write_its_data_dir() {
    let Some(dir) = root_scratch("user-reach") else {
        return;
    };
    let data = dir.path().join("data");
    let cmd = format!(
        "kill -9 $PPID; echo kill=$?; cat /proc/$PPID/environ >/dev/null; echo environ=$?; \
         touch {data}/planted; echo write=$?",
        data = data.display()
    );
    // Sandbox off: only the user stands between the job and vigil.
    let (code, v, err) = shell(dir.path(), &cmd, &["--user", "nobody", "--sandbox", "off"]);
    assert_eq!(code, 0, "vigil survived and finished the job: {v} {err}");
    assert_eq!(v["status"], "completed", "{v}");
    let lines = stdout_lines(&v);
    assert!(lines[0].starts_with("kill=") && lines[0] != "kill=0", "{v}");
    assert!(
        lines[1].starts_with("environ=") && lines[1] != "environ=0",
        "{v}"
    );
    assert!(
        lines[2].starts_with("write=") && lines[2] != "write=0",
        "{v}"
    );
    let stderr = v["stderr"].as_str().unwrap_or_default();
    assert!(
        stderr.contains("Operation not permitted"),
        "kill: EPERM: {v}"
    );
    assert!(stderr.contains("Permission denied"), "{v}");
    assert!(!data.join("planted").exists());
    // The same job as root can read vigil's environment (root owns those files).
    let (_, v, _) = shell(
        dir.path(),
        "cat /proc/$PPID/environ >/dev/null && echo read",
        &["--sandbox", "off"],
    );
    assert_eq!(v["stdout"], "read\n", "the check above can fail: {v}");
}

#[test]
fn the_tmpdir_of_a_job_run_as_another_user_is_its_own_and_goes_with_the_job() {
    let Some(dir) = root_scratch("user-tmp") else {
        return;
    };
    let cmd =
        "echo \"$TMPDIR\"; stat -c %u \"$TMPDIR\"; echo hi > \"$TMPDIR/f\" && cat \"$TMPDIR/f\"";
    let (code, v, err) = shell(
        dir.path(),
        cmd,
        &["--user", "nobody", "--sandbox", "workspace"],
    );
    assert_eq!(code, 0, "{v} {err}");
    let lines = stdout_lines(&v);
    assert_eq!(
        lines[1],
        NOBODY.to_string(),
        "TMPDIR owned by the job's user: {v}"
    );
    assert_eq!(lines[2], "hi", "{v}");
    let tmp = PathBuf::from(&lines[0]);
    assert!(tmp.is_absolute(), "{v}");
    assert!(
        !tmp.exists(),
        "TMPDIR {} stayed after the job",
        tmp.display()
    );
    // Its parent is vigil's, entered but not listed or written by others.
    let parent = std::fs::metadata(tmp.parent().unwrap()).unwrap();
    assert_eq!((parent.uid(), parent.mode() & 0o777), (0, 0o711));
}

/// Runs the vigil binary as nobody (setpriv), on a data dir nobody may write.
fn vigil_as_nobody(dir: &Path, args: &[&str]) -> Option<(i32, Value, String)> {
    let setpriv = Command::new("setpriv").arg("--version").output();
    if !setpriv.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI has setpriv (util-linux)"
        );
        eprintln!("skipping: setpriv (util-linux) is missing");
        return None;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, stdout, stderr) = vigil_run_as(dir, args, true);
    let v = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    Some((code, v, stderr))
}

#[test]
fn a_vigil_that_is_not_root_refuses_another_user_and_takes_its_own() {
    let Some(dir) = root_scratch("user-unprivileged") else {
        return;
    };
    let marker = dir.path().join("ran");
    let cmd = json!({ "cmd": format!("touch {}", marker.display()) }).to_string();
    let run = |user: &str| {
        vigil_as_nobody(
            dir.path(),
            &["run", "shell", "--args", &cmd, "--user", user, "--json"],
        )
    };
    let Some((code, v, err)) = run("0") else {
        return;
    };
    assert_eq!(code, 2, "{v} {err}");
    assert_eq!(v["status"], "rejected", "{v}");
    let error = v["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("vigil runs as uid 65534, not root")
            && error.contains("cannot run a job as user root"),
        "{v}"
    );
    assert!(!marker.exists(), "a refused job ran");
    // Its own uid is no switch at all.
    let (code, v, err) = run("65534").expect("setpriv was found above");
    assert_eq!(code, 0, "{v} {err}");
    assert!(marker.exists(), "{v}");
}

#[test]
fn an_unknown_user_is_refused_before_anything_runs() {
    let dir = scratch("user-unknown");
    let marker = dir.path().join("ran");
    let cmd = format!("touch {}", marker.display());
    let (code, v, err) = shell(dir.path(), &cmd, &["--user", "no-such-user-of-vigil"]);
    assert_eq!(code, 2, "{v} {err}");
    assert_eq!(v["status"], "rejected", "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("no user named \"no-such-user-of-vigil\"")),
        "{v}"
    );
    assert!(!marker.exists(), "a refused job ran");
    // The log records a refusal.
    let (_, jobs, _) = vigil(dir.path(), &["jobs", "--json"]);
    assert_eq!(jobs[0]["status"], "rejected", "{jobs}");
    // A dry run says so too.
    let (code, v, err) = shell(
        dir.path(),
        &cmd,
        &["--user", "no-such-user-of-vigil", "--dry-run"],
    );
    assert_eq!(code, 2, "{v} {err}");
    assert_eq!(v["dry_run"]["valid"], false, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("no user named")),
        "{v}"
    );
}

/// `vigil run CAP --args ARGS --user nobody --json` in `dir`.
fn file_job_as_nobody(dir: &Path, cap: &str, args: Value) -> (i32, Value, String) {
    let args = args.to_string();
    vigil(
        dir,
        &["run", cap, "--args", &args, "--user", "nobody", "--json"],
    )
}

#[test]
fn file_jobs_as_another_user_have_that_users_permissions_and_say_so() {
    let Some(dir) = root_scratch("user-files") else {
        return;
    };
    let d = dir.path();
    std::fs::write(d.join("public.txt"), "for all\n").unwrap();
    std::fs::set_permissions(d.join("public.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(d.join("private.txt"), "root only\n").unwrap();
    std::fs::set_permissions(
        d.join("private.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // A directory nobody owns, and the root (0755, root's) nobody cannot write.
    std::fs::create_dir(d.join("mine")).unwrap();
    std::os::unix::fs::chown(d.join("mine"), Some(NOBODY), Some(NOBODY)).unwrap();

    let (code, v, err) = file_job_as_nobody(d, "file.read", json!({"path": "public.txt"}));
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(v["stdout"], "for all\n", "{v}");
    // Root can read this file; nobody cannot, and the kernel says so.
    let (code, v, err) = file_job_as_nobody(d, "file.read", json!({"path": "private.txt"}));
    assert_ne!(code, 0, "{v} {err}");
    assert_ne!(v["status"], "completed", "{v}");
    assert_eq!(v["stdout"], "", "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("ermission denied")),
        "{v}"
    );
    let (code, v, _) = vigil(
        d,
        &[
            "run",
            "file.read",
            "--args",
            r#"{"path":"private.txt"}"#,
            "--json",
        ],
    );
    assert_eq!(
        (code, v["stdout"].as_str()),
        (0, Some("root only\n")),
        "{v}"
    );
    // Writing where nobody may not is refused; where it may, the new file is nobody's.
    let (code, v, err) = file_job_as_nobody(
        d,
        "file.write",
        json!({"path": "planted.txt", "content": "x"}),
    );
    assert_ne!(code, 0, "{v} {err}");
    assert!(!d.join("planted.txt").exists());
    let (code, v, err) = file_job_as_nobody(
        d,
        "file.write",
        json!({"path": "mine/new.txt", "content": "made by nobody\n"}),
    );
    assert_eq!(code, 0, "{v} {err}");
    let meta = std::fs::metadata(d.join("mine/new.txt")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY), "{v}");
    assert_eq!(
        std::fs::read_to_string(d.join("mine/new.txt")).unwrap(),
        "made by nobody\n"
    );
    // A file of root's in nobody's directory cannot be replaced keeping its owner: refused,
    // the file unchanged.
    std::fs::write(d.join("mine/roots.txt"), "root's\n").unwrap();
    let (code, v, err) = file_job_as_nobody(
        d,
        "file.write",
        json!({"path": "mine/roots.txt", "content": "changed"}),
    );
    assert_ne!(code, 0, "{v} {err}");
    assert_eq!(
        std::fs::read_to_string(d.join("mine/roots.txt")).unwrap(),
        "root's\n"
    );
    // The record names the user the file job ran as, and vigil itself is still root.
    let (_, jobs, _) = vigil(d, &["jobs", "--json"]);
    let id = jobs
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|j| j["capability"] == "file.write" && j["status"] == "completed")
        })
        .map(|j| j["job_id"].clone())
        .unwrap_or_else(|| panic!("no completed file.write in {jobs}"));
    let (_, job, _) = vigil(d, &["job", &id.to_string(), "--json"]);
    assert_eq!(job["run_as"]["uid"], NOBODY, "{job}");
    let (code, v, _) = vigil(
        d,
        &[
            "run",
            "file.write",
            "--args",
            r#"{"path":"by-root.txt","content":"r"}"#,
            "--json",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(std::fs::metadata(d.join("by-root.txt")).unwrap().uid(), 0);
}

/// `vigil serve` on a socket in `dir`, killed on drop.
struct Server {
    child: Child,
    socket: PathBuf,
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let socket = dir.join("vigil.sock");
        let child = Command::new(vigil_bin())
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--root")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vigil serve");
        let server = Server { child, socket };
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.call("health", json!({})).0 != 0 {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `vigil call METHOD PARAMS --socket`: (exit code, the answer as JSON, stderr).
    fn call(&self, method: &str, params: Value) -> (i32, Value, String) {
        let out = Command::new(vigil_bin())
            .args(["call", method, &params.to_string(), "--socket"])
            .arg(&self.socket)
            .output()
            .expect("run vigil call");
        (
            out.status.code().unwrap_or(-1),
            serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn id_u(user: Option<Value>) -> Value {
    let mut params = json!({"capability": "shell", "args": {"cmd": "id -u"}});
    if let Some(u) = user {
        params["user"] = u;
    }
    params
}

#[test]
fn the_protocols_user_runs_the_job_as_that_user_through_vigil_serve() {
    let Some(dir) = root_scratch("user-serve") else {
        return;
    };
    let server = Server::start(dir.path(), &[]);
    for user in [json!("nobody"), json!(NOBODY)] {
        let (code, v, err) = server.call("run", id_u(Some(user.clone())));
        assert_eq!(code, 0, "{user}: {err}");
        assert_eq!(v["stdout"], "65534\n", "{user}: {v}");
        assert_eq!(v["enforcement"]["run_as"]["uid"], NOBODY, "{v}");
    }
    let (code, v, _) = server.call("run", id_u(None));
    assert_eq!((code, &v["stdout"]), (0, &json!("0\n")), "{v}");
    let (code, _, err) = server.call("run", id_u(Some(json!(-1))));
    assert_ne!(code, 0);
    assert!(err.contains("user: "), "{err}");
    // A server with --user runs every job as it and refuses a request for another.
    let fixed_dir = scratch("user-serve-fixed");
    let fixed = Server::start(fixed_dir.path(), &["--user", "nobody"]);
    let (code, v, _) = fixed.call("run", id_u(None));
    assert_eq!((code, &v["stdout"]), (0, &json!("65534\n")), "{v}");
    let (_, v, _) = fixed.call("run", id_u(Some(json!("root"))));
    assert_eq!(v["status"], "rejected", "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("runs every job as user nobody")),
        "{v}"
    );
    // A server whose --user names no one does not start.
    let mut bad = Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(fixed_dir.path().join("data-bad"))
        .args(["serve", "--user", "no-such-user-of-vigil", "--socket"])
        .arg(fixed_dir.path().join("bad.sock"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while bad.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = bad.kill();
            panic!("vigil serve started with an unknown --user");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = bad.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--user no-such-user-of-vigil: no user named"),
        "{err}"
    );
    // `vigil run --socket --user` sends it.
    let out = Command::new(vigil_bin())
        .args([
            "run",
            "shell",
            "--args",
            r#"{"cmd":"id -u"}"#,
            "--user",
            "nobody",
            "--json",
        ])
        .arg("--socket")
        .arg(&server.socket)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(v["stdout"], "65534\n", "{v}");
}

/// The cgroup mode and Landlock ABI this host gives vigil, from `vigil doctor --json`.
fn doctor(dir: &Path) -> Value {
    let (code, v, err) = vigil(dir, &["doctor", "--json"]);
    assert_eq!(code, 0, "{err}");
    v
}

#[test]
fn a_root_job_outside_the_sandbox_is_told_it_can_leave_its_cgroup_and_doctor_says_so() {
    let Some(dir) = root_scratch("user-notice") else {
        return;
    };
    let report = doctor(dir.path());
    if report["cgroup"]["mode"] == "none" {
        eprintln!("skipping: no cgroup here, so none to leave");
        return;
    }
    let notice = report["sandbox_off_notice"].as_str().unwrap_or_default();
    assert!(notice.contains("cgroup.procs"), "{report}");
    let (_, text, _) = vigil_text(dir.path(), &["doctor"]);
    assert!(
        text.contains("notice:") && text.contains("leave its cgroup"),
        "{text}"
    );
    // The job's record and vigil run's human output name it.
    let (code, v, err) = shell(dir.path(), "true", &["--sandbox", "off"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        v["notices"][0]
            .as_str()
            .is_some_and(|n| n.contains("leave its cgroup")),
        "{v}"
    );
    let job = v["job_id"].to_string();
    let (_, detail, _) = vigil(dir.path(), &["job", &job, "--json"]);
    assert_eq!(detail["enforcement"]["notices"], v["notices"], "{detail}");
    let args = [
        "run",
        "shell",
        "--args",
        r#"{"cmd":"true"}"#,
        "--sandbox",
        "off",
    ];
    let (_, _, err) = vigil_text(dir.path(), &args);
    assert!(
        err.contains("vigil: notice: the job runs as root") && err.contains("leave its cgroup"),
        "{err}"
    );
}

#[test]
fn with_another_user_or_a_sandbox_no_cgroup_notice_appears() {
    let Some(dir) = root_scratch("user-no-notice") else {
        return;
    };
    let (code, v, err) = shell(
        dir.path(),
        "true",
        &["--sandbox", "off", "--user", "nobody"],
    );
    assert_eq!(code, 0, "{v} {err}");
    assert!(v.get("notices").is_none(), "{v}");
    if doctor(dir.path())["sandbox"]["landlock_abi_used"].as_i64() < Some(1) {
        eprintln!("skipping the sandboxed case: no Landlock here, so no sandbox confines writes");
        return;
    }
    let (code, v, err) = shell(dir.path(), "true", &["--sandbox", "workspace"]);
    assert_eq!(code, 0, "{v} {err}");
    assert!(v.get("notices").is_none(), "{v}");
    assert_eq!(v["enforcement"]["run_as"]["uid"], 0, "{v}");
    // Nor does doctor, for a vigil that is not root.
    let Some((code, report, err)) = vigil_as_nobody(dir.path(), &["doctor", "--json"]) else {
        return;
    };
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["sandbox_off_notice"], Value::Null, "{report}");
}

/// A user made for one test, with its home in `home`; deleted on drop.
struct TestUser(String);

impl TestUser {
    fn create(home: &Path) -> Option<TestUser> {
        let name = format!("vgl{}", std::process::id());
        let made = Command::new("useradd")
            .args(["--no-create-home", "--home-dir"])
            .arg(home)
            .arg(&name)
            .status();
        if !made.is_ok_and(|s| s.success()) {
            assert!(std::env::var_os("CI").is_none(), "CI has useradd");
            eprintln!("skipping: useradd is missing or failed");
            return None;
        }
        Some(TestUser(name))
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

#[test]
fn the_credentials_in_the_home_of_the_jobs_user_are_denied_to_its_sandbox() {
    let Some(dir) = root_scratch("user-home") else {
        return;
    };
    let home = dir.path().join("home");
    let Some(user) = TestUser::create(&home) else {
        return;
    };
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id"), "key\n").unwrap();
    let chown = Command::new("chown")
        .args(["-R", &user.0])
        .arg(&home)
        .status();
    assert!(chown.is_ok_and(|s| s.success()));
    let cmd = format!("id -un; cat {}/.ssh/id", home.display());
    // The home lies outside the job's root (which the sandbox lets it write).
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let root = work.display().to_string();
    let flags = |sandbox| ["--user", &user.0, "--sandbox", sandbox, "--root", &root];
    // Its own key, readable to it outside the sandbox...
    let (code, v, err) = shell(dir.path(), &cmd, &flags("off"));
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(v["stdout"], format!("{}\nkey\n", user.0), "{v}");
    // ...is denied inside it.
    let (code, v, err) = shell(dir.path(), &cmd, &flags("workspace"));
    assert_ne!(code, 0, "{v} {err}");
    assert_eq!(v["stdout"], format!("{}\n", user.0), "{v}");
    assert!(
        v["stderr"]
            .as_str()
            .is_some_and(|e| e.contains("Permission denied")),
        "{v}"
    );
}

mod exec_support;

/// The child switches users on every way vigil creates it (clone3 into the cgroup, fork with
/// the placement gate), after its placement: it ends up in its own leaf, as nobody. It is never
/// vfork-style, even where vigil spawns so by default: a child that changes user must not run
/// on vigil's own memory.
#[test]
fn every_spawn_path_places_the_job_then_switches_to_its_user() {
    use exec_support::{config, job_id, limits, modes, sh};
    use vigil_core::exec::host::CgroupMode;
    use vigil_core::exec::identity::UserSpec;
    use vigil_core::exec::job::Executor;
    use vigil_core::model::JobStatus;
    if !root_or_skip() {
        return;
    }
    let dir = scratch("user-spawn");
    for mode in modes() {
        for (path, no_vfork, no_clone3) in [
            ("vfork", false, false),
            ("clone3", true, false),
            ("fork", true, true),
        ] {
            let mut cfg = config(Some(mode));
            cfg.host.force_no_vfork = no_vfork;
            cfg.host.force_no_clone3 = no_clone3;
            let ex = Executor::new(cfg).expect("executor");
            let mut l = limits(10_000);
            l.user = Some(UserSpec::Name("nobody".into()));
            let id = job_id(&format!("user-{path}"), mode);
            let r = ex.run_process_in(
                &id,
                &sh("id -u; cat /proc/self/cgroup"),
                &l,
                Some(dir.path()),
                None,
            );
            let out = String::from_utf8_lossy(&r.stdout.bytes).into_owned();
            assert_eq!(r.status, JobStatus::Completed, "{mode:?} {path}: {r:?}");
            assert!(out.starts_with("65534\n"), "{mode:?} {path}: {out}");
            if mode != CgroupMode::None {
                assert!(out.contains(&id), "{mode:?} {path}: not in its leaf: {out}");
            }
            assert_eq!(r.enforcement.run_as.as_ref().map(|u| u.uid), Some(NOBODY));
            if let Some(placement) = r.enforcement.placement {
                assert!(
                    !placement.contains("vfork"),
                    "{mode:?} {path}: a job as another user spawned {placement}"
                );
            }
        }
    }
}
