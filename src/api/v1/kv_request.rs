//! The typed requests of the key-value routes, parsed and validated in one
//! place: every rejection is a 400 problem naming the parameter.

use bytes::Bytes;

use super::filter::Filter;
use super::page_token::{PageToken, fingerprint};
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
    /// Which state (pinned to the token's revision when continuing).
    pub at: At,
    /// Identity of the listing, carried by its page tokens.
    pub fingerprint: u64,
    /// Everything that shapes a page (for sharing rendered pages).
    pub canonical: Bytes,
}

/// Length-prefixed encoding of every part of a listing request that shapes
/// its page: equal bytes, equal page (for the same namespace state).
fn canonical_query(
    range: &KeyRange,
    limit: usize,
    shape: Shape,
    encoding: super::render::Encoding,
    filters: &[String],
    select: Option<&str>,
    token: Option<&PageToken>,
) -> Bytes {
    let mut out = Vec::with_capacity(64);
    let mut part = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    part(&range.start);
    part(range.end.as_deref().map_or(&b"\xff-none"[..], |e| e));
    part(&(limit as u64).to_le_bytes());
    part(&[shape as u8, encoding as u8]);
    for filter in filters {
        part(filter.as_bytes());
    }
    part(select.unwrap_or("\u{0}").as_bytes());
    part(token.map_or(&b""[..], |t| &t.last_key[..]));
    part(&[u8::from(token.is_some())]);
    Bytes::from(out)
}

/// Parameters of a listing.
pub const RANGE_PARAMS: &str = "prefix, start, end (and their _b64 forms), key_b64, limit, page_token, keys_only, \
                                count_only, encoding, filter, select, consistent, min_revision, revision";

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
        let token_text = params.take_str("page_token")?;
        let at = consistency(&mut params)?;
        params.finish(RANGE_PARAMS)?;

        let end_bytes = range.end.as_deref().unwrap_or(b"");
        // A token continues one listing of one namespace: another
        // namespace's token would silently answer an empty page.
        let fingerprint = fingerprint(
            [namespace.as_bytes(), &range.start[..], end_bytes, &[u8::from(range.end.is_some())]]
                .into_iter()
                .chain(filter_texts.iter().map(String::as_bytes))
                .chain(select_text.iter().map(String::as_bytes)),
        );
        let page_token = token_text.as_deref().map(|t| PageToken::decode(t, fingerprint)).transpose()?;
        let canonical = canonical_query(
            &range,
            limit,
            shape,
            encoding,
            &filter_texts,
            select_text.as_deref(),
            page_token.as_ref(),
        );
        let at = match (&page_token, at) {
            (Some(token), At::Head) => At::Exact(token.revision),
            (Some(_), _) => {
                return Err(ApiError::bad_request(
                    "`page_token` pins the listing's revision: not with `consistent`, `min_revision` or `revision`",
                ));
            }
            (None, at) => at,
        };
        Ok(Self { range, limit, page_token, shape, encoding, filters, select, at, fingerprint, canonical })
    }

    /// The token that continues after `last_key` at `revision`.
    pub fn next_token(&self, revision: Revision, last_key: Bytes) -> String {
        PageToken { revision, fingerprint: self.fingerprint, last_key }.encode()
    }

    /// The keys this page may return: after the token's key, if any.
    pub fn page_range(&self) -> KeyRange {
        match &self.page_token {
            Some(token) => self.range.after(&token.last_key),
            None => self.range.clone(),
        }
    }
}
