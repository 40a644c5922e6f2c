//! The Unix-socket JSON-RPC client: one request to a running `vigil serve`, its answer read
//! back. `vigil call` and `vigil run --socket` both use it.
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

/// What a request came back with: the result, or the server's error object.
pub type Answer = Result<Value, Value>;

/// Sends one request and reads its answer. `Err` is a transport failure (no server, a broken
/// connection, an unreadable answer).
pub fn call(
    socket: &Path,
    method: &str,
    params: Value,
    timeout: Option<Duration>,
) -> Result<Answer, String> {
    let shown = socket.display();
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("{shown}: connect: {e}"))?;
    // Requests carry arguments (and may carry secrets): only a server run by this user or
    // root gets them.
    let (uid, pid) = peer_credentials(&stream).map_err(|e| format!("{shown}: SO_PEERCRED: {e}"))?;
    // SAFETY: geteuid has no failure mode.
    let me = unsafe { libc::geteuid() };
    if uid != me && uid != 0 {
        return Err(format!(
            "{shown}: the server (pid {pid}) runs as uid {uid}, not this user ({me}) or root; \
             not sending it the request"
        ));
    }
    stream
        .set_read_timeout(timeout)
        .map_err(|e| format!("{shown}: {e}"))?;
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut line = request.to_string();
    line.push('\n');
    let sent = stream.write_all(line.as_bytes());
    // A server that refuses the connection says why and closes it, possibly before the
    // request is sent: its answer is still there to read.
    let mut answer = String::new();
    let read = BufReader::new(&stream).read_line(&mut answer);
    if answer.is_empty() {
        return Err(match (sent, read) {
            (Err(e), _) => format!("{shown}: sending the request: {e}"),
            (_, Err(e)) => format!("{shown}: reading the answer: {e}"),
            _ => format!("{shown}: the server closed the connection"),
        });
    }
    let v: Value = serde_json::from_str(&answer)
        .map_err(|e| format!("{shown}: the answer is not JSON: {e}"))?;
    let Value::Object(mut v) = v else {
        return Err(format!("{shown}: the answer is not a JSON object"));
    };
    match (v.remove("result"), v.remove("error")) {
        (Some(result), _) => Ok(Ok(result)),
        (None, Some(error)) => Ok(Err(error)),
        _ => Err(format!("{shown}: the answer has neither result nor error")),
    }
}

/// The peer's credentials (uid, pid), as the kernel recorded them at connect time.
pub fn peer_credentials(stream: &UnixStream) -> io::Result<(u32, i32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.uid, cred.pid))
}
