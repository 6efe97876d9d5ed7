//! Caps on concurrent watch streams: the gateway's, each namespace's and
//! each token's. A permit is held by the stream itself (tower's concurrency
//! limit releases when the headers are sent, so it cannot bound streams).
//! A refusal names the cap, its value and the setting that sets it; the
//! token's own cap is the caller's doing (429), the others the gateway's
//! capacity (503), both with `Retry-After`.

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

/// One cap: its semaphore, its value and the setting that sets it.
#[derive(Debug)]
struct Cap {
    semaphore: Arc<Semaphore>,
    limit: usize,
    setting: String,
}

impl Cap {
    fn new(limit: usize, setting: String) -> Self {
        Self { semaphore: Arc::new(Semaphore::new(limit)), limit, setting }
    }

    fn acquire(&self, whose: &str, callers_own: bool) -> Result<OwnedSemaphorePermit, ApiError> {
        self.semaphore.clone().try_acquire_owned().map_err(|_| ApiError::TooManyWatchers {
            detail: format!(
                "{whose} already has {} watch streams open, its limit ({} = {}); close one or try again later",
                self.limit, self.setting, self.limit
            ),
            callers_own,
            retry_after: RETRY_AFTER,
        })
    }
}

/// The caps.
#[derive(Debug, Clone)]
pub struct WatchLimits {
    global: Arc<Cap>,
    per_namespace: Arc<HashMap<String, Cap>>,
    /// Per token name, when `watch.max_streams_per_token` is set.
    per_token: Arc<HashMap<String, Cap>>,
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
            .enumerate()
            .map(|(i, ns)| {
                let cap = match ns.max_subscribers {
                    Some(limit) => Cap::new(limit, format!("namespaces[{i}].max_subscribers")),
                    None => Cap::new(
                        config.watch.max_subscribers_per_namespace,
                        "watch.max_subscribers_per_namespace".into(),
                    ),
                };
                (ns.name.clone(), cap)
            })
            .collect();
        let per_token = match config.watch.max_streams_per_token {
            Some(limit) => config
                .tokens
                .iter()
                .map(|t| (t.name.clone(), Cap::new(limit, "watch.max_streams_per_token".into())))
                .collect(),
            None => HashMap::new(),
        };
        Self {
            global: Arc::new(Cap::new(config.watch.max_subscribers, "watch.max_subscribers".into())),
            per_namespace: Arc::new(per_namespace),
            per_token: Arc::new(per_token),
        }
    }

    /// A permit for one more stream of `namespace` by `token`.
    ///
    /// # Errors
    /// `too_many_watchers` naming the cap that is reached: 429 for the
    /// token's own, 503 for the namespace's or the gateway's.
    pub fn acquire(&self, namespace: &str, token: Option<&str>) -> Result<WatchPermit, ApiError> {
        let token_permit = match token.and_then(|t| Some((t, self.per_token.get(t)?))) {
            Some((name, cap)) => Some(cap.acquire(&format!("token {name:?}"), true)?),
            None => None,
        };
        let cap = self
            .per_namespace
            .get(namespace)
            .ok_or_else(|| ApiError::NamespaceNotFound { namespace: namespace.to_owned() })?;
        let namespace_permit = cap.acquire(&format!("namespace {namespace:?}"), false)?;
        let global_permit = self.global.acquire("the gateway", false)?;
        Ok(WatchPermit { _global: global_permit, _namespace: namespace_permit, _token: token_permit })
    }
}
