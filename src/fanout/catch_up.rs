//! Catching a subscriber up from etcd when its position is older than the
//! cache's history window (after a gateway restart every client's is; a slow
//! reader's can be), instead of a reset: etcd replays the namespace's
//! history after the position, and once what was replayed reaches the
//! window the subscriber continues from the shared history, with no gap and
//! no duplicate. Only a position etcd itself compacted ends in a reset.
//!
//! A replay is shared, as the history window is: subscribers resuming at or
//! after its start read the same entries, so 10,000 clients reconnecting
//! after a restart (all at about the same revision) cost etcd one watch,
//! not 10,000. A replay reads the whole namespace with `prev_kv`, whatever
//! its first subscriber selected, so any later one can use it. It keeps at
//! most `replay_bytes` of entries; its readers continue from a new replay
//! where it stopped. It stops reading etcd when its last reader leaves; a
//! complete one is kept [`LINGER`] longer for streams that resume later
//! (clients reconnect over seconds, with their own backoff).
//! [`CatchUps`] bounds how many replays read etcd at once; the others wait
//! their turn.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::Subscription;
use crate::cache::{Entry, EntryKind, HistoryItem, Index, KeyRange, Revision, UpstreamError, WatchCache};

/// How long a complete replay stays available after its last reader left.
pub const LINGER: Duration = Duration::from_secs(10);

/// The bound on concurrent replays, the replays in progress, and what
/// they did.
#[derive(Debug)]
pub struct CatchUps {
    permits: Arc<Semaphore>,
    /// Most bytes of entries ([`Entry::bytes`]) one replay keeps.
    replay_bytes: u64,
    /// Replays in progress; each lives as long as a subscriber reads it.
    replays: Mutex<Vec<Weak<Replay>>>,
    /// Replays waiting for their turn to read etcd now.
    pub waiting: AtomicU64,
    /// Replays started: each is one etcd watch while it reads.
    pub replays_started: AtomicU64,
    /// Catch-ups (one per subscriber) that reached the window.
    pub completed: AtomicU64,
    /// Catch-ups that found the position compacted in etcd (a reset followed).
    pub compacted: AtomicU64,
    /// Catch-ups that failed otherwise (etcd unavailable).
    pub failed: AtomicU64,
}

impl CatchUps {
    /// At most `concurrent` replays read etcd at once, each keeping at most
    /// `replay_bytes` of history.
    pub fn new(concurrent: usize, replay_bytes: u64) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrent)),
            replay_bytes,
            replays: Mutex::default(),
            waiting: AtomicU64::new(0),
            replays_started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            compacted: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Replays reading etcd now.
    pub fn running(&self, concurrent: usize) -> usize {
        concurrent - self.permits.available_permits()
    }

    /// A replay of `cache` that serves a subscriber at `position`: with
    /// `join`, one in progress that started at or before it and has more
    /// after it or is still reading (the closest such); else a new one
    /// starting there.
    fn replay_for(self: &Arc<Self>, cache: &WatchCache, position: Revision, join: bool) -> Arc<Replay> {
        let mut replays = self.replays.lock().unwrap_or_else(PoisonError::into_inner);
        replays.retain(|r| r.strong_count() > 0);
        let serves = |r: &Replay| {
            r.namespace == cache.name() && r.start <= position && {
                let filled = r.state.lock();
                match filled.end {
                    None => true,
                    Some(End::Complete) => filled.position > position,
                    Some(End::Failed(_)) => false,
                }
            }
        };
        let joined =
            replays.iter().filter_map(Weak::upgrade).filter(|r| join && serves(r)).max_by_key(|r| r.start);
        joined.unwrap_or_else(|| {
            let replay = Replay::start(cache, self, position);
            replays.push(Arc::downgrade(&replay));
            replay
        })
    }

    /// Waits for a turn to read etcd (counted as waiting meanwhile).
    async fn turn(&self) -> OwnedSemaphorePermit {
        let _waiting = Waiting::new(&self.waiting);
        let permit = Arc::clone(&self.permits).acquire_owned().await;
        permit.unwrap_or_else(|_| unreachable!("the catch-up semaphore is never closed"))
    }
}

/// Counts a replay as waiting for its turn while it lives.
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

