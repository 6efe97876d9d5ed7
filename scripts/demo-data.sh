#!/usr/bin/env bash
# Seeds the demo data into a fresh etcd: every kind of key the README's
# examples use, written in a fixed order, so on a fresh etcd (revision 1)
# every revision below is what the README says it is. Used by demo.sh and by
# the README walk-through test.
#
#   scripts/demo-data.sh http://127.0.0.1:2379
#
# Revisions on a fresh etcd:
#   2-25   apps/services/svc-01 .. svc-24   JSON, labels.tier frontend|backend|data
#   26     apps/config/log-level = info      (changed at 41)
#   27     apps/config/feature-flags         JSON
#   28     apps/config/motd                  text
#   29     apps/config/empty                 empty value
#   30     apps/blobs/logo.png               binary value
#   31     apps/\xff\xfe                     a key that is not UTF-8
#   32-39  infra/nodes/node-1 .. node-8      JSON
#   40     infra/dns/upstream                text
#   41     apps/config/log-level = debug
set -euo pipefail
endpoint="${1:?usage: demo-data.sh ETCD_URL}"
export ETCDCTL_API=3
ctl() { etcdctl --endpoints="$endpoint" "$@" >/dev/null; }

tiers=(frontend backend backend data)
for i in $(seq 1 24); do
  tier=${tiers[$((i % 4))]}
  ctl put "apps/services/svc-$(printf %02d "$i")" \
    "{\"name\":\"svc-$i\",\"port\":$((8000 + i)),\"replicas\":$((i % 3 + 1)),\"labels\":{\"tier\":\"$tier\"}}"
done
ctl put "apps/config/log-level" "info"
ctl put "apps/config/feature-flags" '{"new_ui":true,"beta":false}'
ctl put "apps/config/motd" "Welcome to the etcd-cache-gateway demo"
ctl put "apps/config/empty" ""
printf '\x89PNG\r\n\x1a\n\x00\x00\xff' | ctl put "apps/blobs/logo.png"
ctl put "$(printf 'apps/\xff\xfe')" "a key that is not UTF-8"
for i in $(seq 1 8); do
  ctl put "infra/nodes/node-$i" "{\"zone\":\"zone-$((i % 3))\",\"ready\":true}"
done
ctl put "infra/dns/upstream" "9.9.9.9"
ctl put "apps/config/log-level" "debug"
