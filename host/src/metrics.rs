//! Counters per node of a running pipeline, and the report a run ends with.
//!
//! Every source, stage and sink owns a [`NodeMetrics`] of atomic counters that its task bumps
//! once per batch, never per event; [`RunReport`] is their snapshot when the run ends, with
//! the in-flight high-water mark from the acknowledgement tracker.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::delivery::FailureKind;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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
    pub bytes_out: AtomicU64,
    /// Events that failed at this stage (dead-lettered or dropped by policy).
    pub failed: AtomicU64,
    /// Instances replaced after a trap.
    pub traps: AtomicU64,
    /// Events sent back to the plugin after a `retry` outcome.
    pub retries: AtomicU64,
    /// Failed events by failure kind.
    by_kind: Mutex<BTreeMap<&'static str, u64>>,
}

impl NodeMetrics {
    pub fn new(name: &str, kind: NodeKind) -> NodeMetrics {
        NodeMetrics {
            name: name.to_string(),
            kind,
            events_in: AtomicU64::new(0),
            events_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            traps: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            by_kind: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts `n` failed events of `kind`. Called once per run of equal kinds in a batch,
    /// so the lock is taken per batch, not per event, even when a breaker fails every event.
    pub fn fail(&self, kind: FailureKind, n: u64) {
        self.failed.fetch_add(n, Ordering::Relaxed);
        let mut by_kind = self.by_kind.lock().unwrap_or_else(|e| e.into_inner());
        *by_kind.entry(kind.as_str()).or_default() += n;
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> NodeReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NodeReport {
            name: self.name.clone(),
            kind: self.kind,
            events_in: get(&self.events_in),
            events_out: get(&self.events_out),
            bytes_out: get(&self.bytes_out),
            failed: get(&self.failed),
            traps: get(&self.traps),
            retries: get(&self.retries),
            failures: self
                .by_kind
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// A node's counters at the end of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeReport {
    pub name: String,
    pub kind: NodeKind,
    pub events_in: u64,
    pub events_out: u64,
    pub bytes_out: u64,
    pub failed: u64,
    pub traps: u64,
    pub retries: u64,
    /// Failed events by failure kind (`panic`, `deadline`, …).
    pub failures: BTreeMap<&'static str, u64>,
}

/// What a finished run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub elapsed: Duration,
    pub nodes: Vec<NodeReport>,
    /// Events the sources emitted.
    pub events_in: u64,
    /// Events the sinks wrote (each sink counts its own).
    pub events_out: u64,
    pub dead_lettered: u64,
    /// The most events in flight at once: emitted, not yet written or dead-lettered.
    pub in_flight_max: u64,
}

impl RunReport {
    pub fn node(&self, name: &str) -> Option<&NodeReport> {
        self.nodes.iter().find(|n| n.name == name)
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
        for node in self.nodes.iter().filter(|n| n.kind == NodeKind::Stage) {
            write!(
                f,
                " | {}: {} -> {}",
                node.name, node.events_in, node.events_out
            )?;
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
