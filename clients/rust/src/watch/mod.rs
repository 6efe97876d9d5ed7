//! Watching: what to watch ([`Selection`]), how ([`WatchOptions`]), what
//! arrives ([`WatchEvent`]), and the [`Watch`] stream that reconnects by
//! itself, resuming with `Last-Event-ID` where it stopped.

mod backoff;
mod connection;
mod driver;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;

use crate::Revision;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::options::{Encoding, Query};
use crate::types::{Event, KeyValue};

pub use backoff::{Backoff, DEFAULT_MAX_BACKOFF, DEFAULT_MIN_BACKOFF};

/// Default [`WatchOptions::idle_timeout`]: four of the gateway's default
/// keep-alive intervals (15 s), so one delayed comment is no reason to
/// reconnect, while a dead connection is noticed within a minute.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The keys of a watch (or a mirror).
///
/// ```
/// use etcd_cache_gateway_client::Selection;
///
/// assert_eq!(Selection::prefix("services/").query(), "prefix=services/");
/// assert_eq!(Selection::range("a", "c").query(), "start=a&end=c");
/// assert_eq!(Selection::key(&b"\xff"[..]).query(), "key=%FF");
/// assert_eq!(Selection::all().query(), "");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    /// The whole namespace.
    #[default]
    All,
    /// Exactly one key.
    Key(Bytes),
    /// Keys starting with this.
    Prefix(Bytes),
    /// Keys in `[start, end)`; no end = to the end of the namespace.
    Range {
        /// First key.
        start: Bytes,
        /// End (exclusive).
        end: Option<Bytes>,
    },
}

impl Selection {
    /// The whole namespace.
    pub fn all() -> Self {
        Self::All
    }

    /// One key.
    pub fn key(key: impl Into<Bytes>) -> Self {
        Self::Key(key.into())
    }

    /// Keys starting with `prefix`.
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        Self::Prefix(prefix.into())
    }

    /// Keys in `[start, end)`.
    pub fn range(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        Self::Range { start: start.into(), end: Some(end.into()) }
    }

    /// Whether `key` is selected.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            Self::All => true,
            Self::Key(k) => k.as_ref() == key,
            Self::Prefix(p) => key.starts_with(p),
            Self::Range { start, end } => {
                key >= start.as_ref() && end.as_ref().is_none_or(|e| key < e.as_ref())
            }
        }
    }

    /// The query parameters of this selection.
    pub fn query(&self) -> String {
        let mut query = Query::default();
        self.add_to(&mut query);
        query.finish()
    }

    fn add_to(&self, query: &mut Query) {
        match self {
            Self::All => {}
            Self::Key(key) => {
                query.push("key", key);
            }
            Self::Prefix(prefix) => {
                query.push("prefix", prefix);
            }
            Self::Range { start, end } => {
                query.push("start", start);
                if let Some(end) = end {
                    query.push("end", end);
                }
            }
        }
    }
}

/// What to do when history the watch needs is gone (`on_gap=`).
///
/// ```
/// use etcd_cache_gateway_client::{OnGap, WatchOptions};
///
/// assert_eq!(WatchOptions::new().since(41).on_gap(OnGap::Error).query(), "on_gap=error");
/// assert_eq!(WatchOptions::new().on_gap(OnGap::Reset).query(), "");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnGap {
    /// Send [`WatchEvent::Reset`], then a fresh snapshot and `Synced`.
    #[default]
    Reset,
    /// End the watch with [`Error::Compacted`].
    Error,
}

