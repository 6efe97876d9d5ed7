//! Finding the namespace a `/v1/namespaces/{ns}/...` request names, for
//! every `/v1` route: the path is split here, once, and the caller's right
//! to read the namespace is checked here, once.

use std::sync::Arc;

use percent_encoding::percent_decode_str;

use crate::error::ApiError;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::namespaces::Namespace;

/// The namespace segment and the rest of a `/v1/namespaces/{ns}/...` path,
/// both still percent-encoded.
pub fn split_path(path: &str) -> (&str, &str) {
    let rest = path.strip_prefix("/v1/namespaces/").unwrap_or_default();
    rest.split_once('/').unwrap_or((rest, ""))
}

/// The namespace named by a (percent-encoded) path segment, if the caller
/// may read it. A token limited to some namespaces gets 403 for any other
/// name, existing or not, so it learns nothing about the rest.
pub fn namespace<'a>(
    state: &'a AppState,
    segment: &str,
    caller: &Caller,
) -> Result<&'a Arc<Namespace>, ApiError> {
    let name = percent_decode_str(segment).decode_utf8_lossy();
    if !caller.may_read(&name) {
        return Err(ApiError::Forbidden { namespace: name.into_owned() });
    }
    state.namespaces.get(&name).ok_or_else(|| ApiError::NamespaceNotFound { namespace: name.into_owned() })
}

/// The namespace of a request's path (see [`namespace`]).
pub fn of_path<'a>(state: &'a AppState, path: &str, caller: &Caller) -> Result<&'a Arc<Namespace>, ApiError> {
    namespace(state, split_path(path).0, caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_namespace_and_rest() {
        assert_eq!(split_path("/v1/namespaces/apps/kv/a/b"), ("apps", "kv/a/b"));
        assert_eq!(split_path("/v1/namespaces/apps"), ("apps", ""));
        assert_eq!(split_path("/v1/namespaces/a%2Fb/watch"), ("a%2Fb", "watch"));
    }
}
