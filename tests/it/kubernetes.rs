//! The Kubernetes-style surface (COMPAT.md §1) against a real etcd: the
//! exact wire format of discovery, lists, gets, every watch event and every
//! error, then real clients (kubectl, the Python `kubernetes` client) over
//! TLS with a token, and a client-go-style reflector through an etcd
//! restart and a compaction.

use std::time::Duration;

use etcd_cache_gateway::config::{Config, HumanDuration, KubeResourceConfig, NamespaceConfig};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::http::get;
use crate::support::{Etcd, Gateway};

/// Bound on waiting for one watch line.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

fn resource(resource: &str, kind: &str, key: &str) -> KubeResourceConfig {
    KubeResourceConfig {
        namespace: "apps".into(),
        group: "example.com".into(),
        version: "v1".into(),
        resource: resource.into(),
        kind: kind.into(),
        key: key.into(),
    }
}

/// A gateway serving `widgets` (namespaced) and `gizmos` (cluster-scoped)
/// from namespace `apps` on prefix `apps/`.
pub fn kube_config(endpoint: &str) -> Config {
    let mut config = Gateway::config(&[endpoint.to_owned()]);
    config.namespaces =
        vec![NamespaceConfig { name: "apps".into(), prefix: "apps/".into(), max_subscribers: None }];
    config.kubernetes.resources = vec![
        resource("widgets", "Widget", "widgets/{namespace}/{name}"),
        resource("gizmos", "Gizmo", "gizmos/{name}"),
    ];
    config.kubernetes.bookmark_interval = HumanDuration::secs(1);
    config
}

struct Env {
    etcd: Etcd,
    gw: Gateway,
    client: etcd_client::Client,
}

async fn env_with(tweak: impl FnOnce(&mut Config)) -> Env {
    let etcd = Etcd::start().await;
    let mut config = kube_config(&etcd.endpoint());
    tweak(&mut config);
    let gw = Gateway::start_ready(config).await;
    let client = etcd.client().await;
    Env { etcd, gw, client }
}

impl Env {
    async fn put(&mut self, key: &str, value: &Value) -> i64 {
        let text = if let Value::String(s) = value { s.clone() } else { value.to_string() };
        crate::support::etcd::put(&mut self.client, format!("apps/{key}"), text).await
    }

    async fn delete(&mut self, key: &str) -> i64 {
        let reply = self.client.delete(format!("apps/{key}"), None).await.unwrap();
        reply.header().unwrap().revision()
    }

    fn url(&self, path: &str) -> String {
        self.gw.url(path)
    }
}

/// A watch stream read line by line.
pub struct Lines {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl Lines {
    pub async fn open(url: &str) -> (reqwest::StatusCode, String, Self) {
        let response = reqwest::get(url).await.unwrap();
        let status = response.status();
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        (status, content_type, Self { stream: response.bytes_stream().boxed(), buffer: Vec::new() })
    }

    /// The next line that is not a `BOOKMARK` (those come whenever a
    /// stream was quiet for the bookmark interval).
    pub async fn next_change(&mut self) -> Option<Value> {
        for _ in 0..100 {
            match self.next().await {
                Some(line) if line["type"] == "BOOKMARK" => continue,
                other => return other,
            }
        }
        panic!("only bookmarks")
    }

    /// The next line as JSON; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).expect("each line is one JSON object"));
            }
            let chunk = tokio::time::timeout(LINE_TIMEOUT, self.stream.next()).await.expect("a line in time");
            match chunk {
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                _ => {
                    assert!(self.buffer.is_empty(), "a partial line at the end");
                    return None;
                }
            }
        }
    }
}

fn widget(namespace: &str, name: &str, rv: i64, labels: Value, spec: Value) -> Value {
    let mut metadata = json!({"name": name, "namespace": namespace, "resourceVersion": rv.to_string()});
    if !labels.is_null() {
        metadata["labels"] = labels;
    }
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": metadata, "spec": spec})
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":message,"reason":reason,"code":code})
}

