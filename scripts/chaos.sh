#!/usr/bin/env bash
# The long chaos run: the chaos suite (tests/chaos) over many seeds, each
# with a longer time under faults than the short form in the test suite.
# Prints every seed's figures and the totals (the figures of RELIABILITY.md)
# and keeps the whole output in a log. Exits non-zero when the checker
# finds anything.
#
#   scripts/chaos.sh                               # 12 random seeds, 45 s of faults each
#   CHAOS_SEEDS=20 CHAOS_DURATION=60 scripts/chaos.sh
#   CHAOS_SEED=123456,789 scripts/chaos.sh         # replay seeds printed by a run
#
# Also: CHAOS_SUBSCRIBERS (12), CHAOS_WRITERS (2), CHAOS_READERS (3),
# ETCD_BIN (Debian's etcd 3.4), CHAOS_LOG (where the log goes).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
ensure_build_tools

export ETCD_BIN="${ETCD_BIN:-$DEBIAN_ETCD}"
export CHAOS_SEEDS="${CHAOS_SEEDS:-12}"
export CHAOS_DURATION="${CHAOS_DURATION:-45}"
# The gateways run in-process: their warnings (every fault logs some) would
# drown the figures.
export RUST_LOG="${RUST_LOG:-off}"
log="${CHAOS_LOG:-target/chaos-$(date -u +%Y%m%dT%H%M%SZ).log}"
mkdir -p "$(dirname "$log")"
began=$(date +%s)
status=0
cargo test --test chaos chaos_seeds -- --nocapture --test-threads=1 2>&1 | tee "$log" || status=$?
echo "wall time: $(($(date +%s) - began)) s; log: $log"
exit "$status"
