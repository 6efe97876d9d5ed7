//! [`Snapshot`]: a consistent state of a namespace at one revision, and the
//! answers to gets, ranges and counts from it. An in-memory snapshot reads
//! the index of its revision and the values kept with it, else from the
//! value cache (loading misses from etcd, a page's misses in one ranged
//! read); an etcd-backed one
//! (a revision outside the window, a consistent read that timed out) reads
//! etcd directly.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::error::ReadError;
use super::history::{Index, Stored};
use super::source::{LoadRequest, Loaded};
use super::types::{KeyRange, KeyValue, Meta, Revision};
use super::upstream::UpstreamError;
use super::values::ValueStats;
use super::watch_cache::WatchCache;

/// One page of a range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Key-values in key order (values empty when keys-only).
    pub kvs: Vec<KeyValue>,
    /// Whether keys remain after the last one.
    pub more: bool,
}

#[derive(Clone)]
enum Backing {
    Index(Index),
    Etcd,
}

/// A consistent state of the namespace at one revision.
#[derive(Clone)]
pub struct Snapshot {
    cache: WatchCache,
    revision: Revision,
    /// The revision of the namespace's last change at or before `revision`.
    last_change: Revision,
    source: Backing,
}

impl Snapshot {
    pub(super) fn from_index(
        cache: WatchCache,
        index: Index,
        revision: Revision,
        last_change: Revision,
    ) -> Self {
        Self { cache, revision, last_change, source: Backing::Index(index) }
    }

    pub(super) fn from_etcd(cache: WatchCache, revision: Revision) -> Self {
        Self { cache, revision, last_change: revision, source: Backing::Etcd }
    }

    /// The revision this snapshot is exactly at.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The revision of the namespace's last change at or before this
    /// snapshot (validators stay equal while nothing changed); the snapshot
    /// revision itself when read from etcd.
    pub fn last_change_revision(&self) -> Revision {
        self.last_change
    }

    /// Whether answers come from etcd rather than memory.
    pub fn is_from_etcd(&self) -> bool {
        matches!(self.source, Backing::Etcd)
    }

    /// The namespace's cache.
    pub fn cache(&self) -> &WatchCache {
        &self.cache
    }

    /// One key.
    ///
    /// # Errors
    /// When etcd is needed and fails, or the revision is compacted there.
    pub async fn get(&self, key: &Bytes) -> Result<Option<KeyValue>, ReadError> {
        match &self.source {
            Backing::Index(index) => match index.get(key) {
                Some(stored) => Ok(Some(self.value_of(key.clone(), stored).await?)),
                None => Ok(None),
            },
            Backing::Etcd => {
                let page = self.load(KeyRange::key(key.clone()), 1, false).await?;
                Ok(page.kvs.into_iter().next())
            }
        }
    }

    /// Up to `limit` keys of `range` in key order (0 = no limit).
    ///
    /// # Errors
    /// When values must be loaded from etcd and that fails.
    pub async fn range(&self, range: &KeyRange, limit: usize, keys_only: bool) -> Result<Page, ReadError> {
        match &self.source {
            Backing::Index(index) => {
                let mut stored = stored_in(index, range);
                let page: Vec<(&Bytes, &Stored)> =
                    stored.by_ref().take(if limit == 0 { usize::MAX } else { limit }).collect();
                let more = stored.next().is_some();
                let kvs = if keys_only {
                    page.into_iter()
                        .map(|(key, s)| KeyValue { key: key.clone(), value: Bytes::new(), meta: s.meta })
                        .collect()
                } else {
                    self.values_of(page.into_iter().map(|(key, s)| (key.clone(), s.clone())).collect())
                        .await?
                };
                Ok(Page { kvs, more })
            }
            Backing::Etcd => self.load(range.clone(), limit, keys_only).await,
        }
    }

    /// Keys of `range` with their metadata, in order, without values. Only
    /// for in-memory snapshots; an etcd-backed one yields nothing.
    pub fn metas<'a>(&'a self, range: &'a KeyRange) -> impl Iterator<Item = (Bytes, Meta)> + 'a {
        let index = match &self.source {
            Backing::Index(index) => Some(index),
            Backing::Etcd => None,
        };
        index.into_iter().flat_map(move |index| stored_in(index, range).map(|(k, s)| (k.clone(), s.meta)))
    }

