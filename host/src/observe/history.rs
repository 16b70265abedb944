//! The live page's memory: the last [`SAMPLES`] seconds of every node, kept in the host so a
//! page opened late still draws five minutes of charts.
//!
//! Once the page's routes are served, a sampler task wakes every [`EVERY`], reads each node's
//! running totals (the same atomics a scrape reads) and the in-flight count, turns what
//! changed since its last look into per-second figures (rates, failures, call latency
//! quantiles from the call histogram's buckets, fuel per event) and pushes one [`Sample`]
//! into a bounded ring. The data plane does nothing for it: no event and no call pays for
//! the history, and the sampler's own cost is one pass over the nodes' atomics a second.
//!
//! `GET /history` turns the ring into an [`api::History`], one series per figure, with the
//! nodes' last failure reasons and the stages' hot-load changes, which the data plane and the
//! control plane keep on their own bounded rings. The reasons' messages are guest text that
//! may quote events: the open listener gives the reasons without them, and only the admin
//! API's `GET /reasons`, behind its token, gives them whole.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

use super::Observer;
use super::api::{self, ChangeEntry, NodeHistory, ReasonEntry, quantile};
use crate::pipeline::report::{CALL_BUCKETS, NodeMetrics};

/// Samples kept: five minutes at one a second. Bounds the history's memory whatever the run's
/// length (about 100 bytes per node per sample: 30 KB per node), and the size of the page's
/// `GET /history` answer.
pub const SAMPLES: usize = 300;

/// Time between two samples.
pub const EVERY: Duration = Duration::from_secs(1);

/// Failure reasons `GET /history` and `GET /reasons` list, newest first, over every node:
/// what a reader can take in. Bounds the answer with many failing nodes (each keeps
/// [`RECENT_REASONS`](crate::pipeline::dead_letter::RECENT_REASONS)).
pub const REASONS_SHOWN: usize = 12;

/// One node over one sampling interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct NodeSample {
    rate_in: f64,
    rate_out: f64,
    failed: f64,
    queued: u64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    fuel_per_event: Option<f64>,
}

/// The whole pipeline over one sampling interval.
#[derive(Debug, Clone, Default, PartialEq)]
struct Sample {
    uptime_s: f64,
    in_flight: u64,
    nodes: Vec<NodeSample>,
}

/// A node's running totals at a sample: what the next one subtracts.
#[derive(Debug, Clone, Default)]
struct Totals {
    events_in: u64,
    events_out: u64,
    failed: u64,
    calls: u64,
    fuel: u64,
    buckets: Vec<u64>,
}

impl Totals {
    fn read(node: &NodeMetrics) -> Totals {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Totals {
            events_in: get(&node.events_in),
            events_out: get(&node.events_out),
            failed: node.failed_total(),
            calls: get(&node.calls),
            fuel: get(&node.fuel),
            buckets: node.call_times.snapshot().0,
        }
    }

    /// What a node did between `before` and `self`, `secs` apart.
    fn since(&self, before: &Totals, secs: f64, queued: u64) -> NodeSample {
        let per_s = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        let calls = self.calls.saturating_sub(before.calls);
        let events = self.events_in.saturating_sub(before.events_in);
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .zip(before.buckets.iter().chain(std::iter::repeat(&0)))
            .map(|(now, then)| now.saturating_sub(*then))
            .collect();
        let ms = |q| quantile(&CALL_BUCKETS, &buckets, q).map(|s| s * 1e3);
        NodeSample {
            rate_in: per_s(self.events_in, before.events_in),
            rate_out: per_s(self.events_out, before.events_out),
            failed: per_s(self.failed, before.failed),
            queued,
            p50_ms: if calls > 0 { ms(0.5) } else { None },
            p99_ms: if calls > 0 { ms(0.99) } else { None },
            fuel_per_event: (calls > 0 && events > 0)
                .then(|| self.fuel.saturating_sub(before.fuel) as f64 / events as f64),
        }
    }
}

/// The samples kept, and the totals the next one starts from.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    samples: VecDeque<Sample>,
    last: Option<(Instant, Vec<Totals>)>,
}

impl Ring {
    /// Adds a sample, forgetting the oldest past [`SAMPLES`].
    fn push(&mut self, sample: Sample) {
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// Reads every node now; from the second look on, adds what happened since the last.
    fn look(&mut self, observer: &Observer, now: Instant) {
        let totals: Vec<Totals> = observer.nodes.iter().map(|n| Totals::read(n)).collect();
        if let Some((then, before)) = &self.last {
            let secs = now.duration_since(*then).as_secs_f64().max(1e-3);
            let nodes = observer
                .nodes
                .iter()
                .zip(totals.iter().zip(before))
                .map(|(node, (now, before))| {
                    now.since(before, secs, NodeMetrics::level(&node.queued))
                })
                .collect();
            self.push(Sample {
                uptime_s: now.duration_since(observer.started).as_secs_f64(),
                in_flight: observer.tracker.in_flight(),
                nodes,
            });
        }
        self.last = Some((now, totals));
    }

    /// The samples as one series per figure.
    fn series(&self, observer: &Observer) -> (Vec<f64>, Vec<u64>, Vec<NodeHistory>) {
        let uptime = self
            .samples
            .iter()
            .map(|s| (s.uptime_s * 1e3).round() / 1e3)
            .collect();
        let in_flight = self.samples.iter().map(|s| s.in_flight).collect();
        let nodes = observer
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let of = |f: fn(&NodeSample) -> f64| -> Vec<f64> {
                    self.samples.iter().map(|s| round(f(&s.nodes[i]))).collect()
                };
                let maybe = |f: fn(&NodeSample) -> Option<f64>| -> Vec<Option<f64>> {
                    self.samples
                        .iter()
                        .map(|s| f(&s.nodes[i]).map(round))
                        .collect()
                };
                NodeHistory {
                    name: node.name.clone(),
                    kind: super::kind_name(node.kind).to_string(),
                    rate_in: of(|n| n.rate_in),
                    rate_out: of(|n| n.rate_out),
                    failed: of(|n| n.failed),
                    queued: self.samples.iter().map(|s| s.nodes[i].queued).collect(),
                    p50_ms: maybe(|n| n.p50_ms),
                    p99_ms: maybe(|n| n.p99_ms),
                    fuel_per_event: maybe(|n| n.fuel_per_event),
                }
            })
            .collect();
        (uptime, in_flight, nodes)
    }
}

