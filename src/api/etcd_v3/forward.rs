//! Requests the cache cannot answer, passed to etcd's own JSON gateway
//! over HTTP and its answers relayed as they are (status, body, streams):
//! writes, lease calls and `/version`. What etcd answers is by definition
//! etcd's answer, byte for byte; the gateway only decides who may ask.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::error::{Code, EtcdError};
use crate::config::Config;

/// Largest answer read whole (`/version`): etcd's are a few dozen bytes.
const MAX_SMALL_ANSWER_BYTES: usize = 64 * 1024;

/// HTTP client of etcd's JSON gateway on every configured endpoint.
#[derive(Clone)]
pub struct Forwarder {
    client: Client<HttpConnector, Body>,
    /// Endpoint URLs without a trailing `/`, in configuration order.
    endpoints: Arc<[String]>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("endpoints", &self.endpoints).finish_non_exhaustive()
    }
}

impl Forwarder {
    /// A forwarder to `config.etcd.endpoints`.
    pub fn new(config: &Config) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.etcd.connect_timeout.get()));
        connector.set_nodelay(true);
        let client =
            Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        let endpoints = config.etcd.endpoints.iter().map(|e| e.trim_end_matches('/').to_owned()).collect();
        Self { client, endpoints }
    }

    /// Sends `method path` with `body` to the first endpoint that accepts a
    /// connection, and relays etcd's answer: status, `Content-Type`, and
    /// the body as it streams (a lease keep-alive is a stream).
    ///
    /// # Errors
    /// 503 / 14 when no endpoint could be reached.
    pub async fn send(&self, method: Method, path: &str, body: Bytes) -> Result<Response, EtcdError> {
        let mut last = String::from("no etcd endpoint configured");
        for endpoint in self.endpoints.iter() {
            let request = Request::builder()
                .method(method.clone())
                .uri(format!("{endpoint}{path}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.clone()))
                .map_err(|e| EtcdError::invalid(e.to_string()))?;
            match self.client.request(request).await {
                Ok(answer) => {
                    let (parts, incoming) = answer.into_parts();
                    let mut response = Response::new(Body::new(incoming));
                    *response.status_mut() = parts.status;
                    if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE) {
                        response.headers_mut().insert(header::CONTENT_TYPE, content_type.clone());
                    }
                    // A stream must reach the client message by message:
                    // the gateway's gzip would hold it back.
                    response
                        .headers_mut()
                        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("identity"));
                    return Ok(response);
                }
                Err(e) => {
                    tracing::warn!(endpoint, error = %e, "forwarding to etcd failed; trying the next endpoint");
                    last = e.to_string();
                }
            }
        }
        Err(EtcdError::new(Code::Unavailable, format!("etcdserver: etcd unreachable: {last}")))
    }

    /// `GET path` of etcd, its body when etcd answers 200.
    ///
    /// # Errors
    /// 503 / 14 when etcd cannot be reached or does not answer 200.
    pub async fn get(&self, path: &str) -> Result<Bytes, EtcdError> {
        let response = self.send(Method::GET, path, Bytes::new()).await?;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), MAX_SMALL_ANSWER_BYTES).await;
        match body {
            Ok(body) if status == StatusCode::OK => Ok(body),
            _ => Err(EtcdError::new(
                Code::Unavailable,
                format!("etcdserver: etcd answered {path} with {status}"),
            )),
        }
    }
}
