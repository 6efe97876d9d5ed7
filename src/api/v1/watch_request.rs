//! The typed request of `GET /v1/namespaces/{ns}/watch`.

use std::time::Duration;

use axum::http::HeaderMap;

use super::render::Encoding;
use super::selection::Selection;
use crate::cache::{KeyRange, Revision};
use crate::config::HumanDuration;
use crate::error::ApiError;
use crate::fanout::OnGap;
use crate::http::params::Params;

/// Shortest `progress_interval` a client may ask for.
pub const MIN_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest `progress_interval`: beyond it proxies close idle streams anyway.
pub const MAX_PROGRESS_INTERVAL: Duration = Duration::from_secs(3600);

/// A watch subscription request.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// The keys watched.
    pub range: KeyRange,
    /// Resume after this revision (`Last-Event-ID` wins over `since`).
    pub since: Option<Revision>,
    /// Start with the current state.
    pub snapshot: bool,
    /// Include the previous key-value in events.
    pub prev_kv: bool,
    /// Value encoding.
    pub encoding: Encoding,
    /// Gap behaviour: `on_gap=reset` (`reset`, a snapshot and `synced`, the
    /// default) or `on_gap=error` (`error` with code `compacted`, the end).
    pub on_gap: OnGap,
    /// Idle time before a `progress` event.
    pub progress_interval: Duration,
}

/// Parameters of a watch.
pub const WATCH_PARAMS: &str = "prefix, start, end, key (and their _b64 forms), since, snapshot, prev_kv, encoding, on_gap, progress_interval";

impl WatchRequest {
    /// Parses the query and the `Last-Event-ID` header.
    ///
    /// # Errors
    /// 400 naming the parameter or header.
    pub fn parse(
        mut params: Params,
        headers: &HeaderMap,
        default_progress: Duration,
    ) -> Result<Self, ApiError> {
        let range = Selection::take(&mut params)?.into_range();
        let since_param = params.take_int("since", 0, i64::MAX)?;
        let last_event_id = match headers.get("last-event-id") {
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<Revision>().ok())
                    .filter(|r| *r >= 0)
                    .ok_or_else(|| {
                        ApiError::bad_request("header `Last-Event-ID` must be a revision (an integer >= 0)")
                    })?,
            ),
            None => None,
        };
        let snapshot = params.take_bool("snapshot")?;
        let prev_kv = params.take_bool("prev_kv")?;
        let encoding = Encoding::parse(params.take_str("encoding")?.as_deref())?;
        let on_gap = match params.take_str("on_gap")?.as_deref() {
            None | Some("reset") => OnGap::Reset,
            Some("error") => OnGap::End,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "parameter `on_gap` must be reset or error, not {other:?}"
                )));
            }
        };
        let progress_interval = match params.take_str("progress_interval")? {
            None => default_progress,
            Some(text) => {
                let d = text
                    .parse::<HumanDuration>()
                    .map_err(|e| ApiError::bad_request(format!("parameter `progress_interval`: {e}")))?;
                if d.get() < MIN_PROGRESS_INTERVAL || d.get() > MAX_PROGRESS_INTERVAL {
                    return Err(ApiError::bad_request(format!(
                        "parameter `progress_interval` must be between 1s and 1h, not {text:?}"
                    )));
                }
                d.get()
            }
        };
        params.finish(WATCH_PARAMS)?;
        Ok(Self {
            range,
            since: last_event_id.or(since_param),
            snapshot,
            prev_kv,
            encoding,
            on_gap,
            progress_interval,
        })
    }
}
