//! [`Backoff`]: how long a watch waits before reconnecting.

use std::time::Duration;

/// Reconnection waits: the first attempt after a failure waits the
/// gateway's `retry:` (jittered by the gateway per connection), or
/// `min` when it sent none; each further consecutive failure doubles the
/// wait, up to `max`, drawn uniformly from its upper half (jitter, so
/// clients cut off together do not come back together). A `Retry-After`
/// from the gateway is a floor. A connection that delivers an event resets
/// the count.
///
/// ```
/// use std::time::Duration;
/// use etcd_cache_gateway_client::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(backoff.delay(1, None, None), Duration::from_millis(100));
/// let third = backoff.delay(3, None, None);
/// assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
/// let late = backoff.delay(30, None, None);
/// assert!(late >= Duration::from_millis(500) && late <= Duration::from_secs(1));
/// assert_eq!(backoff.delay(1, Some(Duration::from_secs(3)), None), Duration::from_secs(3));
/// assert_eq!(backoff.delay(1, None, Some(Duration::from_secs(2))), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
}

/// Default shortest wait, used when the gateway sent no `retry:`.
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Default longest wait: a gateway down for long is retried twice a minute.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Doublings beyond which the wait stays at `max` (and no arithmetic overflows).
const MAX_DOUBLINGS: u32 = 20;

impl Default for Backoff {
    fn default() -> Self {
        Self { min: DEFAULT_MIN_BACKOFF, max: DEFAULT_MAX_BACKOFF }
    }
}

impl Backoff {
    /// Waits from `min` to `max` (`max` is raised to `min` if lower).
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max: max.max(min) }
    }

    /// The wait before the attempt after `failures` consecutive failures
    /// (1 = the first reconnect), given the gateway's `retry:` and
    /// `Retry-After`.
    pub fn delay(
        &self,
        failures: u32,
        server_retry: Option<Duration>,
        retry_after: Option<Duration>,
    ) -> Duration {
        let base = server_retry.unwrap_or(self.min);
        let wait = if failures <= 1 {
            base
        } else {
            let doubled = base.saturating_mul(1 << (failures - 1).min(MAX_DOUBLINGS)).min(self.max.max(base));
            let half = doubled / 2;
            half + half.mul_f64(fastrand::f64())
        };
        wait.max(retry_after.unwrap_or_default())
    }
}
