//! [`ApiError`]: the one place where failures become HTTP answers.
//!
//! Modules return small error enums with facts; handlers convert them into an
//! `ApiError`, which renders RFC 9457 `application/problem+json` with a stable
//! snake_case `code` (the codes are listed in API.md). Causes are logged here,
//! never sent to the client: etcd's own messages go to the log in full, the
//! client gets a sentence of ours.
//!
//! How each kind of etcd failure answers:
//!
//! | etcd failure | HTTP | `code` |
//! |---|---|---|
//! | unavailable (down, no leader, too many requests, connection reset) | 503 + `Retry-After` | `etcd_unavailable` |
//! | timeout (deadline exceeded) | 503 + `Retry-After` | `etcd_unavailable` |
//! | the gateway's credentials refused (permission denied, authentication) | 502 | `upstream_error` |
//! | invalid argument | 400 | `bad_request` |
//! | request or answer too large | 413 | `too_large` |
//! | revision compacted | 410 | `compacted` |
//! | revision in the future | 400 | `future_revision` |
//! | anything else (internal error) | 502 | `upstream_error` |

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cache::{NamespaceStatus, ReadError, UpstreamError};

/// The detail of `not_ready`: which namespaces are still loading, and why
/// when a load failed.
fn not_ready(namespaces: &[NamespaceStatus]) -> String {
    let waiting: Vec<String> = namespaces
        .iter()
        .filter(|ns| !ns.ready)
        .map(|ns| match &ns.last_error {
            Some(error) => format!("{:?} ({error})", ns.name),
            None => format!("{:?} (loading)", ns.name),
        })
        .collect();
    if waiting.is_empty() {
        return "the gateway is not ready yet".into();
    }
    format!("not loaded yet: {}; the gateway keeps trying", waiting.join(", "))
}

/// When a client should retry after etcd was unavailable: about what the
/// reflector's first reconnect attempts take.
pub const ETCD_RETRY_AFTER: Duration = Duration::from_secs(2);

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every `code` a problem can carry (the OpenAPI document lists exactly these).
pub const CODES: &[&str] = &[
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "namespace_not_found",
    "key_not_found",
    "compacted",
    "future_revision",
    "page_token_expired",
    "timeout",
    "etcd_unavailable",
    "upstream_error",
    "too_large",
    "too_many_watchers",
    "not_ready",
    SHUTDOWN_CODE,
    "internal",
];

/// The code of the `error` event that ends streams when the gateway stops.
pub const SHUTDOWN_CODE: &str = "shutdown";

