//! Reading request lines from a connection and writing their answers.
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::Instant;

use vigil_core::protocol::{code, RpcError, REQUEST_BYTES_MAX};

use super::{Server, TICK};

/// Bytes read from a connection at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Serves one connection until the peer closes it, breaks a timeout, or shutdown begins.
pub fn connection(server: &Server, mut stream: UnixStream) {
    if stream.set_read_timeout(Some(TICK)).is_err() {
        return;
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    // Skipping the rest of an oversized line, already answered.
    let mut discarding = false;
    let mut last_activity = Instant::now();
    let mut line_started: Option<Instant> = None;
    loop {
        if server.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                let now = Instant::now();
                let slow_line = line_started.is_some_and(|t| now - t > server.args.io_timeout);
                if slow_line || now - last_activity > server.args.idle_timeout {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        // Deadlines hold however the bytes trickle in: a line must be complete within the
        // I/O timeout of its first byte (a skipped oversized line too).
        last_activity = Instant::now();
        if line_started.is_some_and(|t| last_activity - t > server.args.io_timeout) {
            return;
        }
        let mut data = &chunk[..n];
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            if discarding {
                match newline {
                    Some(i) => {
                        discarding = false;
                        line_started = None;
                        data = &data[i + 1..];
                    }
                    None => {
                        line_started.get_or_insert_with(Instant::now);
                        data = &[];
                    }
                }
                continue;
            }
            let Some(i) = newline else {
                pending.extend_from_slice(data);
                line_started.get_or_insert_with(Instant::now);
                if pending.len() > REQUEST_BYTES_MAX {
                    pending = Vec::new();
                    discarding = true;
                    line_started = Some(Instant::now());
                    let error = RpcError::new(
                        code::REQUEST_TOO_LARGE,
                        format!("request line is over {REQUEST_BYTES_MAX} bytes; skipped"),
                    );
                    if write_line(&mut stream, &server.refuse_line(&error)).is_err() {
                        return;
                    }
                }
                break;
            };
            let line: Vec<u8> = if pending.is_empty() {
                data[..i].to_vec()
            } else {
                pending.extend_from_slice(&data[..i]);
                std::mem::take(&mut pending)
            };
            data = &data[i + 1..];
            line_started = None;
            if let Some(answer) = server.handle_line(&line) {
                if write_line(&mut stream, &answer).is_err() {
                    return;
                }
            }
            last_activity = Instant::now();
        }
        if pending.capacity() > READ_CHUNK_BYTES && pending.is_empty() {
            pending = Vec::new();
        }
    }
}

fn write_line(stream: &mut UnixStream, line: &str) -> io::Result<()> {
    let mut out = Vec::with_capacity(line.len() + 1);
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    stream.write_all(&out)
}
