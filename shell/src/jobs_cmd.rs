//! `vigil jobs` and `vigil job ID`: what the log says about jobs. They read the log without
//! taking the writer's lock, so they work while `vigil serve` owns it; a job whose end is not
//! logged shows as `running` (it becomes `interrupted` when the next runtime opens the log).
//!
//! A damaged log is never shown as a shorter one: both commands fail (exit 1) naming the
//! damaged segment, offset and LSN; on a damaged log a job is "unreadable", never "no such
//! job". With `--partial`, `vigil jobs` lists what is readable before the damage, prints a
//! warning saying the list is incomplete, and still exits 1.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use vigil_core::model::JobState;
use vigil_core::runtime::{job_detail_from, JobIndex, JobSummary, RuntimeOptions};
use vigil_core::view::job::summaries_json;
use vigil_core::wal::log::{LogFault, WalError};
use vigil_core::wal::reader::Reader;
use vigil_core::wal::record::{Decoded, Record};

use crate::config::Global;
use crate::damage::{
    damaged_message, partial_warning, read_until_damage, runtime_fault, EXIT_DAMAGED,
};

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs of this session.
    #[arg(long)]
    pub session: Option<String>,
    /// Only jobs with this status (running, completed, failed, timed_out, oom_killed,
    /// rejected, interrupted).
    #[arg(long, value_parser = parse_state)]
    pub status: Option<JobState>,
    /// Print one JSON array.
    #[arg(long)]
    pub json: bool,
    /// On a damaged log, list the jobs readable before the damage (with a warning on stderr;
    /// the exit code is still 1).
    #[arg(long)]
    pub partial: bool,
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job's id.
    pub id: u64,
    /// Print one JSON object (the default is pretty-printed JSON too, as the record is nested).
    #[arg(long)]
    pub json: bool,
}

/// The job index of a log, and the damage that cut it short (only with `--partial`).
struct Loaded {
    data_dir: PathBuf,
    index: JobIndex,
    damage: Option<LogFault>,
}

fn load(cli: &Global, partial: bool) -> Result<Loaded, String> {
    let data_dir = cli.data_dir();
    let wal_dir = RuntimeOptions::wal_dir(&data_dir);
    if !wal_dir.exists() {
        return Ok(Loaded {
            data_dir,
            index: JobIndex::default(),
            damage: None,
        });
    }
    let failed = |e: WalError| format!("{}: {e}", wal_dir.display());
    match JobIndex::load_dir(&data_dir) {
        Ok(index) => Ok(Loaded {
            data_dir,
            index,
            damage: None,
        }),
        Err(WalError::Corrupt(fault)) if partial => {
            let (index, met) = readable_index(&wal_dir).map_err(failed)?;
            Ok(Loaded {
                data_dir,
                index,
                damage: Some(met.unwrap_or(fault)),
            })
        }
        Err(WalError::Corrupt(fault)) => Err(damaged_message(&fault)),
        Err(error) => Err(failed(error)),
    }
}

/// The index of every record readable before the damage, and the damage it stopped at
/// (`None` if it read to the end).
fn readable_index(wal_dir: &Path) -> Result<(JobIndex, Option<LogFault>), WalError> {
    let mut index = JobIndex::default();
    let damage = read_until_damage(wal_dir, &mut |frame| {
        if let Ok(Decoded::Record(record)) = Record::decode(frame.kind, frame.payload) {
            index.apply(frame.lsn, &record);
        }
    })?;
    Ok((index, damage))
}

/// Prints the partial warning and gives the exit code of a damaged log.
fn damaged_exit(fault: &LogFault) -> ExitCode {
    eprintln!("{}", partial_warning(fault));
    ExitCode::from(EXIT_DAMAGED)
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` UTC ("-" when absent).
fn time(ms: Option<u64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `--status`: a job state name, else an error naming the valid ones.
fn parse_state(name: &str) -> Result<JobState, String> {
    JobState::parse(name).map_err(|e| e.to_string())
}

pub fn list(cli: &Global, args: &JobsArgs) -> ExitCode {
    let loaded = match load(cli, args.partial) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("vigil jobs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let jobs: Vec<JobSummary> = loaded.index.list(args.session.as_deref(), args.status);
    if args.json {
        println!("{}", summaries_json(&jobs));
    } else {
        print_table(&jobs);
        if loaded.index.from_checkpoint {
            println!(
                "history from LSN {}: older records were retired (jobs still running then, and \
                 open sessions, are carried forward)",
                loaded.index.history_from_lsn
            );
        }
    }
    match &loaded.damage {
        Some(fault) => damaged_exit(fault),
        None => ExitCode::SUCCESS,
    }
}

fn print_table(jobs: &[JobSummary]) {
    println!(
        "{:>8}  {:<11}  {:<12}  {:<16}  {:>19}  {:>19}  {:>8}",
        "JOB", "CAPABILITY", "STATUS", "SESSION", "STARTED", "FINISHED", "LSN"
    );
    for j in jobs {
        println!(
            "{:>8}  {:<11}  {:<12}  {:<16}  {:>19}  {:>19}  {:>8}",
            j.job_id,
            j.capability,
            j.status,
            j.session.as_deref().unwrap_or("-"),
            time(j.started_unix_ms),
            time(j.finished_unix_ms),
            j.lsn
        );
    }
}

pub fn show(cli: &Global, args: &JobArgs) -> ExitCode {
    let id = args.id;
    let result = load(cli, false)
        .map_err(|e| format!("job {id} is unreadable: {e}"))
        .and_then(|loaded| detail(&loaded, id))
        .and_then(|detail| {
            let text = if args.json {
                serde_json::to_string(&detail)
            } else {
                serde_json::to_string_pretty(&detail)
            };
            text.map_err(|e| e.to_string())
        });
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vigil job: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Job `id`'s full record, from a log that read whole.
fn detail(loaded: &Loaded, id: u64) -> Result<serde_json::Value, String> {
    let index = &loaded.index;
    let summary = index.jobs.get(&id).ok_or_else(|| {
        if index.from_checkpoint && id < index.next_job_id {
            format!(
                "job {id}'s records were retired: the log's history starts at LSN {}",
                index.history_from_lsn
            )
        } else {
            format!("no job {id} in the log")
        }
    })?;
    let wal_dir = RuntimeOptions::wal_dir(&loaded.data_dir);
    let unreadable = |e: &dyn std::fmt::Display| format!("job {id} is unreadable: {e}");
    // A running job carried by an index checkpoint may have its start retired.
    let from = summary.lsn.max(index.history_from_lsn);
    let mut reader = Reader::open_dir(&wal_dir, from).map_err(|e| match &e {
        WalError::Corrupt(fault) => unreadable(&damaged_message(fault)),
        _ => unreadable(&format!("{}: {e}", wal_dir.display())),
    })?;
    job_detail_from(&mut reader, summary).map_err(|e| match runtime_fault(&e) {
        Some(fault) => unreadable(&damaged_message(fault)),
        None => e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(super::time(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(super::time(Some(951_782_400_000)), "2000-02-29 00:00:00");
        assert_eq!(super::time(Some(1_795_286_861_810)), "2026-11-21 18:47:41");
        assert_eq!(super::time(None), "-");
    }
}
