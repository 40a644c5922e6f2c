//! A fixed-bucket histogram (Prometheus-style: each bucket counts values up to its upper
//! bound). Recording a value allocates nothing, so it can sit on hot paths such as a WAL sync
//! pass; the metrics endpoint renders it cumulatively.

/// Whether `bounds` can bound buckets: not empty, strictly ascending, and ending with
/// `u64::MAX` (the unbounded bucket), so every value lands in exactly one bucket. A `const` so
/// a bound table can be checked where it is defined, at compile time.
pub const fn bounds_are_valid(bounds: &[u64]) -> bool {
    if bounds.is_empty() || bounds[bounds.len() - 1] != u64::MAX {
        return false;
    }
    let mut i = 1;
    while i < bounds.len() {
        if bounds[i - 1] >= bounds[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Counts of values by upper bound. The bounds are valid ([`bounds_are_valid`]): they are
/// checked when the buckets are made and cannot be changed after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets<const N: usize> {
    bounds: &'static [u64; N],
    /// `counts[i]`: values at most `bounds[i]` and above `bounds[i - 1]`.
    counts: [u64; N],
    /// Sum of the values recorded (saturating).
    sum: u64,
}

impl<const N: usize> Buckets<N> {
    /// Empty buckets with these bounds, or `None` when they are not valid.
    pub const fn try_new(bounds: &'static [u64; N]) -> Option<Self> {
        if !bounds_are_valid(bounds) {
            return None;
        }
        Some(Buckets {
            bounds,
            counts: [0; N],
            sum: 0,
        })
    }

    /// Empty buckets with these bounds, which must be valid: for bound tables checked where
    /// they are defined (`const _: () = assert!(bounds_are_valid(&TABLE));`), so this cannot
    /// fail at run time.
    pub const fn new(bounds: &'static [u64; N]) -> Self {
        match Self::try_new(bounds) {
            Some(buckets) => buckets,
            None => panic!("histogram bounds must ascend and end with u64::MAX"),
        }
    }

    /// Counts `value` in the bucket of the first bound at or above it. Allocation-free.
    pub fn record(&mut self, value: u64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        // partition_point is at most N - 1 because the last bound is u64::MAX.
        self.counts[bucket.min(N - 1)] += 1;
        self.sum = self.sum.saturating_add(value);
    }

    /// The upper bounds, ascending, the last `u64::MAX`.
    pub fn bounds(&self) -> &'static [u64; N] {
        self.bounds
    }

    /// `counts()[i]`: values at most `bounds()[i]` and above `bounds()[i - 1]`.
    pub fn counts(&self) -> &[u64; N] {
        &self.counts
    }

    /// Sum of the values recorded (saturating).
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BOUNDS: [u64; 4] = [25, 50, 1_000, u64::MAX];
    const _: () = assert!(bounds_are_valid(&BOUNDS));

    #[test]
    fn bounds_must_ascend_strictly_and_end_unbounded() {
        static DESCENDING: [u64; 3] = [50, 25, u64::MAX];
        static REPEATED: [u64; 3] = [25, 25, u64::MAX];
        static BOUNDED: [u64; 2] = [25, 50];
        static NONE: [u64; 0] = [];
        assert!(bounds_are_valid(&[u64::MAX]));
        assert!(Buckets::try_new(&BOUNDS).is_some());
        assert_eq!(Buckets::try_new(&DESCENDING), None);
        assert_eq!(Buckets::try_new(&REPEATED), None);
        assert_eq!(Buckets::try_new(&BOUNDED), None);
        assert_eq!(Buckets::try_new(&NONE), None);
        const MADE_AT_COMPILE_TIME: Buckets<4> = Buckets::new(&BOUNDS);
        assert_eq!(MADE_AT_COMPILE_TIME.bounds(), &BOUNDS);
    }

    #[test]
    fn values_land_in_the_bucket_of_their_upper_bound() {
        let mut h = Buckets::new(&BOUNDS);
        for v in [0, 25, 26, 1_000, 1_001, u64::MAX] {
            h.record(v);
        }
        assert_eq!(h.counts(), &[2, 1, 1, 2]);
        assert_eq!(h.count(), 6);
        assert_eq!(h.sum(), u64::MAX, "the sum saturates");
    }
}
