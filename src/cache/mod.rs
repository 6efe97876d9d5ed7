//! The watch cache: exactly etcd's state of one namespace at a known
//! revision, its recent history, and the values, fed by one writer (the
//! reflector) and read by any number of requests and subscribers.
//!
//! I/O-free apart from the [`Source`] trait, so the whole core is tested
//! against a model without etcd. It imports nothing above it: the etcd layer
//! feeds it its own types ([`RevisionBatch`], [`UpstreamError`]) and the
//! surfaces read it through snapshots and the fan-out. See DESIGN.md, "The
//! cache".

mod error;
mod history;
pub mod policy;
mod read;
mod snapshot;
mod source;
mod status;
mod types;
mod upstream;
mod values;
mod watch_cache;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use error::ReadError;
pub use history::{Entry, EntryKind, HISTORY_EVENT_OVERHEAD_BYTES, History, Index, Stored, Superseded};
pub use policy::{EvictionPolicy, RevisionPolicy, TtlPolicy};
pub use read::At;
pub use snapshot::{Page, Snapshot};
pub use source::{HistoryItem, LoadRequest, Loaded, Source};
pub use status::{NamespaceStatus, Status, WatchRestart};
pub use types::{Event, EventKind, KeyRange, KeyValue, Meta, Revision, RevisionBatch, prefix_end, successor};
pub use upstream::UpstreamError;
pub use values::{ENTRY_OVERHEAD_BYTES, INLINE_OVERHEAD_BYTES, ValueKey, ValueStats, ValueStore};
pub use watch_cache::{ApplyError, CacheOptions, ResetMark, ResetReason, SnapshotBuilder, View, WatchCache};
