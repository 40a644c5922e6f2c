//! Where a one-shot run's time goes, step by step: with the `phase-timing` feature, each
//! [`mark`] records the time since the previous one, and [`report`] prints them to stderr
//! (`vigil run` does at its end). Without the feature both are empty and compile to nothing.
//!
//! ```sh
//! cargo build --release -p vigil-shell --features phase-timing
//! target/release/vigil run exec --args '{"argv":["/bin/true"]}' 2>&1 >/dev/null | grep '^phase'
//! ```

#[cfg(feature = "phase-timing")]
mod on {
    use std::sync::Mutex;
    use std::time::Instant;

    /// Most marks kept; later ones are dropped (a long-lived process marks every job).
    const MARKS_MAX: usize = 256;

    static MARKS: Mutex<Vec<(&'static str, Instant)>> = Mutex::new(Vec::new());

    pub fn mark(step: &'static str) {
        let now = Instant::now();
        let mut marks = MARKS.lock().unwrap_or_else(|p| p.into_inner());
        if marks.len() < MARKS_MAX {
            marks.push((step, now));
        }
    }

    pub fn report() {
        let marks = MARKS.lock().unwrap_or_else(|p| p.into_inner());
        let Some(&(_, first)) = marks.first() else {
            return;
        };
        let mut text = String::new();
        let mut prev = first;
        for (step, at) in marks.iter() {
            text.push_str(&format!(
                "phase {:>7} us {:>6} us  {step}\n",
                (*at - first).as_micros(),
                (*at - prev).as_micros()
            ));
            prev = *at;
        }
        eprint!("{text}");
    }
}

/// Marks the end of step `step` (the time since the previous mark is its cost).
#[inline(always)]
pub fn mark(step: &'static str) {
    #[cfg(feature = "phase-timing")]
    on::mark(step);
    #[cfg(not(feature = "phase-timing"))]
    let _ = step;
}

/// Prints every mark so far to stderr: time since the first, and since the one before.
#[inline(always)]
pub fn report() {
    #[cfg(feature = "phase-timing")]
    on::report();
}
