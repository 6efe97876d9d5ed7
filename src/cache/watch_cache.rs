//! [`WatchCache`]: the facade one namespace's reflector writes to and every
//! request and subscriber reads from.
//!
//! One writer applies batches; each apply builds the next [`View`] (head,
//! history with index versions) and publishes it with an atomic pointer
//! swap, so readers never block the writer and hold a consistent view for as
//! long as they like. Values go to the shared [`ValueStore`] before the view
//! that names them is published.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::{Mutex, Notify, watch};

use super::error::ReadError;
use super::history::{Entry, EntryKind, History, Index, Stored, Superseded};
use super::policy::EvictionPolicy;
use super::source::Source;
use super::status::{NamespaceStatus, Status};
use super::types::{EventKind, KeyValue, Revision, RevisionBatch};
use super::values::{ValueKey, ValueStats, ValueStore};

/// Why subscribers lost their place in the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetReason {
    /// etcd compacted history the cache needed; the cache re-listed.
    Compacted,
    /// The subscriber fell behind the history window.
    Lagged,
    /// The cache re-listed for another reason (a feed inconsistency).
    Relisted,
}

impl ResetReason {
    /// The wire code (`reset` event's `code`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compacted => "compacted",
            Self::Lagged => "lagged",
            Self::Relisted => "relisted",
        }
    }
}

/// A re-list that started a new generation of history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetMark {
    /// The revision of the new snapshot.
    pub revision: Revision,
    /// Why the cache re-listed.
    pub reason: ResetReason,
}

/// One published state of the cache.
#[derive(Debug, Default)]
pub struct View {
    /// The cache holds the namespace's state exactly at this revision.
    pub head: Revision,
    /// The window (empty until the first load).
    pub history: History,
    /// Incremented by every full load.
    pub generation: u64,
    /// The latest re-list after the first load.
    pub last_reset: Option<ResetMark>,
}

impl View {
    /// The index at head (empty before the first load).
    pub fn index(&self) -> Index {
        self.history.latest().map(|e| e.index.clone()).unwrap_or_default()
    }
}

/// A batch the cache refused; the reflector re-lists on any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Nothing is loaded yet.
    #[error("the cache has no snapshot yet")]
    NotLoaded,
    /// The batch is not newer than head: the feed repeated or reordered history.
    #[error("batch at revision {revision} is not after head {head}")]
    NotIncreasing {
        /// The batch's revision.
        revision: Revision,
        /// The cache's head.
        head: Revision,
    },
    /// The batch is empty or its events carry another revision.
    #[error("malformed batch at revision {revision}")]
    Malformed {
        /// The batch's revision.
        revision: Revision,
    },
}

/// Timeouts and identity of one namespace's cache.
#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// Namespace name.
    pub name: String,
    /// Namespace index (part of the value store's key).
    pub id: u32,
    /// How long a consistent read waits before reading etcd.
    pub consistent_read_timeout: Duration,
    /// How long a `min_revision` read waits.
    pub wait_timeout: Duration,
    /// Bound on the history window's [`bytes`](History::bytes), on top of
    /// the policy's: the oldest revisions leave first.
    pub max_history_bytes: u64,
}

pub(super) struct Inner {
    pub(super) options: CacheOptions,
    pub(super) view: ArcSwap<View>,
    pub(super) head_tx: watch::Sender<Revision>,
    pub(super) values: ValueStore,
    pub(super) stats: ValueStats,
    pub(super) source: Arc<dyn Source>,
    policy: Box<dyn EvictionPolicy>,
    pub(super) status: Status,
    /// Wakes the reflector to ask etcd for a progress notification.
    progress_wanted: Notify,
    /// Serializes writers (there is one: the reflector; this makes it a rule).
    writer: Mutex<()>,
}

/// One namespace's watch cache; cheap to clone.
#[derive(Clone)]
pub struct WatchCache {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for WatchCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchCache").field("name", &self.inner.options.name).finish_non_exhaustive()
    }
}

