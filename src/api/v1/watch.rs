//! `GET /v1/namespaces/{ns}/watch`: Server-Sent-Events over a subscription
//! to the namespace's cache (API.md "Watch").
//!
//! A stream is a small state machine polled by hyper: no task, no queue per
//! subscriber. It holds a cursor into the shared history; a client that stops
//! reading simply stops being polled, and when it reads again after its
//! history left the window it gets a `reset` (or an `error`). A stream that
//! sent no event for its `progress_interval` gets a `progress` event with
//! the namespace's current revision, moved or not: the client learns the
//! stream is alive and how far it is complete.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::json;
use tokio::time::{Instant, Interval, Sleep};
use tokio_util::sync::CancellationToken;

use super::V1;
use super::namespace::of_path;
use super::render::KvJson;
use super::sse::{self, Frame};
use super::watch_request::{OnGap, WatchRequest};
use crate::cache::{ResetReason, Revision, Snapshot, UpstreamError};
use crate::error::{ApiError, Problem};
use crate::fanout::{CatchUp, CatchUps, Step, Subscription, Update};
use crate::http::auth::{Caller, token_labels};
use crate::http::limits::WatchPermit;
use crate::http::params::Params;
use crate::metrics::{Metrics, namespace_labels};
use crate::namespaces::Namespace;

/// Most key-values in one `snapshot` event.
pub const SNAPSHOT_CHUNK: usize = 1000;

