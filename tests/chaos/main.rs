//! The chaos suite: the gateway (one or two replicas) in front of a 3-node
//! etcd cluster under a seeded schedule of faults, with every subscriber's
//! stream and every read checked against etcd's own history.
//!
//! `cargo test --test chaos` runs the short form (a few random seeds) and
//! the checker's self-tests. Environment (read, never set):
//! - `CHAOS_SEED=a,b`: replay these seeds (printed by every run);
//! - `CHAOS_SEEDS=N`: how many random seeds (default 3);
//! - `CHAOS_DURATION=S`: seconds under faults per seed (default 12);
//! - `CHAOS_SUBSCRIBERS`, `CHAOS_WRITERS`, `CHAOS_READERS` (12, 2, 3).
//!
//! `scripts/chaos.sh` runs the long form, `scripts/soak.sh` the soak.

#[path = "../it/support/mod.rs"]
#[allow(unused_imports)] // the suites share it; this one uses a part
mod support;

mod checker;
mod checker_selftest;
mod faults;
mod oracle;
mod run;
mod soak;
mod workload;

use std::time::Duration;

use run::{Outcome, Settings};

/// A number from the environment, else `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn seeds() -> Vec<u64> {
    if let Ok(list) = std::env::var("CHAOS_SEED") {
        return list.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    }
    let mut rng = fastrand::Rng::new();
    (0..env_number("CHAOS_SEEDS", 3)).map(|_| rng.u64(..1_000_000_000)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_seeds_lose_duplicate_or_reorder_nothing_and_reads_match_etcd() {
    let settings = Settings {
        duration: Duration::from_secs(env_number("CHAOS_DURATION", 12)),
        subscribers: env_number("CHAOS_SUBSCRIBERS", 12) as usize,
        writers: env_number("CHAOS_WRITERS", 2) as usize,
        readers: env_number("CHAOS_READERS", 3) as usize,
    };
    let seeds = seeds();
    assert!(!seeds.is_empty(), "no seed to run (CHAOS_SEED or CHAOS_SEEDS)");
    let mut total = Outcome::default();
    for seed in seeds {
        let outcome = run::run(seed, &settings).await;
        println!("chaos: seed {seed} done\n{}\n", outcome.report());
        total.merge(outcome);
    }
    println!("chaos: TOTAL\n{}", total.report());
    let failures: Vec<String> = total.checked.violations.iter().take(30).map(ToString::to_string).collect();
    assert_eq!(failures, Vec::<String>::new(), "the checker found violations (seeds {:?})", total.seeds);
    assert_eq!(total.unexpected_answers, Vec::<String>::new(), "answers no fault explains");
    assert_eq!(total.harness_errors, Vec::<String>::new(), "the harness failed (seeds {:?})", total.seeds);
}
