//! Rendered listing pages, shared between requests.
//!
//! A page's `count` and `kvs` depend only on the query and on the
//! namespace's state, which is identified by the revision of its last change:
//! requests for the same page between two changes get the same bytes. The
//! fragment is cached without the head revision and the page token, which
//! are written per request, so a page stays shared while head moves on
//! progress notifications. Pages read from etcd (outside the window) are not
//! cached.

use std::time::Duration;

use bytes::Bytes;

use super::page_token::Position;
use crate::cache::Revision;

/// A page is dropped when no request used it for this long: a changed
/// namespace leaves its old pages unused, and they should not wait for the
/// byte budget to push them out.
pub const PAGE_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Identity of one rendered page.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PageKey {
    /// Namespace index.
    pub namespace: u32,
    /// Revision of the namespace's last change at or before the snapshot.
    pub last_change: Revision,
    /// Everything of the query that shapes the page, canonically encoded.
    pub query: Bytes,
}

/// A rendered page: `"count":N` (and `,"kvs":[...]`) without the braces.
#[derive(Clone, Debug)]
pub struct RenderedPage {
    /// The JSON members `count` and, unless count-only, `kvs`.
    pub members: Bytes,
    /// The last key when more keys follow (the next token continues after it).
    pub more_after: Option<Position>,
}

/// Byte-bounded cache of rendered pages.
#[derive(Clone)]
pub struct PageCache {
    cache: Option<moka::future::Cache<PageKey, RenderedPage>>,
}

impl PageCache {
    /// A cache of at most `max_bytes` (0 disables it).
    pub fn new(max_bytes: u64) -> Self {
        let cache = (max_bytes > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &PageKey, v: &RenderedPage| {
                    u32::try_from(k.query.len() + v.members.len() + 128).unwrap_or(u32::MAX)
                })
                .time_to_idle(PAGE_IDLE_TIMEOUT)
                .build()
        });
        Self { cache }
    }

    /// The page if cached.
    pub async fn get(&self, key: &PageKey) -> Option<RenderedPage> {
        self.cache.as_ref()?.get(key).await
    }

    /// Caches a page.
    pub async fn insert(&self, key: PageKey, page: RenderedPage) {
        if let Some(cache) = &self.cache {
            cache.insert(key, page).await;
        }
    }
}
