//! Reading the log from an LSN, in bounded batches, while a writer appends.
//!
//! An in-process reader (from [`super::log::Wal::reader`]) sees durable records only, so an
//! event cursor never shows a record a crash could still take back, and it is registered so
//! retention keeps the segments it still needs. A reader opened on a directory
//! ([`Reader::open_dir`]) takes no lock and sees whatever the writer process has stored.
//!
//! Readers never stop quietly at damage. Below a *verified* LSN every record must be there:
//! for an in-process reader that is everything durable, for a directory reader everything the
//! recovery scan ([`super::recovery::scan_log`], run when it opens) accepted. A frame that does not
//! validate there is an error naming the segment, offset and LSN. Past it (a live writer in
//! another process still appending) a frame that does not validate yet is the end for now.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::error::{LogFault, WalError};
use super::frame::{
    decode_frame, salt_seed, Frame, Lsn, SegmentHeader, FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
};
use super::recovery::scan_log;
use super::scan::{probe, FaultKind, RecoveryMode};
use super::storage::{segment_bytes, FsStore, SegmentFile, SegmentStore};

/// Most records one batch hands out, whatever the caller asks for.
pub const READ_BATCH_RECORDS_MAX: usize = 4096;

struct OpenSegment {
    seq: u64,
    file: Arc<dyn SegmentFile>,
    seed: u32,
    offset: usize,
    /// LSN of the frame at `offset`.
    lsn: Lsn,
    prev_checksum: u32,
    /// Bytes known to be published (in-process readers); refreshed once per batch and when
    /// the reader gets there, so reading does not take the writer's lock per frame.
    visible: usize,
}

/// A segment's validated header and its mapping.
type MappedHeader = (SegmentHeader, Arc<dyn SegmentFile>);

/// What a reader in the writer's process needs of the live log, and no more: the durable
/// watermark, how much of a segment is published, a wait for more, and retention's notice of
/// what the reader still needs. The writer implements it; the reader knows nothing else of it.
pub(crate) trait LiveTail: Send + Sync {
    /// The segments.
    fn store(&self) -> Arc<dyn SegmentStore>;
    /// The identity every segment carries.
    fn log_id(&self) -> u128;
    /// Every record up to this LSN is durable.
    fn durable_lsn(&self) -> Lsn;
    /// Bytes of segment `seq` (of `len` bytes) a reader may look at.
    fn visible_end(&self, seq: u64, len: usize) -> usize;
    /// Waits up to `timeout` for `lsn` to be durable; true if it is.
    fn wait_durable(&self, lsn: Lsn, timeout: Duration) -> bool;
    /// Retention keeps what `position` (the next LSN a reader needs) still needs.
    fn register_reader(&self, position: Arc<AtomicU64>);
    /// Follows what other processes appended to the log and makes it durable here too, so
    /// a reader at the end of what this process knows sees their records.
    fn catch_up(&self) -> Result<(), WalError>;
}

/// How many times a reader re-reads the identity while retention keeps retiring the segment
/// it names as first.
const RETIRED_RETRIES: usize = 8;

/// A cursor over the log.
pub struct Reader {
    store: Arc<dyn SegmentStore>,
    live: Option<Arc<dyn LiveTail>>,
    position: Arc<AtomicU64>,
    next_lsn: Lsn,
    current: Option<OpenSegment>,
    /// The identity every segment read must carry.
    log_id: u128,
    /// Every LSN below this one is known to be in the log (a directory reader's opening
    /// scan): a record there that does not validate is damage, not the end.
    verified_until: Lsn,
}

impl Reader {
    pub(crate) fn in_process(shared: Arc<dyn LiveTail>, from: Lsn) -> Reader {
        let position = Arc::new(AtomicU64::new(from.max(1)));
        shared.register_reader(position.clone());
        Reader {
            store: shared.store(),
            log_id: shared.log_id(),
            live: Some(shared),
            position,
            next_lsn: from.max(1),
            current: None,
            verified_until: 1,
        }
    }

    /// A reader of the log in `dir` from LSN `from`, without taking the writer's lock. It
    /// scans the whole log first and refuses a damaged one.
    pub fn open_dir(dir: &Path, from: Lsn) -> Result<Reader, WalError> {
        let store = FsStore::open_reader(dir)?;
        Reader::over_store(Arc::new(store), from)
    }

