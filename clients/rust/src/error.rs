//! [`Error`]: every way a call can fail, one variant per problem `code` of
//! the gateway's API plus the failures that never reached it.
//!
//! The gateway answers every failure with an RFC 9457 problem object
//! (`application/problem+json`) carrying a stable `code`; [`Error::from_problem`]
//! turns that object into the variant of its code, keeping the whole object
//! ([`Problem`]: its `detail` and every extra member) and lifting the members
//! callers act on (`compact_revision`, `etcd_revision`, `Retry-After`) into
//! typed fields.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::Revision;

/// The result of every fallible call of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An RFC 9457 problem object as the gateway sent it.
///
/// ```
/// use etcd_cache_gateway_client::Problem;
///
/// let problem: Problem = serde_json::from_str(
///     r#"{"type":"urn:etcd-cache-gateway:problem:compacted","title":"Revision compacted",
///         "status":410,"detail":"revision 3 has been compacted; the oldest available is 10",
///         "code":"compacted","compact_revision":10}"#,
/// )
/// .unwrap();
/// assert_eq!(problem.code, "compacted");
/// assert_eq!(problem.extra["compact_revision"], 10);
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Problem {
    /// URI naming the problem type (`urn:etcd-cache-gateway:problem:<code>`).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Short summary of the problem type.
    #[serde(default)]
    pub title: String,
    /// The HTTP status the gateway answered with.
    #[serde(default)]
    pub status: u16,
    /// What happened in this instance, naming what was wrong.
    #[serde(default)]
    pub detail: String,
    /// The stable snake_case code (the gateway's API.md lists them).
    pub code: String,
    /// Every other member, e.g. `compact_revision`, `etcd_revision`, `revision`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Problem {
    /// An integer extra member, when present.
    pub fn extra_i64(&self, name: &str) -> Option<i64> {
        self.extra.get(name).and_then(Value::as_i64)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {})", self.detail, self.status, self.code)
    }
}

