//! What a read asks for: [`GetOptions`] for one key, [`Range`] for a
//! listing, both rendered into the query parameters of API.md.

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::Revision;

/// Bytes left as they are in a query value: the unreserved characters and
/// `/` (keys read naturally in logs); everything else is percent-encoded,
/// so any key, also one that is not UTF-8, reaches the gateway intact.
const QUERY_VALUE: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// A query string under construction.
#[derive(Debug, Default)]
pub(crate) struct Query(String);

impl Query {
    /// Appends `name=value`, the value percent-encoded byte by byte.
    pub(crate) fn push(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.push_str(name);
        self.0.push('=');
        self.0.extend(percent_encoding::percent_encode(value.as_ref(), QUERY_VALUE));
        self
    }

    /// Appends `name=true` when `on`.
    pub(crate) fn flag(&mut self, name: &str, on: bool) -> &mut Self {
        if on {
            self.push(name, "true");
        }
        self
    }

    /// The query string, without `?`.
    pub(crate) fn finish(self) -> String {
        self.0
    }
}

/// Bytes left as they are in a path segment: the unreserved characters.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A path segment, percent-encoded whole (a namespace name may hold `/`).
pub(crate) fn segment(text: &str) -> String {
    utf8_percent_encode(text, PATH_SEGMENT).to_string()
}

/// How values are written in answers (`encoding=`).
///
/// ```
/// use etcd_cache_gateway_client::{Encoding, Range};
///
/// assert_eq!(Range::prefix("a/").encoding(Encoding::Json).query(), "prefix=a/&encoding=json");
/// assert_eq!(Range::prefix("a/").encoding(Encoding::Auto).query(), "prefix=a/");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8 text as a string, anything else base64: either way
    /// [`Value::Bytes`](crate::Value::Bytes) here.
    #[default]
    Auto,
    /// Always base64 (still [`Value::Bytes`](crate::Value::Bytes) here).
    Base64,
    /// Values that parse as JSON as [`Value::Json`](crate::Value::Json), others as `Auto`.
    Json,
}

impl Encoding {
    fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Base64 => "base64",
            Self::Json => "json",
        }
    }

    pub(crate) fn add_to(self, query: &mut Query) {
        if self != Self::Auto {
            query.push("encoding", self.as_str());
        }
    }
}

/// Which state a read answers from (API.md "Consistency").
///
/// ```
/// use etcd_cache_gateway_client::{Consistency, GetOptions};
///
/// let at = |c| GetOptions::new().consistency(c).query();
/// assert_eq!(at(Consistency::Cached), "");
/// assert_eq!(at(Consistency::Consistent), "consistent=true");
/// assert_eq!(at(Consistency::MinRevision(42)), "min_revision=42");
/// assert_eq!(at(Consistency::Revision(7)), "revision=7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// The cache's current state, at once (like etcd's serializable read).
    #[default]
    Cached,
    /// Linearizable: reflects every write etcd acknowledged before the request.
    Consistent,
    /// Read-your-writes: wait until the cache reached this revision (the
    /// revision etcd returned for your write), then answer from its current
    /// state.
    MinRevision(Revision),
    /// The state exactly at this revision.
    Revision(Revision),
}

impl Consistency {
    pub(crate) fn add_to(self, query: &mut Query) {
        match self {
            Self::Cached => {}
            Self::Consistent => {
                query.push("consistent", "true");
            }
            Self::MinRevision(r) => {
                query.push("min_revision", r.to_string());
            }
            Self::Revision(r) => {
                query.push("revision", r.to_string());
            }
        }
    }
}

/// Options of a one-key read.
///
/// ```
/// use etcd_cache_gateway_client::{Encoding, GetOptions};
///
/// let options = GetOptions::new().encoding(Encoding::Json).min_revision(42);
/// assert_eq!(options.query(), "encoding=json&min_revision=42");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    encoding: Encoding,
    consistency: Consistency,
}

impl GetOptions {
    /// The defaults: `auto` encoding, from the cache's current state.
    pub fn new() -> Self {
        Self::default()
    }

    /// How the value is encoded.
    #[must_use]
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Which state to read.
    #[must_use]
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// A linearizable read ([`Consistency::Consistent`]).
    #[must_use]
    pub fn consistent(self) -> Self {
        self.consistency(Consistency::Consistent)
    }

