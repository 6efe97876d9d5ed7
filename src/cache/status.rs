//! What a namespace's cache knows about itself and about etcd, for
//! `/readyz`, `/v1/namespaces`, `X-Cache-Status`/`Age` and metrics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::types::Revision;

/// Shared, lock-free (but for one rarely written instant) state of a namespace.
#[derive(Debug)]
pub struct Status {
    ready: AtomicBool,
    connected: AtomicBool,
    /// When the watch was last healthy, if it is not now.
    unhealthy_since: Mutex<Option<Instant>>,
    etcd_revision: AtomicI64,
    etcd_compact_revision: AtomicI64,
    /// Times the reflector re-established its watch after a failure.
    pub reconnects: AtomicU64,
    /// Full loads of the namespace (the first one included).
    pub relists: AtomicU64,
    /// Compactions that cancelled the watch.
    pub compactions: AtomicU64,
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
            unhealthy_since: Mutex::new(Some(Instant::now())),
            etcd_revision: AtomicI64::new(0),
            etcd_compact_revision: AtomicI64::new(0),
            reconnects: AtomicU64::new(0),
            relists: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
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

    /// Whether the etcd watch is currently established (answers are fresh).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Marks the watch established (`true`) or lost (`false`).
    pub fn set_connected(&self, connected: bool) {
        let was = self.connected.swap(connected, Ordering::AcqRel);
        if was != connected {
            let mut since = self.unhealthy_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *since = if connected { None } else { Some(Instant::now()) };
        }
    }

    /// How long the watch has been down (`None` while connected).
    pub fn stale_for(&self) -> Option<Duration> {
        if self.is_connected() {
            return None;
        }
        let since = self.unhealthy_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        since.map(|s| s.elapsed())
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
    /// The oldest revision servable from memory.
    pub compacted_revision: Revision,
    /// The latest revision etcd reported.
    pub etcd_revision: Revision,
    /// Keys in the namespace at `revision`.
    pub keys: u64,
    /// Whether the first load finished.
    pub ready: bool,
    /// `fresh` while the watch is up, else `stale`.
    pub status: &'static str,
}
