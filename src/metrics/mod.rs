//! `/metrics`: Prometheus metrics, labelled by namespace and matched route
//! (never raw URLs, so cardinality stays bounded).
//!
//! The standard `process_*` metrics come unprefixed, as every client
//! library exports them (`process.rs`); the allocator's figures come from
//! the binary, which picks the allocator (`heap.rs`).
//!
//! prometheus-client, not the `metrics` facade: its registry is a value, not
//! a process-global recorder, so every gateway in a process (the test suite
//! runs dozens) has its own counters. HTTP and SSE metrics are recorded as
//! they happen; the caches' state and counters (which the cache core keeps as
//! plain atomics) are read at scrape time by a collector.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cache::WatchRestart;
use crate::fanout::CatchUps;
use crate::namespaces::Namespaces;

mod heap;
mod process;

pub use heap::{HeapReader, HeapStats, report_heap};

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;

/// Labels of an HTTP request series: the matched route template (one of a
/// fixed set, so no allocation per request) and the status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct RequestLabels {
    /// Matched route template, or `unmatched`.
    pub route: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of a latency series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct RouteLabels {
    /// Matched route template, or `unmatched`.
    pub route: &'static str,
}

/// Latency buckets: 100 µs to ~6.5 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// Every metric of one gateway.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by matched route and status.
    pub http_requests: Family<RequestLabels, Counter>,
    /// Time to the response head by matched route (streams: time to headers).
    pub http_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Open watch streams per namespace.
    pub sse_subscribers: Family<Labels, Gauge>,
    /// SSE events sent per namespace (keep-alive comments excluded).
    pub sse_events: Family<Labels, Counter>,
    /// Bytes of SSE streams sent per namespace.
    pub sse_bytes: Family<Labels, Counter>,
    /// `reset` events per namespace and reason.
    pub sse_resets: Family<Labels, Counter>,
    /// Streams ended because their history was gone (`on_gap=error`).
    pub sse_lagging_disconnects: Family<Labels, Counter>,
    /// Requests authenticated by each token (by the token's name).
    pub token_requests: Family<Labels, Counter>,
    /// Open watch streams of each token (by the token's name).
    pub token_streams: Family<Labels, Gauge>,
    /// Values left out of a Kubernetes-style resource because they are not
    /// JSON objects, by resource (`group/resource`).
    pub kube_invalid_objects: Family<Labels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with every metric, reading `namespaces` at scrape time.
    pub fn new(namespaces: Namespaces, catch_ups: Arc<CatchUps>) -> Arc<Self> {
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("etcd_cache_gateway");
        let http_requests = Family::<RequestLabels, Counter>::default();
        let http_latency =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let sse_subscribers = Family::<Labels, Gauge>::default();
        let sse_events = Family::<Labels, Counter>::default();
        let sse_bytes = Family::<Labels, Counter>::default();
        let sse_resets = Family::<Labels, Counter>::default();
        let sse_lagging_disconnects = Family::<Labels, Counter>::default();
        let kube_invalid_objects = Family::<Labels, Counter>::default();
        registry.register(
            "kube_invalid_objects",
            "Values left out of a Kubernetes-style list, get or watch because they are not JSON objects",
            kube_invalid_objects.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by matched route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head by matched route",
            http_latency.clone(),
        );
        registry.register("sse_subscribers", "Open watch streams", sse_subscribers.clone());
        registry.register("sse_events", "SSE events sent (keep-alive comments excluded)", sse_events.clone());
        registry.register("sse_bytes", "Bytes of SSE streams sent", sse_bytes.clone());
        registry.register("sse_resets", "reset events sent, by reason", sse_resets.clone());
        registry.register(
            "sse_lagging_disconnects",
            "Streams ended with an error because the history they needed was gone",
            sse_lagging_disconnects.clone(),
        );
        let token_requests = Family::<Labels, Counter>::default();
        let token_streams = Family::<Labels, Gauge>::default();
        registry.register("token_requests", "Requests authenticated by each token", token_requests.clone());
        registry.register("token_streams", "Open watch streams of each token", token_streams.clone());
        let build_info = Family::<Labels, Gauge>::default();
        build_info.get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_owned())]).set(1);
        registry.register("build_info", "The gateway's version (the value is always 1)", build_info);
        registry.register_collector(Box::new(CacheCollector { namespaces, catch_ups }));
        if let Some(read) = heap::reader() {
            registry.register_collector(Box::new(heap::HeapCollector { read }));
        }
        Arc::new(Self {
            registry: root,
            http_requests,
            http_latency,
            sse_subscribers,
            sse_events,
            sse_bytes,
            sse_resets,
            sse_lagging_disconnects,
            token_requests,
            token_streams,
            kube_invalid_objects,
        })
    }

    /// Records one HTTP request of a route template (`'static`: routes are a fixed set).
    pub fn observe_request(&self, route: &'static str, status: u16, latency: Duration) {
        self.http_requests.get_or_create(&RequestLabels { route, status }).inc();
        self.http_latency.get_or_create(&RouteLabels { route }).observe(latency.as_secs_f64());
    }

    /// The exposition in OpenMetrics text, which Prometheus asks for.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition in the format `accept` asks for: OpenMetrics when it
    /// names `application/openmetrics-text` (as Prometheus does), else the
    /// classic Prometheus text format (`curl`, older scrapers). Returns the
    /// content type and the body.
    pub fn render_for(&self, accept: &str) -> (&'static str, String) {
        let openmetrics = self.render();
        if accept.contains("application/openmetrics-text") {
            ("application/openmetrics-text; version=1.0.0; charset=utf-8", openmetrics)
        } else {
            ("text/plain; version=0.0.4; charset=utf-8", prometheus_text(&openmetrics))
        }
    }
}

