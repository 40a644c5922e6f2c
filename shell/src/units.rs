//! Human units on the command line: sizes (`64M`, `1G`, `512KiB`, `4096`) and durations
//! (`500ms`, `2s`, `1m`).
use std::time::Duration;

/// Parses a size: plain bytes or a number with K/M/G/T (powers of 1024; `KiB`, `KB`, `k` all
/// mean the same). Overflow and empty numbers are errors.
#[allow(dead_code)] // the job-limit flags (--memory, --max-output) use it
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("size {text:?}: expected a number, e.g. 64M"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("size {text:?}: number too large"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "size {text:?}: unknown unit {other:?} (use K, M, G, T)"
            ))
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {text:?}: too large"))
}

/// Parses a duration with a unit: `ms`, `s`, `m`, `h` (a bare number is an error: say the unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "duration {text:?}: expected a number, e.g. 500ms or 2s"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("duration {text:?}: number too large"))?;
    let ms_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "" => return Err(format!("duration {text:?}: missing unit (ms, s, m, h)")),
        other => {
            return Err(format!(
                "duration {text:?}: unknown unit {other:?} (ms, s, m, h)"
            ))
        }
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {text:?}: too large"))
}

/// A duration as [`parse_duration`] reads it back (whole seconds, else milliseconds), for
/// defaults shown in `--help`.
pub fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms > 0 && ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_text_reads_back() {
        for ms in [0, 1, 250, 1_000, 10_000, 60_000, 90_500, 3_600_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&duration_text(d)), Ok(d), "{ms} ms");
        }
        assert_eq!(duration_text(Duration::from_secs(60)), "60s");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert!(parse_size("").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("18446744073709551615h").is_err());
    }
}
