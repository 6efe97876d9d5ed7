//! The web UI at `/ui/`, driven in headless Chromium through its journeys
//! against a real gateway and etcd: open `/`, pick a namespace, walk the
//! tree, open a JSON value, see a change arrive without reload, use the
//! event log, time-travel and diff, sign in with a token. Each journey
//! asserts on the page's content and saves PNG screenshots under
//! `$CARGO_TARGET_TMPDIR/ui-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use etcd_cache_gateway::config::{Config, TokenConfig};
use fantoccini::Locator;
use serde_json::{Value, json};

use crate::chromium::Browser;
use crate::support::{Etcd, Gateway, wait_until};

/// Where the screenshots go.
fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.client.screenshot().await.unwrap();
    assert_eq!(&png[1..4], b"PNG", "a PNG");
    let path = screenshot_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// The text of the element `#id`.
async fn text(browser: &Browser, id: &str) -> String {
    browser
        .eval_json(&format!("return JSON.stringify(document.getElementById({id:?}).textContent)"))
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// The names in the tree, in order.
async fn tree_names(browser: &Browser) -> Vec<String> {
    let names = browser
        .eval_json("return JSON.stringify([...document.querySelectorAll('#tree li .name')].map((e) => e.textContent))")
        .await;
    serde_json::from_value(names).unwrap()
}

/// The event log's rows as [revision, type, key].
async fn log_rows(browser: &Browser) -> Vec<Vec<String>> {
    let rows = browser
        .eval_json(
            "return JSON.stringify([...document.querySelectorAll('#log tr')].map((tr) => [...tr.children].map((td) => td.textContent)))",
        )
        .await;
    serde_json::from_value(rows).unwrap()
}

async fn click(browser: &Browser, css: &str) {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Sets an input's value as a person typing would.
async fn fill(browser: &Browser, id: &str, value: &str) {
    let input = browser.client.find(Locator::Id(id)).await.unwrap();
    input.clear().await.unwrap();
    if !value.is_empty() {
        input.send_keys(value).await.unwrap();
    }
}

async fn wait_text(browser: &Browser, id: &str, what: &str, expected: impl Fn(&str) -> bool) {
    wait_until(what, Duration::from_secs(20), || async { expected(&text(browser, id).await) }).await;
}

/// Every URL the page requested, from the Resource Timing API.
async fn requested_urls(browser: &Browser) -> Vec<String> {
    let urls = browser
        .eval_json("return JSON.stringify([location.href, ...performance.getEntriesByType('resource').map((e) => e.name)])")
        .await;
    serde_json::from_value(urls).unwrap()
}

fn two_namespaces(etcd: &Etcd) -> Config {
    let mut config = Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/");
    config.namespaces.push(etcd_cache_gateway::config::NamespaceConfig {
        name: "other".into(),
        prefix: "other/".into(),
        max_subscribers: None,
    });
    config
}

#[tokio::test]
async fn ui_journey_browse_open_watch_log_and_time_travel() {
    let etcd = Etcd::start().await;
    let mut etcd_client = etcd.client().await;
    let first = r#"{"host":"db","port":5432}"#;
    let before =
        etcd_client.put("app/config/db.json", first, None).await.unwrap().header().unwrap().revision();
    etcd_client.put("app/config/log-level", "info", None).await.unwrap();
    etcd_client.put("app/bin", vec![0u8, 1, 0xfe, 0xff], None).await.unwrap();
    for i in 1..=3 {
        etcd_client.put(format!("app/services/web/{i}"), "up", None).await.unwrap();
    }
    etcd_client.put("other/x", "1", None).await.unwrap();
    let gw = Gateway::start_ready(two_namespaces(&etcd)).await;
    let browser = Browser::start(1280, 900).await;

    // `/` leads to the UI, which lists the namespaces with their facts.
    browser.client.goto(&gw.url("/")).await.unwrap();
    assert_eq!(browser.client.current_url().await.unwrap().path(), "/ui/");
    wait_text(&browser, "namespace-list", "the namespaces are listed", |t| {
        t.contains("app") && t.contains("other")
    })
    .await;
    let facts = text(&browser, "namespace-list").await;
    assert!(facts.contains("6 keys"), "app's key count: {facts}");
    wait_text(&browser, "health", "health shows", |t| t == "ready").await;
    screenshot(&browser, "1-namespaces").await;

    // Pick a namespace: the tree's first level, folders with their counts.
    click(&browser, "a[data-ns='app']").await;
    wait_until("the tree is listed", Duration::from_secs(20), || async {
        !tree_names(&browser).await.is_empty()
    })
    .await;
    assert_eq!(tree_names(&browser).await, ["config/", "services/", "bin"]);
    let counts = text(&browser, "tree").await;
    assert!(counts.contains("2 keys") && counts.contains("3 keys"), "{counts}");
    wait_text(&browser, "connection", "the watch is live", |t| t == "live").await;
    assert_eq!(
        text(&browser, "tree-count").await,
        format!("1 key here, 2 folders at revision {}", etcd.revision().await)
    );

    // The keyboard alone: down to services/, into it, and back up.
    browser.client.find(Locator::Id("tree")).await.unwrap().send_keys("\u{E015}\u{E007}").await.unwrap();
    wait_until("services/ is listed", Duration::from_secs(20), || async {
        tree_names(&browser).await == ["web/"]
    })
    .await;
    let focused = browser.eval_json("return JSON.stringify(document.activeElement.id)").await;
    assert_eq!(focused, "tree", "focus stays in the tree");
    browser.client.find(Locator::Id("tree")).await.unwrap().send_keys("\u{E003}").await.unwrap();
    wait_until("back at the top", Duration::from_secs(20), || async {
        tree_names(&browser).await == ["config/", "services/", "bin"]
    })
    .await;

    // Into a folder, open a JSON value.
    click(&browser, "#tree li.folder[data-prefix='config/']").await;
    wait_until("config/ is listed", Duration::from_secs(20), || async {
        tree_names(&browser).await == ["db.json", "log-level"]
    })
    .await;
    click(&browser, "#tree li.key[data-key='config/db.json']").await;
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(first).unwrap()).unwrap();
    wait_text(&browser, "value", "the JSON value is shown", |t| t == pretty).await;
    let meta = browser
        .eval_json("return JSON.stringify(Object.fromEntries([...document.querySelectorAll('#meta dd')].map((d) => [d.dataset.field, d.textContent])))")
        .await;
    assert_eq!(meta["mod_revision"], before.to_string());
    assert_eq!(meta["version"], "1");
    assert_eq!(meta["shown as"], "json");
    let command =
        |id: &str| format!("return JSON.stringify(document.getElementById({id:?}).dataset.command)");
    assert_eq!(
        browser.eval_json(&command("copy-curl")).await,
        json!(format!("curl '{}/v1/namespaces/app/kv/config/db.json?raw=true'", gw.base_url))
    );
    assert_eq!(
        browser.eval_json(&command("copy-etcdctl")).await,
        json!("etcdctl get --print-value-only 'app/config/db.json'")
    );
    screenshot(&browser, "2-key-json").await;

    // A change made in etcd appears in the open value and the log, no reload.
    let second = r#"{"host":"db2","port":5432}"#;
    let changed =
        etcd_client.put("app/config/db.json", second, None).await.unwrap().header().unwrap().revision();
    wait_text(&browser, "value", "the new value is shown", |t| t.contains("db2")).await;
    let flashed = browser
        .eval_json(
            "return JSON.stringify([document.querySelector(\"#tree li[data-key='config/db.json']\").classList.contains('flash'),
              document.getElementById('value').classList.contains('flash')])",
        )
        .await;
    assert_eq!(flashed, json!([true, true]), "the changed row and the open value flash");
    wait_until("the change is logged", Duration::from_secs(20), || async {
        log_rows(&browser).await.contains(&vec![changed.to_string(), "put".into(), "config/db.json".into()])
    })
    .await;
    wait_text(&browser, "last-revision", "the last revision shows", |t| t == format!("revision {changed}"))
        .await;
    screenshot(&browser, "3-live-change").await;

    // The log: paused events are held, then shown; filter; clear.
    click(&browser, "#pause").await;
    let held = etcd_client.put("app/services/web/4", "up", None).await.unwrap().header().unwrap().revision();
    wait_text(&browser, "log-count", "the event is held", |t| t == "paused · 1 held").await;
    assert!(!log_rows(&browser).await.iter().any(|r| r[0] == held.to_string()));
    click(&browser, "#pause").await;
    let rows = log_rows(&browser).await;
    assert_eq!(rows[0], [held.to_string(), "put".into(), "services/web/4".into()], "newest first: {rows:?}");
    fill(&browser, "log-filter", "services/").await;
    let rows = log_rows(&browser).await;
    assert_eq!(rows, [[held.to_string(), "put".to_owned(), "services/web/4".to_owned()]]);
    click(&browser, "#clear").await;
    assert!(log_rows(&browser).await.is_empty());

    // The query box: filters and selects on JSON values; a bad one explained.
    fill(&browser, "filter", "port==5432").await;
    fill(&browser, "select", "host").await;
    click(&browser, "#query button[type=submit]").await;
    wait_until("only the matching key is listed", Duration::from_secs(20), || async {
        tree_names(&browser).await == ["db.json"]
    })
    .await;
    let projected =
        browser.eval_json("return JSON.stringify(document.querySelector('#tree li .rev').textContent)").await;
    assert_eq!(projected, r#"{"host":"db2"}"#);
    fill(&browser, "filter", "port==").await;
    click(&browser, "#query button[type=submit]").await;
    wait_text(&browser, "message", "the bad filter is explained", |t| t.contains("invalid filter")).await;
    fill(&browser, "filter", "").await;
    fill(&browser, "select", "").await;
    click(&browser, "#query button[type=submit]").await;
    wait_until("the whole folder is listed again", Duration::from_secs(20), || async {
        tree_names(&browser).await == ["db.json", "log-level"]
    })
    .await;

    // Time travel with the slider: the value as it was, and a diff
    // between two revisions.
    let now = etcd.revision().await.to_string();
    wait_until("the slider spans etcd's history up to now", Duration::from_secs(20), || async {
        let range =
            "const s = document.getElementById('revision-slider'); return JSON.stringify([s.min, s.max])";
        browser.eval_json(range).await == json!(["1", now])
    })
    .await;
    browser
        .eval_json(&format!(
            "const s = document.getElementById('revision-slider'); s.value = '{before}';
             s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); return 'null'"
        ))
        .await;
    wait_text(&browser, "value", "the old value is shown", |t| t == pretty).await;
    let field = browser.eval_json("return JSON.stringify(document.getElementById('revision').value)").await;
    assert_eq!(field, before.to_string());
    wait_until("the tree as it was", Duration::from_secs(20), || async {
        tree_names(&browser).await == ["db.json"]
    })
    .await;
    assert!(text(&browser, "travel").await.contains(&format!("as it was at revision {before}")));
    fill(&browser, "diff-a", &before.to_string()).await;
    click(&browser, "#diff-form button").await;
    wait_text(&browser, "diff", "the diff is shown", |t| t.contains("+   \"host\": \"db2\"")).await;
    assert!(text(&browser, "diff").await.contains("-   \"host\": \"db\","));
    screenshot(&browser, "4-time-travel-diff").await;

    // Too far back: the compacted boundary, explained.
    let compacted = etcd.revision().await;
    etcd.compact(compacted).await;
    // (Revision `before` itself was read above and stays cached: one never read.)
    let gone =
        crate::support::http::get(&gw.url(&format!("/v1/namespaces/app/kv?revision={}", before + 1))).await;
    assert_eq!(gone.status, 410, "revision {} is compacted", before + 1);
    let oldest = gone.json()["compact_revision"].as_i64().unwrap();
    fill(&browser, "revision", &(before + 1).to_string()).await;
    click(&browser, "#query button[type=submit]").await;
    wait_text(&browser, "message", "the compaction is explained", |t| t.contains("compacted")).await;
    let message = text(&browser, "message").await;
    assert_eq!(
        message,
        format!(
            "Revision {} is older than etcd keeps: history before revision {oldest} was compacted. \
             Pick revision {oldest} or later.",
            before + 1
        )
    );

    // Back to live; a binary value in hex.
    click(&browser, "#live").await;
    // A key that is not UTF-8: listed readably, opened by its bytes.
    etcd_client.put(b"app/\xfe\x01".to_vec(), "raw", None).await.unwrap();
    browser.client.goto(&gw.url("/ui/#/ns/app")).await.unwrap();
    wait_until("the binary key is listed", Duration::from_secs(20), || async {
        tree_names(&browser).await.contains(&"\\xfe\\x01".to_owned())
    })
    .await;
    click(&browser, "#tree li.key[data-key='/gE=']").await;
    wait_text(&browser, "value", "its value is shown", |t| t == "raw").await;
    assert_eq!(text(&browser, "key-title").await, "\\xfe\\x01 (not UTF-8)");
    browser.client.goto(&gw.url("/ui/#/ns/app?key=bin")).await.unwrap();
    wait_text(&browser, "meta", "the binary key is open", |t| t.contains("binary")).await;
    click(&browser, ".tabs [data-view='hex']").await;
    wait_text(&browser, "value", "hex is shown", |t| t == "00000000  00 01 fe ff").await;

    // Every request the UI made went to the gateway.
    let origin = gw.base_url.clone();
    for url in requested_urls(&browser).await {
        assert!(url.starts_with(&origin), "the UI asked {url}, not the gateway");
    }
    let _ = browser.client.clone().close().await;
}

