#!/usr/bin/env bash
# The main command: runs the gateway against a throwaway local etcd seeded with
# demo data. Installs what is missing, builds release, prints curl commands.
# Ctrl-C stops both processes and removes the temporary directory.
#
#   scripts/demo.sh                 # gateway on 127.0.0.1:8080
#   DEMO_LISTEN=127.0.0.1:9090 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
ensure_build_tools

listen="${DEMO_LISTEN:-127.0.0.1:8080}"
base="http://${listen}"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# preferred_port P...: the first of the given ports that is free, else any free port.
preferred_port() {
  local p
  for p in "$@"; do
    port_in_use "$p" || { echo "$p"; return; }
  done
  free_port
}

echo "==> building (release)"
cargo build --release --quiet

dir=$(mktemp -d -t etcd-cache-gateway-demo.XXXXXX)
cleanup() {
  trap - EXIT INT TERM
  stop_all_and_remove "$dir"
  echo "demo stopped; removed $dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

client_port=$(preferred_port 2379)
peer_port=$(preferred_port 2380 $((client_port + 1)))
endpoint="http://127.0.0.1:${client_port}"
echo "==> starting etcd on ${endpoint} (data in ${dir})"
start_etcd demo "$dir/etcd" "$client_port" "$peer_port" "$dir/etcd.log"
bg_pids="$!"
export ETCDCTL_API=3
for _ in $(seq 1 100); do
  etcdctl --endpoints="$endpoint" endpoint health >/dev/null 2>&1 && break
  sleep 0.1
done

echo "==> seeding demo data"
# A fresh etcd: the revisions are the ones the README's examples use.
bash scripts/demo-data.sh "$endpoint"

cat >"$dir/gateway.toml" <<TOML
listen = "${listen}"
[etcd]
endpoints = ["${endpoint}"]
[[namespaces]]
name = "apps"
prefix = "apps/"
[[namespaces]]
name = "infra"
prefix = "infra/"
[http]
cors_origins = ["*"]
TOML

echo "==> starting the gateway on ${base}"
"${CARGO_TARGET_DIR:-target}/release/etcd-cache-gateway" --config "$dir/gateway.toml" &
gateway_pid=$!
# The gateway stops first: it ends its streams while etcd is still up.
bg_pids="$gateway_pid $bg_pids"
for _ in $(seq 1 100); do
  curl -fsS "${base}/readyz" >/dev/null 2>&1 && break
  kill -0 "$gateway_pid" 2>/dev/null || { echo "the gateway exited" >&2; exit 1; }
  sleep 0.1
done

revision=$(etcdctl --endpoints="$endpoint" get --prefix "" --limit=1 -w fields | awk '/"Revision"/ {print $3}')
cat <<TXT

etcd-cache-gateway is running on ${base} (etcd: ${endpoint}), at revision ${revision}.
Namespaces: "apps" (etcd prefix apps/) and "infra" (etcd prefix infra/).
The gateway only reads: write with etcdctl, and watch the gateway follow.
Web UI: open ${base}/ in a browser (live tree, values, event log, time travel).

Paste this first; the README's examples use it:
  export GW=${base}

Revisions in the demo data (the README's examples use them):
  26  apps/config/log-level was "info"      (?revision=26 shows it)
  28  apps/config/motd last changed          (its ETag is "28")
  41  apps/config/log-level became "debug"   (?min_revision=41 waits for it)

Read:
  curl -s \$GW/v1/namespaces
  curl -s \$GW/v1/namespaces/apps/kv/config/motd
  curl -s "\$GW/v1/namespaces/apps/kv/config/feature-flags?raw=true"
  curl -s "\$GW/v1/namespaces/apps/kv?delimiter=/"
  curl -s "\$GW/v1/namespaces/apps/kv?prefix=services/&limit=5"
  curl -s "\$GW/v1/namespaces/apps/kv?prefix=services/&filter=labels.tier==backend&select=name,port"
  curl -s "\$GW/v1/namespaces/apps/kv/config/log-level?revision=26"
  curl -s "\$GW/v1/namespaces/apps/kv/%FF%FE"

Watch (leave it running, change data in another terminal):
  curl -N "\$GW/v1/namespaces/apps/watch?prefix=config/&snapshot=true"
  ETCDCTL_API=3 etcdctl --endpoints=${endpoint} put apps/config/log-level trace

In a browser (DevTools console on any page, CORS is open in the demo):
  const s = new EventSource("${base}/v1/namespaces/apps/watch"); s.addEventListener("change", e => console.log(JSON.parse(e.data)));

Health and contract:
  curl -s \$GW/readyz
  curl -s \$GW/openapi.yaml | head

Press Ctrl-C to stop etcd and the gateway and remove ${dir}.
TXT
wait "$gateway_pid"
