//! Process shutdown: one [`CancellationToken`] reaches the server, every
//! reflector and every SSE stream.

use tokio_util::sync::CancellationToken;

/// Returns a token that is cancelled on the first SIGINT or SIGTERM.
///
/// # Panics
/// If the signal handlers cannot be installed (only at startup).
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("install SIGTERM handler")
                .recv()
                .await;
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        // Cancel first, log second: shutting down must not depend on the log
        // output working.
        let signal = tokio::select! {
            _ = ctrl_c => "SIGINT",
            () = term => "SIGTERM",
        };
        cancel.cancel();
        tracing::info!(signal, "shutting down");
    });
    token
}
