//! Tokens and isolation: every read and watch route answers 401/403/200 as
//! it should for each token and each transport, and no request can see a key
//! of another namespace whatever bytes it sends.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use etcd_cache_gateway::config::{Config, NamespaceConfig, TokenConfig};
use serde_json::Value;

use crate::support::http::get_with;
use crate::support::sse::SseClient;
use crate::support::{Etcd, Gateway};

const TOKEN_A: &str = "token-for-a-only";
const TOKEN_B: &str = "token-for-b-only";
const TOKEN_AB: &str = "token-for-a-and-b";

fn two_namespaces(endpoints: &[String]) -> Config {
    let mut config = Gateway::config(endpoints);
    config.namespaces = vec![
        NamespaceConfig { name: "a".into(), prefix: "a/".into(), max_subscribers: None },
        NamespaceConfig { name: "b".into(), prefix: "b/".into(), max_subscribers: None },
    ];
    config
}

fn token(name: &str, secret: &str, namespaces: &[&str]) -> TokenConfig {
    TokenConfig {
        name: name.into(),
        secret: Some(secret.into()),
        secret_env: None,
        secret_file: None,
        namespaces: namespaces.iter().map(|s| (*s).into()).collect(),
        write: false,
    }
}

/// Request headers and query suffix presenting `secret` by `transport`.
fn present(transport: &str, secret: Option<&str>) -> (Vec<(String, String)>, String) {
    match (transport, secret) {
        (_, None) => (vec![], String::new()),
        ("header", Some(s)) => (vec![("authorization".into(), format!("Bearer {s}"))], String::new()),
        ("query", Some(s)) => (vec![], format!("access_token={s}")),
        ("cookie", Some(s)) => {
            (vec![("cookie".into(), format!("theme=dark; gateway_token={s}"))], String::new())
        }
        _ => unreachable!(),
    }
}

fn with_query(path: &str, query: &str) -> String {
    match (query.is_empty(), path.contains('?')) {
        (true, _) => path.to_owned(),
        (false, true) => format!("{path}&{query}"),
        (false, false) => format!("{path}?{query}"),
    }
}

#[tokio::test]
async fn every_route_answers_by_token_and_transport() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    client.put("a/k", "in a", None).await.unwrap();
    client.put("b/k", "in b", None).await.unwrap();
    let mut config = two_namespaces(&[etcd.endpoint()]);
    config.tokens =
        vec![token("a", TOKEN_A, &["a"]), token("b", TOKEN_B, &["b"]), token("ab", TOKEN_AB, &["a", "b"])];
    let gw = Gateway::start_ready(config).await;

    let secrets: [(Option<&str>, &str); 5] = [
        (None, "none"),
        (Some("not-a-token-at-all"), "bad"),
        (Some(TOKEN_A), "a"),
        (Some(TOKEN_B), "b"),
        (Some(TOKEN_AB), "ab"),
    ];
    for transport in ["header", "query", "cookie"] {
        for (secret, who) in secrets {
            let (headers, query) = present(transport, secret);
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            // The namespace list shows exactly what the token may read.
            let list = get_with(&gw.url(&with_query("/v1/namespaces", &query)), &headers).await;
            let expected_list: &[&str] = match who {
                "a" => &["a"],
                "b" => &["b"],
                "ab" => &["a", "b"],
                _ => &[],
            };
            if expected_list.is_empty() {
                assert_eq!(list.status, 401, "{transport}/{who}");
                assert_eq!(list.header("www-authenticate"), "Bearer");
                let ways = "this gateway needs a token: send it as the header `Authorization: Bearer <token>`, as \
                            the query parameter `access_token=<token>`, or as the cookie `gateway_token=<token>`";
                let detail = if who == "bad" {
                    format!("the token presented is not valid; {ways}")
                } else {
                    ways.to_owned()
                };
                assert_eq!(list.json()["detail"], detail, "{transport}/{who}");
            } else {
                let names: Vec<String> = list.json()["namespaces"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n["name"].as_str().unwrap().to_owned())
                    .collect();
                assert_eq!(names, expected_list, "{transport}/{who}");
                assert!(
                    list.json()["namespaces"][0].get("prefix").is_none(),
                    "prefixes are hidden from scoped tokens"
                );
            }
            for ns in ["a", "b"] {
                let expected = match (who, ns) {
                    ("none" | "bad", _) => 401,
                    ("a", "a") | ("b", "b") | ("ab", _) => 200,
                    _ => 403,
                };
                for path in [
                    format!("/v1/namespaces/{ns}/kv/k"),
                    format!("/v1/namespaces/{ns}/kv"),
                    format!("/v1/namespaces/{ns}/kv?key=k"),
                ] {
                    let reply = get_with(&gw.url(&with_query(&path, &query)), &headers).await;
                    assert_eq!(reply.status, expected, "{transport}/{who} {path}");
                    if expected != 200 {
                        let code = if expected == 401 { "unauthorized" } else { "forbidden" };
                        assert_eq!(reply.json()["code"], code);
                        assert!(
                            !String::from_utf8_lossy(&reply.body).contains(secret.unwrap_or("\u{0}")),
                            "no echo of the secret"
                        );
                    }
                }
                let watch = gw.url(&with_query(&format!("/v1/namespaces/{ns}/watch"), &query));
                let sse = SseClient::open_with(&watch, &headers).await;
                assert_eq!(sse.status, expected, "{transport}/{who} watch {ns}");
            }
        }
    }
    // Health, readiness and the spec stay open.
    for path in ["/healthz", "/readyz", "/openapi.yaml"] {
        assert_eq!(get_with(&gw.url(path), &[]).await.status, 200, "{path}");
    }
    // A token for a missing namespace learns nothing: 403, as for an existing one.
    let reply =
        get_with(&gw.url("/v1/namespaces/zzz/kv"), &[("authorization", &format!("Bearer {TOKEN_A}"))]).await;
    assert_eq!(reply.status, 403);
}

