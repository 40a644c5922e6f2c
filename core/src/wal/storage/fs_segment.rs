//! [`FsSegment`]: a segment file of the [`FsStore`](super::FsStore), memory-mapped, and how
//! one is created fully allocated.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::super::sync::SyncEngine;
use super::{context, SegmentFile, APPEND_READAHEAD_MAX_BYTES, PRIVATE_FILE_MODE};

/// Zero-fill chunk: bounded so creating a segment needs no large buffer.
const ZERO_CHUNK_BYTES: usize = 1 << 20;
/// How far appends move before the window is read ahead again, as a share of the window: a
/// quarter (64 KiB of the largest, 256 KiB). Each time, the append that crosses it pays the
/// `madvise` and the zeroing of this many bytes of new pages (measured: ~35 us for 128 KiB,
/// ~15 us for 32 KiB on the 2-core bench host); smaller steps cut that spike but add system
/// calls (16 KiB: ~15% more CPU per append than 128 KiB).
const APPEND_READAHEAD_STEP_DIVISOR: usize = 4;
/// Chunk in which [`FsSegment::zero_from`] reads data regions (a reused buffer, so the proof
/// adds no resident memory however much it reads).
const ZERO_PROOF_CHUNK_BYTES: usize = 256 << 10;
/// Data regions [`data_regions`] lists one by one; past this the rest counts as one region.
const DATA_REGIONS_MAX: usize = 4096;

/// A mapped segment file.
pub(super) struct FsSegment {
    pub(super) file: File,
    pub(super) map: memmap2::MmapRaw,
    pub(super) path: PathBuf,
}

impl SegmentFile for FsSegment {
    fn len(&self) -> usize {
        self.map.len()
    }

    fn base_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    fn sync(&self, engine: &mut SyncEngine) -> io::Result<()> {
        engine
            .fdatasync(self.raw_fd())
            .map_err(|e| context(e, "fdatasync segment", &self.path))
    }

    fn release_resident(&self, start: usize, end: usize) {
        let page = page_bytes();
        // MADV_DONTNEED on a shared file mapping only unmaps: dirty pages are kept in the
        // page cache and the next access maps the same bytes again.
        self.advise(
            start.div_ceil(page) * page,
            end.min(self.map.len()) / page * page,
            libc::MADV_DONTNEED,
        );
    }

    /// The zero tail from the file's extents: `SEEK_DATA`/`SEEK_HOLE` list the regions that
    /// may hold data (an allocated but unwritten extent is a hole unless the page cache holds
    /// pages of it), and only those are read, with `pread` into one reused buffer and from the
    /// last region backwards, until a non-zero byte: a page first, each next read twice the
    /// last (up to [`ZERO_PROOF_CHUNK_BYTES`]), as the end of a closed log's data is usually in
    /// the last page of its region. A hole reads as zeros, so nothing after the returned offset
    /// can be non-zero. Where `SEEK_DATA` is unsupported the whole file counts as data:
    /// correct, only slower.
    fn zero_from(&self) -> io::Result<usize> {
        let len = self.map.len();
        let regions = data_regions(self.raw_fd(), len)
            .map_err(|e| context(e, "list data regions of segment", &self.path))?;
        let mut buf = Vec::new();
        let mut step = page_bytes();
        let mut zero_from = 0;
        'regions: for &(start, end) in regions.iter().rev() {
            let mut high = end;
            while high > start {
                let low = high.saturating_sub(step).max(start);
                step = (step * 2).min(ZERO_PROOF_CHUNK_BYTES);
                if buf.len() < high - low {
                    buf.resize(high - low, 0);
                }
                let chunk = &mut buf[..high - low];
                std::os::unix::fs::FileExt::read_exact_at(&self.file, chunk, low as u64)
                    .map_err(|e| context(e, "read segment", &self.path))?;
                if !super::super::scan::is_zero(chunk) {
                    let last = chunk.iter().rposition(|&b| b != 0).unwrap_or(0);
                    zero_from = low + last + 1;
                    break 'regions;
                }
                high = low;
            }
        }
        let cached_zeros: usize = regions
            .iter()
            .map(|&(start, end)| end.saturating_sub(start.max(zero_from)))
            .sum();
        if cached_zeros > APPEND_READAHEAD_MAX_BYTES {
            // Zero pages in the page cache past the end (read there by an earlier scan, or
            // read ahead for appends by a writer that did not close) make every open read
            // them again: drop them.
            self.drop_cached_tail(zero_from);
        }
        Ok(zero_from)
    }

    fn drop_cached_tail(&self, from: usize) {
        let len = self.map.len();
        let from = from.next_multiple_of(page_bytes()).min(len);
        // Only clean, unmapped pages go: another process's appends there keep theirs.
        // SAFETY: fadvise on a descriptor we own; a hint only.
        unsafe {
            libc::posix_fadvise(
                self.raw_fd(),
                from as libc::off_t,
                (len - from) as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            )
        };
    }

    fn prepare_appends(&self, offset: usize, window: usize) -> usize {
        // Reads the (allocated, zero) pages into the page cache so appends take cheap minor
        // faults; it maps nothing, so the resident set grows only with what is written. The
        // window moves with the appends: past it, each page would be a major fault reading
        // one page (the mapping reads nothing around a fault).
        let window = window.min(APPEND_READAHEAD_MAX_BYTES);
        self.will_need(offset, offset.saturating_add(window));
        offset
            .saturating_add((window / APPEND_READAHEAD_STEP_DIVISOR).max(page_bytes()))
            .min(self.map.len())
    }

    fn prepare_scan(&self, start: usize, end: usize) {
        self.will_need(start, end);
    }
}