/// Everything that can go wrong in a request, as the client should learn it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter, header or path segment is malformed; `detail` names it.
    #[error("{detail}")]
    BadRequest {
        /// What is wrong, naming the parameter.
        detail: String,
    },
    /// No valid token was presented (`presented`: one was, but it is not valid).
    #[error(
        "{}this gateway needs a token: send it as the header `Authorization: Bearer <token>`, as the query \
         parameter `access_token=<token>`, or as the cookie `gateway_token=<token>`",
        if *presented { "the token presented is not valid; " } else { "" }
    )]
    Unauthorized {
        /// Whether a token was sent at all.
        presented: bool,
    },
    /// The token may not read this namespace.
    #[error("this token may not read namespace {namespace:?}")]
    Forbidden {
        /// The namespace asked for.
        namespace: String,
    },
    /// No route matches the path.
    #[error("no route for {path}")]
    RouteNotFound {
        /// The request path.
        path: String,
    },
    /// The namespace in the path is not configured.
    #[error("namespace {namespace:?} does not exist")]
    NamespaceNotFound {
        /// The name asked for.
        namespace: String,
    },
    /// The key does not exist at `revision`.
    #[error("key {key:?} not found in namespace {namespace:?} at revision {revision}{hint}")]
    KeyNotFound {
        /// The key asked for, as text (lossy for keys that are not UTF-8).
        key: String,
        /// The namespace it was looked up in.
        namespace: String,
        /// Revision the answer reflects.
        revision: i64,
        /// A suggestion, when the key looks like a common mistake ("" else).
        hint: String,
    },
    /// The revision asked for is older than the oldest one available.
    #[error("revision {revision} has been compacted; the oldest available is {compact_revision}")]
    Compacted {
        /// The revision asked for.
        revision: i64,
        /// The oldest revision still available.
        compact_revision: i64,
    },
    /// etcd said a revision was compacted where the gateway does not know
    /// which (no read path does this; kept so no compaction is ever a 5xx).
    #[error("the revision asked for has been compacted in etcd; read the current state and start from it")]
    EtcdCompacted,
    /// etcd said a revision is in its future where the gateway does not know
    /// which (as [`ApiError::EtcdCompacted`]).
    #[error("the revision asked for is in the future: etcd has not reached it")]
    EtcdFutureRevision,
    /// The revision asked for is newer than etcd's.
    #[error("revision {revision} is in the future; etcd is at {etcd_revision}")]
    FutureRevision {
        /// The revision asked for.
        revision: i64,
        /// etcd's current revision.
        etcd_revision: i64,
    },
    /// A page token's revision is no longer available.
    #[error("the page token's revision {revision} is no longer available; start the listing again")]
    PageTokenExpired {
        /// The revision the token pinned.
        revision: i64,
    },
    /// Waiting for the cache took longer than allowed.
    #[error("{detail}")]
    Timeout {
        /// What was waited for.
        detail: String,
    },
    /// etcd could not be reached (or did not answer in time) for a request
    /// that needs it.
    #[error("{detail}")]
    EtcdUnavailable {
        /// What failed, in our words (etcd's message is logged only).
        detail: &'static str,
    },
    /// etcd refused the gateway's own request (its credentials lack
    /// permission, or etcd failed internally): the gateway's operator must act.
    #[error("{detail}")]
    Upstream {
        /// What failed, in our words (etcd's message is logged only).
        detail: &'static str,
    },
    /// The request or its answer exceeds a size limit.
    #[error("{detail}")]
    TooLarge {
        /// Which limit, and what to do.
        detail: String,
    },
    /// A cap on watch streams is reached.
    #[error("{detail}")]
    TooManyWatchers {
        /// Which cap, its value and the setting that sets it.
        detail: String,
        /// The cap is the caller's own (per token): 429, else the gateway's (503).
        callers_own: bool,
        /// When to try again.
        retry_after: Duration,
    },
    /// The method is not served (`/v1` is read-only).
    #[error(
        "{method} is not allowed on {path}: the gateway only reads on /v1 (allowed: GET, HEAD); write to etcd itself"
    )]
    MethodNotAllowed {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
    },
    /// A namespace (or, for `/readyz`, any) has not finished its first load.
    #[error("{}", not_ready(namespaces))]
    NotReady {
        /// Per-namespace state, shown to the client.
        namespaces: Vec<NamespaceStatus>,
    },
    /// A bug or an unexpected failure; the cause is logged, not shown.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The RFC 9457 body. Also used as the `data` of the SSE `error` event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    /// URI naming the problem type (derived from `code`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short human summary of the type.
    pub title: &'static str,
    /// HTTP status code.
    pub status: u16,
    /// What happened in this instance.
    pub detail: String,
    /// Stable machine-readable code (see API.md).
    pub code: &'static str,
    /// Code-specific members, e.g. `compact_revision`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Problem {
    /// Builds a problem of the given code; `type` is derived from the code.
    pub fn new(status: StatusCode, code: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            kind: format!("urn:etcd-cache-gateway:problem:{code}"),
            title,
            status: status.as_u16(),
            detail,
            code,
            extra: Map::new(),
        }
    }

    /// Adds a code-specific member.
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }
}

