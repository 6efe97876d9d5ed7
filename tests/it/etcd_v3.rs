//! etcd's own JSON API (`/v3/…`, COMPAT.md §2) against a real etcd: the
//! same raw requests sent to etcd's own gRPC-gateway and to the gateway
//! answer the same JSON, field by field.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use etcd_cache_gateway::config::{
    Config, EtcdWrites, HumanDuration, KubeResourceConfig, NamespaceConfig, TokenConfig,
};
use serde_json::{Value, json};

use crate::support::{Etcd, Gateway};

/// Bound on waiting for one watch message.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

/// A gateway on `etcd` with the etcd API on, namespaces `apps` on `a/`
/// and `bees` on `b/` (absolute keys are mapped onto them).
fn config(etcd: &Etcd) -> Config {
    let mut config = Gateway::config(&[etcd.endpoint()]);
    config.namespaces = [("apps", "a/"), ("bees", "b/")]
        .iter()
        .map(|(name, prefix)| NamespaceConfig {
            name: (*name).into(),
            prefix: (*prefix).into(),
            max_subscribers: None,
        })
        .collect();
    config.etcd_api.enabled = true;
    config.etcd_api.writes = EtcdWrites::Forward;
    config.watch.progress_interval = HumanDuration::secs(1);
    config
}

fn token(name: &str, secret: &str, namespaces: &[&str], write: bool) -> TokenConfig {
    TokenConfig {
        name: name.into(),
        secret: Some(secret.into()),
        secret_env: None,
        secret_file: None,
        namespaces: namespaces.iter().map(|n| (*n).into()).collect(),
        write,
    }
}

/// POSTs `body` to `url`; the status and the JSON answer.
async fn post(url: &str, body: &str, authorization: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).body(body.to_owned());
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}")))
}

/// A `/v3/watch` stream, read one newline-terminated message at a time.
struct WatchReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl WatchReader {
    async fn open(url: &str, body: Value) -> Self {
        let response = reqwest::Client::new().post(url).body(body.to_string()).send().await.expect("watch");
        assert_eq!(response.status(), 200);
        Self { response, buffer: Vec::new() }
    }

    /// The next message, or `None` when the stream ended or nothing came in time.
    async fn next(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).expect("a JSON message"));
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }

    /// Messages until `events` events arrived (progress messages skipped);
    /// the events, flattened.
    async fn events(&mut self, events: usize) -> Vec<Value> {
        let mut all = Vec::new();
        for _ in 0..events + 16 {
            if all.len() >= events {
                break;
            }
            let message = self.next(MESSAGE_TIMEOUT).await.expect("a watch message");
            if let Some(list) = message["result"]["events"].as_array() {
                all.extend(list.iter().cloned());
            }
        }
        all
    }
}

/// Puts and deletes in etcd, returning the revision after each step.
async fn seed(client: &mut etcd_client::Client) -> Vec<i64> {
    let mut revisions = Vec::new();
    for (key, value) in
        [("a/1", "v1"), ("a/2", "v2"), ("a/2", "v2b"), ("a/3", "c"), ("a/3", "b"), ("a/3", "a"), ("b/x", "x")]
    {
        revisions.push(crate::support::etcd::put(client, key, value).await);
    }
    let lease = client.lease_grant(600, None).await.expect("lease").id();
    let put = client
        .put("a/4", "leased", Some(etcd_client::PutOptions::new().with_lease(lease)))
        .await
        .expect("put");
    revisions.push(put.header().expect("header").revision());
    let deleted = client.delete("b/x", None).await.expect("delete");
    revisions.push(deleted.header().expect("header").revision());
    revisions
}

