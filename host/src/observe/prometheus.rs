//! The Prometheus exposition: a prometheus-client [`Collector`] that reads the observer's
//! handles at each scrape and writes the text format (version 0.0.4).
//!
//! Names follow Vector's (`component_*` with `component_id` and `component_kind` labels),
//! prefixed `weir_`; what only a Wasm host can tell is `weir_stage_*`. Counters of failures
//! by kind list every kind a node can have, at 0 until it happens, so that `rate()` sees the
//! first failure. Nothing is kept between scrapes: a scrape costs one pass over the nodes'
//! atomics, and a pipeline nobody scrapes pays nothing for it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Observer, kind_name};
use crate::pipeline::FailureKind;
use crate::pipeline::report::{CALL_BUCKETS, NodeKind, NodeMetrics};
use crate::pipeline::state::OPERATIONS;

/// The exposition of every metric, now.
pub(crate) fn exposition(observer: &Arc<Observer>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(Arc::clone(observer))));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// A counter's value now.
fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// One scrape of an observer.
struct Scrape(Arc<Observer>);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

/// The labels of one node.
fn labels(node: &NodeMetrics) -> [(&'static str, &str); 2] {
    [
        ("component_id", node.name.as_str()),
        ("component_kind", kind_name(node.kind)),
    ]
}

/// The failure kinds a node of `kind` can count.
fn failure_kinds(kind: NodeKind) -> impl Iterator<Item = FailureKind> {
    FailureKind::ALL.into_iter().filter(move |k| match kind {
        NodeKind::Source => *k == FailureKind::Oversized,
        NodeKind::Stage => *k != FailureKind::Oversized,
        NodeKind::Sink => false,
    })
}

fn counter(
    m: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    v: u64,
) -> Result<(), std::fmt::Error> {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

fn gauge(
    m: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    v: i64,
) -> Result<(), std::fmt::Error> {
    m.encode_family(labels)?.encode_gauge(&v)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.components(&mut encoder)?;
        self.failures(&mut encoder)?;
        self.stages(&mut encoder)?;
        self.stage_states(&mut encoder)?;
        self.keyed_state(&mut encoder)?;
        self.shadows(&mut encoder)?;
        self.buffers(&mut encoder)
    }
}

impl Scrape {
    /// Events and bytes in and out of every node.
    fn components(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        type Read = fn(&NodeMetrics) -> u64;
        let families: [(&str, &str, Read); 5] = [
            (
                "weir_component_received_events",
                "Events the component received.",
                |n| get(&n.events_in),
            ),
            (
                "weir_component_sent_events",
                "Events the component sent on (a sink: wrote).",
                |n| get(&n.events_out),
            ),
            (
                "weir_component_received_bytes",
                "Bytes of event values the component received.",
                |n| get(&n.bytes_in),
            ),
            (
                "weir_component_sent_bytes",
                "Bytes of event values the component sent on (a sink: wrote).",
                |n| get(&n.bytes_out),
            ),
            (
                "weir_component_filtered_events",
                "Events a stage turned into no output on purpose.",
                |n| get(&n.filtered),
            ),
        ];
        for (name, help, read) in families {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for node in self.0.nodes() {
                counter(&mut m, &labels(node), read(node))?;
            }
        }
        Ok(())
    }

    /// Failed events by kind, and those of them written to the dead-letter sink.
    fn failures(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshots: Vec<_> = self.0.nodes().iter().map(|n| (n, n.snapshot())).collect();
        let mut m = encoder.encode_descriptor(
            "weir_component_errors",
            "Events that failed at the component (dead-lettered or dropped by policy), by failure kind.",
            None,
            MetricType::Counter,
        )?;
        for (node, report) in &snapshots {
            for kind in failure_kinds(node.kind) {
                let [id, k] = labels(node);
                let n = report.failures.get(kind.as_str()).copied().unwrap_or(0);
                counter(&mut m, &[id, k, ("kind", kind.as_str())], n)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "weir_dead_letters",
            "Failed events sent to the dead-letter sink, by the component that failed them and failure kind.",
            None,
            MetricType::Counter,
        )?;
        for (node, report) in &snapshots {
            let kept = self.0.dead_letters_kept(node);
            for kind in failure_kinds(node.kind) {
                let [id, k] = labels(node);
                let n = report.failures.get(kind.as_str()).copied().unwrap_or(0);
                counter(
                    &mut m,
                    &[id, k, ("kind", kind.as_str())],
                    if kept { n } else { 0 },
                )?;
            }
        }
        Ok(())
    }

    fn stage_nodes(&self) -> impl Iterator<Item = &Arc<NodeMetrics>> {
        self.0.nodes().iter().filter(|n| n.kind == NodeKind::Stage)
    }

    /// What a stage's plugin calls cost: time, fuel, traps, retries, instances replaced.
    fn stages(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = encoder.encode_descriptor(
            "weir_stage_call_duration_seconds",
            "Wall-clock time of each plugin call (one call per batch).",
            None,
            MetricType::Histogram,
        )?;
        for node in self.stage_nodes() {
            let (counts, sum) = node.call_times.snapshot();
            let buckets: Vec<(f64, u64)> = CALL_BUCKETS
                .iter()
                .copied()
                .zip(counts.iter().copied())
                .collect();
            let count = counts.iter().sum();
            m.encode_family(&labels(node))?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        type Read = fn(&NodeMetrics) -> u64;
        let families: [(&str, &str, Read); 6] = [
            ("weir_stage_calls", "Plugin calls.", |n| get(&n.calls)),
            (
                "weir_stage_fuel_consumed",
                "Fuel the plugin's calls burned (roughly, wasm instructions).",
                |n| get(&n.fuel),
            ),
            (
                "weir_stage_retries",
                "Events sent back to the plugin after a `retry` outcome.",
                |n| get(&n.retries),
            ),
            (
                "weir_stage_recycled",
                "Instances replaced before their memory reached its cap.",
                |n| get(&n.recycled),
            ),
            (
                "weir_stage_timers_fired",
                "Timers of the stage that fired (event time and processing time).",
                |n| get(&n.timers_fired),
            ),
            (
                "weir_stage_reserved_headers_stripped",
                "Header references with a reserved weir. name that the plugin wrote and the host removed.",
                |n| get(&n.reserved_stripped),
            ),
        ];
        for (name, help, read) in families {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for node in self.stage_nodes() {
                counter(&mut m, &labels(node), read(node))?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "weir_stage_traps",
            "Traps of the stage's instances (each replaced the instance), by kind.",
            None,
            MetricType::Counter,
        )?;
        for node in self.stage_nodes() {
            let traps = node.traps_by_kind();
            for kind in FailureKind::ALL.into_iter().filter(|k| k.is_trap()) {
                let [id, k] = labels(node);
                let n = traps.get(kind.as_str()).copied().unwrap_or(0);
                counter(&mut m, &[id, k, ("kind", kind.as_str())], n)?;
            }
        }
        Ok(())
    }

    /// A stage's instances, memory, breaker, version and reloads.
    fn stage_states(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        type Level = fn(&Scrape, &NodeMetrics) -> i64;
        let gauges: [(&str, &str, Level); 4] = [
            (
                "weir_stage_instances",
                "Live instances of the stage's plugin.",
                |_, n| NodeMetrics::level(&n.instances) as i64,
            ),
            (
                "weir_watermark_seconds",
                "The stage's input watermark: the event time (whole seconds since the Unix epoch) up to which its inputs are complete; 0 before any, and the end of the input reads as the largest value.",
                |_, n| {
                    let ms = n.watermark.load(std::sync::atomic::Ordering::Relaxed);
                    if ms == u64::MAX {
                        i64::MAX
                    } else {
                        (ms / 1000) as i64
                    }
                },
            ),
            (
                "weir_stage_memory_bytes",
                "Linear memory of the stage's live instances.",
                |_, n| NodeMetrics::level(&n.memory) as i64,
            ),
            (
                "weir_stage_breaker_open",
                "1 while the stage's circuit breaker is open (events fail without a call).",
                |scrape, n| {
                    let stage = scrape.0.stages.get(&n.name);
                    i64::from(stage.is_some_and(|h| h.breaker_open()))
                },
            ),
        ];
        for (name, help, level) in gauges {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for node in self.stage_nodes() {
                gauge(&mut m, &labels(node), level(self, node))?;
            }
        }
        let mut m = encoder.encode_descriptor("weir_stage_version_info", "1 for the version the stage runs now: its sha256 and its number in the stage's history.", None, MetricType::Gauge)?;
        for node in self.stage_nodes() {
            if let Some(v) = self.0.live_version(&node.name) {
                let [id, k] = labels(node);
                let number = v.id.to_string();
                gauge(
                    &mut m,
                    &[
                        id,
                        k,
                        ("digest", v.digest.as_str()),
                        ("version", number.as_str()),
                    ],
                    1,
                )?;
            }
        }
        let mut m = encoder.encode_descriptor("weir_stage_reloads", "Hot loads of the stage by result: swapped (a new version went live), refused (the old one kept serving), rolled-back (asked for), canary-rolled-back.", None, MetricType::Counter)?;
        for node in self.stage_nodes() {
            let c = self.0.reloads(&node.name);
            let results = [
                ("swapped", c.swaps),
                ("refused", c.refused),
                (
                    "rolled-back",
                    c.rollbacks.saturating_sub(c.canary_rollbacks),
                ),
                ("canary-rolled-back", c.canary_rollbacks),
            ];
            for (result, n) in results {
                let [id, k] = labels(node);
                counter(&mut m, &[id, k, ("result", result)], n)?;
            }
        }
        Ok(())
    }

    /// The comparison of each stage that runs a shadow, or ran one: what its latest shadow
    /// counted, with the `state` it is in and its `digest` as labels.
    fn shadows(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shadows: Vec<_> = self
            .stage_nodes()
            .filter_map(|n| {
                let handle = self.0.stages.get(&n.name)?;
                Some((n, handle.shadow_stats()?.status()))
            })
            .collect();
        if shadows.is_empty() {
            return Ok(());
        }
        let state = |s: &crate::pipeline::stage::ShadowStatus| match s.state {
            crate::pipeline::stage::ShadowState::Running => "running",
            crate::pipeline::stage::ShadowState::Stopped => "stopped",
            crate::pipeline::stage::ShadowState::Promoted => "promoted",
            crate::pipeline::stage::ShadowState::Replaced => "replaced",
        };
        let mut m = encoder.encode_descriptor("weir_shadow_events", "Input events of the stage's shadow by result: equal or different (both versions passed it), live-failed or shadow-failed (by kind: not compared).", None, MetricType::Counter)?;
        for (node, s) in &shadows {
            let [id, k] = labels(node);
            let base = [id, k, ("state", state(s)), ("digest", s.digest.as_str())];
            let plain = [("equal", s.equal), ("different", s.different)];
            for (result, n) in plain {
                let l: Vec<(&str, &str)> = base
                    .iter()
                    .copied()
                    .chain([("result", result), ("kind", "")])
                    .collect();
                counter(&mut m, &l, n)?;
            }
            let sides = [
                ("live-failed", &s.live_failed),
                ("shadow-failed", &s.shadow_failed),
            ];
            for (result, kinds) in sides {
                for (kind, n) in kinds {
                    let l: Vec<(&str, &str)> = base
                        .iter()
                        .copied()
                        .chain([("result", result), ("kind", kind.as_str())])
                        .collect();
                    counter(&mut m, &l, *n)?;
                }
            }
        }
        let mut m = encoder.encode_descriptor("weir_shadow_batches", "Input batches copied to the stage's shadow by result: compared, or skipped because its queue was full.", None, MetricType::Counter)?;
        for (node, s) in &shadows {
            for (result, n) in [("compared", s.batches), ("skipped", s.skipped)] {
                let [id, k] = labels(node);
                counter(&mut m, &[id, k, ("result", result)], n)?;
            }
        }
        let mut m = encoder.encode_descriptor("weir_shadow_event_nanoseconds", "Mean time per event on each side of the stage's shadow comparison (live: the call and the sorting of its outcomes; shadow: the same on the candidate).", None, MetricType::Gauge)?;
        for (node, s) in &shadows {
            let sides = [
                ("live", s.live_us_per_event),
                ("shadow", s.shadow_us_per_event),
            ];
            for (side, us) in sides {
                let [id, k] = labels(node);
                gauge(&mut m, &[id, k, ("side", side)], (us * 1e3) as i64)?;
            }
        }
        Ok(())
    }

    /// The keyed state of each stage whose plugin keeps state: its size and its operations.
    fn keyed_state(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stateful = || {
            self.stage_nodes().filter_map(|n| {
                let handle = self.0.stages.get(&n.name)?;
                handle.state.attached().then_some((n, &handle.state))
            })
        };
        let mut m = encoder.encode_descriptor(
            "weir_state_keys",
            "Keys in the stage's state, as of its last completed call.",
            None,
            MetricType::Gauge,
        )?;
        for (node, state) in stateful() {
            gauge(&mut m, &labels(node), state.size().0 as i64)?;
        }
        let mut m = encoder.encode_descriptor(
            "weir_state_bytes",
            "Bytes of keys and values in the stage's state, as of its last completed call.",
            None,
            MetricType::Gauge,
        )?;
        for (node, state) in stateful() {
            gauge(&mut m, &labels(node), state.size().1 as i64)?;
        }
        let mut m = encoder.encode_descriptor(
            "weir_state_cache_bytes",
            "What the stage's state entries held in memory cost (with the state on disk, at most its `state_cache_bytes` once the store holds what they wrote).",
            None,
            MetricType::Gauge,
        )?;
        for (node, state) in stateful() {
            gauge(&mut m, &labels(node), state.cached().0 as i64)?;
        }
        let mut m = encoder.encode_descriptor(
            "weir_state_operations",
            "State operations the stage's plugin made, by kind (a batched call counts each key).",
            None,
            MetricType::Counter,
        )?;
        for (node, state) in stateful() {
            for (op, n) in OPERATIONS.iter().zip(state.operations()) {
                let [id, k] = labels(node);
                counter(&mut m, &[id, k, ("op", op)], n)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "weir_timers_pending",
            "Timers the stage's plugin has set that have not fired, as of its last completed call.",
            None,
            MetricType::Gauge,
        )?;
        for (node, state) in stateful() {
            gauge(&mut m, &labels(node), state.timers() as i64)?;
        }
        let mut m = encoder.encode_descriptor(
            "weir_late_events",
            "Events the stage's plugin called late, by the watermark they saw (dead-lettered as `late`, or dropped with `late = \"drop\"`).",
            None,
            MetricType::Counter,
        )?;
        for (node, _) in stateful() {
            let late = node.snapshot().failures.get("late").copied().unwrap_or(0);
            counter(&mut m, &labels(node), late)?;
        }
        Ok(())
    }

    /// Queues in front of nodes, events in flight, and what the sources have left to read.
    fn buffers(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = encoder.encode_descriptor("weir_buffer_events", "Events queued in front of the component (its input channel); 0 inside a chain of stages.", None, MetricType::Gauge)?;
        for node in self.0.nodes().iter().filter(|n| n.kind != NodeKind::Source) {
            gauge(
                &mut m,
                &labels(node),
                NodeMetrics::level(&node.queued) as i64,
            )?;
        }
        let tracker = &self.0.tracker;
        let mut m = encoder.encode_descriptor(
            "weir_in_flight_events",
            "Events the sources emitted that are not yet written or dead-lettered.",
            None,
            MetricType::Gauge,
        )?;
        m.encode_gauge(&(tracker.in_flight() as i64))?;
        let mut m = encoder.encode_descriptor(
            "weir_in_flight_bound",
            "The most events that can be in flight, from the configuration.",
            None,
            MetricType::Gauge,
        )?;
        m.encode_gauge(&(self.0.bound as i64))?;
        let sized: Vec<_> = self
            .0
            .nodes()
            .iter()
            .filter(|n| n.size.load(Ordering::Relaxed) > 0)
            .collect();
        let mut m = encoder.encode_descriptor("weir_source_lag_bytes", "Bytes a source with a known size has yet to read (a file: its size times `repeat`, less its position).", None, MetricType::Gauge)?;
        for node in &sized {
            let left = node
                .size
                .load(Ordering::Relaxed)
                .saturating_sub(node.position.load(Ordering::Relaxed));
            gauge(&mut m, &labels(node), left as i64)?;
        }
        let mut m = encoder.encode_descriptor(
            "weir_source_size_bytes",
            "Bytes a source with a known size reads in all.",
            None,
            MetricType::Gauge,
        )?;
        for node in &sized {
            gauge(
                &mut m,
                &labels(node),
                node.size.load(Ordering::Relaxed) as i64,
            )?;
        }
        Ok(())
    }
}
