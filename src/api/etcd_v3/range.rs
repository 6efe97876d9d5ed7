//! `POST /v3/kv/range`: every `RangeRequest` field with etcd's semantics,
//! from the namespace's cache. Linearizable by default (the cache first
//! catches up to etcd's current revision, falling back to etcd when it
//! cannot in time), `serializable` from the cache as it is, a `revision`
//! from the history window or else from etcd.
//!
//! etcd's quirks kept: sorting or a min/max revision filter reads the whole
//! range before the limit; `count` is the size of the whole range, before
//! the limit and the revision filters; a `revision` read answers with the
//! current revision in its header; `NONE` order on a target other than the
//! key sorts ascending.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use etcd_client::GetOptions;
use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::error::EtcdError;
use super::wire::{self, EtcdBody, Header, KvJson, SortOrder, SortTarget};
use super::{EtcdV3, ids_of, keys};
use crate::cache::{At, KeyRange, KeyValue, Meta, ReadError, Revision, Snapshot};

/// etcd's `RangeRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RangeRequest {
    /// First key (absolute).
    #[serde(deserialize_with = "wire::bytes")]
    pub key: Vec<u8>,
    /// End of the range: empty = the key alone, `"\0"` = every key from `key` on.
    #[serde(alias = "rangeEnd", deserialize_with = "wire::bytes")]
    pub range_end: Vec<u8>,
    /// Most keys answered; 0 or less = all.
    #[serde(deserialize_with = "wire::int64")]
    pub limit: i64,
    /// Read at this revision; 0 or less = the latest.
    #[serde(deserialize_with = "wire::int64")]
    pub revision: Revision,
    /// Order.
    #[serde(alias = "sortOrder")]
    pub sort_order: SortOrder,
    /// What to sort by.
    #[serde(alias = "sortTarget")]
    pub sort_target: SortTarget,
    /// Answer from the cache as it is.
    #[serde(deserialize_with = "wire::boolean")]
    pub serializable: bool,
    /// Leave values out.
    #[serde(alias = "keysOnly", deserialize_with = "wire::boolean")]
    pub keys_only: bool,
    /// Only the count.
    #[serde(alias = "countOnly", deserialize_with = "wire::boolean")]
    pub count_only: bool,
    /// Only keys modified at or after this revision.
    #[serde(alias = "minModRevision", deserialize_with = "wire::int64")]
    pub min_mod_revision: Revision,
    /// Only keys modified at or before this revision.
    #[serde(alias = "maxModRevision", deserialize_with = "wire::int64")]
    pub max_mod_revision: Revision,
    /// Only keys created at or after this revision.
    #[serde(alias = "minCreateRevision", deserialize_with = "wire::int64")]
    pub min_create_revision: Revision,
    /// Only keys created at or before this revision.
    #[serde(alias = "maxCreateRevision", deserialize_with = "wire::int64")]
    pub max_create_revision: Revision,
}

impl RangeRequest {
    /// The order actually applied: `NONE` on another target than the key
    /// sorts ascending; ascending by key is the natural order.
    fn order(&self) -> SortOrder {
        match (self.sort_order, self.sort_target) {
            (SortOrder::None, SortTarget::Key) | (SortOrder::Ascend, SortTarget::Key) => SortOrder::None,
            (SortOrder::None, _) => SortOrder::Ascend,
            (order, _) => order,
        }
    }

    fn filtered(&self) -> bool {
        [self.min_mod_revision, self.max_mod_revision, self.min_create_revision, self.max_create_revision]
            .iter()
            .any(|r| *r != 0)
    }

    /// Whether a key passes the min/max revision filters.
    fn keeps(&self, meta: &Meta) -> bool {
        let at_least = |value: Revision, min: Revision| min == 0 || value >= min;
        let at_most = |value: Revision, max: Revision| max == 0 || value <= max;
        at_least(meta.mod_revision, self.min_mod_revision)
            && at_most(meta.mod_revision, self.max_mod_revision)
            && at_least(meta.create_revision, self.min_create_revision)
            && at_most(meta.create_revision, self.max_create_revision)
    }

    fn limit(&self) -> Option<usize> {
        usize::try_from(self.limit).ok().filter(|l| *l > 0)
    }
}

/// A `RangeResponse`.
struct RangeAnswer<'a> {
    header: Header,
    prefix: &'a [u8],
    kvs: &'a [KeyValue],
    keys_only: bool,
    more: bool,
    count: u64,
}

impl Serialize for RangeAnswer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("header", &self.header)?;
        if !self.kvs.is_empty() {
            let kvs: Vec<KvJson<'_>> = self
                .kvs
                .iter()
                .map(|kv| KvJson { prefix: self.prefix, kv, keys_only: self.keys_only })
                .collect();
            map.serialize_entry("kvs", &kvs)?;
        }
        if self.more {
            map.serialize_entry("more", &true)?;
        }
        if self.count != 0 {
            map.serialize_entry("count", &self.count.to_string())?;
        }
        map.end()
    }
}

impl RangeAnswer<'_> {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (StatusCode::OK, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