    /// The values of `metas` (key-versions of this snapshot, as from
    /// [`Snapshot::metas`] or a keys-only range), in the same order.
    ///
    /// # Errors
    /// When values must be loaded from etcd and that fails.
    pub async fn values(&self, metas: Vec<(Bytes, Meta)>) -> Result<Vec<KeyValue>, ReadError> {
        match &self.source {
            Backing::Index(index) => {
                // The values kept with this snapshot's index, by version.
                let versions = metas.into_iter().map(|(key, meta)| {
                    let value = index
                        .get(&key)
                        .filter(|s| s.meta.mod_revision == meta.mod_revision)
                        .and_then(|s| s.value.clone());
                    (key, Stored { meta, value })
                });
                self.values_of(versions.collect()).await
            }
            Backing::Etcd => {
                let mut kvs = Vec::with_capacity(metas.len());
                for (key, _) in metas {
                    kvs.extend(self.get(&key).await?);
                }
                Ok(kvs)
            }
        }
    }

    /// Number of keys in `range`.
    ///
    /// # Errors
    /// When the snapshot is etcd-backed and etcd fails.
    pub async fn count(&self, range: &KeyRange) -> Result<u64, ReadError> {
        match &self.source {
            Backing::Index(index) => Ok(stored_in(index, range).count() as u64),
            Backing::Etcd => {
                let request =
                    LoadRequest { range: range.clone(), revision: self.revision, limit: 1, keys_only: true };
                match self.source_call(request).await {
                    Ok(loaded) => Ok(loaded.count),
                    Err(e) => Err(self.read_error(e).await),
                }
            }
        }
    }

    async fn load(&self, range: KeyRange, limit: usize, keys_only: bool) -> Result<Page, ReadError> {
        let request = LoadRequest { range, revision: self.revision, limit, keys_only };
        match self.source_call(request).await {
            Ok(loaded) => Ok(Page { kvs: loaded.kvs, more: loaded.more }),
            Err(e) => Err(self.read_error(e).await),
        }
    }

    async fn source_call(&self, request: LoadRequest) -> Result<Loaded, UpstreamError> {
        let inner = &self.cache.inner;
        ValueStats::count(&inner.stats.read_throughs, 1);
        let loaded = inner.source.load(request).await?;
        inner.status.observe_etcd_revision(loaded.revision);
        Ok(loaded)
    }

    /// A failure to read this snapshot's state from etcd: etcd's compaction
    /// is the client's `compacted` at this snapshot's revision.
    async fn read_error(&self, e: UpstreamError) -> ReadError {
        match e {
            UpstreamError::Compacted { .. } => self.cache.compacted(self.revision).await,
            other => ReadError::Upstream(other),
        }
    }

    /// The value of one version, from memory or (single-flight) from etcd.
    async fn value_of(&self, key: Bytes, stored: &Stored) -> Result<KeyValue, ReadError> {
        let inner = &self.cache.inner;
        let meta = stored.meta;
        if let Some(value) = &stored.value {
            ValueStats::count(&inner.stats.hits, 1);
            return Ok(KeyValue { key, value: value.clone(), meta });
        }
        let value_key = self.cache.value_key(key.clone(), meta.mod_revision);
        if let Some(value) = inner.values.get(&value_key).await {
            ValueStats::count(&inner.stats.hits, 1);
            return Ok(KeyValue { key, value, meta });
        }
        ValueStats::count(&inner.stats.misses, 1);
        let load = self.load_version(key.clone(), meta.mod_revision);
        match inner.values.get_or_load(value_key, load).await {
            Ok(value) => Ok(KeyValue { key, value, meta }),
            Err(e) => Err(self.read_error((*e).clone()).await),
        }
    }

