//! The support code itself works: etcd starts, keeps data across restarts,
//! freezes and thaws, and a cluster survives the loss of its leader.

use std::time::Duration;

use crate::support::wait::wait_for;
use crate::support::{Etcd, EtcdCluster};

#[tokio::test]
async fn etcd_keeps_data_across_kill_and_restart() {
    let mut etcd = Etcd::start().await;
    etcd.client().await.put("k", "v1", None).await.unwrap();
    etcd.kill();
    assert!(etcd.client().await.get("k", None).await.is_err(), "killed etcd must not answer");
    etcd.restart().await;
    let resp = etcd.client().await.get("k", None).await.unwrap();
    assert_eq!(resp.kvs()[0].value(), b"v1");
}

#[tokio::test]
async fn paused_etcd_does_not_answer_until_resumed() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    client.put("k", "v", None).await.unwrap();
    etcd.pause();
    let frozen = tokio::time::timeout(Duration::from_millis(500), client.get("k", None)).await;
    assert!(frozen.is_err() || frozen.unwrap().is_err(), "a paused etcd must not answer");
    etcd.resume();
    let resp = client.get("k", None).await.unwrap();
    assert_eq!(resp.kvs()[0].value(), b"v");
}

#[tokio::test]
async fn compaction_makes_old_revisions_unreadable() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let first = client.put("k", "1", None).await.unwrap().header().unwrap().revision();
    client.put("k", "2", None).await.unwrap();
    let head = etcd.revision().await;
    etcd.compact(head).await;
    let err = client.get("k", Some(etcd_client::GetOptions::new().with_revision(first))).await.unwrap_err();
    assert!(err.to_string().contains("compacted"), "{err}");
}

#[tokio::test]
async fn cluster_elects_a_new_leader_when_the_leader_dies() {
    let mut cluster = EtcdCluster::start().await;
    let old = wait_for("the cluster has a leader", Duration::from_secs(15), || cluster.leader()).await;
    cluster.members[0].client().await.put("k", "v", None).await.unwrap();
    cluster.members[old].kill();
    let new_leader = wait_for("a new leader is elected", Duration::from_secs(15), || async {
        cluster.leader().await.filter(|l| *l != old)
    })
    .await;
    let survivor = &cluster.members[new_leader];
    let resp = survivor.client().await.get("k", None).await.unwrap();
    assert_eq!(resp.kvs()[0].value(), b"v", "data survives the leader's death");
}