/// `v` to 4 significant digits: what a chart can show, and a third of the JSON.
fn round(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(3 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

/// Starts the sampler, once per observer: later calls do nothing. It ends with the run
/// (after one last sample), or when the observer is dropped.
pub(crate) fn start(observer: &Arc<Observer>) {
    if observer.sampling.swap(true, Ordering::Relaxed) {
        return;
    }
    let weak: Weak<Observer> = Arc::downgrade(observer);
    let ended = observer.ended.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let last = tokio::select! {
                () = ended.cancelled() => true,
                _ = tick.tick() => false,
            };
            let Some(observer) = weak.upgrade() else {
                break;
            };
            observer.lock_history().look(&observer, Instant::now());
            if last {
                break;
            }
        }
    });
}

/// The last failure reasons of every node, newest first. Their messages are guest text that
/// may quote the events (a plugin's `reject("bad card 4111…")`), so they are given only
/// `with_messages`: behind the admin token, where events are shown too.
pub(crate) fn reasons(observer: &Observer, with_messages: bool) -> Vec<ReasonEntry> {
    let mut reasons: Vec<ReasonEntry> = observer
        .nodes
        .iter()
        .flat_map(|node| {
            node.reasons.list().into_iter().map(|r| ReasonEntry {
                node: node.name.clone(),
                at_ms: r.at_ms,
                kind: r.kind.as_str().to_string(),
                message: with_messages.then_some(r.message),
                cut: r.cut,
                events: r.events,
                kept: r.kept,
            })
        })
        .collect();
    // Newest first; a stable sort keeps a batch's reasons in their order.
    reasons.reverse();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.at_ms));
    reasons.truncate(REASONS_SHOWN);
    reasons
}

/// The history now, for the open `GET /history`: the reasons without their messages.
pub(crate) fn history(observer: &Observer) -> api::History {
    let (uptime_s, in_flight, nodes) = observer.lock_history().series(observer);
    let reasons = reasons(observer, false);
    let mut changes: Vec<ChangeEntry> = observer
        .stages
        .iter()
        .flat_map(|(name, handle)| {
            handle.reloads.changes().into_iter().map(|c| ChangeEntry {
                stage: name.clone(),
                at_ms: c.at_ms,
                kind: serde_json::to_value(c.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                version: c.version,
            })
        })
        .collect();
    changes.sort_by_key(|c| c.at_ms);
    api::History {
        every_s: EVERY.as_secs_f64(),
        capacity: SAMPLES,
        now_ms: weir_sandbox::wall_ms(),
        uptime_s,
        in_flight,
        in_flight_bound: observer.bound,
        nodes,
        reasons,
        changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize) -> Sample {
        Sample {
            uptime_s: i as f64,
            in_flight: i as u64,
            nodes: vec![NodeSample::default()],
        }
    }

    #[test]
    fn the_ring_holds_at_most_its_bound_and_forgets_the_oldest() {
        let mut ring = Ring::default();
        for i in 0..SAMPLES + 50 {
            ring.push(sample(i));
            assert!(ring.samples.len() <= SAMPLES);
        }
        assert_eq!(ring.samples.len(), SAMPLES);
        assert_eq!(ring.samples.front().unwrap().uptime_s, 50.0);
        assert_eq!(ring.samples.back().unwrap().uptime_s, (SAMPLES + 49) as f64);
    }

    #[test]
    fn figures_are_kept_to_four_significant_digits() {
        assert_eq!(round(1768.1650900381267), 1768.0);
        assert_eq!(round(0.054435483870967735), 0.05444);
        assert_eq!(round(0.0), 0.0);
    }

    #[test]
    fn a_second_of_calls_gives_rates_quantiles_and_fuel_per_event() {
        let before = Totals {
            buckets: vec![0; CALL_BUCKETS.len() + 1],
            ..Totals::default()
        };
        let mut buckets = vec![0; CALL_BUCKETS.len() + 1];
        // 10 calls of at most 1 ms.
        buckets[3] = 10;
        let now = Totals {
            events_in: 1000,
            events_out: 900,
            failed: 100,
            calls: 10,
            fuel: 50_000,
            buckets,
        };
        let s = now.since(&before, 2.0, 7);
        assert_eq!((s.rate_in, s.rate_out, s.failed), (500.0, 450.0, 50.0));
        assert_eq!(s.queued, 7);
        assert_eq!(s.fuel_per_event, Some(50.0));
        let p99 = s.p99_ms.unwrap();
        assert!(p99 > 0.5 && p99 <= 1.0, "{p99}");
        // A quiet second: no quantile, no fuel per event (gaps, not zeros).
        let quiet = now.since(&now, 1.0, 0);
        assert_eq!((quiet.p50_ms, quiet.fuel_per_event), (None, None));
        assert_eq!(quiet.rate_in, 0.0);
    }
}
