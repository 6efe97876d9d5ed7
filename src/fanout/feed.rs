//! A subscriber's whole course through one namespace's history, for any
//! streaming surface: where it starts (now, the current state, or after a
//! revision), the replay of the window, catch-ups from etcd for positions
//! older than the window, live batches, `progress` when the stream was
//! idle, and what happens when the history it needs is gone.
//!
//! Every surface (`/v1` SSE, the Kubernetes and etcd dialects) drives one
//! [`Feed`] per stream and turns each [`FeedEvent`] into its own wire
//! format; the guarantees (every revision once, in order, all of a
//! revision's events together, or an explicit reset) are kept here, once.
//!
//! A feed is a state machine polled by its stream: no task and no queue per
//! subscriber. A client that stops reading stops polling it; when it reads
//! again after its history left the window, it is caught up from etcd, or
//! gets a reset (or a gap) when etcd no longer has that history either.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Interval, Sleep};
use tokio_util::sync::CancellationToken;

use super::{CatchUp, CatchUps, Selected, Step, Subscription, Update, select};
use crate::cache::{
    Entry, KeyRange, KeyValue, ReadError, ResetReason, Revision, Snapshot, UpstreamError, WatchCache,
};

/// Where a feed starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the current head: [`FeedEvent::Synced`] at once, then new revisions.
    Now,
    /// The state at the current head in [`FeedEvent::Snapshot`] chunks,
    /// [`FeedEvent::Synced`], then new revisions.
    Snapshot,
    /// Every revision after this one (from the window, or caught up from
    /// etcd), [`FeedEvent::Synced`] once caught up, then new revisions.
    Since(Revision),
}

/// What a feed does when the history its subscriber needs is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnGap {
    /// [`FeedEvent::Reset`], then the current state and [`FeedEvent::Synced`].
    Reset,
    /// [`FeedEvent::Gap`], and the feed ends.
    End,
}

/// What a feed delivers and how.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// The keys the subscriber follows.
    pub range: KeyRange,
    /// Where it starts.
    pub start: Start,
    /// Whether catch-ups from etcd must carry each event's previous value.
    pub prev_kv: bool,
    /// What a gap does.
    pub on_gap: OnGap,
    /// Most key-values in one [`FeedEvent::Snapshot`].
    pub snapshot_chunk: usize,
    /// [`FeedEvent::Progress`] when the surface sent nothing for this long
    /// (see [`Feed::sent`]); `None`: never.
    pub progress_interval: Option<Duration>,
    /// [`FeedEvent::Heartbeat`] at this interval, for transports that need
    /// traffic to stay open; `None`: never.
    pub heartbeat_interval: Option<Duration>,
    /// The feed ends (`None` from [`Feed::next`]) after this long.
    pub lifetime: Option<Duration>,
}

/// History a subscriber needed is gone, and its feed ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Why it is gone.
    pub reason: ResetReason,
    /// The subscriber's position: it has every revision up to here.
    pub cursor: Revision,
    /// The oldest position a resume works from now: etcd's compaction
    /// revision when etcd compacted the history, else the window's start.
    pub compact_revision: Revision,
}

impl Gap {
    fn new(cache: &WatchCache, cursor: Revision, reason: ResetReason) -> Self {
        let view = cache.view();
        let window = view.history.min_cursor().unwrap_or(view.head);
        let compact_revision = match reason {
            ResetReason::Compacted => cache.status().etcd_compact_revision().max(window.min(cursor + 1)),
            _ => window,
        };
        Self { reason, cursor, compact_revision }
    }

    /// The gap a feed starting after `since` would meet at once, if any: a
    /// position etcd compacted, or one behind the window that cannot be
    /// caught up (the cache went back in time). Surfaces that refuse such a
    /// stream before it starts ask this; a position the window or a
    /// catch-up can serve has none.
    pub fn at_start(cache: &WatchCache, since: Revision) -> Option<Self> {
        let reason = Subscription::new(cache, since).gap_now()?;
        let compacted = since + 1 < cache.status().etcd_compact_revision();
        if compacted {
            return Some(Self::new(cache, since, ResetReason::Compacted));
        }
        (!CatchUp::needed(cache, since)).then(|| Self::new(cache, since, reason))
    }
}

