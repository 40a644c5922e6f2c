//! /proc/stat: the aggregate `cpu` line, per-CPU `cpuN` lines keyed by CPU id, `ctxt`,
//! `btime`, `processes`, `procs_running` and `procs_blocked`.
//!
//! The `intr` and `softirq` lines, which run to hundreds of KiB on large machines, are skipped
//! with one SIMD newline search and never tokenised. Per-CPU lines go into a fixed-capacity
//! table; CPUs beyond its capacity are counted in [`ProcStat::cpus_dropped`], never silently
//! lost.
use core::mem::MaybeUninit;
use core::ops::Deref;

use crate::parse::{parse_u32, Cursor, ParseError, ParseErrorKind};

/// Default per-CPU capacity of [`ProcStat`]: enough for the largest common servers.
pub const PROC_STAT_CPUS_MAX: usize = 1024;

/// The columns of a `cpu` line, in USER_HZ ticks. Kernels before 2.6 print 4 columns, 2.6.0
/// adds iowait/irq/softirq (7), 2.6.11 steal (8), 2.6.24 guest (9), 2.6.33 guest_nice (10);
/// absent columns are zero and [`CpuTimes::columns`] says how many were present. Note that the
/// kernel already counts `guest` inside `user` and `guest_nice` inside `nice`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Time in user mode (`guest` included), in USER_HZ ticks.
    pub user: u64,
    /// Time in user mode at low priority (nice > 0; `guest_nice` included), in ticks.
    pub nice: u64,
    /// Time in kernel mode, in ticks.
    pub system: u64,
    /// Time idle, in ticks.
    pub idle: u64,
    /// Time idle while I/O was outstanding, in ticks (unreliable: an idle CPU has no task waiting).
    pub iowait: u64,
    /// Time servicing hardware interrupts, in ticks.
    pub irq: u64,
    /// Time servicing softirqs, in ticks.
    pub softirq: u64,
    /// Time stolen by the hypervisor for other guests, in ticks.
    pub steal: u64,
    /// Time running a virtual CPU of a guest, in ticks (already counted in `user`).
    pub guest: u64,
    /// Time running a niced guest, in ticks (already counted in `nice`).
    pub guest_nice: u64,
    /// How many numeric columns the line had (4..=10; extra future columns are ignored).
    pub columns: u8,
}

/// The minimum number of columns for a `cpu` line to mean anything.
pub const CPU_COLUMNS_MIN: usize = 4;

impl CpuTimes {
    /// Reads up to ten numeric columns after the `cpu`/`cpuN` label; further columns of
    /// future kernels are left for the caller to skip with the rest of the line.
    #[inline]
    fn parse_columns(c: &mut Cursor<'_>) -> Result<Self, ParseError> {
        let mut values = [0u64; 10];
        let n = c.numbers(&mut values).map_err(|k| c.error(k))?;
        if n < CPU_COLUMNS_MIN {
            return Err(c.error(ParseErrorKind::MissingField));
        }
        let [user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice] = values;
        Ok(Self {
            user,
            nice,
            system,
            idle,
            iowait,
            irq,
            softirq,
            steal,
            guest,
            guest_nice,
            columns: n as u8,
        })
    }
}

/// One `cpuN` line: the CPU's id (gaps mean offline CPUs) and its times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuLine {
    /// The CPU's number (`cpu3` -> 3).
    pub id: u32,
    /// Its time columns.
    pub times: CpuTimes,
}

/// The per-CPU lines of a [`ProcStat`]: a list of fixed capacity, read as a slice. Its storage
/// stays uninitialised until lines are pushed, so a table for 1024 CPUs is made in place on the
/// heap ([`ProcStat::new_boxed`]) without writing, or faulting in, pages a small machine never
/// uses.
#[repr(C)]
pub struct CpuLines<const N: usize> {
    len: usize,
    lines: [MaybeUninit<CpuLine>; N],
}

