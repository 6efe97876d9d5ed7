#!/usr/bin/env bash
# Kubernetes informers benchmark (BENCHMARKS.md "Kubernetes informers"): N
# informer-style clients syncing a resource of OBJECTS objects and then
# following CHANGES updates, through the gateway's Kubernetes surface
# (WatchList) and, in the same run on the same etcd, through etcd's own JSON
# gateway (range + /v3/watch, what such a client does without the gateway).
# Reports sync times, changes delivered per second, peak RSS of the serving
# process and etcd's watcher count (benches/kube.rs).
#
#   scripts/bench-kube.sh                        # 100 and 1000 clients
#   CLIENTS="100" OBJECTS=10000 CHANGES=1000 scripts/bench-kube.sh
#   TARGETS=gateway GATEWAY_BIN=/tmp/old-gateway scripts/bench-kube.sh
#                                                # another binary, no etcd rows
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
ensure_build_tools
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

clients_list="${CLIENTS:-100 1000}"
objects="${OBJECTS:-10000}"
changes="${CHANGES:-1000}"
etcd_bin="${ETCD_BIN:-$DEBIAN_ETCD}"
targets="${TARGETS:-gateway etcd}"
gateway_bin="${GATEWAY_BIN:-${CARGO_TARGET_DIR:-target}/release/etcd-cache-gateway}"

echo "==> building (release)"
cargo build --release --quiet --bin etcd-cache-gateway
cargo bench --bench kube --no-run --quiet 2>/dev/null
tool() { cargo bench --bench kube --quiet; }
dir=$(mktemp -d -t etcd-cache-gateway-kube.XXXXXX)
trap 'stop_all_and_remove "$dir"' EXIT

port=$(free_port); peer=$(free_port)
etcd_url="http://127.0.0.1:${port}"
"$etcd_bin" --name kube --data-dir "$dir/etcd" --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "kube=http://127.0.0.1:$peer" --logger=zap --log-outputs="$dir/etcd.log" &
etcd_pid=$!
bg_pids="$bg_pids $etcd_pid"
for _ in $(seq 1 100); do curl -fsS "${etcd_url}/health" >/dev/null 2>&1 && break; sleep 0.1; done
echo "==> $("$etcd_bin" --version | head -1): loading $objects objects"
KUBE_MODE=load KUBE_ETCD="$etcd_url" KUBE_OBJECTS="$objects" tool

gw_port=$(free_port)
gw_url="http://127.0.0.1:${gw_port}"
cat >"$dir/gateway.toml" <<TOML
listen = "127.0.0.1:${gw_port}"
[etcd]
endpoints = ["${etcd_url}"]
[[namespaces]]
name = "apps"
prefix = "apps/"
[watch]
max_subscribers = 20000
max_subscribers_per_namespace = 20000
[[kubernetes.resources]]
namespace = "apps"
group = "example.com"
version = "v1"
resource = "widgets"
kind = "Widget"
key = "widgets/{namespace}/{name}"
[log]
filter = "error"
TOML
"$gateway_bin" --config "$dir/gateway.toml" &
gw_pid=$!
bg_pids="$bg_pids $gw_pid"
for _ in $(seq 1 600); do curl -fsS "${gw_url}/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

for clients in $clients_list; do
  for target in $targets; do
    case "$target" in
      gateway) pid="$gw_pid" ;;
      etcd) pid="$etcd_pid" ;;
      *) echo "TARGETS: unknown target '$target' (gateway, etcd)" >&2; exit 2 ;;
    esac
    KUBE_MODE=informers KUBE_TARGET="$target" KUBE_PID="$pid" KUBE_GATEWAY="$gw_url" KUBE_ETCD="$etcd_url" \
      KUBE_CLIENTS="$clients" KUBE_OBJECTS="$objects" KUBE_CHANGES="$changes" tool
  done
done
