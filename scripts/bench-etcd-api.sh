#!/usr/bin/env bash
# etcd JSON API benchmark (BENCHMARKS.md "etcd's JSON API"): 1,000 clients
# watching one prefix through `POST /v3/watch` plus a read load of
# `POST /v3/kv/range`, directly against etcd's own JSON gateway and through
# the gateway's etcd API, in the same run on the same etcd: etcd's watch
# streams (its own metrics), etcd's and the gateway's CPU, read throughput
# and latency, and the time for a put to reach every watcher
# (benches/etcd_api.rs).
#
#   scripts/bench-etcd-api.sh
#   WATCHERS=200 READ_SECONDS=5 PUTS=20 scripts/bench-etcd-api.sh
#   TOOL_PROFILE=debug scripts/bench-etcd-api.sh   # load tool from the test build
#                                                  # (the gateway is always release)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
ensure_build_tools
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

etcd_bin="${ETCD_BIN:-$DEBIAN_ETCD}"
echo "==> building (release)"
cargo build --release --quiet
if [ "${TOOL_PROFILE:-release}" = debug ]; then
  tool() { cargo test --bench etcd_api --quiet 2>/dev/null | grep -v '^$'; }
  cargo test --bench etcd_api --no-run --quiet 2>/dev/null
else
  tool() { cargo bench --bench etcd_api --quiet 2>/dev/null; }
  cargo bench --bench etcd_api --no-run --quiet 2>/dev/null
fi
dir=$(mktemp -d -t etcd-cache-gateway-etcd-api.XXXXXX)
trap 'stop_all_and_remove "$dir"' EXIT

port=$(free_port); peer=$(free_port)
etcd_url="http://127.0.0.1:${port}"
"$etcd_bin" --name bench --data-dir "$dir/etcd" --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "bench=http://127.0.0.1:$peer" --logger=zap --log-outputs="$dir/etcd.log" &
etcd_pid=$!
bg_pids="$bg_pids $etcd_pid"
for _ in $(seq 1 100); do curl -fsS "${etcd_url}/health" >/dev/null 2>&1 && break; sleep 0.1; done

gw_port=$(free_port)
gw_url="http://127.0.0.1:${gw_port}"
cat >"$dir/gateway.toml" <<TOML
listen = "127.0.0.1:${gw_port}"
[etcd]
endpoints = ["${etcd_url}"]
[watch]
max_subscribers = 20000
max_subscribers_per_namespace = 20000
[etcd_api]
enabled = true
[log]
filter = "error"
TOML
"${CARGO_TARGET_DIR:-target}/release/etcd-cache-gateway" --config "$dir/gateway.toml" &
gw_pid=$!
bg_pids="$bg_pids $gw_pid"
for _ in $(seq 1 3000); do curl -fsS "${gw_url}/readyz" >/dev/null 2>&1 && break; sleep 0.01; done

echo "==> $("$etcd_bin" --version | head -1); $(nproc) CPUs"
for serializable in 0 1; do
  for target in etcd gateway; do
    url=$etcd_url
    [ "$target" = gateway ] && url=$gw_url
    ETCD_API_TARGET="$url" ETCD_API_LABEL="$target" ETCD_API_ETCD="$etcd_url" \
      ETCD_API_ETCD_PID="$etcd_pid" ETCD_API_GATEWAY_PID="$gw_pid" ETCD_API_SERIALIZABLE="$serializable" \
      ETCD_API_WATCHERS="${WATCHERS:-1000}" ETCD_API_READERS="${READERS:-32}" \
      ETCD_API_READ_SECONDS="${READ_SECONDS:-10}" ETCD_API_PUTS="${PUTS:-50}" tool
  done
done
