#!/usr/bin/env bash
# HTTP benchmark: the gateway against etcd's own JSON gateway (POST
# /v3/kv/range on the same etcd), measured in the same run with wrk.
# Prints requests/s per round, the medians, and the ratios.
#
#   scripts/bench.sh                  # 3 rounds of 10 s per case
#   ROUNDS=5 DURATION=20s scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
ensure_build_tools
ensure_tools wrk:wrk

rounds="${ROUNDS:-3}"
duration="${DURATION:-10s}"
connections="${CONNECTIONS:-32}"
keys="${KEYS:-1000}"

cargo build --release --quiet
dir=$(mktemp -d -t etcd-cache-gateway-bench.XXXXXX)
trap 'stop_all_and_remove "$dir"' EXIT

etcd_port=$(free_port); peer_port=$(free_port); gw_port=$(free_port)
etcd_url="http://127.0.0.1:${etcd_port}"
start_etcd bench "$dir/etcd" "$etcd_port" "$peer_port" "$dir/etcd.log"
bg_pids="$bg_pids $!"
export ETCDCTL_API=3
for _ in $(seq 1 100); do etcdctl --endpoints="$etcd_url" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done

echo "==> seeding ${keys} keys with 100-byte JSON values"
python3 - "$keys" >"$dir/seed.txt" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    value = '{"id":%d,"payload":"%s"}' % (i, "x" * (100 - 22 - len(str(i))))
    print('put bench/key-%05d \'%s\'' % (i, value))
PY
# Plain puts, eight at a time.
sed "s/^put //; s/'//g" "$dir/seed.txt" | tr ' ' '\t' |
  xargs -P 8 -L 1 -d '\n' sh -c 'etcdctl --endpoints="$0" put "$(printf %s "$1" | cut -f1)" "$(printf %s "$1" | cut -f2)" >/dev/null' "$etcd_url"

# Two gateways: the default one, and one without the rendered-page cache
# (every listing rendered afresh) to show what the page cache adds.
gw_nocache_port=$(free_port)
for variant in "${gw_port}:64MiB" "${gw_nocache_port}:0"; do
  port=${variant%%:*}
  cat >"$dir/gateway-${port}.toml" <<TOML
listen = "127.0.0.1:${port}"
[etcd]
endpoints = ["${etcd_url}"]
[http]
page_cache_bytes = "${variant#*:}"
[log]
filter = "warn"
TOML
  ./target/release/etcd-cache-gateway --config "$dir/gateway-${port}.toml" &
  bg_pids="$bg_pids $!"
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:${port}/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
done

b64() { printf '%s' "$1" | base64 -w0; }
mid=$(printf 'bench/key-%05d' $((keys / 2)))
lua() { # lua FILE BODY: a wrk script POSTing BODY as JSON
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' "$2" >"$1"
}
lua "$dir/point.lua" "'{\"key\":\"$(b64 "$mid")\"}'"
lua "$dir/list.lua" "'{\"key\":\"$(b64 bench/)\",\"range_end\":\"$(b64 bench0)\",\"limit\":100}'"

# Sanity: both sides answer the same data.
curl -fsS "http://127.0.0.1:${gw_port}/v1/namespaces/default/kv/${mid}" | grep -q "\"key\":\"${mid}\""
curl -fsS -X POST -d "{\"key\":\"$(b64 "$mid")\"}" "${etcd_url}/v3/kv/range" | grep -q '"count":"1"'

rps() { # rps URL [SCRIPT]: requests/s of one wrk run
  local args=(-t2 "-c${connections}" "-d${duration}" --latency)
  [ -n "${2:-}" ] && args+=(-s "$2")
  wrk "${args[@]}" "$1" | awk '/Requests\/sec/ {print $2}'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

declare -A results
for round in $(seq 1 "$rounds"); do
  results[gw_point]+="$(rps "http://127.0.0.1:${gw_port}/v1/namespaces/default/kv/${mid}") "
  results[etcd_point]+="$(rps "${etcd_url}/v3/kv/range" "$dir/point.lua") "
  results[gw_list]+="$(rps "http://127.0.0.1:${gw_port}/v1/namespaces/default/kv?prefix=bench/&limit=100") "
  results[etcd_list]+="$(rps "${etcd_url}/v3/kv/range" "$dir/list.lua") "
  results[gw_list_nocache]+="$(rps "http://127.0.0.1:${gw_nocache_port}/v1/namespaces/default/kv?prefix=bench/&limit=100") "
  echo "round ${round} done" >&2
done

echo
echo "== requests/s (wrk -t2 -c${connections} -d${duration}, ${rounds} rounds, $(nproc) cores)"
for case in gw_point etcd_point gw_list gw_list_nocache etcd_list; do
  m=$(tr ' ' '\n' <<<"${results[$case]}" | grep -v '^$' | median)
  declare "median_${case}=${m}"
  printf '%-11s rounds: %-40s median: %s\n' "$case" "${results[$case]}" "$m"
done
awk -v a="$median_gw_point" -v b="$median_etcd_point" 'BEGIN {printf "point GET: gateway / etcd JSON gateway = %.1fx\n", a / b}'
awk -v a="$median_gw_list" -v b="$median_etcd_list" 'BEGIN {printf "100-key list: gateway / etcd JSON gateway = %.1fx\n", a / b}'
awk -v a="$median_gw_list_nocache" -v b="$median_etcd_list" 'BEGIN {printf "100-key list without the page cache: gateway / etcd JSON gateway = %.1fx\n", a / b}'