#[tokio::test]
async fn a_token_at_its_stream_limit_cannot_open_more_and_another_still_can() {
    let etcd = Etcd::start().await;
    let mut config = two_namespaces(&[etcd.endpoint()]);
    config.tokens = vec![token("a", TOKEN_A, &["a"]), token("ab", TOKEN_AB, &["a", "b"])];
    config.watch.max_streams_per_token = Some(2);
    let gw = Gateway::start_ready(config).await;
    let url = |secret: &str| gw.url(&format!("/v1/namespaces/a/watch?access_token={secret}"));
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = SseClient::open(&url(TOKEN_A)).await;
        assert_eq!(s.next().await.event, "synced");
        held.push(s);
    }
    let refused = get_with(&url(TOKEN_A), &[]).await;
    assert_eq!(
        (refused.status, refused.json()["code"].as_str(), refused.header("retry-after")),
        (429, Some("too_many_watchers"), "5"),
        "the token's own limit: too many requests of its own"
    );
    assert_eq!(
        refused.json()["detail"],
        "token \"a\" already has 2 watch streams open, its limit (watch.max_streams_per_token = 2); close one or \
         try again later"
    );
    let mut other = SseClient::open(&url(TOKEN_AB)).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.next().await.event, "synced");
    drop(held);
    crate::support::wait_until(
        "a closed stream frees the token's place",
        Duration::from_secs(10),
        || async { reqwest::get(url(TOKEN_A)).await.unwrap().status() == 200 },
    )
    .await;
}