impl<const N: usize> CpuLines<N> {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            len: 0,
            lines: [const { MaybeUninit::uninit() }; N],
        }
    }

    /// Removes every line.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `line`, or gives it back when the list is full.
    pub fn push(&mut self, line: CpuLine) -> Result<(), CpuLine> {
        match self.lines.get_mut(self.len) {
            Some(slot) => {
                slot.write(line);
                self.len += 1;
                Ok(())
            }
            None => Err(line),
        }
    }

    /// The most lines the list holds.
    pub const fn capacity(&self) -> usize {
        N
    }
}

impl<const N: usize> Default for CpuLines<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Deref for CpuLines<N> {
    type Target = [CpuLine];

    fn deref(&self) -> &[CpuLine] {
        // SAFETY: `push` initialised the first `len` entries (`len` never exceeds `N`), and
        // `MaybeUninit<CpuLine>` has `CpuLine`'s layout.
        unsafe { core::slice::from_raw_parts(self.lines.as_ptr().cast::<CpuLine>(), self.len) }
    }
}

impl<const N: usize> Clone for CpuLines<N> {
    fn clone(&self) -> Self {
        let mut copy = Self::new();
        copy.lines[..self.len].copy_from_slice(&self.lines[..self.len]);
        copy.len = self.len;
        copy
    }
}

impl<const N: usize> core::fmt::Debug for CpuLines<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A parsed /proc/stat. `N` is the per-CPU capacity.
///
/// `repr(C)` with the per-CPU lines last: everything before their storage is laid out as in a
/// `ProcStat<0>`, which [`ProcStat::new_boxed`] relies on.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct ProcStat<const N: usize = PROC_STAT_CPUS_MAX> {
    /// The aggregate `cpu` line (the kernel's own sum; it need not equal the per-CPU sum).
    pub total: CpuTimes,
    /// Per-CPU lines that did not fit in `N`.
    pub cpus_dropped: u32,
    /// Context switches since boot (`ctxt`); `None` when the file lacks the line.
    pub ctxt: Option<u64>,
    /// Boot time, in seconds since the Unix epoch (`btime`); `None` when the file lacks the line.
    pub btime: Option<u64>,
    /// Processes and threads created since boot (`processes`); `None` when the file lacks the line.
    pub processes: Option<u64>,
    /// Tasks runnable right now (`procs_running`); `None` when the file lacks the line.
    pub procs_running: Option<u64>,
    /// Tasks blocked on I/O right now (`procs_blocked`); `None` when the file lacks the line.
    pub procs_blocked: Option<u64>,
    /// Per-CPU lines in file order (ascending id on every kernel seen), keyed by `id`. Last:
    /// see above.
    pub cpus: CpuLines<N>,
}

/// Whether the per-CPU storage ends a `ProcStat<N>` (so that every other field lies before it,
/// where it lies in a `ProcStat<0>`).
const fn storage_is_last<const N: usize>() -> bool {
    core::mem::offset_of!(ProcStat<N>, cpus)
        + core::mem::offset_of!(CpuLines<N>, lines)
        + N * core::mem::size_of::<CpuLine>()
        == core::mem::size_of::<ProcStat<N>>()
        && core::mem::offset_of!(ProcStat<N>, cpus) == core::mem::offset_of!(ProcStat<0>, cpus)
        && core::mem::align_of::<ProcStat<N>>() == core::mem::align_of::<ProcStat<0>>()
}
const _: () = assert!(storage_is_last::<PROC_STAT_CPUS_MAX>());

impl<const N: usize> Default for ProcStat<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ProcStat<N> {
    /// An empty table (usable in a `static`, so a large one can be copied to the heap without
    /// passing through a small stack).
    pub const fn new() -> Self {
        Self {
            total: CpuTimes {
                user: 0,
                nice: 0,
                system: 0,
                idle: 0,
                iowait: 0,
                irq: 0,
                softirq: 0,
                steal: 0,
                guest: 0,
                guest_nice: 0,
                columns: 0,
            },
            cpus: CpuLines::new(),
            cpus_dropped: 0,
            ctxt: None,
            btime: None,
            processes: None,
            procs_running: None,
            procs_blocked: None,
        }
    }

