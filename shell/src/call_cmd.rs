//! `vigil call METHOD [PARAMS_JSON] --socket PATH`: one JSON-RPC request to a running
//! `vigil serve`, for scripts and tests.
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use crate::client::call;
use crate::config::Global;
use crate::units::parse_duration;

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Method: health, telemetry.sample, telemetry.history, run, jobs.list, jobs.get,
    /// jobs.cancel, events.read, sessions.create, sessions.list, sessions.get.
    pub method: String,
    /// Parameters as a JSON object, e.g. '{"job_id": 3}'.
    pub params: Option<String>,
    /// Socket of the server (default: vigil.sock in the data directory).
    #[arg(long, env = "VIGIL_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Give up waiting for the answer after this long (default: wait as long as it takes).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Print the result as one line of JSON even on a terminal.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Global, args: &CallArgs) -> ExitCode {
    let params = match args.params.as_deref().map(serde_json::from_str::<Value>) {
        None => json!({}),
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            eprintln!("vigil call: PARAMS_JSON is not valid JSON: {e}");
            return ExitCode::from(2);
        }
    };
    let socket = cli.socket_path(args.socket.as_deref());
    match call(&socket, &args.method, params, args.timeout) {
        Ok(Ok(result)) => {
            if !args.json && std::io::stdout().is_terminal() {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&result).unwrap_or_default()
                );
            } else {
                println!("{result}");
            }
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            eprintln!(
                "vigil call: error {}: {}",
                error["code"],
                error["message"].as_str().unwrap_or("(no message)")
            );
            if let Some(data) = error.get("data") {
                eprintln!("vigil call: error data: {data}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("vigil call: {e}");
            ExitCode::from(2)
        }
    }
}