    /// A reader of the log in `dir` from the first LSN it still holds.
    pub fn open_dir_from_start(dir: &Path) -> Result<Reader, WalError> {
        let store = FsStore::open_reader(dir)?;
        Reader::over_store_from(Arc::new(store), None)
    }

    /// A reader over any store, outside a writer (tools, tests). It scans the whole log
    /// first and refuses a damaged one: a torn tail is the end, corruption is an error.
    pub fn over_store(store: Arc<dyn SegmentStore>, from: Lsn) -> Result<Reader, WalError> {
        Reader::over_store_from(store, Some(from))
    }

    /// As [`Reader::over_store`]; `None` starts at the first LSN the log holds.
    fn over_store_from(
        store: Arc<dyn SegmentStore>,
        from: Option<Lsn>,
    ) -> Result<Reader, WalError> {
        let scan = scan_log(&*store, RecoveryMode::Tail, &mut |_, _, _| {})?;
        let from = from.unwrap_or(scan.first_lsn.unwrap_or(1));
        if let Some(fault) = scan.fault.filter(|f| f.kind == FaultKind::Corruption) {
            return Err(WalError::Corrupt(fault));
        }
        let position = Arc::new(AtomicU64::new(from.max(1)));
        Ok(Reader {
            store,
            live: None,
            position,
            next_lsn: from.max(1),
            current: None,
            log_id: scan.log_id,
            verified_until: scan.next_lsn,
        })
    }

