//! Catching a subscriber up from etcd when its position is older than the
//! cache's history window (after a gateway restart every client's is; a slow
//! reader's can be), instead of a reset: the source replays the range's
//! history after the position, and once what was replayed reaches the
//! window the subscriber continues from the shared history, with no gap and
//! no duplicate. Only a position etcd itself compacted ends in a reset.
//!
//! Each catch-up is one etcd watch for as long as it runs: [`CatchUps`]
//! bounds how many run at once; the others wait their turn, so 10,000
//! clients reconnecting after a restart open at most that many watches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Subscription;
use crate::cache::{Entry, EntryKind, HistoryItem, Index, KeyRange, Revision, UpstreamError, WatchCache};

/// The bound on concurrent catch-ups, and what they did.
#[derive(Debug)]
pub struct CatchUps {
    permits: Arc<Semaphore>,
    /// Catch-ups waiting for their turn now.
    pub waiting: AtomicU64,
    /// Catch-ups that reached the window.
    pub completed: AtomicU64,
    /// Catch-ups that found the position compacted in etcd (a reset followed).
    pub compacted: AtomicU64,
    /// Catch-ups that failed otherwise (etcd unavailable).
    pub failed: AtomicU64,
}

impl CatchUps {
    /// At most `concurrent` catch-ups at once.
    pub fn new(concurrent: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrent)),
            waiting: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            compacted: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Catch-ups running now.
    pub fn running(&self, concurrent: usize) -> usize {
        concurrent - self.permits.available_permits()
    }
}

/// What a catch-up gives next.
#[derive(Debug)]
pub enum Step {
    /// The next revision of the range, replayed from etcd.
    Batch(Arc<Entry>),
    /// The shared history covers the rest: continue with this subscription.
    Done(Subscription),
}

/// One subscriber's catch-up in progress.
pub struct CatchUp {
    cache: WatchCache,
    history: BoxStream<'static, Result<HistoryItem, UpstreamError>>,
    /// The last revision delivered or confirmed quiet.
    position: Revision,
    catch_ups: Arc<CatchUps>,
    /// The turn, once given (the history is read only with one).
    permit: Option<OwnedSemaphorePermit>,
}

/// Counts a catch-up as waiting for its turn while it lives.
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn new(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CatchUp {
    /// Whether a subscriber at `cursor` needs a catch-up: it is behind the
    /// window (a position ahead of a re-listed cache is not caught up: etcd
    /// went back in time, and only a reset is honest).
    pub fn needed(cache: &WatchCache, cursor: Revision) -> bool {
        cache.view().history.min_cursor().is_some_and(|floor| cursor < floor)
    }

    /// A catch-up of a subscriber of `range` at `cursor`; it reads etcd
    /// only once its turn comes (in [`CatchUp::next`]).
    pub fn start(
        cache: &WatchCache,
        catch_ups: &Arc<CatchUps>,
        range: KeyRange,
        cursor: Revision,
        prev_kv: bool,
    ) -> Self {
        Self {
            cache: cache.clone(),
            history: cache.source().history(range, cursor, prev_kv),
            position: cursor,
            catch_ups: Arc::clone(catch_ups),
            permit: None,
        }
    }

    /// Waits for a turn (counted as waiting meanwhile, also when the
    /// caller gives up waiting).
    async fn turn(catch_ups: &CatchUps) -> OwnedSemaphorePermit {
        let _waiting = Waiting::new(&catch_ups.waiting);
        let permit = Arc::clone(&catch_ups.permits).acquire_owned().await;
        permit.unwrap_or_else(|_| unreachable!("the catch-up semaphore is never closed"))
    }

    /// The next step.
    ///
    /// # Errors
    /// The source's failure: `Compacted` when etcd no longer has the
    /// position (the subscriber must be reset), anything else when etcd
    /// could not be read (the subscriber should retry later).
    ///
    /// Cancel-safe: a step not returned is not lost.
    pub async fn next(&mut self) -> Result<Step, UpstreamError> {
        if self.permit.is_none() {
            self.permit = Some(Self::turn(&self.catch_ups).await);
        }
        loop {
            let floor = self.cache.view().history.min_cursor();
            if floor.is_some_and(|floor| self.position >= floor) {
                let subscription = Subscription::new(&self.cache, self.position);
                if subscription.gap_now().is_none() {
                    self.catch_ups.completed.fetch_add(1, Ordering::Relaxed);
                    return Ok(Step::Done(subscription));
                }
            }
            let item = match self.history.next().await {
                Some(item) => item,
                None => Err(UpstreamError::Unavailable { message: "the history from etcd ended".into() }),
            };
            match item {
                Ok(HistoryItem::Batch(batch)) => {
                    self.position = batch.revision;
                    let events = batch.events.into_boxed_slice();
                    let entry =
                        Entry::new(batch.revision, EntryKind::Batch, events, Index::new(), Box::new([]));
                    return Ok(Step::Batch(Arc::new(entry)));
                }
                Ok(HistoryItem::Quiet(revision)) => self.position = self.position.max(revision),
                Err(e) => {
                    let counter = match e {
                        UpstreamError::Compacted { .. } => &self.catch_ups.compacted,
                        _ => &self.catch_ups.failed,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    }
}
