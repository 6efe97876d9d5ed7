//! What a namespace's cache knows about itself and about etcd, for
//! `/readyz`, `/v1/namespaces`, `X-Cache-Status`/`Age` and metrics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::types::Revision;

/// Why the feed (the reflector's etcd watch) was re-established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchRestart {
    /// The stream failed (etcd down, connection reset, keep-alive timeout).
    Error,
    /// etcd ended the stream or cancelled the watch without a compaction.
    Closed,
    /// The watchdog found the stream alive but silent and re-created it.
    Silent,
    /// etcd compacted history the watch needed: the namespace re-lists.
    Compacted,
    /// The feed broke the cache's rules (a revision repeated): the namespace re-lists.
    Inconsistent,
}

impl WatchRestart {
    /// Every reason, in the order of [`Status::restarts`].
    pub const ALL: [Self; 5] = [Self::Error, Self::Closed, Self::Silent, Self::Compacted, Self::Inconsistent];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Closed => "closed",
            Self::Silent => "silent",
            Self::Compacted => "compacted",
            Self::Inconsistent => "inconsistent",
        }
    }
}

/// Shared, lock-free (but for one rarely written instant) state of a namespace.
#[derive(Debug)]
pub struct Status {
    ready: AtomicBool,
    connected: AtomicBool,
    /// A full load is under way after the first one (compaction, a broken feed).
    relisting: AtomicBool,
    /// When answers stopped being fresh (watch down or re-listing), if they are not now.
    unhealthy_since: Mutex<Option<Instant>>,
    etcd_revision: AtomicI64,
    etcd_compact_revision: AtomicI64,
    /// Milliseconds since `started` when the watch last delivered anything
    /// (an event, a progress notification, a created or cancel message).
    heard_at_ms: AtomicU64,
    started: Instant,
    /// Why the namespace last failed to load or lost its watch, in a sentence
    /// safe to show; cleared when the watch is back.
    last_error: Mutex<Option<String>>,
    /// Watch restarts, by [`WatchRestart`] reason in the order of [`WatchRestart::ALL`].
    restarts: [AtomicU64; WatchRestart::ALL.len()],
    /// Full loads of the namespace (the first one included).
    pub relists: AtomicU64,
    /// Consistent reads that had to wait for the cache to catch up.
    pub consistent_waits: AtomicU64,
    /// Consistent reads answered from etcd after the wait timed out.
    pub consistent_fallbacks: AtomicU64,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            ready: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            relisting: AtomicBool::new(false),
            unhealthy_since: Mutex::new(Some(Instant::now())),
            etcd_revision: AtomicI64::new(0),
            etcd_compact_revision: AtomicI64::new(0),
            heard_at_ms: AtomicU64::new(0),
            started: Instant::now(),
            last_error: Mutex::new(None),
            restarts: Default::default(),
            relists: AtomicU64::new(0),
            consistent_waits: AtomicU64::new(0),
            consistent_fallbacks: AtomicU64::new(0),
        }
    }
}

impl Status {
    /// Whether the first load finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether the etcd watch is currently established.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Whether a full load after the first one is under way: the state served
    /// meanwhile is the previous one, which may miss changes (keys deleted or
    /// written while the history was lost).
    pub fn is_relisting(&self) -> bool {
        self.relisting.load(Ordering::Acquire)
    }

    /// Whether answers reflect etcd as it is: the watch is up and no re-list
    /// is under way.
    pub fn is_fresh(&self) -> bool {
        self.is_connected() && !self.is_relisting()
    }

    /// Marks the watch established (`true`) or lost (`false`).
    pub fn set_connected(&self, connected: bool) {
        let was_fresh = self.is_fresh();
        self.connected.store(connected, Ordering::Release);
        self.freshness_changed(was_fresh);
    }

    /// Marks a re-list started (`true`) or finished (`false`).
    pub fn set_relisting(&self, relisting: bool) {
        let was_fresh = self.is_fresh();
        self.relisting.store(relisting, Ordering::Release);
        self.freshness_changed(was_fresh);
    }

    fn freshness_changed(&self, was_fresh: bool) {
        let fresh = self.is_fresh();
        if was_fresh != fresh {
            let mut since = self.unhealthy_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *since = if fresh { None } else { Some(Instant::now()) };
        }
    }

    /// How long answers have not been fresh (`None` while fresh).
    pub fn stale_for(&self) -> Option<Duration> {
        if self.is_fresh() {
            return None;
        }
        let since = self.unhealthy_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        since.map(|s| s.elapsed())
    }

    /// Records that the watch delivered something now.
    pub fn heard_from_etcd(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heard_at_ms.store(ms, Ordering::Release);
    }

    /// Time since the watch last delivered anything (since start when it never has).
    pub fn silent_for(&self) -> Duration {
        let heard = Duration::from_millis(self.heard_at_ms.load(Ordering::Acquire));
        self.started.elapsed().saturating_sub(heard)
    }

    /// Records why the namespace failed to load or lost its watch (`None`:
    /// it is healthy again).
    pub fn set_last_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }

    /// Why the namespace last failed to load or lost its watch, while that lasts.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Counts a watch restart.
    pub fn count_restart(&self, reason: WatchRestart) {
        self.restarts[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Watch restarts for `reason` so far.
    pub fn restarts(&self, reason: WatchRestart) -> u64 {
        self.restarts[reason as usize].load(Ordering::Relaxed)
    }

    /// The latest revision etcd reported in any response header.
    pub fn etcd_revision(&self) -> Revision {
        self.etcd_revision.load(Ordering::Acquire)
    }

    /// Records a revision etcd reported (revisions only move forward).
    pub fn observe_etcd_revision(&self, revision: Revision) {
        self.etcd_revision.fetch_max(revision, Ordering::AcqRel);
    }

    /// The last compaction etcd reported, 0 when none is known.
    pub fn etcd_compact_revision(&self) -> Revision {
        self.etcd_compact_revision.load(Ordering::Acquire)
    }

    /// Records a compaction etcd reported.
    pub fn observe_compaction(&self, revision: Revision) {
        self.etcd_compact_revision.fetch_max(revision, Ordering::AcqRel);
    }
}

/// A point-in-time report of one namespace (the shape of `/v1/namespaces` items).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NamespaceStatus {
    /// Namespace name.
    pub name: String,
    /// The cache holds the state exactly at this revision.
    pub revision: Revision,
    /// etcd's compaction revision (reads below it are gone from etcd), as
    /// last learnt: at each load, and whenever etcd refuses a revision.
    pub compacted_revision: Revision,
    /// The oldest revision the cache can serve from memory (older ones are
    /// read from etcd, as long as etcd has them).
    pub oldest_revision: Revision,
    /// The latest revision etcd reported.
    pub etcd_revision: Revision,
    /// Keys in the namespace at `revision`.
    pub keys: u64,
    /// Whether the first load finished.
    pub ready: bool,
    /// `fresh` while the watch is up and no re-list runs, else `stale`.
    pub status: &'static str,
    /// Whether a re-list is under way (answers are the previous state meanwhile).
    pub relisting: bool,
    /// Why the namespace failed to load or lost its watch, while that lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
