//! The state machine behind a [`Watch`](super::Watch): connect, turn SSE
//! blocks into typed events while tracking the resume position, and on a
//! failure wait and reconnect so that the caller sees one unbroken stream.
//!
//! The position is the id of the last `change`, `progress` or `synced`
//! (what a browser's `EventSource` sends as `Last-Event-ID`). Snapshots
//! carry no id: a connection that breaks in the middle of one (the initial
//! snapshot, or the one after a `reset`) cannot be resumed by position, so
//! the next connection asks for a fresh snapshot, and the caller is told
//! first with a `Reset` (`Interrupted`) to drop the partial state.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sse_stream::Sse;
use tokio::time::Instant;

use super::connection::Connection;
use super::{ResetReason, Selection, WatchEvent, WatchOptions};
use crate::Revision;
use crate::client::Client;
use crate::error::{Error, Problem, Result};
use crate::types::{Event, KeyValue};

pub(super) struct Driver {
    client: Client,
    /// The watch's URL as asked for.
    url: String,
    /// The same with `snapshot=true`: after an interrupted snapshot.
    snapshot_url: String,
    options: WatchOptions,
    /// Resume after this revision.
    position: Option<Revision>,
    /// `position`, for [`Watch::last_event_id`](super::Watch::last_event_id).
    shared_position: Arc<AtomicI64>,
    connection: Option<Connection>,
    /// Whether the current connection delivered an event.
    delivered: bool,
    /// A reset or snapshot chunk was delivered and its `synced` was not.
    snapshot_open: bool,
    /// Connect for a fresh snapshot, not by position.
    fresh_snapshot: bool,
    /// The gateway's `retry:`, once it sent one.
    server_retry: Option<Duration>,
    /// Consecutive failed connections.
    failures: u32,
    /// Do not connect before this.
    wait_until: Option<Instant>,
    /// An event to yield before anything else.
    pending: Option<WatchEvent>,
    /// The watch ended (after a terminal error).
    done: bool,
}

/// `{"revision": R}` (synced, progress).
#[derive(Deserialize)]
struct RevisionData {
    revision: Revision,
}