#[tokio::test]
async fn ui_sign_in_shows_only_the_token_namespaces_and_sign_out_forgets_it() {
    let etcd = Etcd::start().await;
    etcd.client().await.put("app/k", "v", None).await.unwrap();
    let mut config = two_namespaces(&etcd);
    config.tokens = vec![TokenConfig {
        name: "reader".into(),
        secret: Some("reader-secret-123".into()),
        secret_env: None,
        secret_file: None,
        namespaces: vec!["app".into()],
    }];
    let gw = Gateway::start_ready(config).await;
    let browser = Browser::start(1280, 800).await;
    browser.client.goto(&gw.url("/ui/")).await.unwrap();
    wait_until("the sign-in form shows", Duration::from_secs(20), || async {
        browser.eval_json("return JSON.stringify(document.getElementById('signin').hidden)").await
            == json!(false)
    })
    .await;
    assert_eq!(text(&browser, "namespace-list").await, "Sign in to see namespaces.");
    screenshot(&browser, "5-sign-in").await;

    fill(&browser, "token", "wrong-secret-000").await;
    click(&browser, "#signin button").await;
    wait_text(&browser, "message", "a wrong token is refused", |t| !t.is_empty()).await;
    assert_eq!(
        browser.eval_json("return JSON.stringify(document.getElementById('message').dataset.code)").await,
        "unauthorized"
    );

    fill(&browser, "token", "reader-secret-123").await;
    click(&browser, "#signin button").await;
    wait_text(&browser, "namespace-list", "the token's namespaces are listed", |t| t.contains("app")).await;
    let listed = browser
        .eval_json("return JSON.stringify([...document.querySelectorAll('#namespace-list a')].map((a) => a.dataset.ns))")
        .await;
    assert_eq!(listed, json!(["app"]));
    click(&browser, "a[data-ns='app']").await;
    wait_until("the tree is listed", Duration::from_secs(20), || async {
        tree_names(&browser).await == ["k"]
    })
    .await;
    click(&browser, "#tree li.key[data-key='k']").await;
    wait_text(&browser, "value", "the value is shown", |t| t == "v").await;
    let curl = browser
        .eval_json("return JSON.stringify(document.getElementById('copy-curl').dataset.command)")
        .await;
    assert_eq!(
        curl,
        json!(format!(
            "curl -H \"Authorization: Bearer $GATEWAY_TOKEN\" '{}/v1/namespaces/app/kv/k?raw=true'",
            gw.base_url
        ))
    );
    screenshot(&browser, "6-signed-in").await;

    click(&browser, "#signout").await;
    wait_until("signed out", Duration::from_secs(20), || async {
        browser.eval_json("return JSON.stringify(document.getElementById('signin').hidden)").await
            == json!(false)
    })
    .await;
    assert_eq!(browser.eval_json("return JSON.stringify(document.cookie)").await, "");
    let _ = browser.client.clone().close().await;
}

