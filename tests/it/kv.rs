//! REST reads against a real etcd: exact JSON, status and headers of every
//! read feature in API.md.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::support::http::{get, get_with};
use crate::support::{Etcd, Gateway};

struct Env {
    _etcd: Etcd,
    gw: Gateway,
    client: etcd_client::Client,
}

async fn env() -> Env {
    env_with(|_| {}).await
}

async fn env_with(tweak: impl FnOnce(&mut etcd_cache_gateway::config::Config)) -> Env {
    let etcd = Etcd::start().await;
    let mut config = Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/");
    tweak(&mut config);
    let gw = Gateway::start_ready(config).await;
    let client = etcd.client().await;
    Env { _etcd: etcd, gw, client }
}

impl Env {
    async fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> i64 {
        crate::support::etcd::put(&mut self.client, key, value).await
    }

    /// GETs a path, after the cache has reached `revision` (read-your-writes).
    async fn read(&self, path: &str, revision: i64) -> crate::support::http::Reply {
        let sep = if path.contains('?') { '&' } else { '?' };
        get(&self.gw.url(&format!("{path}{sep}min_revision={revision}"))).await
    }
}

#[tokio::test]
async fn get_key_returns_the_kv_object_with_cache_headers() {
    let mut env = env().await;
    let r1 = env.put("app/services/web", "{\"port\":80}").await;
    let r2 = env.put("app/services/web", "{\"port\":8080}").await;
    let reply = env.read("/v1/namespaces/app/kv/services/web", r2).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.header("x-etcd-revision"), r2.to_string());
    assert_eq!(reply.header("x-cache-status"), "fresh");
    assert_eq!(reply.header("etag"), format!("\"{r2}\""));
    assert_eq!(
        reply.json(),
        json!({"revision": r2, "kv": {"key": "services/web", "value": "{\"port\":8080}", "value_encoding": "utf8",
               "create_revision": r1, "mod_revision": r2, "version": 2, "lease": "0"}})
    );
    // The validator answers 304 with no body, and a stale one gets the body.
    let url = env.gw.url("/v1/namespaces/app/kv/services/web");
    let same = get_with(&url, &[("if-none-match", &format!("\"{r2}\""))]).await;
    assert_eq!((same.status, same.body.len()), (304, 0));
    assert_eq!(same.header("etag"), format!("\"{r2}\""));
    assert_eq!(same.header("x-etcd-revision"), r2.to_string());
    let old = get_with(&url, &[("if-none-match", &format!("\"{r1}\""))]).await;
    assert_eq!(old.status, 200);
}

#[tokio::test]
async fn keys_with_special_bytes_round_trip() {
    let mut env = env().await;
    let cases: Vec<(&[u8], &str)> = vec![
        (b"a/b/c", "a/b/c"),
        (b"with space", "with%20space"),
        (b"100%", "100%25"),
        (b"caf\xc3\xa9/\xe2\x9c\x93", "caf%C3%A9/%E2%9C%93"),
        (b"q?x=1&y", "q%3Fx=1&y"),
    ];
    let mut last = 0;
    for (key, _) in &cases {
        last = env.put([b"app/".as_slice(), key].concat(), "v").await;
    }
    for (key, path) in &cases {
        let reply = env.read(&format!("/v1/namespaces/app/kv/{path}"), last).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.json()["kv"]["key"], std::str::from_utf8(key).unwrap(), "{path}");
    }
    // An empty value, a binary value, and a non-UTF-8 key (path and key_b64).
    env.put("app/empty", "").await;
    env.put("app/blob", vec![0u8, 0xff, 0x10]).await;
    let last = env.put(b"app/\xff\xfe".to_vec(), "binary key").await;
    let empty = env.read("/v1/namespaces/app/kv/empty", last).await.json();
    assert_eq!(
        (empty["kv"]["value"].as_str(), empty["kv"]["value_encoding"].as_str()),
        (Some(""), Some("utf8"))
    );
    let blob = env.read("/v1/namespaces/app/kv/blob", last).await.json();
    assert_eq!(blob["kv"]["value"], STANDARD.encode([0u8, 0xff, 0x10]));
    assert_eq!(blob["kv"]["value_encoding"], "base64");
    for url in [
        "/v1/namespaces/app/kv/%FF%FE".to_owned(),
        format!("/v1/namespaces/app/kv?key_b64={}", URL_SAFE_NO_PAD.encode(b"\xff\xfe")),
    ] {
        let kv = env.read(&url, last).await.json()["kv"].clone();
        assert_eq!(kv["key"], STANDARD.encode(b"\xff\xfe"), "{url}");
        assert_eq!(kv["key_encoding"], "base64");
        assert_eq!(kv["value"], "binary key");
    }
}

