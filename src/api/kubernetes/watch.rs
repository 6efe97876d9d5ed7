//! `?watch=true`: the API server's JSON watch stream over a subscriber's
//! [`Feed`]: one `{"type","object"}` line per event; the lines of the
//! events already due go out together, never waiting for more.
//!
//! The feed keeps the guarantees (every revision once, in order, catch-ups
//! from etcd); this module turns its events into `ADDED`, `MODIFIED`,
//! `DELETED`, `BOOKMARK` and `ERROR` lines. Without selectors a batch's
//! lines are rendered once per resource and shared by every watcher
//! through the namespace's [`crate::fanout::FrameMemo`].

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use serde_json::{Value, json};

use super::Kube;
use super::request::{ListQuery, Version};
use super::resource::{Object, Resource};
use super::status::Status;
use crate::cache::{At, Entry, Event, EventKind, KeyValue, ReadError, Revision};
use crate::fanout::{
    Feed, FeedEvent, FeedOptions, Gap, JOIN_BYTES, OnGap, Rendered, Selected, Shape, Start, join,
};
use crate::http::auth::Caller;
use crate::http::limits::WatchPermit;
use crate::metrics::Metrics;

/// Most objects in one snapshot chunk of the feed.
const SNAPSHOT_CHUNK: usize = 500;

/// The annotation of the bookmark that ends a WatchList's initial events.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// What one watcher wants of each event.
struct Filter {
    /// Objects outside it are not this watcher's (when the key range does
    /// not already say so).
    namespace: Option<String>,
    query: ListQuery,
}

impl Filter {
    fn selects(&self, object: &Object) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == object.namespace)
            && self.query.fields.matches(&object.namespace, &object.name)
            && self.query.labels.matches(&object.object)
    }

    /// Whether every watcher of the resource would see exactly what this one does.
    fn is_shared(&self) -> bool {
        self.namespace.is_none() && self.query.fields.is_empty() && self.query.labels.is_empty()
    }
}

/// Most bytes of `ADDED` lines [`AddedLines`] keeps per resource.
const ADDED_LINES_BYTES: u64 = 32 << 20;

/// The `ADDED` lines of object versions, rendered once and shared by every
/// watcher that sees every object: a thousand informers syncing by
/// WatchList parse and encode each object once, not a thousand times (the
/// rendering is most of a sync's cost). Keyed by key and `mod_revision`,
/// and used only for the same value (an etcd restored from a backup can
/// reuse a revision); bounded in bytes, least recently used first out.
pub struct AddedLines(moka::sync::Cache<(Bytes, Revision), (Bytes, Option<Bytes>)>);

impl AddedLines {
    /// An empty memo.
    pub fn new() -> Self {
        let weigh = |(key, _): &(Bytes, Revision), (_, line): &(Bytes, Option<Bytes>)| {
            u32::try_from(key.len() + line.as_ref().map_or(0, Bytes::len) + 64).unwrap_or(u32::MAX)
        };
        Self(moka::sync::Cache::builder().max_capacity(ADDED_LINES_BYTES).weigher(weigh).build())
    }

    /// The `ADDED` line of `kv`, `None` when it is no object of `resource`
    /// (counted in `metrics` when first rendered).
    fn line(&self, resource: &Resource, kv: &KeyValue, metrics: &Metrics) -> Option<Bytes> {
        let render = || {
            let object = resource.object(kv, kv.meta.mod_revision, metrics);
            (kv.value.clone(), object.map(|o| line("ADDED", &Value::Object(o.object))))
        };
        let (value, line) = self.0.get_with((kv.key.clone(), kv.meta.mod_revision), render);
        if value == kv.value { line } else { render().1 }
    }
}

/// One watch line, `type` first as the API server writes it.
fn line(kind: &str, object: &Value) -> Bytes {
    let mut bytes = format!("{{\"type\":\"{kind}\",\"object\":").into_bytes();
    serde_json::to_writer(&mut bytes, object).unwrap_or_default();
    bytes.extend_from_slice(b"}\n");
    Bytes::from(bytes)
}