impl WatchCache {
    /// An empty (not ready) cache.
    pub fn new(
        options: CacheOptions,
        values: ValueStore,
        source: Arc<dyn Source>,
        policy: Box<dyn EvictionPolicy>,
    ) -> Self {
        let (head_tx, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                options,
                view: ArcSwap::from_pointee(View::default()),
                head_tx,
                values,
                stats: ValueStats::default(),
                source,
                policy,
                status: Status::default(),
                progress_wanted: Notify::new(),
                writer: Mutex::new(()),
            }),
        }
    }

    /// Namespace name.
    pub fn name(&self) -> &str {
        &self.inner.options.name
    }

    /// Namespace index (stable for the process's life).
    pub fn id(&self) -> u32 {
        self.inner.options.id
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        self.inner.view.load_full()
    }

    /// The current head revision (0 before the first load).
    pub fn head(&self) -> Revision {
        self.inner.view.load().head
    }

    /// The namespace's status and counters.
    pub fn status(&self) -> &Status {
        &self.inner.status
    }

    /// Value hit/miss counters.
    pub fn value_stats(&self) -> &ValueStats {
        &self.inner.stats
    }

    /// The cache's source of truth (for what only etcd has: old history).
    pub fn source(&self) -> &Arc<dyn Source> {
        &self.inner.source
    }

    /// The eviction policy in force.
    pub fn policy(&self) -> &dyn EvictionPolicy {
        self.inner.policy.as_ref()
    }

    /// A report for `/v1/namespaces` and `/readyz`.
    pub fn report(&self) -> NamespaceStatus {
        let view = self.view();
        let status = &self.inner.status;
        NamespaceStatus {
            name: self.name().to_owned(),
            revision: view.head,
            compacted_revision: status.etcd_compact_revision(),
            oldest_revision: view.history.oldest_revision().unwrap_or(0),
            etcd_revision: status.etcd_revision().max(view.head),
            keys: view.history.latest().map_or(0, |e| e.index.len() as u64),
            ready: status.is_ready(),
            status: if status.is_fresh() { "fresh" } else { "stale" },
            relisting: status.is_relisting(),
            last_error: status.last_error(),
        }
    }

    /// A receiver woken whenever head moves.
    pub fn head_updates(&self) -> watch::Receiver<Revision> {
        self.inner.head_tx.subscribe()
    }

    /// Asks the reflector for a progress notification (coalesced).
    pub fn want_progress(&self) {
        self.inner.progress_wanted.notify_one();
    }

    /// Resolves when a progress notification is wanted (for the reflector).
    pub async fn progress_wanted(&self) {
        self.inner.progress_wanted.notified().await;
    }

    pub(super) fn value_key(&self, key: Bytes, mod_revision: Revision) -> ValueKey {
        ValueKey { namespace: self.inner.options.id, key, mod_revision }
    }

    /// Starts a full load of the namespace at `revision`.
    pub fn snapshot_builder(&self, revision: Revision) -> SnapshotBuilder {
        SnapshotBuilder { cache: self.clone(), revision, index: Index::new(), inline: (0, 0) }
    }

    /// Applies one revision's events atomically.
    ///
    /// # Errors
    /// [`ApplyError`] when the batch does not follow head; the cache is unchanged.
    pub async fn apply(&self, batch: RevisionBatch) -> Result<(), ApplyError> {
        let _writer = self.inner.writer.lock().await;
        let view = self.view();
        let latest = view.history.latest().ok_or(ApplyError::NotLoaded)?;
        let revision = batch.revision;
        if revision <= view.head {
            return Err(ApplyError::NotIncreasing { revision, head: view.head });
        }
        if batch.events.is_empty() || batch.events.iter().any(|e| e.kv.meta.mod_revision != revision) {
            return Err(ApplyError::Malformed { revision });
        }
        let mut index = latest.index.clone();
        let mut superseded = Vec::new();
        for event in &batch.events {
            let key = event.kv.key.clone();
            let old = match event.kind {
                EventKind::Put => {
                    let value = self.keep(&key, revision, event.kv.value.clone()).await;
                    index.insert(key.clone(), Stored { meta: event.kv.meta, value })
                }
                EventKind::Delete => index.remove(&key),
            };
            if let Some(old) = old {
                superseded.push(Superseded::of(key, &old));
            }
        }
        let entry = Entry::new(
            revision,
            EntryKind::Batch,
            batch.events.into_boxed_slice(),
            index,
            superseded.into_boxed_slice(),
        );
        let mut history = view.history.clone();
        history.push(Arc::new(entry));
        self.publish(&view, revision, history).await;
        Ok(())
    }

    /// Moves head to `revision` without changes (a progress notification):
    /// the namespace had no events up to it. Ignored unless it moves forward.
    pub async fn advance(&self, revision: Revision) {
        let _writer = self.inner.writer.lock().await;
        let view = self.view();
        if revision <= view.head || view.history.is_empty() {
            return;
        }
        self.publish(&view, revision, view.history.clone()).await;
    }

    /// Publishes the next view: trims the window by the policy, drops values
    /// only trimmed revisions could read, and wakes waiters.
    async fn publish(&self, view: &View, head: Revision, mut history: History) {
        let window_start = self.inner.policy.window_start(head, &history, Instant::now());
        let dropped = history.trim(window_start, self.inner.options.max_history_bytes);
        let link = match (view.history.latest(), history.latest()) {
            (Some(old), Some(new)) if !Arc::ptr_eq(old, new) => Some((Arc::clone(old), Arc::clone(new))),
            _ => None,
        };
        self.inner.view.store(Arc::new(View {
            head,
            history,
            generation: view.generation,
            last_reset: view.last_reset,
        }));
        // Published: watchers at the previous entry may follow to this one.
        if let Some((old, new)) = link {
            old.link(&new);
        }
        self.inner.head_tx.send_replace(head);
        self.forget_superseded(dropped.iter()).await;
    }

    /// Keeps the value of a new version: with the index when the budget
    /// allows (returned), else in the value cache (`None`).
    /// (Taken by value: a load moves each value into the index, and an
    /// unshared `Bytes` is not promoted to a shared one with its own
    /// allocation.)
    async fn keep(&self, key: &Bytes, mod_revision: Revision, value: Bytes) -> Option<Bytes> {
        let values = &self.inner.values;
        if values.admit_inline(value.len()) {
            return Some(value);
        }
        values.insert(self.value_key(key.clone(), mod_revision), value).await;
        None
    }

    async fn forget_superseded(&self, entries: impl Iterator<Item = &Arc<Entry>>) {
        let values = &self.inner.values;
        for entry in entries {
            for old in &entry.superseded {
                match old.inline_len {
                    Some(len) => values.release_inline(len as u64, 1),
                    None => values.invalidate(&self.value_key(old.key.clone(), old.mod_revision)).await,
                }
            }
        }
    }

    /// The values an index kept inline are gone with it.
    fn forget_inline(&self, index: &Index) {
        let (mut len, mut count) = (0, 0);
        for value in index.values().filter_map(|stored| stored.value.as_ref()) {
            len += value.len() as u64;
            count += 1;
        }
        self.inner.values.release_inline(len, count);
    }

    /// The error of a read at `revision`, which etcd said it compacted:
    /// names the oldest revision still available, which is etcd's
    /// compaction revision (learnt from etcd when not known yet); failing
    /// that, the start of the window.
    pub async fn compacted(&self, revision: Revision) -> ReadError {
        let status = &self.inner.status;
        if status.etcd_compact_revision() <= revision {
            match self.inner.source.compact_revision(revision).await {
                Ok(compact_revision) => status.observe_compaction(compact_revision),
                Err(e) => {
                    tracing::debug!(namespace = self.name(), error = %e, "etcd's compaction revision is unknown")
                }
            }
        }
        let known = status.etcd_compact_revision();
        let compact_revision = if known > revision {
            known
        } else {
            self.view().history.oldest_revision().unwrap_or(0).max(known)
        };
        ReadError::Compacted { revision, compact_revision }
    }

    async fn install(&self, revision: Revision, index: Index, reason: ResetReason) {
        let _writer = self.inner.writer.lock().await;
        let old = self.view();
        let entry = Entry::new(revision, EntryKind::Snapshot, Box::new([]), index, Box::new([]));
        let first = old.history.is_empty();
        self.inner.view.store(Arc::new(View {
            head: revision,
            history: History::new(Arc::new(entry)),
            generation: old.generation + 1,
            last_reset: if first { None } else { Some(ResetMark { revision, reason }) },
        }));
        self.inner.status.relists.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.status.set_ready();
        self.inner.status.set_relisting(false);
        self.inner.head_tx.send_replace(revision);
        self.forget_superseded(old.history.entries().iter()).await;
        if let Some(latest) = old.history.latest() {
            self.forget_inline(&latest.index);
        }
    }
}