#[tokio::test]
async fn encodings_and_raw_values() {
    let mut env = env().await;
    let config_revision = env.put("app/config.json", "{\"a\":[1,2],\"b\":\"x\"}").await;
    let last = env.put("app/motd", "hello").await;
    let kv = |v: Value| v["kv"].clone();
    let json_kv = kv(env.read("/v1/namespaces/app/kv/config.json?encoding=json", last).await.json());
    assert_eq!(
        (json_kv["value"].clone(), json_kv["value_encoding"].clone()),
        (json!({"a": [1, 2], "b": "x"}), json!("json"))
    );
    let text_kv = kv(env.read("/v1/namespaces/app/kv/motd?encoding=json", last).await.json());
    assert_eq!(
        (text_kv["value"].clone(), text_kv["value_encoding"].clone()),
        (json!("hello"), json!("utf8"))
    );
    let b64 = kv(env.read("/v1/namespaces/app/kv/motd?encoding=base64", last).await.json());
    assert_eq!(
        (b64["value"].clone(), b64["value_encoding"].clone()),
        (json!(STANDARD.encode("hello")), json!("base64"))
    );

    let raw = env.read("/v1/namespaces/app/kv/config.json?raw=true", last).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-type"), "application/json");
    assert_eq!(raw.body, b"{\"a\":[1,2],\"b\":\"x\"}");
    assert_eq!(raw.header("etag"), format!("\"{config_revision}\""), "the same ETag as the JSON answer");
    let raw = env.read("/v1/namespaces/app/kv/motd?raw=true", last).await;
    assert_eq!(raw.header("content-type"), "text/plain; charset=utf-8", "text shows in a browser");
    assert_eq!(raw.body, b"hello");
    let binary = env.put("app/bin", [0u8, 0xff, 0x01]).await;
    let raw = env.read("/v1/namespaces/app/kv/bin?raw=true", binary).await;
    assert_eq!(
        (raw.header("content-type"), raw.body.as_slice()),
        ("application/octet-stream", &[0u8, 0xff, 1][..])
    );
}

#[tokio::test]
async fn missing_key_and_namespace_are_404_problems() {
    let mut env = env().await;
    let last = env.put("app/present", "1").await;
    let reply = env.read("/v1/namespaces/app/kv/absent", last).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("content-type"), "application/problem+json");
    let body = reply.json();
    assert_eq!((body["code"].as_str(), body["revision"].as_i64()), (Some("key_not_found"), Some(last)));
    assert_eq!((body["key"].as_str(), body["namespace"].as_str()), (Some("absent"), Some("app")));
    assert_eq!(body["detail"], format!("key \"absent\" not found in namespace \"app\" at revision {last}"));
    assert_eq!(reply.header("x-etcd-revision"), last.to_string());
    // The namespace's own prefix written into the path: say so.
    let reply = env.read("/v1/namespaces/app/kv/app/present", last).await;
    assert_eq!(
        reply.json()["detail"],
        format!(
            "key \"app/present\" not found in namespace \"app\" at revision {last}; keys are relative to the \
             namespace's prefix \"app/\": try \"present\""
        )
    );
    // A folder asked for as a key: say how to list it.
    let reply = env.read("/v1/namespaces/app/kv/items/", last).await;
    assert_eq!(
        reply.json()["detail"],
        format!(
            "key \"items/\" not found in namespace \"app\" at revision {last}; a key ending in / is usually a \
             folder: list it with /v1/namespaces/app/kv?prefix=items%2F"
        )
    );
    let reply = get(&env.gw.url("/v1/namespaces/nope/kv/x")).await;
    assert_eq!((reply.status, reply.json()["code"].as_str()), (404, Some("namespace_not_found")));
}