/// The classic Prometheus text format of an OpenMetrics exposition: a
/// counter's `HELP` and `TYPE` name its samples (`x_total`), there is no
/// `UNIT` line and no `# EOF`.
fn prometheus_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line.strip_prefix("# TYPE ").and_then(|l| l.strip_suffix(" counter")) {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = line
            .strip_prefix("# HELP ")
            .map(|l| ("# HELP ", l))
            .or_else(|| line.strip_prefix("# TYPE ").map(|l| ("# TYPE ", l)));
        match described {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) { "_total" } else { "" };
                out.push_str(&format!("{kind}{name}{suffix} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The namespace label of a series.
pub fn namespace_labels(namespace: &str) -> Labels {
    vec![("namespace", namespace.to_owned())]
}

/// Reads the caches' state and counters at scrape time.
#[derive(Debug)]
struct CacheCollector {
    namespaces: Namespaces,
    catch_ups: Arc<CatchUps>,
}

/// One gauge or counter family: name, help, whether a counter, and a value per namespace.
type Series = (&'static str, &'static str, bool, Vec<(Labels, i64)>);

fn encode_series(
    encoder: &mut DescriptorEncoder,
    (name, help, counter, values): Series,
) -> Result<(), std::fmt::Error> {
    let metric_type =
        if counter { ConstCounter::new(0u64).metric_type() } else { ConstGauge::new(0i64).metric_type() };
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in &values {
        let metric = family.encode_family(labels)?;
        if counter {
            ConstCounter::new(u64::try_from(*value).unwrap_or(0)).encode(metric)?;
        } else {
            ConstGauge::new(*value).encode(metric)?;
        }
    }
    Ok(())
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let per_ns = |f: &dyn Fn(&crate::namespaces::Namespace) -> i64| -> Vec<(Labels, i64)> {
            self.namespaces.iter().map(|ns| (namespace_labels(&ns.config.name), f(ns))).collect()
        };
        let count =
            |c: &std::sync::atomic::AtomicU64| i64::try_from(c.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        let series: Vec<Series> = vec![
            (
                "revision",
                "The cache holds the namespace's state exactly at this etcd revision",
                false,
                per_ns(&|ns| ns.cache.head()),
            ),
            (
                "compacted_revision",
                "etcd's compaction revision, as last learnt",
                false,
                per_ns(&|ns| ns.cache.status().etcd_compact_revision()),
            ),
            (
                "oldest_revision",
                "Oldest revision servable from memory (the start of the history window)",
                false,
                per_ns(&|ns| ns.cache.view().history.oldest_revision().unwrap_or(0)),
            ),
            (
                "etcd_revision",
                "Latest revision etcd reported",
                false,
                per_ns(&|ns| ns.cache.report().etcd_revision),
            ),
            (
                "lag_revisions",
                "etcd_revision minus revision",
                false,
                per_ns(&|ns| {
                    let r = ns.cache.report();
                    r.etcd_revision - r.revision
                }),
            ),
            (
                "keys",
                "Keys in the namespace",
                false,
                per_ns(&|ns| i64::try_from(ns.cache.report().keys).unwrap_or(i64::MAX)),
            ),
            (
                "history_entries",
                "Revisions in the history window",
                false,
                per_ns(&|ns| ns.cache.view().history.len() as i64),
            ),
            (
                "history_bytes",
                "What the history window holds, bounded by cache.max_history_bytes",
                false,
                per_ns(&|ns| i64::try_from(ns.cache.view().history.bytes()).unwrap_or(i64::MAX)),
            ),
            (
                "fresh",
                "1 while the namespace's etcd watch is up and no re-list runs, 0 while answers are stale",
                false,
                per_ns(&|ns| i64::from(ns.cache.status().is_fresh())),
            ),
            (
                "stale_seconds",
                "Seconds since the watch was last healthy (0 while fresh)",
                false,
                per_ns(&|ns| {
                    ns.cache
                        .status()
                        .stale_for()
                        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                }),
            ),
            ("value_hits", "Values found in memory", true, per_ns(&|ns| count(&ns.cache.value_stats().hits))),
            (
                "value_misses",
                "Values not in memory",
                true,
                per_ns(&|ns| count(&ns.cache.value_stats().misses)),
            ),
            (
                "value_read_throughs",
                "etcd reads made to load values or serve reads outside the window",
                true,
                per_ns(&|ns| count(&ns.cache.value_stats().read_throughs)),
            ),
            (
                "watch_restarts",
                "Times the namespace's etcd watch was re-established, by reason: error (the stream \
                 failed), closed (etcd ended it), silent (the watchdog found it silent), compacted and \
                 inconsistent (both re-list)",
                true,
                self.namespaces
                    .iter()
                    .flat_map(|ns| {
                        WatchRestart::ALL.into_iter().map(|reason| {
                            let mut labels = namespace_labels(&ns.config.name);
                            labels.push(("reason", reason.as_str().to_owned()));
                            let n = ns.cache.status().restarts(reason);
                            (labels, i64::try_from(n).unwrap_or(i64::MAX))
                        })
                    })
                    .collect(),
            ),
            (
                "watch_silence_seconds",
                "Seconds since the namespace's etcd watch last delivered anything (an event or a \
                 progress notification); the watchdog re-creates it after etcd.watch_silence_timeout",
                false,
                per_ns(&|ns| i64::try_from(ns.cache.status().silent_for().as_secs()).unwrap_or(i64::MAX)),
            ),
            (
                "relisting",
                "1 while the namespace re-lists (after a compaction or a broken feed): answers are the \
                 previous state, marked stale",
                false,
                per_ns(&|ns| i64::from(ns.cache.status().is_relisting())),
            ),
            (
                "relists",
                "Full loads of the namespace (the first included)",
                true,
                per_ns(&|ns| count(&ns.cache.status().relists)),
            ),
            (
                "consistent_read_waits",
                "Consistent reads that waited for the cache",
                true,
                per_ns(&|ns| count(&ns.cache.status().consistent_waits)),
            ),
            (
                "consistent_read_fallbacks",
                "Consistent reads answered from etcd after the wait timed out",
                true,
                per_ns(&|ns| count(&ns.cache.status().consistent_fallbacks)),
            ),
            (
                "value_bytes",
                "Bytes counted against cache.max_value_bytes (all namespaces)",
                false,
                vec![(
                    Vec::new(),
                    i64::try_from(self.namespaces.values().weighted_bytes()).unwrap_or(i64::MAX),
                )],
            ),
            (
                "value_evictions",
                "Values dropped for cache.max_value_bytes or, with the ttl policy, for being idle (all namespaces)",
                true,
                vec![(Vec::new(), i64::try_from(self.namespaces.values().evictions()).unwrap_or(i64::MAX))],
            ),
            (
                "catch_ups",
                "Streams resumed behind the history window and caught up from etcd, by outcome: caught_up \
                 (continued from the shared history), compacted (etcd had compacted it: a reset followed), \
                 failed (etcd could not be read: the stream ended and the client resumes later)",
                true,
                [
                    ("caught_up", &self.catch_ups.completed),
                    ("compacted", &self.catch_ups.compacted),
                    ("failed", &self.catch_ups.failed),
                ]
                .into_iter()
                .map(|(outcome, n)| (vec![("outcome", outcome.to_owned())], count(n)))
                .collect(),
            ),
            (
                "catch_up_replays",
                "Replays of etcd's history started for catch-ups, each one etcd watch while it reads, shared by \
                 every stream resuming at or after its start",
                true,
                vec![(Vec::new(), count(&self.catch_ups.replays_started))],
            ),
            (
                "catch_ups_waiting",
                "Catch-up replays waiting for their turn to read etcd (watch.max_catch_ups read at once)",
                false,
                vec![(Vec::new(), count(&self.catch_ups.waiting))],
            ),
            (
                "values",
                "Values cached (all namespaces)",
                false,
                vec![(Vec::new(), i64::try_from(self.namespaces.values().entry_count()).unwrap_or(i64::MAX))],
            ),
        ];
        for s in series {
            encode_series(&mut encoder, s)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_text_format_names_counters_by_their_samples() {
        let openmetrics = "# HELP app_requests Requests.\n# TYPE app_requests counter\napp_requests_total{a=\"b\"} 3\n\
                           # HELP app_up Up.\n# TYPE app_up gauge\n# UNIT app_up seconds\napp_up 1\n# EOF\n";
        assert_eq!(
            prometheus_text(openmetrics),
            "# HELP app_requests_total Requests.\n# TYPE app_requests_total counter\napp_requests_total{a=\"b\"} 3\n\
             # HELP app_up Up.\n# TYPE app_up gauge\napp_up 1\n"
        );
    }
}
