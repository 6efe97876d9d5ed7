//! `POST /v3/auth/authenticate`: etcd's login, for clients configured with
//! an etcd user and password (APISIX's `etcd.user` / `etcd.password`). The
//! user is a token's name and the password its secret; the answer's token
//! is that secret, which the client then sends in `Authorization` as etcd
//! clients do.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::EtcdV3;
use super::error::{Code, EtcdError};
use super::wire::{self, EtcdBody, Header};

/// etcd's `AuthenticateRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuthenticateRequest {
    name: String,
    password: String,
}

/// `POST /v3/auth/authenticate`.
pub async fn authenticate(
    State(api): State<EtcdV3>,
    EtcdBody(body): EtcdBody,
) -> Result<Response, EtcdError> {
    let request: AuthenticateRequest = wire::parse(&body)?;
    if !api.app.tokens.enabled() {
        return Err(EtcdError::new(Code::FailedPrecondition, "etcdserver: authentication is not enabled"));
    }
    let caller = api.app.tokens.authenticate(Some(request.password.as_bytes()));
    let valid = caller.as_ref().is_ok_and(|c| c.token_name() == Some(request.name.as_str()));
    if !valid {
        return Err(EtcdError::new(
            Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password",
        ));
    }
    #[derive(Serialize)]
    struct Answer<'a> {
        header: Header,
        token: &'a str,
    }
    let header = Header { ids: api.ids().await, revision: 0 };
    let body = serde_json::to_vec(&Answer { header, token: &request.password }).unwrap_or_default();
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // The answer carries a secret: no cache may keep it.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
