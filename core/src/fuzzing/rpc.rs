//! Fuzz body of the socket protocol's request parsing.

use serde_json::{json, Value};

use crate::protocol::{
    error_response, parse_request, parse_request_value, response, Call, Rejection, Request,
    BATCH_REQUESTS_MAX, LIST_PAGE_MAX,
};

/// Fuzz body for request parsing (`fuzz/fuzz_targets/rpc_request.rs`, replayed over the
/// committed corpus by `tests/rpc_fuzz_corpus.rs`). Checks, for any bytes: no panic; a
/// rejection carries a non-empty message and an id that is null, a string or a number; every
/// response line built from the outcome is one line of valid JSON. Bytes that read as a JSON
/// array are also taken as a batch: each member (up to the batch bound) is checked the same way.
pub fn request(data: &[u8]) {
    check_outcome(parse_request(data));
    if let Ok(Value::Array(members)) = serde_json::from_slice::<Value>(data) {
        for member in members.into_iter().take(BATCH_REQUESTS_MAX) {
            check_outcome(parse_request_value(member));
        }
    }
}

fn check_outcome(outcome: Result<Request, Rejection>) {
    match outcome {
        Ok(request) => {
            let id = request.id.clone().unwrap_or(Value::Null);
            let line = response(&id, &json!({"method": request.call.method()}));
            assert!(!line.contains('\n'));
            assert!(serde_json::from_str::<Value>(&line).is_ok());
            if let Call::Run(run) = &request.call {
                assert!(run.limits.max_output_bytes <= crate::exec::OUTPUT_BYTES_MAX);
                assert!(run.root.as_ref().is_none_or(|r| r.is_absolute()));
            }
            if let Call::JobsList {
                page: Some(page), ..
            } = &request.call
            {
                assert!((1..=LIST_PAGE_MAX).contains(&page.limit));
            }
            if let Call::SessionsList { page: Some(page) } = &request.call {
                assert!((1..=LIST_PAGE_MAX).contains(&page.limit));
            }
        }
        Err(rejection) => {
            assert!(!rejection.error.message.is_empty());
            assert!(matches!(
                rejection.id,
                Value::Null | Value::String(_) | Value::Number(_)
            ));
            let line = error_response(&rejection.id, &rejection.error);
            assert!(!line.contains('\n'));
            assert!(serde_json::from_str::<Value>(&line).is_ok());
        }
    }
}
