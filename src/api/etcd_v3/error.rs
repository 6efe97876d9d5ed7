//! etcd's error shape: the HTTP status grpc-gateway derives from the gRPC
//! code, and the body `{"error","message","code"}` with the same text in
//! `error` and `message`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::cache::{ReadError, UpstreamError};

/// gRPC codes etcd answers with (the subset this surface uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 3: a malformed request.
    InvalidArgument = 3,
    /// 4: the request did not complete in time.
    DeadlineExceeded = 4,
    /// 7: the caller may not do this.
    PermissionDenied = 7,
    /// 8: too many watches.
    ResourceExhausted = 8,
    /// 9: the operation needs a state the server is not in.
    FailedPrecondition = 9,
    /// 11: a compacted or future revision.
    OutOfRange = 11,
    /// 14: etcd cannot be reached.
    Unavailable = 14,
    /// 16: no valid token.
    Unauthenticated = 16,
}

impl Code {
    /// The HTTP status etcd 3.4's grpc-gateway answers for the code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidArgument | Self::OutOfRange => StatusCode::BAD_REQUEST,
            // etcd 3.4's grpc-gateway (v1); 3.5's answers 400.
            Self::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
            Self::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }
}

/// etcd's message for a read below its compaction revision.
pub const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
/// etcd's message for a read beyond its current revision.
pub const FUTURE_REVISION: &str = "etcdserver: mvcc: required revision is a future revision";
/// etcd's message for a refused request.
pub const PERMISSION_DENIED: &str = "etcdserver: permission denied";

/// An error of the etcd JSON API, rendered as etcd renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdError {
    /// The gRPC code.
    pub code: Code,
    /// etcd's message, or ours in etcd's style.
    pub message: String,
}

impl EtcdError {
    /// An error with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// 400 / 3 with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    /// 403 / 7: etcd's text, then what was refused.
    pub fn denied(what: impl std::fmt::Display) -> Self {
        Self::new(Code::PermissionDenied, format!("{PERMISSION_DENIED}: {what}"))
    }

    /// 401 / 16: no valid token.
    pub fn unauthenticated() -> Self {
        Self::new(Code::Unauthenticated, "etcdserver: invalid auth token")
    }
}

impl From<UpstreamError> for EtcdError {
    fn from(e: UpstreamError) -> Self {
        tracing::warn!(error = %e, "etcd request of the etcd JSON API failed");
        match e {
            UpstreamError::Compacted { .. } => Self::new(Code::OutOfRange, COMPACTED),
            UpstreamError::FutureRevision { .. } => Self::new(Code::OutOfRange, FUTURE_REVISION),
            UpstreamError::InvalidArgument { message } => Self::invalid(message),
            UpstreamError::TooLarge { .. } => Self::invalid("etcdserver: request is too large"),
            UpstreamError::Timeout { .. } => Self::new(Code::DeadlineExceeded, "context deadline exceeded"),
            other => Self::new(Code::Unavailable, other.summary()),
        }
    }
}

impl From<ReadError> for EtcdError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Compacted { .. } => Self::new(Code::OutOfRange, COMPACTED),
            ReadError::FutureRevision { .. } => Self::new(Code::OutOfRange, FUTURE_REVISION),
            ReadError::Upstream(e) => e.into(),
            ReadError::Timeout { .. } => Self::new(Code::DeadlineExceeded, "context deadline exceeded"),
            ReadError::NotReady | ReadError::WatchDown => {
                Self::new(Code::Unavailable, "etcdserver: the gateway's cache of this range is not available")
            }
        }
    }
}

/// The body, members in grpc-gateway's order.
#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
    code: i32,
}

impl EtcdError {
    /// The body as JSON bytes.
    pub fn body(&self) -> Vec<u8> {
        let body = Body { error: &self.message, message: &self.message, code: self.code as i32 };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl IntoResponse for EtcdError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), self.body()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_render_as_grpc_gateway_does() {
        let e = EtcdError::invalid("etcdserver: key is not provided");
        assert_eq!(
            String::from_utf8(e.body()).unwrap(),
            r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#
        );
        assert_eq!(e.code.status(), StatusCode::BAD_REQUEST);
        assert_eq!(EtcdError::unauthenticated().code.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(EtcdError::denied("x").code.status(), StatusCode::FORBIDDEN);
        let compacted = EtcdError::from(ReadError::Compacted { revision: 3, compact_revision: 5 });
        assert_eq!((compacted.code, compacted.message.as_str()), (Code::OutOfRange, COMPACTED));
    }
}
