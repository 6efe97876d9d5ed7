//! The reflector: one task per namespace that owns one etcd watch and keeps
//! the namespace's [`WatchCache`] equal to etcd.
//!
//! Bootstrap is a paginated range at one revision R; the watch starts at
//! R+1 with `prev_kv` and progress notifications; responses are split into
//! per-revision batches by `mod_revision`. Any stream failure resumes from
//! head+1 after a jittered backoff, on the next endpoint. A compaction that
//! cancels the watch triggers a re-list and a `Reset` for subscribers.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use etcd_client::{EventType, GetOptions, WatchOptions, WatchResponse};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::keys::Prefix;
use super::{EtcdClient, EtcdError};
use crate::cache::{
    ApplyError, Event, EventKind, KeyRange, KeyValue, ResetReason, Revision, RevisionBatch, WatchCache,
};
use crate::config::EtcdConfig;

/// Why one watch stream ended.
#[derive(Debug, thiserror::Error)]
enum WatchEnd {
    #[error("shutting down")]
    Shutdown,
    #[error("etcd compacted history up to {0}")]
    Compacted(Revision),
    #[error("inconsistent feed: {0}")]
    Inconsistent(String),
    #[error("watch failed: {error}")]
    Failed { error: String, made_progress: bool },
}

impl From<ApplyError> for WatchEnd {
    fn from(e: ApplyError) -> Self {
        Self::Inconsistent(e.to_string())
    }
}

/// Keeps one namespace's cache in step with etcd.
pub struct Reflector {
    cache: WatchCache,
    client: EtcdClient,
    prefix: Prefix,
    config: EtcdConfig,
    shutdown: CancellationToken,
}

/// Whether progress notifications can be trusted to advance head: etcd 3.4
/// may send them to a watcher still catching up, ahead of pending events
/// (etcd #15220), so only once the watcher is known to be in sync.
#[derive(Debug, Clone, Copy)]
struct Sync {
    /// etcd's revision when the watch was created (catch-up ends there).
    created_revision: Revision,
    synced: bool,
}

impl Reflector {
    /// A reflector for the namespace with `prefix`, writing into `cache`.
    pub fn new(
        cache: WatchCache,
        client: EtcdClient,
        prefix: Prefix,
        config: EtcdConfig,
        shutdown: CancellationToken,
    ) -> Self {
        Self { cache, client, prefix, config, shutdown }
    }