/// The line of one event for a watcher with `filter`, if it sees one: an
/// object entering the selection is `ADDED`, one leaving it (deleted, no
/// longer a JSON object, or no longer selected) `DELETED` with its last
/// state at the event's revision.
fn event_line(resource: &Resource, event: &Event, filter: &Filter, metrics: &Metrics) -> Option<Bytes> {
    let revision = event.kv.meta.mod_revision;
    let selected = |kv: &KeyValue| resource.object(kv, revision, metrics).filter(|o| filter.selects(o));
    let new = match event.kind {
        EventKind::Put => selected(&event.kv),
        EventKind::Delete => None,
    };
    let old = event.prev_kv.as_ref().and_then(selected);
    let (kind, object) = match (new, old) {
        (Some(new), Some(_)) => ("MODIFIED", new),
        (Some(new), None) => ("ADDED", new),
        (None, Some(old)) => ("DELETED", old),
        (None, None) => return None,
    };
    Some(line(kind, &Value::Object(object.object)))
}

/// A `BOOKMARK` at `revision`, with the initial-events-end annotation when asked.
fn bookmark(resource: &Resource, revision: Revision, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({INITIAL_EVENTS_END: "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": resource.config.kind, "apiVersion": resource.api_version, "metadata": metadata}),
    )
}

fn error_line(status: &Status) -> Bytes {
    line("ERROR", &status.to_json())
}

/// Serves a watch of `resource` in `namespace` (or all namespaces).
///
/// # Errors
/// 504 for a revision beyond etcd's, 429 before the first load, the
/// watch-limit refusals; a resume nobody can serve any more is an in-stream
/// 410 `ERROR`, as the API server sends it.
pub async fn watch(
    state: &Kube,
    caller: &Caller,
    resource: &Resource,
    namespace: Option<&str>,
    query: ListQuery,
) -> Result<Response, Status> {
    let app = &state.app;
    let ns = &resource.namespace;
    let cache = &ns.cache;
    if !cache.status().is_ready() {
        return Err(Status::from(ReadError::NotReady));
    }
    let (start, initial_events) = match (query.send_initial_events, query.version) {
        (Some(true), version) => {
            // The initial state is not older than the resourceVersion asked
            // (unset: the most recent, a consistent read).
            let at = match version {
                Version::Unset => At::Consistent,
                Version::Any => At::Head,
                Version::At(n) => At::AtLeast(n),
            };
            cache.snapshot(at).await.map_err(Status::from)?;
            (Start::Snapshot, true)
        }
        (_, Version::At(n)) => {
            cache.check_not_future(n).await.map_err(Status::from)?;
            (Start::Since(n), false)
        }
        (Some(false), _) => (Start::Now, false),
        (None, _) => (Start::Snapshot, false),
    };
    let permit = app.watch_limits.acquire(&ns.config.name, caller.token_name()).map_err(Status::from)?;
    // A namespace in the key range filters nothing further; otherwise each
    // event is checked.
    let range = resource.range(namespace);
    let namespace_in_range =
        namespace.is_none_or(|ns| resource.template.prefix(Some(ns)) != resource.template.prefix(None));
    let filter = Filter { namespace: namespace.filter(|_| !namespace_in_range).map(str::to_owned), query };
    let watch_config = &app.config.watch;
    let lifetime = match filter.query.timeout {
        Some(timeout) if !timeout.is_zero() => timeout,
        _ => watch_config.max_stream_lifetime.get().mul_f64(0.9 + 0.2 * fastrand::f64()),
    };
    let options = FeedOptions {
        range,
        start,
        prev_kv: true,
        on_gap: OnGap::End,
        snapshot_chunk: SNAPSHOT_CHUNK,
        progress_interval: filter.query.bookmarks.then(|| app.config.kubernetes.bookmark_interval.get()),
        heartbeat_interval: None,
        lifetime: Some(lifetime),
    };
    let mut pending = VecDeque::new();
    let mut ended = false;
    if let Start::Since(n) = start {
        if let Some(gap) = Gap::at_start(cache, n) {
            pending.push_back(error_line(&Status::too_old(n, gap.compact_revision)));
            ended = true;
        }
    }
    let stream = WatchStream {
        feed: Feed::new(cache, options, &app.catch_ups, &app.shutdown),
        ended,
        state: state.clone(),
        resource: resource.index,
        filter,
        initial_events,
        pending,
        _permit: permit,
    };
    let body = Body::from_stream(stream::unfold(stream, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(chunk), s))
    }));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// One watcher's stream: its feed, rendered.
