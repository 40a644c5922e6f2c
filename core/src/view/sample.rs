//! The sample view: one [`Sample`] as JSON, the shape of `vigil telemetry --json`,
//! `telemetry.sample`, `telemetry.history` and the telemetry before and after a job in
//! `vigil job N --json` and `jobs.get`. Percentages with no data behind them are `null`, never
//! NaN; values the kernel keeps in hundredths (load, PSI averages) are floats.
use serde_json::{json, Value};

use crate::procfs::{Psi, PsiLine};
use crate::sample::{Percent, Sample};

fn pct(p: Option<Percent>) -> Value {
    p.map_or(Value::Null, |p| json!(p.as_f64()))
}

/// A value kept in hundredths (load, PSI averages) as a float.
pub fn centi(v: u32) -> f64 {
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

/// The JSON form of a sample: `vigil telemetry --json`, `telemetry.sample` on the socket.
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
            "available_clamped": s.flags & crate::sample::flags::MEMORY_AVAILABLE_CLAMPED != 0,
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
    fn sample_view_is_pinned() {
        let pct = |part| Percent::ratio(part, 1000);
        let mut s = Sample {
            seq: 9,
            timestamp_ns: 5_000_000_000,
            interval_ns: 250_000_000,
            ctxt_per_sec: Some(1200),
            memory: Some(crate::sample::MemorySample {
                total_bytes: 4000,
                available_bytes: 1000,
                ..Default::default()
            }),
            load: Some(crate::procfs::LoadAvg {
                load1_centi: 150,
                load5_centi: 75,
                load15_centi: 1,
                runnable: 2,
                entities: 300,
                last_pid: 77,
            }),
            ..Sample::default()
        };
        s.cpu = Some(crate::sample::CpuUsage {
            busy: pct(255).unwrap_or_default(),
            iowait: pct(10).unwrap_or_default(),
            total_ticks: 1000,
            ..Default::default()
        });
        let _ = s.per_cpu.push(crate::sample::CpuBusy {
            id: 3,
            busy: pct(500),
        });
        s.pressure.cpu = Some(Psi {
            some: PsiLine {
                avg10_centi: 1234,
                avg60_centi: 0,
                avg300_centi: 5,
                total_us: 99,
            },
            full: None,
        });
        assert_eq!(
            sample_json(&s).to_string(),
            concat!(
                r#"{"cpu":{"busy_no_steal_pct":0.0,"busy_pct":25.5,"ctxt_per_sec":1200,"#,
                r#""guest_pct":0.0,"idle_pct":0.0,"iowait_pct":1.0,"irq_pct":0.0,"nice_pct":0.0,"#,
                r#""per_cpu":[{"busy_pct":50.0,"id":3}],"per_cpu_dropped":0,"procs_blocked":null,"#,
                r#""procs_running":null,"softirq_pct":0.0,"steal_pct":0.0,"system_pct":0.0,"#,
                r#""total_ticks":1000,"user_pct":0.0},"flags":0,"interval_ms":250.0,"#,
                r#""load":{"entities":300,"load1":1.5,"load15":0.01,"load5":0.75,"runnable":2},"#,
                r#""memory":{"available_bytes":1000,"available_clamped":false,"#,
                r#""available_estimated":false,"available_pct":25.0,"cached_bytes":0,"#,
                r#""dirty_bytes":0,"free_bytes":0,"swap_free_bytes":0,"swap_total_bytes":0,"#,
                r#""total_bytes":4000},"pressure":{"cpu":{"full":null,"some":{"avg10":12.34,"#,
                r#""avg300":0.05,"avg60":0.0,"total_us":99}},"io":null,"memory":null},"seq":9,"#,
                r#""timestamp_ns":5000000000}"#
            )
        );
    }
}
