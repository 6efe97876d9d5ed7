//! An SSE client for tests: events parsed by `eventsource-stream`, read with
//! a bound on the wait.

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// An open watch stream.
pub struct SseClient {
    /// Status of the response.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    task: JoinHandle<()>,
}

/// One received event, with its data parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// `event:` name.
    pub event: String,
    /// `id:` (empty when absent).
    pub id: String,
    /// `data:` as JSON.
    pub data: Value,
}

impl SseClient {
    /// Opens `url` with extra request headers.
    pub async fn open_with(url: &str, headers: &[(&str, &str)]) -> Self {
        let response = super::http::send(url, headers).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut stream = response.bytes_stream().eventsource();
            while let Some(item) = stream.next().await {
                if tx.send(item.map_err(|e| e.to_string())).is_err() {
                    return;
                }
            }
        });
        Self { status, headers, events, task }
    }

    /// Opens `url`.
    pub async fn open(url: &str) -> Self {
        Self::open_with(url, &[]).await
    }

    /// The next event (keep-alive comments are not events); `None` when the
    /// stream ended. Panics after `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<Received> {
        match tokio::time::timeout(timeout, self.events.recv()).await {
            Ok(Some(Ok(e))) => {
                let data = if e.data.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&e.data).expect("JSON data")
                };
                Some(Received { event: e.event, id: e.id, data })
            }
            Ok(Some(Err(e))) => panic!("stream error: {e}"),
            Ok(None) => None,
            Err(_) => panic!("no event within {timeout:?}"),
        }
    }

    /// The next event, within 20 s.
    pub async fn next(&mut self) -> Received {
        self.next_within(Duration::from_secs(20)).await.expect("the stream ended")
    }

    /// The next event that is not `progress`.
    pub async fn next_not_progress(&mut self) -> Received {
        loop {
            let e = self.next().await;
            if e.event != "progress" {
                return e;
            }
        }
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the raw body of `url` until `needle` has appeared (or 20 s pass).
pub async fn raw_until(url: &str, needle: &str) -> String {
    let mut response = reqwest::get(url).await.expect("GET");
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !text.contains(needle) {
        let chunk =
            tokio::time::timeout_at(deadline, response.chunk()).await.expect("in time").expect("body");
        let Some(chunk) = chunk else { break };
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}
