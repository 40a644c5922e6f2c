//! Stale handles through the exported functions: a handle freed before a new one reuses its
//! memory (or its registry slot) is closed for every call, and using or freeing it leaves the
//! new handle untouched.
use std::ffi::{c_void, CStr, CString};
use std::path::PathBuf;
use std::ptr::{null, null_mut};

use crate::job::*;
use crate::runtime::*;
use crate::vigil_status::*;
use crate::wal::*;
use crate::{handle_ref, HandleKind};

/// A fresh directory beneath the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vigil-ffi-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn c_path(&self) -> CString {
        CString::new(self.0.to_str().unwrap()).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open_runtime(dir: &TempDir) -> *mut vigil_runtime {
    let path = dir.c_path();
    let options = vigil_runtime_options {
        struct_size: std::mem::size_of::<vigil_runtime_options>() as u32,
        data_dir: path.as_ptr(),
        proc_root: null(),
        sample_interval_ms: 50,
        job_root: path.as_ptr(),
        default_limits: null(),
        wal_segment_bytes: 0,
        wal_retain_bytes: 0,
    };
    let mut rt = null_mut();
    // SAFETY: valid options and out-parameter.
    assert_eq!(unsafe { vigil_runtime_open(&options, &mut rt) }, VIGIL_OK);
    rt
}

/// The address of the value behind a live handle (what a raw-pointer handle would have been).
fn storage<T>(handle: *const T, kind: HandleKind) -> *const T {
    // SAFETY: every handle of `kind` in these tests is a T opened by the ffi functions.
    let value = unsafe { handle_ref(handle, kind) };
    value.ok().map_or(null(), |v| v as *const T)
}

/// What a job handle's stdout holds.
fn stdout_of(job: *const vigil_job) -> Result<Vec<u8>, crate::vigil_status> {
    let (mut data, mut len) = (null(), 0usize);
    // SAFETY: valid out-parameters.
    match unsafe { vigil_job_output(job, VIGIL_STREAM_STDOUT, &mut data, &mut len) } {
        // SAFETY: the job owns `len` bytes at `data` while it is live.
        VIGIL_OK => Ok(unsafe { std::slice::from_raw_parts(data, len) }.to_vec()),
        status => Err(status),
    }
}

fn read_file_job(rt: *const vigil_runtime, name: &str) -> *mut vigil_job {
    let args = CString::new(format!("{{\"path\": \"{name}\"}}")).unwrap();
    let mut job = null_mut();
    // SAFETY: valid strings and out-parameter.
    let status = unsafe { vigil_run(rt, c"file.read".as_ptr(), args.as_ptr(), null(), &mut job) };
    assert_eq!(status, VIGIL_OK, "{:?}", last_error());
    job
}

