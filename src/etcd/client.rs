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

use crate::config::EtcdConfig;

/// A failed etcd call, classified once by gRPC code (STYLE.md rule 3).
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    /// The revision asked for has been compacted.
    #[error("revision has been compacted (etcd: {message})")]
    Compacted {
        /// etcd's message.
        message: String,
    },
    /// The revision asked for is newer than etcd's.
    #[error("revision is in the future (etcd: {message})")]
    FutureRevision {
        /// etcd's message.
        message: String,
    },
    /// etcd could not be reached or has no leader; worth retrying elsewhere.
    #[error("etcd unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
    },
    /// Any other failure (permission, invalid request, ...): retrying will not help.
    #[error("etcd request failed: {message}")]
    Failed {
        /// What failed.
        message: String,
    },
}

impl EtcdError {
    /// Whether another endpoint or a later attempt might succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

impl From<etcd_client::Error> for EtcdError {
    fn from(e: etcd_client::Error) -> Self {
        use etcd_client::Error as E;
        use tonic::Code;
        match e {
            E::GRpcStatus(status) => {
                let message = status.message().to_owned();
                match status.code() {
                    Code::OutOfRange if message.contains("future") => Self::FutureRevision { message },
                    Code::OutOfRange if message.contains("compacted") => Self::Compacted { message },
                    Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::Unknown
                    | Code::Cancelled
                    | Code::Aborted => {
                        Self::Unavailable { message: format!("{:?}: {message}", status.code()) }
                    }
                    code => Self::Failed { message: format!("{code:?}: {message}") },
                }
            }
            E::TransportError(_) | E::IoError(_) | E::WatchError(_) | E::EndpointError(_) => {
                Self::Unavailable { message: e.to_string() }
            }
            other => Self::Failed { message: other.to_string() },
        }
    }
}

/// Clients for every configured endpoint; cheap to clone.
#[derive(Clone)]
pub struct EtcdClient {
    endpoints: Arc<[(String, Client)]>,
    /// Largest response decoded (etcd-client's default of 4 MB fails large pages and catch-ups).
    max_message_bytes: usize,
    /// Index of the endpoint calls go to first; moves on transport failures.
    current: Arc<AtomicUsize>,
}

impl EtcdClient {
    /// Prepares one lazily connected client per endpoint (no request is made,
    /// unless etcd authentication needs a token).
    ///
    /// # Errors
    /// Invalid endpoint URLs, unreadable TLS files, or a failed authentication.
    pub async fn connect(config: &EtcdConfig) -> Result<Self, EtcdError> {
        let options = connect_options(config)?;
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            let client = Client::connect([endpoint.as_str()], Some(options.clone())).await?;
            endpoints.push((endpoint.clone(), client));
        }
        let max_message_bytes = usize::try_from(config.max_message_bytes.bytes()).unwrap_or(usize::MAX);
        Ok(Self { endpoints: endpoints.into(), current: Arc::new(AtomicUsize::new(0)), max_message_bytes })
    }

    /// The largest response a client decodes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// A range read with failover, decoding responses up to `max_message_bytes`.
    ///
    /// # Errors
    /// The classified etcd error of the last endpoint tried.
    pub async fn get(&self, key: Vec<u8>, options: GetOptions) -> Result<GetResponse, EtcdError> {
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
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, EtcdError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = None;
        for _ in 0..self.endpoints.len() {
            let (endpoint, client) = self.current();
            match call(client).await.map_err(EtcdError::from) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() => {
                    let endpoint = endpoint.to_owned();
                    self.fail_over(&endpoint);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| EtcdError::Unavailable { message: "no endpoints".into() }))
    }
}

fn connect_options(config: &EtcdConfig) -> Result<ConnectOptions, EtcdError> {
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
            std::fs::read(path)
                .map_err(|e| EtcdError::Failed { message: format!("reading {}: {e}", path.display()) })
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
    use super::*;

    fn classify(status: tonic::Status) -> EtcdError {
        EtcdError::from(etcd_client::Error::GRpcStatus(status))
    }

    #[test]
    fn errors_are_classified_by_grpc_code_and_message() {
        let compacted =
            classify(tonic::Status::out_of_range("etcdserver: mvcc: required revision has been compacted"));
        assert!(matches!(compacted, EtcdError::Compacted { .. }));
        let future =
            classify(tonic::Status::out_of_range("etcdserver: mvcc: required revision is a future revision"));
        assert!(matches!(future, EtcdError::FutureRevision { .. }));
        let too_large = classify(tonic::Status::out_of_range("Error, decoded message length too large"));
        assert!(matches!(too_large, EtcdError::Failed { .. }), "not a compaction: {too_large}");
        assert!(classify(tonic::Status::unavailable("no leader")).is_retryable());
        assert!(!classify(tonic::Status::permission_denied("denied")).is_retryable());
    }
}
