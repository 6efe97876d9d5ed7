//! Reads: resolving "which revision" ([`At`]) into a [`Snapshot`], waiting
//! or asking etcd as the consistency level requires (see `snapshot.rs` for
//! answering gets, ranges and counts from it).

use std::time::{Duration, Instant};

use super::error::ReadError;
use super::history::Index;
use super::snapshot::Snapshot;
use super::types::Revision;
use super::watch_cache::{View, WatchCache};

/// How often a waiting consistent read asks etcd for a progress notification
/// (KEP-2340's interval): frequent enough to answer a quiet namespace within
/// ~100 ms, rare enough to cost etcd nothing.
pub const PROGRESS_REQUEST_INTERVAL: Duration = Duration::from_millis(100);

/// Which state a read wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// The cache's current state, immediately (etcd's serializable read).
    Head,
    /// The state exactly at a revision (`revision=R`).
    Exact(Revision),
    /// The current state once head has reached a revision (`min_revision=R`).
    AtLeast(Revision),
    /// Linearizable: every write etcd acknowledged before the request (`consistent=true`).
    Consistent,
}

impl WatchCache {
    /// Resolves `at` into a snapshot, waiting or asking etcd as the
    /// consistency level requires.
    ///
    /// # Errors
    /// [`ReadError`] naming why the state cannot be served.
    pub async fn snapshot(&self, at: At) -> Result<Snapshot, ReadError> {
        let view = self.view();
        if view.history.is_empty() {
            return Err(ReadError::NotReady);
        }
        let options = &self.inner.options;
        match at {
            At::Head => Ok(self.at_head()),
            At::Exact(revision) => {
                if revision > view.head {
                    self.check_not_future(revision).await?;
                    if !self.catch_up(revision, options.consistent_read_timeout).await {
                        return Ok(self.etcd_snapshot(revision));
                    }
                }
                let view = self.view();
                Ok(match view.history.at(revision) {
                    Some(entry) => self.indexed_snapshot(entry.index.clone(), revision, entry.revision),
                    None => self.etcd_snapshot(revision),
                })
            }
            At::AtLeast(revision) => {
                if revision > view.head {
                    self.check_not_future(revision).await?;
                    let start = Instant::now();
                    if !self.catch_up(revision, options.wait_timeout).await {
                        return Err(ReadError::Timeout {
                            revision,
                            head: self.head(),
                            waited: start.elapsed(),
                        });
                    }
                }
                Ok(self.at_head())
            }
            At::Consistent => {
                // While the watch is down the cache cannot catch up: fail fast
                // instead of waiting out the timeout (stale reads stay available).
                if !self.inner.status.is_connected() {
                    return Err(ReadError::WatchDown);
                }
                let revision = self.inner.source.current_revision().await?;
                let status = &self.inner.status;
                status.observe_etcd_revision(revision);
                if self.head() < revision {
                    status.consistent_waits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if self.catch_up(revision, options.consistent_read_timeout).await {
                    Ok(self.at_head())
                } else {
                    status.consistent_fallbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // etcd's revision now, not the one asked before waiting:
                    // still linearizable (never older), and etcd may have
                    // compacted that one meanwhile (the chaos suite saw 410s).
                    let revision = self.inner.source.current_revision().await?.max(revision);
                    status.observe_etcd_revision(revision);
                    tracing::debug!(namespace = self.name(), revision, "consistent read falls back to etcd");
                    Ok(self.etcd_snapshot(revision))
                }
            }
        }
    }

    /// The in-memory snapshot at `view`'s head (`None` before the first load).
    pub fn snapshot_of(&self, view: &View) -> Option<Snapshot> {
        let latest = view.history.latest()?;
        Some(self.indexed_snapshot(latest.index.clone(), view.head, latest.revision))
    }

    fn at_head(&self) -> Snapshot {
        let view = self.view();
        let last_change = view.history.latest().map_or(view.head, |e| e.revision);
        self.indexed_snapshot(view.index(), view.head, last_change)
    }

    fn indexed_snapshot(&self, index: Index, revision: Revision, last_change: Revision) -> Snapshot {
        Snapshot::from_index(self.clone(), index, revision, last_change)
    }

    fn etcd_snapshot(&self, revision: Revision) -> Snapshot {
        Snapshot::from_etcd(self.clone(), revision)
    }

    /// Errs when `revision` is beyond etcd's, asking etcd when the last known
    /// revision is older.
    ///
    /// # Errors
    /// [`ReadError::FutureRevision`], or etcd's failure when it had to be asked.
    pub async fn check_not_future(&self, revision: Revision) -> Result<(), ReadError> {
        let status = &self.inner.status;
        if revision <= status.etcd_revision() {
            return Ok(());
        }
        let etcd_revision = self.inner.source.current_revision().await?;
        status.observe_etcd_revision(etcd_revision);
        if revision > etcd_revision {
            return Err(ReadError::FutureRevision { revision, etcd_revision });
        }
        Ok(())
    }

    /// Waits until head reaches `revision`, asking for progress notifications
    /// so a quiet namespace moves too. Returns whether it got there.
    pub async fn catch_up(&self, revision: Revision, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut updates = self.head_updates();
        loop {
            if *updates.borrow_and_update() >= revision {
                return true;
            }
            self.want_progress();
            let tick = deadline.min(tokio::time::Instant::now() + PROGRESS_REQUEST_INTERVAL);
            tokio::select! {
                changed = updates.changed() => if changed.is_err() { return false },
                () = tokio::time::sleep_until(tick) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return *updates.borrow() >= revision;
            }
        }
    }

    /// Waits until head reaches `revision`, without asking etcd for anything.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut updates = self.head_updates();
        tokio::time::timeout(timeout, updates.wait_for(|head| *head >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}
