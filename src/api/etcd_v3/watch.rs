//! `POST /v3/watch`: a watch as etcd's gRPC-gateway streams it, over a
//! [`Feed`] of the namespace's cache: one `{"result":{…}}` document per
//! HTTP chunk; the `created` message once the watch is registered; then
//! one message per revision (never a revision split across messages);
//! progress notifications when `progress_notify` is set; a start revision
//! etcd compacted cancelled with `compact_revision`, as etcd does; a
//! refused watch cancelled in-stream with its reason.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::error::{Code, EtcdError};
use super::wire::{self, EtcdBody, Filter, Header, HeaderIds, KvJson};
use super::{EtcdV3, keys};
use crate::cache::{Entry, Event, EventKind, Revision};
use crate::fanout::{Feed, FeedEvent, FeedOptions, OnGap, Rendered, Selected, Shape, Start};
use crate::http::limits::WatchPermit;
use crate::namespaces::Namespace;

/// etcd's `WatchRequest`: only `create_request` means anything in one
/// HTTP request.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WatchRequest {
    #[serde(alias = "createRequest")]
    create_request: Option<CreateRequest>,
}

/// etcd's `WatchCreateRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CreateRequest {
    #[serde(deserialize_with = "wire::bytes")]
    key: Vec<u8>,
    #[serde(alias = "rangeEnd", deserialize_with = "wire::bytes")]
    range_end: Vec<u8>,
    #[serde(alias = "startRevision", deserialize_with = "wire::int64")]
    start_revision: Revision,
    #[serde(alias = "progressNotify", deserialize_with = "wire::boolean")]
    progress_notify: bool,
    #[serde(deserialize_with = "wire::list")]
    filters: Vec<Filter>,
    #[serde(alias = "prevKv", deserialize_with = "wire::boolean")]
    prev_kv: bool,
}

/// The members of one `WatchResponse` besides its header and events.
#[derive(Default)]
struct Status<'a> {
    created: bool,
    canceled: bool,
    compact_revision: Revision,
    cancel_reason: &'a str,
    watch_id: i64,
}

/// One message: `{"result":{"header":…,…}}` and a newline, as one chunk.
fn message(header: Header, status: &Status<'_>, events: Option<&[Bytes]>) -> Bytes {
    struct Result<'a>(Header, &'a Status<'a>);
    impl Serialize for Result<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let Status { created, canceled, compact_revision, cancel_reason, watch_id } = *self.1;
            let mut map = s.serialize_map(None)?;
            map.serialize_entry("header", &self.0)?;
            if watch_id != 0 {
                map.serialize_entry("watch_id", &watch_id.to_string())?;
            }
            if created {
                map.serialize_entry("created", &true)?;
            }
            if canceled {
                map.serialize_entry("canceled", &true)?;
            }
            if compact_revision != 0 {
                map.serialize_entry("compact_revision", &compact_revision.to_string())?;
            }
            if !cancel_reason.is_empty() {
                map.serialize_entry("cancel_reason", cancel_reason)?;
            }
            map.end()
        }
    }
    let mut out = b"{\"result\":".to_vec();
    out.extend(serde_json::to_vec(&Result(header, status)).unwrap_or_default());
    if let Some(events) = events {
        // Splice the events in before the result's closing brace.
        out.pop();
        out.extend_from_slice(b",\"events\":[");
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(event);
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

/// A whole answer of one message, then the end (a refused watch).
fn single(message: Bytes) -> Response {
    streaming(Body::from(message))
}

fn streaming(body: Body) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Messages must reach the client one by one: the gateway's gzip would
    // hold them back.
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("identity"));
    response
}

