//! Connections to etcd, with failover across the configured endpoints.
//!
//! etcd-client balances several endpoints with no health checking, so a dead
//! member keeps being picked (NOTES.md). We hold one lazily connected
//! [`Client`] per endpoint instead and move to the next endpoint when a call
//! fails with a transport-level error: failover is explicit and observable.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, GetResponse, Identity, TlsOptions};

use crate::cache::UpstreamError;
use crate::config::EtcdConfig;

/// Why the etcd client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A TLS file could not be read.
    #[error("reading {path}: {error}")]
    ReadFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// etcd-client refused the settings or the authentication failed.
    #[error(transparent)]
    Client(#[from] UpstreamError),
}

/// Classifies a failed etcd call, once, by gRPC code (STYLE.md rule 3).
pub fn classify(e: etcd_client::Error) -> UpstreamError {
    use etcd_client::Error as E;
    use tonic::Code;
    match e {
        E::GRpcStatus(status) => {
            let text = status.message();
            let message = format!("{:?}: {text}", status.code());
            match status.code() {
                Code::OutOfRange if text.contains("compacted") => UpstreamError::Compacted { message },
                Code::OutOfRange if text.contains("future") => UpstreamError::FutureRevision { message },
                // tonic's own limit on decoded (and encoded) messages.
                Code::OutOfRange if text.contains("too large") => UpstreamError::TooLarge { message },
                Code::InvalidArgument if text.contains("too large") => UpstreamError::TooLarge { message },
                Code::InvalidArgument | Code::OutOfRange => UpstreamError::InvalidArgument { message },
                // tonic's own request timeout (etcd.request_timeout) is a Cancelled "Timeout expired".
                Code::DeadlineExceeded => UpstreamError::Timeout { message },
                Code::Cancelled if text.contains("Timeout expired") => UpstreamError::Timeout { message },
                // ResourceExhausted is etcd's "too many requests": try again later.
                Code::Unavailable
                | Code::Unknown
                | Code::Cancelled
                | Code::Aborted
                | Code::ResourceExhausted => UpstreamError::Unavailable { message },
                Code::PermissionDenied | Code::Unauthenticated => UpstreamError::Denied { message },
                _ => UpstreamError::Failed { message },
            }
        }
        E::TransportError(_) | E::IoError(_) | E::WatchError(_) | E::EndpointError(_) => {
            UpstreamError::Unavailable { message: e.to_string() }
        }
        other => UpstreamError::Failed { message: other.to_string() },
    }
}

/// Clients for every configured endpoint; cheap to clone.
#[derive(Clone)]
pub struct EtcdClient {
    endpoints: Arc<[(String, Client)]>,
    /// Largest response decoded (etcd-client's default of 4 MB fails large pages and catch-ups).
    max_message_bytes: usize,
    /// Bound on one unary request (etcd-client applies it to each call; a
    /// caller that waits on a stream applies it itself).
    request_timeout: std::time::Duration,
    /// Index of the endpoint calls go to first; moves on transport failures.
    current: Arc<AtomicUsize>,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoints: Vec<&str> = self.endpoints.iter().map(|(e, _)| e.as_str()).collect();
        f.debug_struct("EtcdClient").field("endpoints", &endpoints).finish_non_exhaustive()
    }
}