/// The page's tree timings once the latest listing has been painted.
async fn painted_metrics(browser: &Browser) -> Value {
    wait_until("the tree is painted", LARGE_WAIT, || async {
        let m = browser.eval_json("return JSON.stringify(window.uiMetrics || {})").await;
        m.get("treePaintedLoad").is_some() && m["treePaintedLoad"] == m["treeLoads"]
    })
    .await;
    browser.eval_json("return JSON.stringify(window.uiMetrics)").await
}

/// Bound on each wait of the 100k-key test (a debug build on a shared machine).
const LARGE_WAIT: Duration = Duration::from_secs(180);

/// Keys written per etcd transaction (etcd's default `--max-txn-ops` is 128).
const TXN_OPS: usize = 128;

#[tokio::test]
async fn ui_tree_of_a_100k_key_namespace_paints_and_expands() {
    let etcd = Etcd::start().await;
    let mut etcd_client = etcd.client().await;
    let keys: Vec<String> = (0..100_000).map(|i| format!("big/f{:03}/k{:05}", i / 1000, i)).collect();
    for chunk in keys.chunks(TXN_OPS) {
        let ops: Vec<etcd_client::TxnOp> =
            chunk.iter().map(|k| etcd_client::TxnOp::put(format!("app/{k}"), "{\"n\":1}", None)).collect();
        etcd_client.txn(etcd_client::Txn::new().and_then(ops)).await.unwrap();
    }
    // Loading 100,000 keys takes a while in a debug build on a busy machine.
    let gw = Gateway::start(two_namespaces(&etcd)).await;
    let ready = gw.url("/readyz");
    wait_until("the gateway loaded 100,000 keys", LARGE_WAIT, || async {
        reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let browser = Browser::start(1280, 900).await;
    browser.client.goto(&gw.url("/ui/#/ns/app?prefix=big/")).await.unwrap();
    wait_until("the 100 folders are listed", LARGE_WAIT, || async {
        tree_names(&browser).await.len() == 100
    })
    .await;
    let metrics = painted_metrics(&browser).await;
    eprintln!("100k keys, first level (100 folders): {metrics}");
    assert_eq!(tree_names(&browser).await[7], "f007/");
    assert!(text(&browser, "tree").await.contains("1000 keys"));
    screenshot(&browser, "7-100k-tree").await;

    click(&browser, "#tree li.folder[data-prefix='big/f007/']").await;
    wait_until("a folder of 1000 keys shows its first page", LARGE_WAIT, || async {
        tree_names(&browser).await.first().map(String::as_str) == Some("k07000")
    })
    .await;
    assert_eq!(tree_names(&browser).await.len(), 500, "one page");
    let expanded = painted_metrics(&browser).await;
    eprintln!("100k keys, one folder (first page of 500): {expanded}");
    click(&browser, "#more").await;
    wait_until("the second page is appended", LARGE_WAIT, || async {
        tree_names(&browser).await.len() == 1000
    })
    .await;

    // The flat list of all 100,000 keys, one page at a time.
    browser.client.goto(&gw.url("/ui/#/ns/app?prefix=big/&flat=1")).await.unwrap();
    wait_until("the flat list shows its first page", LARGE_WAIT, || async {
        text(&browser, "tree-count").await.starts_with("100000 keys at revision")
    })
    .await;
    let flat = painted_metrics(&browser).await;
    eprintln!("100k keys, flat (first page of 500): {flat}");
    assert_eq!(tree_names(&browser).await.len(), 500);
    let _ = browser.client.clone().close().await;
}

#[tokio::test]
async fn ui_follows_a_dark_system_theme_and_fits_a_phone_sized_window() {
    let etcd = Etcd::start().await;
    let mut etcd_client = etcd.client().await;
    etcd_client.put("app/config/db.json", r#"{"host":"db","port":5432}"#, None).await.unwrap();
    etcd_client.put("app/services/web/1", "up", None).await.unwrap();
    let gw = Gateway::start_ready(two_namespaces(&etcd)).await;
    let browser = Browser::start_with(390, 844, &["--force-dark-mode"]).await;
    browser.client.goto(&gw.url("/ui/#/ns/app?prefix=config/&key=config/db.json")).await.unwrap();
    wait_text(&browser, "value", "the value is shown", |t| t.contains("\"host\": \"db\"")).await;
    let look = browser
        .eval_json(
            "return JSON.stringify({dark: matchMedia('(prefers-color-scheme: dark)').matches,
              background: getComputedStyle(document.body).backgroundColor,
              color: getComputedStyle(document.body).color,
              columns: getComputedStyle(document.querySelector('.layout')).gridTemplateColumns.split(' ').length,
              overflow: document.documentElement.scrollWidth > window.innerWidth})",
        )
        .await;
    assert_eq!(
        look,
        json!({"dark": true, "background": "rgb(13, 17, 23)", "color": "rgb(230, 237, 243)", "columns": 1, "overflow": false})
    );
    screenshot(&browser, "8-phone-dark").await;
    let _ = browser.client.clone().close().await;
}

#[tokio::test]
async fn ui_files_are_served_with_a_same_origin_policy_and_root_redirects_to_them() {
    let etcd = Etcd::start().await;
    let gw = Gateway::start_ready(Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/")).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let root = http.get(gw.url("/")).send().await.unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/ui/");
    for (path, content_type, file) in [
        ("/ui/", "text/html; charset=utf-8", "index.html"),
        ("/ui/app.js", "text/javascript; charset=utf-8", "app.js"),
        ("/ui/style.css", "text/css; charset=utf-8", "style.css"),
    ] {
        let reply = http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{path}");
        assert_eq!(reply.headers()["content-type"], content_type, "{path}");
        assert_eq!(
            reply.headers()["content-security-policy"],
            etcd_cache_gateway::ui::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        let etag = reply.headers()["etag"].to_str().unwrap().to_owned();
        let body = reply.text().await.unwrap();
        assert_eq!(
            body,
            std::fs::read_to_string(format!("{}/web/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
        );
        let again = http.get(gw.url(path)).header("If-None-Match", etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    let missing = http.get(gw.url("/ui/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["content-type"], "application/problem+json");
    assert_eq!(missing.json::<Value>().await.unwrap()["code"], "not_found");
}

#[tokio::test]
async fn ui_event_log_misses_nothing_across_server_closed_streams() {
    let etcd = Etcd::start().await;
    let mut config = Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/");
    config.watch.max_stream_lifetime = etcd_cache_gateway::config::HumanDuration::secs(2);
    let gw = Gateway::start_ready(config).await;
    let browser = Browser::start(1280, 800).await;
    browser.client.goto(&gw.url("/ui/#/ns/app")).await.unwrap();
    wait_text(&browser, "connection", "the watch is live", |t| t == "live").await;
    let mut etcd_client = etcd.client().await;
    let mut written = Vec::new();
    for i in 0..12 {
        let r = etcd_client.put(format!("app/k/{i}"), "v", None).await.unwrap().header().unwrap().revision();
        written.push(vec![r.to_string(), "put".to_owned(), format!("k/{i}")]);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    wait_until("every change is logged", Duration::from_secs(30), || async {
        log_rows(&browser).await.len() >= written.len()
    })
    .await;
    written.reverse();
    assert_eq!(log_rows(&browser).await, written, "every change once, newest first");
    let opens = browser.eval_json("return JSON.stringify(app.log.watch.opens)").await;
    assert!(opens.as_u64().unwrap() >= 2, "the server closed the stream at least once: {opens}");
    let _ = browser.client.clone().close().await;
}
