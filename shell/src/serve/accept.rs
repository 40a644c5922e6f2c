//! Accepting connections: the peer check, the connection bound, a thread per connection.
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::Value;
use vigil_core::protocol::{code, error_response, RpcError};

use super::socket::{peer_allowed, BoundSocket};
use super::{framing, Server, TICK};
use crate::client::peer_credentials;

pub fn accept_loop(server: &Arc<Server>, bound: &BoundSocket, wake: &OwnedFd) {
    let mut fds = [
        libc::pollfd {
            fd: bound.listener_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    while !server.shutting_down.load(Ordering::Acquire) {
        // SAFETY: two valid pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 || fds[1].revents != 0 {
            continue;
        }
        if fds[0].revents == 0 {
            continue;
        }
        match bound.accept() {
            Ok((stream, _)) => admit(server, stream),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE and friends: say so and back off rather than spin.
                eprintln!("vigil serve: accept: {e}");
                std::thread::sleep(TICK);
            }
        }
    }
}

/// Why the peer (pid `pid` at connect time) is part of a vigil job, if it is: a job must not
/// ask the server for a job its own sandbox would not allow
/// ([`vigil_core::exec::peer::job_of`]). With the peer's pidfd (`SO_PEERPIDFD`, Linux 6.5+)
/// a peer that exited while it was looked at is refused too, so a pid reused meanwhile is not
/// taken for it.
fn peer_in_job(stream: &UnixStream, pid: i32) -> Option<String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_PEERPIDFD writes one int (a new descriptor) into `fd`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    // SAFETY: on success the descriptor is new and ours.
    let pidfd = (rc == 0 && fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) });
    let why = vigil_core::exec::peer::job_of(pid, std::process::id() as i32);
    if why.is_some() {
        return why;
    }
    let pidfd = pidfd?;
    let mut poll = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; zero timeout. A pidfd polls readable once its process exits.
    let exited = unsafe { libc::poll(&mut poll, 1, 0) } != 0;
    exited.then(|| "it exited before it could be looked at".to_string())
}

/// Checks the peer and the connection bound, then hands the stream to its own thread.
fn admit(server: &Arc<Server>, mut stream: UnixStream) {
    server
        .stats
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_write_timeout(Some(server.args.io_timeout));
    let refuse = |stream: &mut UnixStream, error: RpcError| {
        let line = error_response(&Value::Null, &error) + "\n";
        let _ = stream.write_all(line.as_bytes());
    };
    match peer_credentials(&stream) {
        Ok((uid, pid)) if peer_allowed(uid, &server.args.allow_uid) => {
            if let Some(why) = peer_in_job(&stream, pid) {
                server.stats.peers_refused.fetch_add(1, Ordering::Relaxed);
                eprintln!("vigil serve: refused a peer inside a vigil job (pid {pid}): {why}");
                let msg = format!("a process inside a vigil job may not use this server: {why}");
                refuse(&mut stream, RpcError::new(code::PERMISSION_DENIED, msg));
                return;
            }
        }
        Ok((uid, pid)) => {
            server.stats.peers_refused.fetch_add(1, Ordering::Relaxed);
            eprintln!("vigil serve: refused a peer with uid {uid} (pid {pid})");
            let msg = format!("uid {uid} may not use this server (see --allow-uid)");
            refuse(&mut stream, RpcError::new(code::PERMISSION_DENIED, msg));
            return;
        }
        Err(e) => {
            eprintln!("vigil serve: SO_PEERCRED: {e}");
            return;
        }
    }
    let open = server.connections.fetch_add(1, Ordering::AcqRel);
    if open >= server.args.max_connections {
        server.connections.fetch_sub(1, Ordering::AcqRel);
        server.stats.busy.fetch_add(1, Ordering::Relaxed);
        let msg = format!(
            "busy: {} connections are open (--max-connections)",
            server.args.max_connections
        );
        refuse(&mut stream, RpcError::new(code::BUSY, msg));
        return;
    }
    let thread_server = server.clone();
    let spawned = std::thread::Builder::new()
        .name("vigil-conn".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            framing::connection(&thread_server, stream);
            thread_server.connections.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        server.connections.fetch_sub(1, Ordering::AcqRel);
        eprintln!("vigil serve: starting a connection thread: {e}");
    }
}
