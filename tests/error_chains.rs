//! Errors keep their chains: from what the caller gets down to the operating system's error,
//! through `source()`, with the path concerned said on the way.
use std::error::Error;
use std::io;

use vigil_runtime::runtime::{Runtime, RuntimeOptions};
use vigil_runtime::sampler::Sampler;

/// Every error of the chain that starts at `top`, `top` first.
fn chain<'a>(top: &'a (dyn Error + 'static)) -> Vec<&'a (dyn Error + 'static)> {
    let mut links = vec![top];
    let mut at = top;
    while let Some(next) = at.source() {
        links.push(next);
        at = next;
        assert!(links.len() < 16, "a source chain that does not end");
    }
    links
}

#[test]
fn a_runtime_that_cannot_create_its_log_leads_down_to_the_os_error_naming_the_path() {
    let data = tempfile::tempdir().unwrap();
    // The log's directory is taken by a regular file.
    let wal_path = data.path().join("wal");
    std::fs::write(&wal_path, b"not a directory").unwrap();
    let Err(error) = Runtime::open(RuntimeOptions::new(data.path())) else {
        panic!("a runtime opens over a file where its log directory belongs")
    };
    let links = chain(&error);
    assert!(links.len() >= 3, "runtime, log and I/O errors: {links:?}");
    let os = links
        .last()
        .and_then(|e| e.downcast_ref::<io::Error>())
        .expect("the chain ends at an io::Error");
    assert!(os.raw_os_error().is_some(), "the OS error itself: {os:?}");
    let wal = wal_path.display().to_string();
    assert!(
        links[..links.len() - 1]
            .iter()
            .any(|e| e.to_string().contains(&wal)),
        "a link names {wal}: {links:?}"
    );
    assert!(error.to_string().contains(&wal), "{error}");
}

#[test]
fn a_sampler_over_a_missing_proc_root_leads_down_to_not_found() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("no-proc-here");
    let Err(error) = Sampler::open(&missing) else {
        panic!("a sampler opens over a missing /proc")
    };
    let links = chain(&error);
    assert_eq!(links.len(), 2, "{links:?}");
    let os = links[1]
        .downcast_ref::<io::Error>()
        .expect("the source is the io::Error");
    assert_eq!(os.kind(), io::ErrorKind::NotFound);
    assert!(error.to_string().contains(&missing.display().to_string()));
}
