//! The std side of telemetry: a [`Sampler`] that keeps the /proc files open and re-reads each
//! with one `pread(fd, buf, 0)` into buffers it reuses, and [`SamplerThread`], which samples on
//! an interval, keeps a [`SampleRing`] and publishes over a crossbeam channel.
//!
//! In steady state a sample costs the read syscalls plus an allocation-free parse: buffers grow
//! only when a file outgrows them (a machine with hundreds of CPUs), and then stay grown.
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::parse::ParseError;
use crate::procfs::{LoadAvg, MemInfo, ProcStat, Psi};
use crate::sample::{Sample, SampleRing};

/// First buffer size for /proc/stat; a 2-CPU machine needs ~3 KiB, a 256-CPU one ~40 KiB.
const STAT_BUF_BYTES_INITIAL: usize = 16 * 1024;
const MEMINFO_BUF_BYTES_INITIAL: usize = 8 * 1024;
const SMALL_BUF_BYTES_INITIAL: usize = 512;
/// A /proc file larger than this is treated as an error rather than grown into.
const PROC_FILE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// How many samples [`SamplerThread`] keeps.
pub const SAMPLE_HISTORY_LEN: usize = 120;

/// Which file failed, and how.
#[derive(Debug)]
#[non_exhaustive]
pub enum SamplerError {
    /// A file could not be opened or read.
    Io {
        /// The file, under the proc root.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file was read but its text is not what the kernel writes.
    Parse {
        /// The file, under the proc root.
        path: PathBuf,
        /// What was wrong, and on which line.
        source: ParseError,
    },
}

impl std::fmt::Display for SamplerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SamplerError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            SamplerError::Parse { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for SamplerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SamplerError::Io { source, .. } => Some(source),
            SamplerError::Parse { source, .. } => Some(source),
        }
    }
}

/// One kept-open /proc file and the buffer it is read into.
#[derive(Debug)]
pub struct ProcFile {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// Times the buffer had to grow (each growth allocates once).
    pub grows: u32,
    /// Times the file had to be reopened (ESPIPE/EINVAL from pread).
    pub reopens: u32,
}