#[derive(Deserialize)]
struct SnapshotData {
    revision: Revision,
    kvs: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct ChangeData {
    revision: Revision,
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct ResetData {
    code: String,
    #[serde(default)]
    revision: Revision,
}

fn parse<T: DeserializeOwned>(name: &str, data: &str) -> Result<T> {
    serde_json::from_str(data).map_err(|e| Error::Protocol {
        status: Some(200),
        detail: format!("`{name}` event: {e}: {data:.200}"),
    })
}

impl Driver {
    pub(super) fn new(
        client: Client,
        namespace: &str,
        selection: &Selection,
        options: WatchOptions,
        shared_position: Arc<AtomicI64>,
    ) -> Self {
        let query = |snapshot: bool| {
            let mut query = crate::options::Query::default();
            selection.add_to(&mut query);
            let options = WatchOptions { snapshot: options.snapshot || snapshot, ..options.clone() };
            options.add_to(&mut query);
            query.finish()
        };
        Self {
            url: client.url(namespace, "watch", &query(false)),
            snapshot_url: client.url(namespace, "watch", &query(true)),
            client,
            position: options.since,
            options,
            shared_position,
            connection: None,
            delivered: false,
            snapshot_open: false,
            fresh_snapshot: false,
            server_retry: None,
            failures: 0,
            wait_until: None,
            pending: None,
            done: false,
        }
    }

    pub(super) fn into_stream(self) -> BoxStream<'static, Result<WatchEvent>> {
        stream::unfold(self, |mut driver| async move {
            let item = driver.next().await?;
            Some((item, driver))
        })
        .boxed()
    }

    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.pending.take() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if let Some(at) = self.wait_until.take() {
                tokio::time::sleep_until(at).await;
            }
            if self.connection.is_none() {
                match self.connect().await {
                    Ok(connection) => self.connection = Some(connection),
                    Err(e) => return Some(self.failed(e)),
                }
            }
            let connection = self.connection.as_mut()?;
            match connection.next().await {
                Ok(Some(block)) => {
                    if let Some(item) = self.handle(block) {
                        return Some(item);
                    }
                }
                Ok(None) => self.ended(),
                Err(e) => return Some(self.failed(e)),
            }
        }
    }

    async fn connect(&mut self) -> Result<Connection> {
        self.delivered = false;
        let (url, position) =
            if self.fresh_snapshot { (&self.snapshot_url, None) } else { (&self.url, self.position) };
        tracing::debug!(url = %url, last_event_id = ?position, "connecting watch");
        Connection::open(&self.client, url, position, self.options.idle_timeout).await
    }

    /// The connection (or the attempt) failed with `error`: reconnect
    /// later when that can help, else end the watch with it.
    fn failed(&mut self, error: Error) -> Result<WatchEvent> {
        self.connection = None;
        if !error.is_retryable() {
            self.done = true;
            return Err(error);
        }
        self.failures = if self.delivered { 1 } else { self.failures + 1 };
        let delay = self.options.backoff.delay(self.failures, self.server_retry, error.retry_after());
        tracing::debug!(%error, ?delay, "watch reconnects");
        self.reconnect_after(delay);
        Ok(WatchEvent::Reconnecting { error, delay })
    }

    /// The gateway ended the stream (its lifetime bound): resume after its
    /// `retry:`, as a browser does.
    fn ended(&mut self) {
        self.connection = None;
        if !self.delivered {
            // An empty stream is a failure in disguise: back off.
            self.failures += 1;
        }
        let failures = self.failures.max(1);
        let delay = self.options.backoff.delay(failures, self.server_retry, None);
        self.reconnect_after(delay);
    }

    fn reconnect_after(&mut self, delay: Duration) {
        self.wait_until = Some(Instant::now() + delay);
        if self.snapshot_open {
            self.snapshot_open = false;
            self.fresh_snapshot = true;
            self.pending = Some(WatchEvent::Reset { reason: ResetReason::Interrupted, revision: 0 });
        }
    }

    fn advance(&mut self, id: Option<&str>, revision: Revision) {
        let position = id.and_then(|id| id.trim().parse().ok()).unwrap_or(revision);
        self.position = Some(position);
        self.shared_position.store(position, Ordering::Release);
    }

    /// The event of one SSE block, if it is one to yield.
    fn handle(&mut self, block: Sse) -> Option<Result<WatchEvent>> {
        if let Some(retry) = block.retry {
            self.server_retry = Some(Duration::from_millis(retry));
        }
        let name = block.event.as_deref()?;
        let data = block.data.as_deref().unwrap_or_default();
        let id = block.id.as_deref();
        let event = match name {
            "snapshot" => parse::<SnapshotData>(name, data).map(|d| {
                self.snapshot_open = true;
                WatchEvent::Snapshot { revision: d.revision, kvs: d.kvs }
            }),
            "synced" => parse::<RevisionData>(name, data).map(|d| {
                self.advance(id, d.revision);
                self.snapshot_open = false;
                self.fresh_snapshot = false;
                WatchEvent::Synced { revision: d.revision }
            }),
            "change" => parse::<ChangeData>(name, data).map(|d| {
                self.advance(id, d.revision);
                WatchEvent::Change { revision: d.revision, events: d.events }
            }),
            "progress" => parse::<RevisionData>(name, data).map(|d| {
                self.advance(id, d.revision);
                WatchEvent::Progress { revision: d.revision }
            }),
            "reset" => parse::<ResetData>(name, data).map(|d| {
                self.snapshot_open = true;
                WatchEvent::Reset { reason: ResetReason::parse(&d.code), revision: d.revision }
            }),
            "error" => {
                let error = match parse::<Problem>(name, data) {
                    Ok(problem) => Error::from_problem(problem, None),
                    Err(e) => e,
                };
                return Some(self.failed(error));
            }
            // An event newer than this client: nothing it can act on.
            _ => return None,
        };
        match event {
            Ok(event) => {
                self.delivered = true;
                self.failures = 0;
                Some(Ok(event))
            }
            Err(e) => Some(self.failed(e)),
        }
    }
}
