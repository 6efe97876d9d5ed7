//! Logging setup from the `[log]` section.
//!
//! Lines go to standard output through a bounded, lossy queue written by a
//! thread of its own: a slow or vanished reader of the output (a dying log
//! forwarder, a `| head` that exited) costs lost lines, never a blocked or
//! crashed request path, and never a missed SIGTERM.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Log lines queued for the writer thread; beyond it new lines are dropped
/// (a reader that stopped reading must not stop the gateway), and about a
/// second of a busy gateway's logging fits.
pub const LOG_QUEUE_LINES: usize = 16_384;

/// Keeps the writer thread; dropping it flushes what is queued.
#[must_use = "logs are flushed when the guard drops: keep it until exit"]
pub struct LogGuard(#[allow(dead_code)] WorkerGuard);

/// Installs the global tracing subscriber. `RUST_LOG`, when set, wins over
/// `log.filter` so an operator can raise verbosity without editing files.
/// Colours only when standard output is a terminal.
///
/// # Errors
/// When a subscriber is already installed or the filter does not parse.
pub fn init(config: &LogConfig) -> Result<LogGuard, Box<dyn std::error::Error + Send + Sync>> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::try_new(&config.filter)?,
    };
    let ansi = std::io::stdout().is_terminal();
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .finish(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(writer)
        .with_ansi(ansi)
        // A failed write must not print (to a stderr that may be the same broken pipe).
        .log_internal_errors(false);
    match config.format {
        LogFormat::Text => builder.try_init()?,
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()?;
        }
    }
    Ok(LogGuard(guard))
}
