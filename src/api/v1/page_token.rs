//! Opaque page tokens: version byte, the revision every page is read at, a
//! fingerprint of the query (a token only continues the listing it came
//! from), and the position of the last item returned: its sort value (0 in
//! key order) and its key. base64url without padding.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;

use crate::cache::Revision;
use crate::error::ApiError;

/// Version 2 added the sort value and bound tokens to their namespace (a
/// version 1 token is refused: its listing starts again).
const VERSION: u8 = 2;
const HEADER_LEN: usize = 1 + 8 + 8 + 8;

/// The position of an item in a listing's order: its sort value (0 when
/// listing by key) and its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// The value sorted by (a revision or a version), 0 in key order.
    pub value: i64,
    /// The key (relative to the namespace).
    pub key: Bytes,
}

/// Where the next page of a listing starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    /// The revision all pages are read at (the first page's).
    pub revision: Revision,
    /// Fingerprint of the query the token belongs to.
    pub fingerprint: u64,
    /// The last item of the previous page.
    pub last: Position,
}

impl PageToken {
    /// The token's text.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(HEADER_LEN + self.last.key.len());
        raw.push(VERSION);
        raw.extend_from_slice(&self.revision.to_be_bytes());
        raw.extend_from_slice(&self.fingerprint.to_be_bytes());
        raw.extend_from_slice(&self.last.value.to_be_bytes());
        raw.extend_from_slice(&self.last.key);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Parses a token and checks it belongs to the query with `fingerprint`.
    ///
    /// # Errors
    /// 400 `bad_request` for a malformed, forged or foreign token.
    pub fn decode(text: &str, fingerprint: u64) -> Result<Self, ApiError> {
        let malformed = || ApiError::bad_request("parameter `page_token` is not a token this gateway issued");
        let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| malformed())?;
        if raw.len() < HEADER_LEN || raw[0] != VERSION {
            return Err(malformed());
        }
        let number = |at: usize| raw[at..at + 8].try_into().map_err(|_| malformed());
        let revision = Revision::from_be_bytes(number(1)?);
        let token_fingerprint = u64::from_be_bytes(number(9)?);
        let value = i64::from_be_bytes(number(17)?);
        if revision < 1 {
            return Err(malformed());
        }
        if token_fingerprint != fingerprint {
            return Err(ApiError::bad_request(
                "parameter `page_token` belongs to another listing: repeat the same parameters",
            ));
        }
        let last = Position { value, key: Bytes::copy_from_slice(&raw[HEADER_LEN..]) };
        Ok(Self { revision, fingerprint, last })
    }
}

/// FNV-1a over the parts of a query that decide which keys are listed;
/// stable across processes and versions, so any replica accepts a token.
pub fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_forgeries() {
        let last = Position { value: -3, key: Bytes::from_static(b"a/\xffb") };
        let t = PageToken { revision: 42, fingerprint: 7, last };
        assert_eq!(PageToken::decode(&t.encode(), 7).unwrap(), t);
        assert!(PageToken::decode(&t.encode(), 8).is_err(), "another listing's token");
        assert!(PageToken::decode("not-a-token", 7).is_err());
        assert!(PageToken::decode("", 7).is_err());
        let mut raw = URL_SAFE_NO_PAD.decode(t.encode()).unwrap();
        raw[0] = 9;
        assert!(PageToken::decode(&URL_SAFE_NO_PAD.encode(raw), 7).is_err(), "unknown version");
        assert_ne!(fingerprint([&b"ab"[..], b"c"]), fingerprint([&b"a"[..], b"bc"]));
    }
}
