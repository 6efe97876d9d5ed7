//! [`Client`]: the connection settings, and the one-shot reads of API.md
//! (namespaces, one key, one page of a listing), each answer decoded into
//! its type and each failure into [`Error`].

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::Revision;
use crate::error::{Error, Problem, Result};
use crate::mirror::{Mirror, MirrorOptions};
use crate::options::{GetOptions, Query, Range, segment};
use crate::paging::Pages;
use crate::types::{
    CacheStatus, CommonPrefix, Conditional, Got, KeyValue, NamespaceInfo, Page, Raw, WirePage,
};
use crate::watch::{Selection, Watch, WatchOptions};

/// Default bound on one read (not on watch streams): above the gateway's
/// own waits (`wait_timeout`, `consistent_read_timeout`, 5 s and 3 s by
/// default), so the gateway's `timeout` answer arrives before ours fires.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default bound on establishing a TCP (and TLS) connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// TCP keep-alive probes on every connection, so a peer that vanished
/// without closing is noticed by the kernel too.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Longest excerpt of a non-problem error body kept in [`Error::Protocol`].
const BODY_EXCERPT: usize = 200;

/// A handle on one gateway: cheap to clone, shareable across tasks (clones
/// share one connection pool).
///
/// ```
/// use std::time::Duration;
/// use etcd_cache_gateway_client::Client;
///
/// let client = Client::builder("https://gateway.example:8080")
///     .bearer_token("s3cret")
///     .timeout(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// assert_eq!(client.base_url(), "https://gateway.example:8080");
/// assert!(Client::new("not a url").is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Scheme, host and optional path prefix, without a trailing `/`.
    base: String,
    http: reqwest::Client,
    /// `Bearer <token>`, marked sensitive (never logged by reqwest).
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

/// Settings of a [`Client`]: the token, the timeouts, or an HTTP client of
/// your own (for proxies, extra root certificates, client certificates).
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder {
    base_url: String,
    token: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    http: Option<reqwest::Client>,
}

impl ClientBuilder {
    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Bound on each read (default [`DEFAULT_TIMEOUT`]); watch streams are
    /// bounded by [`WatchOptions::idle_timeout`] instead.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bound on connecting (default [`DEFAULT_CONNECT_TIMEOUT`]); ignored
    /// with [`ClientBuilder::http_client`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Uses this HTTP client instead of the default one (rustls with the
    /// platform's trust store, HTTP/1.1 so each watch stream is its own
    /// connection and can land on another gateway replica). The client's
    /// own timeouts and token still apply.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The client.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a base URL that is not `http(s)://...`
    /// or a token that cannot be a header; [`Error::Transport`] when the
    /// TLS setup fails.
    pub fn build(self) -> Result<Client> {
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| Error::InvalidArgument(format!("base URL {:?}: {e}", self.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
            return Err(Error::InvalidArgument(format!(
                "base URL {:?} must be http:// or https://, without a query",
                self.base_url
            )));
        }
        let authorization = self
            .token
            .map(|token| {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| Error::InvalidArgument("the token must be visible ASCII".into()))?;
                value.set_sensitive(true);
                Ok::<_, Error>(value)
            })
            .transpose()?;
        let http = match self.http {
            Some(http) => http,
            None => default_http(self.connect_timeout)?,
        };
        let base = url.as_str().trim_end_matches('/').to_owned();
        Ok(Client { inner: Arc::new(Inner { base, http, authorization, timeout: self.timeout }) })
    }
}

