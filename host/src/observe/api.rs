//! What the observe module answers, shared by the server (which builds it) and the command
//! line (`weir top`, which reads it from the admin API's `GET /nodes`): one definition, so
//! the two cannot drift apart. The live page reads the same JSON from `GET /snapshot` on the
//! metrics listener, and its charts' [`History`] from `GET /history`.
//!
//! Everything in a [`Snapshot`] is a running total or a level at the moment of the snapshot;
//! rates (events per second, call latency over the last interval) are the reader's to compute
//! from two snapshots, which keeps it free of per-reader state. The page's [`History`] is the
//! one thing the server computes over time: the last minutes of per-second samples, which the
//! page must show even when it was opened late.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole pipeline at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// `running`, `draining` (stopping: the sources stopped, what is in flight drains) or
    /// `stopped`.
    pub state: String,
    /// Seconds since the run started.
    pub uptime_s: f64,
    /// Events emitted by the sources and not yet written or dead-lettered.
    pub in_flight: u64,
    /// The most that can be in flight, from the configuration.
    pub in_flight_bound: u64,
    /// The upper bounds (seconds) of the buckets of every node's `call_buckets`.
    pub call_bounds: Vec<f64>,
    /// Sources, then stages (upstream first), then sinks.
    pub nodes: Vec<NodeSnapshot>,
}

/// One node at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeSnapshot {
    pub name: String,
    /// `source`, `stage` or `sink`.
    pub kind: String,
    /// The nodes it reads (empty for a source): the graph's edges.
    pub inputs: Vec<String>,
    pub events_in: u64,
    pub events_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Failed events (dead-lettered or dropped by policy), in all and by kind.
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub filtered: u64,
    /// Events queued in front of the node.
    pub queued: u64,
    /// A stage's plugin calls, the fuel they burned, and how long they took: calls per bucket
    /// of [`Snapshot::call_bounds`] (not cumulative; one more for longer calls) and the sum.
    pub calls: u64,
    pub fuel: u64,
    pub call_buckets: Vec<u64>,
    pub call_seconds: f64,
    /// A stage's traps by kind, live instances and their linear memory (bytes).
    pub traps: BTreeMap<String, u64>,
    pub instances: u64,
    pub memory: u64,
    pub breaker_open: bool,
    /// A stage's live version.
    pub version: Option<LiveVersion>,
    /// A source's position and size in bytes (size 0: not known, such as stdin).
    pub position: u64,
    pub size: u64,
    /// A stage's input watermark, in milliseconds since the epoch (0: none yet; the largest
    /// value: its input has ended).
    #[serde(default)]
    pub watermark_ms: u64,
    /// The stage's shadow, running or the latest to have run; `None` if it never had one.
    #[serde(default)]
    pub shadow: Option<ShadowSummary>,
}

/// A shadow's comparison as the open snapshot carries it: counts and times only. Its samples
/// quote events, so they stay with the admin API, behind its token (`weir shadow status`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShadowSummary {
    /// `running`, `stopped`, `promoted` or `replaced`.
    pub state: String,
    /// The candidate's first 12 hex digits.
    pub short_digest: String,
    pub sample: f64,
    pub batches: u64,
    pub skipped: u64,
    pub compared: u64,
    pub equal: u64,
    pub different: u64,
    /// Input events each side failed, all kinds together.
    pub live_failed: u64,
    pub shadow_failed: u64,
    pub live_us_per_event: f64,
    pub shadow_us_per_event: f64,
}

/// The version a stage runs now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveVersion {
    /// The version's number in the stage's history (1 for the one it started with).
    pub id: u64,
    pub digest: String,
    /// The first 12 hex digits: what `weir.version.<stage>` headers carry.
    pub short_digest: String,
}

