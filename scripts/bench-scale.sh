#!/usr/bin/env bash
# Scale benchmark (BENCHMARKS.md "Scale"): everything against a baseline
# measured in the same run, medians of ROUNDS.
#
#   1. Bootstrap: N keys (31-byte keys, 100-byte values) loaded into etcd;
#      time for `etcdctl get --prefix` to return them all, against the time
#      from the gateway's start to /readyz (the namespace fully loaded).
#   2. Memory: the gateway's RSS once ready, minus the RSS of a gateway
#      serving an empty namespace, per key; and the history's bytes.
#   3. History bound: gateways follow a load of HISTORY_KEYS keys (128 puts
#      per revision) through their watch, one with the default window only
#      (history_revisions = 10000, i.e. every event of the load) and one
#      bounded by HISTORY_BYTES: RSS growth and the history's own figures.
#   4. Watch throughput: W watchers on one prefix, directly on etcd (one
#      gRPC connection each) and as SSE subscribers of the gateway, while
#      20,000 puts go through etcd: events delivered per second, the
#      writer's rate, CPU per delivered event (benches/scale.rs).
#
#   scripts/bench-scale.sh                       # 100k and 1M keys; 10, 100, 1000 watchers
#   KEYS="100000" WATCHERS="10 100" ROUNDS=1 scripts/bench-scale.sh
#   PARTS="bootstrap" scripts/bench-scale.sh     # or "history", "watch"
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
ensure_build_tools
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

keys_list="${KEYS:-100000 1000000}"
watchers_list="${WATCHERS:-10 100 1000}"
rounds="${ROUNDS:-3}"
parts="${PARTS:-bootstrap history watch}"
etcd_bin="${ETCD_BIN:-$DEBIAN_ETCD}"

