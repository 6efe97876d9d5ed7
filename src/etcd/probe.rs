//! [`EtcdProbe`]: whether etcd has answered a real request.
//!
//! `Client::connect` succeeds even when every endpoint is dead (NOTES.md), so
//! readiness needs an answered request. The probe asks the current endpoint for its
//! status (cheap, needs no key permission) until the first success, then every [`PROBE_INTERVAL`], and records
//! the latest revision etcd reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::EtcdClient;

/// Delay between probes; short enough that `/readyz` flips within a second
/// of etcd coming up, long enough to cost etcd nothing.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Shared view of etcd's reachability.
#[derive(Debug, Default)]
pub struct EtcdProbe {
    answered: AtomicBool,
    reachable: AtomicBool,
    revision: AtomicI64,
}

impl EtcdProbe {
    /// Whether etcd has answered at least once since the gateway started.
    pub fn has_answered(&self) -> bool {
        self.answered.load(Ordering::Acquire)
    }

    /// Whether the latest probe succeeded.
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    /// The latest revision etcd reported (0 before the first answer).
    pub fn etcd_revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Probes etcd until `shutdown` is cancelled.
    pub async fn run(self: Arc<Self>, client: EtcdClient, shutdown: CancellationToken) {
        loop {
            let result = client.call(|mut c| async move { c.status().await }).await;
            match result {
                Ok(response) => {
                    if let Some(header) = response.header() {
                        self.revision.fetch_max(header.revision(), Ordering::AcqRel);
                    }
                    self.reachable.store(true, Ordering::Release);
                    if !self.answered.swap(true, Ordering::AcqRel) {
                        tracing::info!(revision = self.etcd_revision(), "etcd answered");
                    }
                }
                Err(e) => {
                    if self.reachable.swap(false, Ordering::AcqRel) || !self.has_answered() {
                        tracing::warn!(error = %e, "etcd probe failed");
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(PROBE_INTERVAL) => {}
            }
        }
    }
}
