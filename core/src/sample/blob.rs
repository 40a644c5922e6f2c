//! The telemetry blob of the log's job records: a [`Sample`] in postcard, the bytes a job's
//! start and end records carry as telemetry before and after. Empty when there was no sample.
use super::Sample;

/// The blob of `sample` (empty for `None`, or if the sample cannot be encoded).
#[cfg(feature = "std")]
pub fn encode_blob(sample: Option<&Sample>) -> std::vec::Vec<u8> {
    sample
        .and_then(|s| postcard::to_allocvec(s).ok())
        .unwrap_or_default()
}

/// The sample a blob holds; `None` when it is empty or unreadable.
pub fn decode_blob(bytes: &[u8]) -> Option<Sample> {
    if bytes.is_empty() {
        return None;
    }
    postcard::from_bytes(bytes).ok()
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn samples_round_trip_through_the_telemetry_blob() {
        let s = Sample {
            seq: 7,
            ..Sample::default()
        };
        let blob = encode_blob(Some(&s));
        assert_eq!(decode_blob(&blob), Some(s));
        assert!(encode_blob(None).is_empty());
        assert_eq!(decode_blob(&[]), None);
        assert_eq!(decode_blob(&[0xff; 3]), None);
    }
}
