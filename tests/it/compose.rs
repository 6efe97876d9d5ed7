//! docker-compose.yml and config/nginx.conf are checked without a Docker
//! engine: every service has a healthcheck, two gateway replicas read the
//! same mounted config (which exists, validates and names exactly the etcd
//! services), only the proxy publishes the gateway's port and it waits for
//! both replicas, published ports do not collide, stop grace periods outlast
//! the shutdown deadlines, and nginx is set up for SSE: no buffering, reads
//! longer than a stream lives, HTTP/1.1 keep-alive to every replica,
//! `Last-Event-ID` and `Authorization` passed on.

use std::collections::BTreeSet;
use std::time::Duration;

use etcd_cache_gateway::config::{Cli, Config, load};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn compose() -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/docker-compose.yml")).unwrap();
    serde_norway::from_str(&text).expect("docker-compose.yml parses (anchors and aliases resolved)")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    &compose["services"][name]
}

/// A key of a service, or of the anchor it merges with `<<` (serde_norway
/// resolves aliases but keeps merge keys as they are).
fn field<'a>(svc: &'a Value, key: &str) -> Option<&'a Value> {
    svc.get(key).or_else(|| svc.get("<<").and_then(|merged| merged.get(key)))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// The gateway replicas: the services built from the Dockerfile.
fn gateways(compose: &Value) -> Vec<&str> {
    let services = compose["services"].as_object().expect("services");
    services.iter().filter(|(_, svc)| field(svc, "build").is_some()).map(|(name, _)| name.as_str()).collect()
}

/// The environment the Dockerfile's `ENV` lines give the gateway's process:
/// it is part of the effective configuration (`GATEWAY_LISTEN` wins over
/// `listen` in the file).
pub(crate) fn image_env() -> Vec<(String, String)> {
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("ENV "))
        .map(|assignment| {
            let (name, value) = assignment.trim().split_once('=').expect("ENV NAME=value");
            (name.to_owned(), value.trim_matches('"').to_owned())
        })
        .collect()
}

/// A gateway replica's mounted config file (its path in the checkout) and
/// the configuration it loads to, with the image's environment.
fn gateway_config(svc: &Value, name: &str) -> (String, Config) {
    let mount = strings(field(svc, "volumes").unwrap())[0];
    let (source, target) = mount.split_once(':').unwrap();
    assert!(target.ends_with(":ro"), "{name}: the config is mounted read-only");
    let target = target.trim_end_matches(":ro");
    let config_path = format!("{ROOT}/{}", source.trim_start_matches("./"));
    let command = strings(field(svc, "command").unwrap());
    assert_eq!(command, ["--config", target], "{name} reads the mounted file");
    let cli = Cli { config: Some(config_path.clone().into()), ..Cli::default() };
    let config = load(&cli, image_env()).expect("config/docker.toml loads and validates").config;
    (config_path, config)
}

