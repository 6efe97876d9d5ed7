#!/usr/bin/env bash
# Fan-out benchmark: 1,000 and 10,000 SSE subscribers on one namespace of a
# release gateway against a local etcd; latency of one put to all of them,
# RSS per idle subscriber, and etcd's number of watch streams.
#
#   scripts/bench-fanout.sh            # 1000 and 10000
#   COUNTS="100 1000" scripts/bench-fanout.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
ensure_build_tools
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet
cargo bench --bench fanout --no-run --quiet 2>/dev/null
dir=$(mktemp -d -t etcd-cache-gateway-fanout.XXXXXX)
trap 'stop_all_and_remove "$dir"' EXIT

for n in ${COUNTS:-1000 10000}; do
  etcd_port=$(free_port); peer_port=$(free_port); gw_port=$(free_port)
  etcd_url="http://127.0.0.1:${etcd_port}"
  start_etcd fanout "$dir/etcd-$n" "$etcd_port" "$peer_port" "$dir/etcd-$n.log"
  etcd_pid=$!
  bg_pids="$bg_pids $etcd_pid"
  cat >"$dir/gateway-$n.toml" <<TOML
listen = "127.0.0.1:${gw_port}"
[etcd]
endpoints = ["${etcd_url}"]
[watch]
max_subscribers = 20000
max_subscribers_per_namespace = 20000
[log]
filter = "warn"
TOML
  for _ in $(seq 1 100); do curl -fsS "${etcd_url}/health" >/dev/null 2>&1 && break; sleep 0.1; done
  "${CARGO_TARGET_DIR:-target}/release/etcd-cache-gateway" --config "$dir/gateway-$n.toml" &
  gw_pid=$!
  bg_pids="$bg_pids $gw_pid"
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:${gw_port}/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  FANOUT_GATEWAY="http://127.0.0.1:${gw_port}" FANOUT_ETCD="$etcd_url" FANOUT_GATEWAY_PID="$gw_pid" \
    FANOUT_SUBSCRIBERS="$n" cargo bench --bench fanout --quiet 2>/dev/null | grep '^fanout:'
  kill "$gw_pid" "$etcd_pid"; wait "$gw_pid" "$etcd_pid" 2>/dev/null || true
done
