//! Loading: built-in defaults ← TOML file ← `GATEWAY_*` environment ← flags.
//!
//! The environment is passed in as a list of pairs rather than read here, so
//! tests exercise precedence without touching the process environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::Parser;
use figment::Figment;
use figment::providers::{Format, Toml};
use figment::value::Value;

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
    /// Address to listen on, e.g. 127.0.0.1:8080
    #[arg(long, value_name = "ADDR", env = "GATEWAY_LISTEN")]
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

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file named by `--config` does not exist.
    #[error("configuration file {path} does not exist")]
    MissingFile {
        /// The path given.
        path: PathBuf,
    },
    /// A value could not be read into its field (figment names the key and the source).
    #[error("invalid configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// The values were read but make no sense together.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Loads and validates the configuration from every source, in precedence order.
///
/// `env` is the process environment (`std::env::vars()` in `main`); only
/// `GATEWAY_*` variables are used.
///
/// # Errors
/// [`LoadError`] naming the file, key or field that is wrong.
pub fn load(cli: &Cli, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, LoadError> {
    let mut figment = Figment::new();
    match &cli.config {
        Some(path) if !path.exists() => return Err(LoadError::MissingFile { path: path.clone() }),
        Some(path) => figment = figment.merge(Toml::file_exact(path)),
        None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
            figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
        }
        None => {}
    }
    for (key, value) in env_overrides(env) {
        figment = figment.merge((key, value));
    }
    if let Some(listen) = cli.listen {
        figment = figment.merge(("listen", listen.to_string()));
    }
    if !cli.etcd_endpoints.is_empty() {
        figment = figment.merge(("etcd.endpoints", &cli.etcd_endpoints));
    }
    if let Some(policy) = cli.cache_policy {
        figment = figment.merge(("cache.policy", policy));
    }
    if let Some(format) = cli.log_format {
        figment = figment.merge(("log.format", format));
    }
    let config: Config = figment.extract().map_err(Box::new)?;
    config.validate()?;
    Ok(config)
}

/// Turns `GATEWAY_A__B=v` into (`a.b`, v). Values are parsed the way figment
/// parses its own environment provider (numbers, booleans, `[a, b]` arrays),
/// except that plain strings stay strings.
fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> impl Iterator<Item = (String, Value)> {
    env.into_iter().filter_map(|(key, value)| {
        let rest = key.strip_prefix(ENV_PREFIX)?;
        if rest.is_empty() || rest == "CONFIG" {
            return None;
        }
        let path = rest.to_ascii_lowercase().replace("__", ".");
        let value = Value::from_str(&value).unwrap_or_else(|never| match never {});
        Some((path, value))
    })
}
