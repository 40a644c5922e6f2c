//! /proc/meminfo: the fields an operator needs, in bytes.
//!
//! Keys may come in any order, unknown keys are ignored, values without a unit (the
//! `HugePages_*` counts) are taken as they are. `MemAvailable` is absent before Linux 3.14; then
//! [`MemInfo::available_bytes`] is an estimate and [`MemInfo::available_estimated`] says so.
//! Available memory never exceeds MemTotal: some container views (lxcfs) print a MemAvailable
//! above their MemTotal; it is clamped and [`MemInfo::available_clamped`] says so.
use crate::parse::{Cursor, ParseError, ParseErrorKind};

/// Parsed /proc/meminfo. Sizes are bytes; a field the kernel did not print is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`: usable RAM, in bytes (always present).
    pub total_bytes: u64,
    /// `MemFree`: RAM not used at all, in bytes (always present; far below what is available).
    pub free_bytes: u64,
    /// The kernel's MemAvailable, or the estimate when it is absent.
    pub available_bytes: u64,
    /// True when `available_bytes` is vigil's estimate, not the kernel's figure.
    pub available_estimated: bool,
    /// True when MemAvailable exceeded MemTotal and `available_bytes` was cut to MemTotal.
    pub available_clamped: bool,
    /// `Buffers`: raw block-device cache, in bytes.
    pub buffers_bytes: Option<u64>,
    /// `Cached`: page cache (files, tmpfs and shmem), in bytes; swap cache excluded.
    pub cached_bytes: Option<u64>,
    /// `SwapCached`: memory swapped out and back in that is still in swap, in bytes.
    pub swap_cached_bytes: Option<u64>,
    /// `Active`: recently used memory, reclaimed last, in bytes.
    pub active_bytes: Option<u64>,
    /// `Inactive`: memory not used recently, reclaim candidates, in bytes.
    pub inactive_bytes: Option<u64>,
    /// `Active(anon)`: recently used anonymous memory, in bytes.
    pub active_anon_bytes: Option<u64>,
    /// `Inactive(anon)`: anonymous memory not used recently (swap candidates), in bytes.
    pub inactive_anon_bytes: Option<u64>,
    /// `Active(file)`: recently used file-backed memory, in bytes.
    pub active_file_bytes: Option<u64>,
    /// `Inactive(file)`: file-backed memory not used recently (first to be reclaimed), in bytes.
    pub inactive_file_bytes: Option<u64>,
    /// `Unevictable`: memory that cannot be reclaimed (mlocked, ramfs), in bytes.
    pub unevictable_bytes: Option<u64>,
    /// `Mlocked`: memory locked with `mlock`, in bytes.
    pub mlocked_bytes: Option<u64>,
    /// `SwapTotal`: swap space, in bytes (0 without swap).
    pub swap_total_bytes: Option<u64>,
    /// `SwapFree`: swap space unused, in bytes.
    pub swap_free_bytes: Option<u64>,
    /// `Dirty`: memory waiting to be written back to disk, in bytes.
    pub dirty_bytes: Option<u64>,
    /// `Writeback`: memory being written back right now, in bytes.
    pub writeback_bytes: Option<u64>,
    /// `AnonPages`: anonymous pages mapped into user page tables, in bytes.
    pub anon_pages_bytes: Option<u64>,
    /// `Mapped`: files mapped into memory (libraries, mmap), in bytes.
    pub mapped_bytes: Option<u64>,
    /// `Shmem`: shared memory and tmpfs, in bytes.
    pub shmem_bytes: Option<u64>,
    /// `Slab`: kernel slab caches, in bytes.
    pub slab_bytes: Option<u64>,
    /// `SReclaimable`: the part of the slab that can be reclaimed (dentries, inodes), in bytes.
    pub slab_reclaimable_bytes: Option<u64>,
    /// `SUnreclaim`: the part of the slab that cannot be reclaimed, in bytes.
    pub slab_unreclaimable_bytes: Option<u64>,
    /// `KernelStack`: kernel stacks of all tasks, in bytes.
    pub kernel_stack_bytes: Option<u64>,
    /// `PageTables`: page tables, in bytes.
    pub page_tables_bytes: Option<u64>,
    /// `CommitLimit`: the most that may be committed under strict overcommit, in bytes.
    pub commit_limit_bytes: Option<u64>,
    /// `Committed_AS`: memory allocated by all processes, even if not yet used, in bytes.
    pub committed_as_bytes: Option<u64>,
    /// `HugePages_Total`: huge pages in the pool (a count, not bytes).
    pub hugepages_total: Option<u64>,
    /// `HugePages_Free`: huge pages of the pool not yet allocated (a count).
    pub hugepages_free: Option<u64>,
    /// `Hugepagesize`: the size of one huge page, in bytes.
    pub hugepage_size_bytes: Option<u64>,
}

