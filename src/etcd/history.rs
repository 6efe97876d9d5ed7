//! The history of a range, read from etcd for a subscriber whose position
//! is older than the cache's window: a watch from that position, its events
//! as per-revision batches, and, whenever the watch has been quiet for a
//! moment, a check with two reads that the range had no change up to etcd's
//! current revision (so a caught-up reader of a quiet range learns it is
//! complete without waiting for an event).
//!
//! Progress notifications are not used for that: on etcd before 3.4.25 and
//! 3.5.8 one requested while the watch is still replaying the past can
//! report a revision whose events are not sent yet (etcd #15220).

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{GetOptions, WatchOptions, WatchResponseStream};
use futures_util::stream::{self, BoxStream};

use super::EtcdClient;
use super::client::classify;
use super::feed;
use super::keys::Prefix;
use crate::cache::{HistoryItem, KeyRange, Revision, UpstreamError};

/// How long the watch may say nothing before the range is checked for
/// quiet: long enough for etcd to send a replay's next response, short
/// enough that a caught-up reader waits unnoticeably.
pub const QUIET_CHECK_AFTER: Duration = Duration::from_millis(100);

/// One history read in progress.
struct History {
    client: EtcdClient,
    prefix: Prefix,
    range: KeyRange,
    prev_kv: bool,
    /// The last revision delivered or confirmed quiet.
    last: Revision,
    responses: Option<WatchResponseStream>,
    /// Keeps the watch's request stream open.
    _requests: Option<etcd_client::WatchRequestSender>,
    pending: VecDeque<HistoryItem>,
    done: bool,
}

/// The history of `range` of the namespace with `prefix` after `after`.
pub fn read(
    client: EtcdClient,
    prefix: Prefix,
    range: KeyRange,
    after: Revision,
    prev_kv: bool,
) -> BoxStream<'static, Result<HistoryItem, UpstreamError>> {
    let history = History {
        client,
        prefix,
        range,
        prev_kv,
        last: after,
        responses: None,
        _requests: None,
        pending: VecDeque::new(),
        done: false,
    };
    Box::pin(stream::unfold(history, |mut history| async move {
        let item = history.next().await?;
        if item.is_err() {
            history.done = true;
        }
        Some((item, history))
    }))
}

impl History {
    async fn next(&mut self) -> Option<Result<HistoryItem, UpstreamError>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            if self.responses.is_none() {
                if let Err(e) = self.open().await {
                    return Some(Err(e));
                }
            }
            let responses = self.responses.as_mut()?;
            match tokio::time::timeout(QUIET_CHECK_AFTER, responses.message()).await {
                Ok(Ok(Some(response))) => {
                    if response.canceled() {
                        let message = format!("history watch cancelled: {}", response.cancel_reason());
                        return Some(Err(if response.compact_revision() > 0 {
                            UpstreamError::Compacted { message }
                        } else {
                            UpstreamError::Unavailable { message }
                        }));
                    }
                    let batches = match feed::batches(&self.prefix, &response) {
                        Ok(batches) => batches,
                        Err(message) => return Some(Err(UpstreamError::Failed { message })),
                    };
                    // The watch opened at `last` itself (`feed::watch_from`: a catch-up is
                    // behind by definition).
                    let known = self.last;
                    for batch in batches.into_iter().filter(|b| b.revision > known) {
                        self.last = batch.revision;
                        self.pending.push_back(HistoryItem::Batch(batch));
                    }
                }
                Ok(Ok(None)) => {
                    return Some(Err(UpstreamError::Unavailable {
                        message: "etcd ended the history watch".into(),
                    }));
                }
                Ok(Err(e)) => return Some(Err(classify(e))),
                Err(_) => match self.quiet_until_now().await {
                    Ok(Some(revision)) => {
                        self.last = revision;
                        self.pending.push_back(HistoryItem::Quiet(revision));
                    }
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                },
            }
        }
    }

    async fn open(&mut self) -> Result<(), UpstreamError> {
        let (start, end) = self.prefix.etcd_range(&self.range);
        let (_, client) = self.client.current();
        let mut options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(feed::watch_from(self.last, Revision::MAX));
        if self.prev_kv {
            options = options.with_prev_key();
        }
        let mut watch_client =
            client.watch_client().max_decoding_message_size(self.client.max_message_bytes());
        let opening =
            tokio::time::timeout(self.client.request_timeout(), watch_client.watch(start, Some(options)));
        let stream = opening
            .await
            .map_err(|_| UpstreamError::Timeout { message: "opening a history watch".into() })?
            .map_err(classify)?;
        let (requests, responses) = stream.split();
        self.responses = Some(responses);
        self._requests = Some(requests);
        Ok(())
    }

    /// etcd's current revision C when the range had no change in
    /// (`last`, C]: no key modified after `last`, and as many keys as at
    /// `last` (so none deleted either). `None` when it had changes (their
    /// events are on their way).
    async fn quiet_until_now(&self) -> Result<Option<Revision>, UpstreamError> {
        let (start, end) = self.prefix.etcd_range(&self.range);
        let now = self
            .client
            .get(start.clone(), GetOptions::new().with_range(end.clone()).with_count_only())
            .await?;
        let revision = now.header().map_or(0, |h| h.revision());
        if self.last == 0 {
            // Reading "at revision 0" means the latest in etcd: nothing to compare with.
            return Ok(None);
        }
        if revision <= self.last {
            return Ok(Some(self.last));
        }
        let modified = GetOptions::new()
            .with_range(end.clone())
            .with_revision(revision)
            .with_keys_only()
            .with_min_mod_revision(self.last + 1)
            .with_limit(1);
        if !self.client.get(start.clone(), modified).await?.kvs().is_empty() {
            return Ok(None);
        }
        let then = GetOptions::new().with_range(end).with_revision(self.last).with_count_only();
        let quiet = self.client.get(start, then).await?.count() == now.count();
        Ok(quiet.then_some(revision))
    }
}
