//! [`Config::validate`]: every check that a value makes sense, with an error
//! that names the field and the offending value.

use std::collections::HashSet;
use std::fmt::Display;

use super::{CachePolicy, Config, HumanDuration};

/// A configuration value that makes no sense, with the field that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {field} = {value}: {reason}")]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `namespaces[1].prefix`.
    pub field: String,
    /// The offending value as written.
    pub value: String,
    /// Why it is rejected.
    pub reason: String,
}

fn bad(field: impl Into<String>, value: impl Display, reason: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), value: value.to_string(), reason: reason.into() }
}

fn positive(field: &str, d: HumanDuration) -> Result<(), ConfigError> {
    if d.get().is_zero() { Err(bad(field, d, "must be greater than zero")) } else { Ok(()) }
}

fn nonzero(field: &str, n: u64) -> Result<(), ConfigError> {
    if n == 0 { Err(bad(field, n, "must be greater than zero")) } else { Ok(()) }
}

/// Namespace names appear in URLs and metric labels.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Config {
    /// Checks that every value makes sense on its own and together.
    ///
    /// # Errors
    /// The first [`ConfigError`] found, naming the field and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_etcd()?;
        self.validate_namespaces()?;
        self.validate_cache()?;
        self.validate_watch()?;
        self.validate_http()?;
        self.validate_tokens()?;
        self.validate_etcd_api()?;
        let names: Vec<&str> = self.namespaces.iter().map(|n| n.name.as_str()).collect();
        self.kubernetes.validate(&names)?;
        tracing_subscriber::EnvFilter::try_new(&self.log.filter)
            .map_err(|e| bad("log.filter", format!("{:?}", self.log.filter), e.to_string()))?;
        Ok(())
    }

    /// Settings that are valid but probably not what was meant: each a
    /// sentence for the startup log.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let default_history = super::CacheConfig::default().history_revisions;
        if self.cache.policy == CachePolicy::Ttl && self.cache.history_revisions != default_history {
            warnings.push(format!(
                "cache.history_revisions = {} has no effect with cache.policy = \"ttl\": the history window \
                 is cache.ttl",
                self.cache.history_revisions
            ));
        }
        for (i, ns) in self.namespaces.iter().enumerate() {
            if ns.prefix.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric) {
                warnings.push(format!(
                    "namespaces[{i}].prefix = {:?} does not end with a separator: it also covers keys such as \
                     {:?}; write {:?} to serve only that folder",
                    ns.prefix,
                    format!("{}x/y", ns.prefix),
                    format!("{}/", ns.prefix)
                ));
            }
        }
        warnings
    }

    fn validate_etcd(&self) -> Result<(), ConfigError> {
        let e = &self.etcd;
        if e.endpoints.is_empty() {
            return Err(bad("etcd.endpoints", "[]", "at least one endpoint is required"));
        }
        for (i, url) in e.endpoints.iter().enumerate() {
            let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains('/') && !r.ends_with('/')) {
                return Err(bad(
                    format!("etcd.endpoints[{i}]"),
                    format!("{url:?}"),
                    "must be a URL like http://host:2379 or https://host:2379",
                ));
            }
        }
        match (&e.username, &e.password) {
            (Some(user), None) => {
                return Err(bad("etcd.username", format!("{user:?}"), "needs etcd.password"));
            }
            (None, Some(_)) => return Err(bad("etcd.password", "(redacted)", "needs etcd.username")),
            _ => {}
        }
        if let Some(tls) = &e.tls {
            match (&tls.cert_file, &tls.key_file) {
                (Some(path), None) => {
                    return Err(bad("etcd.tls.cert_file", path.display(), "needs etcd.tls.key_file"));
                }
                (None, Some(path)) => {
                    return Err(bad("etcd.tls.key_file", path.display(), "needs etcd.tls.cert_file"));
                }
                _ => {}
            }
            for (field, path) in
                [("ca_file", &tls.ca_file), ("cert_file", &tls.cert_file), ("key_file", &tls.key_file)]
            {
                if let Some(path) = path.as_ref().filter(|p| !p.is_file()) {
                    return Err(bad(format!("etcd.tls.{field}"), path.display(), "file does not exist"));
                }
            }
        }
        positive("etcd.connect_timeout", e.connect_timeout)?;
        positive("etcd.request_timeout", e.request_timeout)?;
        positive("etcd.keep_alive_interval", e.keep_alive_interval)?;
        positive("etcd.keep_alive_timeout", e.keep_alive_timeout)?;
        positive("etcd.backoff_min", e.backoff_min)?;
        positive("etcd.backoff_max", e.backoff_max)?;
        if e.backoff_min > e.backoff_max {
            return Err(bad(
                "etcd.backoff_min",
                e.backoff_min,
                format!("must not exceed etcd.backoff_max ({})", e.backoff_max),
            ));
        }
        positive("etcd.progress_request_interval", e.progress_request_interval)?;
        if e.watch_silence_timeout <= e.progress_request_interval {
            return Err(bad(
                "etcd.watch_silence_timeout",
                e.watch_silence_timeout,
                format!(
                    "must exceed etcd.progress_request_interval ({}): a silent watch is one that did not \
                     answer its progress requests",
                    e.progress_request_interval
                ),
            ));
        }
        nonzero("etcd.bootstrap_page_size", u64::from(e.bootstrap_page_size))?;
        nonzero("etcd.bootstrap_page_bytes", e.bootstrap_page_bytes.bytes())?;
        if e.max_message_bytes.bytes() < 4 * 1024 * 1024 {
            return Err(bad(
                "etcd.max_message_bytes",
                e.max_message_bytes,
                "must be at least 4MiB (etcd's own response limit)",
            ));
        }
        Ok(())
    }

    fn validate_namespaces(&self) -> Result<(), ConfigError> {
        if self.namespaces.is_empty() {
            return Err(bad("namespaces", "[]", "at least one namespace is required"));
        }
        let mut names = HashSet::new();
        for (i, ns) in self.namespaces.iter().enumerate() {
            if !valid_name(&ns.name) {
                return Err(bad(
                    format!("namespaces[{i}].name"),
                    format!("{:?}", ns.name),
                    "must be 1-64 characters of letters, digits, '-', '_' or '.'",
                ));
            }
            if !names.insert(ns.name.as_str()) {
                return Err(bad(
                    format!("namespaces[{i}].name"),
                    format!("{:?}", ns.name),
                    "duplicate namespace name",
                ));
            }
            if ns.max_subscribers == Some(0) {
                return Err(bad(format!("namespaces[{i}].max_subscribers"), 0, "must be greater than zero"));
            }
            for (j, other) in self.namespaces.iter().enumerate().take(i) {
                if ns.prefix.starts_with(&other.prefix) || other.prefix.starts_with(&ns.prefix) {
                    return Err(bad(
                        format!("namespaces[{i}].prefix"),
                        format!("{:?}", ns.prefix),
                        format!(
                            "overlaps the prefix {:?} of namespaces[{j}] ({:?})",
                            other.prefix, other.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_cache(&self) -> Result<(), ConfigError> {
        let c = &self.cache;
        nonzero("cache.history_revisions", c.history_revisions)?;
        match (c.policy, c.ttl) {
            (CachePolicy::Ttl, None) => {
                return Err(bad("cache.ttl", "(unset)", "the ttl policy needs cache.ttl, e.g. \"5m\""));
            }
            (_, Some(ttl)) => positive("cache.ttl", ttl)?,
            (CachePolicy::Revision, None) => {}
        }
        nonzero("cache.max_value_bytes", c.max_value_bytes.bytes())?;
        nonzero("cache.max_history_bytes", c.max_history_bytes.bytes())?;
        positive("cache.consistent_read_timeout", c.consistent_read_timeout)?;
        positive("cache.wait_timeout", c.wait_timeout)
    }

    fn validate_watch(&self) -> Result<(), ConfigError> {
        let w = &self.watch;
        nonzero("watch.max_subscribers", w.max_subscribers as u64)?;
        nonzero("watch.max_subscribers_per_namespace", w.max_subscribers_per_namespace as u64)?;
        nonzero("watch.max_catch_ups", w.max_catch_ups as u64)?;
        if w.max_streams_per_token == Some(0) {
            return Err(bad("watch.max_streams_per_token", 0, "must be greater than zero"));
        }
        if w.progress_interval.get().as_secs() < 1 {
            return Err(bad("watch.progress_interval", w.progress_interval, "must be at least 1s"));
        }
        positive("watch.heartbeat_interval", w.heartbeat_interval)?;
        if w.max_stream_lifetime.get().as_secs() < 1 {
            return Err(bad("watch.max_stream_lifetime", w.max_stream_lifetime, "must be at least 1s"));
        }
        Ok(())
    }

    fn validate_http(&self) -> Result<(), ConfigError> {
        let h = &self.http;
        positive("http.request_timeout", h.request_timeout)?;
        nonzero("http.body_limit", h.body_limit.bytes())?;
        positive("http.shutdown_timeout", h.shutdown_timeout)?;
        if let Some(tls) = &h.tls {
            for (field, path) in [("cert_file", &tls.cert_file), ("key_file", &tls.key_file)] {
                if !path.is_file() {
                    return Err(bad(format!("http.tls.{field}"), path.display(), "file does not exist"));
                }
            }
        }
        for (i, origin) in h.cors_origins.iter().enumerate() {
            let field = format!("http.cors_origins[{i}]");
            if origin == "*" {
                if !self.tokens.is_empty() {
                    return Err(bad(field, "\"*\"", "a wildcard origin is not allowed together with tokens"));
                }
                continue;
            }
            let host = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
            if host.is_none_or(|h| h.is_empty() || h.contains('/')) {
                return Err(bad(
                    field,
                    format!("{origin:?}"),
                    "must be \"*\" or an origin like https://app.example.com",
                ));
            }
        }
        Ok(())
    }

    /// Forwarded writes speak plain HTTP to etcd's own JSON gateway, without
    /// etcd credentials: refuse a configuration where they could not work.
    fn validate_etcd_api(&self) -> Result<(), ConfigError> {
        let api = &self.etcd_api;
        if api.writes == super::EtcdWrites::Forward {
            if !api.enabled {
                return Err(bad("etcd_api.writes", "\"forward\"", "needs etcd_api.enabled = true"));
            }
            if let Some(url) = self.etcd.endpoints.iter().find(|url| !url.starts_with("http://")) {
                return Err(bad(
                    "etcd_api.writes",
                    "\"forward\"",
                    format!("writes are forwarded over plain HTTP; etcd endpoint {url:?} is not http://"),
                ));
            }
            if self.etcd.username.is_some() {
                return Err(bad(
                    "etcd_api.writes",
                    "\"forward\"",
                    "writes cannot be forwarded with etcd authentication (etcd.username) yet",
                ));
            }
        }
        Ok(())
    }

    fn validate_tokens(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let field = |f: &str| format!("tokens[{i}].{f}");
            if t.name.is_empty() || !names.insert(t.name.as_str()) {
                return Err(bad(
                    field("name"),
                    format!("{:?}", t.name),
                    "token names must be non-empty and unique",
                ));
            }
            let sources = [t.secret.is_some(), t.secret_env.is_some(), t.secret_file.is_some()];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(bad(
                    field("secret"),
                    "(sources)",
                    "set exactly one of secret, secret_env, secret_file",
                ));
            }
            if t.secret.as_ref().is_some_and(|s| s.len() < 8) {
                return Err(bad(field("secret"), "(redacted)", "must be at least 8 characters"));
            }
            if t.namespaces.is_empty() {
                return Err(bad(
                    field("namespaces"),
                    "[]",
                    "list the namespaces this token may read, or \"*\"",
                ));
            }
            for ns in &t.namespaces {
                if ns != "*" && !self.namespaces.iter().any(|n| &n.name == ns) {
                    return Err(bad(field("namespaces"), format!("{ns:?}"), "no such namespace"));
                }
            }
        }
        Ok(())
    }
}