impl MemInfo {
    /// Parses `text` into `self`, replacing what was there; no allocation. `MemTotal` and
    /// `MemFree` are required: without them there is nothing to decide on.
    pub fn parse_into(&mut self, text: &[u8]) -> Result<(), ParseError> {
        *self = Self::default();
        let mut total = None;
        let mut free = None;
        let mut available = None;
        let mut c = Cursor::new(text);
        while !c.is_empty() {
            let key = c.token();
            if key.is_empty() {
                c.next_line();
                continue;
            }
            let Some(key) = key.strip_suffix(b":") else {
                return Err(c.error(ParseErrorKind::Malformed));
            };
            let slot: &mut Option<u64> = match key {
                b"MemTotal" => &mut total,
                b"MemFree" => &mut free,
                b"MemAvailable" => &mut available,
                b"Buffers" => &mut self.buffers_bytes,
                b"Cached" => &mut self.cached_bytes,
                b"SwapCached" => &mut self.swap_cached_bytes,
                b"Active" => &mut self.active_bytes,
                b"Inactive" => &mut self.inactive_bytes,
                b"Active(anon)" => &mut self.active_anon_bytes,
                b"Inactive(anon)" => &mut self.inactive_anon_bytes,
                b"Active(file)" => &mut self.active_file_bytes,
                b"Inactive(file)" => &mut self.inactive_file_bytes,
                b"Unevictable" => &mut self.unevictable_bytes,
                b"Mlocked" => &mut self.mlocked_bytes,
                b"SwapTotal" => &mut self.swap_total_bytes,
                b"SwapFree" => &mut self.swap_free_bytes,
                b"Dirty" => &mut self.dirty_bytes,
                b"Writeback" => &mut self.writeback_bytes,
                b"AnonPages" => &mut self.anon_pages_bytes,
                b"Mapped" => &mut self.mapped_bytes,
                b"Shmem" => &mut self.shmem_bytes,
                b"Slab" => &mut self.slab_bytes,
                b"SReclaimable" => &mut self.slab_reclaimable_bytes,
                b"SUnreclaim" => &mut self.slab_unreclaimable_bytes,
                b"KernelStack" => &mut self.kernel_stack_bytes,
                b"PageTables" => &mut self.page_tables_bytes,
                b"CommitLimit" => &mut self.commit_limit_bytes,
                b"Committed_AS" => &mut self.committed_as_bytes,
                b"HugePages_Total" => &mut self.hugepages_total,
                b"HugePages_Free" => &mut self.hugepages_free,
                b"Hugepagesize" => &mut self.hugepage_size_bytes,
                _ => {
                    c.next_line();
                    continue;
                }
            };
            *slot = Some(parse_value(&mut c).map_err(|k| c.error(k))?);
            c.next_line();
        }
        self.finish(total, free, available)
    }

