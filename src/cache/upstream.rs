//! [`UpstreamError`]: why the cache's source of truth (etcd) failed a
//! request, in the cache's own words.
//!
//! The etcd layer classifies each failure once, by gRPC code (STYLE.md rule
//! 3), into one of these kinds; the HTTP layer maps each kind to a status
//! and a stable code. The message is etcd's (or the transport's) own text:
//! it is logged in full and never sent to a client.

/// A failed request to etcd, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The revision asked for has been compacted in etcd.
    #[error("revision has been compacted (etcd: {message})")]
    Compacted {
        /// etcd's message (logged only).
        message: String,
    },
    /// The revision asked for is newer than etcd's.
    #[error("revision is in the future (etcd: {message})")]
    FutureRevision {
        /// etcd's message (logged only).
        message: String,
    },
    /// etcd could not be reached, has no leader, or dropped the connection:
    /// another endpoint or a later attempt may succeed.
    #[error("etcd unavailable: {message}")]
    Unavailable {
        /// What failed (logged only).
        message: String,
    },
    /// The request did not complete within its deadline; may succeed later.
    #[error("etcd request timed out: {message}")]
    Timeout {
        /// What failed (logged only).
        message: String,
    },
    /// etcd refused the gateway's own credentials (authentication failed,
    /// or the gateway's user lacks permission for the range): an operator
    /// must fix the gateway's etcd user, retrying will not help.
    #[error("etcd refused the gateway's credentials: {message}")]
    Denied {
        /// etcd's message (logged only).
        message: String,
    },
    /// etcd rejected the request as invalid.
    #[error("etcd rejected the request as invalid: {message}")]
    InvalidArgument {
        /// etcd's message (logged only).
        message: String,
    },
    /// The request or its answer exceeds a size limit (etcd's request limit,
    /// or the gateway's `etcd.max_message_bytes` for answers).
    #[error("etcd request or answer too large: {message}")]
    TooLarge {
        /// What was too large (logged only).
        message: String,
    },
    /// Anything else etcd answered with (an internal error, an unexpected
    /// answer); retrying will not help.
    #[error("etcd request failed: {message}")]
    Failed {
        /// What failed (logged only).
        message: String,
    },
}

impl UpstreamError {
    /// Whether another endpoint or a later attempt might succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Timeout { .. })
    }

    /// What went wrong in one sentence of ours, without etcd's text: safe
    /// to show to clients and in `/readyz`.
    pub fn summary(&self) -> &'static str {
        match self {
            Self::Compacted { .. } => "etcd compacted the revision asked for",
            Self::FutureRevision { .. } => "the revision asked for is in etcd's future",
            Self::Unavailable { .. } => "etcd is unavailable",
            Self::Timeout { .. } => "etcd did not answer in time",
            Self::Denied { .. } => "etcd refused the gateway's credentials",
            Self::InvalidArgument { .. } => "etcd rejected a request as invalid",
            Self::TooLarge { .. } => "an answer from etcd exceeds etcd.max_message_bytes",
            Self::Failed { .. } => "etcd failed a request",
        }
    }

    /// The full message, for logs.
    pub fn message(&self) -> &str {
        match self {
            Self::Compacted { message }
            | Self::FutureRevision { message }
            | Self::Unavailable { message }
            | Self::Timeout { message }
            | Self::Denied { message }
            | Self::InvalidArgument { message }
            | Self::TooLarge { message }
            | Self::Failed { message } => message,
        }
    }
}
