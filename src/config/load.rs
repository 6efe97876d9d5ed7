//! Loading: built-in defaults ← TOML file ← `GATEWAY_*` environment ← flags.
//!
//! The environment is passed in as a list of pairs rather than read here, so
//! tests exercise precedence without touching the process environment. Each
//! environment variable and flag is a provider of its own, named after where
//! it came from, so an error says "environment variable GATEWAY_X", not a
//! Rust type. `GATEWAY_*` variables that are no configuration key (such as
//! the `GATEWAY_PORT` Kubernetes sets for a Service named `gateway`) are left
//! out with a warning instead of stopping the gateway.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::Parser;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::explain::{self, Origin};
use super::{CachePolicy, Config, ConfigError, LogFormat};

/// Prefix of environment variables that override the file; `__` separates
/// nested keys (`GATEWAY_ETCD__ENDPOINTS` sets `etcd.endpoints`).
pub const ENV_PREFIX: &str = "GATEWAY_";

/// File read when `--config` is not given, if it exists (relative to the working directory).
pub const DEFAULT_CONFIG_FILE: &str = "config/gateway.toml";

/// Command-line flags. Each common setting also has a flag; every other key
/// is set in the file or with a `GATEWAY_*` variable.
#[derive(Clone, Debug, Default, Parser)]
#[command(name = "etcd-cache-gateway", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML) [default: config/gateway.toml when it exists]
    #[arg(long, value_name = "FILE", env = "GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080 or localhost:8080
    #[arg(long, value_name = "ADDR", env = "GATEWAY_LISTEN", value_parser = listen_flag)]
    pub listen: Option<SocketAddr>,
    /// etcd client URLs, comma-separated
    #[arg(long, value_name = "URLS", env = "GATEWAY_ETCD__ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Cache eviction policy
    #[arg(long, value_name = "POLICY", env = "GATEWAY_CACHE__POLICY", value_enum)]
    pub cache_policy: Option<CachePolicy>,
    /// Log format
    #[arg(long, value_name = "FORMAT", env = "GATEWAY_LOG__FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Load and validate the configuration, print it as JSON, and exit
    #[arg(long)]
    pub check_config: bool,
}

/// `--listen` (or `GATEWAY_LISTEN`, which clap reads for it): the error
/// names both, since the user may have set either.
fn listen_flag(text: &str) -> Result<SocketAddr, String> {
    super::units::listen_addr(text).map_err(|e| format!("{e} (from --listen or GATEWAY_LISTEN)"))
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file named by `--config` does not exist.
    #[error("configuration file {path} does not exist")]
    MissingFile {
        /// The path given.
        path: PathBuf,
    },
    /// A value could not be read into its key: which key, from where, what
    /// was expected, and an example.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The values were read but make no sense together.
    #[error(transparent)]
    Rejected(#[from] ConfigError),
}

/// A loaded configuration and what the operator should hear about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Settings that were ignored or look like mistakes (logged at startup).
    pub warnings: Vec<String>,
}

/// Loads and validates the configuration from every source, in precedence order.
///
/// `env` is the process environment (`std::env::vars()` in `main`); only
/// `GATEWAY_*` variables that name a configuration key are used.
///
/// # Errors
/// [`LoadError`] naming the file, key or field that is wrong.
pub fn load(cli: &Cli, env: impl IntoIterator<Item = (String, String)>) -> Result<Loaded, LoadError> {
    let mut figment = Figment::new();
    match &cli.config {
        Some(path) if !path.exists() => return Err(LoadError::MissingFile { path: path.clone() }),
        Some(path) => figment = figment.merge(Toml::file_exact(path)),
        None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
            figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
        }
        None => {}
    }
    let mut warnings = Vec::new();
    for (variable, value) in env {
        let Some(key) = env_key(&variable) else { continue };
        if !known_key(&key) {
            warnings.push(format!(
                "ignoring environment variable {variable}: `{key}` is not a configuration key (Kubernetes sets \
                 GATEWAY_PORT and the like for a Service named gateway; those are harmless)"
            ));
            continue;
        }
        let value = Value::from_str(&value).unwrap_or_else(|never| match never {});
        figment = figment.merge(Setting { origin: Origin::Env(variable), key, value });
    }
    let flag = |name: &'static str, key: &str, value: Value| Setting {
        origin: Origin::Flag(name),
        key: key.into(),
        value,
    };
    if let Some(listen) = cli.listen {
        figment = figment.merge(flag("--listen", "listen", Value::from(listen.to_string())));
    }
    if !cli.etcd_endpoints.is_empty() {
        figment = figment.merge(flag(
            "--etcd-endpoints",
            "etcd.endpoints",
            Value::from(cli.etcd_endpoints.clone()),
        ));
    }
    if let Some(policy) = cli.cache_policy {
        figment = figment.merge(flag("--cache-policy", "cache.policy", serialized(&policy)));
    }
    if let Some(format) = cli.log_format {
        figment = figment.merge(flag("--log-format", "log.format", serialized(&format)));
    }
    let config: Config = figment.extract().map_err(|e| LoadError::Invalid(explain::error(e)))?;
    config.validate()?;
    warnings.extend(config.warnings());
    Ok(Loaded { config, warnings })
}

fn serialized(value: &impl serde::Serialize) -> Value {
    Value::serialize(value).unwrap_or_else(|_| Value::from(String::new()))
}

/// The configuration key of `GATEWAY_A__B` (`a.b`), if the variable is ours.
fn env_key(variable: &str) -> Option<String> {
    let rest = variable.strip_prefix(ENV_PREFIX)?;
    if rest.is_empty() || rest == "CONFIG" {
        return None;
    }
    Some(rest.to_ascii_lowercase().replace("__", "."))
}

/// Whether `key` names a setting: set on the defaults, it is refused for a
/// wrong type at worst, never as an unknown field.
fn known_key(key: &str) -> bool {
    let probe = Figment::from(Serialized::defaults(Config::default())).merge(Setting {
        origin: Origin::Env(String::new()),
        key: key.to_owned(),
        value: Value::from(String::new()),
    });
    match probe.extract::<Config>() {
        Ok(_) => true,
        Err(e) => !e.into_iter().any(|e| matches!(e.kind, figment::error::Kind::UnknownField(..))),
    }
}

/// One setting from the environment or a flag, named after where it came
/// from (errors then say so).
struct Setting {
    origin: Origin,
    key: String,
    value: Value,
}

impl Provider for Setting {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.origin.name())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict = figment::util::nest(&self.key, self.value.clone()).into_dict().unwrap_or_default();
        Ok(Profile::Default.collect(dict))
    }
}
