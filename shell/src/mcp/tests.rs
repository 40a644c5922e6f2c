use super::calls::job_result;
use super::*;

fn lines(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, &'static str>> {
    let mut r = io::BufReader::with_capacity(4, input);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    loop {
        match read_line(&mut r, &mut buf, max).unwrap() {
            Line::Eof => return out,
            Line::Data => out.push(Ok(buf.clone())),
            Line::TooLong => out.push(Err("too long")),
        }
    }
}

#[test]
fn lines_are_bounded_and_an_oversized_one_is_skipped_whole() {
    assert_eq!(
        lines(b"ab\n0123456789abc\ncd\nlast", 8),
        vec![
            Ok(b"ab".to_vec()),
            Err("too long"),
            Ok(b"cd".to_vec()),
            Ok(b"last".to_vec())
        ]
    );
    assert_eq!(lines(b"", 8), vec![]);
    assert_eq!(lines(b"\n", 8), vec![Ok(vec![])]);
}

#[test]
fn a_job_is_an_error_result_unless_it_completed_with_exit_code_zero() {
    let r = job_result(
        json!({"job_id": 3, "status": "completed", "exit_code": 0, "signal": null, "error": null}),
    );
    assert!(!r.is_error);
    assert!(r.summary.is_none());
    let r = job_result(
        json!({"job_id": 4, "status": "failed", "exit_code": 3, "signal": null, "error": null}),
    );
    assert!(r.is_error);
    assert_eq!(r.summary.as_deref(), Some("job 4 failed (exit code 3)"));
    let r = job_result(
        json!({"job_id": 5, "status": "timed_out", "exit_code": null, "signal": 9, "error": "deadline 100ms passed"}),
    );
    assert!(r.is_error);
    assert_eq!(
        r.summary.as_deref(),
        Some("job 5 timed_out (signal 9): deadline 100ms passed")
    );
    let r = job_result(
        json!({"job_id": null, "status": "rejected", "exit_code": null, "signal": null, "error": "path escapes the root"}),
    );
    assert!(r.is_error);
    assert_eq!(
        r.summary.as_deref(),
        Some("the job rejected (no exit status): path escapes the root")
    );
}
