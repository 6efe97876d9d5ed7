//! The query of a list, get or watch (the API server's `ListOptions`),
//! parsed and checked with its validation rules: 400 `BadRequest` for a
//! malformed value, 422 `Invalid` for a combination it forbids. Parameters
//! it does not know are ignored, as the API server ignores them.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::selector::{FieldSelector, LabelSelector};
use super::status::Status;
use crate::cache::{At, Revision};
use crate::http::params::Params;

/// `resourceVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Absent or empty: the most recent state (a consistent read).
    Unset,
    /// `"0"`: any state (the cache's, at once).
    Any,
    /// A revision.
    At(Revision),
}

/// `resourceVersionMatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// `NotOlderThan`.
    NotOlderThan,
    /// `Exact`.
    Exact,
}

/// Where the next page of a list starts, as the API server encodes it:
/// base64 of `{"v":"meta.k8s.io/v1","rv":R,"start":"<next key>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continue {
    /// Always `meta.k8s.io/v1`.
    pub v: String,
    /// The revision every page is read at.
    pub rv: Revision,
    /// The first key (relative to the gateway namespace) of the next page.
    pub start: String,
}

const CONTINUE_VERSION: &str = "meta.k8s.io/v1";

impl Continue {
    /// The token of a page that ends at `last` (key), read at `rv`.
    pub fn after(rv: Revision, last: &str) -> Self {
        Self { v: CONTINUE_VERSION.into(), rv, start: format!("{last}\u{0}") }
    }

    /// The token's text.
    pub fn encode(&self) -> String {
        STANDARD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(text: &str) -> Result<Self, Status> {
        let bad = |why: &str| Status::bad_request(format!("continue key is not valid: {why}"));
        let raw = STANDARD.decode(text).map_err(|_| bad("not base64"))?;
        let token: Self = serde_json::from_slice(&raw).map_err(|_| bad("not a token this server issued"))?;
        if token.v != CONTINUE_VERSION || token.rv < 1 {
            return Err(bad("not a token this server issued"));
        }
        Ok(token)
    }
}

/// One request's options.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// `watch=true`.
    pub watch: bool,
    /// `limit` (a positive number; absent or ≤ 0 = everything).
    pub limit: Option<usize>,
    /// `continue`.
    pub continue_from: Option<Continue>,
    /// `resourceVersion`.
    pub version: Version,
    /// `resourceVersionMatch`.
    pub version_match: Option<Match>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<bool>,
    /// `timeoutSeconds`, or kubectl's `timeout` (a duration like `5m37s`).
    pub timeout: Option<Duration>,
}

/// Most objects in one list page, whatever `limit` asks (the API server
/// has no cap; this bounds one response's memory).
pub const MAX_LIMIT: usize = 10_000;

fn take(params: &mut Params, name: &str) -> Result<Option<String>, Status> {
    Ok(params.take_str(name).map_err(Status::from)?.filter(|v| !v.is_empty()))
}

fn boolean(params: &mut Params, name: &str) -> Result<Option<bool>, Status> {
    match take(params, name)?.as_deref() {
        None => Ok(None),
        // Go's strconv.ParseBool, as the API server parses them.
        Some("1" | "t" | "T" | "true" | "True" | "TRUE") => Ok(Some(true)),
        Some("0" | "f" | "F" | "false" | "False" | "FALSE") => Ok(Some(false)),
        Some(other) => Err(Status::bad_request(format!("{name}: invalid boolean {other:?}"))),
    }
}