#[test]
fn compose_file_is_consistent() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    let etcd_services: BTreeSet<&str> =
        services.keys().filter(|k| k.starts_with("etcd")).map(String::as_str).collect();
    assert_eq!(etcd_services.len(), 3, "a 3-member cluster");
    for (name, svc) in services {
        assert!(field(svc, "healthcheck").is_some(), "{name} has a healthcheck");
        assert!(field(svc, "restart").is_some(), "{name} has a restart policy");
    }
    // Every etcd member names all three in its initial cluster and runs a 3.5 image.
    for name in &etcd_services {
        let svc = service(&compose, name);
        let image = field(svc, "image").and_then(Value::as_str).unwrap();
        assert!(image.contains(":v3.5."), "{name}: pinned 3.5 image, not {image}");
        let command = strings(&svc["command"]);
        assert!(command.contains(&format!("--name={name}").as_str()), "{name}: {command:?}");
        let cluster = command.iter().find(|c| c.starts_with("--initial-cluster=")).unwrap();
        for member in &etcd_services {
            assert!(cluster.contains(&format!("{member}=http://{member}:2380")), "{name} knows {member}");
        }
    }
    // Published host ports do not collide.
    let mut host_ports = BTreeSet::new();
    for (name, svc) in services {
        for port in field(svc, "ports").and_then(Value::as_array).into_iter().flatten() {
            let host = port.as_str().unwrap().split(':').next().unwrap().to_owned();
            assert!(host_ports.insert(host.clone()), "{name}: host port {host} is published twice");
        }
    }
    // Two replicas, each mounting the same existing config, which validates
    // and names exactly the etcd services.
    let gateways = gateways(&compose);
    assert_eq!(gateways, ["gateway1", "gateway2"], "two gateway replicas built from the Dockerfile");
    let mut config_files = BTreeSet::new();
    for name in &gateways {
        let gateway = service(&compose, name);
        let (config_path, config) = gateway_config(gateway, name);
        config_files.insert(config_path);
        let endpoints: BTreeSet<String> = config.etcd.endpoints.iter().cloned().collect();
        let expected: BTreeSet<String> = etcd_services.iter().map(|s| format!("http://{s}:2379")).collect();
        assert_eq!(endpoints, expected, "{name}");
        // The replica waits for healthy etcd members and is given time to drain.
        let depends_on = field(gateway, "depends_on").unwrap();
        for member in &etcd_services {
            assert_eq!(depends_on[member]["condition"], "service_healthy", "{name} waits for {member}");
        }
        let grace = field(gateway, "stop_grace_period").and_then(Value::as_str).unwrap();
        let grace = humantime::parse_duration(grace).unwrap();
        assert!(
            grace > config.http.shutdown_timeout.get() + Duration::from_secs(2),
            "{name}: stop_grace_period {grace:?}"
        );
        // Only the proxy reaches the replicas; their healthcheck asks the
        // port they listen on for readiness.
        let ports = field(gateway, "ports").and_then(Value::as_array);
        assert!(ports.is_none_or(Vec::is_empty), "{name} publishes no port: {ports:?}");
        let healthcheck = strings(&field(gateway, "healthcheck").unwrap()["test"]).join(" ");
        let port = config.listen.port();
        assert!(healthcheck.contains(&format!(":{port}/readyz")), "{name}: {healthcheck}");
    }
    assert_eq!(config_files.len(), 1, "the replicas read the same config: {config_files:?}");
}

/// The port the replicas listen on (the same for both, checked above).
fn gateway_port(compose: &Value) -> u16 {
    let name = gateways(compose)[0];
    gateway_config(service(compose, name), name).1.listen.port()
}

#[test]
fn the_proxy_publishes_the_gateway_port_and_waits_for_every_replica() {
    let compose = compose();
    let proxy = service(&compose, "proxy");
    let image = field(proxy, "image").and_then(Value::as_str).unwrap();
    assert!(image.starts_with("nginx:"), "the official nginx image, not {image}");
    // Clients keep using the gateway's port; the proxy is the only service
    // that publishes it.
    let port = gateway_port(&compose);
    assert_eq!(strings(&proxy["ports"]), [format!("{port}:{port}")], "the gateway's port, on the proxy");
    for (name, svc) in compose["services"].as_object().unwrap() {
        if name != "proxy" {
            for published in field(svc, "ports").and_then(Value::as_array).into_iter().flatten() {
                let host = published.as_str().unwrap().split(':').next().unwrap();
                assert_ne!(host, port.to_string(), "{name} publishes the proxy's port");
            }
        }
    }
    for gateway in gateways(&compose) {
        assert_eq!(
            proxy["depends_on"][gateway]["condition"], "service_healthy",
            "the proxy waits for {gateway}"
        );
    }
    assert_eq!(
        strings(&proxy["volumes"]),
        ["./config/nginx.conf:/etc/nginx/nginx.conf:ro"],
        "config/nginx.conf replaces the image's, read-only"
    );
    // A graceful nginx stop (SIGQUIT) waits for open streams up to
    // worker_shutdown_timeout: docker must not kill it before.
    let conf = nginx::parse(&nginx_conf());
    let shutdown = nginx::one(&conf, "worker_shutdown_timeout").expect("worker_shutdown_timeout is set");
    let shutdown = nginx::duration(&shutdown.args[0]);
    let grace = humantime::parse_duration(proxy["stop_grace_period"].as_str().unwrap()).unwrap();
    assert!(grace > shutdown, "stop_grace_period {grace:?} outlasts worker_shutdown_timeout {shutdown:?}");
}

