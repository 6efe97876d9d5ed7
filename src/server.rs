//! The HTTP/1.1 server loop: accept, serve each connection on its own task
//! (after a TLS handshake when `[http.tls]` is set), and on shutdown stop
//! accepting and let open connections finish.
//!
//! HTTP/1.1 only, on purpose: an HTTP/1-only connection task is far smaller
//! than one that can also become HTTP/2, which matters with ten thousand
//! idle watch streams. Over TLS the server offers only `http/1.1` by ALPN,
//! so clients that prefer HTTP/2 (kubectl, client-go) settle on HTTP/1.1.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::ServerTlsConfig;

/// Pause after a failed accept (e.g. out of file descriptors) so the loop
/// does not spin while the condition lasts.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Bound on reading a request's headers, and on a TLS handshake: a client
/// that opens a connection and sends nothing holds no resources for long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the TLS certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("http.tls: {0}")]
pub struct TlsError(String);

/// The TLS acceptor of `[http.tls]`: the certificate chain and key read
/// from their PEM files, TLS 1.2 and 1.3 with rustls' safe defaults (ring
/// provider), ALPN `http/1.1`.
///
/// # Errors
/// [`TlsError`] naming the file that cannot be read or parsed, or a key
/// that does not match.
pub fn tls_acceptor(config: &ServerTlsConfig) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert_file)
        .and_then(Iterator::collect)
        .map_err(|e| TlsError(format!("cert_file {}: {e}", config.cert_file.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("cert_file {}: no certificate in it", config.cert_file.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key_file)
        .map_err(|e| TlsError(format!("key_file {}: {e}", config.key_file.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(format!("cert_file and key_file: {e}")))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown`,
/// then waits for open connections to end (callers bound that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // The peer's address reaches handlers and logs as axum's ConnectInfo.
        let service = tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                request
            },
        );
        let service = TowerToHyperService::new(service);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        // The handshake runs on the connection's task: a slow client never
        // holds up the accept loop.
        tokio::spawn(async move {
            let result = match tls {
                None => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %peer, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