/// The regions of the first `len` bytes of `fd` that may hold data, in order, by
/// `SEEK_DATA`/`SEEK_HOLE`; everything else reads as zeros. A file system without them, or
/// one that reports everything as data, gives one region: the whole file.
fn data_regions(fd: RawFd, len: usize) -> io::Result<Vec<(usize, usize)>> {
    let whole = vec![(0, len)];
    let mut regions = Vec::new();
    let mut at = 0usize;
    while at < len {
        // SAFETY: lseek on a descriptor we own.
        let data = unsafe { libc::lseek(fd, at as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            return match io::Error::last_os_error().raw_os_error() {
                Some(libc::ENXIO) => Ok(regions), // no data at or after `at`
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Ok(whole),
                _ => Err(io::Error::last_os_error()),
            };
        }
        let start = usize::try_from(data).unwrap_or(len).min(len);
        if start >= len {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, start as libc::off_t, libc::SEEK_HOLE) };
        if hole < 0 {
            return match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Ok(whole),
                _ => Err(io::Error::last_os_error()),
            };
        }
        let end = usize::try_from(hole).unwrap_or(len).clamp(start, len);
        if regions.len() == DATA_REGIONS_MAX || end == start {
            // Too many regions to list (or a file system that answers oddly): the rest of
            // the file counts as data.
            regions.push((start, len));
            break;
        }
        regions.push((start, end));
        at = end;
    }
    Ok(regions)
}

fn page_bytes() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096).max(1)
}

impl FsSegment {
    fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Asks the kernel to read `start..end` into the page cache now (whole pages).
    fn will_need(&self, start: usize, end: usize) {
        let page = page_bytes();
        self.advise(
            start / page * page,
            end.min(self.map.len()),
            libc::MADV_WILLNEED,
        );
    }

    /// `madvise(advice)` over `start..end` (`start` page-aligned) of the mapping, if not
    /// empty. A failed hint costs speed, not correctness.
    fn advise(&self, start: usize, end: usize, advice: libc::c_int) {
        let end = end.min(self.map.len());
        if start >= end {
            return;
        }
        // SAFETY: a page-aligned range inside our shared file mapping; the advice callers
        // pass (WILLNEED, DONTNEED) never changes the file's bytes.
        unsafe { libc::madvise(self.map.as_mut_ptr().add(start).cast(), end - start, advice) };
    }
}

pub(super) fn create_allocated(tmp: &Path, bytes: u64, zero_fill: bool) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .custom_flags(libc::O_CLOEXEC)
        .open(tmp)?;
    let len =
        libc::off_t::try_from(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: fallocate on a descriptor we own, mode 0 = allocate and extend the size.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if zero_fill {
        use std::os::unix::fs::FileExt;
        let zeros = vec![0u8; ZERO_CHUNK_BYTES.min(bytes as usize)];
        let mut at = 0u64;
        while at < bytes {
            let n = zeros.len().min((bytes - at) as usize);
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
    }
    file.sync_all()
}
