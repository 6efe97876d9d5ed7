//! The gateway's one typed configuration.
//!
//! [`Config`] is loaded once in [`load`] (defaults ← `config/gateway.toml` or
//! `--config FILE` ← `GATEWAY_*` environment ← command-line flags), checked by
//! [`Config::validate`], and then handed out by section: each component gets
//! only the part it needs. `config/gateway.toml` documents every key.

mod explain;
mod kubernetes;
mod load;
#[cfg(test)]
mod tests;
mod units;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use kubernetes::{KeyPart, KeyTemplate, KubeResourceConfig, KubernetesConfig};
pub use load::{Cli, LoadError, Loaded, load};
pub use units::{ByteSize, HumanDuration};
pub use validate::ConfigError;

/// The whole configuration. Every field has a default; see `config/gateway.toml`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds, e.g. `127.0.0.1:8080` or `localhost:8080`.
    #[serde(deserialize_with = "units::listen")]
    pub listen: SocketAddr,
    /// How to reach etcd.
    pub etcd: EtcdConfig,
    /// The namespaces served; each is a name plus an etcd key prefix.
    pub namespaces: Vec<NamespaceConfig>,
    /// The watch cache and its eviction policy.
    pub cache: CacheConfig,
    /// Server-Sent-Events watch streams.
    pub watch: WatchConfig,
    /// HTTP server behaviour.
    pub http: HttpConfig,
    /// Bearer tokens; when empty, reads are open.
    pub tokens: Vec<TokenConfig>,
    /// etcd's own JSON API (`/v3/…`, `/version`), served from the cache.
    pub etcd_api: EtcdApiConfig,
    /// The Kubernetes-style list/watch surface (COMPAT.md §1).
    pub kubernetes: KubernetesConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            etcd: EtcdConfig::default(),
            namespaces: vec![NamespaceConfig {
                name: "default".into(),
                prefix: String::new(),
                max_subscribers: None,
            }],
            cache: CacheConfig::default(),
            watch: WatchConfig::default(),
            http: HttpConfig::default(),
            tokens: Vec::new(),
            etcd_api: EtcdApiConfig::default(),
            kubernetes: KubernetesConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// How to reach etcd.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the cluster members; a failed call is retried on the next one.
    #[serde(deserialize_with = "units::string_list")]
    pub endpoints: Vec<String>,
    /// User name for etcd authentication (with `password`).
    #[serde(deserialize_with = "units::lenient_opt_string")]
    pub username: Option<String>,
    /// Password for etcd authentication; prefer `GATEWAY_ETCD__PASSWORD`. Never printed.
    #[serde(skip_serializing, deserialize_with = "units::lenient_opt_string")]
    pub password: Option<String>,
    /// TLS files; absent = plain-text connections.
    pub tls: Option<TlsConfig>,
    /// Bound on establishing a connection to one endpoint.
    pub connect_timeout: HumanDuration,
    /// Bound on one unary etcd request (range, status).
    pub request_timeout: HumanDuration,
    /// HTTP/2 ping interval, also while idle, so a frozen etcd fails the watch.
    pub keep_alive_interval: HumanDuration,
    /// How long a ping may go unanswered before the connection is dropped.
    pub keep_alive_timeout: HumanDuration,
    /// First delay before reconnecting a failed watch (doubles, jittered).
    pub backoff_min: HumanDuration,
    /// Largest delay between reconnect attempts.
    pub backoff_max: HumanDuration,
    /// When a namespace's watch delivered nothing for this long, ask etcd for
    /// a progress notification (repeated every interval): a quiet namespace's
    /// revision keeps moving, and a silent stream is noticed.
    pub progress_request_interval: HumanDuration,
    /// When a watch delivered nothing at all for this long, not even answers
    /// to progress requests, it is re-created from the last revision (no loss).
    pub watch_silence_timeout: HumanDuration,
    /// Keys in the first page when loading a namespace.
    pub bootstrap_page_size: u32,
    /// Bytes per page after the first when loading a namespace (keys per
    /// page follow from the sizes seen): bounds memory per etcd response,
    /// and keeps pages few, as etcd's cost per page grows with the keys
    /// after it. At most `max_message_bytes` (the smaller is used).
    pub bootstrap_page_bytes: ByteSize,
    /// Largest etcd response the client decodes (a watch catch-up can be large).
    pub max_message_bytes: ByteSize,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            username: None,
            password: None,
            tls: None,
            connect_timeout: HumanDuration::secs(5),
            request_timeout: HumanDuration::secs(5),
            keep_alive_interval: HumanDuration::secs(5),
            keep_alive_timeout: HumanDuration::secs(3),
            backoff_min: HumanDuration::millis(100),
            backoff_max: HumanDuration::secs(10),
            progress_request_interval: HumanDuration::secs(5),
            watch_silence_timeout: HumanDuration::secs(15),
            bootstrap_page_size: 1000,
            bootstrap_page_bytes: ByteSize::mib(16),
            max_message_bytes: ByteSize::mib(64),
        }
    }
}

/// TLS material for etcd connections (PEM files).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// CA bundle that signed the etcd server certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate for mutual TLS (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// Client private key for mutual TLS (with `cert_file`).
    pub key_file: Option<PathBuf>,
    /// Server name to verify instead of the endpoint's host.
    pub domain: Option<String>,
}

