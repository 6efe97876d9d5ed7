//! Server-Sent-Events framing and the rendering of watch events.
//!
//! A frame is a list of byte chunks written in order; the large part (the
//! JSON of a batch) is a shared `Bytes`, rendered once per batch and output
//! shape by the fan-out's memo and reused by every subscriber of that shape.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::render::{Encoding, KvJson, KvStyle, write_key};
use crate::cache::{Entry, Event, EventKind, KeyValue, Revision};
use crate::fanout::{FrameMemo, Rendered, Selected, Shape};

/// Frame chunks.
pub type Frame = Vec<Bytes>;

/// The comment that keeps idle connections open through proxies.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// The number of bytes of `frame`.
pub fn len(frame: &[Bytes]) -> usize {
    frame.iter().map(Bytes::len).sum()
}

/// `retry: <ms>` (the client's reconnection delay).
pub fn retry(ms: u64) -> Frame {
    vec![Bytes::from(format!("retry: {ms}\n\n"))]
}

/// An event: `event:`, optional `id:`, and one `data:` line made of `data`
/// chunks (JSON never contains a raw newline, so one line always suffices).
pub fn event(name: &str, id: Option<Revision>, data: impl IntoIterator<Item = Bytes>) -> Frame {
    let head = match id {
        Some(id) => format!("event: {name}\nid: {id}\ndata: "),
        None => format!("event: {name}\ndata: "),
    };
    let mut frame = vec![Bytes::from(head)];
    frame.extend(data);
    frame.push(Bytes::from_static(b"\n\n"));
    frame
}

/// An event whose data is `value` as JSON.
pub fn json_event(name: &str, id: Option<Revision>, value: &impl Serialize) -> Frame {
    let data = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    event(name, id, [Bytes::from(data)])
}

/// The output shape of a `/v1` subscriber: its encoding and `prev_kv`.
fn shape(encoding: Encoding, prev_kv: bool) -> Shape {
    Shape { surface: "v1", variant: (encoding as u32) * 2 + u32::from(prev_kv) }
}

/// One event as JSON: `{"type":"put","kv":{..},"prev_kv":{..}}`; a delete's
/// `kv` has only the key and `mod_revision`.
struct EventJson<'a> {
    event: &'a Event,
    encoding: Encoding,
    prev_kv: bool,
}

struct DeletedKv<'a>(&'a KeyValue);

impl Serialize for DeletedKv<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        write_key(&mut map, &self.0.key)?;
        map.serialize_entry("mod_revision", &self.0.meta.mod_revision)?;
        map.end()
    }
}

impl Serialize for EventJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let style = KvStyle { encoding: self.encoding, with_value: true, select: None };
        let mut map = s.serialize_map(None)?;
        match self.event.kind {
            EventKind::Put => {
                map.serialize_entry("type", "put")?;
                map.serialize_entry("kv", &KvJson { kv: &self.event.kv, style })?;
            }
            EventKind::Delete => {
                map.serialize_entry("type", "delete")?;
                map.serialize_entry("kv", &DeletedKv(&self.event.kv))?;
            }
        }
        if self.prev_kv {
            if let Some(prev) = &self.event.prev_kv {
                map.serialize_entry("prev_kv", &KvJson { kv: prev, style })?;
            }
        }
        map.end()
    }
}

fn render(events: &[Event], revision: Revision, encoding: Encoding, prev_kv: bool) -> Rendered {
    let rendered: Vec<Bytes> = events
        .iter()
        .map(|event| {
            Bytes::from(serde_json::to_vec(&EventJson { event, encoding, prev_kv }).unwrap_or_default())
        })
        .collect();
    // `whole` is the complete `change` frame: a subscriber that takes every
    // event sends these shared bytes as they are, with nothing of its own.
    let mut all =
        format!("event: change\nid: {revision}\ndata: {{\"revision\":{revision},\"events\":[").into_bytes();
    for (i, e) in rendered.iter().enumerate() {
        if i > 0 {
            all.push(b',');
        }
        all.extend_from_slice(e);
    }
    all.extend_from_slice(b"]}\n\n");
    Rendered { events: rendered.into_boxed_slice(), whole: Bytes::from(all) }
}

/// The `change` frame of the `selected` events of `entry` in a shape. The
/// whole frame's bytes are shared when every event is selected; otherwise
/// the selected events' shared bytes are joined without re-encoding.
pub fn change(
    memo: &FrameMemo,
    entry: &Arc<Entry>,
    selected: Selected,
    encoding: Encoding,
    prev_kv: bool,
) -> Frame {
    let render = |e: &Entry| render(&e.events, e.revision, encoding, prev_kv);
    let rendered = memo.rendered(entry, shape(encoding, prev_kv), render);
    let Selected::Some(chosen) = selected else {
        return vec![rendered.whole.clone()];
    };
    let mut data = Vec::with_capacity(chosen.len() * 2 + 1);
    data.push(Bytes::from(format!("{{\"revision\":{},\"events\":[", entry.revision)));
    for (n, i) in chosen.into_iter().enumerate() {
        if n > 0 {
            data.push(Bytes::from_static(b","));
        }
        data.push(rendered.events[i].clone());
    }
    data.push(Bytes::from_static(b"]}"));
    event("change", Some(entry.revision), data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::join;

    #[test]
    fn a_frame_joins_into_one_chunk_of_the_same_bytes_and_a_whole_batch_stays_shared() {
        let mut frame = event("change", Some(7), [Bytes::from_static(b"{\"a\":"), Bytes::from_static(b"1}")]);
        frame.extend(event("progress", Some(8), [Bytes::from_static(b"{}")]));
        assert_eq!(len(&frame), 67);
        assert_eq!(
            join(frame),
            Bytes::from_static(
                b"event: change\nid: 7\ndata: {\"a\":1}\n\nevent: progress\nid: 8\ndata: {}\n\n"
            )
        );
        let whole = Bytes::from(b"event: change\nid: 9\ndata: {}\n\n".to_vec());
        let joined = join(vec![whole.clone()]);
        assert_eq!(joined.as_ptr(), whole.as_ptr(), "not copied");
    }
}
