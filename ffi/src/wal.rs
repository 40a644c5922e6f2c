//! The write-ahead log from C: opaque user records in (frames of kind `USER`, read back as
//! `Record::User`), made durable on request, and read back in LSN order.
use std::ffi::c_void;
use std::sync::Mutex;

use vigil_core::wal::reader::Reader;
use vigil_core::wal::record::kind;
use vigil_core::wal::{Lsn, RECORD_PAYLOAD_BYTES_MAX};

use crate::runtime::{runtime_ref, vigil_runtime};
use crate::vigil_status::{self, *};
use crate::{
    boundary, close_handle, copy_out, handle_ref, non_null, open_handle, out_param, FfiError,
    HandleKind,
};

/// Largest record vigil_wal_append accepts, in bytes.
pub const VIGIL_WAL_RECORD_BYTES_MAX: usize = 4194304;
const _: () = assert!(VIGIL_WAL_RECORD_BYTES_MAX == RECORD_PAYLOAD_BYTES_MAX);

/// Appends one opaque record of `len` bytes at `data` (copied; `data` may be NULL when len is
/// 0) to the runtime's write-ahead log, and on success writes its LSN (log sequence number:
/// 1, 2, 3, ... in append order) to *lsn. The record is not durable until vigil_wal_sync
/// covers it: a crash before that may lose it. Records longer than VIGIL_WAL_RECORD_BYTES_MAX
/// are VIGIL_E_INVALID_ARGUMENT. Does not allocate. Thread-safe: appends from many threads are
/// ordered by their LSNs.
#[no_mangle]
pub unsafe extern "C" fn vigil_wal_append(
    rt: *const vigil_runtime,
    data: *const c_void,
    len: usize,
    lsn: *mut u64,
) -> vigil_status {
    boundary(|| {
        let rt = runtime_ref(rt)?;
        let lsn = out_param(lsn, "lsn")?;
        let bytes: &[u8] = if len == 0 {
            &[]
        } else {
            non_null(data, "data")?;
            // SAFETY: the caller's buffer holds `len` readable bytes for the call.
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }
        };
        let appended = rt.runtime.wal().append_raw(kind::USER, bytes)?;
        // SAFETY: non-NULL; caller storage for one uint64_t.
        unsafe { *lsn = appended };
        Ok(())
    })
}

/// Makes every record appended so far (by any thread) durable: when this returns VIGIL_OK,
/// they survive any crash. Writes the durable LSN (every record up to it is durable) to
/// *durable_lsn unless it is NULL. Many threads may sync at once; one disk flush serves them
/// all. A failed flush poisons the log: this and every later append and sync fail
/// (VIGIL_E_IO), and nothing is acknowledged that might not be on disk. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn vigil_wal_sync(
    rt: *const vigil_runtime,
    durable_lsn: *mut u64,
) -> vigil_status {
    boundary(|| {
        let rt = runtime_ref(rt)?;
        let wal = rt.runtime.wal();
        wal.sync_all()?;
        if !durable_lsn.is_null() {
            // SAFETY: non-NULL; caller storage for one uint64_t.
            unsafe { *durable_lsn = wal.durable_lsn() };
        }
        Ok(())
    })
}

/// A cursor over the user records of a runtime's write-ahead log. Opaque. Not for concurrent
/// use: calls on one reader from several threads are serialised, but the order they get
/// records in is then arbitrary. Keeps the log open until closed.
pub struct vigil_wal_reader {
    state: Mutex<ReaderState>,
}

struct ReaderState {
    reader: Reader,
    /// A record read from the log but not yet handed out (its buffer was too small).
    pending: Option<Lsn>,
    /// Its bytes; reused between records.
    pending_bytes: Vec<u8>,
}

