"""The PyPI etcd3gw client against the gateway's etcd JSON API.

Usage: python etcd3gw_scenarios.py HOST PORT
Prints "ok <scenario>" per passed scenario; any failure raises (exit 1).
The caller bounds the run's time (a watch that never delivers blocks).
"""

import sys

import etcd3gw

host, port = sys.argv[1], int(sys.argv[2])
client = etcd3gw.client(host=host, port=port, timeout=10)


def ok(name):
    print("ok", name, flush=True)


# get: a key put through the gateway (forwarded) reads back from the cache.
assert client.put("/app/config", "v1") is True
assert client.get("/app/config") == [b"v1"], client.get("/app/config")
value, meta = client.get("/app/config", metadata=True)[0]
assert value == b"v1" and meta["key"] == b"/app/config" and meta["version"] == "1", meta
assert client.get("/app/missing") == []
ok("get")

# prefix get, in key order, with metadata.
client.put("/app/svc/a", "1")
client.put("/app/svc/b", "2")
client.put("/app/svcx", "outside the prefix")
pairs = client.get_prefix("/app/svc/")
assert [(v, m["key"]) for v, m in pairs] == [(b"1", b"/app/svc/a"), (b"2", b"/app/svc/b")], pairs
assert client.get("/app/svc/", range_end="/app/svc0", count_only=True) == []
ok("prefix get")

# put: a second version, with create/mod revisions as etcd keeps them.
client.put("/app/config", "v2")
value, meta = client.get("/app/config", metadata=True)[0]
assert value == b"v2" and meta["version"] == "2" and meta["mod_revision"] > meta["create_revision"], meta
ok("put")

# delete: a key, then a prefix.
assert client.delete("/app/config") is True
assert client.get("/app/config") == []
assert client.delete("/app/config") is False
assert client.delete_prefix("/app/svc/") is True
assert client.get_prefix("/app/svc/") == []
ok("delete")

# leases: grant, attach, time to live, keys, keep-alive, revoke (the key goes).
lease = client.lease(ttl=60)
client.put("/app/leased", "x", lease=lease)
assert 0 < lease.ttl() <= 60, lease.ttl()
assert lease.keys() == [b"/app/leased"], lease.keys()
assert 0 < lease.refresh() <= 60
assert lease.revoke() is True
assert client.get("/app/leased") == []
ok("leases")

# watch: events as they happen.
events, cancel = client.watch_prefix("/app/w/")
client.put("/app/w/1", "one")
client.delete("/app/w/1")
first, second = next(events), next(events)
assert first["kv"]["key"] == b"/app/w/1" and first["kv"]["value"] == b"one", first
assert second.get("type") == "DELETE" and second["kv"]["key"] == b"/app/w/1", second
cancel()
ok("watch")

# watch from a revision: history first, then what comes next.
client.put("/app/h/1", "a")
start = int(client.get("/app/h/1", metadata=True)[0][1]["mod_revision"])
client.put("/app/h/1", "b")
client.put("/app/h/2", "c")
events, cancel = client.watch_prefix("/app/h/", start_revision=start, prev_kv=True)
seen = [next(events) for _ in range(3)]
assert [(e["kv"]["key"], e["kv"]["value"]) for e in seen] == [
    (b"/app/h/1", b"a"), (b"/app/h/1", b"b"), (b"/app/h/2", b"c")], seen
assert [int(e["kv"]["mod_revision"]) for e in seen][0] == start
client.put("/app/h/3", "d")
live = next(events)
assert live["kv"]["key"] == b"/app/h/3" and live["kv"]["value"] == b"d", live
cancel()
ok("watch from revision")