/// `POST /v3/kv/range`.
pub async fn range(
    State(api): State<EtcdV3>,
    headers: HeaderMap,
    EtcdBody(body): EtcdBody,
) -> Result<Response, EtcdError> {
    let caller = keys::caller(&api.app, &headers)?;
    let request: RangeRequest = wire::parse(&body)?;
    if request.key.is_empty() {
        return Err(EtcdError::invalid("etcdserver: key is not provided"));
    }
    let located = keys::locate(&api.app.namespaces, &caller, &request.key, &request.range_end)?;
    let cache = &located.ns.cache;
    let at = if request.revision > 0 {
        At::Exact(request.revision)
    } else if request.serializable {
        At::Head
    } else {
        At::Consistent
    };
    let snapshot = match cache.snapshot(at).await {
        Ok(snapshot) if !snapshot.is_from_etcd() => snapshot,
        // What the cache cannot serve, etcd can: same request, etcd's answer.
        Ok(_) | Err(ReadError::NotReady | ReadError::WatchDown | ReadError::Timeout { .. }) => {
            return from_etcd(&api, &request).await;
        }
        Err(e) => return Err(e.into()),
    };
    let (kvs, more, count) = from_cache(&snapshot, &request, &located.range).await?;
    // etcd's header carries its current revision, also for a past revision.
    let revision =
        if request.revision > 0 { cache.head().max(snapshot.revision()) } else { snapshot.revision() };
    let header = Header { ids: api.ids().await, revision };
    let prefix = located.ns.config.prefix.as_bytes();
    Ok(RangeAnswer { header, prefix, kvs: &kvs, keys_only: request.keys_only, more, count }.into_response())
}

/// The key-values, `more` and `count` of `request` from an in-memory snapshot.
async fn from_cache(
    snapshot: &Snapshot,
    request: &RangeRequest,
    range: &KeyRange,
) -> Result<(Vec<KeyValue>, bool, u64), ReadError> {
    if range.is_empty() {
        return Ok((Vec::new(), false, 0));
    }
    let count = snapshot.count(range).await?;
    if request.count_only {
        return Ok((Vec::new(), false, count));
    }
    let order = request.order();
    if order == SortOrder::None && !request.filtered() {
        let page = snapshot.range(range, request.limit().unwrap_or(0), request.keys_only).await?;
        return Ok((page.kvs, page.more, count));
    }
    let metas: Vec<(Bytes, Meta)> = snapshot.metas(range).filter(|(_, meta)| request.keeps(meta)).collect();
    let mut kvs = if request.sort_target == SortTarget::Value || !request.keys_only {
        snapshot.values(metas).await?
    } else {
        metas.into_iter().map(|(key, meta)| KeyValue { key, value: Bytes::new(), meta }).collect()
    };
    let by = |kv: &KeyValue| match request.sort_target {
        SortTarget::Key => Sortable::Bytes(kv.key.clone()),
        SortTarget::Version => Sortable::Number(kv.meta.version),
        SortTarget::Create => Sortable::Number(kv.meta.create_revision),
        SortTarget::Mod => Sortable::Number(kv.meta.mod_revision),
        SortTarget::Value => Sortable::Bytes(kv.value.clone()),
    };
    match order {
        SortOrder::Descend => kvs.sort_by_key(|kv| std::cmp::Reverse(by(kv))),
        _ => kvs.sort_by_key(by),
    }
    let more = request.limit().is_some_and(|limit| kvs.len() > limit);
    if let Some(limit) = request.limit() {
        kvs.truncate(limit);
    }
    Ok((kvs, more, count))
}

/// A sort key.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Sortable {
    Number(i64),
    Bytes(Bytes),
}

/// The same request, answered by etcd.
async fn from_etcd(api: &EtcdV3, request: &RangeRequest) -> Result<Response, EtcdError> {
    use etcd_client::{SortOrder as Order, SortTarget as Target};
    let mut options = GetOptions::new();
    if !request.range_end.is_empty() {
        options = options.with_range(request.range_end.clone());
    }
    let target = match request.sort_target {
        SortTarget::Key => Target::Key,
        SortTarget::Version => Target::Version,
        SortTarget::Create => Target::Create,
        SortTarget::Mod => Target::Mod,
        SortTarget::Value => Target::Value,
    };
    let order = match request.sort_order {
        SortOrder::None => Order::None,
        SortOrder::Ascend => Order::Ascend,
        SortOrder::Descend => Order::Descend,
    };
    options = options
        .with_sort(target, order)
        .with_limit(request.limit)
        .with_revision(request.revision)
        .with_min_mod_revision(request.min_mod_revision)
        .with_max_mod_revision(request.max_mod_revision)
        .with_min_create_revision(request.min_create_revision)
        .with_max_create_revision(request.max_create_revision);
    for (set, apply) in [
        (request.serializable, GetOptions::with_serializable as fn(GetOptions) -> GetOptions),
        (request.keys_only, GetOptions::with_keys_only),
        (request.count_only, GetOptions::with_count_only),
    ] {
        if set {
            options = apply(options);
        }
    }
    let response = api.app.namespaces.etcd().get(request.key.clone(), options).await?;
    let header = match response.header() {
        Some(h) => {
            api.saw(ids_of(h));
            Header { ids: ids_of(h), revision: h.revision() }
        }
        None => Header { ids: api.ids().await, revision: 0 },
    };
    let kvs: Vec<KeyValue> = response.kvs().iter().map(key_value).collect();
    let count = u64::try_from(response.count()).unwrap_or(0);
    let keys_only = request.keys_only;
    Ok(RangeAnswer { header, prefix: b"", kvs: &kvs, keys_only, more: response.more(), count }
        .into_response())
}

/// An etcd key-value in the cache's type (absolute key).
pub fn key_value(kv: &etcd_client::KeyValue) -> KeyValue {
    let meta = Meta {
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
        value_len: u32::try_from(kv.value().len()).unwrap_or(u32::MAX),
    };
    KeyValue { key: Bytes::copy_from_slice(kv.key()), value: Bytes::copy_from_slice(kv.value()), meta }
}