    /// An empty table on the heap, made in place: nothing passes through the stack, and of the
    /// per-CPU storage only what a parse fills is ever written.
    #[cfg(feature = "std")]
    pub fn new_boxed() -> std::boxed::Box<Self> {
        const { assert!(storage_is_last::<N>()) };
        let mut table = std::boxed::Box::<Self>::new_uninit();
        // SAFETY: both types are `repr(C)` with the per-CPU storage last and the same alignment
        // (asserted above), so a `ProcStat<0>` has the layout of every field of a `ProcStat<N>`
        // but that storage, which is `MaybeUninit` and needs no value. Writing `new()`'s value
        // there sets them all, whatever fields the type gains.
        unsafe {
            table
                .as_mut_ptr()
                .cast::<ProcStat<0>>()
                .write(ProcStat::<0>::new());
            table.assume_init()
        }
    }

    /// Parses `text` into `self`, replacing what was there; no allocation. On error `self` holds
    /// a partial parse and must not be used.
    pub fn parse_into(&mut self, text: &[u8]) -> Result<(), ParseError> {
        self.cpus.clear();
        self.cpus_dropped = 0;
        self.ctxt = None;
        self.btime = None;
        self.processes = None;
        self.procs_running = None;
        self.procs_blocked = None;
        let mut saw_total = false;
        let mut c = Cursor::new(text);
        while !c.is_empty() {
            // Decide on the label alone, so a huge `intr` line is crossed with one memchr and
            // never split into fields.
            let label = c.token();
            if let Some(id) = label.strip_prefix(b"cpu") {
                let times = CpuTimes::parse_columns(&mut c)?;
                if id.is_empty() {
                    self.total = times;
                    saw_total = true;
                } else {
                    let id = parse_u32(id).map_err(|k| c.error(k))?;
                    if self.cpus.push(CpuLine { id, times }).is_err() {
                        self.cpus_dropped = self.cpus_dropped.saturating_add(1);
                    }
                }
                c.next_line();
                continue;
            }
            let slot = match label {
                b"ctxt" => &mut self.ctxt,
                b"btime" => &mut self.btime,
                b"processes" => &mut self.processes,
                b"procs_running" => &mut self.procs_running,
                b"procs_blocked" => &mut self.procs_blocked,
                // intr, softirq, page, swap, disk_io and lines of future kernels.
                _ => {
                    c.next_line();
                    continue;
                }
            };
            let value = c.number().map_err(|k| c.error(k))?;
            *slot = Some(value.ok_or(c.error(ParseErrorKind::MissingField))?);
            c.next_line();
        }
        if !saw_total {
            return Err(ParseError::new(ParseErrorKind::MissingLine, 0));
        }
        Ok(())
    }

    /// The per-CPU line for `id`, if present.
    pub fn cpu(&self, id: u32) -> Option<&CpuLine> {
        // Lines come in ascending id order; fall back to a scan if a kernel ever differs.
        match self.cpus.binary_search_by_key(&id, |c| c.id) {
            Ok(i) => self.cpus.get(i),
            Err(_) => self.cpus.iter().find(|c| c.id == id),
        }
    }
}