#[tokio::test]
async fn ranges_list_count_page_and_validate() {
    let mut env = env().await;
    for i in 0..25 {
        env.put(format!("app/items/{i:02}"), format!("{{\"n\":{i}}}")).await;
    }
    let last_change = env.put("app/other", "x").await;
    let last = env.put("outside/items/00", "not in the namespace").await;
    let all = env.read("/v1/namespaces/app/kv", last).await;
    assert_eq!(all.status, 200);
    let body = all.json();
    assert_eq!(body["count"], 26);
    assert_eq!(body["kvs"].as_array().unwrap().len(), 26);
    assert_eq!(body["next_page_token"], Value::Null);
    assert_eq!(all.header("x-etcd-revision"), body["revision"].to_string());

    let prefixed = env.read("/v1/namespaces/app/kv?prefix=items/&limit=10&keys_only=true", last).await.json();
    assert_eq!(prefixed["count"], 25, "count covers every page");
    let kvs = prefixed["kvs"].as_array().unwrap();
    assert_eq!(kvs.len(), 10);
    assert_eq!(
        kvs[0],
        json!({"key": "items/00", "create_revision": kvs[0]["create_revision"], "mod_revision": kvs[0]["mod_revision"], "version": 1, "lease": "0"})
    );
    assert!(kvs[0].get("value").is_none());
    // Follow the tokens: 10 + 10 + 5, all at the first page's revision.
    let mut keys: Vec<String> = kvs.iter().map(|k| k["key"].as_str().unwrap().to_owned()).collect();
    let mut token = prefixed["next_page_token"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        let page = get(&env
            .gw
            .url(&format!("/v1/namespaces/app/kv?prefix=items/&limit=10&keys_only=true&page_token={token}")))
        .await;
        assert_eq!(page.status, 200);
        let page = page.json();
        assert_eq!(page["revision"], prefixed["revision"]);
        keys.extend(page["kvs"].as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap().to_owned()));
        match page["next_page_token"].as_str() {
            Some(t) => token = t.to_owned(),
            None => break,
        }
    }
    assert_eq!(keys, (0..25).map(|i| format!("items/{i:02}")).collect::<Vec<_>>());

    let window = env.read("/v1/namespaces/app/kv?start=items/10&end=items/13", last).await.json();
    let keys: Vec<&str> =
        window["kvs"].as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["items/10", "items/11", "items/12"]);
    assert_eq!(window["count"], 3);
    let open_end = env.read("/v1/namespaces/app/kv?start=items/24", last).await.json();
    assert_eq!(open_end["count"], 2, "items/24 and other");
    let count = env.read("/v1/namespaces/app/kv?prefix=items/&count_only=true", last).await.json();
    assert_eq!(count, json!({"revision": count["revision"], "count": 25}));

    // The listing's validator: 304 until the namespace changes.
    let etag = all.header("etag").to_owned();
    assert_eq!(etag, format!("\"app-{last_change}\""), "the namespace's last change, not etcd's head");
    let url = env.gw.url("/v1/namespaces/app/kv");
    assert_eq!(get_with(&url, &[("if-none-match", &etag)]).await.status, 304);
    let count_url = "/v1/namespaces/app/kv?prefix=items/&count_only=true";
    assert_eq!(env.read(count_url, last).await.json()["count"], 25);
    let changed = env.put("app/items/99", "new").await;
    assert_eq!(
        env.read(count_url, changed).await.json()["count"],
        26,
        "a shared page never outlives a change"
    );
    let after = env.read("/v1/namespaces/app/kv?prefix=items/99", changed).await;
    assert_eq!(after.json()["count"], 1);
    assert_eq!(get_with(&url, &[("if-none-match", &etag)]).await.status, 200);
}

