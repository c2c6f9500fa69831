//! The one retry policy every stage uses (WAL writes, the roller, sink
//! uploads, redelivery): exponential from a first delay up to a cap, each
//! delay jittered ±20 % so many files or nodes retrying together spread out
//! instead of hitting a recovering store at once.

use std::time::Duration;

/// The delays of one thing being retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) const fn new(first: Duration, max: Duration) -> Self {
        Self { next: first, max }
    }

    /// The delay before the next attempt (jittered); the one after doubles.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d.mul_f64(rand::random_range(0.8..1.2))
    }

    /// The delay the next attempt would wait, before jitter (for logs).
    pub(crate) fn peek(&self) -> Duration {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<Duration> = (0..4).map(|_| b.next_delay()).collect();
        for (d, base) in delays.iter().zip([100u64, 200, 350, 350]) {
            let base = Duration::from_millis(base);
            assert!(
                *d >= base.mul_f64(0.8) && *d <= base.mul_f64(1.2),
                "{d:?} vs {base:?}"
            );
        }
        assert_eq!(b.peek(), Duration::from_millis(350));
    }
}
