//! The demo's setup: a fresh etcd seeded by `scripts/demo-data.sh` and a
//! gateway serving its `apps` and `infra` namespaces, as `scripts/demo.sh`
//! runs them.

use etcd_cache_gateway::config::NamespaceConfig;

use super::{Etcd, Gateway};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// etcd with the demo data, and a ready gateway over it.
pub async fn start() -> (Etcd, Gateway) {
    let etcd = Etcd::start().await;
    let seeded = tokio::process::Command::new("bash")
        .arg(format!("{ROOT}/scripts/demo-data.sh"))
        .arg(etcd.endpoint())
        .status()
        .await
        .unwrap();
    assert!(seeded.success(), "scripts/demo-data.sh failed");
    assert_eq!(
        etcd.revision().await,
        41,
        "the README's revisions are those of the demo data on a fresh etcd"
    );
    let mut config = Gateway::config(&[etcd.endpoint()]);
    config.namespaces = ["apps", "infra"]
        .iter()
        .map(|name| NamespaceConfig {
            name: (*name).into(),
            prefix: format!("{name}/"),
            max_subscribers: None,
        })
        .collect();
    let gateway = Gateway::start_ready(config).await;
    (etcd, gateway)
}
