//! `GET /v1/namespaces/{ns}/watch`: Server-Sent-Events over a subscription
//! to the namespace's cache (API.md "Watch").
//!
//! A stream is a small state machine polled by hyper: no task, no queue per
//! subscriber. It holds a cursor into the shared history; a client that stops
//! reading simply stops being polled, and when it reads again after its
//! history left the window it gets a `reset` (or an `error`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use serde_json::json;
use tokio::time::{Instant, Interval, Sleep};
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::auth::Caller;
use super::kv::{namespace, split_path};
use super::limits::WatchPermit;
use super::params::Params;
use super::render::KvJson;
use super::sse::{self, Frame};
use super::watch_request::{OnGap, WatchRequest};
use crate::cache::{ResetReason, Revision, Snapshot, Subscription, Update, WatchCache};
use crate::error::{ApiError, Problem};
use crate::metrics::{Labels, Metrics, namespace_labels};

/// Most key-values in one `snapshot` event.
pub const SNAPSHOT_CHUNK: usize = 1000;

/// `GET /v1/namespaces/{ns}/watch`.
pub async fn watch(
    State(state): State<AppState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ns = namespace(&state, split_path(uri.path()).0, &caller)?;
    let default_progress = state.config.watch.progress_interval.get();
    let request = WatchRequest::parse(Params::parse(uri.query())?, &headers, default_progress)?;
    let cache = ns.cache.clone();
    if !cache.status().is_ready() {
        return Err(ApiError::NotReady { namespaces: json!([cache.report()]) });
    }
    if let Some(since) = request.since {
        cache.check_not_future(since).await.map_err(ApiError::from)?;
    }
    let permit = state.watch_limits.acquire(&ns.config.name, caller.token_name())?;
    let watch = &state.config.watch;
    let lifetime = watch.max_stream_lifetime.get().mul_f64(0.9 + 0.2 * fastrand::f64());
    let observer = StreamMetrics::new(state.metrics.clone(), &ns.config.name);
    let heartbeat = watch.heartbeat_interval.get();
    let stream =
        WatchStream::new(cache, request, state.shutdown.clone(), lifetime, heartbeat, permit, observer);
    let body = Body::from_stream(stream::unfold(stream, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(chunk), s))
    }));
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

enum Phase {
    /// Nothing sent yet.
    Start,
    /// Sending the state at a revision, chunk by chunk, then `synced`.
    Snapshot { snapshot: Snapshot, after: Option<Bytes> },
    /// Replaying history after `since`; `synced` when caught up.
    Replay,
    /// Following new revisions.
    Live,
    /// Ended.
    Done,
}

/// One subscriber's stream.
struct WatchStream {
    cache: WatchCache,
    request: WatchRequest,
    subscription: Option<Subscription>,
    phase: Phase,
    pending: VecDeque<Bytes>,
    shutdown: CancellationToken,
    end_at: Pin<Box<Sleep>>,
    heartbeat: Interval,
    /// Fires when the stream has been idle for the progress interval.
    progress: Pin<Box<Sleep>>,
    /// The last `id:` sent: the client's `Last-Event-ID`.
    last_id: Revision,
    metrics: StreamMetrics,
    _permit: WatchPermit,
}

/// A stream's share of the SSE metrics; counts it as a subscriber while it lives.
struct StreamMetrics {
    metrics: Arc<Metrics>,
    labels: Labels,
}

impl StreamMetrics {
    fn new(metrics: Arc<Metrics>, namespace: &str) -> Self {
        let labels = namespace_labels(namespace);
        metrics.sse_subscribers.get_or_create(&labels).inc();
        Self { metrics, labels }
    }

    fn frame_sent(&self, frame: &Frame) {
        let bytes: usize = frame.iter().map(Bytes::len).sum();
        self.metrics.sse_bytes.get_or_create(&self.labels).inc_by(bytes as u64);
        if frame.first().is_some_and(|c| c.as_ref() != sse::KEEP_ALIVE) {
            self.metrics.sse_events.get_or_create(&self.labels).inc();
        }
    }

