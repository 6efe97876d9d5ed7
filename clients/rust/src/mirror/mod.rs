//! [`Mirror`]: a local copy of a selection, kept exactly equal to etcd's
//! state at the mirror's revision by a [`Watch`] with a snapshot, across
//! reconnections and resets.

mod state;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt};
use imbl::OrdMap;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use self::state::{Machine, View};
use crate::Revision;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::types::{Event, KeyValue};
use crate::watch::{
    Backoff, DEFAULT_IDLE_TIMEOUT, OnGap, ResetReason, Selection, Watch, WatchEvent, WatchOptions,
};

/// Default [`MirrorOptions::progress_interval`]: a quiet selection's
/// revision moves at least this often, which bounds how long
/// [`Mirror::wait_for_revision`] waits for a revision written outside the
/// selection.
pub const DEFAULT_MIRROR_PROGRESS: Duration = Duration::from_secs(5);

/// Default [`MirrorOptions::changes_capacity`]: notifications a slow
/// subscriber may fall behind before it gets [`MirrorEvent::Lagged`].
pub const DEFAULT_CHANGES_CAPACITY: usize = 1024;

/// How a mirror watches.
///
/// ```
/// use std::time::Duration;
/// use etcd_cache_gateway_client::MirrorOptions;
///
/// let options = MirrorOptions::new().progress_interval(Duration::from_secs(1)).changes_capacity(64);
/// assert_eq!(options, MirrorOptions::new().changes_capacity(64).progress_interval(Duration::from_secs(1)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorOptions {
    progress_interval: Duration,
    idle_timeout: Duration,
    backoff: Backoff,
    changes_capacity: usize,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        Self {
            progress_interval: DEFAULT_MIRROR_PROGRESS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            backoff: Backoff::default(),
            changes_capacity: DEFAULT_CHANGES_CAPACITY,
        }
    }
}

impl MirrorOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// How often a quiet selection's revision moves (default
    /// [`DEFAULT_MIRROR_PROGRESS`]; the gateway accepts 1 s to 1 h).
    #[must_use]
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval;
        self
    }

    /// As [`WatchOptions::idle_timeout`].
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// As [`WatchOptions::backoff`].
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Notifications a subscriber may fall behind (default [`DEFAULT_CHANGES_CAPACITY`]).
    #[must_use]
    pub fn changes_capacity(mut self, capacity: usize) -> Self {
        self.changes_capacity = capacity.max(1);
        self
    }

    fn watch_options(&self) -> WatchOptions {
        WatchOptions::new()
            .snapshot()
            .on_gap(OnGap::Reset)
            .progress_interval(self.progress_interval)
            .idle_timeout(self.idle_timeout)
            .backoff(self.backoff)
    }
}

/// What a mirror's subscribers are told ([`Mirror::subscribe`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MirrorEvent {
    /// The whole state was replaced: the first load (`reason: None`), or
    /// after a reset.
    Replaced {
        /// The revision of the new state.
        revision: Revision,
        /// Why, after a reset.
        reason: Option<ResetReason>,
        /// The new state itself.
        snapshot: MirrorSnapshot,
    },
    /// The changes of one revision, applied; each event's `prev_kv` is the
    /// mirror's key-value before it.
    Changed {
        /// The revision.
        revision: Revision,
        /// The events, in etcd's order.
        events: Arc<[Event]>,
    },
    /// This subscriber fell behind and missed `missed` notifications:
    /// re-read the state ([`Mirror::snapshot`]).
    Lagged {
        /// How many.
        missed: u64,
    },
    /// The mirror stopped for good ([`Mirror::error`]).
    Failed(Error),
}

/// A consistent copy of the mirror's state at one revision; it stays as it
/// is while the mirror moves on (a cheap, structurally shared clone).
#[derive(Debug, Clone)]
pub struct MirrorSnapshot {
    kvs: OrdMap<Bytes, KeyValue>,
    revision: Revision,
}

impl MirrorSnapshot {
    pub(crate) fn new(kvs: OrdMap<Bytes, KeyValue>, revision: Revision) -> Self {
        Self { kvs, revision }
    }