#[tokio::test]
async fn range_answers_equal_etcds_own_gateway() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let revisions = seed(&mut client).await;
    // Namespaces on prefixes, and the whole keyspace as one namespace.
    let gw = Gateway::start_ready(config(&etcd)).await;
    let mut whole = config(&etcd);
    whole.namespaces = Gateway::config(&[]).namespaces;
    let whole = Gateway::start_ready(whole).await;
    let (a, a_end, a3) = (b64("a/"), b64("a0"), b64("a/3"));
    let early = revisions[2];
    let table = [
        json!({"key": b64("a/1")}),
        json!({"key": a3}),
        json!({"key": b64("a/nope")}),
        json!({"key": a, "range_end": a_end}),
        json!({"key": a, "range_end": a_end, "limit": 2}),
        json!({"key": a, "range_end": a_end, "limit": "2", "keys_only": true}),
        json!({"key": a, "range_end": a_end, "limit": 1, "count_only": true}),
        json!({"key": a, "range_end": a_end, "revision": early}),
        json!({"key": a, "range_end": a_end, "revision": early.to_string(), "count_only": true}),
        json!({"key": a, "range_end": a_end, "sort_order": "DESCEND"}),
        json!({"key": a, "range_end": a_end, "sort_order": "DESCEND", "limit": 2}),
        json!({"key": a, "range_end": a_end, "sort_target": "MOD"}),
        json!({"key": a, "range_end": a_end, "sort_target": "VERSION", "sort_order": "DESCEND", "limit": 3}),
        json!({"key": a, "range_end": a_end, "sort_target": "CREATE", "sort_order": 2}),
        json!({"key": a, "range_end": a_end, "sort_target": "VALUE"}),
        json!({"key": a, "range_end": a_end, "min_mod_revision": revisions[3], "limit": 1}),
        json!({"key": a, "range_end": a_end, "max_create_revision": revisions[1], "minModRevision": revisions[2]}),
        json!({"key": a, "rangeEnd": a_end, "keysOnly": true, "serializable": true}),
        json!({"key": a3, "range_end": b64("a/1")}),
        json!({"key": a, "range_end": a_end, "unknown_field": 1}),
        // etcd's errors, same status and body.
        json!({}),
        json!({"range_end": a_end}),
        json!({"key": a, "revision": revisions.last().unwrap() + 100}),
        json!({"key": a, "sort_target": "BOGUS"}),
    ];
    let across = [
        json!({"key": b64("\0"), "range_end": b64("\0"), "keys_only": true}),
        json!({"key": b64("a"), "range_end": b64("c"), "count_only": true}),
    ];
    for request in table.iter().chain(&across) {
        let body = request.to_string();
        let expected = post(&format!("{}/v3/kv/range", etcd.endpoint()), &body, None).await;
        let actual = post(&whole.url("/v3/kv/range"), &body, None).await;
        if body.contains("BOGUS") {
            // Parse errors are Go's (or serde's) own words, and differ
            // between etcd versions: status and code are the contract.
            assert_eq!((actual.0, &actual.1["code"]), (expected.0, &expected.1["code"]), "request {body}");
            continue;
        }
        assert_eq!(actual, expected, "request {body} on the whole keyspace");
        let actual = post(&gw.url("/v3/kv/range"), &body, None).await;
        if across.contains(request) {
            assert_eq!((actual.0, &actual.1["code"]), (403, &json!(7)), "a range across namespaces: {body}");
        } else {
            assert_eq!(actual, expected, "request {body}");
        }
    }
    // A revision etcd compacted: etcd's error; one it still has but the
    // gateway's window does not (none here: the window holds all) is read
    // from etcd.
    etcd.compact(revisions[4]).await;
    for request in [json!({"key": a, "range_end": a_end, "revision": revisions[1]})] {
        let body = request.to_string();
        let expected = post(&format!("{}/v3/kv/range", etcd.endpoint()), &body, None).await;
        let actual = post(&gw.url("/v3/kv/range"), &body, None).await;
        assert_eq!(actual.0, 400);
        assert_eq!(actual, expected, "request {body}");
    }
    // The answers came from the cache: with etcd gone, a serializable read
    // still gets the same answer; a linearizable one cannot be confirmed.
    let serializable = json!({"key": a, "range_end": a_end, "serializable": true}).to_string();
    let before = post(&gw.url("/v3/kv/range"), &serializable, None).await;
    let mut etcd = etcd;
    etcd.kill();
    assert_eq!(post(&gw.url("/v3/kv/range"), &serializable, None).await, before);
    let linearizable = json!({"key": a, "range_end": a_end}).to_string();
    let (status, body) = post(&gw.url("/v3/kv/range"), &linearizable, None).await;
    assert_eq!((status, &body["code"]), (503, &json!(14)), "{body}");
}

#[tokio::test]
async fn version_is_etcds() {
    let etcd = Etcd::start().await;
    let gw = Gateway::start_ready(config(&etcd)).await;
    let expected: Value =
        reqwest::get(format!("{}/version", etcd.endpoint())).await.unwrap().json().await.unwrap();
    let actual: Value = reqwest::get(gw.url("/version")).await.unwrap().json().await.unwrap();
    assert_eq!(actual, expected);
    assert!(actual["etcdserver"].is_string() && actual["etcdcluster"].is_string(), "{actual}");
    drop(gw);

    // With the Kubernetes dialect on too, one `/version` answers both
    // kinds of client: etcd's fields and Kubernetes'.
    let mut both = config(&etcd);
    both.kubernetes.resources = vec![KubeResourceConfig {
        namespace: "apps".into(),
        group: "example.com".into(),
        version: "v1".into(),
        resource: "widgets".into(),
        kind: "Widget".into(),
        key: "widgets/{namespace}/{name}".into(),
    }];
    let gw = Gateway::start_ready(both).await;
    let actual: Value = reqwest::get(gw.url("/version")).await.unwrap().json().await.unwrap();
    assert_eq!(
        (&actual["etcdserver"], &actual["etcdcluster"]),
        (&expected["etcdserver"], &expected["etcdcluster"]),
        "{actual}"
    );
    assert_eq!((actual["major"].as_str(), actual["minor"].as_str()), (Some("1"), Some("32")), "{actual}");
}

