//! Query parameters: parsed once per request into a list, then taken by
//! name by each route's typed request parser, which rejects with a 400
//! problem naming the parameter. Anything not taken is an unknown parameter.
//!
//! Values are percent-decoded to bytes (`+` is a space, as in forms); a
//! parameter that must be text and is not UTF-8 is rejected, and binary keys
//! have `*_b64` (base64url) twins.

use base64::Engine;
use bytes::Bytes;
use percent_encoding::percent_decode;

use crate::error::ApiError;

/// The query string of one request, decoded.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, Option<Vec<u8>>)>,
}

fn decode(part: &str) -> Vec<u8> {
    let plus_as_space = part.replace('+', " ");
    percent_decode(plus_as_space.as_bytes()).collect()
}

impl Params {
    /// Parses a raw query string.
    ///
    /// # Errors
    /// A parameter name that is not UTF-8.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut pairs = Vec::new();
        for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n, Some(decode(v))),
                None => (part, None),
            };
            let name = String::from_utf8(decode(name))
                .map_err(|_| ApiError::bad_request("a query parameter name is not valid UTF-8"))?;
            // The token was taken by authentication; it is no route's parameter.
            if name != super::auth::ACCESS_TOKEN_PARAM {
                pairs.push((name, value));
            }
        }
        Ok(Self { pairs })
    }

    /// Removes every value of `name`, in order (a bare `name` counts as empty).
    pub fn take_all_bytes(&mut self, name: &str) -> Vec<Vec<u8>> {
        let mut taken = Vec::new();
        self.pairs.retain_mut(|(n, v)| {
            if n == name {
                taken.push(v.take().unwrap_or_default());
                false
            } else {
                true
            }
        });
        taken
    }

    /// The single value of `name` as bytes.
    ///
    /// # Errors
    /// `name` given more than once.
    pub fn take_bytes(&mut self, name: &str) -> Result<Option<Vec<u8>>, ApiError> {
        let mut all = self.take_all_bytes(name);
        if all.len() > 1 {
            return Err(ApiError::bad_request(format!("parameter `{name}` is given more than once")));
        }
        Ok(all.pop())
    }

    /// The single value of `name` as text.
    ///
    /// # Errors
    /// Repeated, or not UTF-8.
    pub fn take_str(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        self.take_bytes(name)?
            .map(|v| {
                String::from_utf8(v)
                    .map_err(|_| ApiError::bad_request(format!("parameter `{name}` is not valid UTF-8")))
            })
            .transpose()
    }

    /// Every value of a repeatable text parameter.
    ///
    /// # Errors
    /// A value that is not UTF-8.
    pub fn take_all_str(&mut self, name: &str) -> Result<Vec<String>, ApiError> {
        self.take_all_bytes(name)
            .into_iter()
            .map(|v| {
                String::from_utf8(v)
                    .map_err(|_| ApiError::bad_request(format!("parameter `{name}` is not valid UTF-8")))
            })
            .collect()
    }

    /// A boolean: `true`/`1` or `false`/`0` (a bare `name` means true).
    ///
    /// # Errors
    /// Any other value.
    pub fn take_bool(&mut self, name: &str) -> Result<bool, ApiError> {
        let present_bare = self.pairs.iter().any(|(n, v)| n == name && v.is_none());
        match self.take_str(name)?.as_deref() {
            None => Ok(false),
            Some("") if present_bare => Ok(true),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "parameter `{name}` must be true or false (or 1 or 0), not {other:?}"
            ))),
        }
    }

    /// An integer within `[min, max]`.
    ///
    /// # Errors
    /// Not an integer, or out of range.
    pub fn take_int(&mut self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(text) = self.take_str(name)? else { return Ok(None) };
        let n: i64 = text.parse().map_err(|_| {
            ApiError::bad_request(format!("parameter `{name}` must be an integer, not {text:?}"))
        })?;
        if n < min || n > max {
            return Err(ApiError::bad_request(format!(
                "parameter `{name}` must be between {min} and {max}, not {n}"
            )));
        }
        Ok(Some(n))
    }

    /// A key given as text (`name`) or as base64url bytes (`{name}_b64`).
    ///
    /// # Errors
    /// Both forms given, invalid base64, or longer than [`MAX_KEY_BYTES`].
    pub fn take_key(&mut self, name: &str) -> Result<Option<Bytes>, ApiError> {
        let b64_name = format!("{name}_b64");
        let key = match (self.take_bytes(name)?, self.take_str(&b64_name)?) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(format!("give `{name}` or `{b64_name}`, not both")));
            }
            (Some(text), None) => text,
            (None, Some(b64)) => decode_b64(&b64).ok_or_else(|| {
                ApiError::bad_request(format!("parameter `{b64_name}` is not valid base64url"))
            })?,
            (None, None) => return Ok(None),
        };
        check_key_len(name, &key)?;
        Ok(Some(Bytes::from(key)))
    }

    /// Rejects any parameter not taken.
    ///
    /// # Errors
    /// The first unknown parameter, named.
    pub fn finish(self, allowed: &str) -> Result<(), ApiError> {
        match self.pairs.first() {
            None => Ok(()),
            Some((name, _)) => {
                Err(ApiError::bad_request(format!("unknown parameter `{name}` (allowed here: {allowed})")))
            }
        }
    }
}

/// Longest key accepted: far beyond any real key, small enough to bound work.
pub const MAX_KEY_BYTES: usize = 8 * 1024;

/// Rejects keys longer than [`MAX_KEY_BYTES`].
///
/// # Errors
/// 400 naming `name` and the length.
pub fn check_key_len(name: &str, key: &[u8]) -> Result<(), ApiError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::bad_request(format!(
            "`{name}` is {} bytes long; the longest accepted is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

/// Decodes base64url, with or without padding (standard alphabet accepted too).
pub fn decode_b64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let trimmed = text.trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(trimmed).ok().or_else(|| STANDARD.decode(text).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_percent_decoded_to_bytes() {
        let mut p = Params::parse(Some("prefix=a%2Fb+c&key_b64=_w&filter=x&filter=y%3D%3D1&flag")).unwrap();
        assert_eq!(p.take_bytes("prefix").unwrap(), Some(b"a/b c".to_vec()));
        assert_eq!(p.take_key("key").unwrap(), Some(Bytes::from_static(b"\xff")));
        assert_eq!(p.take_all_str("filter").unwrap(), vec!["x", "y==1"]);
        assert!(p.take_bool("flag").unwrap());
        p.finish("").unwrap();
    }

    #[test]
    fn errors_name_the_parameter() {
        let mut p = Params::parse(Some("limit=ten&x=1&limit2=0")).unwrap();
        assert!(p.take_int("limit", 1, 10).unwrap_err().to_string().contains("`limit`"));
        assert!(p.take_int("limit2", 1, 10).unwrap_err().to_string().contains("between 1 and 10"));
        assert!(p.finish("limit").unwrap_err().to_string().contains("`x`"));
        let mut p = Params::parse(Some("a=%FF")).unwrap();
        assert!(p.take_str("a").unwrap_err().to_string().contains("UTF-8"));
    }
}
