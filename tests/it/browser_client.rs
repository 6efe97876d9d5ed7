//! The browser client `gateway-client.js` as the gateway serves it, run in
//! headless Chromium by test pages from another origin: reads and paged
//! listings pinned to a revision, errors by problem code, a watch through a
//! compaction-forced reset and an `on_gap=error` gap, and a mirror that
//! stays equal to etcd, key by key, across server-closed streams and a
//! gateway restart during which the gateway answers 503.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_cache_gateway::config::{Config, HumanDuration};
use serde_json::{Value, json};

use crate::chromium::{Browser, serve_page};
use crate::support::http::get;
use crate::support::{Etcd, Gateway, Proxy, free_port, wait_until};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A page that imports the served module and exposes it as `window.client`
/// and a `Gateway` as `window.gw`; `SCRIPT` is more of the module's body.
const PAGE: &str = r#"<!doctype html>
<html><body><script type="module">
  import * as client from "GATEWAY/client/gateway-client.js";
  window.client = client;
  window.gw = new client.Gateway("GATEWAY");
  SCRIPT
  window.loaded = true;
</script></body></html>"#;

/// A config whose gateway answers CORS for pages on `page_port`.
fn config_for_page(endpoints: &[String], page_port: u16) -> Config {
    let mut config = Gateway::config_with_namespace(endpoints, "app", "app/");
    config.http.cors_origins = vec![format!("http://127.0.0.1:{page_port}")];
    config
}

/// Opens a test page with `script` in Chromium once the module has loaded.
async fn open_page(gw: &Gateway, page_port: u16, script: &str) -> Browser {
    let html = PAGE.replace("SCRIPT", script).replace("GATEWAY", &gw.base_url);
    serve_page(page_port, html).await;
    let browser = Browser::start(1024, 768).await;
    browser.client.goto(&format!("http://127.0.0.1:{page_port}/")).await.unwrap();
    wait_until("the page imported the module", Duration::from_secs(20), || async {
        browser.client.execute("return window.loaded === true", vec![]).await.unwrap() == json!(true)
    })
    .await;
    browser
}