    /// Values of a page of versions: hits from memory, all misses with one
    /// ranged read at the snapshot's revision.
    async fn values_of(&self, page: Vec<(Bytes, Stored)>) -> Result<Vec<KeyValue>, ReadError> {
        let inner = &self.cache.inner;
        let mut kvs = Vec::with_capacity(page.len());
        let mut missing = Vec::new();
        for (i, (key, Stored { meta, value })) in page.into_iter().enumerate() {
            let value = match value {
                Some(value) => Some(value),
                None => inner.values.get(&self.cache.value_key(key.clone(), meta.mod_revision)).await,
            };
            if value.is_none() {
                missing.push(i);
            }
            kvs.push(KeyValue { key, value: value.unwrap_or_default(), meta });
        }
        ValueStats::count(&inner.stats.hits, (kvs.len() - missing.len()) as u64);
        ValueStats::count(&inner.stats.misses, missing.len() as u64);
        if missing.len() == 1 {
            let kv = &mut kvs[missing[0]];
            kv.value = self.value_of_missing(kv.key.clone(), kv.meta).await?;
        } else if let (Some(&first), Some(&last)) = (missing.first(), missing.last()) {
            let range =
                KeyRange { start: kvs[first].key.clone(), end: Some(super::successor(&kvs[last].key)) };
            let loaded = self.load_values(range).await?;
            for i in missing {
                let kv = &mut kvs[i];
                kv.value = match loaded.get(&kv.key) {
                    Some((mod_revision, value)) if *mod_revision == kv.meta.mod_revision => {
                        let value_key = self.cache.value_key(kv.key.clone(), *mod_revision);
                        inner.values.insert(value_key, value.clone()).await;
                        value.clone()
                    }
                    _ => self.value_of_missing(kv.key.clone(), kv.meta).await?,
                };
            }
        }
        Ok(kvs)
    }

    async fn value_of_missing(&self, key: Bytes, meta: Meta) -> Result<Bytes, ReadError> {
        let value_key = self.cache.value_key(key.clone(), meta.mod_revision);
        let load = self.load_version(key, meta.mod_revision);
        match self.cache.inner.values.get_or_load(value_key, load).await {
            Ok(value) => Ok(value),
            Err(e) => Err(self.read_error((*e).clone()).await),
        }
    }

    /// One ranged read at the snapshot revision, keyed for lookup.
    async fn load_values(&self, range: KeyRange) -> Result<HashMap<Bytes, (Revision, Bytes)>, ReadError> {
        let request = LoadRequest { range, revision: self.revision, limit: 0, keys_only: false };
        match self.source_call(request).await {
            Ok(loaded) => {
                Ok(loaded.kvs.into_iter().map(|kv| (kv.key, (kv.meta.mod_revision, kv.value))).collect())
            }
            // Compacted at the snapshot's revision: the per-key path reads the latest instead.
            Err(UpstreamError::Compacted { .. }) => Ok(HashMap::new()),
            Err(e) => Err(ReadError::Upstream(e)),
        }
    }

    /// Reads exactly the version `mod_revision` of `key`: at the snapshot's
    /// revision, or, when etcd compacted that, at the latest revision if the
    /// key has not changed since.
    fn load_version(
        &self,
        key: Bytes,
        mod_revision: Revision,
    ) -> impl Future<Output = Result<Bytes, UpstreamError>> + Send + 'static {
        let loader = Arc::clone(&self.cache.inner.source);
        let revision = self.revision;
        ValueStats::count(&self.cache.inner.stats.read_throughs, 1);
        async move {
            let request = |revision| LoadRequest {
                range: KeyRange::key(key.clone()),
                revision,
                limit: 1,
                keys_only: false,
            };
            let loaded = match loader.load(request(revision)).await {
                Err(UpstreamError::Compacted { .. }) => loader.load(request(0)).await?,
                other => other?,
            };
            match loaded.kvs.into_iter().next() {
                Some(kv) if kv.meta.mod_revision == mod_revision => Ok(kv.value),
                _ => Err(UpstreamError::Compacted {
                    message: format!("version {mod_revision} of the key is no longer available in etcd"),
                }),
            }
        }
    }
}

/// Keys of `range` in `index` with their versions, in order.
fn stored_in<'a>(index: &'a Index, range: &KeyRange) -> impl Iterator<Item = (&'a Bytes, &'a Stored)> + 'a {
    use std::ops::Bound;
    let start = Bound::Included(range.start.clone());
    let end = range.end.clone().map_or(Bound::Unbounded, Bound::Excluded);
    let empty = range.is_empty();
    index.range((start, end)).filter(move |_| !empty)
}
