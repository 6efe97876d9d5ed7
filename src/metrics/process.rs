//! The standard `process_*` metrics every Prometheus client library exports
//! (CPU time, resident and virtual memory, open and maximum file
//! descriptors, threads, start time), read from `/proc/self` at scrape time.
//! On a system without `/proc` the collector exports nothing.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads `/proc/self` when scraped.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What `/proc/self` says about this process.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    threads: i64,
    start_time_seconds: f64,
    open_fds: i64,
    max_fds: i64,
}

/// Clock ticks per second of `/proc` times: 100 on every Linux system the
/// gateway targets (`getconf CLK_TCK`); reading it for real needs libc.
const TICKS_PER_SECOND: f64 = 100.0;
/// Page size of `/proc/self/stat`'s `rss`, in bytes (4 KiB on x86-64 and
/// aarch64 Linux as built by default).
const PAGE_BYTES: i64 = 4096;

/// Parses `/proc/self/stat` (fields after the parenthesized command name)
/// and the boot time from `/proc/stat`.
fn parse_stat(stat: &str, boot_time: f64) -> Option<Sample> {
    let rest = stat.rsplit_once(") ")?.1;
    // `rest` starts at field 3 (state): utime is field 14, stime 15, threads
    // 20, starttime 22, vsize 23, rss 24.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some(Sample {
        cpu_seconds: (field(14)? + field(15)?) / TICKS_PER_SECOND,
        threads: field(20)? as i64,
        start_time_seconds: boot_time + field(22)? / TICKS_PER_SECOND,
        virtual_bytes: field(23)? as i64,
        resident_bytes: field(24)? as i64 * PAGE_BYTES,
        ..Sample::default()
    })
}

fn read() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    let mut sample = parse_stat(&stat, boot_time)?;
    sample.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64);
    sample.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            let line = l.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(0);
    Some(sample)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(sample) = read() else { return Ok(()) };
        let cpu = ConstCounter::new(sample.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, value) in [
            ("process_resident_memory_bytes", "Resident memory size in bytes", sample.resident_bytes),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", sample.virtual_bytes),
            ("process_open_fds", "Number of open file descriptors", sample.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors", sample.max_fds),
            ("process_threads", "Number of OS threads in the process", sample.threads),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let start = ConstGauge::new(sample.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            None,
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        // A command name with spaces and parentheses, as /proc allows.
        let stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 150 0 0 20 0 7 0 1000 \
                    123456789 3000 18446744073709551615";
        let sample = parse_stat(stat, 1_700_000_000.0).unwrap();
        assert_eq!(
            sample,
            Sample {
                cpu_seconds: 4.0,
                threads: 7,
                start_time_seconds: 1_700_000_010.0,
                virtual_bytes: 123_456_789,
                resident_bytes: 3000 * 4096,
                ..Sample::default()
            }
        );
    }

    #[test]
    fn this_process_is_read() {
        let sample = read().expect("/proc/self on Linux");
        assert!(
            sample.resident_bytes > 0 && sample.threads >= 1 && sample.open_fds >= 3 && sample.max_fds > 0
        );
    }
}