    /// Parses only what a [`crate::sample::Sample`] shows (MemTotal, MemFree, MemAvailable,
    /// Cached, SwapTotal, SwapFree, Dirty) and what the MemAvailable estimate needs (Buffers,
    /// Shmem, SReclaimable); every other field is left `None`. The sampler's path: a line is
    /// recognised or skipped by its first bytes, without splitting it into fields, and only
    /// the lines read are checked. Whatever [`MemInfo::parse_into`] accepts, this accepts with
    /// the same values in the fields it reads.
    pub fn parse_sample_into(&mut self, text: &[u8]) -> Result<(), ParseError> {
        // The first four bytes of each key read, little-endian, as the dispatch.
        const fn first4(key: &[u8]) -> u32 {
            u32::from_le_bytes([key[0], key[1], key[2], key[3]])
        }
        const MEMT: u32 = first4(b"MemTotal:");
        const MEMF: u32 = first4(b"MemFree:");
        const MEMA: u32 = first4(b"MemAvailable:");
        const BUFF: u32 = first4(b"Buffers:");
        const CACH: u32 = first4(b"Cached:");
        const SWAP: u32 = first4(b"SwapTotal:");
        const DIRT: u32 = first4(b"Dirty:");
        const SHME: u32 = first4(b"Shmem:");
        const SREC: u32 = first4(b"SReclaimable:");
        const TOTA: u32 = first4(b"Total:");
        const FREE: u32 = first4(b"Free:");

        *self = Self::default();
        let mut total = None;
        let mut free = None;
        let mut available = None;
        let mut c = Cursor::new(text);
        while !c.is_empty() {
            c.skip_blanks();
            let word = c.peek_word();
            let (key, slot): (&[u8], &mut Option<u64>) = match word as u32 {
                MEMT => (b"MemTotal:", &mut total),
                MEMF => (b"MemFree:", &mut free),
                MEMA => (b"MemAvailable:", &mut available),
                BUFF => (b"Buffers:", &mut self.buffers_bytes),
                CACH => (b"Cached:", &mut self.cached_bytes),
                DIRT => (b"Dirty:", &mut self.dirty_bytes),
                SHME => (b"Shmem:", &mut self.shmem_bytes),
                SREC => (b"SReclaimable:", &mut self.slab_reclaimable_bytes),
                SWAP => match (word >> 32) as u32 {
                    TOTA => (b"SwapTotal:", &mut self.swap_total_bytes),
                    FREE => (b"SwapFree:", &mut self.swap_free_bytes),
                    _ => {
                        c.next_line();
                        continue;
                    }
                },
                _ => {
                    c.next_line();
                    continue;
                }
            };
            // The whole key, then the end of the field (`Cached:x` is another key).
            if !c.eat(key) || !matches!(c.rest().first(), None | Some(b' ' | b'\t' | b'\n')) {
                c.next_line();
                continue;
            }
            *slot = Some(parse_value(&mut c).map_err(|k| c.error(k))?);
            c.next_line();
        }
        self.finish(total, free, available)
    }

    /// The required fields, MemAvailable or its estimate, and the clamp to MemTotal.
    fn finish(
        &mut self,
        total: Option<u64>,
        free: Option<u64>,
        available: Option<u64>,
    ) -> Result<(), ParseError> {
        self.total_bytes = total.ok_or(ParseError::new(ParseErrorKind::MissingLine, 0))?;
        self.free_bytes = free.ok_or(ParseError::new(ParseErrorKind::MissingLine, 0))?;
        match available {
            Some(a) => self.available_bytes = a,
            None => {
                self.available_bytes = self.estimate_available();
                self.available_estimated = true;
            }
        }
        if self.available_bytes > self.total_bytes {
            self.available_bytes = self.total_bytes;
            self.available_clamped = true;
        }
        debug_assert!(self.available_bytes <= self.total_bytes);
        Ok(())
    }

    /// What old kernels would have reported as MemAvailable, without the zone watermarks we
    /// cannot see: free memory, plus page cache and buffers that are not shmem (shmem sits in
    /// Cached but cannot be dropped), plus reclaimable slab, never above MemTotal.
    fn estimate_available(&self) -> u64 {
        let cache = self
            .cached_bytes
            .unwrap_or(0)
            .saturating_sub(self.shmem_bytes.unwrap_or(0));
        self.free_bytes
            .saturating_add(cache)
            .saturating_add(self.buffers_bytes.unwrap_or(0))
            .saturating_add(self.slab_reclaimable_bytes.unwrap_or(0))
            .min(self.total_bytes)
    }
}

