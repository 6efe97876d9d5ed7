//! The fan-out: any number of subscribers on one namespace's history, with
//! no per-subscriber copies of events.
//!
//! A [`Subscription`] is a cursor into the cache's shared history, woken
//! when head moves; [`select`] says which events of a batch its key range
//! wants; [`FrameMemo`] renders each batch once per output [`Shape`] and
//! shares the bytes; a subscriber behind the window is brought back to the
//! shared history by a [`CatchUp`], reading a replay of etcd's history
//! shared with every subscriber resuming near it; a [`Feed`] drives one
//! subscriber through all of it (start, replay, catch-up, live, progress,
//! gaps). Every streaming surface (SSE on `/v1`, and the other dialects)
//! drives a `Feed` and renders its events; none of this knows a wire format.

mod catch_up;
mod feed;
mod frames;
mod selection;
mod subscription;

pub use catch_up::{CatchUp, CatchUps, Step};
pub use feed::{Feed, FeedEvent, FeedOptions, Gap, OnGap, Start};
pub use frames::{FrameMemo, JOIN_BYTES, MEMO_BYTES, MEMO_REVISIONS, Rendered, Shape, join};
pub use selection::{Selected, select};
pub use subscription::{Subscription, Update};

#[cfg(test)]
mod tests;