#[tokio::test]
async fn filters_and_selects_on_json_values() {
    let mut env = env().await;
    env.put("app/svc/a", r#"{"name":"a","port":80,"labels":{"tier":"front"}}"#).await;
    env.put("app/svc/b", r#"{"name":"b","port":81,"labels":{"tier":"back"}}"#).await;
    env.put("app/svc/c", r#"{"name":"c","port":80}"#).await;
    let last = env.put("app/svc/d", "not json").await;
    let keys = |v: &Value| {
        v["kvs"].as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let front = env.read("/v1/namespaces/app/kv?prefix=svc/&filter=labels.tier==front", last).await.json();
    assert_eq!((keys(&front), front["count"].clone()), (vec!["svc/a".to_owned()], json!(1)));
    let port80 =
        env.read("/v1/namespaces/app/kv?prefix=svc/&filter=port==80&filter=labels.tier", last).await.json();
    assert_eq!(keys(&port80), ["svc/a"]);
    let not_front =
        env.read("/v1/namespaces/app/kv?prefix=svc/&filter=labels.tier!=front", last).await.json();
    assert_eq!(keys(&not_front), ["svc/b", "svc/c", "svc/d"], "!= matches missing paths and non-JSON values");
    let paged = env.read("/v1/namespaces/app/kv?prefix=svc/&filter=port==80&limit=1", last).await.json();
    assert_eq!((keys(&paged), paged["count"].clone()), (vec!["svc/a".to_owned()], json!(2)));
    let token = paged["next_page_token"].as_str().unwrap();
    let next = get(&env
        .gw
        .url(&format!("/v1/namespaces/app/kv?prefix=svc/&filter=port==80&limit=1&page_token={token}")))
    .await
    .json();
    assert_eq!((keys(&next), next["next_page_token"].clone()), (vec!["svc/c".to_owned()], Value::Null));
    let selected = env.read("/v1/namespaces/app/kv?prefix=svc/a&select=name,labels.tier", last).await.json();
    assert_eq!(selected["kvs"][0]["value"], json!({"name": "a", "labels": {"tier": "front"}}));
    assert_eq!(selected["kvs"][0]["value_encoding"], "json");

    // What people type: spaces, Kubernetes-style commas and sets, numbers.
    let cases = [
        ("labels.tier%20==%20front", vec!["svc/a"]),
        ("port==80,labels.tier", vec!["svc/a"]),
        ("labels.tier%20in%20(front,%20back)", vec!["svc/a", "svc/b"]),
        ("name%20notin%20(a)", vec!["svc/b", "svc/c", "svc/d"]),
        ("port%3E80", vec!["svc/b"]),
        ("port%3C%3D80", vec!["svc/a", "svc/c"]),
        ("!labels", vec!["svc/c", "svc/d"]),
    ];
    for (filter, expected) in cases {
        let listed =
            env.read(&format!("/v1/namespaces/app/kv?prefix=svc/&filter={filter}"), last).await.json();
        assert_eq!(keys(&listed), expected, "filter={filter}");
    }
    let bad = get(&env.gw.url("/v1/namespaces/app/kv?filter=port%3Ehigh")).await;
    assert_eq!(
        (bad.status, bad.json()["detail"].as_str()),
        (400, Some("invalid filter \"port>high\" at character 6: `>` compares numbers: expected a number"))
    );
    let ones = env.read("/v1/namespaces/app/kv?prefix=svc/&keys_only=1", last).await.json();
    assert!(ones["kvs"][0].get("value").is_none(), "keys_only=1 is true");
    let zero = env.read("/v1/namespaces/app/kv?prefix=svc/&keys_only=0", last).await.json();
    assert!(zero["kvs"][0].get("value").is_some(), "keys_only=0 is false");
}

#[tokio::test]
async fn a_page_token_continues_only_its_own_namespace() {
    let mut env = env_with(|c| {
        c.namespaces.push(etcd_cache_gateway::config::NamespaceConfig {
            name: "infra".into(),
            prefix: "infra/".into(),
            max_subscribers: None,
        });
    })
    .await;
    env.put("app/a", "1").await;
    env.put("app/b", "2").await;
    env.put("infra/a", "1").await;
    let last = env.put("infra/b", "2").await;
    let first = env.read("/v1/namespaces/app/kv?limit=1", last).await.json();
    let token = first["next_page_token"].as_str().unwrap();
    let same = get(&env.gw.url(&format!("/v1/namespaces/app/kv?limit=1&page_token={token}"))).await;
    assert_eq!((same.status, same.json()["kvs"][0]["key"].as_str()), (200, Some("b")));
    let other = get(&env.gw.url(&format!("/v1/namespaces/infra/kv?limit=1&page_token={token}"))).await;
    assert_eq!(
        (other.status, other.json()["detail"].as_str()),
        (400, Some("parameter `page_token` belongs to another listing: repeat the same parameters"))
    );
}

#[tokio::test]
async fn lease_ids_are_decimal_strings_that_javascript_keeps_exact() {
    let mut env = env().await;
    let lease = env.client.lease_grant(60, None).await.unwrap().id();
    let options = etcd_client::PutOptions::new().with_lease(lease);
    let revision =
        env.client.put("app/leased", "v", Some(options)).await.unwrap().header().unwrap().revision();
    let body = env.read("/v1/namespaces/app/kv/leased", revision).await.json();
    assert_eq!(body["kv"]["lease"], json!(lease.to_string()));
    let listed = env.read("/v1/namespaces/app/kv?prefix=leased", revision).await.json();
    assert_eq!(listed["kvs"][0]["lease"], json!(lease.to_string()));
    let mut sse =
        crate::support::sse::SseClient::open(&env.gw.url("/v1/namespaces/app/watch?snapshot=true")).await;
    let snapshot = sse.next().await;
    assert_eq!(snapshot.data["kvs"][0]["lease"], json!(lease.to_string()));
}

/// Every page of a listing, followed by its tokens: the concatenated items
/// (`key` of kvs and `prefix` of prefixes, in the order the pages give them).
async fn all_pages(gw: &Gateway, query: &str) -> (Vec<Value>, Vec<(String, u64)>) {
    let mut kvs = Vec::new();
    let mut prefixes = Vec::new();
    let mut url = gw.url(&format!("/v1/namespaces/app/kv?{query}"));
    let mut revision = None;
    for _ in 0..100 {
        let reply = get(&url).await;
        assert_eq!(reply.status, 200, "{url}: {}", String::from_utf8_lossy(&reply.body));
        let page = reply.json();
        assert_eq!(
            *revision.get_or_insert(page["revision"].clone()),
            page["revision"],
            "pinned to one revision"
        );
        kvs.extend(page["kvs"].as_array().unwrap().iter().cloned());
        for p in page["prefixes"].as_array().into_iter().flatten() {
            prefixes.push((p["prefix"].as_str().unwrap().to_owned(), p["count"].as_u64().unwrap()));
        }
        match page["next_page_token"].as_str() {
            Some(token) => url = gw.url(&format!("/v1/namespaces/app/kv?{query}&page_token={token}")),
            None => return (kvs, prefixes),
        }
    }
    panic!("more than 100 pages for {query}");
}

#[tokio::test]
async fn listings_sort_by_any_revision_or_version_in_either_order_across_pages() {
    let mut env = env().await;
    // Keys created and changed in an order unlike their key order.
    for (key, times) in [("d", 1), ("b", 3), ("e", 2), ("a", 1), ("c", 4), ("f", 1)] {
        for t in 0..times {
            env.put(format!("app/{key}"), t.to_string()).await;
        }
    }
    let last = env.put("app/b", "last").await;
    env.read(&format!("/v1/namespaces/app/kv?min_revision={last}"), last).await;
    let etcd_kvs = env.client.get("app/", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    let truth: Vec<(String, i64, i64, i64)> = etcd_kvs
        .kvs()
        .iter()
        .map(|kv| {
            let key = kv.key_str().unwrap().trim_start_matches("app/").to_owned();
            (key, kv.create_revision(), kv.mod_revision(), kv.version())
        })
        .collect();
    for sort in ["key", "create_revision", "mod_revision", "version"] {
        for order in ["asc", "desc"] {
            let mut expected = truth.clone();
            expected.sort_by_key(|(key, create, modified, version)| {
                let value = match sort {
                    "create_revision" => *create,
                    "mod_revision" => *modified,
                    "version" => *version,
                    _ => 0,
                };
                (value, key.clone())
            });
            if order == "desc" {
                expected.reverse();
            }
            let expected: Vec<&str> = expected.iter().map(|(k, ..)| k.as_str()).collect();
            for limit in [1, 4, 100] {
                let (kvs, _) = all_pages(&env.gw, &format!("sort={sort}&order={order}&limit={limit}")).await;
                let keys: Vec<&str> = kvs.iter().map(|kv| kv["key"].as_str().unwrap()).collect();
                assert_eq!(keys, expected, "sort={sort}&order={order}&limit={limit}");
                assert!(kvs.iter().all(|kv| kv["value"].is_string()), "values are there");
            }
        }
    }
    let bad = get(&env.gw.url("/v1/namespaces/app/kv?sort=size")).await;
    assert_eq!(
        bad.json()["detail"],
        "parameter `sort` must be key, create_revision, mod_revision or version, not \"size\""
    );
}

#[tokio::test]
async fn a_delimiter_lists_one_level_with_counts_below_each_folder() {
    let mut env = env().await;
    let keys = ["top", "a/1", "a/2", "a/b/3", "b/x", "c", "c/1", "d/", "e"];
    let mut last = 0;
    for key in keys {
        last = env.put(format!("app/{key}"), key).await;
    }
    env.read(&format!("/v1/namespaces/app/kv?min_revision={last}"), last).await;
    // The whole namespace's top level: keys without a slash, folders with counts.
    let expected_prefixes =
        vec![("a/".to_owned(), 3), ("b/".to_owned(), 1), ("c/".to_owned(), 1), ("d/".to_owned(), 1)];
    for limit in [1, 2, 1000] {
        let (kvs, prefixes) = all_pages(&env.gw, &format!("delimiter=/&limit={limit}")).await;
        let direct: Vec<&str> = kvs.iter().map(|kv| kv["key"].as_str().unwrap()).collect();
        assert_eq!(direct, ["c", "e", "top"], "limit={limit}");
        assert_eq!(prefixes, expected_prefixes, "limit={limit}");
    }
    let first = env.read("/v1/namespaces/app/kv?delimiter=/", last).await.json();
    assert_eq!(first["count"], 3, "keys directly at this level");
    assert_eq!(first["kvs"][0]["value"], "c");
    // One level down.
    let (kvs, prefixes) = all_pages(&env.gw, "prefix=a/&delimiter=/&keys_only=true").await;
    let direct: Vec<&str> = kvs.iter().map(|kv| kv["key"].as_str().unwrap()).collect();
    assert_eq!((direct, prefixes), (vec!["a/1", "a/2"], vec![("a/b/".to_owned(), 1)]));
    let bad = get(&env.gw.url("/v1/namespaces/app/kv?start=a&end=c&delimiter=/")).await;
    assert_eq!(bad.json()["detail"], "`delimiter` lists one level under `prefix`: not with `start`/`end`");
}