/// `123 kB` -> bytes; a bare number (hugepage counts) is taken as it is. Nothing else may
/// follow on the line.
#[inline]
fn parse_value(c: &mut Cursor<'_>) -> Result<u64, ParseErrorKind> {
    let number = c.number()?.ok_or(ParseErrorKind::MissingField)?;
    let value = match c.token() {
        b"" => number,
        b"kB" => number.checked_mul(1024).ok_or(ParseErrorKind::Overflow)?,
        _ => return Err(ParseErrorKind::Malformed),
    };
    c.skip_blanks();
    if !c.at_line_end() {
        return Err(ParseErrorKind::Malformed);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURE: &[u8] = b"MemTotal:       24567812 kB\n\
MemFree:        20123456 kB\n\
MemAvailable:   22000000 kB\n\
Buffers:          123456 kB\n\
Cached:          2000000 kB\n\
SwapCached:            0 kB\n\
Active:          1000000 kB\n\
Inactive:        1500000 kB\n\
Active(anon):     400000 kB\n\
Inactive(anon):    10000 kB\n\
Active(file):     600000 kB\n\
Inactive(file):  1490000 kB\n\
Unevictable:           0 kB\n\
Mlocked:               0 kB\n\
SwapTotal:             0 kB\n\
SwapFree:              0 kB\n\
Dirty:               128 kB\n\
Writeback:             0 kB\n\
AnonPages:        410000 kB\n\
Mapped:           200000 kB\n\
Shmem:             50000 kB\n\
KReclaimable:     100000 kB\n\
Slab:             150000 kB\n\
SReclaimable:     100000 kB\n\
SUnreclaim:        50000 kB\n\
KernelStack:        4000 kB\n\
PageTables:         8000 kB\n\
CommitLimit:    12283904 kB\n\
Committed_AS:    1200000 kB\n\
HugePages_Total:       0\n\
HugePages_Free:        0\n\
Hugepagesize:       2048 kB\n\
DirectMap4k:      200000 kB\n";

    /// The share of memory available as samples report it (procfs itself does not compute it).
    fn available_basis_points(m: &MemInfo) -> Option<u16> {
        crate::sample::MemorySample::from_meminfo(m)
            .available()
            .map(crate::sample::Percent::basis_points)
    }

    #[test]
    fn parses_a_real_capture_in_bytes() {
        let mut m = MemInfo::default();
        m.parse_into(CAPTURE).unwrap();
        assert_eq!(m.total_bytes, 24567812 * 1024);
        assert_eq!(m.available_bytes, 22000000 * 1024);
        assert!(!m.available_estimated);
        assert_eq!(m.active_anon_bytes, Some(400000 * 1024));
        assert_eq!(m.inactive_file_bytes, Some(1490000 * 1024));
        assert_eq!(m.hugepages_total, Some(0), "unitless key");
        assert_eq!(m.hugepage_size_bytes, Some(2048 * 1024));
        assert_eq!(available_basis_points(&m), Some(8954));
    }

    #[test]
    fn mem_available_above_mem_total_is_clamped_and_flagged() {
        let mut m = MemInfo::default();
        m.parse_into(b"MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 5000 kB\n")
            .unwrap();
        assert_eq!(m.available_bytes, 1000 * 1024);
        assert!(m.available_clamped);
        assert_eq!(available_basis_points(&m), Some(10_000));
        m.parse_into(b"MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 1000 kB\n")
            .unwrap();
        assert_eq!(m.available_bytes, 1000 * 1024);
        assert!(!m.available_clamped, "equal to the total is not clamped");
    }

    #[test]
    fn without_mem_available_the_estimate_is_flagged() {
        let text = b"MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 300 kB\n\
Shmem: 100 kB\nSReclaimable: 20 kB\n";
        let mut m = MemInfo::default();
        m.parse_into(text).unwrap();
        assert!(m.available_estimated);
        assert_eq!(m.available_bytes, (100 + 200 + 50 + 20) * 1024);
    }

    #[test]
    fn estimate_never_exceeds_total() {
        let text = b"MemTotal: 100 kB\nMemFree: 90 kB\nCached: 10000 kB\n";
        let mut m = MemInfo::default();
        m.parse_into(text).unwrap();
        assert_eq!(m.available_bytes, 100 * 1024);
    }

    #[test]
    fn reordered_unknown_and_unitless_keys() {
        let text = b"FutureThing(x): 7 kB\nMemAvailable: 5 kB\nHugePages_Free: 3\nMemFree: 4 kB\n\
MemTotal: 10 kB";
        let mut m = MemInfo::default();
        m.parse_into(text).unwrap();
        assert_eq!(
            (m.total_bytes, m.free_bytes, m.available_bytes),
            (10240, 4096, 5120)
        );
        assert_eq!(m.hugepages_free, Some(3));
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line() {
        let mut m = MemInfo::default();
        assert_eq!(
            m.parse_into(b"MemTotal: 10 kB\nMemFree 4 kB\n")
                .unwrap_err(),
            ParseError::new(ParseErrorKind::Malformed, 2)
        );
        assert_eq!(
            m.parse_into(b"MemTotal: 10 MB\nMemFree: 4 kB\n")
                .unwrap_err()
                .kind,
            ParseErrorKind::Malformed
        );
        assert_eq!(
            m.parse_into(b"MemTotal: 18446744073709551615 kB\nMemFree: 4 kB\n")
                .unwrap_err()
                .kind,
            ParseErrorKind::Overflow
        );
        assert_eq!(
            m.parse_into(b"MemFree: 4 kB\n").unwrap_err().kind,
            ParseErrorKind::MissingLine
        );
        assert!(m.parse_into(b"MemTotal: kB\nMemFree: 4 kB\n").is_err());
    }

    /// The fields `parse_sample_into` reads, as the sample shows them, and the flags.
    fn sample_view(m: &MemInfo) -> (crate::sample::MemorySample, bool, [Option<u64>; 3]) {
        (
            crate::sample::MemorySample::from_meminfo(m),
            m.available_clamped,
            [m.buffers_bytes, m.shmem_bytes, m.slab_reclaimable_bytes],
        )
    }

    #[test]
    fn the_sample_parse_reads_the_same_values_and_leaves_the_rest_none() {
        let texts: [&[u8]; 6] = [
            CAPTURE,
            b"MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 300 kB\n\
Shmem: 100 kB\nSReclaimable: 20 kB\n",
            b"FutureThing(x): 7 kB\nMemAvailable: 5 kB\nHugePages_Free: 3\nMemFree: 4 kB\n\
MemTotal: 10 kB",
            b"  MemTotal:\t10 kB\nMemFree: 4 kB\nSwapCached: 9 kB\nSwapFree: 3 kB\n\
SwapTotal: 8 kB\nCached:x: 5 kB\nDirty: 1\n",
            b"MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 5000 kB\n",
            b"MemTotal: 10 kB\nMemFree: 4 kB\nMemTotal: 12 kB\nMem:",
        ];
        for text in texts {
            let mut full = MemInfo::default();
            full.parse_into(text).unwrap();
            let mut quick = MemInfo {
                active_bytes: Some(1),
                ..MemInfo::default()
            };
            quick.parse_sample_into(text).unwrap();
            assert_eq!(sample_view(&quick), sample_view(&full));
            assert_eq!(quick.active_bytes, None);
        }
        let mut quick = MemInfo::default();
        quick.parse_sample_into(CAPTURE).unwrap();
        assert_eq!(quick.swap_free_bytes, Some(0));
        assert_eq!(quick.dirty_bytes, Some(128 * 1024));
        assert_eq!(quick.hugepage_size_bytes, None, "not read");
    }

    #[test]
    fn the_sample_parse_rejects_damage_in_the_lines_it_reads() {
        let mut m = MemInfo::default();
        for (text, kind) in [
            (
                &b"MemTotal: 10 MB\nMemFree: 4 kB\n"[..],
                ParseErrorKind::Malformed,
            ),
            (
                b"MemTotal: 18446744073709551615 kB\nMemFree: 4 kB\n",
                ParseErrorKind::Overflow,
            ),
            (b"MemFree: 4 kB\n", ParseErrorKind::MissingLine),
            (b"MemTotal: kB\nMemFree: 4 kB\n", ParseErrorKind::NotADigit),
            (
                b"MemTotal: 10 kB\nMemFree 4 kB\n",
                ParseErrorKind::MissingLine,
            ),
            (
                b"MemTotal: 10 kB\nDirty: 4 kB x\nMemFree: 4 kB\n",
                ParseErrorKind::Malformed,
            ),
        ] {
            assert_eq!(
                m.parse_sample_into(text).unwrap_err().kind,
                kind,
                "{text:?}"
            );
        }
    }
}
