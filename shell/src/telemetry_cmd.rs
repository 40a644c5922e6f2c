//! `vigil telemetry`: one sample, or a live view.
use std::process::ExitCode;
use std::time::Duration;

use crate::units::parse_duration;
use crate::Cli;

#[derive(Debug, clap::Args)]
pub struct TelemetryArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Keep sampling and redraw a live view.
    #[arg(long)]
    pub watch: bool,
    /// Time between the two reads that make a delta (and between redraws with --watch).
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub interval: Duration,
}

pub fn run(_cli: &Cli, _args: &TelemetryArgs) -> ExitCode {
    eprintln!("vigil telemetry: not built yet");
    ExitCode::FAILURE
}
