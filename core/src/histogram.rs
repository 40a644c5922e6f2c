//! A fixed-bucket histogram (Prometheus-style: each bucket counts values up to its upper
//! bound). Recording a value allocates nothing, so it can sit on hot paths such as a WAL sync
//! pass; the metrics endpoint renders it cumulatively.

/// Counts of values by upper bound. `bounds` ascend and end with `u64::MAX`, the unbounded
/// bucket, so every value lands in exactly one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets<const N: usize> {
    pub bounds: &'static [u64; N],
    /// `counts[i]`: values at most `bounds[i]` and above `bounds[i - 1]`.
    pub counts: [u64; N],
    /// Sum of the values recorded (saturating).
    pub sum: u64,
}

impl<const N: usize> Buckets<N> {
    /// Empty buckets with these bounds (ascending, the last `u64::MAX`).
    pub const fn new(bounds: &'static [u64; N]) -> Self {
        assert!(
            N > 0 && bounds[N - 1] == u64::MAX,
            "the last bound is unbounded"
        );
        Buckets {
            bounds,
            counts: [0; N],
            sum: 0,
        }
    }

    pub fn record(&mut self, value: u64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        // partition_point is at most N - 1 because the last bound is u64::MAX.
        self.counts[bucket.min(N - 1)] += 1;
        self.sum = self.sum.saturating_add(value);
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

    #[test]
    fn values_land_in_the_bucket_of_their_upper_bound() {
        let mut h = Buckets::new(&BOUNDS);
        for v in [0, 25, 26, 1_000, 1_001, u64::MAX] {
            h.record(v);
        }
        assert_eq!(h.counts, [2, 1, 1, 2]);
        assert_eq!(h.count(), 6);
        assert_eq!(h.sum, u64::MAX, "the sum saturates");
    }
}
