//! `vigil call METHOD [PARAMS_JSON] --socket PATH`: one JSON-RPC request to a running
//! `vigil serve`, for scripts and tests. Also the client `vigil run --socket` uses.
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use crate::units::parse_duration;
use crate::{default_data_dir, Cli};

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

/// The socket path the CLI talks to.
pub fn socket_path(cli: &Cli, socket: Option<&Path>) -> PathBuf {
    socket.map_or_else(
        || {
            cli.data_dir
                .clone()
                .unwrap_or_else(default_data_dir)
                .join("vigil.sock")
        },
        Path::to_path_buf,
    )
}

/// What a request came back with: the result, or the server's error object.
pub type Answer = Result<Value, Value>;

/// Sends one request and reads its answer. `Err` is a transport failure (no server, a broken
/// connection, an unreadable answer).
pub fn call(
    socket: &Path,
    method: &str,
    params: Value,
    timeout: Option<Duration>,
) -> Result<Answer, String> {
    let shown = socket.display();
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("{shown}: connect: {e}"))?;
    // Requests carry arguments (and may carry secrets): only a server run by this user or
    // root gets them.
    let (uid, pid) = crate::serve::peer_credentials(&stream)
        .map_err(|e| format!("{shown}: SO_PEERCRED: {e}"))?;
    // SAFETY: geteuid has no failure mode.
    let me = unsafe { libc::geteuid() };
    if uid != me && uid != 0 {
        return Err(format!(
            "{shown}: the server (pid {pid}) runs as uid {uid}, not this user ({me}) or root; \
             not sending it the request"
        ));
    }
    stream
        .set_read_timeout(timeout)
        .map_err(|e| format!("{shown}: {e}"))?;
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut line = request.to_string();
    line.push('\n');
    let sent = stream.write_all(line.as_bytes());
    // A server that refuses the connection says why and closes it, possibly before the
    // request is sent: its answer is still there to read.
    let mut answer = String::new();
    let read = BufReader::new(&stream).read_line(&mut answer);
    if answer.is_empty() {
        return Err(match (sent, read) {
            (Err(e), _) => format!("{shown}: sending the request: {e}"),
            (_, Err(e)) => format!("{shown}: reading the answer: {e}"),
            _ => format!("{shown}: the server closed the connection"),
        });
    }
    let v: Value = serde_json::from_str(&answer)
        .map_err(|e| format!("{shown}: the answer is not JSON: {e}"))?;
    let Value::Object(mut v) = v else {
        return Err(format!("{shown}: the answer is not a JSON object"));
    };
    match (v.remove("result"), v.remove("error")) {
        (Some(result), _) => Ok(Ok(result)),
        (None, Some(error)) => Ok(Err(error)),
        _ => Err(format!("{shown}: the answer has neither result nor error")),
    }
}

pub fn run(cli: &Cli, args: &CallArgs) -> ExitCode {
    let params = match args.params.as_deref().map(serde_json::from_str::<Value>) {
        None => json!({}),
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            eprintln!("vigil call: PARAMS_JSON is not valid JSON: {e}");
            return ExitCode::from(2);
        }
    };
    let socket = socket_path(cli, args.socket.as_deref());
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
