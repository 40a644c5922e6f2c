//! Sizes and durations as a person writes them, for labels and messages.
use std::time::Duration;

/// A byte count as a person writes it: `64M`, `1G`, `512K`, else plain bytes.
pub fn size_text(bytes: u64) -> String {
    for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// A duration as a person writes it: `2s`, `500ms`.
pub fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