    fn reset(&self, reason: ResetReason) {
        let mut labels = self.labels.clone();
        labels.push(("reason", reason.as_str().to_owned()));
        self.metrics.sse_resets.get_or_create(&labels).inc();
    }

    fn lagging_disconnect(&self) {
        self.metrics.sse_lagging_disconnects.get_or_create(&self.labels).inc();
    }
}

impl Drop for StreamMetrics {
    fn drop(&mut self) {
        self.metrics.sse_subscribers.get_or_create(&self.labels).dec();
    }
}

impl WatchStream {
    fn new(
        cache: WatchCache,
        request: WatchRequest,
        shutdown: CancellationToken,
        lifetime: Duration,
        heartbeat: Duration,
        permit: WatchPermit,
        metrics: StreamMetrics,
    ) -> Self {
        let now = Instant::now();
        let mut heartbeat = tokio::time::interval_at(now + heartbeat, heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let progress = Box::pin(tokio::time::sleep_until(now + request.progress_interval));
        Self {
            cache,
            request,
            subscription: None,
            phase: Phase::Start,
            pending: VecDeque::new(),
            shutdown,
            end_at: Box::pin(tokio::time::sleep_until(now + lifetime)),
            heartbeat,
            progress,
            last_id: 0,
            metrics,
            _permit: permit,
        }
    }

    /// The next chunk of the body; `None` ends the stream.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some(chunk);
            }
            let frame = self.next_frame().await?;
            self.metrics.frame_sent(&frame);
            self.pending.extend(frame);
        }
    }

    fn send_later(&mut self) {
        let at = Instant::now() + self.request.progress_interval;
        self.progress.as_mut().reset(at);
    }

    async fn next_frame(&mut self) -> Option<Frame> {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Done => None,
            Phase::Start => Some(self.start()),
            Phase::Snapshot { snapshot, after } => Some(self.snapshot_chunk(snapshot, after).await),
            Phase::Replay => Some(self.replay()),
            Phase::Live => self.live().await,
        }
    }

    fn start(&mut self) -> Frame {
        let mut frame = sse::retry(1000 + fastrand::u64(..4000));
        let head = self.cache.head();
        if let Some(since) = self.request.since {
            self.subscription = Some(self.cache.subscribe(since));
            self.phase = Phase::Replay;
        } else if self.request.snapshot {
            let subscription = self.cache.subscribe(head);
            self.begin_snapshot(subscription, &mut frame);
        } else {
            self.subscription = Some(self.cache.subscribe(head));
            frame.extend(self.synced(head));
            self.phase = Phase::Live;
        }
        frame
    }

    /// Sends the state at the subscription's cursor next.
    fn begin_snapshot(&mut self, mut subscription: Subscription, frame: &mut Frame) {
        let view = subscription.resync();
        let snapshot = self.cache.snapshot_of(&view);
        self.subscription = Some(subscription);
        match snapshot {
            Some(snapshot) => self.phase = Phase::Snapshot { snapshot, after: None },
            None => {
                frame.extend(
                    self.error(ApiError::NotReady { namespaces: json!([self.cache.report()]) }.problem()),
                );
            }
        }
    }

    async fn snapshot_chunk(&mut self, snapshot: Snapshot, after: Option<Bytes>) -> Frame {
        let range = match &after {
            Some(last) => self.request.range.after(last),
            None => self.request.range.clone(),
        };
        let page = match snapshot.range(&range, SNAPSHOT_CHUNK, false).await {
            Ok(page) => page,
            Err(e) => return self.error(ApiError::from(e).problem()),
        };
        let revision = snapshot.revision();
        let style =
            super::render::KvStyle { encoding: self.request.encoding, with_value: true, select: None };
        #[derive(serde::Serialize)]
        struct Chunk<'a> {
            revision: Revision,
            kvs: Vec<KvJson<'a>>,
        }
        let kvs = page.kvs.iter().map(|kv| KvJson { kv, style }).collect();
        let mut frame = sse::json_event("snapshot", None, &Chunk { revision, kvs });
        match page.kvs.last() {
            Some(last) if page.more => {
                self.phase = Phase::Snapshot { after: Some(last.key.clone()), snapshot };
            }
            _ => {
                frame.extend(self.synced(revision));
                self.phase = Phase::Live;
            }
        }
        frame
    }

    /// Delivers the history after `since` without waiting, then `synced`.
    fn replay(&mut self) -> Frame {
        let subscription = self.subscription.as_mut().expect("subscribed at start");
        loop {
            match subscription.try_next() {
                Some(Update::Batch(entry)) => {
                    if let Some(frame) =
                        sse::change(&entry, &self.request.range, self.request.encoding, self.request.prev_kv)
                    {
                        self.phase = Phase::Replay;
                        self.last_id = entry.revision;
                        return frame;
                    }
                }
                Some(Update::Reset(reason)) => return self.gap(reason),
                None => {
                    subscription.progress();
                    let revision = subscription.cursor();
                    self.phase = Phase::Live;
                    return self.synced(revision);
                }
            }
        }
    }

    async fn live(&mut self) -> Option<Frame> {
        loop {
            let subscription = self.subscription.as_mut().expect("subscribed at start");
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => {
                    let problem = Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "shutdown",
                        "Shutting down",
                        "the gateway is shutting down; reconnect with Last-Event-ID to resume elsewhere".into(),
                    );
                    return Some(self.error(problem));
                }
                () = self.end_at.as_mut() => return None,
                update = subscription.next() => {
                    match update? {
                        Update::Batch(entry) => {
                            let request = &self.request;
                            if let Some(frame) = sse::change(&entry, &request.range, request.encoding, request.prev_kv) {
                                self.phase = Phase::Live;
                                self.last_id = entry.revision;
                                self.send_later();
                                return Some(frame);
                            }
                        }
                        Update::Reset(reason) => return Some(self.gap(reason)),
                    }
                }
                () = self.progress.as_mut() => {
                    // Batches outside the selection moved the cursor without
                    // an event: tell the client how far it is complete.
                    subscription.progress();
                    let revision = subscription.cursor();
                    self.send_later();
                    if revision > self.last_id {
                        self.phase = Phase::Live;
                        self.last_id = revision;
                        return Some(sse::json_event("progress", Some(revision), &json!({"revision": revision})));
                    }
                }
                _ = self.heartbeat.tick() => {
                    self.phase = Phase::Live;
                    return Some(vec![Bytes::from_static(sse::KEEP_ALIVE)]);
                }
            }
        }
    }

    /// History the client needs is gone: `reset` + snapshot, or `error`.
    fn gap(&mut self, reason: ResetReason) -> Frame {
        let view = self.cache.view();
        let head = view.head;
        if self.request.on_gap == OnGap::Error {
            self.metrics.lagging_disconnect();
            let compact_revision = view.history.oldest_revision().unwrap_or(head);
            let cursor = self.subscription.as_ref().map_or(0, Subscription::cursor);
            let problem = ApiError::Compacted { revision: cursor + 1, compact_revision }.problem();
            return self.error(problem.with("reason", reason.as_str()));
        }
        self.metrics.reset(reason);
        let mut frame = sse::json_event("reset", None, &json!({"code": reason.as_str(), "revision": head}));
        let subscription = self.subscription.take().expect("subscribed");
        self.begin_snapshot(subscription, &mut frame);
        frame
    }

    /// The `synced` event: the client holds the state at `revision`.
    fn synced(&mut self, revision: Revision) -> Frame {
        self.last_id = revision;
        self.send_later();
        sse::json_event("synced", Some(revision), &json!({"revision": revision}))
    }

    /// An `error` event; the stream ends after it.
    fn error(&mut self, problem: Problem) -> Frame {
        self.phase = Phase::Done;
        sse::json_event("error", None, &problem)
    }
}
