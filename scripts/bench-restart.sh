#!/usr/bin/env bash
# Restart benchmark (BENCHMARKS.md "Restart: every subscriber caught up from
# etcd"): SUBSCRIBERS SSE subscribers of a release gateway; the gateway is
# stopped and started again while CHANGES puts go to etcd, then every
# subscriber resumes at once with Last-Event-ID and is caught up from etcd,
# at most watch.max_catch_ups at once. One row per bound in CATCH_UPS, and a
# baseline where the gateway keeps running (benches/restart.rs).
#
#   scripts/bench-restart.sh                       # 10000 subscribers, 100 changes
#   SUBSCRIBERS=1000 CATCH_UPS="8 32" scripts/bench-restart.sh
#   GATEWAY_BIN=/tmp/old-gateway scripts/bench-restart.sh   # another binary
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
ensure_build_tools
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "==> building (release)"
cargo build --release --quiet --bin etcd-cache-gateway
cargo bench --bench restart --no-run --quiet 2>/dev/null
dir=$(mktemp -d -t etcd-cache-gateway-restart.XXXXXX)
trap 'stop_all_and_remove "$dir"' EXIT

port=$(free_port); peer=$(free_port)
start_etcd restart "$dir/etcd" "$port" "$peer" "$dir/etcd.log" "${ETCD_BIN:-$DEBIAN_ETCD}"
bg_pids="$bg_pids $!"
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:${port}/health" >/dev/null 2>&1 && break; sleep 0.1; done

RESTART_ETCD="http://127.0.0.1:${port}" RESTART_DIR="$dir" \
  RESTART_GATEWAY_BIN="$(realpath "${GATEWAY_BIN:-${CARGO_TARGET_DIR:-target}/release/etcd-cache-gateway}")" \
  RESTART_SUBSCRIBERS="${SUBSCRIBERS:-10000}" RESTART_CHANGES="${CHANGES:-100}" \
  RESTART_CATCH_UPS="${CATCH_UPS:-32 100000}" \
  cargo bench --bench restart --quiet 2>/dev/null | grep '^restart:'