    /// The revision this state is etcd's at (0 before the first load).
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The key-value of `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&KeyValue> {
        self.kvs.get(key.as_ref())
    }

    /// Every key-value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &KeyValue> {
        self.kvs.values()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.kvs.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.kvs.is_empty()
    }
}

impl IntoIterator for MirrorSnapshot {
    type Item = KeyValue;
    type IntoIter = MirrorIter;

    fn into_iter(self) -> MirrorIter {
        MirrorIter { inner: self.kvs.into_iter() }
    }
}

/// The key-values of a [`MirrorSnapshot`], in key order.
pub struct MirrorIter {
    inner: imbl::ordmap::ConsumingIter<Bytes, KeyValue, imbl::shared_ptr::DefaultSharedPtr>,
}

impl std::fmt::Debug for MirrorIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorIter").finish_non_exhaustive()
    }
}

impl Iterator for MirrorIter {
    type Item = KeyValue;

    fn next(&mut self) -> Option<KeyValue> {
        self.inner.next().map(|(_, kv)| kv)
    }
}

/// The notifications of a mirror ([`Mirror::subscribe`]); ends when the
/// mirror is dropped.
pub struct MirrorChanges {
    inner: BoxStream<'static, MirrorEvent>,
}

impl std::fmt::Debug for MirrorChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorChanges").finish_non_exhaustive()
    }
}

impl Stream for MirrorChanges {
    type Item = MirrorEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<MirrorEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// A local copy of a selection, kept in sync by a background task: a
/// snapshot, then every change; after a reset the state is replaced
/// whole, and until the new snapshot is complete the previous state stays
/// visible. Every read is of one consistent state: the selection exactly
/// as etcd had it at [`Mirror::revision`].
///
/// Reads are local and never wait. Dropping the mirror stops its task.
///
/// ```no_run
/// # async fn example() -> etcd_cache_gateway_client::Result<()> {
/// use etcd_cache_gateway_client::{Client, MirrorOptions, Selection};
///
/// let client = Client::new("http://127.0.0.1:8080")?;
/// let mirror = client.mirror("apps", Selection::prefix("config/"), MirrorOptions::new());
/// mirror.wait_ready().await?;
/// for kv in mirror.iter() {
///     println!("{:?} = {:?}", kv.key_str(), kv.value_str());
/// }
/// // After writing to etcd at `revision` (e.g. with etcd-client):
/// # let revision = 1;
/// mirror.wait_for_revision(revision).await?; // now it reflects the write
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Mirror {
    view: Arc<watch::Sender<View>>,
    changes: broadcast::Sender<MirrorEvent>,
    task: JoinHandle<()>,
}

impl Mirror {
    /// Starts mirroring (see [`Client::mirror`]).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(client: Client, namespace: &str, selection: Selection, options: MirrorOptions) -> Self {
        let view = Arc::new(watch::Sender::new(View::default()));
        let (changes, _) = broadcast::channel(options.changes_capacity);
        let task = tokio::spawn(run(
            client,
            namespace.to_owned(),
            selection,
            options,
            Arc::clone(&view),
            changes.clone(),
        ));
        Self { view, changes, task }
    }

    /// Waits until the first snapshot is loaded; its revision.
    ///
    /// # Errors
    /// The error that stopped the mirror ([`Mirror::error`]).
    pub async fn wait_ready(&self) -> Result<Revision> {
        self.wait_until(|view| view.ready).await
    }

    /// Waits until the mirror reflects `revision` (e.g. the revision etcd
    /// returned for your write): read-your-writes. A revision outside the
    /// selection is reached at the next progress event at the latest
    /// ([`MirrorOptions::progress_interval`]).
    ///
    /// # Errors
    /// The error that stopped the mirror.
    pub async fn wait_for_revision(&self, revision: Revision) -> Result<Revision> {
        self.wait_until(|view| view.ready && view.revision >= revision).await
    }

    async fn wait_until(&self, done: impl Fn(&View) -> bool) -> Result<Revision> {
        let mut views = self.view.subscribe();
        let view = views
            .wait_for(|view| view.error.is_some() || done(view))
            .await
            .map_err(|_| Error::InvalidArgument("the mirror's task is gone".into()))?;
        match &view.error {
            Some(error) => Err(error.clone()),
            None => Ok(view.revision),
        }
    }

    /// The revision the state reflects (0 before the first load).
    pub fn revision(&self) -> Revision {
        self.view.borrow().revision
    }

    /// Whether the first snapshot is loaded.
    pub fn is_ready(&self) -> bool {
        self.view.borrow().ready
    }

    /// Whether the watch is connected (false while it reconnects: the state
    /// is then the last one known, and complete up to its revision).
    pub fn is_connected(&self) -> bool {
        self.view.borrow().connected
    }