/// How to watch: where to start, what each event carries, how to reconnect.
///
/// ```
/// use std::time::Duration;
/// use etcd_cache_gateway_client::{OnGap, WatchOptions};
///
/// let options = WatchOptions::new()
///     .snapshot()
///     .prev_kv()
///     .on_gap(OnGap::Error)
///     .progress_interval(Duration::from_secs(5));
/// assert_eq!(options.query(), "snapshot=true&prev_kv=true&on_gap=error&progress_interval=5000ms");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    pub(crate) since: Option<Revision>,
    pub(crate) snapshot: bool,
    pub(crate) prev_kv: bool,
    pub(crate) encoding: Encoding,
    pub(crate) on_gap: OnGap,
    pub(crate) progress_interval: Option<Duration>,
    pub(crate) idle_timeout: Duration,
    pub(crate) backoff: Backoff,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            since: None,
            snapshot: false,
            prev_kv: false,
            encoding: Encoding::Auto,
            on_gap: OnGap::Reset,
            progress_interval: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            backoff: Backoff::default(),
        }
    }
}

impl WatchOptions {
    /// From now on, no snapshot, default reconnection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every change after `revision` (a resume from a known position).
    #[must_use]
    pub fn since(mut self, revision: Revision) -> Self {
        self.since = Some(revision);
        self
    }

    /// First the current state ([`WatchEvent::Snapshot`] chunks, then
    /// [`WatchEvent::Synced`]), then the changes after it.
    #[must_use]
    pub fn snapshot(mut self) -> Self {
        self.snapshot = true;
        self
    }

    /// Each event carries the previous key-value.
    #[must_use]
    pub fn prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// How values are encoded.
    #[must_use]
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// What to do when history is gone.
    #[must_use]
    pub fn on_gap(mut self, on_gap: OnGap) -> Self {
        self.on_gap = on_gap;
        self
    }

    /// How often an idle stream gets [`WatchEvent::Progress`] (the
    /// gateway accepts 1 s to 1 h; its default is 30 s).
    #[must_use]
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = Some(interval);
        self
    }

    /// How long a stream may send nothing, not even the gateway's
    /// keep-alive comments, before it is taken for dead and reconnected
    /// (default [`DEFAULT_IDLE_TIMEOUT`]). Keep it above the gateway's
    /// `watch.heartbeat_interval`.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How reconnection waits grow after failures.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The query parameters of these options (the selection apart; `since`
    /// travels as the `Last-Event-ID` header).
    pub fn query(&self) -> String {
        let mut query = Query::default();
        self.add_to(&mut query);
        query.finish()
    }

    fn add_to(&self, query: &mut Query) {
        query.flag("snapshot", self.snapshot).flag("prev_kv", self.prev_kv);
        self.encoding.add_to(query);
        if self.on_gap == OnGap::Error {
            query.push("on_gap", "error");
        }
        if let Some(interval) = self.progress_interval {
            query.push("progress_interval", format!("{}ms", interval.as_millis()));
        }
    }
}

/// Why a watch's state must be replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetReason {
    /// etcd compacted history the watch needed.
    Compacted,
    /// The watch fell behind the gateway's history.
    Lagged,
    /// The gateway re-listed the namespace under the watch.
    Relisted,
    /// The connection broke during a snapshot: a new snapshot follows on
    /// the next connection (sent by this client, not the gateway).
    Interrupted,
    /// A reason newer than this client.
    Other(String),
}

