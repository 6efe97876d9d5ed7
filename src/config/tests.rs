//! Precedence and validation of the configuration, without touching the
//! process environment (the environment is passed in as pairs).

use std::io::Write;

use clap::Parser;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn file(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(contents.as_bytes()).unwrap();
    f
}

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("etcd-cache-gateway").chain(args.iter().copied())).unwrap()
}

fn loaded(file_contents: &str, env_pairs: &[(&str, &str)], args: &[&str]) -> Result<Loaded, LoadError> {
    let f = file(file_contents);
    let path = f.path().to_str().unwrap().to_owned();
    let mut all = vec!["--config", path.as_str()];
    all.extend_from_slice(args);
    load(&cli(&all), env(env_pairs))
}

fn load_with(file_contents: &str, env_pairs: &[(&str, &str)], args: &[&str]) -> Result<Config, LoadError> {
    loaded(file_contents, env_pairs, args).map(|l| l.config)
}

/// The error message of a file that fails to load, with the file's path as `FILE`.
fn file_error(contents: &str) -> String {
    let f = file(contents);
    let path = f.path().to_str().unwrap().to_owned();
    let err = load(&cli(&["--config", &path]), env(&[])).unwrap_err().to_string();
    err.replace(&path, "FILE")
}

#[test]
fn variables_that_are_no_key_are_ignored_with_a_warning() {
    // What Kubernetes injects for a Service named `gateway`.
    let l = loaded(
        "",
        &[
            ("GATEWAY_PORT", "tcp://10.0.0.1:8080"),
            ("GATEWAY_SERVICE_HOST", "10.0.0.1"),
            ("GATEWAY_CACHE__HISTORY_REVISIONS", "7"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(l.config.cache.history_revisions, 7, "known keys are still read");
    let why = "(Kubernetes sets GATEWAY_PORT and the like for a Service named gateway; those are harmless)";
    assert_eq!(
        l.warnings,
        vec![
            format!("ignoring environment variable GATEWAY_PORT: `port` is not a configuration key {why}"),
            format!(
                "ignoring environment variable GATEWAY_SERVICE_HOST: `service_host` is not a configuration key {why}"
            ),
        ]
    );
}

#[test]
fn errors_say_key_origin_expectation_and_an_example_in_the_users_words() {
    assert_eq!(
        file_error("[cache]\nhistory_revisions = \"five\"\n"),
        "invalid configuration: cache.history_revisions in FILE: found string \"five\", expected a whole number, \
         0 or more; \
         e.g. cache.history_revisions = 10000"
    );
    assert_eq!(
        file_error("[[namespaces]]\nname = 5\n"),
        "invalid configuration: namespaces.0.name in FILE: found signed int `5`, expected a string; e.g. \
         namespaces.0.name = \"default\""
    );
    assert_eq!(
        file_error("[etcd]\nendpoints = 5\n"),
        "invalid configuration: etcd.endpoints in FILE: expected a string or a list of strings; e.g. \
         etcd.endpoints = [\"http://127.0.0.1:2379\"]"
    );
    assert_eq!(
        file_error("[etcd]\nbogus = 1\n"),
        "invalid configuration: etcd.bogus in FILE: `bogus` is not a key here; the keys are `endpoints`, \
         `username`, `password`, `tls`, `connect_timeout`, `request_timeout`, `keep_alive_interval`, \
         `keep_alive_timeout`, `backoff_min`, `backoff_max`, `progress_request_interval`, \
         `watch_silence_timeout`, `bootstrap_page_size`, `bootstrap_page_bytes`, `max_message_bytes`"
    );
    let err = load_with("", &[("GATEWAY_CACHE__HISTORY_REVISIONS", "many")], &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid configuration: cache.history_revisions from environment variable \
         GATEWAY_CACHE__HISTORY_REVISIONS: found string \"many\", expected a whole number, 0 or more; e.g. \
         GATEWAY_CACHE__HISTORY_REVISIONS=10000"
    );
    for text in [err, file_error("namespaces = \"x\"\n"), file_error("listen = 5\n")] {
        assert!(!text.contains("::") && !text.contains("alloc"), "no Rust type names: {text}");
    }
}

#[test]
fn host_names_are_accepted_where_an_address_is_listened_on() {
    let c = load_with("listen = \"localhost:9000\"\n", &[], &[]).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
    let c = load_with("", &[("GATEWAY_LISTEN", "localhost:9001")], &[]).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9001");
    let c = load_with("", &[], &["--listen", "localhost:9002"]).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9002");
    let err = Cli::try_parse_from(["etcd-cache-gateway", "--listen", "nowhere"]).unwrap_err().to_string();
    assert!(
        err.contains("\"nowhere\" is not an address to listen on") && err.contains("GATEWAY_LISTEN"),
        "{err}"
    );
}

#[test]
fn settings_that_are_probably_mistakes_are_warned_about() {
    let l = loaded(
        "[cache]\npolicy = \"ttl\"\nttl = \"1m\"\nhistory_revisions = 50\n[[namespaces]]\nname = \"a\"\nprefix = \"app\"\n\
         [[namespaces]]\nname = \"b\"\nprefix = \"b/\"\n",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(
        l.warnings,
        vec![
            "cache.history_revisions = 50 has no effect with cache.policy = \"ttl\": the history window is \
             cache.ttl"
                .to_owned(),
            "namespaces[0].prefix = \"app\" does not end with a separator: it also covers keys such as \
             \"appx/y\"; write \"app/\" to serve only that folder"
                .to_owned(),
        ]
    );
    assert!(loaded("", &[], &[]).unwrap().warnings.is_empty(), "the defaults warn about nothing");
}

#[test]
fn defaults_are_valid_and_serve_the_whole_keyspace() {
    let c = Config::default();
    c.validate().unwrap();
    assert_eq!(c.namespaces.len(), 1);
    assert_eq!(c.namespaces[0].name, "default");
    assert_eq!(c.namespaces[0].prefix, "");
    assert_eq!(c.cache.policy, CachePolicy::Revision);
}

#[test]
fn the_shipped_config_file_is_valid_and_matches_the_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/gateway.toml");
    let c = load(&cli(&["--config", path]), env(&[])).unwrap();
    assert_eq!(c.config, Config::default(), "config/gateway.toml must document the built-in defaults");
}

#[test]
fn the_etcd_api_is_off_and_read_only_unless_configured() {
    assert_eq!(Config::default().etcd_api, EtcdApiConfig { enabled: false, writes: EtcdWrites::Deny });
    let c = load_with("[etcd_api]\nenabled = true\nwrites = \"forward\"\n", &[], &[]).unwrap();
    assert_eq!(c.etcd_api, EtcdApiConfig { enabled: true, writes: EtcdWrites::Forward });
    assert!(file_error("[etcd_api]\nwrites = \"maybe\"\n").contains("etcd_api.writes"));
    let c = load_with(
        "[[tokens]]\nname = \"w\"\nsecret = \"s3cret-value\"\nnamespaces = [\"*\"]\nwrite = true\n",
        &[],
        &[],
    );
    assert!(c.unwrap().tokens[0].write);
}

#[test]
fn file_overrides_defaults() {
    let c = load_with("listen = \"0.0.0.0:9000\"\n[cache]\nhistory_revisions = 5\n", &[], &[]).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(c.cache.history_revisions, 5);
    assert_eq!(c.cache.max_value_bytes, CacheConfig::default().max_value_bytes, "unset keys keep defaults");
}

#[test]
fn env_overrides_file_and_nests_with_double_underscore() {
    let c = load_with(
        "[etcd]\nendpoints = [\"http://file:2379\"]\n[cache]\nhistory_revisions = 5\n",
        &[
            ("GATEWAY_ETCD__ENDPOINTS", "http://a:2379,http://b:2379"),
            ("GATEWAY_CACHE__HISTORY_REVISIONS", "7"),
            ("GATEWAY_ETCD__PASSWORD", "12345"),
            ("GATEWAY_ETCD__USERNAME", "root"),
            ("GATEWAY_LOG__FILTER", "debug"),
            ("OTHER_VAR", "ignored"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.etcd.endpoints, vec!["http://a:2379", "http://b:2379"]);
    assert_eq!(c.cache.history_revisions, 7);
    assert_eq!(c.etcd.password.as_deref(), Some("12345"), "numeric-looking strings stay strings");
    assert_eq!(c.log.filter, "debug");
}

#[test]
fn flags_override_env() {
    let c = load_with(
        "listen = \"127.0.0.1:1\"\n",
        &[("GATEWAY_LISTEN", "127.0.0.1:2"), ("GATEWAY_CACHE__POLICY", "revision")],
        &["--listen", "127.0.0.1:3", "--etcd-endpoints", "http://x:1,http://y:2", "--cache-policy", "ttl"],
    );
    // --cache-policy ttl without a ttl is invalid: the flag won over the env.
    let err = c.unwrap_err().to_string();
    assert!(err.contains("cache.ttl"), "{err}");

    let c = load_with(
        "listen = \"127.0.0.1:1\"\n[cache]\nttl = \"1m\"\n",
        &[("GATEWAY_LISTEN", "127.0.0.1:2")],
        &["--listen", "127.0.0.1:3", "--etcd-endpoints", "http://x:1,http://y:2", "--cache-policy", "ttl"],
    )
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:3");
    assert_eq!(c.etcd.endpoints, vec!["http://x:1", "http://y:2"]);
    assert_eq!(c.cache.policy, CachePolicy::Ttl);
}

#[test]
fn missing_config_file_is_an_error() {
    let err = load(&cli(&["--config", "/nonexistent/gateway.toml"]), env(&[])).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/gateway.toml"), "{err}");
}

#[test]
fn unparsable_values_name_their_key() {
    for (toml, key) in [
        ("[cache]\nttl = \"soon\"\n", "ttl"),
        ("[http]\nbody_limit = \"huge\"\n", "body_limit"),
        ("[cache]\npolicy = \"lru\"\n", "policy"),
        ("listen = \"nowhere\"\n", "listen"),
        ("[etcd]\nbogus = 1\n", "bogus"),
        ("[watch]\nmax_subscribers = -1\n", "max_subscribers"),
    ] {
        let err = load_with(toml, &[], &[]).unwrap_err().to_string();
        assert!(err.contains(key), "error for {toml:?} should name {key}: {err}");
    }
}

/// Applies `edit` to the defaults and returns the validation error.
fn invalid(edit: impl FnOnce(&mut Config)) -> ConfigError {
    let mut c = Config::default();
    edit(&mut c);
    c.validate().expect_err("config should be rejected")
}

fn ns(name: &str, prefix: &str) -> NamespaceConfig {
    NamespaceConfig { name: name.into(), prefix: prefix.into(), max_subscribers: None }
}

fn token(name: &str, namespaces: &[&str]) -> TokenConfig {
    TokenConfig {
        name: name.into(),
        secret: Some("s3cret-value".into()),
        secret_env: None,
        secret_file: None,
        namespaces: namespaces.iter().map(|s| (*s).into()).collect(),
        write: false,
    }
}

#[test]
fn every_validation_error_names_field_and_value() {
    let zero = HumanDuration::secs(0);
    let cases: Vec<(ConfigError, &str, &str)> = vec![
        (invalid(|c| c.namespaces.clear()), "namespaces", "[]"),
        (invalid(|c| c.namespaces = vec![ns("a", "x/"), ns("a", "y/")]), "namespaces[1].name", "\"a\""),
        (invalid(|c| c.namespaces = vec![ns("a b", "x/")]), "namespaces[0].name", "\"a b\""),
        (
            invalid(|c| c.namespaces = vec![ns("a", "app/"), ns("b", "app/x/")]),
            "namespaces[1].prefix",
            "\"app/x/\"",
        ),
        (invalid(|c| c.namespaces = vec![ns("a", ""), ns("b", "x/")]), "namespaces[1].prefix", "\"x/\""),
        (invalid(|c| c.namespaces[0].max_subscribers = Some(0)), "namespaces[0].max_subscribers", "0"),
        (invalid(|c| c.cache.policy = CachePolicy::Ttl), "cache.ttl", "(unset)"),
        (invalid(|c| c.cache.ttl = Some(zero)), "cache.ttl", "0s"),
        (invalid(|c| c.cache.history_revisions = 0), "cache.history_revisions", "0"),
        (invalid(|c| c.cache.max_value_bytes = ByteSize(0)), "cache.max_value_bytes", "0"),
        (invalid(|c| c.cache.consistent_read_timeout = zero), "cache.consistent_read_timeout", "0s"),
        (invalid(|c| c.cache.wait_timeout = zero), "cache.wait_timeout", "0s"),
        (invalid(|c| c.etcd.endpoints.clear()), "etcd.endpoints", "[]"),
        (invalid(|c| c.etcd.endpoints = vec!["etcd:2379".into()]), "etcd.endpoints[0]", "\"etcd:2379\""),
        (invalid(|c| c.etcd.username = Some("root".into())), "etcd.username", "\"root\""),
        (
            invalid(|c| {
                c.etcd.tls =
                    Some(TlsConfig { ca_file: Some("/no/such/ca.pem".into()), ..TlsConfig::default() });
            }),
            "etcd.tls.ca_file",
            "/no/such/ca.pem",
        ),
        (
            invalid(|c| {
                c.etcd.tls = Some(TlsConfig { cert_file: Some("/c.pem".into()), ..TlsConfig::default() });
            }),
            "etcd.tls.cert_file",
            "/c.pem",
        ),
        (invalid(|c| c.etcd.connect_timeout = zero), "etcd.connect_timeout", "0s"),
        (invalid(|c| c.etcd.request_timeout = zero), "etcd.request_timeout", "0s"),
        (invalid(|c| c.etcd.keep_alive_interval = zero), "etcd.keep_alive_interval", "0s"),
        (invalid(|c| c.etcd.keep_alive_timeout = zero), "etcd.keep_alive_timeout", "0s"),
        (invalid(|c| c.etcd.backoff_min = zero), "etcd.backoff_min", "0s"),
        (invalid(|c| c.etcd.backoff_max = zero), "etcd.backoff_max", "0s"),
        (invalid(|c| c.etcd.backoff_min = HumanDuration::secs(60)), "etcd.backoff_min", "1m"),
        (invalid(|c| c.etcd.bootstrap_page_size = 0), "etcd.bootstrap_page_size", "0"),
        (invalid(|c| c.etcd.bootstrap_page_bytes = ByteSize(0)), "etcd.bootstrap_page_bytes", "0"),
        (invalid(|c| c.etcd.max_message_bytes = ByteSize(1024)), "etcd.max_message_bytes", "1.0 KiB"),
        (invalid(|c| c.watch.max_subscribers = 0), "watch.max_subscribers", "0"),
        (invalid(|c| c.watch.max_subscribers_per_namespace = 0), "watch.max_subscribers_per_namespace", "0"),
        (invalid(|c| c.watch.max_streams_per_token = Some(0)), "watch.max_streams_per_token", "0"),
        (
            invalid(|c| c.watch.progress_interval = HumanDuration::millis(500)),
            "watch.progress_interval",
            "500ms",
        ),
        (invalid(|c| c.watch.heartbeat_interval = zero), "watch.heartbeat_interval", "0s"),
        (invalid(|c| c.watch.max_stream_lifetime = zero), "watch.max_stream_lifetime", "0s"),
        (invalid(|c| c.http.request_timeout = zero), "http.request_timeout", "0s"),
        (invalid(|c| c.http.body_limit = ByteSize(0)), "http.body_limit", "0"),
        (invalid(|c| c.http.shutdown_timeout = zero), "http.shutdown_timeout", "0s"),
        (
            invalid(|c| c.http.cors_origins = vec!["app.example.com".into()]),
            "http.cors_origins[0]",
            "\"app.example.com\"",
        ),
        (
            invalid(|c| {
                c.http.cors_origins = vec!["*".into()];
                c.tokens = vec![token("t", &["*"])];
            }),
            "http.cors_origins[0]",
            "\"*\"",
        ),
        (invalid(|c| c.tokens = vec![token("t", &["nope"])]), "tokens[0].namespaces", "\"nope\""),
        (invalid(|c| c.tokens = vec![token("t", &[])]), "tokens[0].namespaces", "[]"),
        (invalid(|c| c.tokens = vec![token("t", &["*"]), token("t", &["*"])]), "tokens[1].name", "\"t\""),
        (
            invalid(|c| {
                let mut t = token("t", &["*"]);
                t.secret_env = Some("TOKEN".into());
                c.tokens = vec![t];
            }),
            "tokens[0].secret",
            "(sources)",
        ),
        (
            invalid(|c| {
                let mut t = token("t", &["*"]);
                t.secret = Some("short".into());
                c.tokens = vec![t];
            }),
            "tokens[0].secret",
            "(redacted)",
        ),
        (invalid(|c| c.log.filter = "[[[".into()), "log.filter", "\"[[[\""),
        (invalid(|c| c.etcd_api.writes = EtcdWrites::Forward), "etcd_api.writes", "\"forward\""),
        (
            invalid(|c| {
                c.etcd_api = EtcdApiConfig { enabled: true, writes: EtcdWrites::Forward };
                c.etcd.endpoints = vec!["https://etcd:2379".into()];
            }),
            "etcd_api.writes",
            "\"forward\"",
        ),
    ];
    for (err, field, value) in cases {
        assert_eq!(err.field, field, "{err}");
        assert_eq!(err.value, value, "{err}");
        let message = err.to_string();
        assert!(message.contains(field) && message.contains(value), "{message}");
    }
}

#[test]
fn check_config_output_never_contains_secrets() {
    let mut c = Config::default();
    c.etcd.username = Some("root".into());
    c.etcd.password = Some("hunter2-password".into());
    c.tokens = vec![token("t", &["*"])];
    let printed = serde_json::to_string(&c).unwrap();
    assert!(!printed.contains("hunter2-password") && !printed.contains("s3cret-value"), "{printed}");
}