    /// The LSN the next record handed out will have (at least).
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Hands up to `max_records` (capped at [`READ_BATCH_RECORDS_MAX`]) frames to `visit`, in
    /// LSN order; returns how many. 0 means nothing new yet.
    // Longer than 70 lines on purpose: one loop over segments and frames whose decisions (end of
    // segment, successor, damage or a writer mid-copy) share the reader's position; it reads as the
    // protocol it implements.
    pub fn read_batch(
        &mut self,
        max_records: usize,
        visit: &mut dyn FnMut(Frame<'_>),
    ) -> Result<usize, WalError> {
        let max_records = max_records.min(READ_BATCH_RECORDS_MAX);
        if let Some(shared) = &self.live {
            // At the end of what this process knows: other processes may have gone on.
            if self.next_lsn > shared.durable_lsn() {
                shared.catch_up()?;
            }
        }
        let limit = self
            .live
            .as_ref()
            .map_or(Lsn::MAX, |shared| shared.durable_lsn());
        if self.live.is_some() {
            // Everything durable is in the log.
            self.verified_until = limit.saturating_add(1);
        }
        let mut handed = 0;
        let mut refreshed = false;
        while handed < max_records && self.next_lsn <= limit {
            if self.current.is_none() && !self.locate()? {
                break;
            }
            let Some(segment) = self.current.as_mut() else {
                break;
            };
            if segment.offset + FRAME_HEADER_BYTES > segment.visible || !refreshed {
                refreshed = true;
                segment.visible = match &self.live {
                    Some(shared) => shared.visible_end(segment.seq, segment.file.len()),
                    None => segment.file.len(),
                };
            }
            // SAFETY: in-process readers stay below the writer's published offset; a reader of
            // another process's log maps the file read-only and validates every byte it uses.
            let bytes = unsafe { segment_bytes(&*segment.file, 0, segment.visible) };
            let frame = match bytes
                .get(segment.offset..)
                .map(|rest| decode_frame(rest, segment.seed))
            {
                Some(Ok(frame))
                    if frame.lsn == segment.lsn && frame.prev_checksum == segment.prev_checksum =>
                {
                    frame
                }
                Some(other) => {
                    // End of this segment's valid frames: move on if a successor continues the
                    // log, else there is nothing more yet, or the log is damaged here.
                    let expected = segment.lsn;
                    let cause = match other {
                        Ok(frame) => format!(
                            "valid frame with LSN {} where LSN {expected} belongs",
                            frame.lsn
                        ),
                        Err(error) => format!(
                            "record LSN {expected} is missing: no valid frame here ({error}) \
                             and no segment continues the log"
                        ),
                    };
                    let (seq, offset) = (segment.seq, segment.offset);
                    // Past what was verified a writer may be mid-copy here, but never with a
                    // frame after this spot written once this spot was durable: if one is
                    // there, records written since the reader started were damaged.
                    let later = probe(bytes, offset + FRAME_ALIGN_BYTES, segment.seed, expected);
                    if later.durable_after {
                        let cause = format!("{cause}; durable records follow it");
                        return Err(self.damage(seq, offset, expected, cause));
                    }
                    if self.end_of_segment(seq, offset, expected, cause)? {
                        continue;
                    }
                    break;
                }
                None => {
                    let (expected, seq, offset) = (segment.lsn, segment.seq, segment.offset);
                    let cause = format!("record LSN {expected} lies past the segment's end");
                    if self.end_of_segment(seq, offset, expected, cause)? {
                        continue;
                    }
                    break;
                }
            };
            segment.offset += frame.frame_bytes;
            segment.lsn += 1;
            segment.prev_checksum = frame.checksum;
            if frame.lsn >= self.next_lsn {
                visit(frame);
                handed += 1;
                self.next_lsn = frame.lsn + 1;
            }
        }
        self.position.store(self.next_lsn, Ordering::Release);
        Ok(handed)
    }

    /// Waits up to `timeout` for records past the cursor (in-process: until they are durable;
    /// over a directory: a plain sleep, the writer lives in another process).
    pub fn wait(&self, timeout: Duration) -> bool {
        match &self.live {
            Some(shared) => shared.wait_durable(self.next_lsn, timeout),
            None => {
                std::thread::sleep(timeout);
                true
            }
        }
    }

    /// After the last valid frame of segment `seq` (at `offset`, where `expected` belongs):
    /// opens the successor if it continues the log (true), else reports that the log ends
    /// there for now (false), and fails when `expected` was verified to exist.
    fn end_of_segment(
        &mut self,
        seq: u64,
        offset: usize,
        expected: Lsn,
        cause: String,
    ) -> Result<bool, WalError> {
        if self.open_segment(seq + 1, Some(expected))? {
            return Ok(true);
        }
        let successor = self.header_of(seq + 1)?;
        if successor.is_none() {
            // No successor: the log ends here for now, unless another process's retention
            // retired it while this reader was behind (its own retention waits for readers,
            // another process's cannot see them). Then what it wants is gone, which it says.
            if let Some(first_lsn) = self.retired_after(seq)? {
                return Err(WalError::LsnNotRetained {
                    lsn: expected,
                    first_lsn,
                });
            }
        }
        if expected < self.verified_until {
            return Err(self.damage(seq, offset, expected, cause));
        }
        // A successor that begins past `expected` was started after the writer wrote
        // `expected` here. Read the spot once more (a writer in another process may have been
        // mid-copy when it was read): if it still holds no valid frame, the log is damaged.
        if let Some((header, _)) = successor {
            if header.first_lsn > expected && !self.frame_at_current(expected) {
                let cause = format!(
                    "{cause}; segment {} continues the log at LSN {}",
                    seq + 1,
                    header.first_lsn
                );
                return Err(self.damage(seq, offset, expected, cause));
            }
        }
        Ok(false)
    }

    /// The first LSN the log holds when the identity says segments after `seq` were retired
    /// (the first retained one lies past `seq + 1`); `None` otherwise.
    fn retired_after(&self, seq: u64) -> Result<Option<Lsn>, WalError> {
        // Retention records the new first segment before it removes the old one, so a first
        // segment gone between the two reads was retired meanwhile: read the identity again.
        for _ in 0..RETIRED_RETRIES {
            let Some(identity) = self.store.identity()? else {
                return Ok(None);
            };
            if identity.log_id != self.log_id || identity.first_seq <= seq + 1 {
                return Ok(None);
            }
            if let Some((header, _)) = self.header_of(identity.first_seq)? {
                return Ok(Some(header.first_lsn));
            }
        }
        // Retired past `seq` for certain, but where the log now starts kept moving: loud, not
        // a guess (the next read finds it).
        Err(WalError::Io(std::io::Error::other(format!(
            "the segments after {seq} were retired while this reader looked for where the log              now starts; read again"
        ))))
    }

    /// Whether the current segment now holds the valid frame `lsn` at the reader's offset.
    fn frame_at_current(&self, lsn: Lsn) -> bool {
        let Some(segment) = self.current.as_ref() else {
            return false;
        };
        let len = match &self.live {
            Some(shared) => shared.visible_end(segment.seq, segment.file.len()),
            None => segment.file.len(),
        };
        // SAFETY: as in `read_batch`: below the published end in-process; a read-only mapping
        // whose every byte used is validated otherwise.
        let bytes = unsafe { segment_bytes(&*segment.file, 0, len) };
        bytes
            .get(segment.offset..)
            .map(|rest| decode_frame(rest, segment.seed))
            .is_some_and(|frame| {
                frame.is_ok_and(|f| f.lsn == lsn && f.prev_checksum == segment.prev_checksum)
            })
    }

    /// The error for damage met at `offset` of segment `seq`, where `lsn` was expected.
    fn damage(&self, seq: u64, offset: usize, lsn: Lsn, cause: String) -> WalError {
        WalError::Corrupt(LogFault {
            kind: FaultKind::Corruption,
            seq,
            segment: self.store.describe(seq),
            offset,
            expected_lsn: lsn,
            cause,
        })
    }

    /// Finds and opens the segment holding `next_lsn`. False when the log does not reach it.
    fn locate(&mut self) -> Result<bool, WalError> {
        let mut candidate = None;
        let mut first_lsn = None;
        for seq in self.store.list()? {
            let Some((header, _)) = self.header_of(seq)? else {
                continue;
            };
            first_lsn.get_or_insert(header.first_lsn);
            if header.first_lsn <= self.next_lsn {
                candidate = Some(seq);
            }
        }
        match (candidate, first_lsn) {
            (Some(seq), _) => {
                if self.open_segment(seq, None)? {
                    return Ok(true);
                }
                if self.next_lsn < self.verified_until {
                    let cause = "segment no longer validates".to_string();
                    return Err(self.damage(seq, 0, self.next_lsn, cause));
                }
                Ok(false)
            }
            (None, Some(first)) if first > self.next_lsn => Err(WalError::LsnNotRetained {
                lsn: self.next_lsn,
                first_lsn: first,
            }),
            (None, None) if self.next_lsn < self.verified_until => {
                let cause = "no segment of the log validates any more".to_string();
                Err(self.damage(0, 0, self.next_lsn, cause))
            }
            _ => Ok(false),
        }
    }

    fn header_of(&self, seq: u64) -> Result<Option<MappedHeader>, WalError> {
        let file = match self.store.open(seq, false) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        if file.len() < SEGMENT_HEADER_BYTES {
            return Ok(None);
        }
        // SAFETY: the header is written before the segment is published and never again.
        let head = unsafe { segment_bytes(&*file, 0, SEGMENT_HEADER_BYTES) };
        let valid = SegmentHeader::decode(head).ok().filter(|header| {
            header.log_id == self.log_id
                && header.segment_seq == seq
                && header.segment_bytes == file.len() as u64
        });
        Ok(valid.map(|header| (header, file)))
    }

    /// Opens segment `seq` at its first frame; with `expected`, only if it starts there.
    fn open_segment(&mut self, seq: u64, expected: Option<Lsn>) -> Result<bool, WalError> {
        let Some((header, file)) = self.header_of(seq)? else {
            return Ok(false);
        };
        if header.segment_seq != seq || expected.is_some_and(|lsn| lsn != header.first_lsn) {
            return Ok(false);
        }
        // Mappings do no read-around of their own: read what the segment holds ahead of the
        // reader, and nothing of its unwritten tail. A failed hint costs speed only.
        if let Ok(end) = file.zero_from() {
            file.prepare_scan(0, end);
        }
        self.current = Some(OpenSegment {
            seq,
            file,
            seed: salt_seed(header.salt),
            offset: SEGMENT_HEADER_BYTES,
            lsn: header.first_lsn,
            prev_checksum: 0,
            visible: 0,
        });
        Ok(true)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Released readers no longer hold back retention.
        self.position.store(Lsn::MAX, Ordering::Release);
    }
}