#[tokio::test]
async fn tokens_scope_ranges_and_writes_with_etcds_errors() {
    let etcd = Etcd::start().await;
    let mut config = config(&etcd);
    config.tokens = vec![
        token("reader", "reader-secret", &["apps"], false),
        token("writer", "writer-secret", &["apps"], true),
    ];
    let gw = Gateway::start_ready(config).await;
    let url = |path: &str| gw.url(path);
    let range_a = json!({"key": b64("a/"), "range_end": b64("a0")}).to_string();
    let range_b = json!({"key": b64("b/"), "range_end": b64("b0")}).to_string();
    let range_all = json!({"key": b64("\0"), "range_end": b64("\0")}).to_string();

    let (status, body) = post(&url("/v3/kv/range"), &range_a, None).await;
    assert_eq!((status, &body["code"]), (401, &json!(16)), "{body}");
    assert_eq!(body["error"], body["message"]);
    let (status, _) = post(&url("/v3/kv/range"), &range_a, Some("wrong-secret")).await;
    assert_eq!(status, 401);
    // etcd clients send the raw token; others a bearer token.
    for auth in ["reader-secret", "Bearer reader-secret"] {
        let (status, body) = post(&url("/v3/kv/range"), &range_a, Some(auth)).await;
        assert_eq!(status, 200, "{body}");
    }
    for range in [&range_b, &range_all] {
        let (status, body) = post(&url("/v3/kv/range"), range, Some("reader-secret")).await;
        assert_eq!((status, &body["code"]), (403, &json!(7)), "{body}");
        assert!(
            body["message"].as_str().unwrap().starts_with("etcdserver: permission denied: range"),
            "{body}"
        );
    }

    let put_a = json!({"key": b64("a/w"), "value": b64("1")}).to_string();
    let (status, body) = post(&url("/v3/kv/put"), &put_a, Some("reader-secret")).await;
    assert_eq!((status, &body["code"]), (403, &json!(7)), "a read-only token: {body}");
    let (status, body) = post(&url("/v3/kv/put"), &put_a, Some("writer-secret")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["header"]["revision"].is_string(), "{body}");
    let put_b = json!({"key": b64("b/w"), "value": b64("1")}).to_string();
    let (status, _) = post(&url("/v3/kv/put"), &put_b, Some("writer-secret")).await;
    assert_eq!(status, 403, "a key outside the token's namespaces");
    // A txn touching one key outside is refused whole: nothing is written.
    let txn = json!({"compare": [{"key": b64("a/w"), "target": "VERSION", "version": "1"}],
                     "success": [{"request_put": {"key": b64("a/t"), "value": b64("1")}},
                                 {"request_delete_range": {"key": b64("b/"), "range_end": b64("b0")}}]})
    .to_string();
    let (status, body) = post(&url("/v3/kv/txn"), &txn, Some("writer-secret")).await;
    assert_eq!((status, &body["code"]), (403, &json!(7)), "{body}");
    let got = etcd.client().await.get("a/t", None).await.unwrap();
    assert_eq!(got.count(), 0, "the refused txn wrote nothing");
    let lease = json!({"TTL": "30"}).to_string();
    let (status, _) = post(&url("/v3/lease/grant"), &lease, Some("reader-secret")).await;
    assert_eq!(status, 403);
    let (status, body) = post(&url("/v3/lease/grant"), &lease, Some("writer-secret")).await;
    assert_eq!((status, &body["TTL"]), (200, &json!("30")), "{body}");
    // etcd's login: a token's name and secret give the token etcd clients send.
    let login = |name: &str, password: &str| json!({"name": name, "password": password}).to_string();
    let (status, body) = post(&url("/v3/auth/authenticate"), &login("reader", "reader-secret"), None).await;
    assert_eq!((status, &body["token"]), (200, &json!("reader-secret")), "{body}");
    let (status, body) = post(&url("/v3/auth/authenticate"), &login("writer", "reader-secret"), None).await;
    assert_eq!((status, &body["code"]), (400, &json!(3)), "another token's secret: {body}");
    let (status, body) = post(&url("/v3/lease/leases"), "{}", Some("reader-secret")).await;
    assert_eq!((status, body["leases"].as_array().map(Vec::len)), (200, Some(1)), "{body}");
}