impl ApiError {
    /// Shorthand for a 400 naming what is wrong.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest { detail: detail.into() }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } | Self::FutureRevision { .. } | Self::EtcdFutureRevision => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyWatchers { callers_own: true, .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::RouteNotFound { .. } | Self::NamespaceNotFound { .. } | Self::KeyNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            Self::Compacted { .. } | Self::EtcdCompacted | Self::PageTokenExpired { .. } => StatusCode::GONE,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::EtcdUnavailable { .. } | Self::TooManyWatchers { .. } | Self::NotReady { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `code` and `title` of this error.
    fn code_and_title(&self) -> (&'static str, &'static str) {
        match self {
            Self::BadRequest { .. } => ("bad_request", "Bad request"),
            Self::Unauthorized { .. } => ("unauthorized", "Unauthorized"),
            Self::MethodNotAllowed { .. } => ("method_not_allowed", "Method not allowed"),
            Self::Forbidden { .. } => ("forbidden", "Forbidden"),
            Self::RouteNotFound { .. } => ("not_found", "Not found"),
            Self::NamespaceNotFound { .. } => ("namespace_not_found", "Namespace not found"),
            Self::KeyNotFound { .. } => ("key_not_found", "Key not found"),
            Self::Compacted { .. } | Self::EtcdCompacted => ("compacted", "Revision compacted"),
            Self::FutureRevision { .. } | Self::EtcdFutureRevision => ("future_revision", "Future revision"),
            Self::PageTokenExpired { .. } => ("page_token_expired", "Page token expired"),
            Self::Timeout { .. } => ("timeout", "Timeout"),
            Self::EtcdUnavailable { .. } => ("etcd_unavailable", "etcd unavailable"),
            Self::Upstream { .. } => ("upstream_error", "etcd refused the gateway's request"),
            Self::TooLarge { .. } => ("too_large", "Too large"),
            Self::TooManyWatchers { .. } => ("too_many_watchers", "Too many watchers"),
            Self::NotReady { .. } => ("not_ready", "Not ready"),
            Self::Internal(_) => ("internal", "Internal error"),
        }
    }

    /// The problem object this error renders as.
    pub fn problem(&self) -> Problem {
        let (code, title) = self.code_and_title();
        let problem = Problem::new(self.status(), code, title, self.to_string());
        match self {
            Self::KeyNotFound { key, namespace, revision, .. } => problem
                .with("revision", *revision)
                .with("key", key.as_str())
                .with("namespace", namespace.as_str()),
            Self::Compacted { compact_revision, .. } => problem.with("compact_revision", *compact_revision),
            Self::FutureRevision { etcd_revision, .. } => problem.with("etcd_revision", *etcd_revision),
            Self::NotReady { namespaces } => problem.with("namespaces", serde_json::json!(namespaces)),
            _ => problem,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = %cause, "internal error");
        }
        let mut response = self.problem().into_response();
        let headers = response.headers_mut();
        match &self {
            Self::TooManyWatchers { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            Self::EtcdUnavailable { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(ETCD_RETRY_AFTER.as_secs()));
            }
            Self::Unauthorized { .. } => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::NotReady => Self::NotReady { namespaces: Vec::new() },
            ReadError::Compacted { revision, compact_revision } => {
                Self::Compacted { revision, compact_revision }
            }
            ReadError::FutureRevision { revision, etcd_revision } => {
                Self::FutureRevision { revision, etcd_revision }
            }
            ReadError::Timeout { revision, head, waited } => Self::Timeout {
                detail: format!(
                    "the cache did not reach revision {revision} within {waited:?} (it is at {head})"
                ),
            },
            ReadError::WatchDown => Self::EtcdUnavailable {
                detail: "the namespace's etcd watch is down, so a consistent read cannot be served; \
                         reads without consistent=true are served from the cache (X-Cache-Status: stale)",
            },
            ReadError::Upstream(e) => Self::from(e),
        }
    }
}