/// Keys in JSON answers (strings or base64), collected from any value.
fn keys_in(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(key)) = map.get("key") {
                out.insert(key.clone());
            }
            map.values().for_each(|v| keys_in(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| keys_in(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn no_request_escapes_its_namespace() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    // Keys of namespace a (prefix "a/"), and keys just around it that belong to others.
    for key in ["a/1", "a/2", "a/z"] {
        client.put(key, "mine", None).await.unwrap();
    }
    for key in ["b/secret", "a", "a0", "a.", "a/".trim_end_matches('/'), "0", "\u{7f}"] {
        client.put(key, "NOT MINE", None).await.unwrap();
    }
    client.put(b"a0\xff".to_vec(), "NOT MINE", None).await.unwrap();
    let last = client.put("b/last", "NOT MINE", None).await.unwrap().header().unwrap().revision();
    let mut config = two_namespaces(&[etcd.endpoint()]);
    config.tokens = vec![token("a", TOKEN_A, &["a"])];
    let gw = Gateway::start_ready(config).await;
    let auth = format!("Bearer {TOKEN_A}");
    let auth = [("authorization", auth.as_str())];
    let b64 = |k: &[u8]| URL_SAFE_NO_PAD.encode(k);
    let long = "x".repeat(5000);
    let attempts = vec![
        "/v1/namespaces/a/kv".to_owned(),
        "/v1/namespaces/a/kv?prefix=".to_owned(),
        "/v1/namespaces/a/kv?start=".to_owned(),
        "/v1/namespaces/a/kv?start=%00".to_owned(),
        "/v1/namespaces/a/kv?end=%FF%FF%FF".to_owned(),
        "/v1/namespaces/a/kv?start=../b&end=~".to_owned(),
        "/v1/namespaces/a/kv?prefix=../".to_owned(),
        "/v1/namespaces/a/kv?prefix=..%2Fb".to_owned(),
        format!("/v1/namespaces/a/kv?start_b64={}&end_b64={}", b64(b"\x00"), b64(b"\xff\xff")),
        format!("/v1/namespaces/a/kv?prefix_b64={}", b64(b"\xff")),
        format!("/v1/namespaces/a/kv?key_b64={}", b64(b"../b/secret")),
        format!("/v1/namespaces/a/kv?key_b64={}", b64(b"b/secret")),
        format!("/v1/namespaces/a/kv?key_b64={}", b64(b"/b/secret")),
        "/v1/namespaces/a/kv/..%2Fb%2Fsecret".to_owned(),
        "/v1/namespaces/a/kv/../b/secret".to_owned(),
        "/v1/namespaces/a/kv/%2E%2E/b/secret".to_owned(),
        "/v1/namespaces/a/kv/b/secret".to_owned(),
        "/v1/namespaces/a/kv//b/secret".to_owned(),
        format!("/v1/namespaces/a/kv/{long}"),
        format!("/v1/namespaces/a/kv?prefix={long}"),
        "/v1/namespaces/a/kv?start=z&end=%FF".to_owned(),
        "/v1/namespaces/a/kv?count_only=true".to_owned(),
        "/v1/namespaces/a/kv?keys_only=true&limit=1".to_owned(),
        format!("/v1/namespaces/a/kv?revision={last}"),
        "/v1/namespaces/a%2F..%2Fb/kv".to_owned(),
        "/v1/namespaces/a/../b/kv".to_owned(),
    ];
    assert!(attempts.len() >= 20);
    let mine: BTreeSet<String> = ["1", "2", "z"].into_iter().map(String::from).collect();
    for path in &attempts {
        // (Clients normalize `..` segments away; such a request then names namespace b: 403.)
        let reply = get_with(&gw.url(&with_query(path, &format!("min_revision={last}"))), &auth).await;
        let body = String::from_utf8_lossy(&reply.body).into_owned();
        assert!(!body.contains("NOT MINE") && !body.contains("secret\",\"value"), "{path}: {body}");
        if reply.status == 200 {
            let mut keys = BTreeSet::new();
            keys_in(&reply.json(), &mut keys);
            assert!(keys.is_subset(&mine), "{path}: {keys:?}");
        }
        if path.contains("count_only") {
            assert_eq!(reply.json()["count"], 3);
        }
    }
    // Watches: snapshots of every selection hold only the namespace's keys.
    for query in [
        "",
        "prefix=",
        "start=%00",
        "end=%FF%FF",
        "prefix=..%2Fb",
        &format!("key_b64={}", b64(b"../b/secret")),
    ] {
        let mut sse =
            SseClient::open_with(&gw.url(&format!("/v1/namespaces/a/watch?snapshot=true&{query}")), &auth)
                .await;
        let mut keys = BTreeSet::new();
        loop {
            let e = sse.next().await;
            keys_in(&e.data, &mut keys);
            if e.event == "synced" {
                break;
            }
        }
        assert!(keys.is_subset(&mine), "watch {query}: {keys:?}");
    }
    // And changes of b never reach a's subscribers.
    let mut sse = SseClient::open_with(&gw.url("/v1/namespaces/a/watch"), &auth).await;
    assert_eq!(sse.next().await.event, "synced");
    client.put("b/new", "NOT MINE", None).await.unwrap();
    client.put("a0new", "NOT MINE", None).await.unwrap();
    let mine_rev = client.put("a/new", "mine", None).await.unwrap().header().unwrap().revision();
    let e = sse.next_not_progress().await;
    assert_eq!((e.id, e.data["events"][0]["kv"]["key"].as_str()), (mine_rev.to_string(), Some("new")));
}