#[tokio::test]
async fn writes_are_refused_when_the_api_is_read_only() {
    let etcd = Etcd::start().await;
    let mut config = config(&etcd);
    config.etcd_api.writes = EtcdWrites::Deny;
    let gw = Gateway::start_ready(config).await;
    let put = json!({"key": b64("a/w"), "value": b64("1")}).to_string();
    for path in ["/v3/kv/put", "/v3/kv/deleterange", "/v3/kv/txn", "/v3/lease/grant", "/v3/kv/lease/revoke"] {
        let (status, body) = post(&gw.url(path), &put, None).await;
        assert_eq!((status, &body["code"]), (403, &json!(7)), "{path}: {body}");
    }
    let login = json!({"name": "root", "password": "secret"}).to_string();
    let expected = post(&format!("{}/v3/auth/authenticate", etcd.endpoint()), &login, None).await;
    let actual = post(&gw.url("/v3/auth/authenticate"), &login, None).await;
    assert_eq!(actual.1, expected.1, "auth is not enabled");
    // etcd 3.4's grpc-gateway answers FailedPrecondition with 412 (3.5's with 400).
    assert_eq!(actual.0, 412);
    let (status, body) = post(&gw.url("/v3/kv/put"), "not json", None).await;
    assert_eq!((status, &body["code"]), (403, &json!(7)), "refused before parsing: {body}");
    assert_eq!(etcd.client().await.get("a/w", None).await.unwrap().count(), 0);
}

#[tokio::test]
async fn forwarded_writes_answer_as_etcd_does() {
    let etcd = Etcd::start().await;
    let gw = Gateway::start_ready(config(&etcd)).await;
    let put =
        |key: &str, value: &str| json!({"key": b64(key), "value": b64(value), "prev_kv": true}).to_string();
    let (status, first) = post(&gw.url("/v3/kv/put"), &put("a/k", "1"), None).await;
    assert_eq!(status, 200);
    let (_, second) = post(&gw.url("/v3/kv/put"), &put("a/k", "2"), None).await;
    let revision: i64 = first["header"]["revision"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        second["prev_kv"],
        json!({"key": b64("a/k"), "create_revision": revision.to_string(), "mod_revision": revision.to_string(),
               "version": "1", "value": b64("1")})
    );
    let delete = json!({"key": b64("a/k"), "prev_kv": true}).to_string();
    let (status, deleted) = post(&gw.url("/v3/kv/deleterange"), &delete, None).await;
    assert_eq!((status, &deleted["deleted"]), (200, &json!("1")), "{deleted}");
    let (status, body) = post(&gw.url("/v3/kv/put"), "{\"key\":5}", None).await;
    assert_eq!((status, &body["code"]), (400, &json!(3)), "etcd's own parse error: {body}");
}

