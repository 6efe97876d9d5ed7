//! One etcd, one gateway serving namespace `app` on the prefix `app/`, and
//! clients of both; comparisons of the client's view with etcd's own.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_cache_gateway::config::Config;
use etcd_cache_gateway_client::{Client, KeyValue, Mirror, Revision};
use etcd_client::GetOptions;

use crate::support::{Etcd, Gateway};

/// The namespace every test reads, and its etcd prefix.
pub const NS: &str = "app";
/// The etcd prefix of [`NS`].
pub const PREFIX: &str = "app/";
/// Bound on every wait for the client to catch up.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running etcd and gateway, with a client of each.
pub struct Setup {
    /// The etcd process.
    pub etcd: Etcd,
    /// The gateway.
    pub gateway: Gateway,
    /// The client under test, pointed at the gateway.
    pub client: Client,
    /// A client of etcd itself, for writes and the reference state.
    pub etcd_client: etcd_client::Client,
}

/// The gateway's config for `etcd`, with namespace [`NS`].
pub fn config(etcd: &Etcd) -> Config {
    Gateway::config_with_namespace(&[etcd.endpoint()], NS, PREFIX)
}

impl Setup {
    /// etcd, then the gateway with the default test config.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// etcd, then the gateway with the test config changed by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let etcd = Etcd::start().await;
        let mut config = config(&etcd);
        adjust(&mut config);
        let gateway = Gateway::start_ready(config).await;
        let client = Client::new(gateway.base_url.clone()).expect("client");
        let etcd_client = etcd.client().await;
        Self { etcd, gateway, client, etcd_client }
    }

    /// Puts `app/<key>`; the revision of the write.
    pub async fn put(&mut self, key: &str, value: impl AsRef<[u8]>) -> Revision {
        put(&mut self.etcd_client, key, value).await
    }

    /// Deletes `app/<key>`; the revision of the delete.
    pub async fn delete(&mut self, key: &str) -> Revision {
        delete(&mut self.etcd_client, key).await
    }
}

/// Puts `app/<key>` in etcd; the revision of the write.
pub async fn put(etcd: &mut etcd_client::Client, key: &str, value: impl AsRef<[u8]>) -> Revision {
    crate::support::etcd::put(etcd, format!("{PREFIX}{key}"), value).await
}

/// Deletes `app/<key>` in etcd; the revision of the delete.
pub async fn delete(etcd: &mut etcd_client::Client, key: &str) -> Revision {
    let resp = etcd.delete(format!("{PREFIX}{key}"), None).await.expect("delete");
    resp.header().expect("header").revision()
}

/// A key-value in comparable form: key, value, create and mod revision,
/// version, lease.
pub type Row = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);

/// etcd's state of `PREFIX` + `relative_prefix` at `revision`, keyed by the
/// key relative to the namespace.
pub async fn etcd_state(
    client: &mut etcd_client::Client,
    relative_prefix: &str,
    revision: Revision,
) -> BTreeMap<Vec<u8>, Row> {
    let prefix = format!("{PREFIX}{relative_prefix}");
    let resp = client
        .get(prefix, Some(GetOptions::new().with_prefix().with_revision(revision)))
        .await
        .expect("etcd range");
    resp.kvs()
        .iter()
        .map(|kv| {
            let key = kv.key()[PREFIX.len()..].to_vec();
            let row = (
                key.clone(),
                kv.value().to_vec(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease(),
            );
            (key, row)
        })
        .collect()
}

/// A client key-value in comparable form.
pub fn row(kv: &KeyValue) -> Row {
    let value = kv.value_bytes().expect("a value of bytes").to_vec();
    (kv.key.to_vec(), value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
}

/// Asserts that the mirror's state equals etcd's at the mirror's revision,
/// key by key (every key, value and metadata).
pub async fn assert_mirror_equals_etcd(
    mirror: &Mirror,
    etcd: &mut etcd_client::Client,
    relative_prefix: &str,
) {
    let snapshot = mirror.snapshot();
    let expected = etcd_state(etcd, relative_prefix, snapshot.revision()).await;
    let actual: BTreeMap<Vec<u8>, Row> = snapshot.iter().map(|kv| (kv.key.to_vec(), row(kv))).collect();
    for (key, want) in &expected {
        assert_eq!(
            actual.get(key),
            Some(want),
            "key {:?} at revision {}",
            String::from_utf8_lossy(key),
            snapshot.revision()
        );
    }
    assert_eq!(actual, expected, "the mirror at revision {} holds exactly etcd's keys", snapshot.revision());
}
