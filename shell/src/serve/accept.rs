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
        Ok((uid, _)) if peer_allowed(uid, &server.args.allow_uid) => {}
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
