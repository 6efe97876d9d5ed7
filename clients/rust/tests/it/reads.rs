//! Namespaces, one-key reads and listings: every option, typed answers,
//! typed errors.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_cache_gateway::config::TokenConfig;
use etcd_cache_gateway_client::{
    CacheStatus, Client, CommonPrefix, Conditional, Consistency, Encoding, Error, GetOptions, Range, SortBy,
    Value,
};
use futures_util::TryStreamExt;
use serde_json::json;

use crate::harness::{NS, PREFIX, Setup, etcd_state, row};

fn bytes(text: &str) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(text.as_bytes())
}

#[tokio::test]
async fn namespaces_and_single_keys_read_as_typed_values() {
    let mut s = Setup::start().await;
    let lease = s.etcd_client.lease_grant(600, None).await.unwrap().id();
    let options = etcd_client::PutOptions::new().with_lease(lease);
    s.etcd_client.put(format!("{PREFIX}leased"), "l", Some(options)).await.unwrap();
    let first = s.put("config/level", "info").await;
    let json_rev = s.put("services/web", r#"{"port":80,"labels":{"tier":"web"}}"#).await;
    let binary_key = [PREFIX.as_bytes(), b"bin/\xff"].concat();
    let binary_rev = crate::support::etcd::put(&mut s.etcd_client, &binary_key, [0u8, 255]).await;
    let second = s.put("config/level", "debug").await;

    // Namespaces: the one configured, with its prefix (no auth), caught up.
    let got = s.client.get_with(NS, "config/level", &GetOptions::new().min_revision(second)).await.unwrap();
    let namespaces = s.client.namespaces().await.unwrap();
    assert_eq!(namespaces.len(), 1);
    let ns = &namespaces[0];
    assert_eq!(
        (ns.name.as_str(), ns.prefix.as_deref(), ns.ready, ns.status, ns.keys, ns.relisting),
        (NS, Some(PREFIX), true, CacheStatus::Fresh, 4, false)
    );
    assert_eq!((ns.revision, ns.etcd_revision), (second, second));
    assert_eq!(s.client.namespace(NS).await.unwrap(), *ns);
    let missing = s.client.namespace("nope").await.unwrap_err();
    assert!(matches!(missing, Error::NamespaceNotFound(_)), "{missing:?}");
    assert!(missing.is_not_found());

    // One key: value, metadata, validator.
    assert_eq!(
        (got.revision, got.etag.as_str(), got.cache),
        (second, format!("\"{second}\"").as_str(), CacheStatus::Fresh)
    );
    assert_eq!(row(&got.kv), (b"config/level".to_vec(), b"debug".to_vec(), first, second, 2, 0));
    let plain = s.client.get(NS, "config/level").await.unwrap();
    assert_eq!(plain, got);
    let leased = s.client.get(NS, "leased").await.unwrap();
    assert_eq!(leased.kv.lease, lease, "63-bit lease ids survive");

    // Encodings: JSON as a document, base64 back to the same bytes.
    let as_json =
        s.client.get_with(NS, "services/web", &GetOptions::new().encoding(Encoding::Json)).await.unwrap();
    assert_eq!(as_json.kv.value, Some(Value::Json(json!({"port": 80, "labels": {"tier": "web"}}))));
    assert_eq!(as_json.kv.mod_revision, json_rev);
    let as_b64 =
        s.client.get_with(NS, "services/web", &GetOptions::new().encoding(Encoding::Base64)).await.unwrap();
    assert_eq!(as_b64.kv.value_str(), Some(r#"{"port":80,"labels":{"tier":"web"}}"#));
    let binary = s.client.get(NS, b"bin/\xff").await.unwrap();
    assert_eq!((binary.kv.key.as_ref(), binary.kv.value_bytes()), (&b"bin/\xff"[..], Some(&[0u8, 255][..])));
    assert_eq!(binary.kv.mod_revision, binary_rev);

    // Raw bytes with the content type the gateway chose.
    let raw = |key: &'static [u8]| {
        let client = s.client.clone();
        async move { client.get_raw(NS, key, &GetOptions::new()).await.unwrap() }
    };
    let (json_raw, text_raw, bin_raw) =
        (raw(b"services/web").await, raw(b"config/level").await, raw(b"bin/\xff").await);
    assert_eq!(
        (json_raw.bytes, json_raw.content_type.as_str()),
        (bytes(r#"{"port":80,"labels":{"tier":"web"}}"#), "application/json")
    );
    assert_eq!(
        (text_raw.bytes, text_raw.content_type.as_str()),
        (bytes("debug"), "text/plain; charset=utf-8")
    );
    assert_eq!(
        (bin_raw.bytes.as_ref(), bin_raw.content_type.as_str()),
        (&[0u8, 255][..], "application/octet-stream")
    );
    assert_eq!((text_raw.etag, text_raw.revision), (got.etag.clone(), second));

    // Conditional reads: 304 while unchanged, the new state after a change.
    let unchanged =
        s.client.get_if_none_match(NS, "config/level", &GetOptions::new(), &got.etag).await.unwrap();
    assert_eq!(unchanged, Conditional::NotModified { revision: Some(second) });
    let third = s.put("config/level", "warn").await;
    let changed = s
        .client
        .get_if_none_match(NS, "config/level", &GetOptions::new().min_revision(third), &got.etag)
        .await;
    let changed = changed.unwrap().modified().expect("modified");
    assert_eq!((changed.kv.value_str(), changed.etag), (Some("warn"), format!("\"{third}\"")));

    // Consistency: a past revision, a linearizable read, a future revision.
    let past = s.client.get_with(NS, "config/level", &GetOptions::new().revision(first)).await.unwrap();
    assert_eq!((past.revision, past.kv.value_str()), (first, Some("info")));
    let latest = s.client.get_with(NS, "config/level", &GetOptions::new().consistent()).await.unwrap();
    assert_eq!((latest.revision, latest.kv.value_str()), (third, Some("warn")));
    let future = GetOptions::new().consistency(Consistency::Revision(third + 100));
    match s.client.get_with(NS, "config/level", &future).await.unwrap_err() {
        Error::FutureRevision { etcd_revision, problem } => {
            assert_eq!(etcd_revision, Some(third));
            assert!(problem.detail.contains("is in the future"), "{}", problem.detail);
        }
        other => panic!("{other:?}"),
    }

    // A missing key: the revision it is absent at, and the problem whole.
    match s.client.get(NS, "config/none").await.unwrap_err() {
        Error::KeyNotFound { revision, problem } => {
            assert_eq!(revision, third);
            assert_eq!((problem.status, problem.code.as_str()), (404, "key_not_found"));
            assert_eq!(
                (problem.extra["key"].as_str(), problem.extra["namespace"].as_str()),
                (Some("config/none"), Some(NS))
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn listings_take_every_read_option_and_page_at_one_revision() {
    let mut s = Setup::start().await;
    let services = [
        ("services/api", json!({"port": 81, "labels": {"tier": "api"}})),
        ("services/db", json!({"port": 5432, "labels": {"tier": "data"}})),
        ("services/web", json!({"port": 80, "labels": {"tier": "web"}})),
    ];
    let mut revisions = BTreeMap::new();
    for (key, value) in &services {
        revisions.insert(*key, s.put(key, value.to_string()).await);
    }
    s.put("config/a", "1").await;
    let last = s.put("config/deep/b", "2").await;
    let keys = |page: &etcd_cache_gateway_client::Page| -> Vec<String> {
        page.kvs.iter().map(|kv| kv.key_str().unwrap().to_owned()).collect()
    };

    let all = s.client.list(NS, &Range::all().min_revision(last)).await.unwrap();
    assert_eq!(keys(&all), ["config/a", "config/deep/b", "services/api", "services/db", "services/web"]);
    assert_eq!((all.revision, all.count, all.next_page_token.as_deref()), (last, 5, None));
    assert_eq!(all.etag, format!("\"{NS}-{last}\""));
    let reference = etcd_state(&mut s.etcd_client, "", last).await;
    assert_eq!(all.kvs.iter().map(|kv| (kv.key.to_vec(), row(kv))).collect::<BTreeMap<_, _>>(), reference);

    let prefix = s.client.list(NS, &Range::prefix("services/")).await.unwrap();
    assert_eq!(keys(&prefix), ["services/api", "services/db", "services/web"]);
    let between = s.client.list(NS, &Range::between("config/deep", "services/b")).await.unwrap();
    assert_eq!(keys(&between), ["config/deep/b", "services/api"]);
    let from = s.client.list(NS, &Range::from_key("services/d")).await.unwrap();
    assert_eq!(keys(&from), ["services/db", "services/web"]);

    let keys_only = s.client.list(NS, &Range::prefix("config/").keys_only()).await.unwrap();
    assert_eq!(keys(&keys_only), ["config/a", "config/deep/b"]);
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_none()));
    let counted = s.client.list(NS, &Range::prefix("services/").count_only()).await.unwrap();
    assert_eq!((counted.count, counted.kvs.len(), counted.next_page_token), (3, 0, None));

    let as_json = s.client.list(NS, &Range::prefix("services/w").encoding(Encoding::Json)).await.unwrap();
    assert_eq!(as_json.kvs[0].value, Some(Value::Json(services[2].1.clone())));
    let filtered =
        s.client.list(NS, &Range::prefix("services/").filter("labels.tier!=web").filter("port")).await;
    assert_eq!(keys(&filtered.unwrap()), ["services/api", "services/db"]);
    let selected =
        s.client.list(NS, &Range::prefix("services/").filter("port==80").select(["labels.tier"])).await;
    let selected = selected.unwrap();
    assert_eq!(
        selected.kvs.iter().map(|kv| kv.value.clone()).collect::<Vec<_>>(),
        [Some(Value::Json(json!({"labels": {"tier": "web"}})))]
    );
    assert_eq!(selected.count, 1);

    let by_mod =
        s.client.list(NS, &Range::prefix("services/").sort(SortBy::ModRevision).descending()).await.unwrap();
    assert_eq!(keys(&by_mod), ["services/web", "services/db", "services/api"]);
    let by_version = s.client.list(NS, &Range::prefix("services/").sort(SortBy::Version)).await.unwrap();
    assert_eq!(keys(&by_version), ["services/api", "services/db", "services/web"]);
    let by_create = s.client.list(NS, &Range::all().sort(SortBy::CreateRevision).limit(1)).await.unwrap();
    assert_eq!(keys(&by_create), ["services/api"]);
    let by_key = s.client.list(NS, &Range::prefix("config/").sort(SortBy::Key).descending()).await.unwrap();
    assert_eq!(keys(&by_key), ["config/deep/b", "config/a"]);

    let level = s.client.list(NS, &Range::prefix("config/").delimiter("/")).await.unwrap();
    assert_eq!(keys(&level), ["config/a"]);
    let expected_prefix: Vec<(bytes::Bytes, u64)> = vec![(bytes("config/deep/"), 1)];
    let got_prefix: Vec<(bytes::Bytes, u64)> =
        level.prefixes.iter().map(|CommonPrefix { prefix, count, .. }| (prefix.clone(), *count)).collect();
    assert_eq!(got_prefix, expected_prefix);

    // A past revision, linearizable, read-your-writes.
    let at = Consistency::Revision(revisions["services/web"]);
    let old = s.client.list(NS, &Range::prefix("config/").consistency(at)).await.unwrap();
    assert_eq!((old.revision, old.count), (revisions["services/web"], 0));
    let newest = s.put("config/c", "3").await;
    let consistent = s.client.list(NS, &Range::prefix("config/").consistent()).await.unwrap();
    assert_eq!((consistent.revision, consistent.count), (newest, 3));
    let after_write =
        s.client.list(NS, &Range::prefix("config/").min_revision(newest).keys_only()).await.unwrap();
    assert_eq!(keys(&after_write), ["config/a", "config/c", "config/deep/b"]);

    // Conditional listings.
    let unchanged = s.client.list_if_none_match(NS, &Range::all(), &consistent.etag).await.unwrap();
    assert_eq!(unchanged, Conditional::NotModified { revision: Some(newest) });
    let changed_at = s.put("config/d", "4").await;
    let changed = s
        .client
        .list_if_none_match(NS, &Range::all().min_revision(changed_at), &consistent.etag)
        .await
        .unwrap();
    assert_eq!(changed.modified().map(|p| (p.revision, p.count)), Some((changed_at, 7)));

    // Pages: one at a time, then every page as a stream pinned to the
    // first page's revision, while etcd moves on between pages.
    let first_page = s.client.list(NS, &Range::all().limit(3)).await.unwrap();
    let token = first_page.next_page_token.clone().expect("more pages");
    let between = s.put("config/0-written-between-pages", "x").await;
    let second_page = s.client.list(NS, &Range::all().limit(3).page_token(token)).await.unwrap();
    assert_eq!(second_page.revision, first_page.revision);
    assert_eq!(keys(&second_page), ["config/deep/b", "services/api", "services/db"]);
    let mut pages = s.client.list_all(NS, Range::all().limit(3).min_revision(between));
    let page_one = pages.try_next().await.unwrap().expect("a first page");
    let moved = s.put("config/1-written-between-pages", "y").await;
    let mut all_pages = vec![page_one];
    all_pages.extend(pages.try_collect::<Vec<_>>().await.unwrap());
    let revision = all_pages[0].revision;
    assert_eq!(revision, between, "every page at the first page's revision, not {moved}");
    assert_eq!(all_pages.iter().map(|p| p.kvs.len()).collect::<Vec<_>>(), [3, 3, 2]);
    assert!(all_pages.iter().all(|p| p.revision == revision && p.count == 8));
    let listed: BTreeMap<_, _> =
        all_pages.iter().flat_map(|p| &p.kvs).map(|kv| (kv.key.to_vec(), row(kv))).collect();
    assert_eq!(listed, etcd_state(&mut s.etcd_client, "", revision).await);
    let counts: Vec<_> = s.client.list_all(NS, Range::all().count_only()).try_collect().await.unwrap();
    assert_eq!(counts.iter().map(|p| p.count).collect::<Vec<_>>(), [9]);

    // Bad options: the gateway's 400, naming what is wrong.
    for (range, needle) in [
        (Range::between("c", "a"), "`end` must be greater than `start`"),
        (Range::prefix("config/").delimiter("/").filter("x"), "`delimiter` lists one level in key order"),
        (Range::all().filter("==1"), "invalid filter \"==1\""),
        (Range::all().limit(0), "parameter `limit` must be between 1 and 10000"),
    ] {
        match s.client.list(NS, &range).await.unwrap_err() {
            Error::BadRequest(problem) => {
                assert!(problem.detail.contains(needle), "{}: {}", range.query(), problem.detail)
            }
            other => panic!("{}: {other:?}", range.query()),
        }
    }
    let missing = s.client.list("nope", &Range::all()).await.unwrap_err();
    assert!(matches!(missing, Error::NamespaceNotFound(_)), "{missing:?}");
}

#[tokio::test]
async fn compacted_history_and_expired_page_tokens_are_typed_errors() {
    let mut s = Setup::start_with(|config| config.cache.history_revisions = 3).await;
    s.put("k2", "x").await;
    let old = s.put("k", "old").await;
    let first_page = s.client.list(NS, &Range::all().limit(1).min_revision(old)).await.unwrap();
    let token = first_page.next_page_token.clone().expect("two keys, limit 1");
    let mut last = 0;
    for i in 0..10 {
        last = s.put("k", format!("v{i}")).await;
    }
    s.etcd.compact(last).await;
    s.client.get_with(NS, "k", &GetOptions::new().min_revision(last)).await.unwrap();
    match s.client.get_with(NS, "k", &GetOptions::new().revision(old)).await.unwrap_err() {
        Error::Compacted { compact_revision, problem } => {
            assert_eq!(compact_revision, last, "where etcd's history starts now");
            assert_eq!((problem.status, problem.code.as_str()), (410, "compacted"));
        }
        other => panic!("{other:?}"),
    }
    let expired = s.client.list(NS, &Range::all().limit(1).page_token(token)).await.unwrap_err();
    assert!(matches!(expired, Error::PageTokenExpired(_)), "{expired:?}");
    assert!(!expired.is_retryable());
}

#[tokio::test]
async fn a_bearer_token_opens_its_namespaces_and_only_those() {
    let token = |name: &str, secret: &str, namespaces: &[&str]| TokenConfig {
        name: name.into(),
        secret: Some(secret.into()),
        secret_env: None,
        secret_file: None,
        namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
        write: false,
    };
    let mut s = Setup::start_with(|config| {
        config.namespaces.push(etcd_cache_gateway::config::NamespaceConfig {
            name: "other".into(),
            prefix: "other/".into(),
            max_subscribers: None,
        });
        config.tokens = vec![token("reader", "app-reader-secret", &[NS])];
    })
    .await;
    let written = s.put("k", "v").await;
    let authorized = Client::builder(s.gateway.base_url.clone())
        .bearer_token("app-reader-secret")
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let got = authorized.get_with(NS, "k", &GetOptions::new().min_revision(written)).await.unwrap();
    assert_eq!(got.kv.value_str(), Some("v"));
    let names: Vec<String> = authorized.namespaces().await.unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, [NS], "only the token's namespaces, and no prefix shown");
    assert_eq!(authorized.namespace(NS).await.unwrap().prefix, None);
    let forbidden = authorized.list("other", &Range::all()).await.unwrap_err();
    assert!(matches!(forbidden, Error::Forbidden(_)), "{forbidden:?}");
    let anonymous = s.client.get(NS, "k").await.unwrap_err();
    assert!(matches!(anonymous, Error::Unauthorized(_)), "{anonymous:?}");
    let wrong = Client::builder(s.gateway.base_url.clone()).bearer_token("wrong").build().unwrap();
    match wrong.namespaces().await.unwrap_err() {
        Error::Unauthorized(problem) => assert!(problem.detail.contains("not valid"), "{}", problem.detail),
        other => panic!("{other:?}"),
    }
    // A refused token ends a watch and stops a mirror with the same error.
    use futures_util::StreamExt;
    let mut watch = s.client.watch(NS, etcd_cache_gateway_client::Selection::all(), Default::default());
    assert!(matches!(watch.next().await, Some(Err(Error::Unauthorized(_)))));
    assert!(watch.next().await.is_none(), "a terminal error ends the watch");
    let mirror = authorized.mirror("other", etcd_cache_gateway_client::Selection::all(), Default::default());
    assert!(matches!(mirror.wait_ready().await, Err(Error::Forbidden(_))));
    assert!(matches!(mirror.error(), Some(Error::Forbidden(_))));
}

#[tokio::test]
async fn transport_failures_and_bad_arguments_are_told_apart_from_answers() {
    assert!(matches!(Client::new("ftp://example"), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        Client::builder("http://x").bearer_token("line\nbreak").build(),
        Err(Error::InvalidArgument(_))
    ));
    // A port nothing listens on.
    let closed = Client::builder(format!("http://127.0.0.1:{}", crate::support::free_port()))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let error = closed.namespaces().await.unwrap_err();
    assert!(
        matches!(error, Error::Transport(_)) && error.is_retryable() && error.problem().is_none(),
        "{error:?}"
    );
    // An HTTP client of one's own.
    let s = Setup::start().await;
    let own =
        Client::builder(s.gateway.base_url.clone()).http_client(reqwest::Client::new()).build().unwrap();
    assert_eq!(own.namespaces().await.unwrap().len(), 1);
    // A server that answers, but not with the gateway's API: a path prefix
    // that routes nowhere answers the gateway's own 404 problem.
    let prefixed = Client::new(format!("{}/not-here/", s.gateway.base_url)).unwrap();
    assert_eq!(prefixed.base_url(), format!("{}/not-here", s.gateway.base_url));
    let error = prefixed.namespaces().await.unwrap_err();
    assert_eq!(error.code(), Some("not_found"), "{error:?}");
    assert!(matches!(error, Error::Api(_)));
}