impl ProcFile {
    /// Opens `path` for reading, with a buffer of `initial_bytes` (at least 64; it grows as the
    /// file needs). [`SamplerError::Io`] when the file cannot be opened.
    pub fn open(path: PathBuf, initial_bytes: usize) -> Result<Self, SamplerError> {
        let file = File::open(&path).map_err(|source| SamplerError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            file,
            buf: vec![0; initial_bytes.max(64)],
            grows: 0,
            reopens: 0,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the whole file from offset 0. A read that fills the buffer may have been cut
    /// short, so the buffer doubles and the read starts over: the text parsed is always one
    /// complete generation of the file, never two halves of different ones.
    pub fn read(&mut self) -> Result<&[u8], SamplerError> {
        let mut reopened = false;
        loop {
            match self.file.read_at(&mut self.buf, 0) {
                Ok(n) if n < self.buf.len() => return Ok(&self.buf[..n]),
                Ok(_) => {
                    let bigger = self.buf.len().saturating_mul(2);
                    if bigger > PROC_FILE_BYTES_MAX {
                        return Err(self.io_error(io::Error::other(format!(
                            "file larger than {PROC_FILE_BYTES_MAX} bytes"
                        ))));
                    }
                    self.buf.resize(bigger, 0);
                    self.grows += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if !reopened
                        && matches!(e.raw_os_error(), Some(libc::ESPIPE | libc::EINVAL)) =>
                {
                    // Some files (or filesystems under --proc-root) refuse positioned reads
                    // on a descriptor that was read before; a fresh open resets them.
                    self.file = File::open(&self.path).map_err(|e| self.io_error(e))?;
                    self.reopens += 1;
                    reopened = true;
                }
                Err(e) => return Err(self.io_error(e)),
            }
        }
    }

    fn io_error(&self, source: io::Error) -> SamplerError {
        SamplerError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// CLOCK_BOOTTIME in ns (counts suspend, so intervals across a suspend are honest), falling
/// back to CLOCK_MONOTONIC.
pub fn boottime_ns() -> u64 {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
        (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    };
    read(libc::CLOCK_BOOTTIME)
        .or_else(|| read(libc::CLOCK_MONOTONIC))
        .unwrap_or(0)
}

/// The reading a span's end takes its CPU deltas against (see [`Sampler::sample_span_start`]).
/// Holds a whole /proc/stat table: allocate one per concurrent span and reuse it.
pub struct SpanStart {
    stat: Box<ProcStat>,
    /// CLOCK_BOOTTIME of the reading; `None` until a start was taken.
    timestamp_ns: Option<u64>,
}

impl Default for SpanStart {
    /// Allocates the table in place ([`ProcStat::new_boxed`]): jobs start on threads with
    /// small stacks, which an unoptimised `Box::default()` of a ~100 KiB table would pass
    /// through, and no page of it is written before a reading fills it.
    fn default() -> Self {
        Self {
            stat: ProcStat::new_boxed(),
            timestamp_ns: None,
        }
    }
}

impl SpanStart {
    /// When the start reading was taken (CLOCK_BOOTTIME ns), if it was.
    pub fn timestamp_ns(&self) -> Option<u64> {
        self.timestamp_ns
    }
}

/// What a reading's CPU deltas are taken against.
enum Since<'a> {
    /// The sampler's previous periodic reading.
    Previous,
    /// Boot (all counters zero).
    Boot,
    /// The start of a span.
    Span(&'a SpanStart),
}

/// Reads /proc/stat, /proc/meminfo, /proc/loadavg and /proc/pressure/{cpu,memory,io} through
/// kept-open descriptors and turns each pair of readings into a [`Sample`].
pub struct Sampler {
    stat: ProcFile,
    meminfo: ProcFile,
    loadavg: ProcFile,
    /// cpu, memory, io; `None` where the kernel has no PSI (or it is disabled).
    psi: [Option<ProcFile>; 3],
    prev: Box<ProcStat>,
    cur: Box<ProcStat>,
    have_prev: bool,
    meminfo_parsed: MemInfo,
    prev_timestamp_ns: u64,
    seq: u64,
}

impl Sampler {
    /// Opens the files beneath `proc_root` (normally `/proc`). stat, meminfo and loadavg are
    /// required; pressure files are optional.
    pub fn open(proc_root: &Path) -> Result<Self, SamplerError> {
        let psi_file = |name: &str| {
            let mut f = ProcFile::open(
                proc_root.join("pressure").join(name),
                SMALL_BUF_BYTES_INITIAL,
            )
            .ok()?;
            // With psi=0 on the kernel command line the files exist but reads fail.
            f.read().ok()?;
            Some(f)
        };
        Ok(Self {
            stat: ProcFile::open(proc_root.join("stat"), STAT_BUF_BYTES_INITIAL)?,
            meminfo: ProcFile::open(proc_root.join("meminfo"), MEMINFO_BUF_BYTES_INITIAL)?,
            loadavg: ProcFile::open(proc_root.join("loadavg"), SMALL_BUF_BYTES_INITIAL)?,
            psi: [psi_file("cpu"), psi_file("memory"), psi_file("io")],
            prev: ProcStat::new_boxed(),
            cur: ProcStat::new_boxed(),
            have_prev: false,
            meminfo_parsed: MemInfo::default(),
            prev_timestamp_ns: 0,
            seq: 0,
        })
    }

    /// Whether each PSI resource (cpu, memory, io) is readable on this host.
    pub fn pressure_available(&self) -> [bool; 3] {
        [
            self.psi[0].is_some(),
            self.psi[1].is_some(),
            self.psi[2].is_some(),
        ]
    }

    /// Takes a sample into `out`, reusing its storage: no allocation in steady state. The first
    /// sample has no CPU delta (flag [`crate::sample::flags::FIRST`]).
    pub fn sample_into(&mut self, out: &mut Sample) -> Result<(), SamplerError> {
        let timestamp_ns = self.read_into(out, Since::Previous)?;
        // Only a fully successful sample advances the baseline.
        core::mem::swap(&mut self.prev, &mut self.cur);
        self.have_prev = true;
        self.prev_timestamp_ns = timestamp_ns;
        Ok(())
    }

    /// Takes a sample at the start of a span of time (a job) into `out` and keeps its reading
    /// in `start`, for [`Sampler::sample_span_end`]. Memory, load and pressure are as they
    /// are now; the CPU shares are since boot (flag [`crate::sample::flags::CPU_SINCE_BOOT`]),
    /// as there is no earlier reading of the span to take a delta against. The periodic
    /// baseline of [`Sampler::sample_into`] is left alone. No allocation: `start`'s storage is
    /// exchanged with the sampler's.
    pub fn sample_span_start(
        &mut self,
        start: &mut SpanStart,
        out: &mut Sample,
    ) -> Result<(), SamplerError> {
        start.timestamp_ns = None;
        let timestamp_ns = self.read_into(out, Since::Boot)?;
        core::mem::swap(&mut start.stat, &mut self.cur);
        start.timestamp_ns = Some(timestamp_ns);
        Ok(())
    }

    /// Takes a sample at the end of a span into `out`, its CPU deltas (and `interval_ns`)
    /// against the reading `start` holds: what the machine did during the span. Without a
    /// start reading the CPU part is empty (flag [`crate::sample::flags::FIRST`]). The periodic
    /// baseline is left alone.
    pub fn sample_span_end(
        &mut self,
        start: &SpanStart,
        out: &mut Sample,
    ) -> Result<(), SamplerError> {
        self.read_into(out, Since::Span(start)).map(drop)
    }

    /// Reads every file into `out` with the CPU deltas against `since`, parsing /proc/stat
    /// into `self.cur`; on success takes the next sequence number and returns the timestamp.
    fn read_into(&mut self, out: &mut Sample, since: Since<'_>) -> Result<u64, SamplerError> {
        let timestamp_ns = boottime_ns();
        let text = self.stat.read()?;
        if let Err(source) = self.cur.parse_into(text) {
            return Err(SamplerError::Parse {
                path: self.stat.path.clone(),
                source,
            });
        }
        out.flags = 0;
        out.timestamp_ns = timestamp_ns;
        match since {
            Since::Previous => {
                let interval_ns = if self.have_prev {
                    timestamp_ns.saturating_sub(self.prev_timestamp_ns)
                } else {
                    0
                };
                let prev = self.have_prev.then_some(&*self.prev);
                out.set_cpu(prev, &self.cur, interval_ns);
            }
            Since::Boot => out.set_cpu_since_boot(&self.cur, timestamp_ns),
            Since::Span(start) => match start.timestamp_ns {
                Some(start_ns) => out.set_cpu(
                    Some(&*start.stat),
                    &self.cur,
                    timestamp_ns.saturating_sub(start_ns),
                ),
                None => out.set_cpu(None, &self.cur, 0),
            },
        }

        let text = self.meminfo.read()?;
        self.meminfo_parsed
            .parse_sample_into(text)
            .map_err(|source| SamplerError::Parse {
                path: self.meminfo.path.clone(),
                source,
            })?;
        out.set_memory(&self.meminfo_parsed);

        let text = self.loadavg.read()?;
        out.load = Some(LoadAvg::parse(text).map_err(|source| SamplerError::Parse {
            path: self.loadavg.path.clone(),
            source,
        })?);

        let mut pressure = [None; 3];
        for (slot, file) in pressure.iter_mut().zip(self.psi.iter_mut()) {
            if let Some(file) = file {
                let text = file.read()?;
                *slot = Some(Psi::parse(text).map_err(|source| SamplerError::Parse {
                    path: file.path.clone(),
                    source,
                })?);
            }
        }
        out.pressure.cpu = pressure[0];
        out.pressure.memory = pressure[1];
        out.pressure.io = pressure[2];

        // Only a fully successful sample takes a sequence number.
        self.seq += 1;
        out.seq = self.seq;
        Ok(timestamp_ns)
    }

    /// Takes a sample by value.
    pub fn sample(&mut self) -> Result<Sample, SamplerError> {
        let mut s = Sample::default();
        self.sample_into(&mut s)?;
        Ok(s)
    }

    /// Buffer growths and reopens so far, summed over files (for tests and diagnostics).
    pub fn read_stats(&self) -> (u32, u32) {
        let files = [&self.stat, &self.meminfo, &self.loadavg]
            .into_iter()
            .chain(self.psi.iter().flatten());
        files.fold((0, 0), |(g, r), f| (g + f.grows, r + f.reopens))
    }
}

/// The shared state of a [`SamplerThread`].
pub struct Telemetry {
    ring: Mutex<Box<SampleRing<SAMPLE_HISTORY_LEN>>>,
    last_error: Mutex<Option<String>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            ring: Mutex::new(SampleRing::new_boxed()),
            last_error: Mutex::new(None),
        }
    }
}

impl Telemetry {
    fn ring(&self) -> MutexGuard<'_, Box<SampleRing<SAMPLE_HISTORY_LEN>>> {
        // A poisoned ring still holds valid samples: recover the guard.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the newest sample; `None` before the first sample succeeded.
    pub fn latest(&self) -> Option<Sample> {
        self.ring().latest().cloned()
    }

    /// Runs `f` on the latest sample under the lock, without copying it out (for callers that
    /// convert it into their own representation and must not allocate).
    pub fn with_latest<R>(&self, f: impl FnOnce(Option<&Sample>) -> R) -> R {
        f(self.ring().latest())
    }

    /// Up to `n` most recent samples, oldest first.
    pub fn history(&self, n: usize) -> Vec<Sample> {
        self.ring().last(n).cloned().collect()
    }

    /// Samples with a sequence number above `after`, oldest first.
    pub fn since(&self, after: u64) -> Vec<Sample> {
        self.ring().since(after).cloned().collect()
    }

    fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    /// The last sampling error, if the most recent attempt failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A background thread sampling every `interval` into a shared ring, optionally publishing
/// each sample on a bounded channel (a full channel drops and counts, it never blocks the
/// sampler). Dropping it stops the thread. The first sample is taken before `spawn` returns,
/// so the ring is never empty when sampling works. Jobs take their own samples at their start
/// and end through the same [`Sampler`] ([`SamplerThread::span_start`]), sharing its sequence
/// numbers; those samples are not pushed into the ring, whose samples stay one interval apart,
/// so the ring's sequence numbers may skip theirs. (Without a thread
/// ([`SamplerThread::without_thread`]) the ring holds only the job starts published with
/// [`SamplerThread::span_start_published`].)
pub struct SamplerThread {
    telemetry: Arc<Telemetry>,
    sampler: Arc<Mutex<Sampler>>,
    stop: Option<Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

/// Takes one periodic sample into `sample` and publishes it; `false` when the channel's
/// receiver is gone.
fn tick(
    sampler: &Mutex<Sampler>,
    shared: &Telemetry,
    sample: &mut Sample,
    publish: Option<&Sender<Sample>>,
) -> bool {
    let taken = sampler
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .sample_into(sample);
    match taken {
        Ok(()) => {
            shared.ring().push(sample.clone());
            shared.set_error(None);
            if let Some(tx) = publish {
                if let Err(TrySendError::Disconnected(_)) = tx.try_send(sample.clone()) {
                    return false;
                }
            }
        }
        Err(e) => shared.set_error(Some(e.to_string())),
    }
    true
}

impl SamplerThread {
    /// Takes a first sample now, then starts the `vigil-sampler` thread that takes one every
    /// `interval` into the history (the last [`SAMPLE_HISTORY_LEN`]) and sends each to `publish`,
    /// when given (a full channel drops the sample; the thread stops once the receiver is gone). A
    /// failed sample is kept as [`Telemetry::last_error`]. Errors only when the thread cannot be
    /// started.
    pub fn spawn(
        sampler: Sampler,
        interval: Duration,
        publish: Option<Sender<Sample>>,
    ) -> io::Result<Self> {
        let telemetry = Arc::new(Telemetry::default());
        let sampler = Arc::new(Mutex::new(sampler));
        let mut sample = Sample::default();
        let running = tick(&sampler, &telemetry, &mut sample, publish.as_ref());
        let shared = Arc::clone(&telemetry);
        let thread_sampler = Arc::clone(&sampler);
        let (stop_tx, stop_rx): (Sender<()>, Receiver<()>) = crossbeam_channel::bounded(1);
        let handle = std::thread::Builder::new()
            .name("vigil-sampler".into())
            .spawn(move || {
                if !running {
                    return;
                }
                loop {
                    match stop_rx.recv_timeout(interval) {
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    if !tick(&thread_sampler, &shared, &mut sample, publish.as_ref()) {
                        return;
                    }
                }
            })?;
        Ok(Self {
            telemetry,
            sampler,
            stop: Some(stop_tx),
            handle: Some(handle),
        })
    }

    /// Starts no thread and takes no sample yet: the samples are only the jobs' own
    /// ([`SamplerThread::span_start_published`], [`SamplerThread::span_start`],
    /// [`SamplerThread::span_end`]), and the history holds those published. For a process that
    /// runs one job and exits (a one-shot `vigil run`), which reads no history: it saves the
    /// thread's start and the join at exit, and its job's start sample is also the one the
    /// admission guard judges (one sample, not two).
    pub fn without_thread(sampler: Sampler) -> Self {
        let telemetry = Arc::new(Telemetry::default());
        let sampler = Arc::new(Mutex::new(sampler));
        Self {
            telemetry,
            sampler,
            stop: None,
            handle: None,
        }
    }

    /// The latest sample, the history and the last error, shared with the sampling thread.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// A fresh sample at a job's start, its reading kept in `start` (see
    /// [`Sampler::sample_span_start`]); `None` if reading failed (the error is kept as
    /// [`Telemetry::last_error`]).
    pub fn span_start(&self, start: &mut SpanStart) -> Option<Sample> {
        self.span(|sampler, out| sampler.sample_span_start(start, out))
    }

    /// [`SamplerThread::span_start`] whose sample also becomes the latest in the history, as a
    /// periodic one would (what the admission guard and a refused job's record read).
    pub fn span_start_published(&self, start: &mut SpanStart) -> Option<Sample> {
        let sample = self.span_start(start)?;
        self.telemetry.ring().push(sample.clone());
        self.telemetry.set_error(None);
        Some(sample)
    }

    /// A fresh sample at a job's end, its CPU deltas against `start` (see
    /// [`Sampler::sample_span_end`]); `None` if reading failed.
    pub fn span_end(&self, start: &SpanStart) -> Option<Sample> {
        self.span(|sampler, out| sampler.sample_span_end(start, out))
    }

    fn span(
        &self,
        take: impl FnOnce(&mut Sampler, &mut Sample) -> Result<(), SamplerError>,
    ) -> Option<Sample> {
        let mut out = Sample::default();
        let taken = take(
            &mut self.sampler.lock().unwrap_or_else(|p| p.into_inner()),
            &mut out,
        );
        match taken {
            Ok(()) => Some(out),
            Err(e) => {
                self.telemetry.set_error(Some(e.to_string()));
                None
            }
        }
    }
}

impl Drop for SamplerThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests;