impl ListQuery {
    /// Parses a raw query string.
    ///
    /// # Errors
    /// 400 `BadRequest` or 422 `Invalid`, naming the option.
    pub fn parse(query: Option<&str>) -> Result<Self, Status> {
        let mut params = Params::parse(query).map_err(Status::from)?;
        let watch = boolean(&mut params, "watch")?.unwrap_or(false);
        let limit = match take(&mut params, "limit")? {
            None => None,
            Some(text) => {
                let n: i64 = text
                    .parse()
                    .map_err(|_| Status::bad_request(format!("limit: invalid number {text:?}")))?;
                (n > 0).then(|| usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT))
            }
        };
        let continue_from = take(&mut params, "continue")?.map(|t| Continue::decode(&t)).transpose()?;
        let version = match take(&mut params, "resourceVersion")?.as_deref() {
            None => Version::Unset,
            Some("0") => Version::Any,
            Some(text) => match text.parse::<Revision>() {
                Ok(n) if n > 0 => Version::At(n),
                _ => return Err(Status::bad_request(format!("invalid resource version: {text:?}"))),
            },
        };
        let match_text = take(&mut params, "resourceVersionMatch")?;
        let version_match = match match_text.as_deref() {
            None => None,
            Some("NotOlderThan") => Some(Match::NotOlderThan),
            Some("Exact") => Some(Match::Exact),
            Some(other) => {
                let allowed = if watch { "\"NotOlderThan\"" } else { "\"Exact\", \"NotOlderThan\", \"\"" };
                return Err(Status::invalid(
                    "resourceVersionMatch",
                    "Unsupported value",
                    &format!("\"{other}\": supported values: {allowed}"),
                ));
            }
        };
        let timeout = match take(&mut params, "timeoutSeconds")? {
            Some(text) => Some(Duration::from_secs(
                text.parse()
                    .map_err(|_| Status::bad_request(format!("timeoutSeconds: invalid number {text:?}")))?,
            )),
            None => take(&mut params, "timeout")?
                .map(|t| {
                    humantime::parse_duration(&t)
                        .map_err(|_| Status::bad_request(format!("invalid timeout {t:?}, e.g. 5m37s")))
                })
                .transpose()?,
        };
        let query = Self {
            watch,
            limit,
            continue_from,
            version,
            version_match,
            labels: LabelSelector::parse(&take(&mut params, "labelSelector")?.unwrap_or_default())?,
            fields: FieldSelector::parse(&take(&mut params, "fieldSelector")?.unwrap_or_default())?,
            bookmarks: boolean(&mut params, "allowWatchBookmarks")?.unwrap_or(false),
            send_initial_events: boolean(&mut params, "sendInitialEvents")?,
            timeout,
        };
        if query.watch {
            query.validate_watch()?
        } else {
            query.validate_list()?
        }
        Ok(query)
    }

    /// apimachinery's `ValidateListOptions` for a list.
    fn validate_list(&self) -> Result<(), Status> {
        let forbidden = |detail: &str| Status::invalid("resourceVersionMatch", "Forbidden", detail);
        if let Some(m) = self.version_match {
            if self.version == Version::Unset {
                return Err(forbidden(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if self.continue_from.is_some() {
                return Err(forbidden("resourceVersionMatch is forbidden when continue is provided"));
            }
            if m == Match::Exact && self.version == Version::Any {
                return Err(forbidden(
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if self.send_initial_events.is_some() {
            return Err(Status::invalid(
                "sendInitialEvents",
                "Forbidden",
                "sendInitialEvents is forbidden for list",
            ));
        }
        if self.continue_from.is_some() && matches!(self.version, Version::At(_)) {
            return Err(Status::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        Ok(())
    }

    /// apimachinery's `validateWatchOptions`.
    fn validate_watch(&self) -> Result<(), Status> {
        if self.send_initial_events.is_some() && self.version_match != Some(Match::NotOlderThan) {
            return Err(Status::invalid(
                "resourceVersionMatch",
                "Forbidden",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if let Some(m) = self.version_match {
            if self.send_initial_events.is_none() {
                return Err(Status::invalid(
                    "resourceVersionMatch",
                    "Forbidden",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if m != Match::NotOlderThan {
                return Err(Status::invalid(
                    "resourceVersionMatch",
                    "Unsupported value",
                    "\"Exact\": supported values: \"NotOlderThan\"",
                ));
            }
        }
        if self.continue_from.is_some() {
            return Err(Status::bad_request("continue is not allowed with watch"));
        }
        Ok(())
    }

    /// Which state a list (or get) reads, with the API server's semantics:
    /// unset = consistent, `0` = any, `N` = not older than N, or exactly N
    /// with `Exact` (or with `limit` and no match, as the API server does);
    /// a continued list reads its first page's revision.
    pub fn at(&self) -> At {
        if let Some(token) = &self.continue_from {
            return At::Exact(token.rv);
        }
        match (self.version, self.version_match) {
            (Version::Unset, _) => At::Consistent,
            (Version::Any, _) => At::Head,
            (Version::At(n), Some(Match::Exact)) => At::Exact(n),
            (Version::At(n), None) if self.limit.is_some() => At::Exact(n),
            (Version::At(n), _) => At::AtLeast(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<ListQuery, Status> {
        ListQuery::parse(Some(q))
    }

    #[test]
    fn resource_versions_follow_the_api_servers_table() {
        assert_eq!(parse("").unwrap().at(), At::Consistent);
        assert_eq!(parse("resourceVersion=0").unwrap().at(), At::Head);
        assert_eq!(parse("resourceVersion=7").unwrap().at(), At::AtLeast(7));
        assert_eq!(
            parse("resourceVersion=7&resourceVersionMatch=NotOlderThan").unwrap().at(),
            At::AtLeast(7)
        );
        assert_eq!(parse("resourceVersion=7&resourceVersionMatch=Exact").unwrap().at(), At::Exact(7));
        assert_eq!(parse("resourceVersion=7&limit=5").unwrap().at(), At::Exact(7));
        assert_eq!(parse("resourceVersion=0&limit=500").unwrap().at(), At::Head);
        let token = Continue::after(9, "widgets/a/b").encode();
        assert_eq!(parse(&format!("continue={token}&limit=2")).unwrap().at(), At::Exact(9));
    }

    #[test]
    fn forbidden_combinations_are_invalid() {
        let e = parse("resourceVersionMatch=Exact").unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(
            e.message,
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is \
             forbidden unless resourceVersion is provided"
        );
        assert_eq!(parse("resourceVersion=0&resourceVersionMatch=Exact").unwrap_err().code, 422);
        assert_eq!(parse("resourceVersion=1&resourceVersionMatch=Newest").unwrap_err().code, 422);
        assert_eq!(parse("sendInitialEvents=true").unwrap_err().code, 422);
        assert_eq!(parse("watch=1&sendInitialEvents=true").unwrap_err().code, 422);
        assert_eq!(parse("watch=1&resourceVersionMatch=NotOlderThan").unwrap_err().code, 422);
        assert!(parse("watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan").is_ok());
        let token = Continue::after(9, "a").encode();
        assert_eq!(parse(&format!("continue={token}&resourceVersion=3")).unwrap_err().code, 400);
        for bad in [
            "limit=x",
            "resourceVersion=abc",
            "resourceVersion=-1",
            "continue=%%%",
            "timeoutSeconds=x",
            "watch=maybe",
        ] {
            assert_eq!(parse(bad).unwrap_err().code, 400, "{bad}");
        }
    }

    #[test]
    fn timeouts_in_seconds_or_as_kubectl_writes_them() {
        assert_eq!(parse("watch=1&timeoutSeconds=5").unwrap().timeout, Some(Duration::from_secs(5)));
        assert_eq!(parse("watch=1&timeout=5m37s").unwrap().timeout, Some(Duration::from_secs(337)));
        assert_eq!(parse("limit=0").unwrap().limit, None);
    }
}