echo "==> building (release)"
cargo build --release --quiet
cargo bench --bench scale --no-run --quiet 2>/dev/null
tool() { cargo bench --bench scale --quiet 2>/dev/null; }
dir=$(mktemp -d -t etcd-cache-gateway-scale.XXXXXX)
trap 'stop_all_and_remove "$dir"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
now() { date +%s.%N; }
calc() { awk "BEGIN {print $*}"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# start_etcd_big NAME: a fresh etcd with room for a million keys; sets etcd_url, etcd_pid.
start_etcd_big() {
  local port peer
  port=$(free_port); peer=$(free_port)
  etcd_url="http://127.0.0.1:${port}"
  "$etcd_bin" --name "$1" --data-dir "$dir/$1" --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$1=http://127.0.0.1:$peer" --quota-backend-bytes=8589934592 \
    --logger=zap --log-outputs="$dir/$1.log" &
  etcd_pid=$!
  bg_pids="$bg_pids $etcd_pid"
  for _ in $(seq 1 100); do curl -fsS "${etcd_url}/health" >/dev/null 2>&1 && break; sleep 0.1; done
}

# start_gateway NAME PREFIX [EXTRA_TOML]: a release gateway serving PREFIX as
# namespace `default`; sets gw_url, gw_pid, gw_started (its start time).
start_gateway() {
  local port
  port=$(free_port)
  gw_url="http://127.0.0.1:${port}"
  cat >"$dir/$1.toml" <<TOML
listen = "127.0.0.1:${port}"
[etcd]
endpoints = ["${etcd_url}"]
max_message_bytes = "256MiB"
[[namespaces]]
name = "default"
prefix = "$2"
[watch]
max_subscribers = 20000
max_subscribers_per_namespace = 20000
[log]
filter = "error"
${3:-}
TOML
  gw_started=$(now)
  "${CARGO_TARGET_DIR:-target}/release/etcd-cache-gateway" --config "$dir/$1.toml" &
  gw_pid=$!
  bg_pids="$bg_pids $gw_pid"
}

# wait_ready: polls /readyz every 10 ms; prints seconds since gw_started.
wait_ready() {
  for _ in $(seq 1 60000); do
    if curl -fsS "${gw_url}/readyz" >/dev/null 2>&1; then
      calc "$(now) - $gw_started"
      return
    fi
    kill -0 "$gw_pid" 2>/dev/null || { echo "the gateway exited" >&2; exit 1; }
    sleep 0.01
  done
  echo "the gateway did not become ready" >&2
  exit 1
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

bootstrap() {
  local n=$1 round etcdctl_times="" gw_times="" rss="" t empty_rss
  start_etcd_big "etcd-$n"
  echo "==> $("$etcd_bin" --version | head -1): loading $n keys"
  SCALE_MODE=load SCALE_ETCD="$etcd_url" SCALE_PREFIX="scale/" SCALE_KEYS="$n" tool
  # A gateway over an empty prefix: the RSS every gateway has.
  start_gateway "empty-$n" "empty/"
  wait_ready >/dev/null
  empty_rss=$(rss_kib "$gw_pid")
  stop "$gw_pid"
  for round in $(seq 1 "$rounds"); do
    t=$(now)
    ETCDCTL_API=3 etcdctl --endpoints="$etcd_url" get --prefix "scale/" >/dev/null
    etcdctl_times+="$(calc "$(now) - $t") "
    start_gateway "gw-$n-$round" "scale/"
    gw_times+="$(wait_ready) "
    [ "$(curl -fsS "${gw_url}/v1/namespaces/default/kv?count_only=true" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')" = "$n" ] || { echo "wrong key count" >&2; exit 1; }
    rss+="$(( $(rss_kib "$gw_pid") - empty_rss )) "
    stop "$gw_pid"
  done
  local e g r
  e=$(tr ' ' '\n' <<<"$etcdctl_times" | grep -v '^$' | median)
  g=$(tr ' ' '\n' <<<"$gw_times" | grep -v '^$' | median)
  r=$(tr ' ' '\n' <<<"$rss" | grep -v '^$' | median)
  printf 'bootstrap: keys=%d etcdctl_s=[%s] median=%.2f gateway_ready_s=[%s] median=%.2f ratio=%.2f\n' \
    "$n" "$etcdctl_times" "$e" "$gw_times" "$g" "$(calc "$g / $e")"
  printf 'memory: keys=%d rss_over_empty_kib=[%s] median=%d bytes_per_key=%.0f raw_bytes_per_key=131 ratio=%.2f\n' \
    "$n" "$rss" "$r" "$(calc "$r * 1024 / $n")" "$(calc "$r * 1024 / $n / 131")"
  stop "$etcd_pid"
}

# metric NAME: the gateway's gauge NAME for namespace default.
metric() {
  curl -fsS "${gw_url}/metrics" | awk -v m="etcd_cache_gateway_$1{namespace=\"default\"}" '$1 == m {print $2}'
}

history() {
  local n="${HISTORY_KEYS:-1000000}" bound="${HISTORY_BYTES:-64MiB}" label toml before head
  start_etcd_big "etcd-history"
  for label in unbounded bounded; do
    toml="[cache]"$'\n'"max_history_bytes = \"1TiB\""
    [ "$label" = bounded ] && toml="[cache]"$'\n'"max_history_bytes = \"$bound\""
    start_gateway "gw-history-$label" "history-$label/" "$toml"
    wait_ready >/dev/null
    before=$(rss_kib "$gw_pid")
    SCALE_MODE=load SCALE_ETCD="$etcd_url" SCALE_PREFIX="history-$label/" SCALE_KEYS="$n" tool
    head=$(ETCDCTL_API=3 etcdctl --endpoints="$etcd_url" get x -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
    for _ in $(seq 1 6000); do
      [ "$(metric revision)" -ge "$head" ] 2>/dev/null && break
      sleep 0.05
    done
    [ "$(metric revision)" -ge "$head" ] || { echo "the gateway did not follow the load" >&2; exit 1; }
    printf 'history: %s keys=%d max_history_bytes=%s rss_growth_mib=%.0f history_bytes_mib=%.1f history_entries=%s\n' \
      "$label" "$n" "$( [ "$label" = bounded ] && echo "$bound" || echo unbounded)" \
      "$(calc "($(rss_kib "$gw_pid") - $before) / 1024")" "$(calc "$(metric history_bytes) / 1048576")" "$(metric history_entries)"
    stop "$gw_pid"
  done
  stop "$etcd_pid"
}

watch() {
  local w target
  start_etcd_big "etcd-watch"
  start_gateway "gw-watch" ""
  wait_ready >/dev/null
  echo "==> watch throughput: $("$etcd_bin" --version | head -1)"
  for w in $watchers_list; do
    for target in none etcd gateway; do
      SCALE_MODE=watch SCALE_TARGET=$target SCALE_WATCHERS="$w" SCALE_EVENTS="${EVENTS:-20000}" \
        SCALE_ETCD="$etcd_url" SCALE_GATEWAY="$gw_url" SCALE_ETCD_PID="$etcd_pid" SCALE_GATEWAY_PID="$gw_pid" tool
    done
  done
  stop "$gw_pid"
  stop "$etcd_pid"
}

for part in $parts; do
  case "$part" in
    bootstrap) for n in $keys_list; do bootstrap "$n"; done ;;
    history) history ;;
    watch) watch ;;
    *) echo "unknown part $part" >&2; exit 1 ;;
  esac
done