    /// Read-your-writes ([`Consistency::MinRevision`]).
    #[must_use]
    pub fn min_revision(self, revision: Revision) -> Self {
        self.consistency(Consistency::MinRevision(revision))
    }

    /// The state at `revision` ([`Consistency::Revision`]).
    #[must_use]
    pub fn revision(self, revision: Revision) -> Self {
        self.consistency(Consistency::Revision(revision))
    }

    /// The query parameters these options send (without the key).
    pub fn query(&self) -> String {
        let mut query = Query::default();
        self.add_to(&mut query);
        query.finish()
    }

    pub(crate) fn add_to(&self, query: &mut Query) {
        self.encoding.add_to(query);
        self.consistency.add_to(query);
    }
}

/// What a listing is ordered by (`sort=`).
///
/// ```
/// use etcd_cache_gateway_client::{Range, SortBy};
///
/// assert_eq!(Range::all().sort(SortBy::CreateRevision).query(), "sort=create_revision");
/// assert_eq!(Range::all().sort(SortBy::Version).descending().query(), "sort=version&order=desc");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// The key, bytewise (the default).
    Key,
    /// The revision that created the key.
    CreateRevision,
    /// The revision of the key's last change.
    ModRevision,
    /// Changes since creation.
    Version,
}

impl SortBy {
    fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::CreateRevision => "create_revision",
            Self::ModRevision => "mod_revision",
            Self::Version => "version",
        }
    }
}

/// The keys of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Keys {
    /// The whole namespace.
    #[default]
    All,
    /// Keys starting with this.
    Prefix(Bytes),
    /// Keys in `[start, end)`; no end = to the end of the namespace.
    Between { start: Bytes, end: Option<Bytes> },
}

/// A listing request: which keys, in which shape, order and state (every
/// read option of API.md "Read a range"). Built by chaining; the gateway
/// checks combinations and answers [`Error::BadRequest`](crate::Error::BadRequest)
/// naming a conflict.
///
/// ```
/// use etcd_cache_gateway_client::{Range, SortBy};
///
/// let range = Range::prefix("services/")
///     .filter("labels.tier==web")
///     .select(["port", "labels.tier"])
///     .sort(SortBy::ModRevision)
///     .descending()
///     .limit(100);
/// assert_eq!(
///     range.query(),
///     "prefix=services/&limit=100&filter=labels.tier%3D%3Dweb&select=port%2Clabels.tier\
///      &sort=mod_revision&order=desc"
/// );
/// assert_eq!(Range::between("a", "c").keys_only().revision(7).query(), "start=a&end=c&keys_only=true&revision=7");
/// assert_eq!(Range::prefix("").delimiter("/").query(), "prefix=&delimiter=/");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Range {
    keys: Keys,
    limit: Option<u32>,
    page_token: Option<String>,
    keys_only: bool,
    count_only: bool,
    encoding: Encoding,
    filters: Vec<String>,
    select: Vec<String>,
    sort: Option<SortBy>,
    descending: bool,
    delimiter: Option<Bytes>,
    consistency: Consistency,
}

impl Range {
    /// Every key of the namespace.
    pub fn all() -> Self {
        Self::default()
    }

