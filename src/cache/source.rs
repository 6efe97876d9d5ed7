//! [`Source`]: what the cache asks of its source of truth (etcd) - reads
//! at a revision, the current revision, the compaction revision, and the
//! history of a range. The etcd layer implements it; tests substitute a
//! model. The cache never calls etcd otherwise.

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use super::types::{KeyRange, KeyValue, Revision, RevisionBatch};
use super::upstream::UpstreamError;

/// A read the source is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadRequest {
    /// Keys to read, relative to the namespace.
    pub range: KeyRange,
    /// Revision to read at; 0 = latest.
    pub revision: Revision,
    /// Most keys returned; 0 = all.
    pub limit: usize,
    /// Skip values.
    pub keys_only: bool,
}

/// What the source answers to a read.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The key-values, sorted by key.
    pub kvs: Vec<KeyValue>,
    /// The revision of etcd's response header.
    pub revision: Revision,
    /// Whether more keys exist in the range beyond `limit`.
    pub more: bool,
    /// Number of keys in the whole range.
    pub count: u64,
}

/// One step of a range's history from the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryItem {
    /// The next revision with changes in the range.
    Batch(RevisionBatch),
    /// The range had no change after the last batch up to this revision.
    Quiet(Revision),
}

/// Reads from etcd on the cache's behalf (tests substitute a fake).
pub trait Source: Send + Sync + 'static {
    /// Reads a range of the namespace at a revision.
    fn load(&self, request: LoadRequest) -> BoxFuture<'_, Result<Loaded, UpstreamError>>;

    /// etcd's current revision, from a linearizable request.
    fn current_revision(&self) -> BoxFuture<'_, Result<Revision, UpstreamError>>;

    /// etcd's compaction revision (the oldest it can still read), asked
    /// after etcd refused to read at `compacted` for that reason.
    fn compact_revision(&self, compacted: Revision) -> BoxFuture<'_, Result<Revision, UpstreamError>>;

    /// The history of `range` after revision `after`, in revision order,
    /// one batch per revision (with `prev_kv` when asked), interleaved with
    /// [`HistoryItem::Quiet`] whenever the source confirms no change up to
    /// some later revision. Ends with `UpstreamError::Compacted` when the
    /// source no longer has the revisions asked for.
    fn history(
        &self,
        range: KeyRange,
        after: Revision,
        prev_kv: bool,
    ) -> BoxStream<'static, Result<HistoryItem, UpstreamError>>;
}