    /// Runs until shutdown: bootstrap, watch, resume, re-list.
    pub async fn run(self) {
        let mut backoff = Backoff::new(self.config.backoff_min.get(), self.config.backoff_max.get());
        let mut relist = Some(ResetReason::Relisted);
        let status = self.cache.status();
        loop {
            if let Some(reason) = relist {
                match self.bootstrap(reason).await {
                    Ok(()) => {
                        // Just loaded from etcd: fresh until the watch says otherwise.
                        status.set_connected(true);
                        relist = None;
                    }
                    Err(e) => {
                        status.set_connected(false);
                        tracing::warn!(namespace = self.cache.name(), error = %e, "loading the namespace failed");
                        if !self.pause(backoff.next_delay()).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let end = self.watch().await;
            match end {
                WatchEnd::Shutdown => return,
                WatchEnd::Compacted(compact_revision) => {
                    status.compactions.fetch_add(1, Ordering::Relaxed);
                    status.observe_compaction(compact_revision);
                    tracing::warn!(
                        namespace = self.cache.name(),
                        compact_revision,
                        head = self.cache.head(),
                        "watch compacted; re-listing"
                    );
                    relist = Some(ResetReason::Compacted);
                }
                WatchEnd::Inconsistent(reason) => {
                    tracing::error!(namespace = self.cache.name(), %reason, "inconsistent watch feed; re-listing");
                    relist = Some(ResetReason::Relisted);
                }
                WatchEnd::Failed { error, made_progress } => {
                    status.set_connected(false);
                    status.reconnects.fetch_add(1, Ordering::Relaxed);
                    if made_progress {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(namespace = self.cache.name(), %error, ?delay, head = self.cache.head(), "watch lost; resuming");
                    if !self.pause(delay).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sleeps unless shutdown comes first; returns whether to go on.
    async fn pause(&self, delay: std::time::Duration) -> bool {
        tokio::select! {
            () = self.shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }

    /// Loads the whole namespace at one revision, page by page, and installs it.
    async fn bootstrap(&self, reason: ResetReason) -> Result<(), EtcdError> {
        let (mut start, end) = self.prefix.etcd_range(&KeyRange::all());
        let page_size = i64::from(self.config.bootstrap_page_size);
        let mut builder = None;
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(page_size);
            if let Some(b) = &builder {
                options = options.with_revision(crate::cache::SnapshotBuilder::revision(b));
            }
            let response = self.client.get(start.clone(), options).await?;
            let revision = response.header().map_or(0, |h| h.revision());
            self.cache.status().observe_etcd_revision(revision);
            let builder = builder.get_or_insert_with(|| self.cache.snapshot_builder(revision));
            let kvs: Vec<KeyValue> =
                response.kvs().iter().filter_map(|kv| self.prefix.key_value(kv)).collect();
            builder.add(kvs).await;
            match response.kvs().last() {
                Some(last) if response.more() => start = crate::cache::successor(last.key()).to_vec(),
                _ => break,
            }
        }
        let builder = builder.expect("at least one page was read");
        tracing::info!(
            namespace = self.cache.name(),
            revision = builder.revision(),
            keys = builder.len(),
            "namespace loaded"
        );
        builder.install(reason).await;
        Ok(())
    }

    /// Watches from head+1 until the stream ends.
    async fn watch(&self) -> WatchEnd {
        let start_revision = self.cache.head() + 1;
        let (start, end) = self.prefix.etcd_range(&KeyRange::all());
        let (endpoint, client) = self.client.current();
        let endpoint = endpoint.to_owned();
        let mut watch_client =
            client.watch_client().max_decoding_message_size(self.client.max_message_bytes());
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(start_revision)
            .with_prev_key()
            .with_progress_notify();
        let stream = tokio::select! {
            () = self.shutdown.cancelled() => return WatchEnd::Shutdown,
            stream = watch_client.watch(start, Some(options)) => stream,
        };
        let (mut requests, mut responses) = match stream {
            Ok(stream) => stream.split(),
            Err(e) => {
                self.client.fail_over(&endpoint);
                return WatchEnd::Failed { error: EtcdError::from(e).to_string(), made_progress: false };
            }
        };
        let mut sync = Sync { created_revision: Revision::MAX, synced: false };
        let mut made_progress = false;
        loop {
            let message = tokio::select! {
                () = self.shutdown.cancelled() => return WatchEnd::Shutdown,
                () = self.cache.progress_wanted() => {
                    // A failed request surfaces as a stream error below.
                    let _ = requests.request_progress().await;
                    continue;
                }
                message = responses.message() => message,
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => {
                    return WatchEnd::Failed { error: "etcd ended the watch stream".into(), made_progress };
                }
                Err(e) => {
                    self.client.fail_over(&endpoint);
                    return WatchEnd::Failed { error: EtcdError::from(e).to_string(), made_progress };
                }
            };
            if let Err(end) = self.handle(response, &mut sync).await {
                return end;
            }
            made_progress = true;
        }
    }

    async fn handle(&self, response: WatchResponse, sync: &mut Sync) -> Result<(), WatchEnd> {
        let status = self.cache.status();
        if response.canceled() {
            // A cancel carries no usable header revision (NOTES.md).
            if response.compact_revision() > 0 {
                return Err(WatchEnd::Compacted(response.compact_revision()));
            }
            return Err(WatchEnd::Failed {
                error: format!("etcd cancelled the watch: {:?}", response.cancel_reason()),
                made_progress: false,
            });
        }
        let header_revision = response.header().map_or(0, |h| h.revision());
        status.observe_etcd_revision(header_revision);
        if response.created() {
            status.set_connected(true);
            *sync = Sync { created_revision: header_revision, synced: self.cache.head() >= header_revision };
            return Ok(());
        }
        if !response.events().is_empty() {
            for batch in self.batches(&response)? {
                self.cache.apply(batch).await?;
            }
            if self.cache.head() >= sync.created_revision {
                sync.synced = true;
            }
            return Ok(());
        }
        // A progress notification: every event up to header_revision was sent.
        if !sync.synced && self.quiet_until(sync.created_revision).await {
            self.cache.advance(sync.created_revision).await;
            sync.synced = true;
            return Ok(());
        }
        if sync.synced {
            self.cache.advance(header_revision).await;
        }
        Ok(())
    }

    /// Checks with etcd that the namespace had no changes between head and
    /// `revision`: no key modified after head, and as many keys as the cache.
    async fn quiet_until(&self, revision: Revision) -> bool {
        let head = self.cache.head();
        let (start, end) = self.prefix.etcd_range(&KeyRange::all());
        let modified = GetOptions::new()
            .with_range(end.clone())
            .with_revision(revision)
            .with_keys_only()
            .with_min_mod_revision(head + 1)
            .with_limit(1);
        let total = GetOptions::new().with_range(end).with_revision(revision).with_count_only();
        let (Ok(modified), Ok(total)) =
            (self.client.get(start.clone(), modified).await, self.client.get(start, total).await)
        else {
            return false;
        };
        let keys = self.cache.view().index().len();
        modified.kvs().is_empty() && usize::try_from(total.count()).is_ok_and(|n| n == keys)
    }

    /// Splits a response's events into per-revision batches. One response
    /// can carry many revisions; a revision is never split across responses
    /// (fragmentation is off).
    fn batches(&self, response: &WatchResponse) -> Result<Vec<RevisionBatch>, WatchEnd> {
        let mut batches: Vec<RevisionBatch> = Vec::new();
        for event in response.events() {
            let kv = event.kv().ok_or_else(|| WatchEnd::Inconsistent("event without kv".into()))?;
            let revision = kv.mod_revision();
            let kind = match event.event_type() {
                EventType::Put => EventKind::Put,
                EventType::Delete => EventKind::Delete,
            };
            let outside =
                || WatchEnd::Inconsistent(format!("event for key outside the prefix: {:?}", kv.key()));
            let kv = match kind {
                EventKind::Put => self.prefix.key_value(kv).ok_or_else(outside)?,
                EventKind::Delete => {
                    let key = Bytes::copy_from_slice(self.prefix.strip(kv.key()).ok_or_else(outside)?);
                    KeyValue::tombstone(key, revision)
                }
            };
            let prev_kv = event.prev_kv().and_then(|p| self.prefix.key_value(p));
            let event = Event { kind, kv, prev_kv };
            match batches.last_mut() {
                Some(batch) if batch.revision == revision => batch.events.push(event),
                Some(batch) if batch.revision > revision => {
                    return Err(WatchEnd::Inconsistent(format!(
                        "revision {revision} after {}",
                        batch.revision
                    )));
                }
                _ => batches.push(RevisionBatch { revision, events: vec![event] }),
            }
        }
        Ok(batches)
    }
}
