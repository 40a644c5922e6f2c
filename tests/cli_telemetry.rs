//! `vigil telemetry` end to end: the real binary on live /proc and on captured trees given with
//! `--proc-root`.
mod common;

use std::process::Command;

use common::{vigil_bin, TempDir};
use serde_json::Value;

fn telemetry_json(args: &[&str]) -> Value {
    let out = Command::new(vigil_bin())
        .args(args)
        .args(["telemetry", "--json", "--interval", "100ms"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn captured_tree(meminfo: &str, with_pressure: bool) -> TempDir {
    let dir = TempDir::new("proc");
    let p = dir.path();
    std::fs::write(
        p.join("stat"),
        "cpu 10 0 10 80\ncpu0 5 0 5 40\ncpu4 5 0 5 40\n",
    )
    .unwrap();
    std::fs::write(p.join("meminfo"), meminfo).unwrap();
    std::fs::write(p.join("loadavg"), "0.50 0.25 0.10 1/99 1234\n").unwrap();
    if with_pressure {
        std::fs::create_dir(p.join("pressure")).unwrap();
        for r in ["cpu", "memory", "io"] {
            std::fs::write(
                p.join("pressure").join(r),
                "some avg10=1.50 avg60=0.00 avg300=0.00 total=10\n",
            )
            .unwrap();
        }
    }
    dir
}

#[test]
fn live_sample_has_the_documented_fields() {
    let v = telemetry_json(&[]);
    let busy = v["cpu"]["busy_pct"]
        .as_f64()
        .expect("busy_pct is a number on a live host");
    assert!((0.0..=100.0).contains(&busy));
    for key in ["iowait_pct", "steal_pct"] {
        let x = v["cpu"][key].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&x), "{key}={x}");
    }
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let ids: Vec<u64> = stat
        .lines()
        .filter_map(|l| l.strip_prefix("cpu"))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let got: Vec<u64> = v["cpu"]["per_cpu"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, ids, "per-CPU entries keyed by the kernel's ids");
    assert!(v["memory"]["total_bytes"].as_u64().unwrap() > 0);
    assert!(v["memory"]["available_bytes"].as_u64().unwrap() > 0);
    assert!(v["load"]["load1"].is_number());
    let has_psi = std::path::Path::new("/proc/pressure/memory").exists();
    assert_eq!(v["pressure"].is_null(), !has_psi);
}

#[test]
fn a_captured_tree_with_no_elapsed_ticks_gives_null_not_nan() {
    let dir = captured_tree(
        "MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 300 kB\n",
        true,
    );
    let v = telemetry_json(&["--proc-root", dir.path().to_str().unwrap()]);
    assert!(v["cpu"]["busy_pct"].is_null());
    assert!(v["cpu"]["iowait_pct"].is_null());
    let per_cpu = v["cpu"]["per_cpu"].as_array().unwrap();
    assert_eq!(per_cpu.len(), 2);
    assert_eq!(per_cpu[1]["id"], 4);
    assert!(per_cpu[1]["busy_pct"].is_null());
    assert_eq!(v["memory"]["available_bytes"], 300 * 1024);
    assert_eq!(v["memory"]["available_estimated"], false);
    assert_eq!(v["pressure"]["memory"]["some"]["avg10"], 1.5);
    assert!(v["pressure"]["cpu"]["full"].is_null());
    assert_eq!(v["load"]["load1"], 0.5);
}

#[test]
fn mem_available_above_mem_total_is_clamped_and_flagged() {
    let dir = captured_tree(
        "MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 4000 kB\n",
        true,
    );
    let v = telemetry_json(&["--proc-root", dir.path().to_str().unwrap()]);
    assert_eq!(v["memory"]["available_bytes"], 1000 * 1024);
    assert_eq!(v["memory"]["available_clamped"], true);
    assert_eq!(v["memory"]["available_pct"], 100.0);
    let dir = captured_tree(
        "MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 300 kB\n",
        true,
    );
    let v = telemetry_json(&["--proc-root", dir.path().to_str().unwrap()]);
    assert_eq!(v["memory"]["available_clamped"], false);
}

#[test]
fn an_old_kernel_tree_estimates_memory_and_has_no_pressure() {
    let dir = captured_tree(
        "MemTotal: 1000 kB\nMemFree: 200 kB\nCached: 100 kB\n",
        false,
    );
    let v = telemetry_json(&["--proc-root", dir.path().to_str().unwrap()]);
    assert_eq!(v["memory"]["available_estimated"], true);
    assert_eq!(v["memory"]["available_bytes"], 300 * 1024);
    assert!(v["pressure"].is_null());
}

#[test]
fn a_damaged_file_fails_with_its_name() {
    let dir = captured_tree("MemTotal: 1000 kB\nMemFree: 200 kB\n", false);
    std::fs::write(dir.path().join("stat"), "cpu 1 2 x 4\n").unwrap();
    let out = Command::new(vigil_bin())
        .args([
            "--proc-root",
            dir.path().to_str().unwrap(),
            "telemetry",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stat") && err.contains("line 1"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn text_output_names_each_resource() {
    let out = Command::new(vigil_bin())
        .args(["telemetry", "--interval", "50ms"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for word in ["cpu", "memory", "load", "psi"] {
        assert!(text.contains(word), "{word} missing in {text}");
    }
}

/// The shape of a JSON value: its object keys, recursively (an array by its first element).
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().take(1).map(shape).collect()),
        _ => Value::Null,
    }
}

#[test]
fn a_jobs_telemetry_has_the_shape_of_vigil_telemetry() {
    let dir = captured_tree(
        "MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 500 kB\n",
        true,
    );
    let proc_root = dir.path().to_str().unwrap();
    let data = TempDir::new("job-telemetry");
    // File jobs may not write in vigil's data dir: the root is elsewhere.
    let work = TempDir::new("job-telemetry-root");
    let sample = telemetry_json(&["--proc-root", proc_root]);
    let (code, out, err) = common::vigil_output(
        data.path(),
        &[
            "--proc-root",
            proc_root,
            "run",
            "file.write",
            "--root",
            work.path().to_str().unwrap(),
            "--args",
            r#"{"path": "x", "content": "y"}"#,
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let run: Value = serde_json::from_str(&out).unwrap();
    let id = run["job_id"].as_u64().unwrap().to_string();
    let (code, out, err) = common::vigil_output(data.path(), &["job", &id, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let detail: Value = serde_json::from_str(&out).unwrap();
    for key in ["telemetry_before", "telemetry_after"] {
        assert!(detail[key].is_object(), "{key}: {detail}");
        assert_eq!(shape(&detail[key]), shape(&sample), "{key}: {detail}");
    }
    assert_eq!(
        detail["telemetry_before"]["memory"]["total_bytes"],
        1_024_000
    );
    assert_eq!(detail["telemetry_before"]["load"]["load1"], 0.5);
}
