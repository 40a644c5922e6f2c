//! What readers in this process see of the live log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::super::error::WalError;
use super::super::frame::Lsn;
use super::super::reader::LiveTail;
use super::super::storage::SegmentStore;
use super::{lock, Shared};

impl LiveTail for Shared {
    fn store(&self) -> Arc<dyn SegmentStore> {
        self.store.clone()
    }

    fn durable_lsn(&self) -> Lsn {
        self.commit.durable_lsn()
    }

    fn log_id(&self) -> u128 {
        self.log_id
    }

    /// Bytes of segment `seq` a reader in this process may look at.
    fn visible_end(&self, seq: u64, len: usize) -> usize {
        let writer = lock(&self.writer);
        if seq == writer.active.seq {
            writer.active.offset
        } else {
            len
        }
    }

    fn register_reader(&self, position: Arc<AtomicU64>) {
        let mut readers = lock(&self.readers);
        readers.retain(|r| Arc::strong_count(r) > 1);
        readers.push(position);
    }

    fn catch_up(&self) -> Result<(), WalError> {
        if self.cross.is_none() {
            return Ok(()); // No other process writes this log.
        }
        self.locked(|_| Ok(()))?;
        // Only what came from others is synced here: this process's own appends become
        // durable when their writers ask, not because a reader looked.
        let foreign = self.foreign_lsn.load(Ordering::Acquire);
        if foreign > self.commit.durable_lsn() {
            self.sync_to(foreign)?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for the durable LSN to reach `lsn`; true if it did.
    fn wait_durable(&self, lsn: Lsn, timeout: std::time::Duration) -> bool {
        self.commit.wait_durable(lsn, timeout)
    }
}
