//! Malformed requests: every one gets a 4xx problem+json naming what was
//! wrong; nothing answers 5xx or panics.

use crate::support::http::get;
use crate::support::{Etcd, Gateway};

#[tokio::test]
async fn malformed_requests_get_problems_naming_the_parameter() {
    let etcd = Etcd::start().await;
    let gw = Gateway::start_ready(Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/")).await;
    let mut client = etcd.client().await;
    for i in 0..5 {
        client.put(format!("app/k{i}"), "v", None).await.unwrap();
    }
    let listing = get(&gw.url("/v1/namespaces/app/kv?limit=2&min_revision=6")).await.json();
    let token = listing["next_page_token"].as_str().expect("a second page").to_owned();
    let long = "x".repeat(9000);

    let kv = "/v1/namespaces/app/kv";
    let key = "/v1/namespaces/app/kv/k1";
    let cases: Vec<(String, u16, &str)> = vec![
        (format!("{kv}?limit=abc"), 400, "`limit`"),
        (format!("{kv}?limit=0"), 400, "`limit`"),
        (format!("{kv}?limit=10001"), 400, "`limit`"),
        (format!("{kv}?limit=-5"), 400, "`limit`"),
        (format!("{kv}?limit=1.5"), 400, "`limit`"),
        (format!("{kv}?limit=1&limit=2"), 400, "more than once"),
        (format!("{kv}?revision=abc"), 400, "`revision`"),
        (format!("{kv}?revision=0"), 400, "`revision`"),
        (format!("{kv}?revision=-1"), 400, "`revision`"),
        (format!("{kv}?revision=99999999999999999999"), 400, "`revision`"),
        (format!("{kv}?min_revision=x"), 400, "`min_revision`"),
        (format!("{kv}?min_revision=0"), 400, "`min_revision`"),
        (format!("{kv}?consistent=yes"), 400, "`consistent`"),
        (format!("{kv}?keys_only=yes"), 400, "`keys_only`"),
        (format!("{kv}?count_only=maybe"), 400, "`count_only`"),
        (format!("{kv}?encoding=hex"), 400, "`encoding`"),
        (format!("{kv}?encoding=%FF"), 400, "`encoding`"),
        (format!("{kv}?consistent=true&revision=5"), 400, "at most one"),
        (format!("{kv}?min_revision=3&revision=4"), 400, "at most one"),
        (format!("{kv}?prefix=a&start=b"), 400, "`prefix`"),
        (format!("{kv}?prefix=a&end=b"), 400, "`prefix`"),
        (format!("{kv}?start=b&end=a"), 400, "`end`"),
        (format!("{kv}?keys_only=true&count_only=true"), 400, "`keys_only`"),
        (format!("{kv}?select=a&keys_only=true"), 400, "`select`"),
        (format!("{kv}?select=a&encoding=base64"), 400, "`select`"),
        (format!("{kv}?select=a,,b"), 400, "select"),
        (format!("{kv}?select="), 400, "select"),
        (format!("{kv}?filter=a%3Cthree"), 400, "filter \"a<three\""),
        (format!("{kv}?filter=%3D%3D1"), 400, "filter \"==1\""),
        (format!("{kv}?filter=a..b%3D%3D1"), 400, "filter \"a..b==1\""),
        (format!("{kv}?filter="), 400, "filter \"\""),
        (format!("{kv}?filter=%FF"), 400, "`filter`"),
        (format!("{kv}?page_token=garbage!"), 400, "`page_token`"),
        (format!("{kv}?page_token=AAAA"), 400, "`page_token`"),
        (format!("{kv}?prefix=k&limit=2&page_token={token}"), 400, "`page_token`"),
        (format!("{kv}?limit=2&page_token={token}&revision=3"), 400, "`page_token`"),
        (format!("{kv}?key_b64=!!!"), 400, "`key_b64`"),
        (format!("{kv}?prefix_b64=%25%25"), 400, "`prefix_b64`"),
        (format!("{kv}?prefix=x&prefix_b64=eA"), 400, "`prefix`"),
        (format!("{kv}?foo=1"), 400, "`foo`"),
        (format!("{kv}?prefix={long}"), 400, "`prefix`"),
        (format!("{kv}/{long}"), 400, "`key`"),
        (format!("{key}?limit=5"), 400, "`limit`"),
        (format!("{key}?raw=2"), 400, "`raw`"),
        (format!("{key}?encoding=text"), 400, "`encoding`"),
        (format!("{key}?revision=abc&consistent=true"), 400, "`revision`"),
        (format!("{key}?consistent=true&min_revision=2"), 400, "at most one"),
        (format!("{kv}?key=k1&limit=2"), 400, "`limit`"),
        ("/v1/namespaces/nope/kv".to_owned(), 404, "\"nope\""),
        ("/v1/namespaces/nope/kv/k1".to_owned(), 404, "\"nope\""),
        ("/v1/nothing".to_owned(), 404, "/v1/nothing"),
    ];
    assert!(cases.len() >= 40);
    for (path, status, needle) in cases {
        let reply = get(&gw.url(&path)).await;
        let shown = &path[..path.len().min(120)];
        assert_eq!(reply.status, status, "{shown}: {}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.header("content-type"), "application/problem+json", "{shown}");
        let body = reply.json();
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(needle), "{shown}: detail {detail:?} should name {needle:?}");
        assert_eq!(body["status"], status, "{shown}");
        let code = body["code"].as_str().unwrap();
        assert!(["bad_request", "namespace_not_found", "not_found"].contains(&code), "{shown}: {code}");
    }
}
