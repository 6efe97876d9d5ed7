//! Subscriptions: a watcher is a cursor (the last revision it has seen) into
//! the shared history, woken when head moves. No events are copied per
//! subscriber; a subscriber that falls out of the window gets a reset.

use std::sync::{Arc, Weak};

use tokio::sync::watch;

use crate::cache::{Entry, ResetReason, Revision, View, WatchCache};

/// What a subscriber gets next.
#[derive(Debug, Clone)]
pub enum Update {
    /// The next revision's batch after the cursor (the cursor moved to it).
    Batch(Arc<Entry>),
    /// History the subscriber needs is gone; it must re-sync from a snapshot
    /// ([`Subscription::resync`]).
    Reset(ResetReason),
}

/// A cursor into one namespace's history.
pub struct Subscription {
    cache: WatchCache,
    cursor: Revision,
    generation: u64,
    updates: watch::Receiver<Revision>,
    /// The entry at `cursor` when known: the next one is linked from it.
    last: Weak<Entry>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("cache", &self.cache).field("cursor", &self.cursor).finish()
    }
}

impl Subscription {
    /// Subscribes to `cache` after `cursor`: the first update is the first
    /// batch with a revision greater than it (or a reset, when the window no
    /// longer covers it).
    pub fn new(cache: &WatchCache, cursor: Revision) -> Self {
        let mut updates = cache.head_updates();
        updates.mark_changed();
        Self { cursor, generation: cache.view().generation, updates, cache: cache.clone(), last: Weak::new() }
    }

    /// The cache this subscription follows.
    pub fn cache(&self) -> &WatchCache {
        &self.cache
    }

    /// The last revision delivered (or synced to).
    pub fn cursor(&self) -> Revision {
        self.cursor
    }

    /// The next update if one is available now.
    pub fn try_next(&mut self) -> Option<Update> {
        // The entry published after the last one, linked to it: no view,
        // no search. (Once the link is missing, gone or the history was
        // replaced, the window decides, resets included.)
        if let Some(next) = self.last.upgrade().and_then(|last| last.next()) {
            return Some(self.deliver(next));
        }
        let view = self.cache.view();
        if let Some(reason) = self.gap(&view) {
            return Some(Update::Reset(reason));
        }
        let entry = view.history.after(self.cursor)?;
        Some(self.deliver(Arc::clone(entry)))
    }

    fn deliver(&mut self, entry: Arc<Entry>) -> Update {
        self.cursor = entry.revision;
        self.last = Arc::downgrade(&entry);
        Update::Batch(entry)
    }

    /// Waits for the next update. Returns `None` only if the cache is gone.
    pub async fn next(&mut self) -> Option<Update> {
        loop {
            // Mark the head seen before looking, so a publish in between wakes us.
            self.updates.borrow_and_update();
            if let Some(update) = self.try_next() {
                return Some(update);
            }
            self.updates.changed().await.ok()?;
        }
    }

    /// After a reset: moves the cursor to the current head and returns the
    /// view whose state the subscriber must be sent as a snapshot.
    pub fn resync(&mut self) -> Arc<View> {
        let view = self.cache.view();
        self.cursor = view.head;
        self.generation = view.generation;
        self.last = view.history.latest().map_or_else(Weak::new, Arc::downgrade);
        view
    }

    /// When nothing is pending, moves the cursor to head and returns it: the
    /// stream is complete up to there (a `progress` event), whether or not
    /// head moved since the last time. `None` when a batch or reset is pending.
    pub fn progress(&mut self) -> Option<Revision> {
        let view = self.cache.view();
        if self.gap(&view).is_some() || view.history.after(self.cursor).is_some() {
            return None;
        }
        self.cursor = self.cursor.max(view.head);
        Some(self.cursor)
    }

    /// Why the subscriber cannot continue from its cursor now, if it cannot
    /// (the next update would be this reset).
    pub fn gap_now(&self) -> Option<ResetReason> {
        self.gap(&self.cache.view())
    }

    /// Why the subscriber cannot continue from its cursor, if it cannot.
    fn gap(&self, view: &View) -> Option<ResetReason> {
        let min_cursor = view.history.min_cursor()?;
        let relisted_under_us = view.generation != self.generation && self.cursor > view.head;
        if self.cursor >= min_cursor && !relisted_under_us {
            return None;
        }
        Some(match view.last_reset {
            Some(mark) if mark.revision > self.cursor || relisted_under_us => mark.reason,
            _ => ResetReason::Lagged,
        })
    }
}