impl ReaderState {
    /// Reads up to the next user record into `pending`; false at the end of the durable log.
    /// A damaged log is an error (`VIGIL_E_CORRUPT`, naming where), never the end.
    fn fill_pending(&mut self) -> Result<bool, FfiError> {
        let ReaderState {
            reader,
            pending,
            pending_bytes,
        } = self;
        while pending.is_none() {
            let frames = reader.read_batch(1, &mut |frame| {
                if frame.kind == kind::USER {
                    pending_bytes.clear();
                    pending_bytes.extend_from_slice(frame.payload);
                    *pending = Some(frame.lsn);
                }
            })?;
            if frames == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Opens a reader of the runtime's log at `from_lsn` (0 or 1 for the start: the first record
/// the log still holds, as retention retires old segments; an older LSN asked for explicitly
/// makes vigil_wal_reader_next fail with VIGIL_E_INVALID_ARGUMENT). It hands out the records
/// appended with vigil_wal_append, in LSN order, once they are durable; records vigil writes
/// itself (jobs, sessions) are skipped. On success *out receives a handle owned
/// by the caller, to close with vigil_wal_reader_close. The reader stays usable after the
/// runtime is closed (it keeps the log open until it is closed itself). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn vigil_wal_reader_open(
    rt: *const vigil_runtime,
    from_lsn: u64,
    out: *mut *mut vigil_wal_reader,
) -> vigil_status {
    boundary(|| {
        let rt = runtime_ref(rt)?;
        let out = out_param(out, "out")?;
        let wal = rt.runtime.wal();
        let from = if from_lsn <= 1 {
            wal.first_lsn()
        } else {
            from_lsn
        };
        let reader = wal.reader(from);
        let ptr = open_handle(
            vigil_wal_reader {
                state: Mutex::new(ReaderState {
                    reader,
                    pending: None,
                    pending_bytes: Vec::new(),
                }),
            },
            HandleKind::WalReader,
        )?;
        // SAFETY: non-NULL; caller storage for one pointer.
        unsafe { *out = ptr };
        Ok(())
    })
}

/// Hands out the next durable user record: copies it into `buf` (of `buf_len` bytes), writes
/// its length to *len and its LSN to *lsn (which may be NULL), and moves past it.
/// - VIGIL_END_OF_LOG: no further durable record yet; nothing is written. Call again after
///   more records are appended and synced.
/// - VIGIL_E_BUFFER_TOO_SMALL: *len receives the record's length; nothing else is written and
///   the same record is handed out by the next call. `buf` may be NULL to ask for the length.
/// - VIGIL_E_CORRUPT: the log is damaged at the reader's position; nothing is written, and
///   vigil_last_error_message names the damaged segment file, the offset and the LSN. Damage
///   is never reported as VIGIL_END_OF_LOG: every record before it has been handed out, none
///   after it can be, and later calls fail the same way (`vigil wal repair` is the way out).
///
/// The bytes are exactly those appended. Allocation-free once its internal buffer has grown to
/// the largest record read. Not for concurrent use (see vigil_wal_reader).
#[no_mangle]
pub unsafe extern "C" fn vigil_wal_reader_next(
    reader: *mut vigil_wal_reader,
    buf: *mut c_void,
    buf_len: usize,
    len: *mut usize,
    lsn: *mut u64,
) -> vigil_status {
    boundary(|| {
        // SAFETY: handle_ref dereferences only registered reader handles.
        let reader = unsafe { handle_ref(reader.cast_const(), HandleKind::WalReader) }?;
        out_param(len, "len")?;
        let mut state = reader.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.fill_pending()? {
            return Err(FfiError::new(
                VIGIL_END_OF_LOG,
                format!(
                    "end of the log: no durable record at LSN {} or after yet",
                    state.reader.next_lsn()
                ),
            ));
        }
        // SAFETY: forwarded from the caller's contract on buf/buf_len/len.
        unsafe { copy_out(&state.pending_bytes, buf.cast(), buf_len, len) }?;
        if !lsn.is_null() {
            // SAFETY: non-NULL; caller storage for one uint64_t.
            unsafe { *lsn = state.pending.unwrap_or_default() };
        }
        state.pending = None;
        Ok(())
    })
}

/// Closes a reader and frees the handle. NULL is a no-op; closing twice gives VIGIL_E_CLOSED.
/// No other call may be using the reader concurrently.
#[no_mangle]
pub unsafe extern "C" fn vigil_wal_reader_close(reader: *mut vigil_wal_reader) -> vigil_status {
    // SAFETY: close_handle frees only registered reader handles.
    boundary(|| unsafe { close_handle(reader, HandleKind::WalReader) })
}
