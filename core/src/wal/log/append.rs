//! Appending frames: placing them in the active segment under the writer lock.

use std::sync::atomic::Ordering;

use super::super::error::WalError;
use super::super::frame::{
    frame_bytes, seal_frame, FrameMeta, Lsn, FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES,
    RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES,
};
use super::super::record::kind::{CHECKPOINT, INDEX_CHECKPOINT};
use super::super::record::Record;
use super::super::recovery::FIRST_FRAME_BYTES_READ;
use super::super::segments::WriterState;
use super::super::storage::segment_bytes_mut;
use super::{lock, Shared};

/// Appends records inside [`Wal::append_batch`](super::Wal::append_batch).
pub struct Appender<'a> {
    pub(super) shared: &'a Shared,
    pub(super) writer: &'a mut WriterState,
}

impl Appender<'_> {
    /// Appends a record and runs `then(lsn)` before the batch goes on.
    pub fn append_then(
        &mut self,
        record: &Record<'_>,
        then: impl FnOnce(Lsn),
    ) -> Result<Lsn, WalError> {
        self.shared.append_locked(
            self.writer,
            record.kind(),
            |out| record.encode_into(out).map_err(WalError::Encode),
            then,
        )
    }

    /// Appends a frame of `kind` with `payload` as it is.
    pub fn append_raw(&mut self, kind: u16, payload: &[u8]) -> Result<Lsn, WalError> {
        self.shared
            .append_locked(self.writer, kind, |out| copy_payload(out, payload), |_| {})
    }
}

pub(super) fn copy_payload(out: &mut [u8], payload: &[u8]) -> Result<usize, WalError> {
    let dest = out
        .get_mut(..payload.len())
        .ok_or(WalError::RecordTooLarge {
            payload_bytes: payload.len(),
            max_bytes: RECORD_PAYLOAD_BYTES_MAX,
        })?;
    dest.copy_from_slice(payload);
    Ok(payload.len())
}

impl Shared {
    /// Appends one frame; `then(lsn)` runs before the writer lock is released, so whatever it
    /// records (the runtime's job index) is in step with the log at every rotation.
    pub(super) fn append_frame(
        &self,
        kind: u16,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, WalError>,
        then: impl FnOnce(Lsn),
    ) -> Result<Lsn, WalError> {
        if self.commit.is_poisoned() {
            return Err(self.commit.poison_error());
        }
        self.locked(|writer| self.append_locked(writer, kind, encode, then))
    }

    /// Appends the checkpoint a close writes: an index checkpoint (the closing payload, which
    /// carries everything a reader starting there needs) where one is set and it fits what an
    /// open reads at a hinted frame and what is left of the active segment (a close never
    /// rotates for it), else a plain checkpoint frame. An open from the last checkpoint starts
    /// at such a frame ([`super::super::storage::CheckpointHint`]).
    pub(super) fn append_closing_checkpoint(&self) -> Result<Lsn, WalError> {
        if self.commit.is_poisoned() {
            return Err(self.commit.poison_error());
        }
        self.locked(|writer| {
            let left = writer.active.file.len() - writer.active.offset;
            let budget = FIRST_FRAME_BYTES_READ
                .min(left)
                .saturating_sub(FRAME_HEADER_BYTES + FRAME_ALIGN_BYTES)
                .min(RECORD_PAYLOAD_BYTES_MAX);
            // Writer, then whatever the producer locks: the order of a rotation's prologue.
            let payload = lock(&self.closing)
                .as_ref()
                .and_then(|produce| produce(budget))
                .filter(|payload| payload.len() <= budget);
            match payload {
                Some(payload) => self.append_locked(
                    writer,
                    INDEX_CHECKPOINT,
                    |out| copy_payload(out, &payload),
                    |_| {},
                ),
                None => self.append_locked(writer, CHECKPOINT, |_| Ok(0), |_| {}),
            }
        })
    }

    /// [`Shared::append_frame`] with the locks held.
    pub(super) fn append_locked(
        &self,
        writer: &mut WriterState,
        kind: u16,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, WalError>,
        then: impl FnOnce(Lsn),
    ) -> Result<Lsn, WalError> {
        let shared = self;
        if shared.commit.is_poisoned() {
            return Err(shared.commit.poison_error());
        }
        debug_assert!(
            !shared.finished.load(Ordering::Relaxed),
            "an append after Wal::finish: nothing closes the log again"
        );
        let payload_len = encode(&mut writer.scratch[FRAME_HEADER_BYTES..])?;
        let total = frame_bytes(payload_len);
        let capacity = shared.options.segment_bytes as usize - SEGMENT_HEADER_BYTES;
        if total > capacity {
            return Err(WalError::RecordTooLarge {
                payload_bytes: payload_len,
                max_bytes: capacity - FRAME_HEADER_BYTES,
            });
        }
        if writer.active.offset + total > writer.active.file.len() {
            shared.rotate(writer, total)?;
        }
        let lsn = shared.place_frame(writer, kind, payload_len, false)?;
        then(lsn);
        shared.commit.appended(lsn);
        Ok(lsn)
    }

    /// Seals the frame whose payload sits in the scratch buffer (or, with `prologue`, in the
    /// prologue buffer) and copies it to the head of the active segment, which has room.
    pub(super) fn place_frame(
        &self,
        writer: &mut WriterState,
        kind: u16,
        payload_len: usize,
        prologue: bool,
    ) -> Result<Lsn, WalError> {
        let lsn = writer.next_lsn;
        let meta = FrameMeta {
            kind,
            lsn,
            synced_lsn: self.commit.durable_lsn(),
            prev_checksum: writer.prev_checksum,
        };
        let buffer = if prologue {
            &mut writer.prologue
        } else {
            &mut writer.scratch
        };
        let (checksum, total) =
            seal_frame(buffer, payload_len, meta, writer.active.seed).map_err(|_| {
                WalError::RecordTooLarge {
                    payload_bytes: payload_len,
                    max_bytes: RECORD_PAYLOAD_BYTES_MAX,
                }
            })?;
        let at = writer.active.offset;
        assert!(at.is_multiple_of(FRAME_ALIGN_BYTES) && at + total <= writer.active.file.len());
        // SAFETY: we hold the writer lock; bytes at and past `offset` are unpublished.
        let dest = unsafe { segment_bytes_mut(&*writer.active.file, at, at + total) };
        dest.copy_from_slice(&buffer[..total]);
        writer.active.offset = at + total;
        writer.active.keep_read_ahead();
        writer.prev_checksum = checksum;
        writer.next_lsn = lsn + 1;
        writer.appends += 1;
        writer.last_kind = kind;
        if kind == INDEX_CHECKPOINT {
            writer.last_index_checkpoint = Some((writer.active.seq, at, lsn));
        }
        // Only writer-lock holders store `last_lsn`: a load and a store, no atomic exchange.
        let previous = self.last_lsn.load(Ordering::Relaxed);
        assert_eq!(previous + 1, lsn, "LSNs are dense and increasing");
        self.last_lsn.store(lsn, Ordering::Release);
        Ok(lsn)
    }
}