/// One namespace: a URL name and the etcd key prefix it serves.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Name used in URLs (`/v1/namespaces/{name}`): letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// etcd key prefix; keys in URLs and responses are relative to it.
    #[serde(default, deserialize_with = "units::lenient_string")]
    pub prefix: String,
    /// Cap on concurrent watch streams of this namespace (default: `watch.max_subscribers_per_namespace`).
    #[serde(default)]
    pub max_subscribers: Option<usize>,
}

/// Which eviction policy the cache runs.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CachePolicy {
    /// Keep the last `history_revisions` revisions of history and every current value.
    #[default]
    Revision,
    /// Keep `ttl` of history; values idle for `ttl` are dropped and reloaded on read.
    Ttl,
}

/// The watch cache.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Eviction policy, `revision` or `ttl`.
    pub policy: CachePolicy,
    /// With `revision`: how many etcd revisions of history are kept.
    pub history_revisions: u64,
    /// With `ttl`: how long history and idle values are kept (required then).
    pub ttl: Option<HumanDuration>,
    /// Byte bound on each namespace's history window, with either policy:
    /// revisions with many or large events cannot grow it without limit.
    pub max_history_bytes: ByteSize,
    /// Byte budget of cached values (key + value bytes).
    pub max_value_bytes: ByteSize,
    /// How long a `consistent=true` read waits for the cache before reading etcd.
    pub consistent_read_timeout: HumanDuration,
    /// How long a `min_revision` read waits before answering 504 `timeout`.
    pub wait_timeout: HumanDuration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            policy: CachePolicy::Revision,
            history_revisions: 10_000,
            ttl: None,
            max_history_bytes: ByteSize::mib(256),
            max_value_bytes: ByteSize::mib(512),
            consistent_read_timeout: HumanDuration::secs(3),
            wait_timeout: HumanDuration::secs(10),
        }
    }
}

/// Server-Sent-Events watch streams.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// Cap on concurrent watch streams of the whole gateway.
    pub max_subscribers: usize,
    /// Default cap on concurrent watch streams of one namespace.
    pub max_subscribers_per_namespace: usize,
    /// Cap on concurrent watch streams of one token (absent = no per-token cap).
    pub max_streams_per_token: Option<usize>,
    /// `progress` event interval of an idle stream when the client asks for none.
    pub progress_interval: HumanDuration,
    /// Interval of `: keep-alive` comments that keep proxies from closing idle streams.
    pub heartbeat_interval: HumanDuration,
    /// Streams are closed after this long (jittered ±10%) so load rebalances.
    pub max_stream_lifetime: HumanDuration,
    /// Streams resumed from a revision older than the history window are
    /// caught up from etcd by replays of its history (one etcd watch each
    /// while it reads, shared by every stream resuming at or after its
    /// start): at most this many replays at once (the others wait their turn).
    pub max_catch_ups: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            max_subscribers: 20_000,
            max_subscribers_per_namespace: 10_000,
            max_streams_per_token: None,
            progress_interval: HumanDuration::secs(30),
            heartbeat_interval: HumanDuration::secs(15),
            max_stream_lifetime: HumanDuration::secs(30 * 60),
            max_catch_ups: 32,
        }
    }
}

/// HTTP server behaviour.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Origins allowed by CORS (`"*"` only without tokens); empty = no CORS headers.
    #[serde(deserialize_with = "units::string_list")]
    pub cors_origins: Vec<String>,
    /// Bound on one unary request (never applied to watch streams).
    pub request_timeout: HumanDuration,
    /// Largest accepted request body.
    pub body_limit: ByteSize,
    /// On SIGTERM/SIGINT: how long to drain before exiting anyway.
    pub shutdown_timeout: HumanDuration,
    /// Byte budget of rendered listing pages shared between identical
    /// requests (0 = off).
    pub page_cache_bytes: ByteSize,
    /// Serve HTTPS with this certificate and key (absent = plain HTTP).
    pub tls: Option<ServerTlsConfig>,
}

/// The server's certificate and key (PEM files), for every surface.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// Certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            request_timeout: HumanDuration::secs(30),
            body_limit: ByteSize::kib(64),
            shutdown_timeout: HumanDuration::secs(10),
            page_cache_bytes: ByteSize::mib(64),
            tls: None,
        }
    }
}

/// One bearer token and the namespaces it may read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Name for logs and metrics (never the secret).
    pub name: String,
    /// The secret inline (set exactly one of `secret`, `secret_env`, `secret_file`).
    #[serde(default, skip_serializing, deserialize_with = "units::lenient_opt_string")]
    pub secret: Option<String>,
    /// Name of an environment variable holding the secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding the secret (surrounding whitespace trimmed).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Namespace names this token may read; `"*"` = all.
    pub namespaces: Vec<String>,
    /// Whether the token may write its namespaces through etcd's JSON API
    /// (`/v3/kv/put`, …) when `etcd_api.writes = "forward"`.
    #[serde(default)]
    pub write: bool,
}

/// etcd's own JSON API (COMPAT.md §2): the paths and bodies of etcd's
/// gRPC-gateway, reads served from the cache.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdApiConfig {
    /// Serve `/v3/…` and `/version` (off by default).
    pub enabled: bool,
    /// What becomes of writes (put, delete, txn, lease changes).
    pub writes: EtcdWrites,
}

/// What the etcd JSON API does with writes.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EtcdWrites {
    /// Refused as permission denied: the API is read-only.
    #[default]
    Deny,
    /// Forwarded to etcd for tokens with `write = true` (any caller when no
    /// tokens are configured).
    Forward,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// tracing filter directives, e.g. `info,etcd_cache_gateway=debug`.
    #[serde(deserialize_with = "units::lenient_string")]
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, filter: "info".into() }
    }
}