/// etcd's keys under `prefix` (relative to `app/`) and their values.
async fn etcd_state(etcd: &Etcd, prefix: &str) -> BTreeMap<String, Value> {
    let mut client = etcd.client().await;
    let options = etcd_client::GetOptions::new().with_prefix();
    let reply = client.get(format!("app/{prefix}"), Some(options)).await.unwrap();
    reply
        .kvs()
        .iter()
        .map(|kv| {
            let key = kv.key_str().unwrap().strip_prefix("app/").unwrap().to_owned();
            (key, Value::String(kv.value_str().unwrap().to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn the_gateway_serves_the_browser_client_with_its_type_and_etag() {
    let etcd = Etcd::start().await;
    let gw = Gateway::start_ready(Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/")).await;
    let http = reqwest::Client::new();
    for (path, file, content_type) in [
        ("/client/gateway-client.js", "gateway-client.js", "text/javascript; charset=utf-8"),
        ("/client/gateway-client.d.ts", "gateway-client.d.ts", "application/typescript; charset=utf-8"),
    ] {
        let reply = http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{path}");
        let headers = reply.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        let etag = headers["etag"].to_str().unwrap().to_owned();
        let body = reply.text().await.unwrap();
        assert_eq!(body, std::fs::read_to_string(format!("{ROOT}/clients/js/{file}")).unwrap());
        let again = http.get(gw.url(path)).header("If-None-Match", &etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
        let other = http.get(gw.url(path)).header("If-None-Match", "\"other\"").send().await.unwrap();
        assert_eq!(other.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn the_browser_client_reads_pages_at_one_revision_and_names_errors_by_code() {
    let etcd = Etcd::start().await;
    let mut etcd_client = etcd.client().await;
    for key in ["a", "b", "c", "d", "e"] {
        etcd_client.put(format!("app/l/{key}"), key, None).await.unwrap();
    }
    let json_revision =
        etcd_client.put("app/json/one", r#"{"a":{"b":1}}"#, None).await.unwrap().header().unwrap().revision();
    let page_port = free_port();
    let gw = Gateway::start_ready(config_for_page(&[etcd.endpoint()], page_port)).await;
    let browser = open_page(&gw, page_port, "").await;

    let got = browser
        .eval_json(
            r#"return gw.get("app", "json/one", {encoding: "json", minRevision: MIN}).then(JSON.stringify)"#
                .replace("MIN", &json_revision.to_string())
                .as_str(),
        )
        .await;
    assert_eq!(got["kv"]["value"], json!({"a": {"b": 1}}));
    assert_eq!(got["kv"]["value_encoding"], "json");
    assert_eq!(got["kv"]["mod_revision"], json_revision);
    assert_eq!(got["etag"], format!("\"{json_revision}\""));
    assert_eq!(got["cacheStatus"], "fresh");
    let unchanged = browser
        .eval_json(&format!(
            "return gw.get('app', 'json/one', {{ifNoneMatch: {:?}}}).then(JSON.stringify)",
            got["etag"].as_str().unwrap()
        ))
        .await;
    assert_eq!(unchanged, json!({"notModified": true, "etag": got["etag"]}));

    let error_of = |call: &str| {
        format!(
            "return {call}.then(() => 'null', (e) => JSON.stringify({{name: e.name, code: e.code, status: e.status}}))"
        )
    };
    for (call, code, status) in [
        (r#"gw.get("app", "missing")"#, "key_not_found", 404),
        (r#"gw.get("nope", "k")"#, "namespace_not_found", 404),
        (r#"gw.list("app", {filter: "a.b=="})"#, "bad_request", 400),
        (r#"gw.list("app", {revision: 1e9})"#, "future_revision", 400),
    ] {
        let error = browser.eval_json(&error_of(call)).await;
        assert_eq!(error, json!({"name": "GatewayError", "code": code, "status": status}), "{call}");
    }

    // A listing started before a write and a delete reads all its pages at
    // its first page's revision.
    let first = browser
        .eval_json(
            r#"window.pages = gw.listAll("app", {prefix: "l/", limit: 2});
               return pages.next().then((p) => JSON.stringify(p.value))"#,
        )
        .await;
    let pinned = first["revision"].as_i64().unwrap();
    etcd_client.put("app/l/c2", "new", None).await.unwrap();
    let after = etcd_client.delete("app/l/e", None).await.unwrap().header().unwrap().revision();
    let rest = browser
        .eval_json(
            r#"return (async () => { const out = []; for await (const p of pages) out.push(p);
               return JSON.stringify(out); })()"#,
        )
        .await;
    let mut keys: Vec<Value> = first["kvs"].as_array().unwrap().iter().map(|kv| kv["key"].clone()).collect();
    for page in rest.as_array().unwrap() {
        assert_eq!(page["revision"], pinned, "every page at the first page's revision");
        keys.extend(page["kvs"].as_array().unwrap().iter().map(|kv| kv["key"].clone()));
    }
    assert_eq!(keys, vec![json!("l/a"), json!("l/b"), json!("l/c"), json!("l/d"), json!("l/e")]);
    assert_eq!(first["count"], 5);
    let now = browser
        .eval_json(&format!(
            "return gw.list('app', {{prefix: 'l/', keysOnly: true, minRevision: {after}}}).then(JSON.stringify)"
        ))
        .await;
    let keys: Vec<&str> =
        now["kvs"].as_array().unwrap().iter().map(|kv| kv["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["l/a", "l/b", "l/c", "l/c2", "l/d"]);
    let folders = browser.eval_json("return gw.list('app', {delimiter: '/'}).then(JSON.stringify)").await;
    assert_eq!(folders["prefixes"], json!([{"prefix": "json/", "count": 1}, {"prefix": "l/", "count": 5}]));
    let filtered = browser
        .eval_json(r#"return gw.list("app", {filter: ["a.b==1"], select: ["a"]}).then(JSON.stringify)"#)
        .await;
    assert_eq!(filtered["count"], 1);
    assert_eq!(filtered["kvs"][0]["value"], json!({"a": {"b": 1}}));
    // A key that is not UTF-8, read by its bytes.
    let binary =
        etcd_client.put(b"app/\xff\x00k".to_vec(), "bin", None).await.unwrap().header().unwrap().revision();
    let got = browser
        .eval_json(&format!(
            "return gw.get('app', new Uint8Array([0xff, 0, 0x6b]), {{minRevision: {binary}}}).then(JSON.stringify)"
        ))
        .await;
    assert_eq!(got["kv"]["key"], "/wBr");
    assert_eq!(got["kv"]["key_encoding"], "base64");
    assert_eq!(got["kv"]["value"], "bin");
    let namespaces = browser.eval_json("return gw.namespaces().then(JSON.stringify)").await;
    assert_eq!(namespaces[0]["name"], "app");
    let _ = browser.client.clone().close().await;
}

#[tokio::test]
async fn a_browser_watch_surfaces_a_compaction_reset_and_an_on_gap_error() {
    let etcd = Etcd::start().await;
    let mut etcd_client = etcd.client().await;
    etcd_client.put("app/w/x", "1", None).await.unwrap();
    etcd_client.put("app/w/x", "2", None).await.unwrap();
    let compacted = etcd_client.put("app/other", "o", None).await.unwrap().header().unwrap().revision();
    etcd.compact(compacted).await;
    let page_port = free_port();
    let gw = Gateway::start_ready(config_for_page(&[etcd.endpoint()], page_port)).await;
    // What the gateway says about a read before the compaction.
    let gone = get(&gw.url("/v1/namespaces/app/kv?revision=1")).await;
    assert_eq!(gone.status, 410);
    let compact_revision = gone.json()["compact_revision"].clone();

    let browser = open_page(
        &gw,
        page_port,
        r#"
        window.events = [];
        window.w = gw.watch("app", {prefix: "w/", since: 1});
        for (const type of ["reset", "snapshot", "synced", "change"]) {
          w.on(type, (d) => events.push({type, ...d}));
        }
        window.gap = null;
        window.g = gw.watch("app", {prefix: "w/", since: 1, onGap: "error"});
        g.on("gap", (e) => { gap = {code: e.code, status: e.status, compact_revision: e.problem.compact_revision}; });
        "#,
    )
    .await;
    let events = || async { browser.eval_json("return JSON.stringify(events)").await };
    wait_until("the watch synced after its reset", Duration::from_secs(20), || async {
        events().await.as_array().unwrap().iter().any(|e| e["type"] == "synced")
    })
    .await;
    let written = etcd_client.put("app/w/y", "3", None).await.unwrap().header().unwrap().revision();
    wait_until("the change arrived", Duration::from_secs(20), || async {
        events().await.as_array().unwrap().iter().any(|e| e["type"] == "change")
    })
    .await;
    let seen = events().await;
    let types: Vec<&str> = seen.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["reset", "snapshot", "synced", "change"], "{seen}");
    assert_eq!(seen[0]["code"], "compacted");
    let snapshot: Vec<(&str, &str)> = seen[1]["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv["key"].as_str().unwrap(), kv["value"].as_str().unwrap()))
        .collect();
    assert_eq!(snapshot, [("w/x", "2")]);
    assert_eq!(seen[3]["revision"], written);
    assert_eq!(seen[3]["events"][0]["kv"]["key"], "w/y");
    let last = browser.eval_json("return JSON.stringify(w.lastEventId)").await;
    assert_eq!(last, written);

    wait_until("the on_gap=error watch reported its gap", Duration::from_secs(20), || async {
        browser.eval_json("return JSON.stringify(gap)").await != Value::Null
    })
    .await;
    let gap = browser.eval_json("return JSON.stringify({...gap, state: g.state})").await;
    assert_eq!(
        gap,
        json!({"code": "compacted", "status": 410, "compact_revision": compact_revision, "state": "closed"})
    );
    let _ = browser.client.clone().close().await;
}

/// The mirror page: the state of `m/` and what happened to the watch.
const MIRROR_SCRIPT: &str = r#"
  const m = gw.mirror("app", {prefix: "m/", progressInterval: "1s"});
  const seen = {replaced: [], errors: [], changes: 0};
  m.on("replaced", (r) => seen.replaced.push(r.reason));
  m.on("change", () => { seen.changes += 1; });
  m.on("error", (e) => seen.errors.push(e.code));
  window.report = () => JSON.stringify({
    ready: m.isReady, revision: m.revision, state: m.state,
    opens: m.watch.opens, sources: m.watch.sources, ...seen,
    kvs: Object.fromEntries(m.entries().map(([k, kv]) => [k, kv.value])),
  });
"#;

#[tokio::test]
async fn a_browser_mirror_equals_etcd_across_stream_closes_and_a_gateway_restart() {
    let etcd = Etcd::start().await;
    let proxy = Proxy::start(&etcd.endpoint()).await;
    let mut etcd_client = etcd.client().await;
    for i in 0..5 {
        etcd_client.put(format!("app/m/{i}"), format!("v{i}"), None).await.unwrap();
    }
    let page_port = free_port();
    let mut config = config_for_page(&[proxy.endpoint()], page_port);
    // Streams end every ~3 s: the browser reconnects with Last-Event-ID.
    config.watch.max_stream_lifetime = HumanDuration::secs(3);
    let gw = Gateway::start_ready(config.clone()).await;
    let addr = gw.addr;
    let browser = open_page(&gw, page_port, MIRROR_SCRIPT).await;
    let report = || async { browser.eval_json("return window.report()").await };
    wait_until("the mirror is ready", Duration::from_secs(20), || async { report().await["ready"] == true })
        .await;
    assert_eq!(report().await["kvs"], json!(etcd_state(&etcd, "m/").await));

    // Writes across two or more server-side stream closes.
    let mut last = 0;
    for i in 0..16 {
        last = etcd_client
            .put(format!("app/m/{}", i % 7), format!("w{i}"), None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        if i % 3 == 0 {
            etcd_client.delete(format!("app/m/{}", (i + 3) % 7), None).await.unwrap();
        }
        etcd_client.put("app/elsewhere", i.to_string(), None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    wait_until("the mirror caught up", Duration::from_secs(30), || async {
        report().await["revision"].as_i64().unwrap() >= last
    })
    .await;
    assert_eq!(report().await["kvs"], json!(etcd_state(&etcd, "m/").await));
    assert!(report().await["opens"].as_u64().unwrap() >= 2, "the server closed streams: {}", report().await);

    // The gateway restarts and cannot reach etcd for a while: the watch is
    // answered 503 not_ready, EventSource gives up, and the module opens a
    // new one from the last revision it saw.
    gw.shutdown().await;
    proxy.cut();
    for i in 0..4 {
        etcd_client.put(format!("app/m/r{i}"), "while down", None).await.unwrap();
    }
    etcd_client.delete("app/m/1", None).await.unwrap();
    let gw = Gateway::start_on(config.clone(), addr).await;
    wait_until("the page was told the gateway is not ready", Duration::from_secs(30), || async {
        report().await["errors"].as_array().unwrap().contains(&json!("not_ready"))
    })
    .await;
    proxy.restore();
    let last = etcd_client.put("app/m/final", "done", None).await.unwrap().header().unwrap().revision();
    wait_until("the mirror caught up after the restart", Duration::from_secs(60), || async {
        report().await["revision"].as_i64().unwrap() >= last
    })
    .await;
    let state = report().await;
    let expected = etcd_state(&etcd, "m/").await;
    let mirrored: BTreeMap<String, Value> = serde_json::from_value(state["kvs"].clone()).unwrap();
    assert_eq!(mirrored, expected, "the mirror equals etcd key by key: {state}");
    // Resumed every time from the last revision: never rebuilt from a new snapshot.
    assert_eq!(state["replaced"], json!(["initial"]), "{state}");
    assert!(state["sources"].as_u64().unwrap() >= 2, "the module opened a new EventSource: {state}");
    assert_eq!(state["state"], "open");

    // Down again, and etcd compacts the history the mirror would resume
    // from: the gateway sends `reset`, and the snapshot that follows
    // replaces the mirror's state.
    gw.shutdown().await;
    etcd_client.delete("app/m/0", None).await.unwrap();
    etcd_client.put("app/m/after-compaction", "new", None).await.unwrap();
    etcd.compact(etcd.revision().await).await;
    let _gw = Gateway::start_ready_on(config, addr).await;
    let last = etcd_client.put("app/m/final", "again", None).await.unwrap().header().unwrap().revision();
    wait_until("the mirror caught up after the compaction", Duration::from_secs(60), || async {
        report().await["revision"].as_i64().unwrap() >= last
    })
    .await;
    let state = report().await;
    let mirrored: BTreeMap<String, Value> = serde_json::from_value(state["kvs"].clone()).unwrap();
    assert_eq!(mirrored, etcd_state(&etcd, "m/").await, "the mirror equals etcd key by key: {state}");
    assert_eq!(state["replaced"], json!(["initial", "compacted"]), "{state}");
    let _ = browser.client.clone().close().await;
}
