//! One SSE connection: the request (with `Last-Event-ID`), the status
//! check, and the body parsed into SSE blocks, with a bound on silence.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use reqwest::header::{ACCEPT, HeaderValue};
use sse_stream::{Sse, SseStream};

use crate::Revision;
use crate::client::{Client, error_of};
use crate::error::{Error, Result};

/// Why the body stopped before the parser saw its end.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    /// Nothing arrived for this long.
    #[error("no bytes for {0:?}")]
    Idle(Duration),
    /// The body broke off.
    #[error("{0}")]
    Broken(reqwest::Error),
}

/// An open watch stream.
pub(super) struct Connection {
    blocks: BoxStream<'static, Result<Sse, sse_stream::Error>>,
}

impl Connection {
    /// Opens `url`, resuming after `last_event_id` when given. An answer
    /// other than 200 is its [`Error`]; so is no answer within `idle`.
    pub(super) async fn open(
        client: &Client,
        url: &str,
        last_event_id: Option<Revision>,
        idle: Duration,
    ) -> Result<Self> {
        let mut request =
            client.request(url, false).header(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = match tokio::time::timeout(idle, request.send()).await {
            Err(_) => return Err(Error::Stalled(idle)),
            Ok(response) => response?,
        };
        if response.status() != reqwest::StatusCode::OK {
            return Err(error_of(response).await);
        }
        let body = stream::unfold(response, move |mut response| async move {
            match tokio::time::timeout(idle, response.chunk()).await {
                Err(_) => Some((Err(BodyError::Idle(idle)), response)),
                Ok(Ok(Some(chunk))) => Some((Ok::<Bytes, BodyError>(chunk), response)),
                Ok(Ok(None)) => None,
                Ok(Err(e)) => Some((Err(BodyError::Broken(e)), response)),
            }
        });
        Ok(Self { blocks: SseStream::from_bytes_stream(body).boxed() })
    }

    /// The next SSE block; `None` when the gateway ended the stream.
    pub(super) async fn next(&mut self) -> Result<Option<Sse>> {
        match self.blocks.next().await {
            None => Ok(None),
            Some(Ok(block)) => Ok(Some(block)),
            Some(Err(sse_stream::Error::Body(cause))) => Err(match cause.downcast::<BodyError>() {
                Ok(cause) => match *cause {
                    BodyError::Idle(idle) => Error::Stalled(idle),
                    BodyError::Broken(e) => e.into(),
                },
                Err(other) => Error::Protocol { status: Some(200), detail: other.to_string() },
            }),
            Some(Err(e)) => {
                Err(Error::Protocol { status: Some(200), detail: format!("malformed event stream: {e}") })
            }
        }
    }
}
