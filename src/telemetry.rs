//! Logging setup from the `[log]` section.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global tracing subscriber. `RUST_LOG`, when set, wins over
/// `log.filter` so an operator can raise verbosity without editing files.
///
/// # Errors
/// When a subscriber is already installed or the filter does not parse.
pub fn init(config: &LogConfig) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::try_new(&config.filter)?,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    }
}
