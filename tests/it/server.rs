//! The server skeleton: health, readiness against a real etcd, problem+json 404s.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Etcd, EtcdOptions, Gateway, free_port, wait_until};

async fn get(url: &str) -> (u16, String, Value) {
    let resp = reqwest::get(url).await.expect("request");
    let status = resp.status().as_u16();
    let ctype =
        resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = resp.json::<Value>().await.expect("json body");
    (status, ctype, body)
}

#[tokio::test]
async fn unknown_path_is_a_problem_json_404() {
    let etcd = Etcd::start().await;
    let gw = Gateway::start(Gateway::config(&[etcd.endpoint()])).await;
    let (status, ctype, body) = get(&gw.url("/no/such/route")).await;
    assert_eq!(status, 404);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["status"], 404);
    assert_eq!(body["detail"], "no route for /no/such/route");
    assert_eq!(body["type"], "urn:etcd-cache-gateway:problem:not_found");
}

#[tokio::test]
async fn readyz_is_503_while_etcd_is_down_and_200_once_it_answers() {
    let port = free_port();
    let mut etcd = Etcd::single(EtcdOptions { client_port: Some(port), ..EtcdOptions::default() });
    let gw = Gateway::start(Gateway::config(&[etcd.endpoint()])).await;

    let (status, _, body) = get(&gw.url("/healthz")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")), "healthz answers without etcd");
    let (status, ctype, body) = get(&gw.url("/readyz")).await;
    assert_eq!(status, 503);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(body["code"], "not_ready");
    // Why, once the first load failed: in our words, etcd's own text in the log only.
    let why = "loading the namespace failed: etcd is unavailable";
    wait_until("readyz says why it is not ready", Duration::from_secs(20), || async {
        get(&gw.url("/readyz")).await.2["namespaces"][0]["last_error"] == why
    })
    .await;
    let (_, _, body) = get(&gw.url("/readyz")).await;
    assert_eq!(body["detail"], format!("not loaded yet: \"default\" ({why}); the gateway keeps trying"));

    etcd.start_prepared().await;
    wait_until("readyz answers 200", Duration::from_secs(20), || async {
        reqwest::get(gw.url("/readyz")).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}

#[tokio::test]
async fn writes_are_405_problems_that_say_the_gateway_only_reads() {
    let etcd = Etcd::start().await;
    let gw = Gateway::start_ready(Gateway::config(&[etcd.endpoint()])).await;
    let client = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::PUT, "/v1/namespaces/default/kv/a"),
        (reqwest::Method::DELETE, "/v1/namespaces/default/kv/a"),
        (reqwest::Method::POST, "/v1/namespaces/default/kv"),
        (reqwest::Method::POST, "/healthz"),
    ] {
        let reply = client.request(method.clone(), gw.url(path)).body("x").send().await.unwrap();
        assert_eq!(reply.status(), 405, "{method} {path}");
        assert_eq!(reply.headers()["allow"], "GET,HEAD", "{method} {path}");
        assert_eq!(reply.headers()["content-type"], "application/problem+json");
        let body: serde_json::Value = reply.json().await.unwrap();
        assert_eq!(body["code"], "method_not_allowed");
        assert_eq!(
            body["detail"],
            format!(
                "{method} is not allowed on {path}: the gateway only reads on /v1 (allowed: GET, HEAD); write to \
                 etcd itself"
            )
        );
    }
}

#[tokio::test]
async fn shutdown_returns_promptly() {
    let etcd = Etcd::start().await;
    let gw = Gateway::start(Gateway::config(&[etcd.endpoint()])).await;
    let (status, _, _) = get(&gw.url("/healthz")).await;
    assert_eq!(status, 200);
    let took = gw.shutdown().await;
    assert!(took < Duration::from_secs(5), "run returned within the drain deadline: {took:?}");
}

#[tokio::test]
async fn openapi_document_is_served() {
    let etcd = Etcd::start().await;
    let gw = Gateway::start(Gateway::config(&[etcd.endpoint()])).await;
    let resp = reqwest::get(gw.url("/openapi.yaml")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/yaml");
    let body = resp.text().await.unwrap();
    assert_eq!(
        body,
        include_str!("../../openapi/openapi.yaml"),
        "the binary serves the contract in the repository"
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let etcd = Etcd::start().await;
    let gw = Gateway::start(Gateway::config(&[etcd.endpoint()])).await;
    let generated = crate::support::http::get(&gw.url("/healthz")).await;
    let id = generated.header("x-request-id").to_owned();
    assert!(!id.is_empty());
    let next = crate::support::http::get(&gw.url("/nowhere")).await;
    assert_ne!(next.header("x-request-id"), id, "ids are unique");
    let given =
        crate::support::http::get_with(&gw.url("/healthz"), &[("x-request-id", "client-chosen-42")]).await;
    assert_eq!(given.header("x-request-id"), "client-chosen-42", "a client's id is kept");
}

#[tokio::test]
async fn a_token_whose_secret_cannot_be_resolved_stops_the_gateway() {
    let mut config = Gateway::config(&["http://127.0.0.1:1".to_owned()]);
    config.tokens = vec![etcd_cache_gateway::config::TokenConfig {
        name: "ops".into(),
        secret: None,
        secret_env: Some("ECG_TEST_VARIABLE_THAT_IS_NEVER_SET".into()),
        secret_file: None,
        namespaces: vec!["*".into()],
        write: false,
    }];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let result =
        tokio::time::timeout(Duration::from_secs(10), etcd_cache_gateway::run(config, listener, shutdown))
            .await
            .expect("run returns at once");
    let err = result.expect_err("the gateway must not start").to_string();
    assert!(
        err.contains("tokens[0].secret_env") && err.contains("ECG_TEST_VARIABLE_THAT_IS_NEVER_SET"),
        "{err}"
    );
}

#[tokio::test]
async fn etcd_over_tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let tls = crate::support::tls::TlsFiles::generate(dir.path());
    let etcd = Etcd::start_with(EtcdOptions { tls: Some(tls.clone()), ..EtcdOptions::default() }).await;
    assert!(etcd.endpoint().starts_with("https://"));
    let mut client = etcd.client().await;
    let revision = client.put("k", "over tls", None).await.unwrap().header().unwrap().revision();
    let mut config = Gateway::config(&[etcd.endpoint()]);
    config.etcd.tls = Some(etcd_cache_gateway::config::TlsConfig {
        ca_file: Some(tls.ca.clone()),
        cert_file: Some(tls.cert.clone()),
        key_file: Some(tls.key.clone()),
        domain: None,
    });
    let gw = Gateway::start_ready(config).await;
    let (status, _, body) =
        get(&gw.url(&format!("/v1/namespaces/default/kv/k?min_revision={revision}"))).await;
    assert_eq!((status, body["kv"]["value"].as_str()), (200, Some("over tls")));
    let (status, _, body) = get(&gw.url("/v1/namespaces/default/kv/k?consistent=true")).await;
    assert_eq!((status, body["kv"]["value"].as_str()), (200, Some("over tls")), "{body}");
}