/// The last minutes of a running pipeline, one sample per second, oldest first; the page's
/// charts, from `GET /history`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    /// Seconds between two samples.
    pub every_s: f64,
    /// The most samples kept: the charts' width in samples.
    pub capacity: usize,
    /// The server's wall clock now, in milliseconds since the Unix epoch: where the
    /// timestamps of `reasons` and `changes` fall on the charts.
    pub now_ms: u64,
    /// Each sample's time, in seconds since the run started.
    pub uptime_s: Vec<f64>,
    /// Events in flight at each sample, and the most there can be.
    pub in_flight: Vec<u64>,
    pub in_flight_bound: u64,
    /// Sources, then stages, then sinks; each series has one value per sample.
    pub nodes: Vec<NodeHistory>,
    /// The last failure reasons of every node, newest first (without their messages: the
    /// admin API's `GET /reasons` gives them).
    pub reasons: Vec<ReasonEntry>,
    /// The hot-load changes of every stage, oldest first.
    pub changes: Vec<ChangeEntry>,
}

/// One node's series. A rate or quantile over a second without the events or calls it needs
/// is `None` (a gap in the chart, not a zero).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeHistory {
    pub name: String,
    pub kind: String,
    /// Events per second in and out, and failed.
    pub rate_in: Vec<f64>,
    pub rate_out: Vec<f64>,
    pub failed: Vec<f64>,
    /// Events queued in front of the node.
    pub queued: Vec<u64>,
    /// A stage's plugin call latency over the second, 50th and 99th percentiles, in
    /// milliseconds, from its call histogram.
    pub p50_ms: Vec<Option<f64>>,
    pub p99_ms: Vec<Option<f64>>,
    /// A stage's fuel burned per input event over the second.
    pub fuel_per_event: Vec<Option<f64>>,
}

/// One recent failure reason of a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReasonEntry {
    pub node: String,
    pub at_ms: u64,
    /// The failure kind (`panic`, `reject`, …).
    pub kind: String,
    /// The plugin's (or the host's) message, bounded: guest text, to be escaped when shown.
    /// Left out (`null`) on the open metrics listener: it may quote the events.
    pub message: Option<String>,
    /// Whether the message was cut at its bound.
    pub cut: bool,
    /// Consecutive events of one batch that failed for it.
    pub events: u64,
    /// Whether they went to the dead-letter file (not `on_error = "drop"`).
    pub kept: bool,
}

/// One hot-load change of a stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeEntry {
    pub stage: String,
    pub at_ms: u64,
    /// `swap`, `rollback`, `canary-rollback` or `refused`.
    pub kind: String,
    /// The version live after it.
    pub version: u64,
}

/// A latency quantile from histogram buckets (not cumulative, the last past the largest
/// bound): the bound of the bucket where the quantile falls, interpolated within it. `None`
/// without calls.
pub fn quantile(bounds: &[f64], buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if n > 0 && (seen + n) as f64 >= rank {
            let low = if i == 0 { 0.0 } else { bounds[i - 1] };
            let Some(&high) = bounds.get(i) else {
                // Past the largest bound: all that can be said is "more than it".
                return Some(low);
            };
            let within = ((rank - seen as f64) / n as f64).clamp(0.0, 1.0);
            return Some(low + (high - low) * within);
        }
        seen += n;
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantile_falls_in_the_bucket_that_holds_its_rank() {
        let bounds = [0.001, 0.01, 0.1];
        assert_eq!(quantile(&bounds, &[0, 0, 0, 0], 0.5), None);
        // 10 calls under 1 ms, 10 between 1 and 10 ms: the median is 1 ms.
        let p50 = quantile(&bounds, &[10, 10, 0, 0], 0.5).unwrap();
        assert!((p50 - 0.001).abs() < 1e-9, "{p50}");
        let p99 = quantile(&bounds, &[10, 10, 0, 0], 0.99).unwrap();
        assert!(p99 > 0.009 && p99 <= 0.01, "{p99}");
        assert_eq!(quantile(&bounds, &[0, 0, 0, 3], 0.5), Some(0.1));
    }
}