/// The namespace's history after `start`, read from etcd once for every
/// subscriber it serves.
#[derive(Debug)]
struct Replay {
    namespace: String,
    start: Revision,
    state: Arc<ReplayState>,
    /// Stops the task reading etcd when the last reader drops the replay.
    _stop: DropGuard,
}

/// What a replay read so far, shared by its readers and the task that
/// fills it.
#[derive(Debug)]
struct ReplayState {
    filled: Mutex<Filled>,
    /// Bumped after every change of `filled`.
    changed: watch::Sender<()>,
}

#[derive(Debug)]
struct Filled {
    /// Revisions with events, in order.
    entries: Vec<Arc<Entry>>,
    /// Every revision up to this one is in `entries`.
    position: Revision,
    bytes: u64,
    end: Option<End>,
}

impl Filled {
    /// The first entry after `position`, if read yet.
    fn after(&self, position: Revision) -> Option<&Arc<Entry>> {
        self.entries.get(self.entries.partition_point(|e| e.revision <= position))
    }
}

#[derive(Clone, Debug)]
enum End {
    /// Reached the history window or the byte bound: readers continue from
    /// the window or from a new replay.
    Complete,
    Failed(UpstreamError),
}

impl ReplayState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Filled> {
        self.filled.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` and wakes the readers; whether the replay ended.
    fn update(&self, change: impl FnOnce(&mut Filled)) -> bool {
        let ended = {
            let mut filled = self.lock();
            change(&mut filled);
            filled.end.is_some()
        };
        self.changed.send_replace(());
        ended
    }
}

impl Replay {
    fn start(cache: &WatchCache, catch_ups: &Arc<CatchUps>, start: Revision) -> Arc<Self> {
        let filled = Filled { entries: Vec::new(), position: start, bytes: 0, end: None };
        let state = Arc::new(ReplayState { filled: Mutex::new(filled), changed: watch::Sender::new(()) });
        let stop = CancellationToken::new();
        let fill = fill(cache.clone(), Arc::clone(catch_ups), Arc::clone(&state), start);
        let replay = Arc::new(Self {
            namespace: cache.name().to_owned(),
            start,
            state: Arc::clone(&state),
            _stop: stop.clone().drop_guard(),
        });
        let lingering = Arc::downgrade(&replay);
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => return,
                () = fill => {}
            }
            // Done reading etcd: a complete replay still read by someone
            // stays available a while longer.
            let complete = matches!(state.lock().end, Some(End::Complete));
            if let Some(replay) = lingering.upgrade().filter(|_| complete) {
                tokio::time::sleep(LINGER).await;
                drop(replay);
            }
        });
        replay
    }
}

/// Reads etcd's history of the namespace after `start` into `state` until
/// it reaches the window or the byte bound, or fails.
async fn fill(cache: WatchCache, catch_ups: Arc<CatchUps>, state: Arc<ReplayState>, start: Revision) {
    let _turn = catch_ups.turn().await;
    catch_ups.replays_started.fetch_add(1, Ordering::Relaxed);
    let mut history = cache.source().history(KeyRange::all(), start, true);
    loop {
        let floor = cache.view().history.min_cursor();
        let enough = {
            let filled = state.lock();
            floor.is_some_and(|floor| filled.position >= floor) || filled.bytes >= catch_ups.replay_bytes
        };
        if enough {
            state.update(|f| f.end = Some(End::Complete));
            return;
        }
        let item = history.next().await.unwrap_or_else(|| {
            Err(UpstreamError::Unavailable { message: "the history from etcd ended".into() })
        });
        let ended = state.update(|f| match item {
            Ok(HistoryItem::Batch(batch)) => {
                let events = batch.events.into_boxed_slice();
                let entry = Entry::new(batch.revision, EntryKind::Batch, events, Index::new(), Box::new([]));
                f.position = batch.revision;
                f.bytes += entry.bytes;
                f.entries.push(Arc::new(entry));
            }
            Ok(HistoryItem::Quiet(revision)) => f.position = f.position.max(revision),
            Err(e) => f.end = Some(End::Failed(e)),
        });
        if ended {
            return;
        }
    }
}

/// What a catch-up gives next.
#[derive(Debug)]
pub enum Step {
    /// The next revision of the namespace, replayed from etcd.
    Batch(Arc<Entry>),
    /// The shared history covers the rest: continue with this subscription.
    Done(Subscription),
}

/// One subscriber's catch-up in progress: a reader of a shared replay.
pub struct CatchUp {
    cache: WatchCache,
    catch_ups: Arc<CatchUps>,
    /// The last revision delivered or confirmed quiet.
    position: Revision,
    /// The replay being read (joined at the first step) and its changes.
    replay: Option<(Arc<Replay>, watch::Receiver<()>)>,
}

impl CatchUp {
    /// Whether a subscriber at `cursor` needs a catch-up: it is behind the
    /// window (a position ahead of a re-listed cache is not caught up: etcd
    /// went back in time, and only a reset is honest).
    pub fn needed(cache: &WatchCache, cursor: Revision) -> bool {
        cache.view().history.min_cursor().is_some_and(|floor| cursor < floor)
    }

    /// A catch-up of a subscriber at `cursor`; it joins or starts a replay
    /// at its first step ([`CatchUp::next`]).
    pub fn start(cache: &WatchCache, catch_ups: &Arc<CatchUps>, cursor: Revision) -> Self {
        Self { cache: cache.clone(), catch_ups: Arc::clone(catch_ups), position: cursor, replay: None }
    }

    /// The next step: a revision with events (of the whole namespace: the
    /// caller selects), or the handover to the window.
    ///
    /// # Errors
    /// The replay's failure: `Compacted` when etcd no longer has the
    /// position (the subscriber must be reset), anything else when etcd
    /// could not be read (the subscriber should retry later).
    ///
    /// Cancel-safe: a step not returned is not lost.
    pub async fn next(&mut self) -> Result<Step, UpstreamError> {
        loop {
            let floor = self.cache.view().history.min_cursor();
            if floor.is_some_and(|floor| self.position >= floor) {
                let subscription = Subscription::new(&self.cache, self.position);
                if subscription.gap_now().is_none() {
                    self.catch_ups.completed.fetch_add(1, Ordering::Relaxed);
                    return Ok(Step::Done(subscription));
                }
            }
            let (replay, changes) = self.replay.get_or_insert_with(|| {
                let replay = self.catch_ups.replay_for(&self.cache, self.position, true);
                let changes = replay.state.changed.subscribe();
                (replay, changes)
            });
            // Seen before reading: a change after this read wakes the wait.
            changes.borrow_and_update();
            let end = {
                let filled = replay.state.lock();
                if let Some(entry) = filled.after(self.position) {
                    self.position = entry.revision;
                    return Ok(Step::Batch(Arc::clone(entry)));
                }
                self.position = self.position.max(filled.position);
                filled.end.clone()
            };
            match end {
                // Still reading: wait for more. (The sender lives in the
                // replay this reader holds: the wait ends with a change.)
                None => {
                    let _ = changes.changed().await;
                }
                // The window is reached (checked above) or the replay is
                // full: the next one starts here.
                Some(End::Complete) => self.replay = None,
                // A replay that started before this position may have been
                // compacted where this one is not: only a replay of its own
                // answers that.
                Some(End::Failed(UpstreamError::Compacted { .. })) if replay.start < self.position => {
                    let own = self.catch_ups.replay_for(&self.cache, self.position, false);
                    let changes = own.state.changed.subscribe();
                    self.replay = Some((own, changes));
                }
                Some(End::Failed(e)) => return Err(self.failed(e)),
            }
        }
    }

    /// The next revision when the replay being read already holds it, for
    /// a caller that joins what is due without waiting; `None`: ask
    /// [`CatchUp::next`] (which also hands over to the window). Taking it
    /// here rather than from the window it may already reach changes
    /// nothing: both hold etcd's history, and the position moves the same.
    pub fn try_batch(&mut self) -> Option<Arc<Entry>> {
        let (replay, _) = self.replay.as_ref()?;
        let filled = replay.state.lock();
        let entry = filled.after(self.position)?;
        self.position = entry.revision;
        Some(Arc::clone(entry))
    }

    /// Counts a catch-up that ends with `e`.
    fn failed(&self, e: UpstreamError) -> UpstreamError {
        let counter = match e {
            UpstreamError::Compacted { .. } => &self.catch_ups.compacted,
            _ => &self.catch_ups.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        e
    }
}