#[tokio::test]
async fn discovery_lists_gets_selectors_paging_and_errors() {
    let mut env = env_with(|_| {}).await;
    let a = env.put("widgets/ns1/a", &json!({"metadata":{"labels":{"tier":"web"}},"spec":{"size":1}})).await;
    let b = env.put("widgets/ns1/b", &json!({"metadata":{"labels":{"tier":"db"}},"spec":{"size":2}})).await;
    let c = env.put("widgets/ns2/c", &json!({"spec":{"size":3}})).await;
    env.put("widgets/ns2/bad", &json!("not json")).await;
    env.put("widgets/ns2/too/deep", &json!({})).await;
    let g = env.put("gizmos/g1", &json!({"metadata":{"resourceVersion":"1","name":"g1"}})).await;

    assert_eq!(
        get(&env.url("/api")).await.json(),
        json!({"kind":"APIVersions","versions":[],"serverAddressByClientCIDRs":[]})
    );
    let group = json!({"name":"example.com","versions":[{"groupVersion":"example.com/v1","version":"v1"}],
                       "preferredVersion":{"groupVersion":"example.com/v1","version":"v1"}});
    assert_eq!(
        get(&env.url("/apis")).await.json(),
        json!({"kind":"APIGroupList","apiVersion":"v1","groups":[group]})
    );
    let mut one = group.clone();
    one["kind"] = json!("APIGroup");
    one["apiVersion"] = json!("v1");
    assert_eq!(get(&env.url("/apis/example.com")).await.json(), one);
    assert_eq!(
        get(&env.url("/apis/example.com/v1")).await.json(),
        json!({"kind":"APIResourceList","apiVersion":"v1","groupVersion":"example.com/v1","resources":[
            {"name":"widgets","singularName":"widget","namespaced":true,"kind":"Widget","verbs":["get","list","watch"]},
            {"name":"gizmos","singularName":"gizmo","namespaced":false,"kind":"Gizmo","verbs":["get","list","watch"]}]})
    );
    let version = get(&env.url("/version")).await.json();
    assert_eq!((version["major"].as_str(), version["minor"].as_str()), (Some("1"), Some("32")));

    let wa = widget("ns1", "a", a, json!({"tier":"web"}), json!({"size":1}));
    let wb = widget("ns1", "b", b, json!({"tier":"db"}), json!({"size":2}));
    let wc = widget("ns2", "c", c, Value::Null, json!({"size":3}));
    let reply = get(&env.url("/apis/example.com/v1/namespaces/ns1/widgets/a")).await;
    assert_eq!((reply.status, reply.header("content-type")), (200, "application/json"));
    assert_eq!(reply.json(), wa);
    let head = g.to_string();
    let list = |items: Vec<&Value>| json!({"kind":"WidgetList","apiVersion":"example.com/v1","metadata":{"resourceVersion":head},"items":items});
    assert_eq!(
        get(&env.url("/apis/example.com/v1/namespaces/ns1/widgets")).await.json(),
        list(vec![&wa, &wb])
    );
    assert_eq!(
        get(&env.url("/apis/example.com/v1/widgets")).await.json(),
        list(vec![&wa, &wb, &wc]),
        "bad values are left out"
    );
    for (selector, want) in [
        ("labelSelector=tier%3Dweb", vec![&wa]),
        ("labelSelector=tier%20in%20(web,db)", vec![&wa, &wb]),
        ("labelSelector=!tier", vec![&wc]),
        ("labelSelector=tier!%3Dweb", vec![&wb, &wc]),
        ("fieldSelector=metadata.namespace%3Dns2", vec![&wc]),
        ("fieldSelector=metadata.name!%3Da,metadata.namespace%3Dns1", vec![&wb]),
    ] {
        assert_eq!(
            get(&env.url(&format!("/apis/example.com/v1/widgets?{selector}"))).await.json(),
            list(want),
            "{selector}"
        );
    }
    let gizmo =
        json!({"apiVersion":"example.com/v1","kind":"Gizmo","metadata":{"name":"g1","resourceVersion":head}});
    assert_eq!(get(&env.url("/apis/example.com/v1/gizmos/g1")).await.json(), gizmo);

    // Paging: pinned to the first page's revision through later writes.
    let first = get(&env.url("/apis/example.com/v1/widgets?limit=2")).await.json();
    assert_eq!(first["items"], json!([wa, wb]));
    assert_eq!(first["metadata"]["resourceVersion"], json!(head));
    env.put("widgets/ns2/c", &json!({"spec":{"size":30}})).await;
    env.put("widgets/ns2/d", &json!({})).await;
    let token = first["metadata"]["continue"].as_str().unwrap().to_owned();
    let second =
        get(&env.url(&format!("/apis/example.com/v1/widgets?limit=2&continue={token}"))).await.json();
    assert_eq!(second, list(vec![&wc]), "the rest at the first page's revision, no continue");

    // Errors, each a Status.
    let cases = [
        (
            "/apis/example.com/v1/namespaces/ns1/widgets/zz",
            404,
            "NotFound",
            "widgets.example.com \"zz\" not found",
        ),
        (
            "/apis/example.com/v1/namespaces/ns2/widgets/bad",
            404,
            "NotFound",
            "widgets.example.com \"bad\" not found",
        ),
        (
            "/apis/example.com/v1/things",
            404,
            "NotFound",
            "the server could not find the requested resource (/apis/example.com/v1/things)",
        ),
        (
            "/apis/example.com/v1/widgets?labelSelector=a%3Db%20c",
            400,
            "BadRequest",
            "unable to parse requirement: \"a=b c\": invalid label value \"b c\"",
        ),
        (
            "/apis/example.com/v1/widgets?fieldSelector=spec.size%3D1",
            400,
            "BadRequest",
            "field label not supported: spec.size (supported: metadata.name, metadata.namespace)",
        ),
        (
            "/apis/example.com/v1/widgets?continue=bm9wZQ",
            400,
            "BadRequest",
            "continue key is not valid: not base64",
        ),
        (
            "/apis/example.com/v1/widgets?resourceVersionMatch=Exact",
            422,
            "Invalid",
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        ),
    ];
    for (path, code, reason, message) in cases {
        let reply = get(&env.url(path)).await;
        assert_eq!((reply.status, reply.header("content-type")), (code, "application/json"), "{path}");
        let mut body = reply.json();
        body.as_object_mut().unwrap().remove("details");
        assert_eq!(body, status(code, reason, message), "{path}");
    }
    let future = env.etcd.revision().await + 1000;
    let reply = get(&env
        .url(&format!("/apis/example.com/v1/widgets?resourceVersion={future}&resourceVersionMatch=Exact")))
    .await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.json()["details"]["causes"][0]["reason"], "ResourceVersionTooLarge");
    let post =
        reqwest::Client::new().post(env.url("/apis/example.com/v1/widgets")).body("{}").send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.json::<Value>().await.unwrap()["reason"], "MethodNotAllowed");
}

