//! Jittered exponential backoff for reconnecting the watch.

use std::time::Duration;

/// Delays that double from `min` to `max`, each jittered to between half and
/// all of the nominal delay (so many gateways restarting together spread out).
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff between `min` and `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max: max.max(min), attempt: 0 }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.min.saturating_mul(1 << self.attempt.min(30)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = nominal / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_max_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let nominal = Duration::from_millis(100 * (1 << i)).min(Duration::from_secs(1));
            assert!(*d >= nominal / 2 && *d <= nominal, "attempt {i}: {d:?} vs {nominal:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
