//! Any request a client can send, however malformed: never a panic, never a
//! 5xx caused by parsing, and every refusal a problem+json body. Random
//! paths and queries (any bytes, percent-encoded, mixed with every real
//! parameter name) go through the whole router, with and without tokens.

use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use tower::ServiceExt;

use crate::config::{Config, TokenConfig};
use crate::etcd::EtcdClient;
use crate::http::AppState;
use crate::namespaces::Namespaces;

/// Parameter names the routes know, and a few they do not.
const NAMES: &[&str] = &[
    "key",
    "key_b64",
    "prefix",
    "prefix_b64",
    "start",
    "start_b64",
    "end",
    "end_b64",
    "limit",
    "page_token",
    "keys_only",
    "count_only",
    "encoding",
    "filter",
    "select",
    "sort",
    "order",
    "delimiter",
    "consistent",
    "min_revision",
    "revision",
    "raw",
    "since",
    "snapshot",
    "prev_kv",
    "on_gap",
    "progress_interval",
    "access_token",
    "token",
    "x",
    "",
];

fn encoded(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A query: known or random names, any bytes as values, sometimes raw
/// separators and bare names.
fn query() -> impl Strategy<Value = String> {
    let pair = (
        prop_oneof![prop::sample::select(NAMES).prop_map(str::to_owned), "[a-z_%+=&]{0,8}"],
        prop::collection::vec(any::<u8>(), 0..24),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(name, value, bare)| if bare { name } else { format!("{name}={}", encoded(&value)) });
    prop::collection::vec(pair, 0..6).prop_map(|pairs| pairs.join("&"))
}

/// A path: under `/v1/namespaces/...` most of the time, any bytes in the segments.
fn path() -> impl Strategy<Value = String> {
    let segment = prop::collection::vec(any::<u8>(), 0..12).prop_map(|b| encoded(&b));
    let namespace = prop_oneof![Just("app".to_owned()), segment.clone()];
    let tail = prop_oneof![
        Just(String::new()),
        Just("/kv".to_owned()),
        Just("/watch".to_owned()),
        prop::collection::vec(segment.clone(), 0..4).prop_map(|s| format!("/kv/{}", s.join("/"))),
        segment.prop_map(|s| format!("/{s}")),
    ];
    prop_oneof![
        9 => (namespace, tail).prop_map(|(ns, tail)| format!("/v1/namespaces/{ns}{tail}")),
        1 => Just("/v1/namespaces".to_owned()),
    ]
}

async fn state(tokens: bool) -> AppState {
    let mut config = Config::default();
    config.namespaces[0].name = "app".into();
    if tokens {
        config.tokens = vec![TokenConfig {
            name: "t".into(),
            secret: Some("fuzz-secret-1".into()),
            secret_env: None,
            secret_file: None,
            namespaces: vec!["app".into()],
            write: false,
        }];
    }
    // No etcd: the client connects lazily and the namespace never loads, so
    // well-formed reads answer 503 `not_ready`; only parsing is under test.
    let client = EtcdClient::connect(&config.etcd).await.unwrap();
    let namespaces = Namespaces::new(&config, &client);
    AppState::new(config.into(), namespaces, tokio_util::sync::CancellationToken::new(), |_| None).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_request_is_answered_without_a_panic_and_refusals_are_problems(
        path in path(),
        query in query(),
        tokens in any::<bool>(),
        cookie in prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (status, content_type) = runtime.block_on(async {
            let app = crate::app(state(tokens).await);
            let uri = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
            let mut request = Request::get(&uri);
            if let Some(cookie) = &cookie {
                request = request.header("cookie", format!("gateway_token={}", encoded(cookie)));
            }
            let response = app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
            let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_owned());
            (response.status().as_u16(), content_type.unwrap_or_default())
        });
        // 503 is the only 5xx: the namespace is not loaded (no etcd here).
        prop_assert!(status < 500 || status == 503, "{status} for {path}?{query}");
        if status >= 400 {
            prop_assert_eq!(content_type.as_str(), "application/problem+json", "{} for {}?{}", status, path, query);
        }
    }
}