fn last_error() -> String {
    // SAFETY: never NULL, NUL-terminated.
    unsafe { CStr::from_ptr(crate::vigil_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_freed_job_handle_whose_memory_is_reused_is_closed_and_frees_nothing() {
    let dir = TempDir::new("stale-job");
    std::fs::write(dir.0.join("old.txt"), "old job\n").unwrap();
    std::fs::write(dir.0.join("new.txt"), "new job\n").unwrap();
    let rt = open_runtime(&dir);
    let old = read_file_job(rt, "old.txt");
    assert_eq!(stdout_of(old).unwrap(), b"old job\n");
    let old_storage = storage(old, HandleKind::Job);
    // SAFETY: a live job handle.
    assert_eq!(unsafe { vigil_job_free(old) }, VIGIL_OK);

    // New jobs until one lives where the freed one did (the allocator's first choice for a
    // block of the same size, usually at once); the others stay open so their memory is not
    // handed out again.
    let mut others = Vec::new();
    let mut reused = None;
    for _ in 0..32 {
        let job = read_file_job(rt, "new.txt");
        if storage(job, HandleKind::Job) == old_storage {
            reused = Some(job);
            break;
        }
        others.push(job);
    }
    let new = reused.expect("the allocator reused the freed job's memory within 32 jobs");
    assert_ne!(new, old, "a new handle never equals a freed one");

    // The stale handle reads nothing of the new job, and freeing it frees nothing.
    assert_eq!(stdout_of(old), Err(VIGIL_E_CLOSED));
    assert!(last_error().contains("closed"), "{}", last_error());
    let mut message = null();
    // SAFETY: valid out-parameter.
    let status = unsafe { vigil_job_error(old, &mut message) };
    assert_eq!(status, VIGIL_E_CLOSED);
    // SAFETY: a stale handle: the call must report it, not touch it.
    assert_eq!(unsafe { vigil_job_free(old) }, VIGIL_E_CLOSED);
    assert_eq!(stdout_of(new).unwrap(), b"new job\n");
    for job in others.into_iter().chain([new]) {
        // SAFETY: live handles, freed once each.
        assert_eq!(unsafe { vigil_job_free(job) }, VIGIL_OK);
    }
    assert_eq!(stdout_of(new), Err(VIGIL_E_CLOSED));
    // SAFETY: a live runtime.
    assert_eq!(unsafe { vigil_runtime_close(rt) }, VIGIL_OK);
}

#[test]
fn a_closed_reader_or_runtime_handle_stays_closed_once_new_ones_are_open() {
    let dir = TempDir::new("stale-reader");
    let rt = open_runtime(&dir);
    let (mut lsn, mut len) = (0u64, 0usize);
    let record = b"one record";
    // SAFETY: a live runtime, a readable record and out-parameters.
    unsafe {
        assert_eq!(
            vigil_wal_append(rt, record.as_ptr().cast::<c_void>(), record.len(), &mut lsn),
            VIGIL_OK
        );
        assert_eq!(vigil_wal_sync(rt, null_mut()), VIGIL_OK);
    }
    let open_reader = || {
        let mut reader = null_mut();
        // SAFETY: a live runtime and an out-parameter.
        let status = unsafe { vigil_wal_reader_open(rt, 0, &mut reader) };
        assert_eq!(status, VIGIL_OK);
        reader
    };
    let old = open_reader();
    let old_storage = storage(old, HandleKind::WalReader);
    // SAFETY: a live reader.
    assert_eq!(unsafe { vigil_wal_reader_close(old) }, VIGIL_OK);
    let mut others = Vec::new();
    let new = loop {
        let reader = open_reader();
        if storage(reader, HandleKind::WalReader) == old_storage || others.len() == 32 {
            break reader;
        }
        others.push(reader);
    };
    assert_eq!(
        storage(new, HandleKind::WalReader),
        old_storage,
        "the allocator reused the freed reader's memory within 32 readers"
    );
    let mut buf = [0u8; 64];
    // SAFETY: valid buffers and out-parameters; stale handles must be refused.
    unsafe {
        let mut next =
            |r| vigil_wal_reader_next(r, buf.as_mut_ptr().cast(), 64, &mut len, &mut lsn);
        assert_eq!(next(old), VIGIL_E_CLOSED);
        assert_eq!(vigil_wal_reader_close(old), VIGIL_E_CLOSED);
    }
    // The new reader was not advanced or closed by the stale calls: it hands out the record.
    // SAFETY: a live reader and valid out-parameters.
    let status =
        unsafe { vigil_wal_reader_next(new, buf.as_mut_ptr().cast(), 64, &mut len, &mut lsn) };
    assert_eq!(status, VIGIL_OK, "{}", last_error());
    assert_eq!(&buf[..len], record);
    for reader in others.into_iter().chain([new]) {
        // SAFETY: live readers, closed once each.
        assert_eq!(unsafe { vigil_wal_reader_close(reader) }, VIGIL_OK);
    }

    // A closed runtime handle stays closed while another runtime is open.
    // SAFETY: a live runtime.
    assert_eq!(unsafe { vigil_runtime_close(rt) }, VIGIL_OK);
    let other_dir = TempDir::new("stale-runtime");
    let other = open_runtime(&other_dir);
    assert_ne!(other, rt);
    // SAFETY: `rt` is stale and must be refused; `other` is live.
    unsafe {
        let mut append = |r| vigil_wal_append(r, record.as_ptr().cast(), record.len(), &mut lsn);
        assert_eq!(append(rt), VIGIL_E_CLOSED);
        assert_eq!(vigil_runtime_close(rt), VIGIL_E_CLOSED);
        assert_eq!(append(other), VIGIL_OK);
        assert!(lsn >= 1);
        assert_eq!(vigil_runtime_close(other), VIGIL_OK);
    }
}