/// What a feed gives next.
#[derive(Debug)]
pub enum FeedEvent {
    /// A chunk of the state at `revision`: key-values of the range, in key
    /// order, after the previous chunk's.
    Snapshot {
        /// The revision of the state.
        revision: Revision,
        /// At most [`FeedOptions::snapshot_chunk`] key-values.
        kvs: Vec<KeyValue>,
    },
    /// The subscriber holds the state at this revision: after a snapshot,
    /// after a replay, or at once for [`Start::Now`].
    Synced(Revision),
    /// A revision with events in the range.
    Batch {
        /// The revision's batch (all its events, of every key).
        entry: Arc<Entry>,
        /// Which of them the range selects (never [`Selected::None`]).
        selected: Selected,
    },
    /// Nothing was sent for the progress interval: the subscriber has every
    /// revision up to this one.
    Progress(Revision),
    /// Time for transport keep-alive traffic.
    Heartbeat,
    /// The history the subscriber needed is gone ([`OnGap::Reset`]): the
    /// state at `head` follows as snapshot chunks, then `Synced`.
    Reset {
        /// Why.
        reason: ResetReason,
        /// The namespace's head when the reset was decided.
        head: Revision,
    },
    /// The history the subscriber needed is gone ([`OnGap::End`]); last event.
    Gap(Gap),
    /// The gateway is shutting down; last event.
    ShuttingDown,
    /// The feed cannot go on (namespace not ready, etcd unreachable during
    /// a catch-up); last event. The subscriber resumes later from its
    /// position.
    Failed(ReadError),
}

/// Most unselected revisions [`Feed::ready`] passes over in one call.
const DUE_SKIPS: usize = 64;

/// A feed whose batches are always due checks its lifetime every this many.
const DUE_CLOCK_EVERY: u32 = 64;

enum Phase {
    Start,
    /// Sending the state at a revision chunk by chunk.
    Snapshot {
        snapshot: Snapshot,
        after: Option<Bytes>,
    },
    /// `Synced` is next, then `Live`.
    Synced(Revision),
    /// Replaying the window after the start position; `Synced` when caught up.
    Replay,
    /// Replaying from etcd what the window no longer has; then `Replay`
    /// (before `Synced`) or `Live` (after).
    CatchUp {
        catch_up: Box<CatchUp>,
        synced: bool,
    },
    Live,
    Done,
}

/// The clocks of one feed.
struct Timers {
    end_at: Option<Pin<Box<Sleep>>>,
    heartbeat: Option<Interval>,
    /// Fires when nothing was sent for `progress_interval`.
    progress: Option<ProgressTimer>,
}

/// The progress clock. Sending only notes the time (an event costs no
/// timer-wheel update); when the sleep fires early it is moved to a whole
/// interval after the last send.
struct ProgressTimer {
    sleep: Pin<Box<Sleep>>,
    every: Duration,
    last_sent: Instant,
}

impl ProgressTimer {
    /// Completes once nothing was sent for a whole interval.
    async fn idle(&mut self) {
        loop {
            self.sleep.as_mut().await;
            let due = self.last_sent + self.every;
            if Instant::now() >= due {
                return;
            }
            self.sleep.as_mut().reset(due);
        }
    }
}

