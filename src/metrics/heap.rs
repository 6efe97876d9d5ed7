//! The allocator's own figures, as `etcd_cache_gateway_heap_*_bytes`.
//!
//! RSS alone cannot tell memory the gateway holds from memory its allocator
//! keeps: freed pages not yet returned, half-used pages, the allocator's
//! own metadata. The binary (which picks the allocator) installs a reader
//! with [`report_heap`]; without one (the library's tests, embedders on
//! another allocator) these metrics are absent.

use std::sync::OnceLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// One reading of the allocator, in bytes (jemalloc's `stats.*` names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in allocations the program holds.
    pub allocated: u64,
    /// Bytes in pages that hold at least one allocation.
    pub active: u64,
    /// Bytes in pages the allocator counts as resident: active, metadata and
    /// freed pages not yet returned. An upper bound: pages reserved by an
    /// allocation but never written count too.
    pub resident: u64,
    /// Bytes in mapped regions that hold allocations.
    pub mapped: u64,
    /// Bytes mapped but returned to the system (not resident), kept for reuse.
    pub retained: u64,
    /// Bytes of the allocator's own bookkeeping.
    pub metadata: u64,
}

/// Reads the allocator; `None` when it cannot be read.
pub type HeapReader = fn() -> Option<HeapStats>;

static READER: OnceLock<HeapReader> = OnceLock::new();

/// Makes every gateway of this process export the heap metrics, read by
/// `reader` at each scrape. The first call wins.
pub fn report_heap(reader: HeapReader) {
    let _ = READER.set(reader);
}

/// The installed reader, if any.
pub(super) fn reader() -> Option<HeapReader> {
    READER.get().copied()
}

/// Encodes one reading of `read` at each scrape.
pub(super) struct HeapCollector {
    pub(super) read: HeapReader,
}

impl std::fmt::Debug for HeapCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapCollector").finish_non_exhaustive()
    }
}

impl Collector for HeapCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(heap) = (self.read)() else { return Ok(()) };
        for (name, help, value) in [
            ("heap_allocated_bytes", "Bytes in allocations the gateway holds", heap.allocated),
            (
                "heap_active_bytes",
                "Bytes in the allocator's pages that hold at least one allocation",
                heap.active,
            ),
            (
                "heap_resident_bytes",
                "Bytes in pages the allocator holds resident: active, its metadata, freed pages not yet returned",
                heap.resident,
            ),
            ("heap_mapped_bytes", "Bytes in regions the allocator has mapped for allocations", heap.mapped),
            (
                "heap_retained_bytes",
                "Bytes the allocator returned to the system but keeps mapped",
                heap.retained,
            ),
            ("heap_metadata_bytes", "Bytes of the allocator's own bookkeeping", heap.metadata),
        ] {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    fn encode(read: HeapReader) -> String {
        let mut registry = Registry::default();
        registry
            .sub_registry_with_prefix("etcd_cache_gateway")
            .register_collector(Box::new(HeapCollector { read }));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn each_figure_is_a_gauge_with_its_own_value() {
        let out = encode(|| {
            Some(HeapStats { allocated: 1, active: 2, resident: 3, mapped: 4, retained: 5, metadata: 6 })
        });
        let samples: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "etcd_cache_gateway_heap_allocated_bytes 1",
                "etcd_cache_gateway_heap_active_bytes 2",
                "etcd_cache_gateway_heap_resident_bytes 3",
                "etcd_cache_gateway_heap_mapped_bytes 4",
                "etcd_cache_gateway_heap_retained_bytes 5",
                "etcd_cache_gateway_heap_metadata_bytes 6",
            ]
        );
        assert!(out.contains("# TYPE etcd_cache_gateway_heap_allocated_bytes gauge"), "{out}");
    }

    #[test]
    fn an_unreadable_allocator_exports_nothing() {
        assert_eq!(encode(|| None), "# EOF\n");
    }
}
