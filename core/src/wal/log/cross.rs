//! Writers in several processes: the cross-process append lock and shared tail, and
//! catching up with what other processes appended.

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::super::error::{LogFault, WalError};
use super::super::frame::Frame;
use super::super::frame::{
    decode_frame, salt_seed, SegmentHeader, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use super::super::record::kind;
use super::super::segments::{zero_after, ActiveSegment, LiveSegment, NextSegment, WriterState};
use super::super::share::{AppendLock, SharedTail, TailState, WRITERS_FILE_NAME};
use super::super::storage::{create_private_dir, segment_bytes, SegmentFile};
use super::{lock, Shared};

/// Sees every frame other processes appended, in LSN order (see [`Wal::set_follower`]).
pub type Follower = Box<dyn FnMut(Followed<'_>) + Send>;

/// What a [`Follower`] is handed.
#[derive(Clone, Copy, Debug)]
pub enum Followed<'a> {
    /// The next frame another process appended.
    Frame(Frame<'a>),
    /// This writer sat idle while other processes appended so much that retention retired
    /// the segments after its own: the frames that follow start over at the first retained
    /// segment (with its prologue, when it has one). What the follower built so far is to
    /// be dropped; the prologue carries what the retired segments held that still matters.
    Restart,
}

/// A segment file and its (valid) header.
type UsedSegment = (Arc<dyn SegmentFile>, SegmentHeader);

/// What a writer shares with the other processes writing the same log (see
/// [`super::super::share`]); the shared tail itself is in the writer state
/// ([`WriterState::tail`]), behind the writer lock.
pub(super) struct Cross {
    pub(super) lock: AppendLock,
    /// Held shared while this writer is open.
    _present: AppendLock,
}

impl Cross {
    /// Opens the lock files and the shared tail of the log in `dir`.
    pub(super) fn open(dir: &Path) -> Result<(Cross, SharedTail), WalError> {
        create_private_dir(dir).map_err(|e| {
            WalError::Io(super::super::storage::context(
                e,
                "create WAL directory",
                dir,
            ))
        })?;
        let present = AppendLock::open_named(dir, WRITERS_FILE_NAME)?;
        let lock = AppendLock::open(dir)?;
        let mut tail = SharedTail::open(dir)?;
        // Under the append lock no other writer opens meanwhile. One that finds `WRITERS`
        // free (exclusively) is the only writer, of any build: it starts from a fresh mutex.
        lock.lock()?;
        let opened = (|| {
            let alone = present.try_lock()?;
            tail.init_mutex(alone)?;
            // Then it holds `WRITERS` shared for its life, as every writer does; a tool that
            // needs the log alone (repair) holds it exclusively.
            present.try_lock_shared()
        })();
        lock.unlock();
        if !opened? {
            let message = format!(
                "WAL {} is held by a tool that needs it alone (repair)",
                dir.display()
            );
            return Err(WalError::Io(io::Error::new(
                io::ErrorKind::WouldBlock,
                message,
            )));
        }
        Ok((
            Cross {
                lock,
                _present: present,
            },
            tail,
        ))
    }
}

/// What the tail file says of a writer's state.
pub(super) fn tail_state(writer: &WriterState, counter: u64) -> TailState {
    TailState {
        seq: writer.active.seq,
        offset: writer.active.offset as u64,
        next_lsn: writer.next_lsn,
        prev_checksum: writer.prev_checksum,
        counter,
    }
}

impl Shared {
    /// Runs `f` on the writer state with this process's writer lock and, when other
    /// processes may share the log, the append lock held and the state brought up to date
    /// with what they appended; publishes the new tail before letting go.
    pub(super) fn locked<T>(
        &self,
        f: impl FnOnce(&mut WriterState) -> Result<T, WalError>,
    ) -> Result<T, WalError> {
        let mut guard = lock(&self.writer);
        let writer = &mut *guard;
        let Some(tail) = writer.tail.as_mut() else {
            return f(writer);
        };
        let (held, owner_died) = tail.hold().map_err(WalError::Io)?;
        let suspect = tail.enter() || owner_died;
        if suspect || tail.peek_generation() != tail.seen() {
            // Another process published since this one did (or died mid-batch).
            let published = tail.read(self.log_id).map(|(_, state)| state);
            // On an error the holder mark stays: the next holder checks everything.
            self.catch_up(writer, published, suspect)?;
            if let Some(state) = published {
                self.counter.fetch_max(state.counter, Ordering::AcqRel);
            }
        }
        let result = f(writer);
        let state = tail_state(writer, self.counter.load(Ordering::Acquire));
        if let Some(tail) = writer.tail.as_mut() {
            tail.publish(self.log_id, state);
        }
        drop(held);
        result
    }

    /// Follows the frame chain from where this writer left off over what other processes
    /// appended, into the segments they rotated to, handing each frame to the follower. The
    /// published tail says how far that must reach; `suspect` (the last holder died holding
    /// the lock) also looks for a rotation it did not publish and clears its torn bytes.
    pub(super) fn catch_up(
        &self,
        writer: &mut WriterState,
        published: Option<TailState>,
        suspect: bool,
    ) -> Result<(), WalError> {
        let mut follower = lock(&self.follower);
        loop {
            let file = writer.active.file.clone();
            // SAFETY: we hold the append lock: no process writes the log meanwhile.
            let bytes = unsafe { segment_bytes(&*file, 0, file.len()) };
            while let Some(Ok(frame)) = bytes
                .get(writer.active.offset..)
                .map(|rest| decode_frame(rest, writer.active.seed))
            {
                if frame.lsn != writer.next_lsn || frame.prev_checksum != writer.prev_checksum {
                    break;
                }
                if let Some(follow) = follower.as_mut() {
                    follow(Followed::Frame(frame));
                }
                writer.active.offset += frame.frame_bytes;
                writer.prev_checksum = frame.checksum;
                writer.next_lsn = frame.lsn + 1;
                writer.last_kind = frame.kind;
                self.last_lsn.store(frame.lsn, Ordering::Release);
                self.foreign_lsn.store(frame.lsn, Ordering::Release);
            }
            let rotated = published.is_none_or(|tail| tail.seq > writer.active.seq);
            if !(rotated || suspect) {
                break;
            }
            if self.follow_rotation(writer)? {
                continue;
            }
            let behind = published.is_some_and(|tail| tail.seq > writer.active.seq);
            if !(behind && self.rejoin(writer)?) {
                break;
            }
            if let Some(follow) = follower.as_mut() {
                follow(Followed::Restart);
            }
        }
        let at = writer.active.offset;
        if suspect {
            // A holder died mid-frame: its bytes past the chain were never part of the log
            // (and never synced by anyone to acknowledge them). Zero them before appending.
            let file = writer.active.file.clone();
            // SAFETY: as above.
            let rest = unsafe { segment_bytes(&*file, at, file.len()) };
            if rest.iter().take(FRAME_HEADER_BYTES).any(|&b| b != 0) {
                // SAFETY: as above; nothing of these bytes is published.
                zero_after(&*file, at, file.len());
            }
        }
        if let Some(tail) = published {
            if (tail.seq, tail.next_lsn) > (writer.active.seq, writer.next_lsn) {
                return Err(WalError::Corrupt(LogFault {
                    kind: super::super::scan::FaultKind::Corruption,
                    seq: writer.active.seq,
                    segment: self.store.describe(writer.active.seq),
                    offset: at,
                    expected_lsn: writer.next_lsn,
                    cause: format!(
                        "the log's chain ends before LSN {} in segment {}, which another \
                         writer published",
                        tail.next_lsn, tail.seq
                    ),
                }));
            }
        }
        Ok(())
    }

    /// Moves the writer to the segment after its active one when that segment continues the
    /// log (another process rotated); false when it does not (yet).
    pub(super) fn follow_rotation(&self, writer: &mut WriterState) -> Result<bool, WalError> {
        let seq = writer.active.seq + 1;
        let Some((file, header)) = self.used_segment(seq)? else {
            return Ok(false);
        };
        if header.first_lsn != writer.next_lsn {
            return Ok(false);
        }
        self.enter_segment(writer, seq, file, header);
        Ok(true)
    }

    /// Moves the writer to the first retained segment when other processes retired the
    /// segments after its active one (it was idle while they appended past retention): the
    /// chain it followed is gone, and the log goes on from there. False when nothing after
    /// it was retired (a gap in the log, which the caller reports) or the identity does not
    /// lead to a segment that starts after this writer's position.
    fn rejoin(&self, writer: &mut WriterState) -> Result<bool, WalError> {
        let Some(identity) = self.store.identity().map_err(WalError::Io)? else {
            return Ok(false);
        };
        let seq = identity.first_seq;
        if identity.log_id != self.log_id || seq <= writer.active.seq + 1 {
            return Ok(false);
        }
        let Some((file, header)) = self.used_segment(seq)? else {
            return Ok(false);
        };
        if header.first_lsn < writer.next_lsn {
            return Ok(false);
        }
        // Retirement needs everything before the first retained segment durable: nothing
        // this writer holds in the old segments waits for it.
        writer.segments.clear();
        writer.next_lsn = header.first_lsn;
        self.last_lsn
            .store(header.first_lsn.saturating_sub(1), Ordering::Release);
        self.enter_segment(writer, seq, file, header);
        Ok(true)
    }

    /// Segment `seq` and its header, when it exists and holds a header of this log.
    fn used_segment(&self, seq: u64) -> Result<Option<UsedSegment>, WalError> {
        let file = match self.store.open(seq, true) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(WalError::Io(error)),
        };
        // SAFETY: we hold the append lock: no process writes the header meanwhile.
        let head = unsafe { segment_bytes(&*file, 0, file.len().min(SEGMENT_HEADER_BYTES)) };
        let Ok(header) = SegmentHeader::decode(head) else {
            return Ok(None); // pre-created, not yet used
        };
        if header.log_id != self.log_id || header.segment_seq != seq {
            return Ok(None);
        }
        Ok(Some((file, header)))
    }

    /// Makes segment `seq` (with `header`, starting at the writer's next LSN) the active one.
    fn enter_segment(
        &self,
        writer: &mut WriterState,
        seq: u64,
        file: Arc<dyn SegmentFile>,
        header: SegmentHeader,
    ) {
        let seed = salt_seed(header.salt);
        // SAFETY: callers hold the append lock: no process writes the segment meanwhile.
        let first = unsafe { segment_bytes(&*file, 0, file.len()) }
            .get(SEGMENT_HEADER_BYTES..)
            .and_then(|rest| decode_frame(rest, seed).ok())
            .map(|frame| frame.kind);
        let old = std::mem::replace(
            &mut writer.active,
            ActiveSegment::new(seq, file, seed, SEGMENT_HEADER_BYTES, header.first_lsn),
        );
        // Its last bytes (another process's) are covered by this process's next sync too.
        writer.unsynced.push(old.file);
        writer.prev_checksum = 0;
        writer.segments.push_back(LiveSegment {
            seq,
            first_lsn: header.first_lsn,
            prologue: first == Some(kind::INDEX_CHECKPOINT),
            bytes: writer.active.file.len() as u64,
        });
        if matches!(writer.next, NextSegment::Ready(_)) {
            // Made for a segment the log has moved past.
            writer.next = NextSegment::Missing;
        }
    }
}