impl Timers {
    fn new(options: &FeedOptions) -> Self {
        let now = Instant::now();
        let heartbeat = options.heartbeat_interval.map(|every| {
            let mut interval = tokio::time::interval_at(now + every, every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        Self {
            end_at: options.lifetime.map(|lifetime| Box::pin(tokio::time::sleep_until(now + lifetime))),
            heartbeat,
            progress: options.progress_interval.map(|every| ProgressTimer {
                sleep: Box::pin(tokio::time::sleep_until(now + every)),
                every,
                last_sent: now,
            }),
        }
    }

    fn sent(&mut self) {
        if let Some(progress) = &mut self.progress {
            progress.last_sent = Instant::now();
        }
    }
}

/// Completes when nothing was sent for the progress interval; never without one.
async fn idle(progress: Option<&mut ProgressTimer>) {
    match progress {
        Some(progress) => progress.idle().await,
        None => std::future::pending().await,
    }
}

/// Completes when `sleep` does; never without one.
async fn fire(sleep: Option<&mut Pin<Box<Sleep>>>) {
    match sleep {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Completes at `interval`'s next tick; never without one.
async fn tick(interval: Option<&mut Interval>) {
    match interval {
        Some(interval) => drop(interval.tick().await),
        None => std::future::pending().await,
    }
}

/// One subscriber's feed.
pub struct Feed {
    cache: WatchCache,
    options: FeedOptions,
    catch_ups: Arc<CatchUps>,
    shutdown: CancellationToken,
    subscription: Option<Subscription>,
    phase: Phase,
    timers: Timers,
    /// Batches taken without waiting (see [`DUE_CLOCK_EVERY`]).
    due_count: u32,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").field("cache", &self.cache).field("subscription", &self.subscription).finish()
    }
}

impl Feed {
    /// A feed of `cache` for one subscriber; catch-ups take turns in
    /// `catch_ups`; it ends with [`FeedEvent::ShuttingDown`] when
    /// `shutdown` is cancelled.
    pub fn new(
        cache: &WatchCache,
        options: FeedOptions,
        catch_ups: &Arc<CatchUps>,
        shutdown: &CancellationToken,
    ) -> Self {
        Self {
            cache: cache.clone(),
            timers: Timers::new(&options),
            options,
            catch_ups: Arc::clone(catch_ups),
            // A token of its own: checking it every turn does not contend
            // with every other subscriber on the gateway's one token.
            shutdown: shutdown.child_token(),
            subscription: None,
            phase: Phase::Start,
            due_count: 0,
        }
    }

    /// The surface sent the subscriber an event: the next
    /// [`FeedEvent::Progress`] is due a whole interval from now. (A surface
    /// that drops a batch, e.g. for a filter of its own, does not call it.)
    pub fn sent(&mut self) {
        self.timers.sent();
    }

    /// The next event when it is due now, without waiting: a batch of a
    /// live feed, the next step of a replay of the window, or a revision a
    /// catch-up's replay of etcd already holds. `None` when anything else
    /// is next (for [`Feed::next`]). A surface joins the events already
    /// due into one write with it: a subscriber woken after several
    /// revisions, or resuming behind a few hundred, costs one write, not
    /// one per revision.
    pub fn ready(&mut self) -> Option<FeedEvent> {
        match self.phase {
            Phase::Live => self.due_batch(),
            Phase::Replay => {
                // `replay` sets the phase that follows, whatever it returns.
                self.phase = Phase::Done;
                self.replay()
            }
            Phase::CatchUp { .. } => self.due_catch_up(),
            _ => None,
        }
    }

    /// Whether a feed taking due batches must stop now: shut down, or
    /// (checked every [`DUE_CLOCK_EVERY`] calls) past its lifetime.
    fn due_stopped(&mut self) -> bool {
        // The clock is read every few batches only: a lifetime ends a
        // little late rather than costing every event a clock read.
        self.due_count = self.due_count.wrapping_add(1);
        let check_clock = self.due_count % DUE_CLOCK_EVERY == 0;
        let ended =
            check_clock && self.timers.end_at.as_ref().is_some_and(|end| end.deadline() <= Instant::now());
        ended || self.shutdown.is_cancelled()
    }

    /// The next selected batch if it is due now and the feed goes on; at
    /// most [`DUE_SKIPS`] unselected revisions are passed over on the way.
    fn due_batch(&mut self) -> Option<FeedEvent> {
        if self.due_stopped() {
            return None;
        }
        let subscription = self.subscription.as_mut()?;
        for _ in 0..DUE_SKIPS {
            // A reset is left for `next` to find again (it moves nothing).
            let Update::Batch(entry) = subscription.try_next()? else { return None };
            if let Some(event) = Self::batch(&self.options.range, entry) {
                return Some(event);
            }
        }
        None
    }

    /// The next selected revision a catch-up's replay already holds; at
    /// most [`DUE_SKIPS`] unselected revisions are passed over on the way.
    fn due_catch_up(&mut self) -> Option<FeedEvent> {
        if self.due_stopped() {
            return None;
        }
        let Phase::CatchUp { catch_up, .. } = &mut self.phase else { return None };
        for _ in 0..DUE_SKIPS {
            if let Some(event) = Self::batch(&self.options.range, catch_up.try_batch()?) {
                return Some(event);
            }
        }
        None
    }

    /// The next event; `None` once the feed ended (after its last event,
    /// or when its lifetime is over).
    pub async fn next(&mut self) -> Option<FeedEvent> {
        loop {
            let phase = std::mem::replace(&mut self.phase, Phase::Done);
            let event = match phase {
                Phase::Done => return None,
                Phase::Start => self.start(),
                Phase::Snapshot { snapshot, after } => Some(self.snapshot_chunk(snapshot, after).await),
                Phase::Synced(revision) => {
                    self.phase = Phase::Live;
                    self.timers.sent();
                    Some(FeedEvent::Synced(revision))
                }
                Phase::Replay => self.replay(),
                Phase::CatchUp { catch_up, synced } => self.catch_up(catch_up, synced).await,
                Phase::Live => self.live().await,
            };
            if let Some(event) = event {
                return Some(event);
            }
        }
    }

    fn start(&mut self) -> Option<FeedEvent> {
        let head = self.cache.head();
        match self.options.start {
            Start::Since(since) => {
                self.subscription = Some(Subscription::new(&self.cache, since));
                self.phase = if CatchUp::needed(&self.cache, since) {
                    self.catch_up_phase(since, false)
                } else {
                    Phase::Replay
                };
                None
            }
            Start::Snapshot => self.begin_snapshot(Subscription::new(&self.cache, head)),
            Start::Now => {
                self.subscription = Some(Subscription::new(&self.cache, head));
                self.phase = Phase::Synced(head);
                None
            }
        }
    }

    fn catch_up_phase(&self, cursor: Revision, synced: bool) -> Phase {
        let catch_up = CatchUp::start(&self.cache, &self.catch_ups, cursor);
        Phase::CatchUp { catch_up: Box::new(catch_up), synced }
    }

    /// The state at the subscription's (new) cursor is sent next; `Failed`
    /// when the cache holds no state to send.
    fn begin_snapshot(&mut self, mut subscription: Subscription) -> Option<FeedEvent> {
        let view = subscription.resync();
        self.subscription = Some(subscription);
        match self.cache.snapshot_of(&view) {
            Some(snapshot) => {
                self.phase = Phase::Snapshot { snapshot, after: None };
                None
            }
            None => Some(FeedEvent::Failed(ReadError::NotReady)),
        }
    }

    async fn snapshot_chunk(&mut self, snapshot: Snapshot, after: Option<Bytes>) -> FeedEvent {
        let range = match &after {
            Some(last) => self.options.range.after(last),
            None => self.options.range.clone(),
        };
        let page = match snapshot.range(&range, self.options.snapshot_chunk, false).await {
            Ok(page) => page,
            Err(e) => return FeedEvent::Failed(e),
        };
        let revision = snapshot.revision();
        self.phase = match page.kvs.last() {
            Some(last) if page.more => Phase::Snapshot { after: Some(last.key.clone()), snapshot },
            _ => Phase::Synced(revision),
        };
        FeedEvent::Snapshot { revision, kvs: page.kvs }
    }

    /// The event for a batch, if `range` selects any of it.
    fn batch(range: &KeyRange, entry: Arc<Entry>) -> Option<FeedEvent> {
        match select(&entry, range) {
            Selected::None => None,
            selected => Some(FeedEvent::Batch { entry, selected }),
        }
    }

    /// The window after the start position, without waiting; then `Synced`.
    fn replay(&mut self) -> Option<FeedEvent> {
        loop {
            let subscription = self.subscription.as_mut().expect("subscribed at start");
            match subscription.try_next() {
                Some(Update::Batch(entry)) => {
                    if let Some(event) = Self::batch(&self.options.range, entry) {
                        self.phase = Phase::Replay;
                        return Some(event);
                    }
                }
                Some(Update::Reset(reason)) => return self.behind(reason, false),
                None => {
                    let revision = subscription.progress().unwrap_or_else(|| subscription.cursor());
                    self.phase = Phase::Synced(revision);
                    return None;
                }
            }
        }
    }

    /// The subscriber's history left the window: catch it up from etcd
    /// when etcd still has it (`None`, the phase is set), else the gap.
    fn behind(&mut self, reason: ResetReason, synced: bool) -> Option<FeedEvent> {
        let cursor = self.subscription.as_ref().map_or(0, Subscription::cursor);
        if CatchUp::needed(&self.cache, cursor) {
            self.phase = self.catch_up_phase(cursor, synced);
            return None;
        }
        self.gap(reason)
    }

    /// One turn of a catch-up: a replayed revision, or the handover to the
    /// shared history. A position etcd compacted is a gap; etcd being
    /// unreachable ends the feed (the subscriber resumes later from there).
    async fn catch_up(&mut self, mut catch_up: Box<CatchUp>, synced: bool) -> Option<FeedEvent> {
        loop {
            let step = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Some(FeedEvent::ShuttingDown),
                () = fire(self.timers.end_at.as_mut()) => return None,
                () = tick(self.timers.heartbeat.as_mut()) => {
                    self.phase = Phase::CatchUp { catch_up, synced };
                    return Some(FeedEvent::Heartbeat);
                }
                step = catch_up.next() => step,
            };
            match step {
                Ok(Step::Batch(entry)) => {
                    if let Some(event) = Self::batch(&self.options.range, entry) {
                        self.phase = Phase::CatchUp { catch_up, synced };
                        return Some(event);
                    }
                    // A replay holds every revision of the namespace; one
                    // selecting few of them yields now and then instead of
                    // holding a worker through thousands.
                    tokio::task::coop::consume_budget().await;
                }
                Ok(Step::Done(subscription)) => {
                    self.subscription = Some(subscription);
                    self.phase = if synced { Phase::Live } else { Phase::Replay };
                    return None;
                }
                Err(UpstreamError::Compacted { .. }) => {
                    let cursor = self.subscription.as_ref().map_or(0, Subscription::cursor);
                    // Learn where etcd's history starts now, for the answer.
                    drop(self.cache.compacted(cursor).await);
                    return self.gap(ResetReason::Compacted);
                }
                Err(e) => return Some(FeedEvent::Failed(ReadError::Upstream(e))),
            }
        }
    }

    async fn live(&mut self) -> Option<FeedEvent> {
        // A batch already due needs none of the clocks and wake-ups below.
        if let Some(event) = self.due_batch() {
            self.phase = Phase::Live;
            return Some(event);
        }
        loop {
            let subscription = self.subscription.as_mut().expect("subscribed at start");
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Some(FeedEvent::ShuttingDown),
                () = fire(self.timers.end_at.as_mut()) => return None,
                update = subscription.next() => match update {
                    None => return None,
                    Some(Update::Batch(entry)) => {
                        if let Some(event) = Self::batch(&self.options.range, entry) {
                            self.phase = Phase::Live;
                            return Some(event);
                        }
                    }
                    Some(Update::Reset(reason)) => return self.behind(reason, true),
                },
                () = idle(self.timers.progress.as_mut()) => {
                    // Nothing sent for a whole interval: the subscriber is
                    // complete up to head, moved or not. (`None`: a batch is
                    // pending, and the next turn delivers it.)
                    if let Some(revision) = subscription.progress() {
                        self.timers.sent();
                        self.phase = Phase::Live;
                        return Some(FeedEvent::Progress(revision));
                    }
                }
                () = tick(self.timers.heartbeat.as_mut()) => {
                    self.phase = Phase::Live;
                    return Some(FeedEvent::Heartbeat);
                }
            }
        }
    }

    /// History the subscriber needs is gone: a reset and the state, or the end.
    fn gap(&mut self, reason: ResetReason) -> Option<FeedEvent> {
        let cursor = self.subscription.as_ref().map_or(0, Subscription::cursor);
        if self.options.on_gap == OnGap::End {
            self.phase = Phase::Done;
            return Some(FeedEvent::Gap(Gap::new(&self.cache, cursor, reason)));
        }
        let head = self.cache.view().head;
        let subscription = self.subscription.take().expect("subscribed");
        if let Some(failed) = self.begin_snapshot(subscription) {
            return Some(failed);
        }
        Some(FeedEvent::Reset { reason, head })
    }
}