/// `GET /v1/namespaces/{ns}/watch`.
pub async fn watch(State(state): State<V1>, caller: Caller, request: Request) -> Result<Response, ApiError> {
    let app = &state.app;
    let ns = of_path(app, request.uri().path(), &caller)?;
    let default_progress = app.config.watch.progress_interval.get();
    let params = Params::parse(request.uri().query())?;
    let watch = WatchRequest::parse(params, request.headers(), default_progress)?;
    let cache = &ns.cache;
    if !cache.status().is_ready() {
        return Err(ApiError::NotReady { namespaces: vec![cache.report()] });
    }
    if let Some(since) = watch.since {
        cache.check_not_future(since).await.map_err(ApiError::from)?;
        // With on_gap=error a gap known now is an HTTP error, not an event:
        // EventSource gives up on it for good instead of reconnecting into
        // the same error every few seconds.
        // A position behind the window is caught up from etcd; only one
        // etcd no longer has (or a cache that went back in time) is a gap.
        if watch.on_gap == OnGap::Error {
            if let Some(reason) = Subscription::new(cache, since).gap_now() {
                let compacted = since + 1 < cache.status().etcd_compact_revision();
                if compacted || !CatchUp::needed(cache, since) {
                    let reason = if compacted { ResetReason::Compacted } else { reason };
                    return Ok(gap_problem(cache, since, reason).into_response());
                }
            }
        }
    }
    let permit = app.watch_limits.acquire(&ns.config.name, caller.token_name())?;
    let config = &app.config.watch;
    let lifetime = config.max_stream_lifetime.get().mul_f64(0.9 + 0.2 * fastrand::f64());
    let metrics = StreamMetrics::new(&app.metrics, &ns.config.name, caller.token_name());
    let timers = Timers::new(lifetime, config.heartbeat_interval.get(), watch.progress_interval);
    let stream = WatchStream {
        ns: Arc::clone(ns),
        request: watch,
        subscription: None,
        phase: Phase::Start,
        pending: VecDeque::new(),
        shutdown: app.shutdown.clone(),
        catch_ups: Arc::clone(&app.catch_ups),
        timers,
        metrics,
        _permit: permit,
    };
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

/// `compacted` for a subscriber at `cursor` whose history is gone, with why:
/// the oldest revision a resume works from is etcd's compaction revision
/// when etcd compacted it, else the window's start.
fn gap_problem(cache: &crate::cache::WatchCache, cursor: Revision, reason: ResetReason) -> Problem {
    let view = cache.view();
    let window = view.history.min_cursor().unwrap_or(view.head);
    let compact_revision = match reason {
        ResetReason::Compacted => cache.status().etcd_compact_revision().max(window.min(cursor + 1)),
        _ => window,
    };
    ApiError::Compacted { revision: cursor + 1, compact_revision }.problem().with("reason", reason.as_str())
}

enum Phase {
    /// Nothing sent yet.
    Start,
    /// Sending the state at a revision, chunk by chunk, then `synced`.
    Snapshot { snapshot: Snapshot, after: Option<Bytes> },
    /// Replaying history after `since`; `synced` when caught up.
    Replay,
    /// Replaying from etcd what the window no longer has, from `cursor`
    /// (started on the first turn: it may wait for its turn); then `Replay`
    /// (before `synced`) or `Live` (after).
    CatchUp { cursor: Revision, catch_up: Option<Box<CatchUp>>, synced: bool },
    /// Following new revisions.
    Live,
    /// Ended.
    Done,
}

/// The clocks of one stream.
struct Timers {
    /// When the stream ends (its jittered lifetime).
    end_at: Pin<Box<Sleep>>,
    /// `: keep-alive` comments, for proxies.
    heartbeat: Interval,
    /// Fires when no event was sent for `progress_interval`.
    progress: Pin<Box<Sleep>>,
    progress_interval: Duration,
}

impl Timers {
    fn new(lifetime: Duration, heartbeat: Duration, progress_interval: Duration) -> Self {
        let now = Instant::now();
        let mut heartbeat = tokio::time::interval_at(now + heartbeat, heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            end_at: Box::pin(tokio::time::sleep_until(now + lifetime)),
            heartbeat,
            progress: Box::pin(tokio::time::sleep_until(now + progress_interval)),
            progress_interval,
        }
    }

    /// An event was sent: the next `progress` is due a full interval from now.
    fn event_sent(&mut self) {
        let at = Instant::now() + self.progress_interval;
        self.progress.as_mut().reset(at);
    }
}

/// One subscriber's stream.
struct WatchStream {
    ns: Arc<Namespace>,
    request: WatchRequest,
    subscription: Option<Subscription>,
    phase: Phase,
    pending: VecDeque<Bytes>,
    shutdown: CancellationToken,
    catch_ups: Arc<CatchUps>,
    timers: Timers,
    metrics: StreamMetrics,
    _permit: WatchPermit,
}

/// What a phase produced.
enum Next {
    /// A frame to send.
    Frame(Frame),
    /// Nothing to send yet: the phase changed, take the next turn.
    Turn,
    /// The stream ends.
    End,
}

/// A stream's share of the SSE metrics, with the handles of its series
/// looked up once (not per frame); counts it as a subscriber while it lives.
struct StreamMetrics {
    metrics: Arc<Metrics>,
    namespace: String,
    subscribers: Gauge,
    /// The token's open streams, when a token opened this one.
    token_streams: Option<Gauge>,
    events: Counter,
    bytes: Counter,
}

impl StreamMetrics {
    fn new(metrics: &Arc<Metrics>, namespace: &str, token: Option<&str>) -> Self {
        let labels = namespace_labels(namespace);
        let subscribers = metrics.sse_subscribers.get_or_create_owned(&labels);
        subscribers.inc();
        let token_streams = token.map(|name| metrics.token_streams.get_or_create_owned(&token_labels(name)));
        if let Some(gauge) = &token_streams {
            gauge.inc();
        }
        Self {
            events: metrics.sse_events.get_or_create_owned(&labels),
            bytes: metrics.sse_bytes.get_or_create_owned(&labels),
            subscribers,
            token_streams,
            namespace: namespace.to_owned(),
            metrics: Arc::clone(metrics),
        }
    }

    fn frame_sent(&self, frame: &Frame) {
        let bytes: usize = frame.iter().map(Bytes::len).sum();
        self.bytes.inc_by(bytes as u64);
        if frame.first().is_some_and(|c| c.as_ref() != sse::KEEP_ALIVE) {
            self.events.inc();
        }
    }

    fn reset(&self, reason: ResetReason) {
        let mut labels = namespace_labels(&self.namespace);
        labels.push(("reason", reason.as_str().to_owned()));
        self.metrics.sse_resets.get_or_create(&labels).inc();
    }

    fn lagging_disconnect(&self) {
        self.metrics.sse_lagging_disconnects.get_or_create(&namespace_labels(&self.namespace)).inc();
    }
}

impl Drop for StreamMetrics {
    fn drop(&mut self) {
        self.subscribers.dec();
        if let Some(gauge) = &self.token_streams {
            gauge.dec();
        }
    }
}

impl WatchStream {
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

    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let next = match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => Next::End,
                Phase::Start => Next::Frame(self.start()),
                Phase::Snapshot { snapshot, after } => {
                    Next::Frame(self.snapshot_chunk(snapshot, after).await)
                }
                Phase::Replay => self.replay(),
                Phase::CatchUp { cursor, catch_up, synced } => self.catch_up(cursor, catch_up, synced).await,
                Phase::Live => self.live().await,
            };
            match next {
                Next::Frame(frame) => return Some(frame),
                Next::Turn => {}
                Next::End => return None,
            }
        }
    }

    fn start(&mut self) -> Frame {
        let mut frame = sse::retry(1000 + fastrand::u64(..4000));
        let cache = &self.ns.cache;
        let head = cache.head();
        if let Some(since) = self.request.since {
            self.subscription = Some(Subscription::new(cache, since));
            self.phase = if CatchUp::needed(cache, since) {
                Phase::CatchUp { cursor: since, catch_up: None, synced: false }
            } else {
                Phase::Replay
            };
        } else if self.request.snapshot {
            let subscription = Subscription::new(cache, head);
            self.begin_snapshot(subscription, &mut frame);
        } else {
            self.subscription = Some(Subscription::new(cache, head));
            frame.extend(self.synced(head));
            self.phase = Phase::Live;
        }
        frame
    }

    /// Sends the state at the subscription's cursor next.
    fn begin_snapshot(&mut self, mut subscription: Subscription, frame: &mut Frame) {
        let view = subscription.resync();
        let cache = &self.ns.cache;
        let snapshot = cache.snapshot_of(&view);
        self.subscription = Some(subscription);
        match snapshot {
            Some(snapshot) => self.phase = Phase::Snapshot { snapshot, after: None },
            None => {
                let problem = ApiError::NotReady { namespaces: vec![cache.report()] }.problem();
                frame.extend(self.error(problem));
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

    /// The `change` frame of a batch, if the subscriber selects any of it
    /// (batches of the shared history are rendered once for every
    /// subscriber; a catch-up's are this subscriber's own).
    fn change(&mut self, entry: &Arc<crate::cache::Entry>, shared: bool) -> Option<Frame> {
        let request = &self.request;
        let memo = shared.then_some(&self.ns.frames);
        let frame = sse::change(memo, entry, &request.range, request.encoding, request.prev_kv)?;
        self.timers.event_sent();
        Some(frame)
    }

    /// Delivers the history after `since` without waiting, then `synced`.
    fn replay(&mut self) -> Next {
        loop {
            let subscription = self.subscription.as_mut().expect("subscribed at start");
            match subscription.try_next() {
                Some(Update::Batch(entry)) => {
                    if let Some(frame) = self.change(&entry, true) {
                        self.phase = Phase::Replay;
                        return Next::Frame(frame);
                    }
                }
                Some(Update::Reset(reason)) => return self.behind(reason, false),
                None => {
                    let revision = subscription.progress().unwrap_or_else(|| subscription.cursor());
                    self.phase = Phase::Live;
                    return Next::Frame(self.synced(revision));
                }
            }
        }
    }

    /// The subscriber's history left the window: catch it up from etcd
    /// when etcd still has it, else the gap (`reset` or `error`).
    fn behind(&mut self, reason: ResetReason, synced: bool) -> Next {
        let cursor = self.subscription.as_ref().map_or(0, Subscription::cursor);
        if CatchUp::needed(&self.ns.cache, cursor) {
            self.phase = Phase::CatchUp { cursor, catch_up: None, synced };
            return Next::Turn;
        }
        Next::Frame(self.gap(reason))
    }

    /// One turn of a catch-up: a replayed revision, or the handover to the
    /// shared history; a position etcd compacted is a gap, and etcd being
    /// unreachable ends the stream (the client resumes later from the same id).
    async fn catch_up(&mut self, cursor: Revision, catch_up: Option<Box<CatchUp>>, synced: bool) -> Next {
        let mut catch_up = match catch_up {
            Some(catch_up) => catch_up,
            None => {
                let request = &self.request;
                let started = CatchUp::start(
                    &self.ns.cache,
                    &self.catch_ups,
                    request.range.clone(),
                    cursor,
                    request.prev_kv,
                );
                Box::new(started.await)
            }
        };
        loop {
            match catch_up.next().await {
                Ok(Step::Batch(entry)) => {
                    if let Some(frame) = self.change(&entry, false) {
                        self.phase = Phase::CatchUp { cursor, catch_up: Some(catch_up), synced };
                        return Next::Frame(frame);
                    }
                }
                Ok(Step::Done(subscription)) => {
                    self.subscription = Some(subscription);
                    self.phase = if synced { Phase::Live } else { Phase::Replay };
                    return Next::Turn;
                }
                Err(UpstreamError::Compacted { .. }) => {
                    // Learn where etcd's history starts now, for the answer.
                    drop(self.ns.cache.compacted(cursor).await);
                    return Next::Frame(self.gap(ResetReason::Compacted));
                }
                Err(e) => return Next::Frame(self.error(ApiError::from(e).problem())),
            }
        }
    }

    async fn live(&mut self) -> Next {
        loop {
            let subscription = self.subscription.as_mut().expect("subscribed at start");
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => {
                    let problem = Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        crate::error::SHUTDOWN_CODE,
                        "Shutting down",
                        "the gateway is shutting down; reconnect with Last-Event-ID to resume elsewhere".into(),
                    );
                    return Next::Frame(self.error(problem));
                }
                () = self.timers.end_at.as_mut() => return Next::End,
                update = subscription.next() => {
                    match update {
                        None => return Next::End,
                        Some(Update::Batch(entry)) => {
                            if let Some(frame) = self.change(&entry, true) {
                                self.phase = Phase::Live;
                                return Next::Frame(frame);
                            }
                        }
                        Some(Update::Reset(reason)) => return self.behind(reason, true),
                    }
                }
                () = self.timers.progress.as_mut() => {
                    // Nothing sent for a whole interval: the stream is
                    // complete up to head, moved or not. (`None`: a batch is
                    // pending, and the next turn delivers it.)
                    if let Some(revision) = subscription.progress() {
                        self.timers.event_sent();
                        self.phase = Phase::Live;
                        return Next::Frame(sse::json_event("progress", Some(revision), &json!({"revision": revision})));
                    }
                }
                _ = self.timers.heartbeat.tick() => {
                    self.phase = Phase::Live;
                    return Next::Frame(vec![Bytes::from_static(sse::KEEP_ALIVE)]);
                }
            }
        }
    }

    /// History the client needs is gone: `reset` + snapshot, or `error`.
    fn gap(&mut self, reason: ResetReason) -> Frame {
        let view = self.ns.cache.view();
        let head = view.head;
        if self.request.on_gap == OnGap::Error {
            self.metrics.lagging_disconnect();
            let cursor = self.subscription.as_ref().map_or(0, Subscription::cursor);
            let problem = gap_problem(&self.ns.cache, cursor, reason);
            return self.error(problem);
        }
        self.metrics.reset(reason);
        let mut frame = sse::json_event("reset", None, &json!({"code": reason.as_str(), "revision": head}));
        let subscription = self.subscription.take().expect("subscribed");
        self.begin_snapshot(subscription, &mut frame);
        frame
    }

    /// The `synced` event: the client holds the state at `revision`.
    fn synced(&mut self, revision: Revision) -> Frame {
        self.timers.event_sent();
        sse::json_event("synced", Some(revision), &json!({"revision": revision}))
    }

    /// An `error` event; the stream ends after it.
    fn error(&mut self, problem: Problem) -> Frame {
        self.phase = Phase::Done;
        sse::json_event("error", None, &problem)
    }
}
