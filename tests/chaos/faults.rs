//! The fault schedule, drawn from the seed, and its injection into the
//! etcd cluster, the relays between each replica and etcd, and the replicas.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use etcd_cache_gateway::config::Config;

use crate::support::metrics::{Samples, parse};
use crate::support::{EtcdCluster, Gateway, Proxy};

/// Every kind of fault (compaction runs on its own, every 200 ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `kill -9` of the leader, restarted after a pause.
    KillLeader,
    /// `kill -9` of a follower, restarted after a pause.
    KillFollower,
    /// SIGSTOP of the leader past the election timeout (500 ms), then SIGCONT.
    PauseLeader,
    /// The relays of one replica stop forwarding (connections stay open).
    RelayStall,
    /// The relays of one replica close every connection and refuse new ones.
    RelayDrop,
    /// The relays of one replica reset (RST) every connection.
    RelayReset,
    /// One replica shut down gracefully (as on SIGTERM) and started again on its port.
    GatewayRestart,
}

/// Every kind, in a fixed order.
pub const KINDS: [Kind; 7] = [
    Kind::KillLeader,
    Kind::KillFollower,
    Kind::PauseLeader,
    Kind::RelayStall,
    Kind::RelayDrop,
    Kind::RelayReset,
    Kind::GatewayRestart,
];

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Kind::KillLeader => "kill -9 leader",
            Kind::KillFollower => "kill -9 follower",
            Kind::PauseLeader => "SIGSTOP leader",
            Kind::RelayStall => "relay stall",
            Kind::RelayDrop => "relay drop",
            Kind::RelayReset => "relay reset",
            Kind::GatewayRestart => "gateway restart",
        };
        f.write_str(name)
    }
}

/// One scheduled fault.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Quiet time before it.
    pub before: Duration,
    /// What.
    pub kind: Kind,
    /// How long it lasts (down, frozen, stalled); unused by a reset.
    pub length: Duration,
    /// Which replica (relay faults, restarts).
    pub replica: usize,
}

/// The schedule of a seed: rounds of every kind (`kinds`) in a shuffled order.
pub fn schedule(rng: &mut fastrand::Rng, kinds: &[Kind], replicas: usize, rounds: usize) -> Vec<Fault> {
    let mut out = Vec::new();
    for _ in 0..rounds {
        let mut round = kinds.to_vec();
        rng.shuffle(&mut round);
        for kind in round {
            let length = match kind {
                Kind::PauseLeader => rng.u64(800..2000),
                Kind::RelayStall => rng.u64(500..4000),
                Kind::RelayReset => 0,
                _ => rng.u64(200..1500),
            };
            out.push(Fault {
                before: Duration::from_millis(rng.u64(200..1200)),
                kind,
                length: Duration::from_millis(length),
                replica: rng.usize(..replicas),
            });
        }
    }
    out
}

/// One replica: its relays to the etcd members and the gateway behind them.
pub struct Replica {
    /// One relay per etcd member.
    pub relays: Vec<Proxy>,
    /// Its config.
    pub config: Config,
    /// Its fixed address.
    pub addr: SocketAddr,
    /// The running gateway (none while restarting).
    pub gateway: Option<Gateway>,
    /// Metrics of earlier lives, summed.
    pub past: Vec<Samples>,
}

impl Replica {
    /// Scrapes the gateway's metrics (None if it does not answer).
    pub async fn scrape(&self) -> Option<Samples> {
        let gw = self.gateway.as_ref()?;
        let text = reqwest::get(gw.url("/metrics")).await.ok()?.text().await.ok()?;
        Some(parse(&text))
    }
}

/// Injects `fault`; returns once the system is whole again.
pub async fn inject(
    fault: &Fault,
    cluster: &mut EtcdCluster,
    replicas: &mut [Replica],
) -> Result<(), String> {
    match fault.kind {
        Kind::KillLeader | Kind::KillFollower | Kind::PauseLeader => {
            let leader = leader(cluster).await?;
            let target =
                if fault.kind == Kind::KillFollower { (leader + 1 + fault.replica % 2) % 3 } else { leader };
            let member = &mut cluster.members[target];
            if fault.kind == Kind::PauseLeader {
                member.pause();
                tokio::time::sleep(fault.length).await;
                member.resume();
            } else {
                member.kill();
                tokio::time::sleep(fault.length).await;
                member.restart().await;
            }
        }
        Kind::RelayStall | Kind::RelayDrop | Kind::RelayReset => {
            let relays = &replicas[fault.replica].relays;
            for relay in relays {
                match fault.kind {
                    Kind::RelayStall => relay.stall(),
                    Kind::RelayDrop => relay.cut(),
                    _ => relay.reset(),
                }
            }
            tokio::time::sleep(fault.length).await;
            relays.iter().for_each(Proxy::restore);
        }
        Kind::GatewayRestart => {
            let replica = &mut replicas[fault.replica];
            if let Some(samples) = replica.scrape().await {
                replica.past.push(samples);
            }
            if let Some(gw) = replica.gateway.take() {
                gw.shutdown().await;
            }
            tokio::time::sleep(fault.length).await;
            replica.gateway = Some(Gateway::start_on(replica.config.clone(), replica.addr).await);
        }
    }
    Ok(())
}

/// The leader's index, waiting (bounded) for an election to end.
async fn leader(cluster: &EtcdCluster) -> Result<usize, String> {
    for _ in 0..100 {
        if let Some(i) = cluster.leader().await {
            return Ok(i);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("no etcd leader within 10 s".into())
}

/// Sums a counter family by one label over samples.
pub fn by_label(samples: &[Samples], name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in samples {
        for ((n, labels), v) in s {
            if n == name {
                *out.entry(labels.get(label).cloned().unwrap_or_default()).or_default() += v;
            }
        }
    }
    out
}
