"""The Python `kubernetes` client (PyPI) against the gateway's Kubernetes
surface, over TLS with a bearer token. Run by tests/it/kubernetes.rs:

    python kube_clients.py HOST CA_FILE TOKEN ETCD_ENDPOINT

The gateway serves `widgets.example.com/v1` (namespaced, keys
`apps/widgets/{namespace}/{name}`) and starts with no widget. Changes go to
etcd with etcdctl. Every check is an equality; the script prints one line
per scenario and exits non-zero on the first failure.
"""

import subprocess
import sys

import kubernetes
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

HOST, CA_FILE, TOKEN, ETCD = sys.argv[1:5]
GROUP, VERSION, PLURAL = "example.com", "v1", "widgets"


def etcdctl(*args):
    """Runs etcdctl against the test's etcd; returns its output."""
    out = subprocess.run(
        ["etcdctl", "--endpoints", ETCD, *args],
        check=True, capture_output=True, text=True, timeout=30,
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
    )
    return out.stdout


def put(namespace, name, labels=None, size=0):
    labels_json = ",".join(f'"{k}":"{v}"' for k, v in (labels or {}).items())
    etcdctl("put", f"apps/widgets/{namespace}/{name}",
            f'{{"metadata":{{"labels":{{{labels_json}}}}},"spec":{{"size":{size}}}}}')


def delete(namespace, name):
    etcdctl("del", f"apps/widgets/{namespace}/{name}")


def expect(what, got, want):
    if got != want:
        print(f"FAIL {what}: got {got!r}, want {want!r}", flush=True)
        sys.exit(1)


def names(items):
    return [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items]


def events(stream, count):
    """The first `count` non-bookmark events of a watch stream as (type, name, size)."""
    seen = []
    for event in stream:
        if event["type"] == "BOOKMARK":
            continue
        obj = event["object"]
        seen.append((event["type"], obj["metadata"]["name"], obj.get("spec", {}).get("size")))
        if len(seen) == count:
            break
    return seen


configuration = client.Configuration()
configuration.host = HOST
configuration.ssl_ca_cert = CA_FILE
configuration.api_key = {"authorization": TOKEN}
configuration.api_key_prefix = {"authorization": "Bearer"}
api_client = client.ApiClient(configuration)
custom = client.CustomObjectsApi(api_client)

# CustomObjectsApi: list with selectors and paging, get.
put("ns1", "a", {"tier": "web"}, 1)
put("ns1", "b", {"tier": "db"}, 2)
put("ns1", "c", {"tier": "web"}, 3)
put("ns2", "d", {}, 4)

listed = custom.list_namespaced_custom_object(GROUP, VERSION, "ns1", PLURAL, label_selector="tier=web")
expect("label selector", names(listed["items"]), [("ns1", "a"), ("ns1", "c")])
listed = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, field_selector="metadata.namespace=ns2")
expect("field selector", names(listed["items"]), [("ns2", "d")])
pages, token = [], None
for _ in range(10):
    page = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=2, _continue=token)
    pages.append(names(page["items"]))
    token = page["metadata"].get("continue")
    if not token:
        break
    put("ns2", "late", {}, 9)  # written between pages: not in this listing
expect("pages", pages, [[("ns1", "a"), ("ns1", "b")], [("ns1", "c"), ("ns2", "d")]])
got = custom.get_namespaced_custom_object(GROUP, VERSION, "ns1", PLURAL, "b")
expect("get", (got["kind"], got["metadata"]["name"], got["spec"]), ("Widget", "b", {"size": 2}))
try:
    custom.get_namespaced_custom_object(GROUP, VERSION, "ns1", PLURAL, "nope")
    expect("get missing", "found", "404")
except ApiException as e:
    expect("get missing", (e.status, e.reason), (404, "Not Found"))
print("custom objects: selectors, paging, get", flush=True)

# watch.Watch().stream: from a list's resourceVersion, then resumed from the
# last event's, then the 410 path.
rv = custom.list_namespaced_custom_object(GROUP, VERSION, "ns1", PLURAL)["metadata"]["resourceVersion"]
w = watch.Watch()
stream = w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, "ns1", PLURAL,
                  resource_version=rv, timeout_seconds=5)
put("ns1", "a", {"tier": "web"}, 10)
delete("ns1", "b")
expect("watch", events(stream, 2), [("MODIFIED", "a", 10), ("DELETED", "b", 2)])
w.stop()
resume_from = w.resource_version
put("ns1", "e", {}, 5)
w = watch.Watch()
stream = w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, "ns1", PLURAL,
                  resource_version=resume_from, timeout_seconds=5)
expect("resumed watch", events(stream, 1), [("ADDED", "e", 5)])
w.stop()
for i in range(12):  # past the gateway's history window (history_revisions = 5)
    put("ns2", "churn", {}, i)
revision = int(custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["metadata"]["resourceVersion"])
etcdctl("compact", str(revision))
try:
    for _ in watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION, "ns1", PLURAL,
                                  resource_version=rv, timeout_seconds=5):
        pass
    expect("watch from a compacted revision", "no error", "410")
except ApiException as e:
    expect("410", (e.status, e.reason.split(":")[0]), (410, "Expired"))
    expect("410 message", e.reason.startswith(f"Expired: too old resource version: {rv} ("), True)
print("watch: events, resume, 410", flush=True)

# DynamicClient: discovery, then list and watch from the list's revision.
dynamic = DynamicClient(api_client)
widgets = dynamic.resources.get(api_version=f"{GROUP}/{VERSION}", kind="Widget")
expect("discovered", (widgets.name, widgets.namespaced, widgets.kind), ("widgets", True, "Widget"))
listed = widgets.get(namespace="ns1")
expect("dynamic list", [i.metadata.name for i in listed.items], ["a", "c", "e"])
delete("ns1", "c")
put("ns1", "f", {"tier": "web"}, 6)
seen = []
for event in widgets.watch(namespace="ns1", resource_version=listed.metadata.resourceVersion, timeout=5):
    seen.append((event["type"], event["object"].metadata.name))
    if len(seen) == 2:
        break
expect("dynamic watch", seen, [("DELETED", "c"), ("ADDED", "f")])
print("dynamic client: discovery, list, watch", flush=True)

# WatchList: the state as ADDED events, the bookmark that ends them, then
# changes, through the DynamicClient's sendInitialEvents.
seen, end = [], None
stream = widgets.watch(namespace="ns1", label_selector="tier=web", send_initial_events=True,
                       resource_version_match="NotOlderThan", allow_watch_bookmarks=True, timeout=5)
for event in stream:
    obj = event["object"]
    if event["type"] == "BOOKMARK":
        annotations = (obj.metadata.annotations or {})
        if end is None and annotations.get("k8s.io/initial-events-end") == "true":
            end = obj.metadata.resourceVersion
            put("ns1", "g", {"tier": "web"}, 7)
        continue
    seen.append((event["type"], obj.metadata.name))
    if len(seen) == 3:
        break
expect("watch list", seen, [("ADDED", "a"), ("ADDED", "f"), ("ADDED", "g")])
expect("initial-events-end bookmark", end is not None, True)
print("watch list: initial events, bookmark, changes", flush=True)
