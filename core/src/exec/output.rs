//! Capped capture of a job's stdout or stderr: the first half of the cap and the last half are
//! kept, everything between is counted and dropped. Memory is bounded by the cap whatever the job
//! writes; the truncation is flagged, never silent.

/// Head-and-tail buffer of at most `cap` bytes of one output stream.
#[derive(Debug, Clone)]
pub struct CappedOutput {
    head: Vec<u8>,
    head_cap: usize,
    /// Ring of the last `tail_cap` bytes after the head filled up.
    tail: Vec<u8>,
    tail_cap: usize,
    /// Next write position in `tail` once it is full.
    tail_pos: usize,
    total_bytes: u64,
}

/// A finished capture.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct CapturedOutput {
    /// The kept bytes: all of them when nothing was dropped, else head + marker line + tail.
    pub bytes: Vec<u8>,
    /// Bytes were dropped from the middle.
    pub truncated: bool,
    /// Everything the job wrote to the stream.
    pub total_bytes: u64,
    /// Where bytes were dropped, when they were: `bytes[..head_end]` is the stream's head and
    /// `bytes[tail_start..]` its tail (a marker line sits between them). Whatever straddled the
    /// cut is partial on both sides, which redaction must know.
    pub cut: Option<OutputCut>,
}

/// The position of a capture's cut (see [`CapturedOutput::cut`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCut {
    /// End of the kept head (exclusive).
    pub head_end: usize,
    /// Start of the kept tail.
    pub tail_start: usize,
}

impl std::fmt::Debug for CapturedOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Text, not a byte list, and only the start: a debug print must stay readable.
        let shown = &self.bytes[..self.bytes.len().min(200)];
        f.debug_struct("CapturedOutput")
            .field("bytes", &String::from_utf8_lossy(shown))
            .field("kept", &self.bytes.len())
            .field("truncated", &self.truncated)
            .field("total_bytes", &self.total_bytes)
            .finish()
    }
}

impl CappedOutput {
    /// A capture keeping at most `cap_bytes` of the stream.
    pub fn new(cap_bytes: usize) -> CappedOutput {
        let tail_cap = cap_bytes / 2;
        let head_cap = cap_bytes - tail_cap;
        CappedOutput {
            head: Vec::new(),
            head_cap,
            tail: Vec::new(),
            tail_cap,
            tail_pos: 0,
            total_bytes: 0,
        }
    }

    /// Appends bytes the job wrote.
    pub fn push(&mut self, mut data: &[u8]) {
        self.total_bytes = self.total_bytes.saturating_add(data.len() as u64);
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let n = room.min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        if data.is_empty() || self.tail_cap == 0 {
            return;
        }
        if data.len() >= self.tail_cap {
            self.tail.clear();
            self.tail
                .extend_from_slice(&data[data.len() - self.tail_cap..]);
            self.tail_pos = 0;
            return;
        }
        for &b in data {
            if self.tail.len() < self.tail_cap {
                self.tail.push(b);
            } else {
                self.tail[self.tail_pos] = b;
                self.tail_pos = (self.tail_pos + 1) % self.tail_cap;
            }
        }
    }

    /// Bytes held right now (never more than the cap).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Bytes kept right now: the head plus the tail ring (never more than the cap).
    pub fn held_bytes(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// The kept output and whether anything was dropped.
    pub fn finish(self) -> CapturedOutput {
        let kept = (self.head.len() + self.tail.len()) as u64;
        let truncated = self.total_bytes > kept;
        let mut bytes = self.head;
        let mut cut = None;
        if truncated {
            let omitted = self.total_bytes - kept;
            let head_end = bytes.len();
            bytes.extend_from_slice(format!("\n[vigil: {omitted} bytes omitted]\n").as_bytes());
            cut = Some(OutputCut {
                head_end,
                tail_start: bytes.len(),
            });
        }
        // The ring's oldest byte sits at tail_pos once it has wrapped.
        if self.tail.len() == self.tail_cap {
            bytes.extend_from_slice(&self.tail[self.tail_pos..]);
            bytes.extend_from_slice(&self.tail[..self.tail_pos]);
        } else {
            bytes.extend_from_slice(&self.tail);
        }
        CapturedOutput {
            bytes,
            truncated,
            total_bytes: self.total_bytes,
            cut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_under_the_cap_is_kept_whole_in_order() {
        let mut c = CappedOutput::new(10);
        c.push(b"abc");
        c.push(b"defgh");
        let out = c.finish();
        assert_eq!(out.bytes, b"abcdefgh");
        assert!(!out.truncated);
    }

    #[test]
    fn output_over_the_cap_keeps_head_and_tail_and_flags_it() {
        let mut c = CappedOutput::new(6);
        for chunk in [&b"0123"[..], b"4567", b"89"] {
            c.push(chunk);
        }
        assert!(c.held_bytes() <= 6);
        let out = c.finish();
        assert!(out.truncated);
        assert_eq!(out.total_bytes, 10);
        assert!(out.bytes.starts_with(b"012"));
        assert!(out.bytes.ends_with(b"789"));
        assert!(String::from_utf8_lossy(&out.bytes).contains("4 bytes omitted"));
        let cut = out.cut.expect("a truncated capture says where it was cut");
        assert_eq!(&out.bytes[..cut.head_end], b"012");
        assert_eq!(&out.bytes[cut.tail_start..], b"789");
    }

    #[test]
    fn tail_ring_wraps_byte_by_byte_and_in_large_chunks() {
        let mut c = CappedOutput::new(4);
        for b in b"abcdefghij" {
            c.push(&[*b]);
        }
        assert!(c.finish().bytes.ends_with(b"ij"));
        let mut c = CappedOutput::new(4);
        c.push(&[7u8; 1000]);
        c.push(b"xy");
        assert!(c.finish().bytes.ends_with(b"xy"));
    }

    #[test]
    fn a_zero_cap_keeps_nothing_but_counts() {
        let mut c = CappedOutput::new(0);
        c.push(b"abc");
        let out = c.finish();
        assert!(out.truncated);
        assert_eq!(out.total_bytes, 3);
    }
}