struct WatchStream {
    feed: Feed,
    /// The last line is out: nothing more after `pending`.
    ended: bool,
    state: Kube,
    /// The resource's index in [`super::Resources`].
    resource: u32,
    filter: Filter,
    /// A WatchList: the initial state ends with the annotated bookmark.
    initial_events: bool,
    /// Lines rendered and not yet given to hyper.
    pending: VecDeque<Bytes>,
    _permit: WatchPermit,
}

impl WatchStream {
    fn resource(&self) -> &Resource {
        self.state.resources.iter().nth(self.resource as usize).expect("the resource of a running watch")
    }

    /// The next chunk of the body: the lines pending and those of the
    /// events already due, up to [`JOIN_BYTES`], as one write. A WatchList's
    /// initial objects go out 64 KiB at a time, not a chunk per object.
    /// `None` ends the stream.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        while self.pending.is_empty() {
            if self.ended {
                return None;
            }
            let event = self.feed.next().await?;
            self.take(event);
        }
        let mut chunk = Vec::new();
        let mut bytes = 0;
        loop {
            while bytes < JOIN_BYTES {
                let Some(line) = self.pending.pop_front() else { break };
                bytes += line.len();
                chunk.push(line);
            }
            if bytes >= JOIN_BYTES || self.ended {
                break;
            }
            let Some(event) = self.feed.ready() else { break };
            self.take(event);
        }
        Some(join(chunk))
    }

    /// Queues the lines of `event`; a feed event with none (filtered out)
    /// does not count as sent.
    fn take(&mut self, event: FeedEvent) {
        let lines = self.lines(event);
        if !lines.is_empty() {
            self.feed.sent();
            self.pending.extend(lines);
        }
    }

    /// The lines of a feed event; an event that ends the watch ends the feed.
    fn lines(&mut self, event: FeedEvent) -> Vec<Bytes> {
        let resource = self.resource();
        let metrics = &self.state.app.metrics;
        match event {
            FeedEvent::Snapshot { kvs, .. } if self.filter.is_shared() => {
                kvs.iter().filter_map(|kv| resource.added_lines.line(resource, kv, metrics)).collect()
            }
            FeedEvent::Snapshot { kvs, .. } => kvs
                .iter()
                .filter_map(|kv| resource.object(kv, kv.meta.mod_revision, metrics))
                .filter(|o| self.filter.selects(o))
                .map(|o| line("ADDED", &Value::Object(o.object)))
                .collect(),
            FeedEvent::Synced(revision) if self.initial_events => vec![bookmark(resource, revision, true)],
            FeedEvent::Synced(_) | FeedEvent::Heartbeat => Vec::new(),
            FeedEvent::Batch { entry, selected } => self.batch(&entry, selected),
            FeedEvent::Progress(revision) => vec![bookmark(resource, revision, false)],
            FeedEvent::Gap(Gap { cursor, compact_revision, .. }) => {
                self.end_with(&Status::too_old(cursor, compact_revision))
            }
            FeedEvent::Reset { head, .. } => self.end_with(&Status::too_old(head, head)),
            FeedEvent::ShuttingDown => {
                self.ended = true;
                Vec::new()
            }
            FeedEvent::Failed(e) => self.end_with(&Status::from(e)),
        }
    }

    fn end_with(&mut self, status: &Status) -> Vec<Bytes> {
        self.ended = true;
        vec![error_line(status)]
    }

    /// The lines of one revision: shared renderings when every watcher of
    /// the resource sees the same, else this watcher's own.
    fn batch(&self, entry: &Arc<Entry>, selected: Selected) -> Vec<Bytes> {
        let resource = self.resource();
        let metrics = &self.state.app.metrics;
        let render = |e: &Entry| {
            let events: Box<[Bytes]> = e
                .events
                .iter()
                .map(|event| event_line(resource, event, &self.filter, metrics).unwrap_or_default())
                .collect();
            let whole = Bytes::from(events.concat());
            Rendered { events, whole }
        };
        let rendered = if self.filter.is_shared() {
            let shape = Shape { surface: "kubernetes", variant: self.resource };
            resource.namespace.frames.rendered(entry, shape, render)
        } else {
            Arc::new(render(entry))
        };
        let lines: Vec<Bytes> = match selected {
            Selected::All => vec![rendered.whole.clone()],
            Selected::Some(chosen) => chosen.into_iter().map(|i| rendered.events[i].clone()).collect(),
            Selected::None => Vec::new(),
        };
        lines.into_iter().filter(|l| !l.is_empty()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Meta;
    use crate::config::{Config, KubeResourceConfig};
    use crate::namespaces::Namespaces;

    #[tokio::test]
    async fn added_lines_are_rendered_once_per_version_and_never_for_another_value() {
        let config = Config::default();
        let client = crate::etcd::EtcdClient::connect(&config.etcd).await.unwrap();
        let namespaces = Namespaces::new(&config, &client);
        let metrics = Metrics::new(namespaces.clone(), Arc::new(crate::fanout::CatchUps::new(1, 1 << 20)));
        let widgets = KubeResourceConfig {
            namespace: "default".into(),
            group: "example.com".into(),
            version: "v1".into(),
            resource: "widgets".into(),
            kind: "Widget".into(),
            key: "widgets/{namespace}/{name}".into(),
        };
        let resources = super::super::resource::Resources::new(&[widgets], &namespaces);
        let resource = resources.iter().next().unwrap();
        let kv = |value: &'static str, mod_revision| KeyValue {
            key: Bytes::from_static(b"widgets/n1/a"),
            value: Bytes::from_static(value.as_bytes()),
            meta: Meta {
                create_revision: 2,
                mod_revision,
                version: 1,
                lease: 0,
                value_len: u32::try_from(value.len()).unwrap(),
            },
        };
        let expected = |spec: &str, rv: &str| {
            format!(
                "{{\"type\":\"ADDED\",\"object\":{{\"apiVersion\":\"example.com/v1\",\"kind\":\"Widget\",\
                 \"metadata\":{{\"name\":\"a\",\"namespace\":\"n1\",\"resourceVersion\":\"{rv}\"}},\"spec\":{spec}}}}}\n"
            )
        };
        let memo = &resource.added_lines;
        let first = memo.line(resource, &kv(r#"{"spec":1}"#, 5), &metrics).unwrap();
        assert_eq!(std::str::from_utf8(&first).unwrap(), expected("1", "5"));
        // The same version again: the same bytes, not a new rendering.
        let again = memo.line(resource, &kv(r#"{"spec":1}"#, 5), &metrics).unwrap();
        assert_eq!(again.as_ptr(), first.as_ptr());
        // Another value at the same key and revision (an etcd restored from
        // a backup): rendered from its own value.
        let other = memo.line(resource, &kv(r#"{"spec":2}"#, 5), &metrics).unwrap();
        assert_eq!(std::str::from_utf8(&other).unwrap(), expected("2", "5"));
        // Not an object: left out.
        assert_eq!(memo.line(resource, &kv("[1]", 6), &metrics), None);
    }

    #[test]
    fn lines_are_one_json_object_each() {
        let object = json!({"kind": "Widget", "metadata": {"name": "a"}});
        assert_eq!(
            &line("ADDED", &object)[..],
            b"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Widget\",\"metadata\":{\"name\":\"a\"}}}\n"
        );
    }
}