#[tokio::test]
async fn watch_events_bookmarks_watchlist_timeout_and_expiry_on_the_wire() {
    let mut env = env_with(|c| c.cache.history_revisions = 5).await;
    let a1 = env.put("widgets/ns1/a", &json!({"metadata":{"labels":{"tier":"web"}}})).await;
    let base = "/apis/example.com/v1/namespaces/ns1/widgets";

    // WatchList: the state as ADDED, the annotated bookmark, then changes.
    let url = env.url(&format!(
        "{base}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    ));
    let (code, content_type, mut list) = Lines::open(&url).await;
    assert_eq!((code.as_u16(), content_type.as_str()), (200, "application/json"));
    let wa1 = json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"a","namespace":"ns1","resourceVersion":a1.to_string(),"labels":{"tier":"web"}}});
    assert_eq!(list.next().await, Some(json!({"type":"ADDED","object":wa1})));
    let end = list.next().await.unwrap();
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(end["object"]["metadata"]["annotations"], json!({"k8s.io/initial-events-end":"true"}));
    let synced: i64 = end["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(synced >= a1);

    // A plain watch from that revision, and one with a label selector.
    let (_, _, mut all) = Lines::open(&env.url(&format!("{base}?watch=true&resourceVersion={synced}"))).await;
    let (_, _, mut web) = Lines::open(
        &env.url(&format!("{base}?watch=true&resourceVersion={synced}&labelSelector=tier%3Dweb")),
    )
    .await;
    let a2 = env.put("widgets/ns1/a", &json!({"metadata":{"labels":{"tier":"db"}}})).await;
    let b = env.put("widgets/ns1/b", &json!({"spec":1})).await;
    let bad = env.put("widgets/ns1/b", &json!("not json")).await;
    let deleted = env.delete("widgets/ns1/a").await;
    let object = |name: &str, rv: i64, labels: Value| {
        let mut o = json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":name,"namespace":"ns1","resourceVersion":rv.to_string()}});
        if !labels.is_null() {
            o["metadata"]["labels"] = labels;
        }
        o
    };
    let wb = |rv| {
        let mut o = object("b", rv, Value::Null);
        o["spec"] = json!(1);
        o
    };
    let expected = [
        json!({"type":"MODIFIED","object":object("a", a2, json!({"tier":"db"}))}),
        json!({"type":"ADDED","object":wb(b)}),
        json!({"type":"DELETED","object":wb(bad)}),
        json!({"type":"DELETED","object":object("a", deleted, json!({"tier":"db"}))}),
    ];
    for want in &expected {
        assert_eq!(all.next().await.as_ref(), Some(want));
        assert_eq!(list.next_change().await.as_ref(), Some(want), "the WatchList goes on with changes");
    }
    // Leaving the selection is a DELETED with the object's last selected
    // state at the revision it left, as the API server's watch cache sends it.
    assert_eq!(
        web.next().await,
        Some(json!({"type":"DELETED","object":object("a", a2, json!({"tier":"web"}))}))
    );

    // Bookmarks on a quiet stream (bookmark_interval = 1s here).
    let next = list.next().await.unwrap();
    assert_eq!(
        next,
        json!({"type":"BOOKMARK","object":{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"resourceVersion":deleted.to_string()}}})
    );

    // timeoutSeconds ends the stream cleanly.
    let (_, _, mut short) =
        Lines::open(&env.url(&format!("{base}?watch=true&resourceVersion={deleted}&timeoutSeconds=1"))).await;
    assert_eq!(short.next().await, None);

    // A resume from a revision etcd compacted: 200, then an in-stream 410.
    for i in 0..10 {
        env.put("widgets/ns1/x", &json!({"n": i})).await;
    }
    let compacted = env.etcd.revision().await;
    env.etcd.compact(compacted).await;
    let (code, _, mut old) = Lines::open(&env.url(&format!("{base}?watch=true&resourceVersion={a1}"))).await;
    assert_eq!(code, 200);
    let error = old.next().await.unwrap();
    assert_eq!(error["type"], "ERROR");
    let message = error["object"]["message"].as_str().unwrap().to_owned();
    assert_eq!(error["object"], status(410, "Expired", &message));
    assert!(message.starts_with(&format!("too old resource version: {a1} (")), "{message}");
    assert_eq!(old.next().await, None, "the stream ends after the error");
    // And a list at that revision is Expired too.
    let reply = get(&env.url(&format!("{base}?resourceVersion={a1}&resourceVersionMatch=Exact"))).await;
    assert_eq!((reply.status, reply.json()["reason"].clone()), (410, json!("Expired")));
}

