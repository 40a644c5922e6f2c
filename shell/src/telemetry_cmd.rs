//! `vigil telemetry`: one sample (two reads `--interval` apart, so deltas exist), as text or
//! JSON, or a live terminal view with `--watch`.
use std::collections::VecDeque;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use vigil_core::procfs::Psi;
use vigil_core::sample::{Percent, Sample};
use vigil_core::sampler::Sampler;
use vigil_core::view::sample::{centi, sample_json};

use crate::config::Global;
use crate::units::parse_duration;

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

pub fn run(cli: &Global, args: &TelemetryArgs) -> ExitCode {
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
            match (
                m.available_estimated,
                s.flags & vigil_core::sample::flags::MEMORY_AVAILABLE_CLAMPED != 0
            ) {
                (true, _) => " [estimated]",
                (false, true) => " [MemAvailable above MemTotal: clamped]",
                (false, false) => "",
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
    let eighths = (usize::from(p.basis_points()) * width * 8) / 10_000;
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
            Some(p) => LEVELS[(usize::from(p.basis_points()) * 7 / 10_000).min(7)],
            None => ' ',
        })
        .collect()
}

fn colour(p: Option<Percent>) -> &'static str {
    match p.map(Percent::basis_points) {
        Some(v) if v >= 9000 => "\x1b[31m",
        Some(v) if v >= 6000 => "\x1b[33m",
        Some(_) => "\x1b[32m",
        None => "\x1b[2m",
    }
}

/// Resets the terminal colour.
const RESET: &str = "\x1b[0m";

fn watch(sampler: &mut Sampler, args: &TelemetryArgs) -> Result<(), String> {
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
            .map(Percent::complement);
        if history.len() == WATCH_HISTORY_LEN {
            history.pop_front();
        }
        history.push_back((busy, mem_used));
        let screen = watch_screen(&s, args.interval, &history);
        out.write_all(screen.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
    }
}

/// One screen of `--watch`: bars per CPU and for memory, load, pressure and the history.
/// Over 70 lines because it lays out the screen line by line, one format call each, top to
/// bottom as it appears; cutting it would only scatter the layout.
fn watch_screen(
    s: &Sample,
    interval: Duration,
    history: &VecDeque<(Option<Percent>, Option<Percent>)>,
) -> String {
    let busy = s.cpu.map(|c| c.busy);
    // The newest history entry is this sample's.
    let mem_used = history.back().and_then(|h| h.1);
    let mut screen = String::from("\x1b[H\x1b[2J");
    screen += &format!(
        "\x1b[1mvigil telemetry\x1b[0m  sample {}  every {:?}  (Ctrl-C to quit)\n\n",
        s.seq, interval
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
    screen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_sparklines_scale() {
        assert_eq!(bar(Some(Percent::FULL), 4), "████");
        assert_eq!(bar(Some(Percent::ZERO), 4), "    ");
        assert_eq!(bar(Percent::new(5000), 4), "██  ");
        assert_eq!(bar(None, 3).chars().count(), 3);
        assert_eq!(
            sparkline([Some(Percent::ZERO), Some(Percent::FULL), None].into_iter()),
            "▁█ "
        );
    }
}
