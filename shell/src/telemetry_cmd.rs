//! `vigil telemetry`: one sample (two reads `--interval` apart, so deltas exist), as text or
//! JSON, or a live terminal view with `--watch`.
use std::collections::VecDeque;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};
use vigil_core::procfs::{Psi, PsiLine};
use vigil_core::sample::{Percent, Sample};
use vigil_core::sampler::Sampler;

use crate::units::parse_duration;
use crate::Cli;

#[derive(Debug, clap::Args)]
pub struct TelemetryArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Keep sampling and redraw a live view (Ctrl-C to stop).
    #[arg(long)]
    pub watch: bool,
    /// Time between the two reads that make a delta (and between redraws with --watch).
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub interval: Duration,
}

/// How many samples the live view's history lines show.
const WATCH_HISTORY_LEN: usize = 60;

pub fn run(cli: &Cli, args: &TelemetryArgs) -> ExitCode {
    let mut sampler = match Sampler::open(&cli.proc_root) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vigil telemetry: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.interval.is_zero() {
        eprintln!("vigil telemetry: --interval must be above zero");
        return ExitCode::from(2);
    }
    let result = if args.watch {
        watch(&mut sampler, args)
    } else {
        one_sample(&mut sampler, args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil telemetry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn one_sample(sampler: &mut Sampler, args: &TelemetryArgs) -> Result<(), String> {
    sampler.sample().map_err(|e| e.to_string())?;
    std::thread::sleep(args.interval);
    let sample = sampler.sample().map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let text = if args.json {
        sample_json(&sample).to_string()
    } else {
        render_text(&sample)
    };
    writeln!(out, "{text}").map_err(|e| e.to_string())
}

fn pct(p: Option<Percent>) -> Value {
    p.map_or(Value::Null, |p| json!(p.as_f64()))
}

fn centi(v: u32) -> f64 {
    f64::from(v) / 100.0
}

fn psi_line_json(l: &PsiLine) -> Value {
    json!({
        "avg10": centi(l.avg10_centi),
        "avg60": centi(l.avg60_centi),
        "avg300": centi(l.avg300_centi),
        "total_us": l.total_us,
    })
}

fn psi_json(p: &Option<Psi>) -> Value {
    p.as_ref().map_or(Value::Null, |p| {
        json!({
            "some": psi_line_json(&p.some),
            "full": p.full.as_ref().map_or(Value::Null, psi_line_json),
        })
    })
}

/// The JSON form of a sample, shared by `vigil telemetry --json` and the socket protocol.
/// Percentages with no data behind them are `null`, never NaN.
pub fn sample_json(s: &Sample) -> Value {
    let cpu = s.cpu;
    let per_cpu: Vec<Value> = s
        .per_cpu
        .iter()
        .map(|c| json!({"id": c.id, "busy_pct": pct(c.busy)}))
        .collect();
    json!({
        "seq": s.seq,
        "timestamp_ns": s.timestamp_ns,
        "interval_ms": s.interval_ns as f64 / 1e6,
        "cpu": {
            "busy_pct": pct(cpu.map(|c| c.busy)),
            "busy_no_steal_pct": pct(cpu.map(|c| c.busy_no_steal)),
            "user_pct": pct(cpu.map(|c| c.user)),
            "nice_pct": pct(cpu.map(|c| c.nice)),
            "system_pct": pct(cpu.map(|c| c.system)),
            "idle_pct": pct(cpu.map(|c| c.idle)),
            "iowait_pct": pct(cpu.map(|c| c.iowait)),
            "irq_pct": pct(cpu.map(|c| c.irq)),
            "softirq_pct": pct(cpu.map(|c| c.softirq)),
            "steal_pct": pct(cpu.map(|c| c.steal)),
            "guest_pct": pct(cpu.map(|c| c.guest)),
            "total_ticks": cpu.map(|c| c.total_ticks),
            "per_cpu": per_cpu,
            "per_cpu_dropped": s.per_cpu_dropped,
            "ctxt_per_sec": s.ctxt_per_sec,
            "procs_running": s.procs_running,
            "procs_blocked": s.procs_blocked,
        },
        "memory": s.memory.map(|m| json!({
            "total_bytes": m.total_bytes,
            "available_bytes": m.available_bytes,
            "available_pct": pct(m.available()),
            "available_estimated": m.available_estimated,
            "free_bytes": m.free_bytes,
            "cached_bytes": m.cached_bytes,
            "swap_total_bytes": m.swap_total_bytes,
            "swap_free_bytes": m.swap_free_bytes,
            "dirty_bytes": m.dirty_bytes,
        })),
        "load": s.load.map(|l| json!({
            "load1": centi(l.load1_centi),
            "load5": centi(l.load5_centi),
            "load15": centi(l.load15_centi),
            "runnable": l.runnable,
            "entities": l.entities,
        })),
        "pressure": if s.pressure == Default::default() {
            Value::Null
        } else {
            json!({
                "cpu": psi_json(&s.pressure.cpu),
                "memory": psi_json(&s.pressure.memory),
                "io": psi_json(&s.pressure.io),
            })
        },
        "flags": s.flags,
    })
}

fn fmt_pct(p: Option<Percent>) -> String {
    p.map_or_else(|| "   n/a".to_string(), |p| format!("{:5.1}%", p.as_f64()))
}

fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn render_text(s: &Sample) -> String {
    let mut t = String::new();
    let cpu = s.cpu;
    t += &format!(
        "cpu     busy {}  (no steal {})  iowait {}  steal {}\n",
        fmt_pct(cpu.map(|c| c.busy)),
        fmt_pct(cpu.map(|c| c.busy_no_steal)),
        fmt_pct(cpu.map(|c| c.iowait)),
        fmt_pct(cpu.map(|c| c.steal)),
    );
    for c in &s.per_cpu {
        t += &format!("cpu{:<4} busy {}\n", c.id, fmt_pct(c.busy));
    }
    if let Some(m) = s.memory {
        t += &format!(
            "memory  {} available of {} ({}){}\n",
            fmt_bytes(m.available_bytes),
            fmt_bytes(m.total_bytes),
            fmt_pct(m.available()).trim(),
            if m.available_estimated {
                " [estimated]"
            } else {
                ""
            }
        );
    }
    if let Some(l) = s.load {
        t += &format!(
            "load    {:.2} {:.2} {:.2}\n",
            centi(l.load1_centi),
            centi(l.load5_centi),
            centi(l.load15_centi)
        );
    }
    for (name, p) in [
        ("cpu", s.pressure.cpu),
        ("memory", s.pressure.memory),
        ("io", s.pressure.io),
    ] {
        match p {
            Some(p) => {
                t += &format!(
                    "psi     {name:<6} some avg10 {:5.2}%  full avg10 {}\n",
                    centi(p.some.avg10_centi),
                    p.full
                        .map_or("n/a".into(), |f| format!("{:5.2}%", centi(f.avg10_centi)))
                )
            }
            None => t += &format!("psi     {name:<6} not available on this kernel\n"),
        }
    }
    t.pop();
    t
}

/// A bar of `width` cells for a percentage, with eighth-block resolution.
fn bar(p: Option<Percent>, width: usize) -> String {
    const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let Some(p) = p else {
        return format!("{:width$}", "·");
    };
    let eighths = (usize::from(p.0) * width * 8) / 10_000;
    let mut s = "█".repeat(eighths / 8);
    if eighths / 8 < width {
        s.push(EIGHTHS[eighths % 8]);
    }
    format!("{s:width$}")
}

/// A sparkline of percentages, one cell per sample.
fn sparkline(values: impl Iterator<Item = Option<Percent>>) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    values
        .map(|v| match v {
            Some(p) => LEVELS[(usize::from(p.0) * 7 / 10_000).min(7)],
            None => ' ',
        })
        .collect()
}

fn colour(p: Option<Percent>) -> &'static str {
    match p.map(|p| p.0) {
        Some(v) if v >= 9000 => "\x1b[31m",
        Some(v) if v >= 6000 => "\x1b[33m",
        Some(_) => "\x1b[32m",
        None => "\x1b[2m",
    }
}

fn watch(sampler: &mut Sampler, args: &TelemetryArgs) -> Result<(), String> {
    const RESET: &str = "\x1b[0m";
    let mut history: VecDeque<(Option<Percent>, Option<Percent>)> = VecDeque::new();
    let mut out = std::io::stdout();
    sampler.sample().map_err(|e| e.to_string())?;
    loop {
        std::thread::sleep(args.interval);
        let s = sampler.sample().map_err(|e| e.to_string())?;
        let busy = s.cpu.map(|c| c.busy);
        let mem_used = s
            .memory
            .and_then(|m| m.available())
            .map(|a| Percent(10_000 - a.0));
        if history.len() == WATCH_HISTORY_LEN {
            history.pop_front();
        }
        history.push_back((busy, mem_used));

        let mut screen = String::from("\x1b[H\x1b[2J");
        screen += &format!(
            "\x1b[1mvigil telemetry\x1b[0m  sample {}  every {:?}  (Ctrl-C to quit)\n\n",
            s.seq, args.interval
        );
        screen += &format!(
            "  all   {}[{}]{} {}  iowait {}  steal {}\n",
            colour(busy),
            bar(busy, 40),
            RESET,
            fmt_pct(busy),
            fmt_pct(s.cpu.map(|c| c.iowait)),
            fmt_pct(s.cpu.map(|c| c.steal)),
        );
        for c in &s.per_cpu {
            screen += &format!(
                "  cpu{:<3} {}[{}]{} {}\n",
                c.id,
                colour(c.busy),
                bar(c.busy, 40),
                RESET,
                fmt_pct(c.busy)
            );
        }
        if s.per_cpu_dropped > 0 {
            screen += &format!("  (+{} CPUs not shown)\n", s.per_cpu_dropped);
        }
        if let Some(m) = s.memory {
            screen += &format!(
                "\n  mem   {}[{}]{} {} used, {} available of {}\n",
                colour(mem_used),
                bar(mem_used, 40),
                RESET,
                fmt_pct(mem_used),
                fmt_bytes(m.available_bytes),
                fmt_bytes(m.total_bytes)
            );
        }
        if let Some(l) = s.load {
            screen += &format!(
                "  load  {:.2} {:.2} {:.2}   running {}  blocked {}\n",
                centi(l.load1_centi),
                centi(l.load5_centi),
                centi(l.load15_centi),
                s.procs_running.unwrap_or(0),
                s.procs_blocked.unwrap_or(0)
            );
        }
        let psi = |p: Option<Psi>| {
            p.map_or("n/a".to_string(), |p| {
                format!("{:.2}%", centi(p.some.avg10_centi))
            })
        };
        screen += &format!(
            "  psi   cpu {}  memory {}  io {}  (some avg10)\n\n",
            psi(s.pressure.cpu),
            psi(s.pressure.memory),
            psi(s.pressure.io)
        );
        screen += &format!(
            "  cpu history {}\n  mem history {}\n",
            sparkline(history.iter().map(|h| h.0)),
            sparkline(history.iter().map(|h| h.1))
        );
        out.write_all(screen.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_data_percentages_are_null_in_json() {
        let s = Sample::default();
        let v = sample_json(&s);
        assert!(v["cpu"]["busy_pct"].is_null());
        assert!(v["pressure"].is_null());
        assert!(v["memory"].is_null());
        assert_eq!(v["cpu"]["per_cpu"], json!([]));
    }

    #[test]
    fn bars_and_sparklines_scale() {
        assert_eq!(bar(Some(Percent(10_000)), 4), "████");
        assert_eq!(bar(Some(Percent(0)), 4), "    ");
        assert_eq!(bar(Some(Percent(5000)), 4), "██  ");
        assert_eq!(bar(None, 3).chars().count(), 3);
        assert_eq!(
            sparkline([Some(Percent(0)), Some(Percent(10_000)), None].into_iter()),
            "▁█ "
        );
    }
}