    /// Why the mirror stopped for good (a missing namespace, a refused
    /// token); `None` while it runs.
    pub fn error(&self) -> Option<Error> {
        self.view.borrow().error.clone()
    }

    /// The key-value of `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<KeyValue> {
        self.view.borrow().kvs.get(key.as_ref()).cloned()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.view.borrow().kvs.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.view.borrow().kvs.is_empty()
    }

    /// The state now, consistent at one revision.
    pub fn snapshot(&self) -> MirrorSnapshot {
        let view = self.view.borrow();
        MirrorSnapshot::new(view.kvs.clone(), view.revision)
    }

    /// Every key-value now, in key order (from one [`Mirror::snapshot`]).
    pub fn iter(&self) -> MirrorIter {
        self.snapshot().into_iter()
    }

    /// The state now and every notification after it: nothing is missed
    /// between the two (a subscriber that falls more than
    /// [`MirrorOptions::changes_capacity`] behind gets [`MirrorEvent::Lagged`]).
    ///
    /// ```no_run
    /// # async fn example(mirror: etcd_cache_gateway_client::Mirror) {
    /// use futures_util::StreamExt;
    /// use etcd_cache_gateway_client::MirrorEvent;
    ///
    /// let (mut state, mut changes) = mirror.subscribe();
    /// println!("{} keys at revision {}", state.len(), state.revision());
    /// while let Some(event) = changes.next().await {
    ///     match event {
    ///         MirrorEvent::Changed { revision, events } => println!("{revision}: {} events", events.len()),
    ///         MirrorEvent::Replaced { snapshot, .. } => state = snapshot,
    ///         MirrorEvent::Lagged { .. } => state = mirror.snapshot(),
    ///         MirrorEvent::Failed(error) => return eprintln!("{error}"),
    ///         _ => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub fn subscribe(&self) -> (MirrorSnapshot, MirrorChanges) {
        // The task changes the state and notifies under the view's lock:
        // holding it, the snapshot and the subscription meet exactly.
        let view = self.view.borrow();
        let receiver = self.changes.subscribe();
        let snapshot = MirrorSnapshot::new(view.kvs.clone(), view.revision);
        drop(view);
        let inner = stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(event) => Some((event, receiver)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Some((MirrorEvent::Lagged { missed }, receiver))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        (snapshot, MirrorChanges { inner: inner.boxed() })
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The mirror's task: applies the watch's events until a terminal error.
async fn run(
    client: Client,
    namespace: String,
    selection: Selection,
    options: MirrorOptions,
    view: Arc<watch::Sender<View>>,
    changes: broadcast::Sender<MirrorEvent>,
) {
    let mut machine = Machine::default();
    let start = || client.watch(&namespace, selection.clone(), options.watch_options());
    let mut watch: Watch = start();
    // Consecutive starts over without a complete state in between.
    let mut restarts = 0;
    while let Some(item) = watch.next().await {
        match item {
            Ok(event) => {
                if matches!(event, WatchEvent::Synced { .. }) {
                    restarts = 0;
                }
                view.send_modify(|view| {
                    if let Some(notification) = machine.apply(view, event) {
                        // No subscriber is not an error.
                        let _ = changes.send(notification);
                    }
                });
            }
            // The position, or a revision a snapshot needed, is gone from
            // etcd's history (etcd compacted it, or was replaced by one with
            // less history): start over from a fresh snapshot, backing off
            // when that keeps failing.
            Err(error @ (Error::FutureRevision { .. } | Error::Compacted { .. })) => {
                restarts += 1;
                let delay = options.backoff.delay(restarts, None, None);
                tracing::warn!(%error, ?delay, "mirror starts over from a snapshot");
                let reason = match error {
                    Error::Compacted { .. } => ResetReason::Compacted,
                    _ => ResetReason::Other("future_revision".into()),
                };
                view.send_modify(|v| {
                    machine.replace(v, reason);
                    v.connected = false;
                });
                if restarts > 1 {
                    tokio::time::sleep(delay).await;
                }
                watch = start();
            }
            Err(error) => {
                tracing::warn!(%error, "mirror stopped");
                view.send_modify(|v| {
                    v.error = Some(error.clone());
                    v.connected = false;
                });
                let _ = changes.send(MirrorEvent::Failed(error));
                return;
            }
        }
    }
}