/// reqwest over rustls (reqwest's default provider, the platform's trust
/// store), HTTP/1.1 only.
fn default_http(connect_timeout: Duration) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .http1_only()
        .connect_timeout(connect_timeout)
        .tcp_keepalive(TCP_KEEPALIVE)
        .user_agent(concat!("etcd-cache-gateway-client/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// What the cache headers of an answer say.
struct Answer {
    revision: Option<Revision>,
    etag: String,
    cache: CacheStatus,
}

impl Answer {
    fn of(headers: &HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let cache = match text("x-cache-status").as_deref() {
            Some("stale") => CacheStatus::Stale,
            _ => CacheStatus::Fresh,
        };
        Self {
            revision: text("x-etcd-revision").and_then(|r| r.parse().ok()),
            etag: text("etag").unwrap_or_default(),
            cache,
        }
    }
}

impl Client {
    /// A client of the gateway at `base_url` (e.g. `http://127.0.0.1:8080`,
    /// or with a path prefix behind a proxy), with default settings.
    ///
    /// # Errors
    /// As [`ClientBuilder::build`].
    pub fn new(base_url: impl Into<String>) -> Result<Self> {
        Self::builder(base_url).build()
    }

    /// Settings for a client of the gateway at `base_url`.
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            token: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            http: None,
        }
    }

    /// The gateway's base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// `base_url` + `/v1/namespaces/{ns}/{rest}` + `?query`.
    pub(crate) fn url(&self, namespace: &str, rest: &str, query: &str) -> String {
        let mut url = format!("{}/v1/namespaces/{}/{rest}", self.inner.base, segment(namespace));
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// A GET of `url` with the token and `headers`; `unary` requests are
    /// bounded by the client's timeout (streams are not).
    pub(crate) fn request(&self, url: &str, unary: bool) -> reqwest::RequestBuilder {
        let mut request = self.inner.http.get(url);
        if let Some(authorization) = &self.inner.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        if unary {
            request = request.timeout(self.inner.timeout);
        }
        request
    }

    /// Sends a read; answers other than 2xx and 304 become their [`Error`].
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = request.send().await?;
        if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
            Ok(response)
        } else {
            Err(error_of(response).await)
        }
    }

    /// The namespaces this client may read, with the state of their caches.
    ///
    /// # Errors
    /// [`Error::Unauthorized`] without a valid token, transport errors.
    pub async fn namespaces(&self) -> Result<Vec<NamespaceInfo>> {
        #[derive(Deserialize)]
        struct Body {
            namespaces: Vec<NamespaceInfo>,
        }
        let url = format!("{}/v1/namespaces", self.inner.base);
        let response = self.send(self.request(&url, true)).await?;
        Ok(json::<Body>(response).await?.namespaces)
    }

    /// One namespace, with the state of its cache.
    ///
    /// # Errors
    /// [`Error::NamespaceNotFound`], [`Error::Forbidden`], ...
    pub async fn namespace(&self, namespace: &str) -> Result<NamespaceInfo> {
        let url = format!("{}/v1/namespaces/{}", self.inner.base, segment(namespace));
        json(self.send(self.request(&url, true)).await?).await
    }

    /// Reads `key` from the cache's current state.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`] (with the revision it is absent at),
    /// [`Error::NamespaceNotFound`], ...
    ///
    /// ```no_run
    /// # async fn example() -> etcd_cache_gateway_client::Result<()> {
    /// use etcd_cache_gateway_client::{Client, Error};
    ///
    /// let client = Client::new("http://127.0.0.1:8080")?;
    /// match client.get("apps", "config/log-level").await {
    ///     Ok(got) => println!("{:?} at revision {}", got.kv.value_str(), got.revision),
    ///     Err(Error::KeyNotFound { revision, .. }) => println!("absent at {revision}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get(&self, namespace: &str, key: impl AsRef<[u8]>) -> Result<Got> {
        self.get_with(namespace, key, &GetOptions::default()).await
    }

    /// Reads `key` with options: encoding, and which state (`consistent`,
    /// `min_revision` for reading your own write, `revision`).
    ///
    /// # Errors
    /// As [`Client::get`]; also [`Error::Compacted`], [`Error::FutureRevision`],
    /// [`Error::Timeout`] for the consistency options.
    pub async fn get_with(
        &self,
        namespace: &str,
        key: impl AsRef<[u8]>,
        options: &GetOptions,
    ) -> Result<Got> {
        let url = self.key_url(namespace, key.as_ref(), options, false);
        let response = self.send(self.request(&url, true)).await?;
        got(response).await
    }

    /// Reads `key` unless its ETag is still `etag` (from an earlier
    /// [`Got::etag`]): a 304 costs no body.
    ///
    /// # Errors
    /// As [`Client::get_with`].
    ///
    /// ```no_run
    /// # async fn example(client: etcd_cache_gateway_client::Client) -> etcd_cache_gateway_client::Result<()> {
    /// use etcd_cache_gateway_client::{Conditional, GetOptions};
    ///
    /// let first = client.get("apps", "config/log-level").await?;
    /// match client.get_if_none_match("apps", "config/log-level", &GetOptions::new(), &first.etag).await? {
    ///     Conditional::Modified(got) => println!("now {:?}", got.kv.value_str()),
    ///     Conditional::NotModified { .. } => println!("unchanged"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_if_none_match(
        &self,
        namespace: &str,
        key: impl AsRef<[u8]>,
        options: &GetOptions,
        etag: &str,
    ) -> Result<Conditional<Got>> {
        let url = self.key_url(namespace, key.as_ref(), options, false);
        let request = self.request(&url, true).header(header::IF_NONE_MATCH, etag);
        let response = self.send(request).await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Conditional::NotModified { revision: Answer::of(response.headers()).revision });
        }
        Ok(Conditional::Modified(got(response).await?))
    }

    /// The bare value of `key` (`raw=true`): the bytes as stored, with the
    /// content type the gateway chose.
    ///
    /// # Errors
    /// As [`Client::get_with`].
    pub async fn get_raw(&self, namespace: &str, key: impl AsRef<[u8]>, options: &GetOptions) -> Result<Raw> {
        let url = self.key_url(namespace, key.as_ref(), options, true);
        let response = self.send(self.request(&url, true)).await?;
        let answer = Answer::of(response.headers());
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response.bytes().await?;
        Ok(Raw {
            revision: answer.revision.unwrap_or_default(),
            bytes,
            content_type,
            etag: answer.etag,
            cache: answer.cache,
        })
    }

    /// The URL of a one-key read: the key as a query parameter, which
    /// carries any bytes (a key in the path would be normalised by URL
    /// parsers when it has `.` or `..` segments).
    fn key_url(&self, namespace: &str, key: &[u8], options: &GetOptions, raw: bool) -> String {
        let mut query = Query::default();
        query.push("key", key);
        options.add_to(&mut query);
        query.flag("raw", raw);
        self.url(namespace, "kv", &query.finish())
    }

    /// One page of a listing.
    ///
    /// # Errors
    /// [`Error::BadRequest`] naming a bad option or combination,
    /// [`Error::PageTokenExpired`], [`Error::Compacted`], ...
    ///
    /// ```no_run
    /// # async fn example(client: etcd_cache_gateway_client::Client) -> etcd_cache_gateway_client::Result<()> {
    /// use etcd_cache_gateway_client::Range;
    ///
    /// let page = client.list("apps", &Range::prefix("services/").filter("tier==web")).await?;
    /// for kv in &page.kvs {
    ///     println!("{:?} = {:?}", kv.key_str(), kv.value_str());
    /// }
    /// println!("{} keys match at revision {}", page.count, page.revision);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list(&self, namespace: &str, range: &Range) -> Result<Page> {
        let url = self.url(namespace, "kv", &range.query());
        page(self.send(self.request(&url, true)).await?).await
    }

    /// A listing unless nothing in the namespace changed since `etag` (from
    /// an earlier [`Page::etag`]).
    ///
    /// # Errors
    /// As [`Client::list`].
    pub async fn list_if_none_match(
        &self,
        namespace: &str,
        range: &Range,
        etag: &str,
    ) -> Result<Conditional<Page>> {
        let url = self.url(namespace, "kv", &range.query());
        let response = self.send(self.request(&url, true).header(header::IF_NONE_MATCH, etag)).await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Conditional::NotModified { revision: Answer::of(response.headers()).revision });
        }
        Ok(Conditional::Modified(page(response).await?))
    }

    /// Every page of a listing, as a stream: the first page at the
    /// range's consistency, every later one at the first page's revision
    /// (the gateway pins it in the page token), so the pages together are
    /// one consistent state.
    ///
    /// ```no_run
    /// # async fn example(client: etcd_cache_gateway_client::Client) -> etcd_cache_gateway_client::Result<()> {
    /// use futures_util::TryStreamExt;
    /// use etcd_cache_gateway_client::Range;
    ///
    /// let pages: Vec<_> = client.list_all("apps", Range::prefix("services/").limit(500)).try_collect().await?;
    /// let keys: usize = pages.iter().map(|p| p.kvs.len()).sum();
    /// println!("{keys} keys at revision {}", pages[0].revision);
    /// # Ok(())
    /// # }
    /// ```
    pub fn list_all(&self, namespace: &str, range: Range) -> Pages {
        Pages::new(self.clone(), namespace.to_owned(), range)
    }

    /// Watches `selection`: a [`Watch`] stream of typed events that
    /// reconnects by itself and resumes where it stopped. Nothing is sent
    /// until the stream is first polled.
    ///
    /// ```no_run
    /// # async fn example(client: etcd_cache_gateway_client::Client) -> etcd_cache_gateway_client::Result<()> {
    /// use futures_util::StreamExt;
    /// use etcd_cache_gateway_client::{Event, Selection, WatchEvent, WatchOptions};
    ///
    /// // Resume after the last revision this program processed.
    /// let mut watch = client.watch("apps", Selection::key("config/log-level"), WatchOptions::new().since(41));
    /// while let Some(event) = watch.next().await {
    ///     if let WatchEvent::Change { events, .. } = event? {
    ///         for event in events {
    ///             if let Event::Put { kv, .. } = event {
    ///                 println!("log level now {:?}", kv.value_str());
    ///             }
    ///         }
    ///     }
    ///     // Persist watch.last_event_id() to resume from there after a restart.
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn watch(&self, namespace: &str, selection: Selection, options: WatchOptions) -> Watch {
        Watch::new(self.clone(), namespace, selection, options)
    }

    /// Starts a [`Mirror`]: a local copy of `selection` kept in sync.
    ///
    /// ```no_run
    /// # async fn example(client: etcd_cache_gateway_client::Client) -> etcd_cache_gateway_client::Result<()> {
    /// use etcd_cache_gateway_client::{MirrorOptions, Selection};
    ///
    /// let mirror = client.mirror("apps", Selection::prefix("services/"), MirrorOptions::new());
    /// mirror.wait_ready().await?;
    /// let web = mirror.get("services/web"); // local: no request
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Panics
    /// Outside a tokio runtime (the mirror runs as a task).
    pub fn mirror(&self, namespace: &str, selection: Selection, options: MirrorOptions) -> Mirror {
        Mirror::start(self.clone(), namespace, selection, options)
    }
}

