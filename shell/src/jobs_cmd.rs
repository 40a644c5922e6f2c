//! `vigil jobs` and `vigil job ID`: what the log says about jobs. They read the log without
//! taking the writer's lock, so they work while `vigil serve` owns it; a job whose end is not
//! logged shows as `running` (it becomes `interrupted` when the next runtime opens the log).
use std::process::ExitCode;

use clap::Args;
use vigil_core::runtime::{job_detail_from, JobIndex, JobSummary, RuntimeOptions};
use vigil_core::wal::reader::Reader;

use crate::{default_data_dir, Cli};

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs of this session.
    #[arg(long)]
    pub session: Option<String>,
    /// Only jobs with this status (running, completed, failed, timed_out, oom_killed,
    /// rejected, interrupted).
    #[arg(long)]
    pub status: Option<String>,
    /// Print one JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job's id.
    pub id: u64,
    /// Print one JSON object (the default is pretty-printed JSON too, as the record is nested).
    #[arg(long)]
    pub json: bool,
}

fn load(cli: &Cli) -> Result<(std::path::PathBuf, JobIndex), String> {
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    let wal_dir = RuntimeOptions::wal_dir(&data_dir);
    if !wal_dir.exists() {
        return Ok((data_dir, JobIndex::default()));
    }
    let index = JobIndex::load_dir(&data_dir).map_err(|e| format!("{}: {e}", wal_dir.display()))?;
    Ok((data_dir, index))
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

pub fn list(cli: &Cli, args: &JobsArgs) -> ExitCode {
    let (_, index) = match load(cli) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("vigil jobs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let jobs: Vec<JobSummary> = index.list(args.session.as_deref(), args.status.as_deref());
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&jobs).unwrap_or_else(|_| "[]".into())
        );
        return ExitCode::SUCCESS;
    }
    println!(
        "{:>8}  {:<11}  {:<12}  {:<16}  {:>19}  {:>19}  {:>8}",
        "JOB", "CAPABILITY", "STATUS", "SESSION", "STARTED", "FINISHED", "LSN"
    );
    for j in &jobs {
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
    if index.from_checkpoint {
        println!(
            "history from LSN {}: older records were retired (jobs still running then, and \
             open sessions, are carried forward)",
            index.history_from_lsn
        );
    }
    ExitCode::SUCCESS
}

pub fn show(cli: &Cli, args: &JobArgs) -> ExitCode {
    let result = load(cli).and_then(|(data_dir, index)| {
        let summary = index.jobs.get(&args.id).ok_or_else(|| {
            if index.from_checkpoint && args.id < index.next_job_id {
                format!(
                    "job {}'s records were retired: the log's history starts at LSN {}",
                    args.id, index.history_from_lsn
                )
            } else {
                format!("no job {} in the log", args.id)
            }
        })?;
        // A running job carried by an index checkpoint may have its start retired.
        let from = summary.lsn.max(index.history_from_lsn);
        let mut reader = Reader::open_dir(&RuntimeOptions::wal_dir(&data_dir), from)
            .map_err(|e| e.to_string())?;
        job_detail_from(&mut reader, summary).map_err(|e| e.to_string())
    });
    match result {
        Ok(detail) if args.json => {
            println!("{detail}");
            ExitCode::SUCCESS
        }
        Ok(detail) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&detail).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vigil job: {e}");
            ExitCode::FAILURE
        }
    }
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
