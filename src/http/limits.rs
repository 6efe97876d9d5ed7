//! Caps on concurrent watch streams: global and per namespace. A permit is
//! held by the stream itself (tower's concurrency limit releases when the
//! headers are sent, so it cannot bound streams).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::error::ApiError;

/// When a client refused for a cap should try again (a guess that spreads
/// retries; EventSource ignores it, the jittered `retry:` of the next
/// successful stream applies).
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The semaphores.
#[derive(Debug, Clone)]
pub struct WatchLimits {
    global: Arc<Semaphore>,
    per_namespace: Arc<HashMap<String, Arc<Semaphore>>>,
    /// Per token name, when `watch.max_streams_per_token` is set.
    per_token: Arc<HashMap<String, Arc<Semaphore>>>,
}

/// Permits of one stream, released when it ends.
#[derive(Debug)]
pub struct WatchPermit {
    _global: OwnedSemaphorePermit,
    _namespace: OwnedSemaphorePermit,
    _token: Option<OwnedSemaphorePermit>,
}

impl WatchLimits {
    /// Caps from `[watch]`, each namespace's `max_subscribers` and
    /// `watch.max_streams_per_token`.
    pub fn new(config: &Config) -> Self {
        let per_namespace = config
            .namespaces
            .iter()
            .map(|ns| {
                let cap = ns.max_subscribers.unwrap_or(config.watch.max_subscribers_per_namespace);
                (ns.name.clone(), Arc::new(Semaphore::new(cap)))
            })
            .collect();
        let per_token = match config.watch.max_streams_per_token {
            Some(cap) => {
                config.tokens.iter().map(|t| (t.name.clone(), Arc::new(Semaphore::new(cap)))).collect()
            }
            None => HashMap::new(),
        };
        Self {
            global: Arc::new(Semaphore::new(config.watch.max_subscribers)),
            per_namespace: Arc::new(per_namespace),
            per_token: Arc::new(per_token),
        }
    }

    /// A permit for one more stream of `namespace` by `token`.
    ///
    /// # Errors
    /// 503 `too_many_watchers` naming the cap that is reached.
    pub fn acquire(&self, namespace: &str, token: Option<&str>) -> Result<WatchPermit, ApiError> {
        let refuse = |detail: String| ApiError::TooManyWatchers { detail, retry_after: RETRY_AFTER };
        let token_permit = match token.and_then(|t| self.per_token.get(t)) {
            Some(semaphore) => Some(
                semaphore
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| refuse("this token has as many watch streams open as it may".into()))?,
            ),
            None => None,
        };
        let semaphore = self
            .per_namespace
            .get(namespace)
            .cloned()
            .ok_or_else(|| ApiError::NamespaceNotFound { namespace: namespace.to_owned() })?;
        let namespace_permit = semaphore
            .try_acquire_owned()
            .map_err(|_| refuse(format!("namespace {namespace:?} has as many watchers as it may")))?;
        let global_permit = self
            .global
            .clone()
            .try_acquire_owned()
            .map_err(|_| refuse("the gateway has as many watchers as it may".into()))?;
        Ok(WatchPermit { _global: global_permit, _namespace: namespace_permit, _token: token_permit })
    }

    /// Streams open now, gateway-wide.
    pub fn open_streams(&self, max: usize) -> usize {
        max - self.global.available_permits()
    }
}
