//! The reflector: one task per namespace that owns one etcd watch and keeps
//! the namespace's [`WatchCache`] equal to etcd.
//!
//! Bootstrap is a paginated range at one revision R; the watch starts at
//! R+1 with `prev_kv` and progress notifications; responses become
//! per-revision batches (`feed.rs`). Any stream failure resumes from head+1
//! after a jittered backoff, on the next endpoint; a stream that goes silent
//! is caught by the watchdog (`watchdog.rs`) and re-created the same way. A
//! compaction that cancels the watch triggers a re-list and a `Reset` for
//! subscribers.

use std::time::Duration;

use etcd_client::{GetOptions, GetResponse, WatchOptions, WatchResponse, WatchResponseStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::EtcdClient;
use super::backoff::Backoff;
use super::client::classify;
use super::feed::{self, ProgressGate, Verdict};
use super::keys::Prefix;
use super::watchdog::{Action, Watchdog};
use crate::cache::{KeyRange, ResetReason, Revision, UpstreamError, WatchCache, WatchRestart};
use crate::config::EtcdConfig;

/// Bound on handing a progress request to the stream: the request channel
/// only fills when the stream stopped sending, which makes it silent.
const REQUEST_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Why one watch stream ended.
#[derive(Debug)]
enum WatchEnd {
    Shutdown,
    Compacted(Revision),
    Inconsistent(String),
    /// The stream failed, ended, or went silent; resume from head.
    Lost {
        reason: WatchRestart,
        error: Failure,
        made_progress: bool,
    },
}

/// What went wrong: a sentence safe to show (in `/readyz`, `/v1/namespaces`)
/// and, for the log only, the detail (etcd's or the transport's own text).
#[derive(Debug)]
struct Failure {
    summary: &'static str,
    detail: String,
}

impl Failure {
    fn of(e: &UpstreamError) -> Self {
        Self { summary: e.summary(), detail: e.message().to_owned() }
    }

    fn new(summary: &'static str, detail: impl Into<String>) -> Self {
        Self { summary, detail: detail.into() }
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
                if status.is_ready() {
                    // The state served meanwhile is the old one: not fresh.
                    status.set_relisting(true);
                }
                match self.bootstrap(reason).await {
                    Ok(()) => {
                        // Just loaded from etcd: fresh until the watch says otherwise.
                        status.set_connected(true);
                        relist = None;
                    }
                    Err(e) => {
                        status.set_connected(false);
                        status.set_last_error(Some(format!("loading the namespace failed: {}", e.summary())));
                        tracing::warn!(
                            namespace = self.cache.name(),
                            error = e.summary(),
                            detail = e.message(),
                            "loading the namespace failed; retrying"
                        );
                        if !self.pause(backoff.next_delay()).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            match self.watch().await {
                WatchEnd::Shutdown => return,
                WatchEnd::Compacted(compact_revision) => {
                    status.count_restart(WatchRestart::Compacted);
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
                    status.count_restart(WatchRestart::Inconsistent);
                    tracing::error!(namespace = self.cache.name(), %reason, "inconsistent watch feed; re-listing");
                    relist = Some(ResetReason::Relisted);
                }
                WatchEnd::Lost { reason, error, made_progress } => {
                    status.set_connected(false);
                    status.set_last_error(Some(format!("the etcd watch was lost: {}", error.summary)));
                    status.count_restart(reason);
                    if made_progress {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        namespace = self.cache.name(),
                        reason = reason.as_str(),
                        error = error.summary,
                        detail = error.detail,
                        ?delay,
                        head = self.cache.head(),
                        "watch lost; resuming"
                    );
                    if !self.pause(delay).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sleeps unless shutdown comes first; returns whether to go on.
    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            () = self.shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }

    /// Loads the whole namespace at one revision, page by page, and installs it.
    ///
    /// Pipelined: the next page is requested (and decoded, on another task)
    /// while the current one is applied. Pages are sized by bytes: the first
    /// has `bootstrap_page_size` keys, the following as many as fit in
    /// `bootstrap_page_bytes` at the sizes seen so far. Few, large pages
    /// matter: etcd (3.4 and 3.5) counts the whole rest of the range for
    /// every request with a limit, so many small pages cost O(N²) in etcd.
    async fn bootstrap(&self, reason: ResetReason) -> Result<(), UpstreamError> {
        let (start, end) = self.prefix.etcd_range(&KeyRange::all());
        let mut size = PageSize::new(&self.config);
        let mut pager = Pager { client: self.client.clone(), end, revision: None };
        let mut page = pager.clone().fetch(start, size.limit()).await?;
        let revision = page.header().map_or(0, |h| h.revision());
        self.cache.status().observe_etcd_revision(revision);
        pager.revision = Some(revision);
        let mut builder = self.cache.snapshot_builder(revision);
        loop {
            size.observe(page.kvs());
            let next = match page.kvs().last() {
                Some(last) if page.more() => {
                    let start = crate::cache::successor(last.key()).to_vec();
                    Some(AbortOnDropHandle::new(tokio::spawn(pager.clone().fetch(start, size.limit()))))
                }
                _ => None,
            };
            builder.add(page.take_kvs().into_iter().filter_map(|kv| self.prefix.into_key_value(kv))).await;
            match next {
                Some(next) => match next.await {
                    Ok(fetched) => page = fetched?,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => return Err(UpstreamError::Unavailable { message: e.to_string() }),
                },
                None => break,
            }
        }
        tracing::info!(
            namespace = self.cache.name(),
            revision = builder.revision(),
            keys = builder.len(),
            "namespace loaded"
        );
        builder.install(reason).await;
        // What etcd itself still has, for /v1/namespaces (not needed to serve).
        match super::source::compaction(&self.client, &self.prefix).await {
            Ok(compact_revision) => self.cache.status().observe_compaction(compact_revision),
            Err(e) => {
                tracing::debug!(namespace = self.cache.name(), error = %e, "etcd's compaction revision is unknown")
            }
        }
        Ok(())
    }

    /// etcd's current revision, from the header of a read of one key.
    async fn etcd_revision(&self) -> Result<Revision, UpstreamError> {
        let (key, _) = self.prefix.etcd_range(&KeyRange::all());
        let response = self.client.get(key, GetOptions::new().with_keys_only()).await?;
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    /// Watches from head+1 until the stream ends, fails or goes silent.
    async fn watch(&self) -> WatchEnd {
        let start_revision = self.cache.head() + 1;
        let (endpoint, client) = self.client.current();
        let endpoint = endpoint.to_owned();
        let lost = |reason, error: Failure| WatchEnd::Lost { reason, error, made_progress: false };
        // Where etcd is now, not where it was last seen: after a disconnect
        // the last known revision is stale, and a watch opened at head+1 just
        // after a compaction there would miss that revision's deletes
        // (`feed::watch_from`). One single-key read; the last known revision
        // if etcd does not answer (opening the watch then fails as well).
        let etcd_revision = tokio::select! {
            () = self.shutdown.cancelled() => return WatchEnd::Shutdown,
            asked = tokio::time::timeout(self.open_timeout(), self.etcd_revision()) => match asked {
                Ok(Ok(revision)) => {
                    self.cache.status().observe_etcd_revision(revision);
                    revision
                }
                _ => self.cache.status().etcd_revision(),
            },
        };
        // Bounded: a request can wait for a connection no timeout covers.
        let from = feed::watch_from(start_revision - 1, etcd_revision);
        let opening = tokio::time::timeout(self.open_timeout(), self.open(client.clone(), from));
        let (mut requests, mut responses) = tokio::select! {
            () = self.shutdown.cancelled() => return WatchEnd::Shutdown,
            opened = opening => match opened {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    self.client.fail_over(&endpoint);
                    return lost(WatchRestart::Error, Failure::of(&e));
                }
                Err(_) => {
                    self.client.fail_over(&endpoint);
                    let detail = format!("no answer within {:?}", self.open_timeout());
                    return lost(WatchRestart::Silent, Failure::new("etcd did not open the watch in time", detail));
                }
            },
        };
        let ordered = self.progress_is_ordered(client).await;
        let status = self.cache.status();
        let mut dog = Watchdog::new(
            self.config.progress_request_interval.get(),
            self.config.watch_silence_timeout.get(),
            Instant::now(),
        );
        let mut gate = None;
        let mut made_progress = false;
        loop {
            let mut request_progress = false;
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return WatchEnd::Shutdown,
                message = responses.message() => {
                    let response = match message {
                        Ok(Some(response)) => response,
                        Ok(None) => {
                            return WatchEnd::Lost {
                                reason: WatchRestart::Closed,
                                error: Failure::new("etcd ended the watch stream", ""),
                                made_progress,
                            };
                        }
                        Err(e) => {
                            self.client.fail_over(&endpoint);
                            let error = Failure::of(&classify(e));
                            return WatchEnd::Lost { reason: WatchRestart::Error, error, made_progress };
                        }
                    };
                    dog.heard(Instant::now());
                    status.heard_from_etcd();
                    if let Err(end) = self.handle(response, &mut gate, ordered, start_revision).await {
                        return end;
                    }
                    made_progress = true;
                }
                () = self.cache.progress_wanted() => request_progress = dog.may_request(Instant::now()),
                () = tokio::time::sleep_until(dog.deadline()) => match dog.check(Instant::now()) {
                    Action::Wait => {}
                    Action::RequestProgress => request_progress = true,
                    Action::Restart => {
                        let silent = self.config.watch_silence_timeout;
                        let error = Failure::new(
                            "the etcd watch went silent",
                            format!("no message for {silent}, not even an answer to progress requests"),
                        );
                        return WatchEnd::Lost { reason: WatchRestart::Silent, error, made_progress };
                    }
                },
            }
            if request_progress {
                dog.requested(Instant::now());
                match tokio::time::timeout(REQUEST_SEND_TIMEOUT, requests.request_progress()).await {
                    Ok(Ok(())) => {}
                    // The stream broke: the next message says how.
                    Ok(Err(_)) => {}
                    Err(_) => {
                        let error =
                            Failure::new("the etcd watch went silent", "the stream takes no more requests");
                        return WatchEnd::Lost { reason: WatchRestart::Silent, error, made_progress };
                    }
                }
            }
        }
    }

    /// How long opening a watch may take: connecting, then etcd's answer.
    fn open_timeout(&self) -> Duration {
        self.config.connect_timeout.get() + self.config.request_timeout.get()
    }

    async fn open(
        &self,
        client: etcd_client::Client,
        start_revision: Revision,
    ) -> Result<(etcd_client::WatchRequestSender, WatchResponseStream), UpstreamError> {
        let (start, end) = self.prefix.etcd_range(&KeyRange::all());
        let mut watch_client =
            client.watch_client().max_decoding_message_size(self.client.max_message_bytes());
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(start_revision)
            .with_prev_key()
            .with_progress_notify();
        let stream = watch_client.watch(start, Some(options)).await.map_err(classify)?;
        Ok(stream.split())
    }

    /// Whether this endpoint's etcd sends progress in order with events (a
    /// failed status request counts as no: the gate is then only careful).
    async fn progress_is_ordered(&self, mut client: etcd_client::Client) -> bool {
        let status = tokio::time::timeout(self.config.request_timeout.get(), client.status()).await;
        match status {
            Ok(Ok(status)) => {
                let ordered = feed::progress_is_ordered(status.version());
                tracing::debug!(
                    namespace = self.cache.name(),
                    version = status.version(),
                    ordered,
                    "etcd version"
                );
                ordered
            }
            _ => false,
        }
    }

    async fn handle(
        &self,
        response: WatchResponse,
        gate: &mut Option<ProgressGate>,
        ordered: bool,
        start_revision: Revision,
    ) -> Result<(), WatchEnd> {
        let status = self.cache.status();
        if response.canceled() {
            // A cancel carries no usable header revision (NOTES.md).
            if response.compact_revision() > 0 {
                return Err(WatchEnd::Compacted(response.compact_revision()));
            }
            return Err(WatchEnd::Lost {
                reason: WatchRestart::Closed,
                error: Failure::new("etcd cancelled the watch", response.cancel_reason()),
                made_progress: false,
            });
        }
        let header_revision = response.header().map_or(0, |h| h.revision());
        status.observe_etcd_revision(header_revision);
        if response.created() {
            status.set_connected(true);
            status.set_last_error(None);
            tracing::info!(
                namespace = self.cache.name(),
                start_revision,
                etcd_revision = header_revision,
                "watching"
            );
            *gate = Some(ProgressGate::new(header_revision, self.cache.head(), ordered));
            return Ok(());
        }
        let Some(gate) = gate.as_mut() else {
            return Err(WatchEnd::Inconsistent("a watch message before the watch was created".into()));
        };
        if !response.events().is_empty() {
            let batches = feed::batches(&self.prefix, &response).map_err(WatchEnd::Inconsistent)?;
            // The watch may have opened one revision early (`feed::watch_from`).
            for batch in batches.into_iter().filter(|b| b.revision >= start_revision) {
                self.cache.apply(batch).await.map_err(|e| WatchEnd::Inconsistent(e.to_string()))?;
            }
            gate.events_applied(self.cache.head());
            return Ok(());
        }
        // A progress notification: every event up to header_revision was sent.
        match gate.on_progress(header_revision) {
            Verdict::Advance(revision) => self.cache.advance(revision).await,
            Verdict::CheckQuietUntil(revision) => {
                if self.quiet_until(revision).await {
                    gate.confirmed_quiet();
                    self.cache.advance(revision).await;
                }
            }
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
}

/// Bytes a key-value takes in a range response beyond its key and value
/// (revisions, version, lease and framing, as varints): for page sizing.
const KV_FRAMING_BYTES: u64 = 24;

/// How many keys the next bootstrap page asks for: `bootstrap_page_size` for
/// the first, then as many as fit in `bootstrap_page_bytes` at the average
/// size seen so far.
struct PageSize {
    first: i64,
    bytes: u64,
    keys_seen: u64,
    bytes_seen: u64,
}

impl PageSize {
    fn new(config: &EtcdConfig) -> Self {
        Self {
            first: i64::from(config.bootstrap_page_size),
            bytes: config.bootstrap_page_bytes.min(config.max_message_bytes).bytes(),
            keys_seen: 0,
            bytes_seen: 0,
        }
    }

    fn observe(&mut self, kvs: &[etcd_client::KeyValue]) {
        self.keys_seen += kvs.len() as u64;
        self.bytes_seen +=
            kvs.iter().map(|kv| (kv.key().len() + kv.value().len()) as u64 + KV_FRAMING_BYTES).sum::<u64>();
    }

    fn limit(&self) -> i64 {
        if self.keys_seen == 0 {
            return self.first;
        }
        let average = self.bytes_seen.div_ceil(self.keys_seen);
        i64::try_from(self.bytes / average).unwrap_or(i64::MAX).max(1)
    }
}

/// Reads bootstrap pages of one range, pinned to one revision once known;
/// `'static`, so the next page is fetched on a task of its own.
#[derive(Clone)]
struct Pager {
    client: EtcdClient,
    end: Vec<u8>,
    revision: Option<Revision>,
}

impl Pager {
    /// The page from `start` with at most `limit` keys, halving the limit
    /// while etcd's answer is larger than the client decodes.
    async fn fetch(self, start: Vec<u8>, mut limit: i64) -> Result<GetResponse, UpstreamError> {
        loop {
            let mut options = GetOptions::new().with_range(self.end.clone()).with_limit(limit);
            if let Some(revision) = self.revision {
                options = options.with_revision(revision);
            }
            match self.client.get(start.clone(), options).await {
                Err(UpstreamError::TooLarge { message }) if limit > 1 => {
                    tracing::debug!(limit, message, "bootstrap page too large; halving it");
                    limit /= 2;
                }
                answer => return answer,
            }
        }
    }
}