/// A client-go-style reflector: WatchList first; when that fails, LIST
/// (`limit=500&resourceVersion=0`, paged) then WATCH from the list's
/// revision with bookmarks; on a 410, list again. Its state is keyed by
/// (namespace, name), each object's `resourceVersion` and `spec`.
struct Reflector {
    base: String,
    state: std::collections::BTreeMap<(String, String), (String, Value)>,
    resource_version: String,
    watch_lists: usize,
    lists: usize,
    expired: usize,
}

fn entry(object: &Value) -> ((String, String), (String, Value)) {
    let m = &object["metadata"];
    let text = |v: &Value| v.as_str().unwrap().to_owned();
    ((text(&m["namespace"]), text(&m["name"])), (text(&m["resourceVersion"]), object["spec"].clone()))
}

impl Reflector {
    fn new(base: String) -> Self {
        let state = std::collections::BTreeMap::new();
        Self { base, state, resource_version: String::new(), watch_lists: 0, lists: 0, expired: 0 }
    }

    /// WatchList, else LIST: the state and the revision to watch from.
    async fn sync(&mut self) {
        let url = format!(
            "{}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
            self.base
        );
        if let Ok(response) = reqwest::get(&url).await {
            if response.status() == 200 {
                let mut lines = Lines { stream: response.bytes_stream().boxed(), buffer: Vec::new() };
                let mut state = std::collections::BTreeMap::new();
                while let Some(line) = lines.next().await {
                    let object = &line["object"];
                    match line["type"].as_str().unwrap() {
                        "ADDED" => {
                            let (k, v) = entry(object);
                            state.insert(k, v);
                        }
                        "BOOKMARK"
                            if object["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true" =>
                        {
                            self.state = state;
                            self.resource_version =
                                object["metadata"]["resourceVersion"].as_str().unwrap().into();
                            self.watch_lists += 1;
                            return;
                        }
                        _ => break,
                    }
                }
            }
        }
        self.list().await;
    }

    async fn list(&mut self) {
        let mut state = std::collections::BTreeMap::new();
        let mut token = String::new();
        for _ in 0..100 {
            let page = get(&format!("{}?limit=500&resourceVersion=0{token}", self.base)).await;
            assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
            let page = page.json();
            state.extend(page["items"].as_array().unwrap().iter().map(entry));
            self.resource_version = page["metadata"]["resourceVersion"].as_str().unwrap().into();
            match page["metadata"]["continue"].as_str() {
                Some(next) => token = format!("&continue={next}"),
                None => break,
            }
        }
        self.state = state;
        self.lists += 1;
    }

    /// One watch from the current revision for at most `timeoutSeconds=2`;
    /// a 410 lists again.
    async fn watch_once(&mut self) {
        let url = format!(
            "{}?watch=1&allowWatchBookmarks=true&timeoutSeconds=2&resourceVersion={}",
            self.base, self.resource_version
        );
        let Ok(response) = reqwest::get(&url).await else { return };
        assert_eq!(response.status(), 200);
        let mut lines = Lines { stream: response.bytes_stream().boxed(), buffer: Vec::new() };
        while let Some(line) = lines.next().await {
            let object = &line["object"];
            match line["type"].as_str().unwrap() {
                "ADDED" | "MODIFIED" => {
                    let (k, v) = entry(object);
                    self.resource_version = v.0.clone();
                    self.state.insert(k, v);
                }
                "DELETED" => {
                    let (k, v) = entry(object);
                    self.resource_version = v.0;
                    self.state.remove(&k);
                }
                "BOOKMARK" => {
                    self.resource_version = object["metadata"]["resourceVersion"].as_str().unwrap().into()
                }
                "ERROR" => {
                    assert_eq!(
                        (object["code"].clone(), object["reason"].clone()),
                        (json!(410), json!("Expired"))
                    );
                    self.expired += 1;
                    self.sync().await;
                    return;
                }
                other => panic!("unexpected event type {other}"),
            }
        }
    }

    /// Watches until the state equals `want`, a bounded number of times.
    async fn converge(&mut self, want: &std::collections::BTreeMap<(String, String), (String, Value)>) {
        for _ in 0..30 {
            if self.state == *want {
                return;
            }
            self.watch_once().await;
        }
        assert_eq!(self.state, *want, "the reflector converges to etcd's state, object by object");
    }
}

/// etcd's widgets as the reflector should hold them.
async fn etcd_widgets(
    client: &mut etcd_client::Client,
) -> std::collections::BTreeMap<(String, String), (String, Value)> {
    let options = etcd_client::GetOptions::new().with_prefix();
    let reply = client.get("apps/widgets/", Some(options)).await.unwrap();
    reply
        .kvs()
        .iter()
        .map(|kv| {
            let key = kv.key_str().unwrap().strip_prefix("apps/widgets/").unwrap();
            let (ns, name) = key.split_once('/').unwrap();
            let value: Value = serde_json::from_slice(kv.value()).unwrap();
            ((ns.to_owned(), name.to_owned()), (kv.mod_revision().to_string(), value["spec"].clone()))
        })
        .collect()
}

#[tokio::test]
async fn a_client_go_style_reflector_converges_through_an_etcd_restart_and_a_compaction() {
    let mut env = env_with(|c| c.cache.history_revisions = 5).await;
    for i in 0..20 {
        env.put(&format!("widgets/ns{}/w{i}", i % 3), &json!({"spec": {"i": i}})).await;
    }
    let mut reflector = Reflector::new(env.url("/apis/example.com/v1/widgets"));
    reflector.sync().await;
    assert_eq!((reflector.watch_lists, reflector.lists), (1, 0), "the WatchList serves the first sync");
    reflector.converge(&etcd_widgets(&mut env.client).await).await;

    // etcd goes down: a new WatchList (a consistent read) fails, the LIST
    // at resourceVersion=0 is served from the cache, and the WATCH from its
    // revision carries on once etcd is back.
    for i in 0..5 {
        env.put(&format!("widgets/ns1/w{i}"), &json!({"spec": {"i": i, "v": 2}})).await;
    }
    env.delete("widgets/ns0/w3").await;
    let want = etcd_widgets(&mut env.client).await;
    env.etcd.kill();
    reflector.sync().await;
    assert_eq!((reflector.watch_lists, reflector.lists), (1, 1), "the WatchList failed and the LIST served");
    env.etcd.start_prepared().await;
    env.client = env.etcd.client().await;
    reflector.converge(&want).await;
    for i in 20..25 {
        env.put(&format!("widgets/ns2/w{i}"), &json!({"spec": {"i": i}})).await;
    }
    reflector.converge(&etcd_widgets(&mut env.client).await).await;

    // While the reflector is away, more revisions than the gateway keeps
    // and a compaction: its resume is a 410, and it lists again.
    for i in 0..12 {
        env.put(&format!("widgets/ns0/w{}", i % 4), &json!({"spec": {"round": i}})).await;
    }
    env.delete("widgets/ns2/w20").await;
    env.etcd.compact(env.etcd.revision().await).await;
    reflector.converge(&etcd_widgets(&mut env.client).await).await;
    assert_eq!(reflector.expired, 1, "the resume after the compaction was a 410");
    assert_eq!(reflector.watch_lists, 2, "the re-sync after the 410 was a WatchList");
}

#[tokio::test]
async fn watch_streams_are_never_compressed_and_lists_are_when_asked() {
    let mut env = env_with(|_| {}).await;
    env.put("widgets/ns1/a", &json!({"spec": {"padding": "x".repeat(200)}})).await;
    let client = reqwest::Client::new();
    let send = |query: &str| {
        client
            .get(env.url(&format!("/apis/example.com/v1/widgets?{query}")))
            .header("accept-encoding", "gzip")
            .send()
    };
    let list = send("limit=10").await.unwrap();
    assert_eq!(list.headers().get("content-encoding").map(|v| v.to_str().unwrap()), Some("gzip"));
    let watch = send("watch=1&timeoutSeconds=1").await.unwrap();
    assert_eq!(watch.headers().get("content-encoding"), None, "a compressed watch would sit in the encoder");
    let body = watch.bytes().await.unwrap();
    let first: Value = serde_json::from_slice(body.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["type"], "ADDED");
}

/// The chunks of an HTTP/1.1 chunked body, read off the socket with the
/// framing intact (a client library would hand over the data only), up to
/// and including the chunk that contains `until`.
async fn raw_chunks(addr: std::net::SocketAddr, path: &str, until: &str) -> Vec<Vec<u8>> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(format!("GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n").as_bytes()).await.unwrap();
    let mut reader = BufReader::new(socket);
    async fn read_line(reader: &mut BufReader<tokio::net::TcpStream>, line: &mut String) {
        line.clear();
        tokio::time::timeout(LINE_TIMEOUT, reader.read_line(line)).await.expect("in time").unwrap();
    }
    let mut line = String::new();
    read_line(&mut reader, &mut line).await;
    assert_eq!(line, "HTTP/1.1 200 OK\r\n");
    let mut chunked = false;
    loop {
        read_line(&mut reader, &mut line).await;
        chunked |= line.eq_ignore_ascii_case("transfer-encoding: chunked\r\n");
        if line == "\r\n" {
            break;
        }
    }
    assert!(chunked, "a watch is a chunked body");
    let mut chunks = Vec::new();
    for _ in 0..100_000 {
        read_line(&mut reader, &mut line).await;
        let size = usize::from_str_radix(line.trim_end(), 16).expect("a chunk size");
        assert!(size > 0, "the watch ended early");
        let mut chunk = vec![0; size + 2];
        tokio::time::timeout(LINE_TIMEOUT, reader.read_exact(&mut chunk)).await.expect("in time").unwrap();
        assert_eq!(chunk.split_off(size), b"\r\n");
        let done = String::from_utf8_lossy(&chunk).contains(until);
        chunks.push(chunk);
        if done {
            return chunks;
        }
    }
    panic!("no {until} in 100,000 chunks")
}

