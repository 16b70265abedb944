//! Observing a running pipeline: Prometheus `/metrics`, `/health`, the live page, the snapshot
//! `weir top` reads, `weir tap`'s streams and the progress line of `weir run`.
//!
//! Data moves one way. The data plane keeps plain atomic counters and gauges per node
//! ([`NodeMetrics`], bumped per batch or per call) and a tap hook per node; the topology hands
//! them out before the run. An [`Observer`] holds those handles, with the stages' handles
//! (their live versions, and the hot-load record that the control plane writes on them) and
//! the in-flight tracker, and reads them only when asked: a scrape ([`prometheus`]), a
//! snapshot ([`api::Snapshot`]) for `weir top` and the page, a progress tick. Nothing is
//! computed on the hot path for it, and the data plane imports nothing from here; nor does
//! this module import the control plane.
//!
//! - `api`: the snapshot's types, shared with the command line.
//! - `prometheus`: the exposition, built by a prometheus-client collector at each scrape.
//! - `routes`: the metrics listener's routes (`/metrics`, `/health`, `/snapshot`, `/`) and
//!   the admin API's (`/nodes`, `/tap/{node}`), which the admin API serves behind its token.
//!   The metrics listener itself is a [`crate::http`] listener, open to all.
//! - `tap`: a tap's HTTP stream: JSON lines from the node's tap hook, with what it lost.
//! - `page`: the live page, its HTML, CSS and script inside the binary.
//! - `history`: the page's last five minutes, sampled once a second into a bounded ring
//!   while the page's routes are served, so a page opened late still draws them.
//! - `progress`: the live line of `weir run` on a terminal.

pub mod api;
mod history;
mod page;
pub mod progress;
mod prometheus;
mod routes;
mod tap;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Metrics, OnError};
use crate::http;
use crate::pipeline::Topology;
use crate::pipeline::ack::Tracker;
use crate::pipeline::report::{CALL_BUCKETS, NodeKind, NodeMetrics};
use crate::pipeline::stage::{ReloadCounts, ShadowStatus, StageHandle};

use api::{LiveVersion, NodeSnapshot, ShadowSummary, Snapshot};

pub use routes::{admin_routes, metrics_routes};

/// What an observer reads: every node's handles, taken from the topology before the run.
pub struct Observer {
    nodes: Vec<Arc<NodeMetrics>>,
    /// Each node's inputs: the graph's edges.
    inputs: BTreeMap<String, Vec<String>>,
    stages: BTreeMap<String, Arc<StageHandle>>,
    tracker: Arc<Tracker>,
    bound: u64,
    started: Instant,
    /// The run's stop token: cancelled, the pipeline drains.
    stop: CancellationToken,
    /// Cancelled when the run has ended.
    ended: CancellationToken,
    /// The page's last minutes, and whether their sampler runs.
    history: Mutex<history::Ring>,
    sampling: AtomicBool,
}

impl Observer {
    /// An observer of `topology`, whose run stops when `stop` is cancelled.
    pub fn new(topology: &Topology, stop: CancellationToken) -> Arc<Observer> {
        let pipeline = topology.pipeline();
        let inputs = pipeline
            .stages
            .iter()
            .map(|s| (s.name.clone(), s.inputs.clone()))
            .chain(
                pipeline
                    .sinks
                    .iter()
                    .map(|s| (s.name.clone(), s.inputs.clone())),
            )
            .collect();
        let stages = pipeline
            .stages
            .iter()
            .filter_map(|s| Some((s.name.clone(), topology.stage(&s.name)?)))
            .collect();
        Arc::new(Observer {
            nodes: topology.nodes().to_vec(),
            inputs,
            stages,
            tracker: topology.tracker(),
            bound: topology.in_flight_bound(),
            started: Instant::now(),
            stop,
            ended: CancellationToken::new(),
            history: Mutex::default(),
            sampling: AtomicBool::new(false),
        })
    }

    fn lock_history(&self) -> MutexGuard<'_, history::Ring> {
        // A sample is pushed whole: a panic elsewhere cannot leave the ring half-written.
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run has ended: `/health` says `stopped`, taps end.
    pub fn end(&self) {
        self.ended.cancel();
    }

