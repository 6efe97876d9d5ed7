//! The typed requests of the key-value routes, parsed and validated in one
//! place: every rejection is a 400 problem naming the parameter.

use bytes::Bytes;

use super::filter::Filter;
use super::page_token::{PageToken, Position, fingerprint};
use super::render::Encoding;
use super::select::Select;
use crate::cache::{At, KeyRange, Revision};
use crate::error::ApiError;
use crate::http::params::Params;

/// Default page size of a listing.
pub const DEFAULT_LIMIT: usize = 1000;
/// Largest page size: bounds the work and the response of one request.
pub const MAX_LIMIT: usize = 10_000;

/// Which state a read wants, from `consistent`, `min_revision`, `revision`.
fn consistency(params: &mut Params) -> Result<At, ApiError> {
    let consistent = params.take_bool("consistent")?;
    let min_revision = params.take_int("min_revision", 1, i64::MAX)?;
    let revision = params.take_int("revision", 1, i64::MAX)?;
    match (consistent, min_revision, revision) {
        (false, None, None) => Ok(At::Head),
        (true, None, None) => Ok(At::Consistent),
        (false, Some(r), None) => Ok(At::AtLeast(r)),
        (false, None, Some(r)) => Ok(At::Exact(r)),
        _ => Err(ApiError::bad_request("give at most one of `consistent`, `min_revision` and `revision`")),
    }
}

/// `GET .../kv/{key}` (or `.../kv?key_b64=`).
#[derive(Debug)]
pub struct GetRequest {
    /// The key, relative to the namespace.
    pub key: Bytes,
    /// Value encoding.
    pub encoding: Encoding,
    /// Answer with the bare value bytes.
    pub raw: bool,
    /// Which state.
    pub at: At,
}

/// Parameters of a single-key read.
pub const GET_PARAMS: &str = "encoding, raw, consistent, min_revision, revision";

impl GetRequest {
    /// Parses the rest of a single-key read.
    ///
    /// # Errors
    /// 400 naming the parameter.
    pub fn parse(key: Bytes, mut params: Params) -> Result<Self, ApiError> {
        let encoding = Encoding::parse(params.take_str("encoding")?.as_deref())?;
        let raw = params.take_bool("raw")?;
        let at = consistency(&mut params)?;
        params.finish(GET_PARAMS)?;
        Ok(Self { key, encoding, raw, at })
    }
}

/// What a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Key-values with values.
    Full,
    /// Key-values without values.
    KeysOnly,
    /// Only the count.
    CountOnly,
}

/// What a listing is ordered by (`sort=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// The key, bytewise (the default).
    Key,
    /// The revision that created the key.
    CreateRevision,
    /// The revision of the last change.
    ModRevision,
    /// The number of changes since creation.
    Version,
}

impl SortBy {
    /// The sort value of a key's metadata (0 in key order).
    pub fn value(self, meta: &crate::cache::Meta) -> i64 {
        match self {
            Self::Key => 0,
            Self::CreateRevision => meta.create_revision,
            Self::ModRevision => meta.mod_revision,
            Self::Version => meta.version,
        }
    }
}

/// `GET .../kv` (a range).
#[derive(Debug)]
pub struct RangeRequest {
    /// The keys of the whole listing.
    pub range: KeyRange,
    /// Page size.
    pub limit: usize,
    /// Where this page starts, when continuing.
    pub page_token: Option<PageToken>,
    /// Full, keys-only or count-only.
    pub shape: Shape,
    /// Value encoding.
    pub encoding: Encoding,
    /// All must hold.
    pub filters: Vec<Filter>,
    /// Projection of JSON values.
    pub select: Option<Select>,
    /// The order of the listing, ties broken by key.
    pub sort: SortBy,
    /// Descending (`order=desc`).
    pub descending: bool,
    /// One level only: keys directly under the prefix, and the common
    /// prefixes below it ending with this delimiter (`delimiter=/`).
    pub delimiter: Option<Bytes>,
    /// Which state (pinned to the token's revision when continuing).
    pub at: At,
    /// Identity of the listing, carried by its page tokens.
    pub fingerprint: u64,
    /// Everything that shapes a page (for sharing rendered pages).
    pub canonical: Bytes,
}

/// Length-prefixed parts: equal bytes, equal parts.
#[derive(Default)]
struct Parts(Vec<u8>);

impl Parts {
    fn add(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.0.extend_from_slice(bytes);
        self
    }
}

/// Parameters of a listing.
pub const RANGE_PARAMS: &str = "prefix, start, end (and their _b64 forms), key_b64, limit, page_token, keys_only, \
                                count_only, encoding, filter, select, sort, order, delimiter, consistent, \
                                min_revision, revision";