#[tokio::test]
async fn a_watchlist_sends_its_initial_objects_in_chunks_of_whole_lines_not_a_chunk_each() {
    use etcd_client::{Txn, TxnOp};
    let mut env = env_with(|_| {}).await;
    let names: Vec<String> = (0..1200).map(|i| format!("w{i:04}")).collect();
    for batch in names.chunks(100) {
        let ops: Vec<TxnOp> = batch
            .iter()
            .map(|name| TxnOp::put(format!("apps/widgets/ns1/{name}"), r#"{"spec":{"size":1}}"#, None))
            .collect();
        env.client.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    let path = "/apis/example.com/v1/widgets?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan\
                &allowWatchBookmarks=true";
    let chunks = raw_chunks(env.gw.addr, path, "k8s.io/initial-events-end").await;
    let mut added = Vec::new();
    let mut added_chunks = 0;
    let mut added_bytes = 0;
    for chunk in &chunks {
        assert_eq!(chunk.last(), Some(&b'\n'), "a chunk ends with a whole line");
        let lines: Vec<Value> =
            chunk.split_inclusive(|b| *b == b'\n').map(|l| serde_json::from_slice(l).unwrap()).collect();
        if lines.iter().any(|l| l["type"] == "ADDED") {
            added_chunks += 1;
            added_bytes += chunk.len();
        }
        for line in lines.iter().filter(|l| l["type"] == "ADDED") {
            added.push(line["object"]["metadata"]["name"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(added, names, "every object once, in key order");
    // The objects come from the cache in snapshot pieces of 500; each
    // piece's lines go out in chunks of up to 64 KiB. One chunk per line
    // would be 1,200 chunks.
    let most = added_bytes / (64 << 10) + 3;
    assert!(
        added_chunks <= most,
        "{added_chunks} chunks for {added_bytes} bytes of ADDED lines, at most {most}"
    );
}
