//! [`ApiError`]: the one place where failures become HTTP answers.
//!
//! Modules return small error enums with facts; handlers convert them into an
//! `ApiError`, which renders RFC 9457 `application/problem+json` with a stable
//! snake_case `code` (the codes are listed in API.md). Causes are logged here,
//! never sent to the client.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cache::ReadError;
use crate::etcd::EtcdError;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything that can go wrong in a request, as the client should learn it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter, header or path segment is malformed; `detail` names it.
    #[error("{detail}")]
    BadRequest {
        /// What is wrong, naming the parameter.
        detail: String,
    },
    /// No valid token was presented.
    #[error("a valid bearer token is required")]
    Unauthorized,
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
    #[error("key not found at revision {revision}")]
    KeyNotFound {
        /// Revision the answer reflects.
        revision: i64,
    },
    /// The revision asked for is older than the oldest one available.
    #[error("revision {revision} has been compacted; the oldest available is {compact_revision}")]
    Compacted {
        /// The revision asked for.
        revision: i64,
        /// The oldest revision still available.
        compact_revision: i64,
    },
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
    /// etcd could not be reached for a request that needs it.
    #[error("etcd is unavailable: {detail}")]
    EtcdUnavailable {
        /// What failed (no internals).
        detail: String,
    },
    /// A watch subscriber limit is reached.
    #[error("{detail}")]
    TooManyWatchers {
        /// Which limit.
        detail: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// The gateway has not finished its first sync.
    #[error("not ready")]
    NotReady {
        /// Per-namespace state, shown to the client.
        namespaces: Value,
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
            Self::BadRequest { .. } | Self::FutureRevision { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::RouteNotFound { .. } | Self::NamespaceNotFound { .. } | Self::KeyNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            Self::Compacted { .. } | Self::PageTokenExpired { .. } => StatusCode::GONE,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
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
            Self::Unauthorized => ("unauthorized", "Unauthorized"),
            Self::Forbidden { .. } => ("forbidden", "Forbidden"),
            Self::RouteNotFound { .. } => ("not_found", "Not found"),
            Self::NamespaceNotFound { .. } => ("namespace_not_found", "Namespace not found"),
            Self::KeyNotFound { .. } => ("key_not_found", "Key not found"),
            Self::Compacted { .. } => ("compacted", "Revision compacted"),
            Self::FutureRevision { .. } => ("future_revision", "Future revision"),
            Self::PageTokenExpired { .. } => ("page_token_expired", "Page token expired"),
            Self::Timeout { .. } => ("timeout", "Timeout"),
            Self::EtcdUnavailable { .. } => ("etcd_unavailable", "etcd unavailable"),
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
            Self::KeyNotFound { revision } => problem.with("revision", *revision),
            Self::Compacted { compact_revision, .. } => problem.with("compact_revision", *compact_revision),
            Self::FutureRevision { etcd_revision, .. } => problem.with("etcd_revision", *etcd_revision),
            Self::NotReady { namespaces } => problem.with("namespaces", namespaces.clone()),
            _ => problem,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = %cause, "internal error");
        }
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match &self {
            Self::TooManyWatchers { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            Self::Unauthorized => {
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
            ReadError::NotReady => Self::NotReady { namespaces: Value::Null },
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
            ReadError::Etcd(e) => Self::from(e),
        }
    }
}

impl From<EtcdError> for ApiError {
    fn from(e: EtcdError) -> Self {
        tracing::warn!(error = %e, "etcd request failed");
        Self::EtcdUnavailable { detail: e.to_string() }
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
        let r = ApiError::TooManyWatchers { detail: "cap".into(), retry_after: Duration::from_secs(5) }
            .into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