    /// Keys starting with `prefix` (relative to the namespace).
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        Self { keys: Keys::Prefix(prefix.into()), ..Self::default() }
    }

    /// Keys in `[start, end)`.
    pub fn between(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        Self { keys: Keys::Between { start: start.into(), end: Some(end.into()) }, ..Self::default() }
    }

    /// Keys from `start` (inclusive) to the end of the namespace.
    pub fn from_key(start: impl Into<Bytes>) -> Self {
        Self { keys: Keys::Between { start: start.into(), end: None }, ..Self::default() }
    }

    /// Page size (the gateway's default is 1000, its maximum 10000).
    #[must_use]
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Continue a listing after the page that returned this token (its
    /// revision is pinned by the token). [`Client::list_all`](crate::Client::list_all) does this for you.
    #[must_use]
    pub fn page_token(mut self, token: impl Into<String>) -> Self {
        self.page_token = Some(token.into());
        self
    }

    /// Key-values without values.
    #[must_use]
    pub fn keys_only(mut self) -> Self {
        self.keys_only = true;
        self
    }

    /// Only the count ([`Page::count`](crate::Page::count); no key-values).
    #[must_use]
    pub fn count_only(mut self) -> Self {
        self.count_only = true;
        self
    }

    /// How values are encoded.
    #[must_use]
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Adds a filter on JSON values (`path==literal`, `path!=literal`,
    /// `path`); every filter must hold.
    #[must_use]
    pub fn filter(mut self, expression: impl Into<String>) -> Self {
        self.filters.push(expression.into());
        self
    }

    /// Keeps only these dot-separated paths of each JSON value (implies
    /// [`Encoding::Json`]).
    #[must_use]
    pub fn select<S: Into<String>>(mut self, paths: impl IntoIterator<Item = S>) -> Self {
        self.select.extend(paths.into_iter().map(Into::into));
        self
    }

    /// The order of the listing (ties broken by key).
    #[must_use]
    pub fn sort(mut self, by: SortBy) -> Self {
        self.sort = Some(by);
        self
    }

    /// Descending order (`order=desc`).
    #[must_use]
    pub fn descending(mut self) -> Self {
        self.descending = true;
        self
    }

    /// One level only: the keys directly under the prefix, plus
    /// [`Page::prefixes`](crate::Page::prefixes) for the levels below.
    #[must_use]
    pub fn delimiter(mut self, delimiter: impl Into<Bytes>) -> Self {
        self.delimiter = Some(delimiter.into());
        self
    }

    /// Which state to read.
    #[must_use]
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// A linearizable read ([`Consistency::Consistent`]).
    #[must_use]
    pub fn consistent(self) -> Self {
        self.consistency(Consistency::Consistent)
    }

    /// Read-your-writes ([`Consistency::MinRevision`]).
    #[must_use]
    pub fn min_revision(self, revision: Revision) -> Self {
        self.consistency(Consistency::MinRevision(revision))
    }

    /// The state at `revision` ([`Consistency::Revision`]).
    #[must_use]
    pub fn revision(self, revision: Revision) -> Self {
        self.consistency(Consistency::Revision(revision))
    }

    /// Whether this asks for counts only (pages then carry no token).
    pub(crate) fn is_count_only(&self) -> bool {
        self.count_only
    }

    /// The query string this listing sends (e.g. to try it with `curl`).
    pub fn query(&self) -> String {
        let mut q = Query::default();
        match &self.keys {
            Keys::All => {}
            Keys::Prefix(prefix) => {
                q.push("prefix", prefix);
            }
            Keys::Between { start, end } => {
                q.push("start", start);
                if let Some(end) = end {
                    q.push("end", end);
                }
            }
        }
        if let Some(limit) = self.limit {
            q.push("limit", limit.to_string());
        }
        if let Some(token) = &self.page_token {
            q.push("page_token", token);
        }
        q.flag("keys_only", self.keys_only).flag("count_only", self.count_only);
        self.encoding.add_to(&mut q);
        for filter in &self.filters {
            q.push("filter", filter);
        }
        if !self.select.is_empty() {
            q.push("select", self.select.join(","));
        }
        if let Some(sort) = self.sort {
            q.push("sort", sort.as_str());
        }
        if self.descending {
            q.push("order", "desc");
        }
        if let Some(delimiter) = &self.delimiter {
            q.push("delimiter", delimiter);
        }
        // A continued listing is pinned by its token: the consistency of
        // the first page is not sent again (the gateway refuses both).
        if self.page_token.is_none() {
            self.consistency.add_to(&mut q);
        }
        q.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_bytes_are_percent_encoded() {
        let range = Range::between(&b"\xff a+b"[..], "z?&=#");
        assert_eq!(range.query(), "start=%FF%20a%2Bb&end=z%3F%26%3D%23");
        assert_eq!(
            Range::from_key("m").count_only().consistent().query(),
            "start=m&count_only=true&consistent=true"
        );
        let continued = Range::prefix("p").min_revision(5).page_token("T").encoding(Encoding::Base64);
        assert_eq!(continued.query(), "prefix=p&page_token=T&encoding=base64");
        assert_eq!(segment("my-ns/a b"), "my-ns%2Fa%20b");
    }
}