impl ResetReason {
    fn parse(code: &str) -> Self {
        match code {
            "compacted" => Self::Compacted,
            "lagged" => Self::Lagged,
            "relisted" => Self::Relisted,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// One event of a [`Watch`].
///
/// The stream's shape: optionally a snapshot (`Snapshot` chunks then
/// `Synced`), then `Change`s and `Progress`es in revision order, each
/// revision once. A `Reset` means the state built so far is no longer
/// valid: `Snapshot` chunks of a new state follow, then `Synced`; replace
/// the old state with it at `Synced`. A `Snapshot` chunk that follows a
/// `Reset` or begins the stream starts a new state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum WatchEvent {
    /// Part of the state at `revision` (the gateway sends at most 1000
    /// key-values per chunk).
    Snapshot {
        /// The revision of the state.
        revision: Revision,
        /// Its key-values in key order, continuing the previous chunk.
        kvs: Vec<KeyValue>,
    },
    /// The state is complete up to `revision`: after a snapshot, after the
    /// replay of a resume, or at once for a watch that starts now.
    Synced {
        /// The revision.
        revision: Revision,
    },
    /// Every change of one revision in the selection.
    Change {
        /// The revision.
        revision: Revision,
        /// Its events, in etcd's order.
        events: Vec<Event>,
    },
    /// Nothing else happened in the selection up to `revision`.
    Progress {
        /// The revision.
        revision: Revision,
    },
    /// History the watch needed is gone: a new snapshot follows.
    Reset {
        /// Why.
        reason: ResetReason,
        /// The gateway's revision when it reset (0 for [`ResetReason::Interrupted`]).
        revision: Revision,
    },
    /// The connection failed; the watch reconnects after `delay` and
    /// resumes after its last event (nothing is lost).
    Reconnecting {
        /// What failed.
        error: Error,
        /// How long until the next attempt.
        delay: Duration,
    },
}

/// A watch stream ([`Client::watch`]): typed events, in order, across any
/// number of reconnections.
///
/// Retryable failures ([`Error::is_retryable`]: a broken or silent
/// connection, the gateway shutting down or overloaded) show up as
/// [`WatchEvent::Reconnecting`]; the watch then waits (the gateway's
/// `retry:` for the first attempt, then exponential backoff with jitter,
/// at least any `Retry-After`) and resumes with `Last-Event-ID`. Any other
/// failure (a bad option, a missing namespace, a refused token, a gap with
/// [`OnGap::Error`], history etcd compacted under a read the gateway had to
/// make) is yielded as `Err` and ends the stream: start a new watch, from a
/// snapshot when the error is [`Error::Compacted`].
///
/// ```no_run
/// # async fn example(client: etcd_cache_gateway_client::Client) -> etcd_cache_gateway_client::Result<()> {
/// use futures_util::StreamExt;
/// use etcd_cache_gateway_client::{Selection, WatchEvent, WatchOptions};
///
/// let mut watch = client.watch("apps", Selection::prefix("config/"), WatchOptions::new());
/// while let Some(event) = watch.next().await {
///     match event? {
///         WatchEvent::Change { revision, events } => println!("{revision}: {} changes", events.len()),
///         WatchEvent::Reset { reason, .. } => println!("reset ({reason:?}): a new snapshot follows"),
///         _ => {}
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub struct Watch {
    inner: BoxStream<'static, Result<WatchEvent>>,
    position: Arc<AtomicI64>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("last_event_id", &self.last_event_id()).finish_non_exhaustive()
    }
}

/// `position` when none is known.
const NO_POSITION: i64 = -1;

impl Watch {
    pub(crate) fn new(client: Client, namespace: &str, selection: Selection, options: WatchOptions) -> Self {
        let position = Arc::new(AtomicI64::new(options.since.unwrap_or(NO_POSITION)));
        let driver = driver::Driver::new(client, namespace, &selection, options, Arc::clone(&position));
        Self { inner: driver.into_stream(), position }
    }

    /// The revision the watch would resume after (the id of the last
    /// `Change`, `Progress` or `Synced`, or `since`); `None` before the
    /// first of them.
    pub fn last_event_id(&self) -> Option<Revision> {
        let position = self.position.load(Ordering::Acquire);
        (position != NO_POSITION).then_some(position)
    }
}

impl Stream for Watch {
    type Item = Result<WatchEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_contain_their_keys() {
        assert!(Selection::prefix("a/").contains(b"a/b") && !Selection::prefix("a/").contains(b"b"));
        let range = Selection::range("b", "d");
        assert_eq!([b"a", b"b", b"c", b"d"].map(|k| range.contains(k)), [false, true, true, false]);
        assert!(Selection::Range { start: Bytes::from_static(b"b"), end: None }.contains(b"zzz"));
        assert!(Selection::key("k").contains(b"k") && !Selection::key("k").contains(b"k2"));
        assert!(Selection::all().contains(b""));
    }
}