fn nginx_conf() -> String {
    std::fs::read_to_string(format!("{ROOT}/config/nginx.conf")).unwrap()
}

#[test]
fn nginx_conf_serves_sse_from_every_replica() {
    let compose = compose();
    let port = gateway_port(&compose);
    let replica = gateway_config(service(&compose, "gateway1"), "gateway1").1;
    let conf = nginx::parse(&nginx_conf());
    let http = &nginx::one(&conf, "http").expect("an http block").block;
    // The server listens on the published port and passes every path to an upstream.
    let server = &nginx::one(http, "server").expect("one server").block;
    let listen = nginx::one(server, "listen").expect("listen");
    assert_eq!(listen.args[0], port.to_string(), "nginx listens on the port the proxy publishes");
    let location = nginx::all(server, "location")
        .find(|l| l.args == ["/"])
        .map(|l| &l.block)
        .expect("location / passes everything on");
    let proxy_pass = nginx::one(location, "proxy_pass").expect("proxy_pass");
    let upstream_name = proxy_pass.args[0].strip_prefix("http://").expect("plain HTTP to the replicas");
    // The upstream holds every replica at its port, balanced by least
    // connections (or round robin), with idle connections kept open.
    let upstream = &nginx::all(http, "upstream")
        .find(|u| u.args == [upstream_name])
        .unwrap_or_else(|| panic!("upstream {upstream_name}"))
        .block;
    let servers: BTreeSet<&str> = nginx::all(upstream, "server").map(|s| s.args[0].as_str()).collect();
    let expected: BTreeSet<String> = gateways(&compose).iter().map(|g| format!("{g}:{port}")).collect();
    assert_eq!(servers, expected.iter().map(String::as_str).collect(), "every replica, nothing else");
    for sticky in ["ip_hash", "hash", "random", "sticky"] {
        assert!(
            nginx::one(upstream, sticky).is_none(),
            "{sticky}: least_conn or round robin balances streams"
        );
    }
    let keepalive = nginx::one(upstream, "keepalive").expect("upstream keepalive");
    assert!(keepalive.args[0].parse::<u32>().unwrap() > 0);
    if nginx::all(upstream, "server").any(|s| s.args.iter().any(|a| a == "resolve")) {
        assert!(nginx::one(upstream, "zone").is_some(), "`resolve` needs a shared zone");
        assert!(nginx::one(http, "resolver").is_some(), "`resolve` needs a resolver");
    }
    // What applies inside the location: its own directives, else the
    // server's, else http's.
    let scopes: [&[nginx::Directive]; 3] = [http, server, location];
    let setting = |name: &str| -> Vec<String> {
        let found = nginx::effective(&scopes, name);
        assert_eq!(found.len(), 1, "{name} is set once: {found:?}");
        found[0].args.clone()
    };
    assert_eq!(setting("proxy_http_version"), ["1.1"], "HTTP/1.1 to the replicas");
    assert_eq!(setting("proxy_buffering"), ["off"], "events pass through at once");
    let read_timeout = nginx::duration(&setting("proxy_read_timeout")[0]);
    assert!(read_timeout >= Duration::from_secs(3600), "proxy_read_timeout {read_timeout:?}");
    let longest_stream = replica.watch.max_stream_lifetime.get().mul_f64(1.1);
    assert!(read_timeout > longest_stream, "nginx outlasts watch.max_stream_lifetime (+10% jitter)");
    assert!(read_timeout > replica.watch.heartbeat_interval.get());
    for off in ["proxy_pass_request_headers", "proxy_ignore_headers"] {
        assert!(nginx::effective(&scopes, off).is_empty(), "{off} would drop what the gateway relies on");
    }
    // Request headers, with nginx's inheritance: one proxy_set_header in a
    // block hides every one of the blocks around it.
    let headers: Vec<(String, String)> = nginx::effective(&scopes, "proxy_set_header")
        .iter()
        .map(|d| (d.args[0].to_ascii_lowercase(), d.args.get(1).cloned().unwrap_or_default()))
        .collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(header("connection"), Some(""), "keep-alive: no `Connection: close` to the replicas");
    assert_eq!(header("last-event-id"), Some("$http_last_event_id"), "streams resume on any replica");
    assert_eq!(header("authorization"), Some("$http_authorization"), "bearer tokens reach the replicas");
}