/// The [`Error`] of a failed answer: its problem object when it has one.
pub(crate) async fn error_of(response: reqwest::Response) -> Error {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => return e.into(),
    };
    match serde_json::from_slice::<Problem>(&body) {
        Ok(problem) => Error::from_problem(problem, retry_after),
        Err(_) => {
            let text = String::from_utf8_lossy(&body);
            let excerpt: String = text.chars().take(BODY_EXCERPT).collect();
            Error::Protocol { status: Some(status), detail: format!("not a problem object: {excerpt:?}") }
        }
    }
}

/// The body of a successful answer as `T`.
async fn json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T> {
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    serde_json::from_slice(&body).map_err(|e| Error::Protocol { status: Some(status), detail: e.to_string() })
}

async fn got(response: reqwest::Response) -> Result<Got> {
    #[derive(Deserialize)]
    struct Body {
        revision: Revision,
        kv: KeyValue,
    }
    let answer = Answer::of(response.headers());
    let body: Body = json(response).await?;
    Ok(Got { revision: body.revision, kv: body.kv, etag: answer.etag, cache: answer.cache })
}

pub(crate) async fn page(response: reqwest::Response) -> Result<Page> {
    let answer = Answer::of(response.headers());
    let body: WirePage = json(response).await?;
    let prefixes = body
        .prefixes
        .into_iter()
        .map(CommonPrefix::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|detail| Error::Protocol { status: Some(200), detail })?;
    Ok(Page {
        revision: body.revision,
        count: body.count,
        kvs: body.kvs,
        prefixes,
        next_page_token: body.next_page_token,
        etag: answer.etag,
        cache: answer.cache,
    })
}