    /// `running`, `draining` or `stopped`.
    pub fn state(&self) -> &'static str {
        if self.ended.is_cancelled() {
            "stopped"
        } else if self.stop.is_cancelled() {
            "draining"
        } else {
            "running"
        }
    }

    pub fn nodes(&self) -> &[Arc<NodeMetrics>] {
        &self.nodes
    }

    /// A node's counters by name.
    pub fn node(&self, name: &str) -> Option<&Arc<NodeMetrics>> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Whether a stage's failures go to the dead-letter sink (not `on_error = "drop"`); a
    /// source's always do.
    fn dead_letters_kept(&self, node: &NodeMetrics) -> bool {
        match node.kind {
            NodeKind::Source => true,
            NodeKind::Sink => false,
            NodeKind::Stage => self
                .stages
                .get(&node.name)
                .is_some_and(|h| h.config.on_error != OnError::Drop),
        }
    }

    /// The version a stage runs now: its number in the stage's history when hot loading runs
    /// (its record on the handle), else 1 (the only version there can be).
    fn live_version(&self, stage: &str) -> Option<LiveVersion> {
        let handle = self.stages.get(stage)?;
        let current = handle.current();
        let id = handle.reloads.live().unwrap_or(current.generation + 1);
        let digest = current.digest.to_string();
        Some(LiveVersion {
            id,
            short_digest: digest.chars().take(12).collect(),
            digest,
        })
    }

    /// A stage's hot-load counters; all 0 without hot loading.
    fn reloads(&self, stage: &str) -> ReloadCounts {
        self.stages
            .get(stage)
            .map(|h| h.reloads.counts())
            .unwrap_or_default()
    }

    /// Every node's counters now.
    pub fn snapshot(&self) -> Snapshot {
        let nodes = self.nodes.iter().map(|n| self.node_snapshot(n)).collect();
        Snapshot {
            state: self.state().to_string(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            in_flight: self.tracker.in_flight(),
            in_flight_bound: self.bound,
            call_bounds: CALL_BUCKETS.to_vec(),
            nodes,
        }
    }

    fn node_snapshot(&self, node: &NodeMetrics) -> NodeSnapshot {
        let report = node.snapshot();
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let (call_buckets, call_seconds) = node.call_times.snapshot();
        let stage = self.stages.get(&node.name);
        NodeSnapshot {
            name: node.name.clone(),
            kind: kind_name(node.kind).to_string(),
            inputs: self.inputs.get(&node.name).cloned().unwrap_or_default(),
            events_in: report.events_in,
            events_out: report.events_out,
            bytes_in: report.bytes_in,
            bytes_out: report.bytes_out,
            failed: report.failed,
            failures: report
                .failures
                .iter()
                .map(|(k, n)| (k.to_string(), *n))
                .collect(),
            filtered: report.filtered,
            queued: NodeMetrics::level(&node.queued),
            calls: report.calls,
            fuel: report.fuel,
            call_buckets,
            call_seconds,
            traps: node
                .traps_by_kind()
                .into_iter()
                .map(|(k, n)| (k.to_string(), n))
                .collect(),
            instances: NodeMetrics::level(&node.instances),
            memory: NodeMetrics::level(&node.memory),
            breaker_open: stage.is_some_and(|h| h.breaker_open()),
            version: self.live_version(&node.name),
            position: get(&node.position),
            size: get(&node.size),
            watermark_ms: get(&node.watermark),
            shadow: stage
                .and_then(|h| h.shadow_stats())
                .map(|s| shadow_summary(&s.status())),
        }
    }
}

/// The counts of a shadow's status, without its samples.
fn shadow_summary(status: &ShadowStatus) -> ShadowSummary {
    let state = serde_json::to_value(status.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    ShadowSummary {
        state,
        short_digest: status.digest.chars().take(12).collect(),
        sample: status.sample,
        batches: status.batches,
        skipped: status.skipped,
        compared: status.compared,
        equal: status.equal,
        different: status.different,
        live_failed: status.live_failed.values().sum(),
        shadow_failed: status.shadow_failed.values().sum(),
        live_us_per_event: status.live_us_per_event,
        shadow_us_per_event: status.shadow_us_per_event,
    }
}

/// `source`, `stage` or `sink`: the `component_kind` label.
pub fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Source => "source",
        NodeKind::Stage => "stage",
        NodeKind::Sink => "sink",
    }
}

/// The metrics listener of a running pipeline; [`Listening::stop`] ends it.
pub struct Listening {
    pub addr: SocketAddr,
    server: http::Server,
}

impl Listening {
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// Binds `[metrics] listen` and serves the metrics routes on it, open to all (no token, no
/// TLS: what it shows is read-only, as Prometheus scrapes), under a listener's default
/// limits. An address that cannot be bound is an error of the pipeline file's
/// `metrics.listen`, with its line (exit 2).
pub async fn listen(
    file: &std::path::Path,
    config: &Metrics,
    observer: &Arc<Observer>,
) -> Result<Listening, ConfigError> {
    let listener = http::Config {
        name: "metrics".into(),
        listen: config.listen,
        tls: None,
        limits: http::Limits::default(),
        token: None,
    };
    let routes = routes::metrics_routes(observer);
    let server = http::Server::start(&listener, Router::new(), routes, CancellationToken::new())
        .await
        .map_err(|e| ConfigError {
            file: file.to_path_buf(),
            line: Some(config.listen_line),
            key: Some("metrics.listen".to_string()),
            message: e.to_string(),
        })?;
    let addr = server.addr;
    crate::notice::info(&format!("metrics listening on http://{addr}"));
    Ok(Listening { addr, server })
}
