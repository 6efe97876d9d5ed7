//! [`ReadError`]: why a read could not be answered.

use std::time::Duration;

use super::types::Revision;
use super::upstream::UpstreamError;

/// Why a read could not be answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// The namespace has not finished its first load.
    #[error("namespace is not ready")]
    NotReady,
    /// The revision is older than anything still available.
    #[error("revision {revision} has been compacted (oldest available: {compact_revision})")]
    Compacted {
        /// The revision asked for.
        revision: Revision,
        /// The oldest revision still available.
        compact_revision: Revision,
    },
    /// The revision is newer than etcd's.
    #[error("revision {revision} is in the future (etcd is at {etcd_revision})")]
    FutureRevision {
        /// The revision asked for.
        revision: Revision,
        /// etcd's current revision.
        etcd_revision: Revision,
    },
    /// The cache did not reach the revision in time.
    #[error("the cache did not reach revision {revision} within {waited:?} (head {head})")]
    Timeout {
        /// The revision waited for.
        revision: Revision,
        /// The head when the wait ended.
        head: Revision,
        /// How long the read waited.
        waited: Duration,
    },
    /// A consistent read needs the namespace's etcd watch, and it is down.
    #[error("the namespace's etcd watch is down")]
    WatchDown,
    /// etcd was needed and failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}
