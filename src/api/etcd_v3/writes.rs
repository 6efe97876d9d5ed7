//! Writes and lease calls, forwarded to etcd when `etcd_api.writes =
//! "forward"` and the caller may write (a token with `write = true`, or
//! anyone when no tokens are configured): `put`, `deleterange` and `txn`
//! only on keys of namespaces the caller may read (a txn touching any key
//! outside them is refused whole); lease grants, revocations and
//! keep-alives with the write permission alone; lease reads for any caller
//! that may read.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde::Deserialize;

use super::error::EtcdError;
use super::wire::EtcdBody;
use super::{EtcdV3, keys, wire};
use crate::config::EtcdWrites;
use crate::http::auth::Caller;

/// A key or a range of a request (`key`, `range_end`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Keys {
    #[serde(deserialize_with = "wire::bytes")]
    key: Vec<u8>,
    #[serde(alias = "rangeEnd", deserialize_with = "wire::bytes")]
    range_end: Vec<u8>,
}

/// One operation of a txn.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RequestOp {
    #[serde(alias = "requestRange")]
    request_range: Option<Keys>,
    #[serde(alias = "requestPut")]
    request_put: Option<Keys>,
    #[serde(alias = "requestDeleteRange")]
    request_delete_range: Option<Keys>,
    #[serde(alias = "requestTxn")]
    request_txn: Option<Txn>,
}

/// A txn: its compares and both branches.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Txn {
    #[serde(deserialize_with = "wire::list")]
    compare: Vec<Keys>,
    #[serde(deserialize_with = "wire::list")]
    success: Vec<RequestOp>,
    #[serde(deserialize_with = "wire::list")]
    failure: Vec<RequestOp>,
}

impl Txn {
    /// Every key or range the txn names, nested txns included.
    fn ranges<'a>(&'a self, out: &mut Vec<&'a Keys>) {
        out.extend(&self.compare);
        for op in self.success.iter().chain(&self.failure) {
            out.extend(op.request_range.iter().chain(&op.request_put).chain(&op.request_delete_range));
            if let Some(txn) = &op.request_txn {
                txn.ranges(out);
            }
        }
    }
}

/// The caller, if it may write at all.
fn writer(api: &EtcdV3, headers: &HeaderMap) -> Result<Caller, EtcdError> {
    let caller = keys::caller(&api.app, headers)?;
    if api.app.config.etcd_api.writes != EtcdWrites::Forward {
        return Err(EtcdError::denied("the gateway is read-only (etcd_api.writes = \"deny\")"));
    }
    if !caller.may_write() {
        return Err(EtcdError::denied("this token may not write (write = false)"));
    }
    Ok(caller)
}

/// Refuses unless every range lies in a namespace the caller may read.
fn check(api: &EtcdV3, caller: &Caller, ranges: &[&Keys]) -> Result<(), EtcdError> {
    for keys in ranges {
        keys::locate(&api.app.namespaces, caller, &keys.key, &keys.range_end)?;
    }
    Ok(())
}

/// `POST /v3/kv/put`.
pub async fn put(
    State(api): State<EtcdV3>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    EtcdBody(body): EtcdBody,
) -> Result<Response, EtcdError> {
    let caller = writer(&api, &headers)?;
    let keys: Keys = wire::parse(&body)?;
    // A put names one key, whatever `range_end` a body may carry.
    check(&api, &caller, &[&Keys { key: keys.key, range_end: Vec::new() }])?;
    api.forward.send(Method::POST, uri.path(), body).await
}

/// `POST /v3/kv/deleterange`.
pub async fn delete_range(
    State(api): State<EtcdV3>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    EtcdBody(body): EtcdBody,
) -> Result<Response, EtcdError> {
    let caller = writer(&api, &headers)?;
    let keys: Keys = wire::parse(&body)?;
    check(&api, &caller, &[&keys])?;
    api.forward.send(Method::POST, uri.path(), body).await
}

/// `POST /v3/kv/txn`: refused whole when any compare or operation names a
/// key outside the caller's namespaces.
pub async fn txn(
    State(api): State<EtcdV3>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    EtcdBody(body): EtcdBody,
) -> Result<Response, EtcdError> {
    let caller = writer(&api, &headers)?;
    let txn: Txn = wire::parse(&body)?;
    let mut ranges = Vec::new();
    txn.ranges(&mut ranges);
    check(&api, &caller, &ranges)?;
    api.forward.send(Method::POST, uri.path(), body).await
}

/// Lease grant, revoke and keep-alive (a stream of `{"result":…}`).
pub async fn lease_change(
    State(api): State<EtcdV3>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    EtcdBody(body): EtcdBody,
) -> Result<Response, EtcdError> {
    writer(&api, &headers)?;
    wire::parse::<serde::de::IgnoredAny>(&body)?;
    api.forward.send(Method::POST, uri.path(), body).await
}

/// Lease time-to-live and listing: any caller that may read.
pub async fn lease_read(
    State(api): State<EtcdV3>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    EtcdBody(body): EtcdBody,
) -> Result<Response, EtcdError> {
    keys::caller(&api.app, &headers)?;
    wire::parse::<serde::de::IgnoredAny>(&body)?;
    api.forward.send(Method::POST, uri.path(), body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_txn_names_every_key_of_its_compares_and_branches() {
        let body = br#"{"compare":[{"key":"YQ==","target":"VERSION"}],
            "success":[{"request_put":{"key":"Yg==","value":"eA=="}},
                       {"requestTxn":{"failure":[{"request_delete_range":{"key":"Yw==","range_end":"ZA=="}}]}}],
            "failure":[{"request_range":{"key":"ZQ=="}}]}"#;
        let txn: Txn = wire::parse(body).unwrap();
        let mut ranges = Vec::new();
        txn.ranges(&mut ranges);
        let keys: Vec<(&[u8], &[u8])> = ranges.iter().map(|k| (&k.key[..], &k.range_end[..])).collect();
        assert_eq!(keys, vec![(&b"a"[..], &b""[..]), (b"b", b""), (b"c", b"d"), (b"e", b"")]);
    }
}