impl EtcdClient {
    /// Prepares one lazily connected client per endpoint (no request is made,
    /// unless etcd authentication needs a token).
    ///
    /// # Errors
    /// Invalid endpoint URLs, unreadable TLS files, or a failed authentication.
    pub async fn connect(config: &EtcdConfig) -> Result<Self, SetupError> {
        let options = connect_options(config)?;
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            let client =
                Client::connect([endpoint.as_str()], Some(options.clone())).await.map_err(classify)?;
            endpoints.push((endpoint.clone(), client));
        }
        let max_message_bytes = usize::try_from(config.max_message_bytes.bytes()).unwrap_or(usize::MAX);
        Ok(Self {
            endpoints: endpoints.into(),
            current: Arc::new(AtomicUsize::new(0)),
            max_message_bytes,
            request_timeout: config.request_timeout.get(),
        })
    }

    /// The largest response a client decodes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// The bound on one request (`etcd.request_timeout`).
    pub fn request_timeout(&self) -> std::time::Duration {
        self.request_timeout
    }

    /// A range read with failover, decoding responses up to `max_message_bytes`.
    ///
    /// # Errors
    /// The classified etcd error of the last endpoint tried.
    pub async fn get(&self, key: Vec<u8>, options: GetOptions) -> Result<GetResponse, UpstreamError> {
        let max = self.max_message_bytes;
        self.call(|client| {
            let (key, options) = (key.clone(), options.clone());
            async move { client.kv_client().max_decoding_message_size(max).get(key, Some(options)).await }
        })
        .await
    }

    /// The endpoint and a client for it that calls should use now.
    pub fn current(&self) -> (&str, Client) {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        let (endpoint, client) = &self.endpoints[i];
        (endpoint, client.clone())
    }

    /// Marks the current endpoint as failed so the next call uses the next one.
    pub fn fail_over(&self, failed_endpoint: &str) {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        if self.endpoints[i].0 == failed_endpoint {
            let _ = self.current.compare_exchange(
                i,
                (i + 1) % self.endpoints.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            tracing::warn!(failed = failed_endpoint, next = %self.endpoints[(i + 1) % self.endpoints.len()].0, "etcd endpoint failed; failing over");
        }
    }

    /// Runs `call` against the current endpoint; on a retryable failure moves
    /// to the next endpoint and tries again, once per endpoint.
    ///
    /// # Errors
    /// The last endpoint's error, or the first non-retryable one.
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, UpstreamError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = None;
        for _ in 0..self.endpoints.len() {
            let (endpoint, client) = self.current();
            match call(client).await.map_err(classify) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() => {
                    let endpoint = endpoint.to_owned();
                    self.fail_over(&endpoint);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| UpstreamError::Unavailable { message: "no endpoints".into() }))
    }
}

fn connect_options(config: &EtcdConfig) -> Result<ConnectOptions, SetupError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(config.connect_timeout.get())
        .with_timeout(config.request_timeout.get())
        .with_keep_alive(config.keep_alive_interval.get(), config.keep_alive_timeout.get())
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        options = options.with_user(user.clone(), password.clone());
    }
    if let Some(tls) = &config.tls {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|error| SetupError::ReadFile { path: path.to_owned(), error })
        };
        let mut t = TlsOptions::new();
        if let Some(ca) = &tls.ca_file {
            t = t.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            t = t.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(domain) = &tls.domain {
            t = t.domain_name(domain.clone());
        }
        options = options.with_tls(t);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};

    use super::*;

    fn kind(code: Code, message: &str) -> UpstreamError {
        classify(etcd_client::Error::GRpcStatus(Status::new(code, message)))
    }

    #[test]
    fn every_grpc_code_etcd_answers_has_a_kind() {
        use UpstreamError as U;
        let m = |message: &str| message.to_owned();
        let cases = [
            (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
                U::Compacted {
                    message: m("OutOfRange: etcdserver: mvcc: required revision has been compacted"),
                },
            ),
            (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
                U::FutureRevision {
                    message: m("OutOfRange: etcdserver: mvcc: required revision is a future revision"),
                },
            ),
            (
                Code::OutOfRange,
                "Error, decoded message length too large",
                U::TooLarge { message: m("OutOfRange: Error, decoded message length too large") },
            ),
            (
                Code::InvalidArgument,
                "etcdserver: request is too large",
                U::TooLarge { message: m("InvalidArgument: etcdserver: request is too large") },
            ),
            (
                Code::InvalidArgument,
                "etcdserver: key is not provided",
                U::InvalidArgument { message: m("InvalidArgument: etcdserver: key is not provided") },
            ),
            (
                Code::DeadlineExceeded,
                "context deadline exceeded",
                U::Timeout { message: m("DeadlineExceeded: context deadline exceeded") },
            ),
            (Code::Cancelled, "Timeout expired", U::Timeout { message: m("Cancelled: Timeout expired") }),
            (
                Code::Unavailable,
                "etcdserver: no leader",
                U::Unavailable { message: m("Unavailable: etcdserver: no leader") },
            ),
            (
                Code::ResourceExhausted,
                "etcdserver: too many requests",
                U::Unavailable { message: m("ResourceExhausted: etcdserver: too many requests") },
            ),
            (
                Code::PermissionDenied,
                "etcdserver: permission denied",
                U::Denied { message: m("PermissionDenied: etcdserver: permission denied") },
            ),
            (
                Code::Unauthenticated,
                "etcdserver: invalid auth token",
                U::Denied { message: m("Unauthenticated: etcdserver: invalid auth token") },
            ),
            (Code::Internal, "boom", U::Failed { message: m("Internal: boom") }),
        ];
        for (code, message, expected) in cases {
            assert_eq!(kind(code, message), expected, "{code:?} {message}");
        }
        assert!(kind(Code::Unavailable, "x").is_retryable());
        assert!(kind(Code::DeadlineExceeded, "x").is_retryable());
        assert!(!kind(Code::PermissionDenied, "x").is_retryable());
    }
}
