//! `GET /v1/namespaces/{ns}/watch`: Server-Sent-Events over a subscriber's
//! [`Feed`] of the namespace's cache (API.md "Watch").
//!
//! The feed keeps the guarantees (every revision once, in order, catch-ups
//! from etcd, resets); this module only turns its events into SSE frames,
//! with the stream's metrics, and refuses up front what it can.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::json;

use super::V1;
use super::namespace::of_path;
use super::render::KvJson;
use super::sse::{self, Frame};
use super::watch_request::WatchRequest;
use crate::cache::{ReadError, ResetReason, Revision};
use crate::error::{ApiError, Problem};
use crate::fanout::{Feed, FeedEvent, FeedOptions, Gap, JOIN_BYTES, OnGap, Start, join};
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
        if watch.on_gap == OnGap::End {
            if let Some(gap) = Gap::at_start(cache, since) {
                return Ok(gap_problem(gap).into_response());
            }
        }
    }
    let permit = app.watch_limits.acquire(&ns.config.name, caller.token_name())?;
    let config = &app.config.watch;
    let options = FeedOptions {
        range: watch.range.clone(),
        start: match watch.since {
            Some(since) => Start::Since(since),
            None if watch.snapshot => Start::Snapshot,
            None => Start::Now,
        },
        prev_kv: watch.prev_kv,
        on_gap: watch.on_gap,
        snapshot_chunk: SNAPSHOT_CHUNK,
        progress_interval: Some(watch.progress_interval),
        heartbeat_interval: Some(config.heartbeat_interval.get()),
        lifetime: Some(config.max_stream_lifetime.get().mul_f64(0.9 + 0.2 * fastrand::f64())),
    };
    let stream = WatchStream {
        feed: Feed::new(cache, options, &app.catch_ups, &app.shutdown),
        ns: Arc::clone(ns),
        request: watch,
        prelude: sse::retry(1000 + fastrand::u64(..4000)),
        metrics: StreamMetrics::new(&app.metrics, &ns.config.name, caller.token_name()),
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

/// The `compacted` problem of a gap, with why (`reason`) and the oldest
/// revision a resume works from (`compact_revision`).
fn gap_problem(gap: Gap) -> Problem {
    let Gap { reason, cursor, compact_revision } = gap;
    ApiError::Compacted { revision: cursor + 1, compact_revision }.problem().with("reason", reason.as_str())
}

/// One subscriber's stream: its feed, rendered.
struct WatchStream {
    feed: Feed,
    ns: Arc<Namespace>,
    request: WatchRequest,
    /// Sent before the first event (`retry:`).
    prelude: Frame,
    metrics: StreamMetrics,
    _permit: WatchPermit,
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

    /// One chunk of the body went out with `events` events in `bytes`.
    fn sent(&self, events: u64, bytes: usize) {
        self.bytes.inc_by(bytes as u64);
        self.events.inc_by(events);
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
    /// The next chunk of the body: the next event and the events due
    /// right after it, up to [`JOIN_BYTES`], as one write. `None` ends the
    /// stream.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let event = self.feed.next().await?;
        let mut chunk = std::mem::take(&mut self.prelude);
        let mut events = u64::from(!matches!(event, FeedEvent::Heartbeat));
        let mut batches = matches!(event, FeedEvent::Batch { .. });
        chunk.extend(self.frame(event).await);
        let mut bytes = sse::len(&chunk);
        while bytes < JOIN_BYTES {
            let Some(event) = self.feed.ready() else { break };
            batches |= matches!(event, FeedEvent::Batch { .. });
            let frame = self.frame(event).await;
            bytes += sse::len(&frame);
            chunk.extend(frame);
            events += 1;
        }
        if batches {
            self.feed.sent();
        }
        let chunk = join(chunk);
        self.metrics.sent(events, chunk.len());
        Some(chunk)
    }

    /// The SSE frame of a feed event.
    async fn frame(&mut self, event: FeedEvent) -> Frame {
        match event {
            FeedEvent::Snapshot { revision, kvs } => {
                let style = super::render::KvStyle {
                    encoding: self.request.encoding,
                    with_value: true,
                    select: None,
                };
                #[derive(serde::Serialize)]
                struct Chunk<'a> {
                    revision: Revision,
                    kvs: Vec<KvJson<'a>>,
                }
                let kvs = kvs.iter().map(|kv| KvJson { kv, style }).collect();
                sse::json_event("snapshot", None, &Chunk { revision, kvs })
            }
            FeedEvent::Synced(revision) => {
                sse::json_event("synced", Some(revision), &json!({"revision": revision}))
            }
            FeedEvent::Batch { entry, selected } => {
                sse::change(&self.ns.frames, &entry, selected, self.request.encoding, self.request.prev_kv)
            }
            FeedEvent::Progress(revision) => {
                sse::json_event("progress", Some(revision), &json!({"revision": revision}))
            }
            FeedEvent::Heartbeat => vec![Bytes::from_static(sse::KEEP_ALIVE)],
            FeedEvent::Reset { reason, head } => {
                self.metrics.reset(reason);
                sse::json_event("reset", None, &json!({"code": reason.as_str(), "revision": head}))
            }
            FeedEvent::Gap(gap) => {
                self.metrics.lagging_disconnect();
                sse::json_event("error", None, &gap_problem(gap))
            }
            FeedEvent::ShuttingDown => {
                let problem = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    crate::error::SHUTDOWN_CODE,
                    "Shutting down",
                    "the gateway is shutting down; reconnect with Last-Event-ID to resume elsewhere".into(),
                );
                sse::json_event("error", None, &problem)
            }
            FeedEvent::Failed(ReadError::NotReady) => {
                let problem = ApiError::NotReady { namespaces: vec![self.ns.cache.report()] }.problem();
                sse::json_event("error", None, &problem)
            }
            FeedEvent::Failed(e) => sse::json_event("error", None, &ApiError::from(e).problem()),
        }
    }
}
