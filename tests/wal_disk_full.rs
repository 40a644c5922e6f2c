//! A full disk: segments are allocated with fallocate, so running out of space is a clear
//! error when a segment is created — not SIGBUS on a store into a sparse mapping — and every
//! record acknowledged before it stays readable.
//!
//! Mounts a tiny tmpfs, so it needs root; without it the test says why and does nothing.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use vigil_runtime::wal::log::{Retention, Wal, WalError, WalOptions};
use vigil_runtime::wal::reader::Reader;
use vigil_runtime::wal::record::kind;
use vigil_runtime::wal::scan::RecoveryMode;
use vigil_runtime::wal::sync::SyncMethod;

/// An unmount on drop, so a failing assertion does not leave the mount behind.
struct Mount(CString);

impl Drop for Mount {
    fn drop(&mut self) {
        // SAFETY: a valid C string path.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn segment_creation_on_a_full_filesystem_fails_clearly_and_loses_nothing() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
    let (source, fstype, data) = (c"tmpfs", c"tmpfs", c"size=640k,mode=0700");
    // SAFETY: valid C strings; mounting a tmpfs over our own empty temp directory.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        println!(
            "skipped: cannot mount a tmpfs here: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let _mount = Mount(target);
    let wal_dir = dir.path().join("wal");
    let options = WalOptions {
        segment_bytes: 128 * 1024,
        sync_method: SyncMethod::Auto,
        recovery_mode: RecoveryMode::Tail,
        retention: Retention {
            bytes_max: None,
            segments_max: None,
        },
        zero_fill_segments: true,
        open_from_checkpoint: false,
    };
    let wal = Wal::open(&wal_dir, options).unwrap();
    let mut acked = Vec::new();
    let error = loop {
        let body = vec![acked.len() as u8; 1000];
        match wal.append_raw(kind::USER, &body) {
            Ok(lsn) => {
                wal.sync(lsn).unwrap();
                acked.push(body);
            }
            Err(error) => break error,
        }
        assert!(acked.len() < 10_000, "a 640 KiB filesystem must fill up");
    };
    let message = error.to_string();
    assert!(
        matches!(&error, WalError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull),
        "{message}"
    );
    assert!(
        message.contains("create segment") && message.contains(&wal_dir.display().to_string()),
        "{message}"
    );
    assert!(
        acked.len() > 300,
        "several segments were filled first: {}",
        acked.len()
    );
    assert!(!wal.is_poisoned());
    drop(wal);

    // Everything acknowledged is there, and the log still opens on the full filesystem.
    let wal = Wal::open(&wal_dir, options).unwrap();
    assert!(
        wal.last_lsn() >= acked.len() as u64,
        "the records, and a closing checkpoint if it fit"
    );
    drop(wal);
    let mut reader = Reader::open_dir(&wal_dir, 1).unwrap();
    let mut got = Vec::new();
    let mut keep = |f: vigil_runtime::wal::Frame<'_>| {
        if f.kind != kind::CHECKPOINT {
            got.push(f.payload.to_vec())
        }
    };
    while reader.read_batch(1000, &mut keep).unwrap() > 0 {}
    assert_eq!(got, acked);
}