/// A synthetic /proc/stat with `cpus` per-CPU lines (ids 0..cpus, user = id) and a 4096-entry
/// `intr` line: the input of the large-machine tests and the parse benchmark.
#[cfg(feature = "std")]
pub fn synthetic(cpus: u32) -> std::vec::Vec<u8> {
    use std::io::Write;
    let mut text = std::vec::Vec::new();
    // Writing into a Vec cannot fail.
    let _ = writeln!(
        text,
        "cpu  {0} 0 {0} {0} 0 0 0 0 0 0",
        u64::from(cpus) * 1000
    );
    for id in 0..cpus {
        let _ = writeln!(
            text,
            "cpu{id} {id} 3 {} 9876543 12 0 7 0 0 0",
            u64::from(id) * 2
        );
    }
    text.extend_from_slice(b"intr 1");
    for _ in 0..4096 {
        text.extend_from_slice(b" 0");
    }
    text.extend_from_slice(b"\nctxt 1\nbtime 2\nprocesses 3\nprocs_running 4\nprocs_blocked 5\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURE_2CPU: &[u8] = b"cpu  991 0 941 8214 171 0 15 1709 0 0\n\
cpu0 456 0 429 4189 19 0 5 865 0 0\n\
cpu1 534 0 512 4024 151 0 9 843 0 0\n\
intr 62745 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 1 15 0 0\n\
ctxt 143544\n\
btime 1763749500\n\
processes 2104\n\
procs_running 2\n\
procs_blocked 0\n\
softirq 30227 0 7263 2 214 0 0 1 9580 0 13167\n";

    #[test]
    fn parses_a_real_two_cpu_capture() {
        let mut s = ProcStat::<8>::default();
        s.parse_into(CAPTURE_2CPU).unwrap();
        assert_eq!(s.total.user, 991);
        assert_eq!(s.total.steal, 1709);
        assert_eq!(s.total.columns, 10);
        assert_eq!(s.cpus.len(), 2);
        assert_eq!(s.cpu(1).unwrap().times.iowait, 151);
        assert_eq!(s.ctxt, Some(143544));
        assert_eq!(s.btime, Some(1763749500));
        assert_eq!(s.processes, Some(2104));
        assert_eq!(s.procs_running, Some(2));
        assert_eq!(s.procs_blocked, Some(0));
        assert_eq!(s.cpus_dropped, 0);
    }

    #[test]
    fn offline_cpus_leave_id_gaps_and_lookup_is_by_id() {
        let text = b"cpu 10 0 10 80\ncpu0 5 0 5 40\ncpu2 5 0 5 40\ncpu7 1 1 1 1\n";
        let mut s = ProcStat::<8>::default();
        s.parse_into(text).unwrap();
        let ids: heapless::Vec<u32, 8> = s.cpus.iter().map(|c| c.id).collect();
        assert_eq!(ids.as_slice(), &[0, 2, 7]);
        assert!(s.cpu(1).is_none());
        assert_eq!(s.cpu(7).unwrap().times.nice, 1);
    }

    #[test]
    fn old_kernels_with_4_7_8_9_columns_fill_the_rest_with_zero() {
        for (line, cols) in [
            (&b"cpu 1 2 3 4\n"[..], 4u8),
            (b"cpu 1 2 3 4 5 6 7\n", 7),
            (b"cpu 1 2 3 4 5 6 7 8\n", 8),
            (b"cpu 1 2 3 4 5 6 7 8 9\n", 9),
            (b"cpu 1 2 3 4 5 6 7 8 9 10 11 12\n", 10),
        ] {
            let mut s = ProcStat::<1>::default();
            s.parse_into(line).unwrap();
            assert_eq!(s.total.columns, cols);
            assert_eq!(s.total.idle, 4);
            let expect_guest = if cols >= 9 { 9 } else { 0 };
            assert_eq!(s.total.guest, expect_guest);
        }
        let mut s = ProcStat::<1>::default();
        assert_eq!(
            s.parse_into(b"cpu 1 2 3\n").unwrap_err().kind,
            ParseErrorKind::MissingField
        );
    }

    #[test]
    fn intr_line_over_64_kib_is_skipped() {
        let mut text = std::vec::Vec::new();
        text.extend_from_slice(b"cpu 1 2 3 4 5 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 123456");
        while text.len() < 200 * 1024 {
            text.extend_from_slice(b" 0 17 99999");
        }
        text.extend_from_slice(b"\nctxt 42\nprocs_running 3\n");
        let mut s = ProcStat::<4>::default();
        s.parse_into(&text).unwrap();
        assert_eq!(s.ctxt, Some(42));
        assert_eq!(s.procs_running, Some(3));
    }

    #[test]
    fn a_1024_cpu_stat_fills_the_table_and_one_more_cpu_is_counted_not_lost_silently() {
        let text = synthetic(1025);
        let mut s = std::boxed::Box::new(ProcStat::<1024>::default());
        s.parse_into(&text).unwrap();
        assert_eq!(s.cpus.len(), 1024);
        assert_eq!(s.cpus_dropped, 1);
        assert_eq!(s.cpu(1023).unwrap().times.user, 1023);
    }

    #[test]
    fn truncated_mid_line_is_an_error_and_missing_trailing_newline_is_fine() {
        let mut s = ProcStat::<4>::default();
        assert!(s.parse_into(b"cpu 1 2 3 4\ncpu0 1 2").is_err());
        s.parse_into(b"cpu 1 2 3 4\ncpu0 1 2 3 4").unwrap();
        assert_eq!(s.cpus.len(), 1);
        assert!(s.parse_into(b"cpu 1 2 3 4\nctxt ").is_err());
        assert!(s.parse_into(b"").is_err());
        assert!(
            s.parse_into(b"cpu0 1 2 3 4\n").is_err(),
            "no aggregate line"
        );
    }

    #[test]
    fn numbers_near_u64_max_parse_and_beyond_or_non_digits_are_errors() {
        let mut s = ProcStat::<4>::default();
        s.parse_into(b"cpu 18446744073709551615 0 0 0\n").unwrap();
        assert_eq!(s.total.user, u64::MAX);
        assert_eq!(
            s.parse_into(b"cpu 18446744073709551616 0 0 0\n")
                .unwrap_err(),
            ParseError::new(ParseErrorKind::Overflow, 1)
        );
        assert_eq!(
            s.parse_into(b"cpu 1 2 3 4\ncpu0 1 x 3 4\n").unwrap_err(),
            ParseError::new(ParseErrorKind::NotADigit, 2)
        );
        assert!(s.parse_into(b"cpu 1 2 3 4\ncpuX 1 2 3 4\n").is_err());
        assert!(s.parse_into(b"cpu 1 2 3 4\nctxt -5\n").is_err());
    }

    #[test]
    fn cpu_lines_fill_to_capacity_then_give_lines_back_and_clone_what_they_hold() {
        let line = |id| CpuLine {
            id,
            times: CpuTimes::default(),
        };
        let mut lines = CpuLines::<2>::new();
        assert!(lines.is_empty());
        assert_eq!(lines.capacity(), 2);
        assert_eq!(lines.push(line(0)), Ok(()));
        assert_eq!(lines.push(line(1)), Ok(()));
        assert_eq!(lines.push(line(2)), Err(line(2)));
        assert_eq!(
            lines.iter().map(|l| l.id).collect::<std::vec::Vec<_>>(),
            [0, 1]
        );
        let copy = lines.clone();
        lines.clear();
        assert!(lines.is_empty());
        assert_eq!(
            copy.iter().map(|l| l.id).collect::<std::vec::Vec<_>>(),
            [0, 1]
        );
        assert_eq!(std::format!("{copy:?}").matches("CpuLine").count(), 2);
        // A full table counts what it could not hold.
        let mut s = ProcStat::<1>::default();
        s.parse_into(b"cpu 1 1 1 1\ncpu0 1 1 1 1\ncpu1 1 1 1 1\n")
            .unwrap();
        assert_eq!((s.cpus.len(), s.cpus_dropped), (1, 1));
    }

    #[test]
    fn a_boxed_table_is_empty_and_parses_as_a_default_one_does() {
        let boxed = ProcStat::<8>::new_boxed();
        assert_eq!(boxed.total, CpuTimes::default());
        assert!(boxed.cpus.is_empty());
        assert_eq!(boxed.cpus_dropped, 0);
        assert_eq!(
            (boxed.ctxt, boxed.btime, boxed.processes),
            (None, None, None)
        );
        assert_eq!((boxed.procs_running, boxed.procs_blocked), (None, None));
        let mut boxed = boxed;
        let mut plain = ProcStat::<8>::default();
        boxed.parse_into(CAPTURE_2CPU).unwrap();
        plain.parse_into(CAPTURE_2CPU).unwrap();
        assert_eq!(std::format!("{:?}", *boxed), std::format!("{plain:?}"));
    }
}
