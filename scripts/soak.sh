#!/usr/bin/env bash
# The soak: the gateway binary in front of a 3-node etcd cluster for a long
# time under a steady write rate, many subscribers, compaction every 200 ms
# and a fault every minute; prints the gateway's RSS each minute, at the
# start (after a warm-up) and at the end, with jemalloc's figures (heap
# allocated/active/resident/metadata, from /metrics) and the gateway's CPU
# time. Parameters by environment (the gateway inherits the rest of it, so
# e.g. _RJEM_MALLOC_CONF=dirty_decay_ms:10000 soaks other allocator options):
#
#   scripts/soak.sh                                # 30 min, 1000 subscribers, 200 writes/s
#   SOAK_SECONDS=300 SOAK_SUBSCRIBERS=200 SOAK_FAULT_EVERY=20 scripts/soak.sh
#
# Also: SOAK_WRITES_PER_SEC (200), SOAK_WARMUP (seconds before the start
# figure; default a sixth of the run, at most 120), SOAK_SEED, ETCD_BIN,
# SOAK_LOG.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
ensure_build_tools

export ETCD_BIN="${ETCD_BIN:-$DEBIAN_ETCD}"
export RUST_LOG="${RUST_LOG:-off}"
# 1000 streams hold 1000 sockets in this process and 1000 in the gateway.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log="${SOAK_LOG:-target/soak-$(date -u +%Y%m%dT%H%M%SZ).log}"
mkdir -p "$(dirname "$log")"
began=$(date +%s)
status=0
# Release: the RSS that matters is that of the binary users deploy, and a
# debug gateway's CPU would cap the rate being soaked.
cargo test --release --test chaos soak -- --ignored --nocapture 2>&1 | tee "$log" || status=$?
echo "wall time: $(($(date +%s) - began)) s; log: $log"
exit "$status"
