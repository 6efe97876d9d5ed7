//! Eviction policies, chosen at startup (`[cache] policy`). Each decides how
//! much history the window keeps and whether idle values are dropped. A new
//! policy is a new implementation of [`EvictionPolicy`], not an edit across
//! the cache.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use super::history::History;
use super::types::Revision;

/// How long history and values are kept.
pub trait EvictionPolicy: Send + Sync + Debug {
    /// The policy's name, for logs and `/v1/namespaces`.
    fn name(&self) -> &'static str;

    /// The oldest revision the history window must still serve, given the
    /// head and the history. Entries wholly before it are trimmed (the last
    /// one at or before it stays as the base state).
    fn window_start(&self, head: Revision, history: &History, now: Instant) -> Revision;

    /// Time-to-idle of cached values, when idle values are dropped.
    fn value_idle_timeout(&self) -> Option<Duration>;
}

/// Keep the last `history_revisions` revisions; current values stay until
/// the byte budget forces them out.
#[derive(Debug, Clone, Copy)]
pub struct RevisionPolicy {
    /// Number of revisions kept (head − N < revision).
    pub history_revisions: u64,
}

impl EvictionPolicy for RevisionPolicy {
    fn name(&self) -> &'static str {
        "revision"
    }

    fn window_start(&self, head: Revision, _: &History, _: Instant) -> Revision {
        let kept = i64::try_from(self.history_revisions).unwrap_or(i64::MAX);
        head.saturating_sub(kept).saturating_add(1)
    }

    fn value_idle_timeout(&self) -> Option<Duration> {
        None
    }
}

/// Keep the batches applied in the last `ttl`; values not read or written for
/// `ttl` are dropped and loaded back from etcd on the next read.
#[derive(Debug, Clone, Copy)]
pub struct TtlPolicy {
    /// How long history and idle values are kept.
    pub ttl: Duration,
}

impl EvictionPolicy for TtlPolicy {
    fn name(&self) -> &'static str {
        "ttl"
    }

    fn window_start(&self, head: Revision, history: &History, now: Instant) -> Revision {
        let cutoff = now.checked_sub(self.ttl);
        history
            .entries()
            .iter()
            .find(|e| cutoff.is_none_or(|c| e.applied_at >= c))
            .map_or(head, |e| e.revision)
    }

    fn value_idle_timeout(&self) -> Option<Duration> {
        Some(self.ttl)
    }
}
