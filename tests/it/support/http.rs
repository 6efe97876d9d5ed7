//! A small HTTP client for tests: status, headers and body of a GET.

use reqwest::header::HeaderMap;
use serde_json::Value;

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.to_str().unwrap_or("<binary>")).unwrap_or("")
    }
}

/// Sends a GET of `url` with extra request headers.
pub async fn send(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// GETs `url` with extra request headers.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Reply {
    let response = send(url, headers).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    Reply { status, headers, body }
}

/// GETs `url`.
pub async fn get(url: &str) -> Reply {
    get_with(url, &[]).await
}
