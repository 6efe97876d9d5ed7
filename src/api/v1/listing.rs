//! One page of a `GET .../kv` listing, with the count of the whole listing.
//!
//! In plain key order a page is read straight from the index after the
//! token's key. Filters, another sort, descending order and one-level
//! listings (`delimiter`) read the whole range at the snapshot's revision
//! (keys and metadata from the index; values only where a filter or the
//! page needs them), order it, and cut the page after the token's position:
//! O(keys in the range) per page, with every page of a listing at the first
//! page's revision.

use bytes::Bytes;

use super::kv_request::{RangeRequest, Shape, SortBy};
use super::page_token::Position;
use crate::cache::{KeyRange, KeyValue, Meta, ReadError, Snapshot, prefix_end};

/// Keys read per step when a range is scanned from etcd, and values loaded
/// per step when filters need them: bounds one etcd answer and one batch of
/// value loads.
const SCAN_PAGE: usize = 1000;

/// One page and what it belongs to.
#[derive(Debug, Default)]
pub struct Listing {
    /// Keys matching the whole listing (at one level: the keys directly at it).
    pub count: u64,
    /// The page's key-values (values empty when keys-only).
    pub kvs: Vec<KeyValue>,
    /// At one level: the page's common prefixes with the number of keys
    /// below each, in order with the keys.
    pub prefixes: Option<Vec<(Bytes, u64)>>,
    /// Where the next page starts, when there is one.
    pub next: Option<Position>,
}

/// The page `request` asks for, at `snapshot`.
///
/// # Errors
/// When etcd is needed (values or a revision outside the window) and fails.
pub async fn list(snapshot: &Snapshot, request: &RangeRequest) -> Result<Listing, ReadError> {
    match &request.delimiter {
        Some(delimiter) => levels(snapshot, request, delimiter).await,
        None if request.is_plain() => plain(snapshot, request).await,
        None => scanned(snapshot, request).await,
    }
}

async fn plain(snapshot: &Snapshot, request: &RangeRequest) -> Result<Listing, ReadError> {
    let count = snapshot.count(&request.range).await?;
    if request.shape == Shape::CountOnly {
        return Ok(Listing { count, ..Listing::default() });
    }
    let range = match &request.page_token {
        Some(token) => request.range.after(&token.last.key),
        None => request.range.clone(),
    };
    let page = snapshot.range(&range, request.limit, request.shape == Shape::KeysOnly).await?;
    let next = page.kvs.last().filter(|_| page.more).map(|kv| Position { value: 0, key: kv.key.clone() });
    Ok(Listing { count, kvs: page.kvs, prefixes: None, next })
}

/// Every key of `range` with its metadata, in key order.
async fn metas(snapshot: &Snapshot, range: &KeyRange) -> Result<Vec<(Bytes, Meta)>, ReadError> {
    if !snapshot.is_from_etcd() {
        return Ok(snapshot.metas(range).collect());
    }
    let mut all = Vec::new();
    let mut cursor = range.clone();
    loop {
        let page = snapshot.range(&cursor, SCAN_PAGE, true).await?;
        all.extend(page.kvs.iter().map(|kv| (kv.key.clone(), kv.meta)));
        match page.kvs.last() {
            Some(last) if page.more => cursor = range.after(&last.key),
            _ => return Ok(all),
        }
    }
}