/// Accumulates a paginated full load; [`SnapshotBuilder::install`] publishes
/// it as the state at its revision. Values are kept as they arrive (with the
/// index or in the value cache), so only what the budget allows stays in
/// memory; a builder dropped before `install` gives its share back.
pub struct SnapshotBuilder {
    cache: WatchCache,
    revision: Revision,
    index: Index,
    /// Bytes and number of the values of `index` kept inline (released if
    /// never installed).
    inline: (u64, u64),
}

impl SnapshotBuilder {
    /// The revision being loaded.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Adds one page of key-values in key order, after every key added so far.
    ///
    /// The index is a B-tree whose full nodes split in half, so keys added
    /// in order would leave every leaf half full for good. Every other key
    /// goes in first and the ones between them after, which fills those
    /// half-full leaves without splitting them: about 100 bytes less per
    /// key (BENCHMARKS.md, "Memory per key").
    pub async fn add(&mut self, kvs: impl IntoIterator<Item = KeyValue>) {
        let mut between = Vec::new();
        for (i, KeyValue { key, value, meta }) in kvs.into_iter().enumerate() {
            let value = self.cache.keep(&key, meta.mod_revision, value).await;
            if let Some(value) = &value {
                self.inline.0 += value.len() as u64;
                self.inline.1 += 1;
            }
            if i % 2 == 0 {
                self.index.insert(key, Stored { meta, value });
            } else {
                between.push((key, Stored { meta, value }));
            }
        }
        self.index.extend(between);
    }

    /// Number of keys loaded so far.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no key was loaded.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Publishes the loaded state; subscribers older than it get a reset
    /// with `reason` (ignored for the first load).
    pub async fn install(mut self, reason: ResetReason) {
        self.inline = (0, 0);
        let index = std::mem::take(&mut self.index);
        self.cache.install(self.revision, index, reason).await;
    }
}

impl Drop for SnapshotBuilder {
    fn drop(&mut self) {
        let (len, count) = self.inline;
        self.cache.inner.values.release_inline(len, count);
    }
}
