//! [`Pages`]: every page of a listing as a stream, each next page asked
//! for with the previous page's token, so all of them reflect the first
//! page's revision.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::stream::{self, BoxStream};

use crate::client::Client;
use crate::error::Result;
use crate::options::Range;
use crate::types::Page;

/// The pages of one listing, in order, all at one revision
/// ([`Client::list_all`]). A failed page ends the stream after its error.
pub struct Pages {
    inner: BoxStream<'static, Result<Page>>,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages").finish_non_exhaustive()
    }
}

/// Where a listing stands.
enum Next {
    /// The first page.
    First(Range),
    /// The page after this token.
    After(Range, String),
    /// Nothing more.
    Done,
}

impl Pages {
    pub(crate) fn new(client: Client, namespace: String, range: Range) -> Self {
        let inner = stream::unfold(Next::First(range), move |next| {
            let (client, namespace) = (client.clone(), namespace.clone());
            async move {
                let range = match next {
                    Next::Done => return None,
                    Next::First(range) => range,
                    Next::After(range, token) => range.page_token(token),
                };
                match client.list(&namespace, &range).await {
                    Ok(page) => {
                        let next = match &page.next_page_token {
                            Some(token) if !range.is_count_only() => Next::After(range, token.clone()),
                            _ => Next::Done,
                        };
                        Some((Ok(page), next))
                    }
                    Err(e) => Some((Err(e), Next::Done)),
                }
            }
        });
        Self { inner: Box::pin(inner) }
    }
}

impl Stream for Pages {
    type Item = Result<Page>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