/// Everything that can go wrong.
///
/// The first group are the gateway's answers, one variant per problem `code`
/// (each keeps the whole [`Problem`]); codes this version does not know
/// arrive as [`Error::Api`]. The last group never reached the gateway or
/// came back in a shape the API does not promise.
///
/// ```
/// use etcd_cache_gateway_client::{Error, Problem};
///
/// let body = br#"{"type":"urn:etcd-cache-gateway:problem:compacted","title":"Revision compacted",
///     "status":410,"detail":"revision 3 has been compacted; the oldest available is 10",
///     "code":"compacted","compact_revision":10}"#;
/// let problem: Problem = serde_json::from_slice(body).unwrap();
/// match Error::from_problem(problem, None) {
///     Error::Compacted { compact_revision, problem } => {
///         assert_eq!(compact_revision, 10);
///         assert!(problem.detail.contains("oldest available is 10"));
///     }
///     other => panic!("not compacted: {other}"),
/// }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `bad_request` (400): a parameter or header is malformed; the detail names it.
    #[error("bad request: {0}")]
    BadRequest(Box<Problem>),
    /// `unauthorized` (401): no valid token was sent.
    #[error("unauthorized: {0}")]
    Unauthorized(Box<Problem>),
    /// `forbidden` (403): the token may not read this namespace.
    #[error("forbidden: {0}")]
    Forbidden(Box<Problem>),
    /// `namespace_not_found` (404): no namespace of that name.
    #[error("namespace not found: {0}")]
    NamespaceNotFound(Box<Problem>),
    /// `key_not_found` (404): the key does not exist at `revision`.
    #[error("key not found: {problem}")]
    KeyNotFound {
        /// The revision the answer reflects (the key is absent there).
        revision: Revision,
        /// The whole problem.
        problem: Box<Problem>,
    },
    /// `compacted` (410): the revision asked for (or a watch's resume
    /// position, with `on_gap=error`) is older than the oldest available.
    #[error("compacted: {problem}")]
    Compacted {
        /// The oldest revision still available (0 when the gateway did not say).
        compact_revision: Revision,
        /// The whole problem.
        problem: Box<Problem>,
    },
    /// `future_revision` (400): the revision asked for is newer than etcd's.
    #[error("future revision: {problem}")]
    FutureRevision {
        /// etcd's current revision, when the gateway said.
        etcd_revision: Option<Revision>,
        /// The whole problem.
        problem: Box<Problem>,
    },
    /// `page_token_expired` (410): a listing's pinned revision left the
    /// history; start the listing again.
    #[error("page token expired: {0}")]
    PageTokenExpired(Box<Problem>),
    /// `timeout` (504): the cache did not reach the revision waited for in time.
    #[error("timeout: {0}")]
    Timeout(Box<Problem>),
    /// `etcd_unavailable` (503): etcd could not be reached for a read that needs it.
    #[error("etcd unavailable: {problem}")]
    EtcdUnavailable {
        /// The gateway's `Retry-After`, when sent.
        retry_after: Option<Duration>,
        /// The whole problem.
        problem: Box<Problem>,
    },
    /// `too_many_watchers` (503, or 429 for a token's own cap).
    #[error("too many watchers: {problem}")]
    TooManyWatchers {
        /// The gateway's `Retry-After`, when sent.
        retry_after: Option<Duration>,
        /// The whole problem.
        problem: Box<Problem>,
    },
    /// `not_ready` (503): the namespace has not finished its first load.
    #[error("not ready: {0}")]
    NotReady(Box<Problem>),
    /// `shutdown`: the gateway is stopping; a watch resumes elsewhere.
    #[error("shutting down: {0}")]
    Shutdown(Box<Problem>),
    /// `too_large` (413): the request or its answer exceeds a limit.
    #[error("too large: {0}")]
    TooLarge(Box<Problem>),
    /// `upstream_error` (502): etcd refused the gateway's own request.
    #[error("upstream error: {0}")]
    Upstream(Box<Problem>),
    /// Any other code (`not_found`, `method_not_allowed`, `internal`, or one
    /// newer than this client).
    #[error("{0}")]
    Api(Box<Problem>),
    /// The request did not complete: connection refused or reset, TLS,
    /// timeout, or the body broke off.
    #[error("transport: {0}")]
    Transport(#[source] Arc<reqwest::Error>),
    /// A watch stream sent nothing, not even a keep-alive comment, for this long.
    #[error("the stream sent nothing for {0:?} (WatchOptions::idle_timeout)")]
    Stalled(Duration),
    /// The answer is not what the API promises (not JSON, an unknown shape,
    /// an error status without a problem object).
    #[error("unexpected answer{}: {detail}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Protocol {
        /// The HTTP status, when there was a response.
        status: Option<u16>,
        /// What was wrong with it.
        detail: String,
    },
    /// An argument was refused before sending (an invalid base URL or token).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// The variant of `problem.code`; `retry_after` is the response's
    /// `Retry-After`, when it had one.
    pub fn from_problem(problem: Problem, retry_after: Option<Duration>) -> Self {
        let compact_revision = problem.extra_i64("compact_revision").unwrap_or(0);
        let etcd_revision = problem.extra_i64("etcd_revision");
        let revision = problem.extra_i64("revision").unwrap_or(0);
        let problem = Box::new(problem);
        match problem.code.as_str() {
            "bad_request" => Self::BadRequest(problem),
            "unauthorized" => Self::Unauthorized(problem),
            "forbidden" => Self::Forbidden(problem),
            "namespace_not_found" => Self::NamespaceNotFound(problem),
            "key_not_found" => Self::KeyNotFound { revision, problem },
            "compacted" => Self::Compacted { compact_revision, problem },
            "future_revision" => Self::FutureRevision { etcd_revision, problem },
            "page_token_expired" => Self::PageTokenExpired(problem),
            "timeout" => Self::Timeout(problem),
            "etcd_unavailable" => Self::EtcdUnavailable { retry_after, problem },
            "too_many_watchers" => Self::TooManyWatchers { retry_after, problem },
            "not_ready" => Self::NotReady(problem),
            "shutdown" => Self::Shutdown(problem),
            "too_large" => Self::TooLarge(problem),
            "upstream_error" => Self::Upstream(problem),
            _ => Self::Api(problem),
        }
    }

    /// The gateway's problem object, for the variants that have one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::BadRequest(p)
            | Self::Unauthorized(p)
            | Self::Forbidden(p)
            | Self::NamespaceNotFound(p)
            | Self::PageTokenExpired(p)
            | Self::Timeout(p)
            | Self::NotReady(p)
            | Self::Shutdown(p)
            | Self::TooLarge(p)
            | Self::Upstream(p)
            | Self::Api(p)
            | Self::KeyNotFound { problem: p, .. }
            | Self::Compacted { problem: p, .. }
            | Self::FutureRevision { problem: p, .. }
            | Self::EtcdUnavailable { problem: p, .. }
            | Self::TooManyWatchers { problem: p, .. } => Some(p),
            Self::Transport(_) | Self::Stalled(_) | Self::Protocol { .. } | Self::InvalidArgument(_) => None,
        }
    }

    /// The problem `code` (`"compacted"`, ...), for the gateway's answers.
    pub fn code(&self) -> Option<&str> {
        self.problem().map(|p| p.code.as_str())
    }

    /// Whether a key or a namespace was not found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::KeyNotFound { .. } | Self::NamespaceNotFound(_))
    }

    /// Whether trying the same request again later can succeed without
    /// changing it: the connection failed, the gateway is stopping,
    /// overloaded or waiting for etcd (HTTP 429 and 5xx). A watch reconnects
    /// by itself on these; every other error ends it.
    ///
    /// ```
    /// use etcd_cache_gateway_client::Error;
    ///
    /// assert!(Error::Stalled(std::time::Duration::from_secs(45)).is_retryable());
    /// assert!(!Error::InvalidArgument("bad url".into()).is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) | Self::Stalled(_) => true,
            Self::Protocol { status, .. } => status.is_some_and(|s| s == 429 || s >= 500),
            Self::InvalidArgument(_) => false,
            other => other.problem().is_some_and(|p| {
                p.status == 429 || p.status >= 500 || p.code == "shutdown" || p.code == "not_ready"
            }),
        }
    }

    /// How long the gateway asked to wait before retrying (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::EtcdUnavailable { retry_after, .. } | Self::TooManyWatchers { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Self::Transport(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(code: &str, status: u16, extra: Value) -> Problem {
        let mut value = serde_json::json!({
            "type": format!("urn:etcd-cache-gateway:problem:{code}"),
            "title": "t", "status": status, "detail": "d", "code": code,
        });
        value.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn each_code_becomes_its_variant_with_its_members() {
        let e = Error::from_problem(problem("key_not_found", 404, serde_json::json!({"revision": 7})), None);
        assert!(matches!(e, Error::KeyNotFound { revision: 7, .. }));
        assert!(e.is_not_found());
        let e = Error::from_problem(
            problem("future_revision", 400, serde_json::json!({"etcd_revision": 9})),
            None,
        );
        assert!(matches!(e, Error::FutureRevision { etcd_revision: Some(9), .. }));
        let wait = Some(Duration::from_secs(2));
        let e = Error::from_problem(problem("etcd_unavailable", 503, Value::Null), wait);
        assert_eq!((e.retry_after(), e.is_retryable()), (wait, true));
        let e = Error::from_problem(problem("shutdown", 503, Value::Null), None);
        assert!(matches!(e, Error::Shutdown(_)) && e.is_retryable());
        let e = Error::from_problem(problem("brand_new", 418, serde_json::json!({"hint": "x"})), None);
        assert_eq!(e.code(), Some("brand_new"));
        assert_eq!(e.problem().unwrap().extra["hint"], "x");
        assert!(!e.is_retryable());
        let e = Error::from_problem(problem("compacted", 410, Value::Null), None);
        assert!(matches!(e, Error::Compacted { compact_revision: 0, .. }) && !e.is_retryable());
    }
}
