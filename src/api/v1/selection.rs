//! The key selection of reads and watches, parsed in one place: one key
//! (`key`), a prefix (`prefix`) or a range (`start`/`end`), each also as
//! base64url (`key_b64`, ...) for keys that are not UTF-8.

use bytes::Bytes;

use crate::cache::KeyRange;
use crate::error::ApiError;
use crate::http::params::Params;

/// What a request selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Exactly one key (`key=`).
    Key(Bytes),
    /// A range of keys: `prefix=`, or `start=`/`end=`, or (none given) the
    /// whole namespace.
    Range(KeyRange),
}

impl Selection {
    /// Takes the selection parameters from `params`.
    ///
    /// # Errors
    /// 400 for conflicting parameters, an empty range, or a malformed key.
    pub fn take(params: &mut Params) -> Result<Self, ApiError> {
        let key = params.take_key("key")?;
        let prefix = params.take_key("prefix")?;
        let start = params.take_key("start")?;
        let end = params.take_key("end")?;
        let selection = match (key, prefix, start.is_some() || end.is_some()) {
            (Some(key), None, false) => return Ok(Self::Key(key)),
            (None, Some(prefix), false) => KeyRange::prefix(prefix),
            (None, None, _) => KeyRange { start: start.unwrap_or_default(), end },
            _ => return Err(ApiError::bad_request("give one of `key`, `prefix` or `start`/`end`")),
        };
        if selection.is_empty() {
            return Err(ApiError::bad_request("`end` must be greater than `start`"));
        }
        Ok(Self::Range(selection))
    }

    /// The keys selected, as a range.
    pub fn into_range(self) -> KeyRange {
        match self {
            Self::Key(key) => KeyRange::key(key),
            Self::Range(range) => range,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<Selection, String> {
        Selection::take(&mut Params::parse(Some(query)).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn each_form_selects_its_keys() {
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        assert_eq!(parse("key=a/b"), Ok(Selection::Key(b("a/b"))));
        assert_eq!(parse("key_b64=_w"), Ok(Selection::Key(Bytes::from_static(b"\xff"))));
        assert_eq!(parse("prefix=a/"), Ok(Selection::Range(KeyRange::prefix(b("a/")))));
        assert_eq!(
            parse("start=a&end=c"),
            Ok(Selection::Range(KeyRange { start: b("a"), end: Some(b("c")) }))
        );
        assert_eq!(parse("start=a"), Ok(Selection::Range(KeyRange { start: b("a"), end: None })));
        assert_eq!(parse(""), Ok(Selection::Range(KeyRange::all())));
    }

    #[test]
    fn conflicts_and_empty_ranges_are_refused() {
        let conflict = Err("give one of `key`, `prefix` or `start`/`end`".to_owned());
        assert_eq!(parse("key=a&prefix=b"), conflict);
        assert_eq!(parse("prefix=a&start=b"), conflict);
        assert_eq!(parse("key=a&end=b"), conflict);
        assert_eq!(parse("start=c&end=a"), Err("`end` must be greater than `start`".to_owned()));
        assert_eq!(parse("key=a&key_b64=YQ"), Err("give `key` or `key_b64`, not both".to_owned()));
    }
}