/// nginx configuration, parsed just enough to check it: each directive with
/// its arguments and its block.
mod nginx {
    use std::time::Duration;

    /// One directive: `name args...;` or `name args... { block }`.
    #[derive(Debug)]
    pub struct Directive {
        pub name: String,
        pub args: Vec<String>,
        pub block: Vec<Directive>,
    }

    enum Token {
        Word(String),
        Semicolon,
        Open,
        Close,
    }

    fn tokens(text: &str) -> Vec<Token> {
        let mut out = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                c if c.is_whitespace() => {}
                '#' => {
                    for c in chars.by_ref() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                ';' => out.push(Token::Semicolon),
                '{' => out.push(Token::Open),
                '}' => out.push(Token::Close),
                '"' | '\'' => {
                    let mut word = String::new();
                    loop {
                        match chars.next() {
                            Some('\\') => word.extend(chars.next()),
                            Some(q) if q == c => break,
                            Some(other) => word.push(other),
                            None => panic!("nginx.conf: unterminated string {word:?}"),
                        }
                    }
                    out.push(Token::Word(word));
                }
                _ => {
                    let mut word = String::from(c);
                    while let Some(&next) = chars.peek() {
                        if next.is_whitespace() || matches!(next, ';' | '{' | '}') {
                            break;
                        }
                        word.push(next);
                        chars.next();
                    }
                    out.push(Token::Word(word));
                }
            }
        }
        out
    }

    fn block(tokens: &mut impl Iterator<Item = Token>, nested: bool) -> Vec<Directive> {
        let mut directives = Vec::new();
        let mut words = Vec::new();
        loop {
            let body = match tokens.next() {
                Some(Token::Word(word)) => {
                    words.push(word);
                    continue;
                }
                Some(Token::Semicolon) => Vec::new(),
                Some(Token::Open) => block(tokens, true),
                Some(Token::Close) => {
                    assert!(nested && words.is_empty(), "nginx.conf: unbalanced `}}` after {words:?}");
                    return directives;
                }
                None => {
                    assert!(!nested && words.is_empty(), "nginx.conf: unterminated block or directive");
                    return directives;
                }
            };
            let mut words = std::mem::take(&mut words).into_iter();
            let name = words.next().expect("nginx.conf: a directive has a name");
            directives.push(Directive { name, args: words.collect(), block: body });
        }
    }

    /// The top-level directives of a configuration.
    pub fn parse(text: &str) -> Vec<Directive> {
        block(&mut tokens(text).into_iter(), false)
    }

    /// The directives `name` of a block.
    pub fn all<'a>(block: &'a [Directive], name: &str) -> impl Iterator<Item = &'a Directive> {
        block.iter().filter(move |d| d.name == name)
    }

    /// The directive `name` of a block, which has at most one.
    pub fn one<'a>(block: &'a [Directive], name: &str) -> Option<&'a Directive> {
        let mut found = all(block, name);
        let first = found.next();
        assert!(found.next().is_none(), "{name} is set twice in one block");
        first
    }

    /// The directives `name` in effect in the innermost of `scopes`
    /// (outermost first): nginx inherits a directive from the enclosing
    /// block only when a block has none of its own.
    pub fn effective<'a>(scopes: &[&'a [Directive]], name: &str) -> Vec<&'a Directive> {
        scopes
            .iter()
            .rev()
            .map(|scope| all(scope, name).collect::<Vec<_>>())
            .find(|found| !found.is_empty())
            .unwrap_or_default()
    }

    /// An nginx time: plain seconds, or with units (`3600s`, `1h`, `30m`).
    pub fn duration(value: &str) -> Duration {
        value.parse().map(Duration::from_secs).unwrap_or_else(|_| {
            humantime::parse_duration(value).unwrap_or_else(|e| panic!("nginx time {value:?}: {e}"))
        })
    }
}

#[test]
fn dockerfile_builds_non_root_with_a_readiness_healthcheck() {
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    assert!(dockerfile.matches("FROM ").count() >= 2, "multi-stage");
    assert!(dockerfile.contains("protobuf-compiler"), "the build stage has protoc");
    assert!(dockerfile.contains("USER gateway"), "runs as a non-root user");
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/readyz"));
}
