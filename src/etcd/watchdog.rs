//! The watchdog of one etcd watch stream: no stream may stay silent.
//!
//! HTTP/2 keep-alive catches a dead connection, not a live connection whose
//! watch delivers nothing (a stuck watcher inside etcd, a proxy that passes
//! pings but not data, a stream whose requests stopped flowing). So when the
//! stream has said nothing for `progress_interval`, the reflector asks etcd
//! for a progress notification (which also keeps a quiet namespace's head
//! moving), and asks again every interval; when nothing at all arrived for
//! `silence_timeout`, the watch is declared silent and re-created from head,
//! which loses nothing. Pure timing logic, tested without etcd.

use std::time::Duration;

use tokio::time::Instant;

/// Shortest gap between two progress requests made for waiting consistent
/// reads (KEP-2340's interval): enough to answer a quiet namespace within
/// ~100 ms, few enough to cost etcd nothing.
pub const MIN_REQUEST_GAP: Duration = Duration::from_millis(100);

/// What the reflector should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until [`Watchdog::deadline`].
    Wait,
    /// Send etcd a progress request.
    RequestProgress,
    /// The stream is silent: drop it and watch again from head.
    Restart,
}

/// The state of one watch stream's watchdog.
#[derive(Debug, Clone)]
pub struct Watchdog {
    progress_interval: Duration,
    silence_timeout: Duration,
    /// When the stream last delivered anything (or was opened).
    heard_at: Instant,
    /// When the last progress request still unanswered was sent.
    requested_at: Option<Instant>,
}

impl Watchdog {
    /// A watchdog for a stream opened at `now`.
    pub fn new(progress_interval: Duration, silence_timeout: Duration, now: Instant) -> Self {
        Self { progress_interval, silence_timeout, heard_at: now, requested_at: None }
    }

    /// The stream delivered a message at `now`.
    pub fn heard(&mut self, now: Instant) {
        self.heard_at = now;
        self.requested_at = None;
    }

    /// A progress request was sent at `now`.
    pub fn requested(&mut self, now: Instant) {
        self.requested_at = Some(now);
    }

    /// Whether a request for a waiting read may go out at `now` (at most one
    /// per [`MIN_REQUEST_GAP`] while unanswered).
    pub fn may_request(&self, now: Instant) -> bool {
        self.requested_at.is_none_or(|at| now.duration_since(at) >= MIN_REQUEST_GAP)
    }

    /// When [`Watchdog::check`] next has something to do.
    pub fn deadline(&self) -> Instant {
        let restart = self.heard_at + self.silence_timeout;
        let request = self.requested_at.unwrap_or(self.heard_at).max(self.heard_at) + self.progress_interval;
        restart.min(request)
    }

    /// What to do at `now`.
    pub fn check(&self, now: Instant) -> Action {
        if now.duration_since(self.heard_at) >= self.silence_timeout {
            return Action::Restart;
        }
        let since_request = self.requested_at.map(|at| now.duration_since(at));
        let idle = now.duration_since(self.heard_at) >= self.progress_interval;
        if idle && since_request.is_none_or(|d| d >= self.progress_interval) {
            return Action::RequestProgress;
        }
        Action::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_quiet_stream_is_asked_for_progress_every_interval_then_restarted() {
        let t0 = Instant::now();
        let mut dog = Watchdog::new(SECOND, 3 * SECOND, t0);
        assert_eq!(dog.check(t0 + SECOND / 2), Action::Wait);
        assert_eq!(dog.deadline(), t0 + SECOND);
        assert_eq!(dog.check(t0 + SECOND), Action::RequestProgress);
        dog.requested(t0 + SECOND);
        assert_eq!(dog.check(t0 + SECOND + SECOND / 2), Action::Wait, "one request per interval");
        assert_eq!(dog.deadline(), t0 + 2 * SECOND);
        assert_eq!(dog.check(t0 + 2 * SECOND), Action::RequestProgress, "asked again");
        dog.requested(t0 + 2 * SECOND);
        assert_eq!(dog.deadline(), t0 + 3 * SECOND);
        assert_eq!(dog.check(t0 + 3 * SECOND), Action::Restart, "nothing at all for the timeout");
    }

    #[test]
    fn any_message_resets_the_clocks() {
        let t0 = Instant::now();
        let mut dog = Watchdog::new(SECOND, 3 * SECOND, t0);
        dog.requested(t0 + SECOND);
        dog.heard(t0 + 2 * SECOND + SECOND / 2);
        assert_eq!(dog.check(t0 + 3 * SECOND), Action::Wait);
        assert_eq!(dog.deadline(), t0 + 3 * SECOND + SECOND / 2);
        assert_eq!(dog.check(t0 + 5 * SECOND + SECOND / 2), Action::Restart);
    }

    #[test]
    fn waiting_reads_ask_at_most_every_min_gap() {
        let t0 = Instant::now();
        let mut dog = Watchdog::new(SECOND, 3 * SECOND, t0);
        assert!(dog.may_request(t0));
        dog.requested(t0);
        assert!(!dog.may_request(t0 + MIN_REQUEST_GAP / 2));
        assert!(dog.may_request(t0 + MIN_REQUEST_GAP));
        dog.heard(t0 + MIN_REQUEST_GAP / 2);
        assert!(dog.may_request(t0 + MIN_REQUEST_GAP / 2), "answered: ask again at once");
    }
}