/// `POST /v3/watch`.
pub async fn watch(
    State(api): State<EtcdV3>,
    headers: HeaderMap,
    EtcdBody(body): EtcdBody,
) -> Result<Response, EtcdError> {
    let caller = keys::caller(&api.app, &headers)?;
    let request: WatchRequest = wire::parse(&body)?;
    let create = request
        .create_request
        .ok_or_else(|| EtcdError::invalid("etcdserver: /v3/watch needs a create_request"))?;
    let ids = api.ids().await;
    let located = match keys::locate(&api.app.namespaces, &caller, &create.key, &create.range_end) {
        Ok(located) => located,
        Err(refused) => {
            // etcd refuses a watch in-stream: created and cancelled at once.
            let head = api.app.namespaces.iter().map(|ns| ns.cache.head()).max().unwrap_or(0);
            let status = Status {
                created: true,
                canceled: true,
                cancel_reason: &refused.message,
                watch_id: -1,
                ..Status::default()
            };
            return Ok(single(message(Header { ids, revision: head }, &status, None)));
        }
    };
    let cache = &located.ns.cache;
    if !cache.status().is_ready() {
        return Err(EtcdError::new(
            Code::Unavailable,
            "etcdserver: the gateway's cache of this range is loading",
        ));
    }
    let permit = api
        .app
        .watch_limits
        .acquire(&located.ns.config.name, caller.token_name())
        .map_err(|_| EtcdError::new(Code::ResourceExhausted, "etcdserver: too many requests"))?;
    // Registered at `head` before `created` is sent, so nothing after it is
    // missed; a start revision beyond it is a floor on what is sent.
    let head = cache.head();
    let (since, floor) = match create.start_revision {
        from if from <= 0 || from > head + 1 => (head, from.max(0)),
        from => (from - 1, 0),
    };
    let progress = create.progress_notify.then(|| api.app.config.watch.progress_interval.get());
    let options = FeedOptions {
        range: located.range.clone(),
        start: Start::Since(since),
        prev_kv: create.prev_kv,
        on_gap: OnGap::End,
        snapshot_chunk: 1000,
        progress_interval: progress,
        heartbeat_interval: None,
        lifetime: None,
    };
    let feed = Feed::new(cache, options, &api.app.catch_ups, &api.app.shutdown);
    let created = Status { created: true, ..Status::default() };
    let stream = WatchStream {
        feed,
        ns: Arc::clone(&located.ns),
        ids,
        create,
        floor,
        pending: VecDeque::from([message(Header { ids, revision: head }, &created, None)]),
        done: false,
        _permit: permit,
    };
    let body = Body::from_stream(stream::unfold(stream, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(chunk), s))
    }));
    Ok(streaming(body))
}

/// One watch's stream: its feed, rendered as etcd's messages.
struct WatchStream {
    feed: Feed,
    ns: Arc<Namespace>,
    ids: HeaderIds,
    create: CreateRequest,
    /// Revisions below this one are not sent (a start revision ahead of the cache).
    floor: Revision,
    pending: VecDeque<Bytes>,
    /// The last message was sent: the stream ends.
    done: bool,
    _permit: WatchPermit,
}

