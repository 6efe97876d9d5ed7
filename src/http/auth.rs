//! Bearer tokens (`[[tokens]]`): who the caller is and which namespaces it
//! may read.
//!
//! A token is accepted from `Authorization: Bearer T`, the `access_token`
//! query parameter (EventSource cannot send headers) or the `gateway_token`
//! cookie, in that order. Secrets are compared in constant time (`subtle`)
//! against every configured token and never logged; cookies are parsed by
//! the `cookie` crate. Without tokens, reads are open.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use percent_encoding::percent_decode_str;
use subtle::ConstantTimeEq;

use super::AppState;
use crate::config::{ConfigError, TokenConfig};
use crate::error::ApiError;

/// Query parameter carrying a token.
pub const ACCESS_TOKEN_PARAM: &str = "access_token";
/// Cookie carrying a token.
pub const TOKEN_COOKIE: &str = "gateway_token";

/// Which namespaces a token may read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    All,
    Only(HashSet<String>),
}

/// A configured token with its resolved secret.
#[derive(Clone)]
pub struct Token {
    /// The token's name (for logs and metrics; never the secret).
    pub name: String,
    secret: Vec<u8>,
    grant: Grant,
    /// May write its namespaces through etcd's JSON API.
    write: bool,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("name", &self.name).field("grant", &self.grant).finish_non_exhaustive()
    }
}

/// Who is calling: nobody in particular (no tokens configured) or a token.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Reads are open.
    Anonymous,
    /// Authenticated by this token.
    Token(Arc<Token>),
}

impl Caller {
    /// Whether the caller may read `namespace`.
    pub fn may_read(&self, namespace: &str) -> bool {
        match self {
            Self::Anonymous => true,
            Self::Token(token) => match &token.grant {
                Grant::All => true,
                Grant::Only(names) => names.contains(namespace),
            },
        }
    }

    /// Whether the caller may write (through etcd's JSON API, where writes
    /// are forwarded): anyone when no tokens are configured, else a token
    /// with `write = true`.
    pub fn may_write(&self) -> bool {
        match self {
            Self::Anonymous => true,
            Self::Token(token) => token.write,
        }
    }

    /// Whether the caller may see namespace prefixes (no auth, or a `*` token).
    pub fn sees_prefixes(&self) -> bool {
        match self {
            Self::Anonymous => true,
            Self::Token(token) => token.grant == Grant::All,
        }
    }

    /// The token's name, for per-token limits.
    pub fn token_name(&self) -> Option<&str> {
        match self {
            Self::Anonymous => None,
            Self::Token(token) => Some(&token.name),
        }
    }
}

/// The label of a token's series: its name, never its secret.
pub fn token_labels(name: &str) -> crate::metrics::Labels {
    vec![("token", name.to_owned())]
}

/// Every configured token.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    tokens: Arc<[Arc<Token>]>,
}

impl Tokens {
    /// Resolves each token's secret (inline, environment variable via `env`,
    /// or file).
    ///
    /// # Errors
    /// A missing variable, an unreadable file, a short secret, or a secret
    /// another token has too, naming the token.
    pub fn resolve(
        configs: &[TokenConfig],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut tokens = Vec::with_capacity(configs.len());
        for (i, t) in configs.iter().enumerate() {
            let bad = |field: &str, value: String, reason: &str| ConfigError {
                field: format!("tokens[{i}].{field}"),
                value,
                reason: reason.to_owned(),
            };
            let secret = match (&t.secret, &t.secret_env, &t.secret_file) {
                (Some(secret), _, _) => secret.clone(),
                (_, Some(var), _) => {
                    env(var).ok_or_else(|| bad("secret_env", var.clone(), "variable is not set"))?
                }
                (_, _, Some(path)) => {
                    read_secret(path).map_err(|e| bad("secret_file", path.display().to_string(), &e))?
                }
                (None, None, None) => {
                    return Err(bad("secret", "(none)".into(), "set one of secret, secret_env, secret_file"));
                }
            };
            let secret = secret.trim().as_bytes().to_vec();
            if secret.len() < 8 {
                return Err(bad("secret", "(redacted)".into(), "must be at least 8 characters"));
            }
            let grant = if t.namespaces.iter().any(|n| n == "*") {
                Grant::All
            } else {
                Grant::Only(t.namespaces.iter().cloned().collect())
            };
            // Two tokens with one secret: the caller would be whichever
            // comes last, with its grant; refuse rather than guess.
            if let Some(other) =
                tokens.iter().find(|o: &&Arc<Token>| bool::from(o.secret.as_slice().ct_eq(&secret)))
            {
                return Err(bad(
                    "secret",
                    "(redacted)".into(),
                    &format!(
                        "is the same as the secret of token {:?}; every token needs its own",
                        other.name
                    ),
                ));
            }
            tokens.push(Arc::new(Token { name: t.name.clone(), secret, grant, write: t.write }));
        }
        Ok(Self { tokens: tokens.into() })
    }

