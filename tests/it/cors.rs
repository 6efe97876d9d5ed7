//! CORS from the configured allowlist: headers on reads, errors, SSE and
//! preflights for allowed origins; none for others.

use crate::support::http::get_with;
use crate::support::{Etcd, Gateway};

#[tokio::test]
async fn allowed_origins_get_cors_headers_everywhere_and_others_none() {
    let etcd = Etcd::start().await;
    let mut config = Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/");
    config.http.cors_origins = vec!["http://app.example".into()];
    let gw = Gateway::start_ready(config).await;
    let allowed = [("origin", "http://app.example")];
    let other = [("origin", "http://evil.example")];
    for path in
        ["/v1/namespaces/app/kv", "/v1/namespaces/app/kv/missing", "/v1/namespaces/nope/kv", "/readyz"]
    {
        let reply = get_with(&gw.url(path), &allowed).await;
        assert_eq!(reply.header("access-control-allow-origin"), "http://app.example", "{path}");
        // Listed origins may send the token cookie.
        assert_eq!(reply.header("access-control-allow-credentials"), "true", "{path}");
        let exposed = reply.header("access-control-expose-headers").to_ascii_lowercase();
        for name in ["x-etcd-revision", "x-cache-status", "etag"] {
            assert!(exposed.contains(name), "{path}: {exposed}");
        }
        let reply = get_with(&gw.url(path), &other).await;
        assert_eq!(reply.header("access-control-allow-origin"), "", "{path}");
    }
    // SSE responses carry the headers too (read the head only).
    let client = reqwest::Client::new();
    let sse = client
        .get(gw.url("/v1/namespaces/app/watch"))
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.headers()["access-control-allow-origin"], "http://app.example");
    drop(sse);
    // A preflight for a resume with Last-Event-ID.
    let preflight = client
        .request(reqwest::Method::OPTIONS, gw.url("/v1/namespaces/app/watch"))
        .header("origin", "http://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "last-event-id,authorization")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let allow_headers =
        preflight.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(
        allow_headers.contains("last-event-id") && allow_headers.contains("authorization"),
        "{allow_headers}"
    );
    assert_eq!(preflight.headers()["access-control-allow-origin"], "http://app.example");
}

#[tokio::test]
async fn any_origin_gets_cors_headers_but_no_credentials() {
    let etcd = Etcd::start().await;
    let mut config = Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/");
    config.http.cors_origins = vec!["*".into()];
    let gw = Gateway::start_ready(config).await;
    let reply = get_with(&gw.url("/v1/namespaces/app/kv"), &[("origin", "http://anywhere.example")]).await;
    assert_eq!(reply.header("access-control-allow-origin"), "*");
    assert_eq!(reply.header("access-control-allow-credentials"), "", "`*` never carries credentials");
}