impl WatchStream {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some(chunk);
            }
            if self.done {
                return None;
            }
            let event = self.feed.next().await?;
            if let Some(chunk) = self.message(event) {
                self.pending.push_back(chunk);
            }
        }
    }

    fn header(&self, revision: Revision) -> Header {
        Header { ids: self.ids, revision }
    }

    fn message(&mut self, event: FeedEvent) -> Option<Bytes> {
        match event {
            FeedEvent::Batch { entry, selected } => {
                let events = self.events(&entry, selected)?;
                self.feed.sent();
                let revision = entry.revision.max(self.ns.cache.head());
                Some(message(self.header(revision), &Status::default(), Some(&events)))
            }
            FeedEvent::Progress(revision) => Some(message(self.header(revision), &Status::default(), None)),
            FeedEvent::Gap(gap) => {
                self.done = true;
                let status =
                    Status { canceled: true, compact_revision: gap.compact_revision, ..Status::default() };
                Some(message(self.header(0), &status, None))
            }
            FeedEvent::Failed(e) => {
                self.done = true;
                let reason = EtcdError::from(e).message;
                let status = Status { canceled: true, cancel_reason: &reason, ..Status::default() };
                Some(message(self.header(self.ns.cache.head()), &status, None))
            }
            FeedEvent::ShuttingDown => {
                self.done = true;
                None
            }
            FeedEvent::Synced(_)
            | FeedEvent::Snapshot { .. }
            | FeedEvent::Heartbeat
            | FeedEvent::Reset { .. } => None,
        }
    }

    /// The rendered events of a batch this watch sends, or `None` when its
    /// filters or floor leave none.
    fn events(&self, entry: &Arc<Entry>, selected: Selected) -> Option<Vec<Bytes>> {
        if entry.revision < self.floor {
            return None;
        }
        let prefix = self.ns.config.prefix.as_bytes();
        let prev_kv = self.create.prev_kv;
        let render = |e: &Entry| render(e, prefix, prev_kv);
        let shape = Shape { surface: "etcd_v3", variant: u32::from(prev_kv) };
        let rendered = self.ns.frames.rendered(entry, shape, render);
        let indices: Vec<usize> = match selected {
            Selected::None => Vec::new(),
            Selected::All => (0..entry.events.len()).collect(),
            Selected::Some(indices) => indices,
        };
        let wanted = |event: &Event| {
            !self.create.filters.iter().any(|f| match f {
                Filter::NoPut => event.kind == EventKind::Put,
                Filter::NoDelete => event.kind == EventKind::Delete,
            })
        };
        let events: Vec<Bytes> = indices
            .into_iter()
            .filter(|i| wanted(&entry.events[*i]))
            .map(|i| rendered.events[i].clone())
            .collect();
        (!events.is_empty()).then_some(events)
    }
}

/// Every event of a batch as etcd's `mvccpb.Event` JSON (absolute keys).
fn render(entry: &Entry, prefix: &[u8], prev_kv: bool) -> Rendered {
    struct EventJson<'a> {
        event: &'a Event,
        prefix: &'a [u8],
        prev_kv: bool,
    }
    impl Serialize for EventJson<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(None)?;
            if self.event.kind == EventKind::Delete {
                map.serialize_entry("type", "DELETE")?;
            }
            map.serialize_entry("kv", &KvJson { prefix: self.prefix, kv: &self.event.kv, keys_only: false })?;
            if let Some(prev) = self.event.prev_kv.as_ref().filter(|_| self.prev_kv) {
                map.serialize_entry("prev_kv", &KvJson { prefix: self.prefix, kv: prev, keys_only: false })?;
            }
            map.end()
        }
    }
    let events = entry
        .events
        .iter()
        .map(|event| {
            Bytes::from(serde_json::to_vec(&EventJson { event, prefix, prev_kv }).unwrap_or_default())
        })
        .collect();
    Rendered { events, whole: Bytes::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_result_document_and_a_newline() {
        let ids = HeaderIds { cluster_id: 1, member_id: 2, raft_term: 3 };
        let created =
            message(Header { ids, revision: 4 }, &Status { created: true, ..Status::default() }, None);
        assert_eq!(
            &created[..],
            &b"{\"result\":{\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\",\"revision\":\"4\",\"raft_term\":\"3\"},\"created\":true}}\n"[..]
        );
        let events = [Bytes::from_static(b"{\"kv\":{}}"), Bytes::from_static(b"{\"type\":\"DELETE\"}")];
        let batch =
            message(Header { ids: HeaderIds::default(), revision: 5 }, &Status::default(), Some(&events));
        assert_eq!(
            &batch[..],
            &b"{\"result\":{\"header\":{\"revision\":\"5\"},\"events\":[{\"kv\":{}},{\"type\":\"DELETE\"}]}}\n"[..]
        );
        let cancel = Status { canceled: true, compact_revision: 5, ..Status::default() };
        let cancel = message(Header { ids: HeaderIds::default(), revision: 0 }, &cancel, None);
        assert_eq!(
            &cancel[..],
            &b"{\"result\":{\"header\":{},\"canceled\":true,\"compact_revision\":\"5\"}}\n"[..]
        );
    }
}