impl RangeRequest {
    /// Parses a listing of `range` (the selection, already taken) in `namespace`.
    ///
    /// # Errors
    /// 400 naming the parameter or the conflict.
    pub fn parse(namespace: &str, range: KeyRange, mut params: Params) -> Result<Self, ApiError> {
        let limit = params.take_int("limit", 1, MAX_LIMIT as i64)?.map_or(DEFAULT_LIMIT, |l| l as usize);
        let keys_only = params.take_bool("keys_only")?;
        let count_only = params.take_bool("count_only")?;
        let filter_texts = params.take_all_str("filter")?;
        let filters = filter_texts.iter().map(|f| Filter::parse(f)).collect::<Result<Vec<_>, _>>()?;
        let select_text = params.take_str("select")?;
        let select = select_text.as_deref().map(Select::parse).transpose()?;
        let encoding_text = params.take_str("encoding")?;
        let mut encoding = Encoding::parse(encoding_text.as_deref())?;
        let shape = match (keys_only, count_only) {
            (true, true) => return Err(ApiError::bad_request("give `keys_only` or `count_only`, not both")),
            (true, false) => Shape::KeysOnly,
            (false, true) => Shape::CountOnly,
            (false, false) => Shape::Full,
        };
        if select.is_some() {
            if shape != Shape::Full {
                return Err(ApiError::bad_request(
                    "`select` needs values: not with `keys_only` or `count_only`",
                ));
            }
            if encoding_text.as_deref().is_some_and(|e| e != "json") {
                return Err(ApiError::bad_request("`select` implies `encoding=json`"));
            }
            encoding = Encoding::Json;
        }
        let sort = match params.take_str("sort")?.as_deref() {
            None | Some("key") => SortBy::Key,
            Some("create_revision") => SortBy::CreateRevision,
            Some("mod_revision") => SortBy::ModRevision,
            Some("version") => SortBy::Version,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "parameter `sort` must be key, create_revision, mod_revision or version, not {other:?}"
                )));
            }
        };
        let descending = match params.take_str("order")?.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "parameter `order` must be asc or desc, not {other:?}"
                )));
            }
        };
        let delimiter = params.take_bytes("delimiter")?.map(Bytes::from);
        if let Some(delimiter) = &delimiter {
            if delimiter.is_empty() {
                return Err(ApiError::bad_request(
                    "parameter `delimiter` must not be empty, e.g. delimiter=/",
                ));
            }
            if range.end != crate::cache::prefix_end(&range.start) {
                return Err(ApiError::bad_request(
                    "`delimiter` lists one level under `prefix`: not with `start`/`end`",
                ));
            }
            if !filters.is_empty() || sort != SortBy::Key || descending {
                return Err(ApiError::bad_request(
                    "`delimiter` lists one level in key order: not with `filter`, `sort` or `order`",
                ));
            }
        }
        let token_text = params.take_str("page_token")?;
        let at = consistency(&mut params)?;
        params.finish(RANGE_PARAMS)?;

        // What decides which items a listing has and in which order: a
        // token continues only this (of this namespace: another namespace's
        // token would silently answer an empty page).
        let mut identity = Parts::default();
        identity
            .add(namespace.as_bytes())
            .add(&range.start)
            .add(range.end.as_deref().map_or(&b"\xff-none"[..], |e| e))
            .add(select_text.as_deref().unwrap_or("\u{0}").as_bytes())
            .add(&[sort as u8, u8::from(descending)])
            .add(delimiter.as_deref().unwrap_or(b"\xff-none"));
        for filter in &filter_texts {
            identity.add(filter.as_bytes());
        }
        let fingerprint = fingerprint([identity.0.as_slice()]);
        let page_token = token_text.as_deref().map(|t| PageToken::decode(t, fingerprint)).transpose()?;
        // And what shapes one page of it, for sharing rendered pages.
        let mut canonical = identity;
        canonical.add(&(limit as u64).to_le_bytes()).add(&[shape as u8, encoding as u8]);
        match &page_token {
            Some(token) => canonical.add(&token.last.value.to_le_bytes()).add(&token.last.key),
            None => canonical.add(b"first page"),
        };
        let at = match (&page_token, at) {
            (Some(token), At::Head) => At::Exact(token.revision),
            (Some(_), _) => {
                return Err(ApiError::bad_request(
                    "`page_token` pins the listing's revision: not with `consistent`, `min_revision` or `revision`",
                ));
            }
            (None, at) => at,
        };
        Ok(Self {
            range,
            limit,
            page_token,
            shape,
            encoding,
            filters,
            select,
            sort,
            descending,
            delimiter,
            at,
            fingerprint,
            canonical: Bytes::from(canonical.0),
        })
    }

    /// The token that continues after `last` at `revision`.
    pub fn next_token(&self, revision: Revision, last: Position) -> String {
        PageToken { revision, fingerprint: self.fingerprint, last }.encode()
    }

    /// Whether the listing is in plain key order over the index (no filter,
    /// no other sort, not one level): pages are then read straight from it.
    pub fn is_plain(&self) -> bool {
        self.filters.is_empty() && self.sort == SortBy::Key && !self.descending && self.delimiter.is_none()
    }
}