/// Filters, another sort, or descending order.
async fn scanned(snapshot: &Snapshot, request: &RangeRequest) -> Result<Listing, ReadError> {
    let metas = metas(snapshot, &request.range).await?;
    let with_values = !request.filters.is_empty();
    let mut items: Vec<KeyValue> = if with_values {
        let mut matching = Vec::new();
        for chunk in metas.chunks(SCAN_PAGE) {
            for kv in snapshot.values(chunk.to_vec()).await? {
                let doc = serde_json::from_slice::<serde_json::Value>(&kv.value).ok();
                if request.filters.iter().all(|f| f.matches(doc.as_ref())) {
                    matching.push(kv);
                }
            }
        }
        matching
    } else {
        metas.into_iter().map(|(key, meta)| KeyValue { key, value: Bytes::new(), meta }).collect()
    };
    let count = items.len() as u64;
    if request.shape == Shape::CountOnly {
        return Ok(Listing { count, ..Listing::default() });
    }
    let sort = request.sort;
    let position = |kv: &KeyValue| Position { value: sort.value(&kv.meta), key: kv.key.clone() };
    // Items arrive in key order; a stable sort by value keeps keys in order on ties.
    if sort != SortBy::Key {
        items.sort_by_key(|kv| sort.value(&kv.meta));
    }
    if request.descending {
        items.reverse();
    }
    let after = |kv: &KeyValue, last: &Position| {
        let order = (sort.value(&kv.meta), &kv.key).cmp(&(last.value, &last.key));
        if request.descending { order.is_lt() } else { order.is_gt() }
    };
    let start = match &request.page_token {
        Some(token) => items.partition_point(|kv| !after(kv, &token.last)),
        None => 0,
    };
    let rest = items.len() - start;
    let mut page: Vec<KeyValue> = items.drain(start..).take(request.limit).collect();
    let next = (rest > request.limit).then(|| page.last().map(position)).flatten();
    if request.shape == Shape::Full && !with_values {
        page = snapshot.values(page.into_iter().map(|kv| (kv.key, kv.meta)).collect()).await?;
    }
    Ok(Listing { count, kvs: page, prefixes: None, next })
}

/// One item of a one-level listing.
enum Item {
    Key(Bytes, Meta),
    Prefix(Bytes, u64),
}

impl Item {
    fn key(&self) -> &Bytes {
        match self {
            Self::Key(key, _) | Self::Prefix(key, _) => key,
        }
    }
}

/// One level: the keys directly under the prefix, and the common prefixes
/// (ending with `delimiter`) of the keys below, in key order. A key equal to
/// a common prefix is counted in it, as S3 does.
async fn levels(snapshot: &Snapshot, request: &RangeRequest, delimiter: &[u8]) -> Result<Listing, ReadError> {
    let base = request.range.start.len();
    let mut items: Vec<Item> = Vec::new();
    let mut count = 0;
    for (key, meta) in metas(snapshot, &request.range).await? {
        match find(&key[base..], delimiter) {
            Some(i) => {
                let prefix = key.slice(..base + i + delimiter.len());
                match items.last_mut() {
                    Some(Item::Prefix(last, n)) if *last == prefix => *n += 1,
                    _ => items.push(Item::Prefix(prefix, 1)),
                }
            }
            None => {
                count += 1;
                items.push(Item::Key(key, meta));
            }
        }
    }
    if request.shape == Shape::CountOnly {
        return Ok(Listing { count, ..Listing::default() });
    }
    // Items after a common prefix start after every key below it (a common
    // prefix holds the delimiter past the base; a key at this level does not).
    let start = match &request.page_token {
        Some(token) => {
            let last = &token.last.key;
            let is_prefix = last.get(base..).and_then(|rest| find(rest, delimiter)).is_some();
            match (is_prefix, prefix_end(last)) {
                (true, Some(end)) => items.partition_point(|item| *item.key() < end),
                (true, None) => items.len(),
                (false, _) => items.partition_point(|item| item.key() <= last),
            }
        }
        None => 0,
    };
    let rest = items.len() - start;
    let page: Vec<Item> = items.drain(start..).take(request.limit).collect();
    let next = (rest > request.limit)
        .then(|| page.last().map(|item| Position { value: 0, key: item.key().clone() }))
        .flatten();
    let mut metas = Vec::new();
    let mut prefixes = Vec::new();
    for item in page {
        match item {
            Item::Key(key, meta) => metas.push((key, meta)),
            Item::Prefix(prefix, n) => prefixes.push((prefix, n)),
        }
    }
    let kvs = if request.shape == Shape::Full {
        snapshot.values(metas).await?
    } else {
        metas.into_iter().map(|(key, meta)| KeyValue { key, value: Bytes::new(), meta }).collect()
    };
    Ok(Listing { count, kvs, prefixes: Some(prefixes), next })
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