impl From<UpstreamError> for ApiError {
    /// Logs etcd's message in full (the client never sees it) and answers
    /// with the row of the table in the module documentation.
    fn from(e: UpstreamError) -> Self {
        tracing::warn!(error = %e, "etcd request failed");
        match e {
            UpstreamError::Compacted { .. } => Self::EtcdCompacted,
            UpstreamError::FutureRevision { .. } => Self::EtcdFutureRevision,
            UpstreamError::Unavailable { .. } => {
                Self::EtcdUnavailable { detail: "etcd is unavailable; the gateway keeps trying, retry later" }
            }
            UpstreamError::Timeout { .. } => Self::EtcdUnavailable {
                detail: "etcd did not answer in time (etcd.request_timeout); retry later",
            },
            UpstreamError::Denied { .. } => Self::Upstream {
                detail: "etcd refused the gateway's credentials for this read; the gateway's etcd user \
                         needs read permission on the namespace's prefix (see the gateway's log)",
            },
            UpstreamError::InvalidArgument { .. } => {
                Self::bad_request("etcd rejected the request as invalid (see the gateway's log)")
            }
            UpstreamError::TooLarge { .. } => Self::TooLarge {
                detail: "etcd's answer exceeds etcd.max_message_bytes: ask for fewer keys (limit) or raise \
                         etcd.max_message_bytes"
                    .into(),
            },
            UpstreamError::Failed { .. } => {
                Self::Upstream { detail: "etcd failed the gateway's request (see the gateway's log)" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacted_carries_compact_revision() {
        let p = ApiError::Compacted { revision: 3, compact_revision: 10 }.problem();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["status"], 410);
        assert_eq!(v["code"], "compacted");
        assert_eq!(v["compact_revision"], 10);
        assert_eq!(v["type"], "urn:etcd-cache-gateway:problem:compacted");
    }

    #[test]
    fn too_many_watchers_sets_retry_after() {
        let r = ApiError::TooManyWatchers {
            detail: "cap".into(),
            callers_own: false,
            retry_after: Duration::from_secs(5),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }

    /// etcd's text, which must never reach a client.
    const ETCD_TEXT: &str = "etcdserver: secret internals at 10.0.0.7";

    async fn answer(e: UpstreamError) -> (u16, String, Option<String>, String) {
        let response = ApiError::from(e).into_response();
        let status = response.status().as_u16();
        let retry_after = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        let code = serde_json::from_str::<Value>(&body).unwrap()["code"].as_str().unwrap().to_owned();
        (status, code, retry_after, body)
    }

    #[tokio::test]
    async fn each_etcd_failure_kind_answers_its_row_and_never_etcds_text() {
        let m = || ETCD_TEXT.to_owned();
        let rows = [
            (UpstreamError::Unavailable { message: m() }, 503, "etcd_unavailable", Some("2")),
            (UpstreamError::Timeout { message: m() }, 503, "etcd_unavailable", Some("2")),
            (UpstreamError::Denied { message: m() }, 502, "upstream_error", None),
            (UpstreamError::InvalidArgument { message: m() }, 400, "bad_request", None),
            (UpstreamError::TooLarge { message: m() }, 413, "too_large", None),
            (UpstreamError::Compacted { message: m() }, 410, "compacted", None),
            (UpstreamError::FutureRevision { message: m() }, 400, "future_revision", None),
            (UpstreamError::Failed { message: m() }, 502, "upstream_error", None),
        ];
        for (error, status, code, retry_after) in rows {
            let kind = format!("{error:?}");
            let (got_status, got_code, got_retry, body) = answer(error).await;
            assert_eq!(
                (got_status, got_code.as_str(), got_retry.as_deref()),
                (status, code, retry_after),
                "{kind}"
            );
            assert!(!body.contains("secret internals"), "{kind}: {body}");
            assert!(CODES.contains(&code));
        }
    }

    #[test]
    fn every_code_answered_is_listed() {
        let errors = [
            ApiError::bad_request("x"),
            ApiError::Unauthorized { presented: true },
            ApiError::MethodNotAllowed { method: "PUT".into(), path: "/v1".into() },
            ApiError::Forbidden { namespace: "n".into() },
            ApiError::RouteNotFound { path: "/".into() },
            ApiError::NamespaceNotFound { namespace: "n".into() },
            ApiError::KeyNotFound {
                key: "k".into(),
                namespace: "n".into(),
                revision: 1,
                hint: String::new(),
            },
            ApiError::Compacted { revision: 1, compact_revision: 2 },
            ApiError::EtcdCompacted,
            ApiError::FutureRevision { revision: 2, etcd_revision: 1 },
            ApiError::EtcdFutureRevision,
            ApiError::PageTokenExpired { revision: 1 },
            ApiError::Timeout { detail: "x".into() },
            ApiError::EtcdUnavailable { detail: "x" },
            ApiError::Upstream { detail: "x" },
            ApiError::TooLarge { detail: "x".into() },
            ApiError::TooManyWatchers {
                detail: "x".into(),
                callers_own: true,
                retry_after: Duration::from_secs(1),
            },
            ApiError::NotReady { namespaces: Vec::new() },
            ApiError::Internal("x".into()),
        ];
        for e in errors {
            assert!(CODES.contains(&e.problem().code), "{e:?}");
        }
    }
}
