//! Counters per node of a running pipeline, and the report a run ends with.
//!
//! Every source, stage and sink owns a [`NodeMetrics`] of atomic counters and gauges that its
//! task bumps once per batch (or per plugin call), never per event; [`RunReport`] is their
//! snapshot when the run ends, with the in-flight high-water mark from the acknowledgement
//! tracker. The report prints as the summary line of `weir run` and serialises as `weir run
//! --report json`. While the run goes on, the observe module reads the same atomics when it
//! is asked (a scrape, `weir top`, the live page): nothing here knows it exists, and nothing
//! is computed for it on the hot path.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::pipeline::dead_letter::RecentReasons;
use crate::pipeline::failure::FailureKind;
use crate::pipeline::tap::TapPoint;

/// Upper bounds, in seconds, of the buckets of [`CallTimes`]: from 100 µs (a batch through a
/// small plugin) to 10 s (past the longest default deadline).
pub const CALL_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// How long plugin calls took: a histogram of atomic buckets, one `record` per call.
#[derive(Debug)]
pub struct CallTimes {
    /// Calls per bucket of [`CALL_BUCKETS`], the last one for longer calls (not cumulative).
    buckets: [AtomicU64; CALL_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Default for CallTimes {
    fn default() -> Self {
        CallTimes {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl CallTimes {
    pub fn record(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = CALL_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(CALL_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Calls per bucket (not cumulative; the last is past the largest bound), and the sum of
    /// their times in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let counts = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        (counts, self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Source,
    Stage,
    Sink,
}

/// Live counters of one node.
#[derive(Debug)]
pub struct NodeMetrics {
    pub name: String,
    pub kind: NodeKind,
    pub events_in: AtomicU64,
    pub events_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Input events that became no output and did not fail: filtered out on purpose.
    pub filtered: AtomicU64,
    /// Instances replaced after a trap.
    pub traps: AtomicU64,
    /// Events sent back to the plugin after a `retry` outcome.
    pub retries: AtomicU64,
    /// Instances replaced before their memory reached its cap.
    pub recycled: AtomicU64,
    /// Header references with a reserved `weir.` name that the plugin wrote and the host
    /// removed.
    pub reserved_stripped: AtomicU64,
    /// Timers of the stage that fired.
    pub timers_fired: AtomicU64,
    /// The stage's input watermark, in milliseconds since the Unix epoch (0: none yet).
    pub watermark: AtomicU64,
    /// Plugin calls, and the fuel they burned.
    pub calls: AtomicU64,
    pub fuel: AtomicU64,
    /// Failed events (dead-lettered or dropped by policy), by kind.
    failed: [AtomicU64; FailureKind::ALL.len()],
    /// Traps of the stage's instances, by kind (only trap kinds are ever counted).
    trapped: [AtomicU64; FailureKind::ALL.len()],
    /// How long each plugin call took.
    pub call_times: CallTimes,
    /// Events sent towards this node and not yet taken by it: its input channel's content,
    /// and batches waiting to enter it (0 for a source, and for a stage inside a chain).
    pub queued: AtomicU64,
    /// A stage's live instances, and the linear memory they hold, in bytes. Workers add and
    /// take away what their own instances change, so these wrap below zero only in passing.
    pub instances: AtomicU64,
    pub memory: AtomicU64,
    /// A source's position: bytes read so far, of `size` bytes in all (0 when not known).
    pub position: AtomicU64,
    pub size: AtomicU64,
    /// Bytes a line source took from its input, once it counts them
    /// ([`NodeMetrics::read_bytes`]), and what it reads (0 until then, else a [`ByteInput`]).
    bytes_read: AtomicU64,
    byte_input: AtomicU8,
    /// A TCP source's connections; reported once it reads bytes from [`ByteInput::Tcp`].
    pub connections: Connections,
    /// Live copies of what leaves the node, for `weir tap`.
    pub tap: TapPoint,
    /// The node's last failure reasons, for the live page: written once per failed batch.
    pub reasons: RecentReasons,
}

impl NodeMetrics {
    pub fn new(name: &str, kind: NodeKind) -> NodeMetrics {
        NodeMetrics {
            name: name.to_string(),
            kind,
            events_in: AtomicU64::new(0),
            events_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            traps: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            recycled: AtomicU64::new(0),
            reserved_stripped: AtomicU64::new(0),
            timers_fired: AtomicU64::new(0),
            watermark: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            fuel: AtomicU64::new(0),
            failed: std::array::from_fn(|_| AtomicU64::new(0)),
            trapped: std::array::from_fn(|_| AtomicU64::new(0)),
            call_times: CallTimes::default(),
            queued: AtomicU64::new(0),
            instances: AtomicU64::new(0),
            memory: AtomicU64::new(0),
            position: AtomicU64::new(0),
            size: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            byte_input: AtomicU8::new(0),
            connections: Connections::default(),
            tap: TapPoint::default(),
            reasons: RecentReasons::default(),
        }
    }

    /// Counts one trap of `kind`.
    pub fn trap(&self, kind: FailureKind) {
        self.traps.fetch_add(1, Ordering::Relaxed);
        self.trapped[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Traps by kind, kinds with none left out.
    pub fn traps_by_kind(&self) -> BTreeMap<&'static str, u64> {
        FailureKind::ALL
            .iter()
            .zip(&self.trapped)
            .map(|(k, n)| (k.as_str(), n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Adds `delta` (which may be negative) to a gauge kept as a wrapping `u64`.
    pub fn shift(gauge: &AtomicU64, delta: i64) {
        gauge.fetch_add(delta as u64, Ordering::Relaxed);
    }

    /// A gauge kept as a wrapping `u64`, read as at least 0.
    pub fn level(gauge: &AtomicU64) -> u64 {
        let v = gauge.load(Ordering::Relaxed) as i64;
        v.max(0) as u64
    }

    /// Counts `n` failed events of `kind`.
    pub fn fail(&self, kind: FailureKind, n: u64) {
        self.failed[kind.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Failed events of every kind so far.
    pub fn failed_total(&self) -> u64 {
        self.failed.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// A line source's bytes read so far, from `input`: from now on the report gives them.
    pub fn read_bytes(&self, input: ByteInput, bytes: u64) {
        self.bytes_read.store(bytes, Ordering::Relaxed);
        self.byte_input.store(input as u8, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> NodeReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let failures: BTreeMap<&'static str, u64> = FailureKind::ALL
            .iter()
            .zip(&self.failed)
            .map(|(k, n)| (k.as_str(), get(n)))
            .filter(|(_, n)| *n > 0)
            .collect();
        NodeReport {
            name: self.name.clone(),
            kind: self.kind,
            events_in: get(&self.events_in),
            events_out: get(&self.events_out),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            failed: failures.values().sum(),
            filtered: get(&self.filtered),
            traps: get(&self.traps),
            retries: get(&self.retries),
            recycled: get(&self.recycled),
            reserved_headers_stripped: get(&self.reserved_stripped),
            calls: get(&self.calls),
            fuel: get(&self.fuel),
            failures,
            bytes_read: (self.byte_input.load(Ordering::Relaxed) != 0)
                .then(|| get(&self.bytes_read)),
            reads_stdin: self.byte_input.load(Ordering::Relaxed) == ByteInput::Stdin as u8,
            connections: (self.byte_input.load(Ordering::Relaxed) == ByteInput::Tcp as u8).then(
                || ConnectionsReport {
                    accepted: get(&self.connections.accepted),
                    refused: get(&self.connections.refused),
                    open: get(&self.connections.open),
                },
            ),
        }
    }
}

/// A node's counters at the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub name: String,
    pub kind: NodeKind,
    pub events_in: u64,
    pub events_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Events that failed here (dead-lettered or dropped by `on_error = "drop"`).
    pub failed: u64,
    /// Events that became no output on purpose.
    pub filtered: u64,
    pub traps: u64,
    pub retries: u64,
    pub recycled: u64,
    /// Reserved (`weir.`) header references the plugin wrote and the host removed.
    pub reserved_headers_stripped: u64,
    pub calls: u64,
    pub fuel: u64,
    /// Failed events by failure kind (`panic`, `deadline`, …); kinds with none are left out.
    pub failures: BTreeMap<&'static str, u64>,
    /// A file, stdin or TCP source: the bytes it took from its input (for TCP, from every
    /// connection). For stdin, how far it moved
    /// the input's offset, all of it delivered (as events, or an over-long line's dead
    /// letter); for a file, the bytes of the lines it read, over every round (a stopped file
    /// source leaves the rest to its checkpoint). Left out for other nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
    /// A stdin source: the summary line gives its bytes read.
    #[serde(skip)]
    pub reads_stdin: bool,
    /// A TCP source's connections. Left out for other nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionsReport>,
}

/// A listening source's connections.
#[derive(Debug, Default)]
pub struct Connections {
    /// Taken, within the connection cap.
    pub accepted: AtomicU64,
    /// Closed at once, over the connection cap.
    pub refused: AtomicU64,
    /// Open now.
    pub open: AtomicU64,
}

/// [`Connections`] in a report.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ConnectionsReport {
    pub accepted: u64,
    pub refused: u64,
    pub open: u64,
}

/// What a line source reads, for [`NodeMetrics::read_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ByteInput {
    File = 1,
    Stdin = 2,
    /// The connections of a TCP source.
    Tcp = 3,
}

/// What a finished run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// From the start of reading to the end of the last write.
    pub elapsed: Duration,
    /// From the start of the command (loading the plugins included) to the end.
    pub total: Duration,
    pub nodes: Vec<NodeReport>,
    /// Events the sources emitted.
    pub events_in: u64,
    /// Events the sinks wrote (each sink counts its own).
    pub events_out: u64,
    pub dead_lettered: u64,
    /// The most events in flight at once: emitted, not yet written or dead-lettered.
    pub in_flight_max: u64,
    /// Events whose every result was written (and flushed) or dead-lettered; after a failed
    /// run, those not written are not among them.
    pub acknowledged: u64,
    /// The bound `weir check` prints: the most that can be in flight.
    pub in_flight_bound: u64,
    /// Whether a signal stopped the sources before their input ended.
    pub interrupted: bool,
}

impl RunReport {
    pub fn node(&self, name: &str) -> Option<&NodeReport> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The report as one JSON object, for `weir run --report json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "elapsed_s": self.elapsed.as_secs_f64(),
            "total_s": self.total.as_secs_f64(),
            "events_in": self.events_in,
            "events_out": self.events_out,
            "dead_lettered": self.dead_lettered,
            "in_flight_max": self.in_flight_max,
            "acknowledged": self.acknowledged,
            "in_flight_bound": self.in_flight_bound,
            "interrupted": self.interrupted,
            "nodes": self.nodes,
        })
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.events_in as f64 / secs
        } else {
            0.0
        };
        write!(
            f,
            "{} in, {} out, {} dead-lettered in {:.3}s ({:.0} events/s, at most {} in flight)",
            self.events_in, self.events_out, self.dead_lettered, secs, rate, self.in_flight_max
        )?;
        if self.interrupted {
            write!(f, " [interrupted: input not read to its end]")?;
        }
        for node in self.nodes.iter().filter(|n| n.reads_stdin) {
            let bytes = node.bytes_read.unwrap_or(0);
            write!(f, " | {}: {bytes} bytes read from stdin", node.name)?;
        }
        for node in self.nodes.iter().filter(|n| n.kind == NodeKind::Stage) {
            write!(
                f,
                " | {}: {} -> {}",
                node.name, node.events_in, node.events_out
            )?;
            if node.filtered > 0 {
                write!(f, ", {} filtered", node.filtered)?;
            }
            if node.failed > 0 {
                let kinds: Vec<String> = node
                    .failures
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                write!(f, ", {} failed ({})", node.failed, kinds.join(", "))?;
            }
            if node.traps > 0 {
                write!(f, ", {} traps", node.traps)?;
            }
        }
        Ok(())
    }
}