    /// Whether any token is configured (reads then need one).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The caller presenting `secret`.
    ///
    /// # Errors
    /// 401 `unauthorized` when tokens are configured and none matches.
    pub fn authenticate(&self, secret: Option<&[u8]>) -> Result<Caller, ApiError> {
        if !self.enabled() {
            return Ok(Caller::Anonymous);
        }
        let secret = secret.ok_or(ApiError::Unauthorized { presented: false })?;
        // Compare with every token so the time taken says nothing about which matched.
        let mut found = None;
        for token in self.tokens.iter() {
            if bool::from(token.secret.as_slice().ct_eq(secret)) {
                found = Some(token.clone());
            }
        }
        found.map(Caller::Token).ok_or(ApiError::Unauthorized { presented: true })
    }
}

fn read_secret(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// The token a request presents: header, then query, then cookie.
fn presented(headers: &HeaderMap, query: Option<&str>) -> Option<Vec<u8>> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(token.trim().as_bytes().to_vec());
        }
    }
    let from_query = query.into_iter().flat_map(|q| q.split('&')).find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == ACCESS_TOKEN_PARAM).then(|| percent_decode_str(&value.replace('+', " ")).collect())
    });
    if from_query.is_some() {
        return from_query;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse_encoded)
        .filter_map(Result::ok)
        .find(|c| c.name() == TOKEN_COOKIE)
        .map(|c| c.value().as_bytes().to_vec())
}

/// Every `/v1` handler takes a [`Caller`]: 401 `unauthorized` when tokens
/// are configured and the request presents none that is valid. (An
/// extractor, not a middleware: a request pays for authentication only where
/// it is needed, and nothing when no tokens are configured.)
impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let state = AppState::from_ref(state);
        if !state.tokens.enabled() {
            return Ok(Self::Anonymous);
        }
        let secret = presented(&parts.headers, parts.uri.query());
        let caller = state.tokens.authenticate(secret.as_deref())?;
        if let Some(name) = caller.token_name() {
            super::logging::record_token(name);
            state.metrics.token_requests.get_or_create(&token_labels(name)).inc();
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn config(name: &str, secret: &str, namespaces: &[&str]) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            secret: Some(secret.into()),
            secret_env: None,
            secret_file: None,
            namespaces: namespaces.iter().map(|s| (*s).into()).collect(),
            write: false,
        }
    }

    #[test]
    fn secrets_resolve_from_inline_env_and_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"file-secret-123\n").unwrap();
        let mut from_env = config("env", "", &["a"]);
        from_env.secret = None;
        from_env.secret_env = Some("TOKEN_VAR".into());
        let mut from_file = config("file", "", &["*"]);
        from_file.secret = None;
        from_file.secret_file = Some(file.path().into());
        let configs = [config("inline", "inline-secret", &["a", "b"]), from_env, from_file];
        let tokens =
            Tokens::resolve(&configs, |v| (v == "TOKEN_VAR").then(|| "env-secret-123".into())).unwrap();
        for (secret, name) in
            [("inline-secret", "inline"), ("env-secret-123", "env"), ("file-secret-123", "file")]
        {
            let caller = tokens.authenticate(Some(secret.as_bytes())).unwrap();
            assert_eq!(caller.token_name(), Some(name));
        }
        assert!(tokens.authenticate(Some(b"wrong")).is_err());
        assert!(tokens.authenticate(None).is_err());
        let err = Tokens::resolve(&configs[1..2], |_| None).unwrap_err();
        assert_eq!((err.field.as_str(), err.value.as_str()), ("tokens[0].secret_env", "TOKEN_VAR"));
    }

    #[test]
    fn two_tokens_may_not_share_a_secret() {
        let mut other = config("b", "same-secret-1", &["b"]);
        other.secret_env = None;
        let err = Tokens::resolve(&[config("a", "same-secret-1", &["a"]), other], |_| None).unwrap_err();
        assert_eq!(err.field, "tokens[1].secret");
        assert_eq!(err.reason, "is the same as the secret of token \"a\"; every token needs its own");
    }

    #[test]
    fn grants_and_transports() {
        let tokens = Tokens::resolve(&[config("a", "secret-a-123", &["a"])], |_| None).unwrap();
        let caller = tokens.authenticate(Some(b"secret-a-123")).unwrap();
        assert!(caller.may_read("a") && !caller.may_read("b") && !caller.sees_prefixes());
        assert!(!caller.may_write(), "tokens are read-only unless write = true");
        let mut writer = config("w", "secret-w-123", &["a"]);
        writer.write = true;
        let writers = Tokens::resolve(&[writer], |_| None).unwrap();
        assert!(writers.authenticate(Some(b"secret-w-123")).unwrap().may_write());
        assert!(Caller::Anonymous.may_write(), "without tokens, writes are open");
        let mut headers = HeaderMap::new();
        assert_eq!(presented(&headers, Some("x=1&access_token=q%2Bt")), Some(b"q+t".to_vec()));
        headers.insert(header::COOKIE, HeaderValue::from_static("other=1; gateway_token=c%2B1"));
        assert_eq!(presented(&headers, None), Some(b"c+1".to_vec()), "cookie values are percent-decoded");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer h1"));
        assert_eq!(presented(&headers, Some("access_token=q")), Some(b"h1".to_vec()), "the header wins");
        assert!(Tokens::default().authenticate(None).is_ok_and(|c| c.may_read("anything")));
        assert!(tokens.authenticate(Some(b"secret-a-12")).is_err(), "a prefix of the secret");
        assert!(tokens.authenticate(Some(b"secret-a-1234")).is_err(), "the secret and more");
    }
}
