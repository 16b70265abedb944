//! Counters per node of a running pipeline, and the report a run ends with.
//!
//! Every source, stage and sink owns a [`NodeMetrics`] of atomic counters that its task bumps
//! once per batch, never per event; [`RunReport`] is their snapshot when the run ends, with
//! the in-flight high-water mark from the acknowledgement tracker. The report prints as the
//! summary line of `weir run` and serialises as `weir run --report json`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::pipeline::failure::FailureKind;

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
    /// Plugin calls, and the fuel they burned.
    pub calls: AtomicU64,
    pub fuel: AtomicU64,
    /// Failed events (dead-lettered or dropped by policy), by kind.
    failed: [AtomicU64; FailureKind::ALL.len()],
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
            calls: AtomicU64::new(0),
            fuel: AtomicU64::new(0),
            failed: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Counts `n` failed events of `kind`.
    pub fn fail(&self, kind: FailureKind, n: u64) {
        let i = FailureKind::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("every kind is listed");
        self.failed[i].fetch_add(n, Ordering::Relaxed);
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
            calls: get(&self.calls),
            fuel: get(&self.fuel),
            failures,
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
    pub calls: u64,
    pub fuel: u64,
    /// Failed events by failure kind (`panic`, `deadline`, …); kinds with none are left out.
    pub failures: BTreeMap<&'static str, u64>,
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
