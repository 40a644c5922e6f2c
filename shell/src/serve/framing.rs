//! Reading request lines from a connection and writing their answers.
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vigil_core::protocol::{code, RpcError, REQUEST_BYTES_MAX};

use super::{Server, TICK};

/// Bytes read from a connection at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Serves one connection until the peer closes it, breaks a timeout, or shutdown begins.
pub fn connection(server: &Server, mut stream: UnixStream) {
    if stream.set_read_timeout(Some(TICK)).is_err() {
        return;
    }
    let mut framer = LineFramer::new(REQUEST_BYTES_MAX);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut clock = Deadlines::new(server.args.idle_timeout, server.args.io_timeout);
    while !server.shutting_down.load(Ordering::Acquire) {
        let n = match stream.read(&mut chunk) {
            Ok(0) => {
                // The peer is done sending; a last line without its newline is still a line.
                if let Some(answer) = framer.finish().and_then(|l| server.handle_line(&l)) {
                    let _ = write_line(&mut stream, &answer);
                }
                return;
            }
            Ok(n) => n,
            Err(e) if is_tick(&e) => {
                if clock.expired(Instant::now()) {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        clock.activity();
        if clock.expired(Instant::now()) {
            return;
        }
        let answered = framer.push(&chunk[..n], |piece| {
            let answer = match piece {
                Piece::Line(line) => {
                    clock.line_done();
                    server.handle_line(line)
                }
                Piece::Oversized => {
                    // Skipping the rest of the line gets a deadline of its own.
                    clock.line_restart();
                    let error = RpcError::new(
                        code::REQUEST_TOO_LARGE,
                        format!("request line is over {REQUEST_BYTES_MAX} bytes; skipped"),
                    );
                    Some(server.refuse_line(&error))
                }
            };
            clock.activity();
            answer.map_or(Ok(()), |answer| write_line(&mut stream, &answer))
        });
        if answered.is_err() {
            return;
        }
        clock.line_open(framer.mid_line());
    }
}

/// A read that timed out (the tick) or was interrupted, rather than failed.
fn is_tick(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// A connection's two deadlines: it is closed when idle for the idle timeout, or when a line
/// (or the skipping of an oversized one) is not complete within the I/O timeout of its first
/// byte, however its bytes trickle in.
struct Deadlines {
    idle: Duration,
    io: Duration,
    last_activity: Instant,
    line_started: Option<Instant>,
}

impl Deadlines {
    fn new(idle: Duration, io: Duration) -> Deadlines {
        Deadlines {
            idle,
            io,
            last_activity: Instant::now(),
            line_started: None,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        let slow_line = self.line_started.is_some_and(|t| now - t > self.io);
        slow_line || now - self.last_activity > self.idle
    }

    fn activity(&mut self) {
        self.last_activity = Instant::now();
    }

    fn line_done(&mut self) {
        self.line_started = None;
    }

    fn line_restart(&mut self) {
        self.line_started = Some(Instant::now());
    }

    /// After a read: a line still open keeps the deadline of its first byte.
    fn line_open(&mut self, open: bool) {
        if !open {
            self.line_started = None;
        } else if self.line_started.is_none() {
            self.line_started = Some(Instant::now());
        }
    }
}

fn write_line(stream: &mut UnixStream, line: &str) -> io::Result<()> {
    let mut out = Vec::with_capacity(line.len() + 1);
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    stream.write_all(&out)
}

/// What the framer found in the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A whole line, without its newline. Bytes, not text: whether they are UTF-8 and JSON
    /// is the parser's to say.
    Line(&'a [u8]),
    /// A line grew past the cap. It is reported once, as soon as it is seen; the rest of it,
    /// up to its newline, is discarded without being kept.
    Oversized,
}

/// Splits a byte stream into newline-terminated lines of at most `max` bytes, however the
/// bytes arrive: a line in many pieces, many lines in one piece. Holds at most `max` bytes
/// plus one read's worth of a partial line.
#[derive(Debug)]
pub struct LineFramer {
    max: usize,
    pending: Vec<u8>,
    /// Skipping the rest of an oversized line, already reported.
    discarding: bool,
}

impl LineFramer {
    pub fn new(max: usize) -> LineFramer {
        LineFramer {
            max,
            pending: Vec::new(),
            discarding: false,
        }
    }

    /// Whether a line has begun and not ended (being gathered or being skipped).
    pub fn mid_line(&self) -> bool {
        self.discarding || !self.pending.is_empty()
    }

    /// Feeds `data` in, handing every complete line (and every oversized one) to `each` in
    /// order. Stops at the first error `each` returns.
    pub fn push<E>(
        &mut self,
        mut data: &[u8],
        mut each: impl FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        while !data.is_empty() {
            let newline = newline_at(data);
            if self.discarding {
                match newline {
                    Some(i) => {
                        self.discarding = false;
                        data = &data[i + 1..];
                    }
                    None => data = &[],
                }
                continue;
            }
            let Some(i) = newline else {
                self.pending.extend_from_slice(data);
                if self.pending.len() > self.max {
                    self.pending = Vec::new();
                    self.discarding = true;
                    each(Piece::Oversized)?;
                }
                break;
            };
            let (line, rest) = (&data[..i], &data[i + 1..]);
            data = rest;
            if self.pending.len() + line.len() > self.max {
                self.pending = Vec::new();
                each(Piece::Oversized)?;
            } else if self.pending.is_empty() {
                each(Piece::Line(line))?;
            } else {
                self.pending.extend_from_slice(line);
                let whole = std::mem::take(&mut self.pending);
                each(Piece::Line(&whole))?;
                // Keep the buffer for the next line unless it grew large.
                if whole.capacity() <= READ_CHUNK_BYTES {
                    self.pending = whole;
                    self.pending.clear();
                }
            }
        }
        Ok(())
    }

    /// At the end of the stream: the last line if it had no newline (`None` if there is
    /// none, or if it was oversized and already reported).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let discarding = std::mem::replace(&mut self.discarding, false);
        let last = std::mem::take(&mut self.pending);
        (!discarding && !last.is_empty()).then_some(last)
    }
}

fn newline_at(data: &[u8]) -> Option<usize> {
    data.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` in turn and returns what came out, lines as strings (lossy) and
    /// oversized lines as "<oversized>", then what `finish` gives.
    fn frame(max: usize, chunks: &[&[u8]]) -> (Vec<String>, Option<Vec<u8>>) {
        let mut framer = LineFramer::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            framer
                .push(chunk, |piece| {
                    out.push(match piece {
                        Piece::Line(l) => String::from_utf8_lossy(l).into_owned(),
                        Piece::Oversized => "<oversized>".to_string(),
                    });
                    Ok::<(), ()>(())
                })
                .unwrap();
        }
        (out, framer.finish())
    }

    #[test]
    fn several_lines_in_one_read_come_out_in_order() {
        let (lines, last) = frame(64, &[b"a\nbb\n\nccc\n"]);
        assert_eq!(lines, ["a", "bb", "", "ccc"]);
        assert_eq!(last, None);
    }

    #[test]
    fn a_line_trickling_in_byte_by_byte_is_one_line() {
        let text = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"health\"}\nnext\n";
        let mut framer = LineFramer::new(1024);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for (i, byte) in text.iter().enumerate() {
            framer
                .push(std::slice::from_ref(byte), |piece| {
                    match piece {
                        Piece::Line(l) => lines.push(l.to_vec()),
                        Piece::Oversized => panic!("not oversized"),
                    }
                    Ok::<(), ()>(())
                })
                .unwrap();
            // Mid-line exactly while a line is open.
            let at_end_of_line = *byte == b'\n';
            assert_eq!(framer.mid_line(), !at_end_of_line, "after byte {i}");
        }
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], &text[..text.len() - 6]);
        assert_eq!(lines[1], b"next");
    }

    #[test]
    fn an_oversized_line_is_reported_once_and_the_rest_of_it_skipped() {
        // Over the cap while still open: reported at once, then skipped up to its newline,
        // and the lines after it come through.
        let (lines, last) = frame(8, &[b"ok\n0123", b"456789", b"abcdef", b"gh\nafter\n"]);
        assert_eq!(lines, ["ok", "<oversized>", "after"]);
        assert_eq!(last, None);
        // Over the cap with its newline in the same read.
        let (lines, _) = frame(8, &[b"0123456789\nafter\n"]);
        assert_eq!(lines, ["<oversized>", "after"]);
        // Gathered across reads, complete over the cap.
        let (lines, _) = frame(8, &[b"01234", b"5678\nx\n"]);
        assert_eq!(lines, ["<oversized>", "x"]);
        // Exactly at the cap is a line.
        let (lines, _) = frame(8, &[b"0123", b"4567\n"]);
        assert_eq!(lines, ["01234567"]);
        // An oversized line cut off by the end of the stream is not a line.
        let (lines, last) = frame(8, &[b"0123456789abc"]);
        assert_eq!(lines, ["<oversized>"]);
        assert_eq!(last, None);
    }

    #[test]
    fn a_last_line_without_newline_is_given_at_the_end() {
        let (lines, last) = frame(64, &[b"one\ntw", b"o"]);
        assert_eq!(lines, ["one"]);
        assert_eq!(last.as_deref(), Some(&b"two"[..]));
        let (_, last) = frame(64, &[b"one\n"]);
        assert_eq!(last, None);
    }

    #[test]
    fn invalid_utf8_passes_through_as_bytes() {
        let mut framer = LineFramer::new(64);
        let mut got = Vec::new();
        framer
            .push(b"\xff\xfe{\x80}\n", |piece| {
                if let Piece::Line(l) = piece {
                    got.push(l.to_vec());
                }
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(got, [b"\xff\xfe{\x80}".to_vec()]);
    }

    #[test]
    fn an_error_from_the_consumer_stops_the_feed() {
        let mut framer = LineFramer::new(64);
        let mut seen = 0;
        let outcome = framer.push(b"a\nb\nc\n", |_| {
            seen += 1;
            if seen == 2 {
                Err("write failed")
            } else {
                Ok(())
            }
        });
        assert_eq!(outcome, Err("write failed"));
        assert_eq!(seen, 2);
    }
}