#[tokio::test]
async fn watch_streams_equal_etcds_own() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let revisions = seed(&mut client).await;
    // Started after the writes: the cache's window begins at its load, so
    // the replay below is caught up from etcd.
    let gw = Gateway::start_ready(config(&etcd)).await;
    let head = *revisions.last().unwrap();
    // Replay from a past revision with prev_kv: etcd may batch revisions
    // into one message; the events, in order, are the same.
    let create = json!({"create_request": {"key": b64("a/"), "range_end": b64("a0"), "start_revision": revisions[1],
                                           "prev_kv": true}});
    let mut theirs = WatchReader::open(&format!("{}/v3/watch", etcd.endpoint()), create.clone()).await;
    let mut ours = WatchReader::open(&gw.url("/v3/watch"), create).await;
    let created = ours.next(MESSAGE_TIMEOUT).await.expect("created");
    assert_eq!(Some(created.clone()), theirs.next(MESSAGE_TIMEOUT).await);
    assert_eq!(created["result"]["created"], json!(true));
    assert_eq!(created["result"]["header"]["revision"], json!(head.to_string()));
    // a/2, a/2, a/3 ×3 and a/4 (the b/ revisions are outside the range).
    let replayed = 6;
    assert_eq!(ours.events(replayed).await, theirs.events(replayed).await);
    // Live: one message per revision, the same message.
    let txn = etcd_client::Txn::new().and_then([
        etcd_client::TxnOp::put("a/5", "five", None),
        etcd_client::TxnOp::delete("a/1", None),
        etcd_client::TxnOp::put("b/y", "outside", None),
    ]);
    client.txn(txn).await.expect("txn");
    let live = ours.next(MESSAGE_TIMEOUT).await.expect("live");
    let mut expected = theirs.next(MESSAGE_TIMEOUT).await.expect("live");
    while expected["result"].get("events").is_none() {
        expected = theirs.next(MESSAGE_TIMEOUT).await.expect("live"); // etcd's own progress
    }
    assert_eq!(live, expected);
    assert_eq!(live["result"]["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(live["result"]["events"][1]["type"], json!("DELETE"));
    // A replay the cache's window holds: the same events too.
    let from = live["result"]["events"][0]["kv"]["mod_revision"].clone();
    let create = json!({"create_request": {"key": b64("a/"), "range_end": b64("a0"), "start_revision": from,
                                           "prev_kv": true}});
    let mut theirs = WatchReader::open(&format!("{}/v3/watch", etcd.endpoint()), create.clone()).await;
    let mut ours = WatchReader::open(&gw.url("/v3/watch"), create).await;
    assert_eq!(ours.next(MESSAGE_TIMEOUT).await, theirs.next(MESSAGE_TIMEOUT).await, "created");
    assert_eq!(ours.events(2).await, theirs.events(2).await);
}

#[tokio::test]
async fn watch_filters_progress_and_refusals() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let mut config = config(&etcd);
    config.tokens = vec![token("reader", "reader-secret", &["apps"], false)];
    let gw = Gateway::start_ready(config).await;
    let open = |body: Value, auth: &'static str| {
        let url = gw.url("/v3/watch");
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("authorization", auth)
                .body(body.to_string())
                .send()
                .await
                .expect("watch");
            WatchReader { response, buffer: Vec::new() }
        }
    };
    let create = json!({"create_request": {"key": b64("a/"), "range_end": b64("a0"), "filters": ["NOPUT"],
                                           "progress_notify": true}});
    let mut watch = open(create, "reader-secret").await;
    assert_eq!(watch.next(MESSAGE_TIMEOUT).await.expect("created")["result"]["created"], json!(true));
    let put = crate::support::etcd::put(&mut client, "a/1", "x").await;
    client.delete("a/1", None).await.expect("delete");
    // The put is filtered out; the next message with events is the delete.
    let mut deleted = None;
    let mut progress = None;
    for _ in 0..20 {
        let message = watch.next(MESSAGE_TIMEOUT).await.expect("a message");
        match message["result"].get("events") {
            Some(events) => deleted = Some(events.clone()),
            None => progress = Some(message),
        }
        if deleted.is_some() && progress.is_some() {
            break;
        }
    }
    assert_eq!(
        deleted,
        Some(json!([{"type": "DELETE", "kv": {"key": b64("a/1"), "mod_revision": (put + 1).to_string()}}]))
    );
    let progress = progress.expect("a progress notification");
    assert_eq!(
        progress["result"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["header".into()])
    );

    // A watch outside the token's namespaces: created and cancelled in-stream.
    let outside = json!({"create_request": {"key": b64("b/"), "range_end": b64("b0")}});
    let mut refused = open(outside, "reader-secret").await;
    let message = refused.next(MESSAGE_TIMEOUT).await.expect("the refusal");
    assert_eq!(message["result"]["canceled"], json!(true));
    assert_eq!(message["result"]["created"], json!(true));
    assert!(message["result"]["cancel_reason"].as_str().unwrap().contains("permission denied"), "{message}");
    assert_eq!(refused.next(MESSAGE_TIMEOUT).await, None, "the stream ends");
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_cancelled_as_etcd_does() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let revisions = seed(&mut client).await;
    etcd.compact(revisions[5]).await;
    let gw = Gateway::start_ready(config(&etcd)).await;
    let create =
        json!({"create_request": {"key": b64("a/"), "range_end": b64("a0"), "start_revision": revisions[1]}});
    let mut theirs = WatchReader::open(&format!("{}/v3/watch", etcd.endpoint()), create.clone()).await;
    let mut ours = WatchReader::open(&gw.url("/v3/watch"), create).await;
    for _ in 0..2 {
        let expected = theirs.next(MESSAGE_TIMEOUT).await.expect("etcd's message");
        assert_eq!(ours.next(MESSAGE_TIMEOUT).await, Some(expected));
    }
    assert_eq!(ours.next(MESSAGE_TIMEOUT).await, None, "the cancelled watch's stream ends");
}
