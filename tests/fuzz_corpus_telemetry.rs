//! Replays the committed fuzz corpus of the /proc and cgroup parsers through the same bodies
//! the fuzz targets run, on stable Rust, so every input the fuzzer ever kept stays checked.
use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        body(&data);
        count += 1;
    }
    assert!(count > 0, "corpus {target} is empty");
}

#[test]
fn proc_stat_corpus() {
    replay("proc_stat", vigil_runtime::fuzzing::telemetry::proc_stat);
}

#[test]
fn proc_meminfo_corpus() {
    replay(
        "proc_meminfo",
        vigil_runtime::fuzzing::telemetry::proc_meminfo,
    );
}

#[test]
fn proc_loadavg_corpus() {
    replay(
        "proc_loadavg",
        vigil_runtime::fuzzing::telemetry::proc_loadavg,
    );
}

#[test]
fn proc_pressure_corpus() {
    replay(
        "proc_pressure",
        vigil_runtime::fuzzing::telemetry::proc_pressure,
    );
}

#[test]
fn cgroup_files_corpus() {
    replay(
        "cgroup_files",
        vigil_runtime::fuzzing::telemetry::cgroup_files,
    );
}

#[test]
fn proc_pid_stat_corpus() {
    replay(
        "proc_pid_stat",
        vigil_runtime::fuzzing::telemetry::proc_pid_stat,
    );
}
