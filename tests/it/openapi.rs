//! `openapi/openapi.yaml` is the contract: its paths are exactly the
//! router's routes, and real responses validate against its schemas.

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::{Value, json};

use crate::support::http::get;
use crate::support::{Etcd, Gateway};

fn spec() -> Value {
    serde_norway::from_str(include_str!("../../openapi/openapi.yaml")).expect("openapi.yaml parses")
}

/// A validator for `#/components/schemas/{name}`, resolving refs in the spec.
fn validator(name: &str) -> jsonschema::Validator {
    let mut root = spec();
    root["$ref"] = json!(format!("#/components/schemas/{name}"));
    jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("schema {name}: {e}"))
}

fn assert_valid(name: &str, instance: &Value) {
    let v = validator(name);
    let errors: Vec<String> =
        v.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{instance} does not match {name}: {errors:?}");
}

#[test]
fn router_routes_and_spec_paths_are_the_same_set() {
    let spec = spec();
    let spec_paths: BTreeSet<String> = spec["paths"].as_object().unwrap().keys().cloned().collect();
    let routes: BTreeSet<String> =
        etcd_cache_gateway::route_templates().iter().map(|path| path.replace("{*", "{")).collect();
    assert_eq!(routes, spec_paths);
}

#[test]
fn every_problem_code_is_documented() {
    let spec = spec();
    let codes: BTreeSet<&str> = spec["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for code in [
        "bad_request",
        "unauthorized",
        "forbidden",
        "namespace_not_found",
        "key_not_found",
        "compacted",
        "future_revision",
        "page_token_expired",
        "timeout",
        "etcd_unavailable",
        "too_many_watchers",
        "not_ready",
        "upstream_error",
    ] {
        assert!(codes.contains(code), "API.md code {code} missing from the spec");
    }
    let gateway: BTreeSet<&str> = etcd_cache_gateway::error::CODES.iter().copied().collect();
    assert_eq!(codes, gateway, "the spec lists exactly the codes the gateway answers with");
}

#[tokio::test]
async fn real_responses_validate_against_the_spec() {
    let etcd = Etcd::start().await;
    let gw = Gateway::start_ready(Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/")).await;
    let mut client = etcd.client().await;
    client.put("app/json", "{\"a\":{\"b\":1}}", None).await.unwrap();
    client.put("app/bin", vec![0u8, 0xff], None).await.unwrap();
    client.put(b"app/\xff".to_vec(), "x", None).await.unwrap();
    client.put(b"app/\xfe/deeper".to_vec(), "x", None).await.unwrap();
    client.put("app/dir/x", "x", None).await.unwrap();
    let last = client.put("app/text", "hello", None).await.unwrap().header().unwrap().revision();
    let url = |path: &str| {
        gw.url(&format!("{path}{}min_revision={last}", if path.contains('?') { '&' } else { '?' }))
    };

    // The validators reject what the contract forbids (so the checks below can fail).
    assert!(!validator("KeyResponse").is_valid(&json!({"revision": 1, "kv": {"key": "k"}})));
    assert!(!validator("RangeResponse").is_valid(&json!({"revision": 1, "count": 0, "kvs": [], "extra": 1})));

    let ready = get(&gw.url("/readyz")).await.json();
    for ns in ready["namespaces"].as_array().unwrap() {
        assert_valid("NamespaceStatus", ns);
    }
    let namespaces = get(&gw.url("/v1/namespaces")).await.json();
    assert_valid("NamespaceStatus", &namespaces["namespaces"][0]);
    assert_valid("NamespaceStatus", &get(&gw.url("/v1/namespaces/app")).await.json());
    for path in [
        "/v1/namespaces/app/kv/json?encoding=json",
        "/v1/namespaces/app/kv/bin",
        "/v1/namespaces/app/kv/%FF",
        "/v1/namespaces/app/kv/text?encoding=base64",
    ] {
        assert_valid("KeyResponse", &get(&url(path)).await.json());
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"\xff");
    assert_valid("KeyResponse", &get(&url(&format!("/v1/namespaces/app/kv?key_b64={b64}"))).await.json());
    for path in [
        "/v1/namespaces/app/kv",
        "/v1/namespaces/app/kv?keys_only=true&limit=1",
        "/v1/namespaces/app/kv?select=a.b",
        "/v1/namespaces/app/kv?filter=a.b==1&encoding=json",
        "/v1/namespaces/app/kv?delimiter=/",
        "/v1/namespaces/app/kv?sort=mod_revision&order=desc&limit=2",
    ] {
        assert_valid("RangeResponse", &get(&url(path)).await.json());
    }
    assert_valid("CountResponse", &get(&url("/v1/namespaces/app/kv?count_only=true")).await.json());
    for path in [
        "/v1/namespaces/app/kv/missing",
        "/v1/namespaces/nope/kv",
        "/v1/namespaces/app/kv?limit=0",
        "/nowhere",
        "/v1/namespaces/app/kv/dir/",
        "/v1/namespaces/app/kv?revision=99999",
    ] {
        let reply = get(&url(path)).await;
        assert!(reply.status >= 400, "{path}");
        assert_valid("Problem", &reply.json());
    }
}
