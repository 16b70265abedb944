//! One stage inside a chain worker: a batch in, the stage's outputs, dead letters and retries
//! out.
//!
//! [`StageRunner::run`] is a stage's whole per-batch policy, in order: pick up a swapped-in
//! version (or keep the one a retry started on), ask the circuit breaker, call the plugin
//! ([`isolate`] bisects on traps and on outputs the sandbox refused; the sandbox has already
//! charged each output and removed the reserved `weir.` headers a plugin wrote, which are
//! counted here), apply the per-input output caps, and sort every input event into exactly one fate: its outputs go on, a
//! `reject` or a broken cap becomes a dead letter, a `retry` is set aside for another attempt
//! (or dead-lettered once attempts run out). The common case, a call that went well, hands the
//! plugin's output buffer on as the next batch without copying an event.
//!
//! A runner owns its processor (a plugin instance, or native code): a trap drops it and the
//! next call makes a fresh one. It keeps at most one instance of an older version, for the
//! retries of batches that version started.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use weir_sandbox::{Events, GuestFailureKind, Output, Processor, TrapKind, Trapped};

use crate::config::OnError;
use crate::pipeline::batch::Batch;
use crate::pipeline::dead_letter::{DeadLetters, Reason};
use crate::pipeline::failure::FailureKind;
use crate::pipeline::origin::{self, Origin};
use crate::pipeline::pool;
use crate::pipeline::provenance::Stamp;
use crate::pipeline::report::NodeMetrics;
use crate::pipeline::stage::caps;
use crate::pipeline::stage::isolate::{Piece, isolate};
use crate::pipeline::stage::version::{StageHandle, StageVersion};

/// Trap warnings a runner logs per interval; the rest are counted and summarised. Blocks a
/// plugin that traps on every batch from flooding the host log.
const TRAP_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// What became of one batch at one stage.
pub(crate) struct StageResult {
    /// The outputs, derived from the input batch; may be empty.
    pub output: Batch,
    pub dead: Option<DeadLetters>,
    /// Events to send to this stage again after a backoff.
    pub retry: Option<Retry>,
    /// Set when this batch tripped the stage's circuit breaker.
    pub tripped: Option<String>,
}

/// Events that asked for another attempt.
pub(crate) struct Retry {
    pub batch: Batch,
    /// The attempt they go to (1 for the first retry).
    pub attempt: u32,
    /// The version they started on, which finishes them.
    pub version: Arc<StageVersion>,
}

pub(crate) struct StageRunner {
    pub handle: Arc<StageHandle>,
    rx: watch::Receiver<Arc<StageVersion>>,
    version: Arc<StageVersion>,
    processor: Option<Box<dyn Processor>>,
    /// An instance of an older version, and that version's generation.
    old: Option<Box<dyn Processor>>,
    old_generation: u64,
    stamp: Stamp,
    /// The stage's id in the paths of tracked events ([`origin::step`]).
    stage_id: u64,
    /// Reused across batches: the pieces of the current one.
    pieces: Vec<Piece>,
    traps_logged: (Instant, u64),
    /// The instances and memory this runner last added to the stage's gauges.
    counted: (i64, i64),
}

impl StageRunner {
    /// A runner with its first processor made, so that a plugin whose `init` fails stops the
    /// pipeline before any event is read.
    pub(crate) fn new(handle: Arc<StageHandle>) -> Result<StageRunner, Trapped> {
        let rx = handle.subscribe();
        let version = rx.borrow().clone();
        let processor = version.factory.make()?;
        let stage_id = origin::stage_id(&handle.config.name);
        let mut runner = StageRunner {
            handle,
            rx,
            version,
            processor: Some(processor),
            old: None,
            old_generation: 0,
            stamp: Stamp::default(),
            stage_id,
            pieces: Vec::new(),
            traps_logged: (Instant::now(), 0),
            counted: (0, 0),
        };
        runner.count_instances();
        Ok(runner)
    }

    /// Brings the stage's instance and memory gauges up to date with this runner's
    /// instances: two loads and, when something changed, two atomic adds, once per call.
    fn count_instances(&mut self) {
        let held = [&self.processor, &self.old];
        let live = held.iter().filter(|p| p.is_some()).count() as i64;
        let memory: i64 = held
            .iter()
            .filter_map(|p| p.as_ref())
            .map(|p| p.memory() as i64)
            .sum();
        let (was_live, was_memory) = self.counted;
        let metrics = &self.handle.metrics;
        if live != was_live {
            NodeMetrics::shift(&metrics.instances, live - was_live);
        }
        if memory != was_memory {
            NodeMetrics::shift(&metrics.memory, memory - was_memory);
        }
        self.counted = (live, memory);
    }

    /// Picks up a new version, if one was swapped in since the last batch; the old
    /// instance is dropped as the worker moves on.
    fn refresh(&mut self) {
        if self.rx.has_changed().unwrap_or(false) {
            self.version = self.rx.borrow_and_update().clone();
            self.processor = None;
            self.count_instances();
        }
    }

    /// Runs one batch. `attempt` is 0 for a batch from the input, n for its n-th retry, which
    /// runs on `pinned`, the version that started it.
    pub(crate) fn run(
        &mut self,
        input: Batch,
        attempt: u32,
        pinned: Option<Arc<StageVersion>>,
    ) -> StageResult {
        let version = match pinned {
            Some(v) => v,
            None => {
                self.refresh();
                // A version the canary condemned gets no more events: wait for the rollback.
                self.handle.wait_if_condemned(self.version.generation);
                self.refresh();
                Arc::clone(&self.version)
            }
        };
        let metrics = Arc::clone(&self.handle.metrics);
        let n = input.len();
        NodeMetrics::add(&metrics.events_in, n as u64);
        NodeMetrics::add(&metrics.bytes_in, input.events.value_bytes());
        let refusal = self
            .handle
            .breaker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(version.generation, Instant::now());
        if let Some(reason) = refusal {
            return self.refuse(input, &version, attempt, reason);
        }

        // The calls' state writes are logged against this source batch (with a data folder);
        // a stage without state takes no lock for it.
        if self.handle.state.attached() {
            self.handle.state.set_tag(input.ack.tag());
        }
        let mut pieces = std::mem::take(&mut self.pieces);
        let traps = isolate(
            &input.events,
            &mut |events| self.call(&version, events),
            &mut pieces,
        );
        let result = self.settle(input, &version, attempt, &mut pieces, traps);
        self.pieces = pieces;
        result
    }

    /// The breaker is open: every event fails at once, without a call.
    fn refuse(
        &mut self,
        input: Batch,
        version: &Arc<StageVersion>,
        attempt: u32,
        reason: String,
    ) -> StageResult {
        let n = input.len();
        self.handle.metrics.fail(FailureKind::BreakerOpen, n as u64);
        self.handle.record(version.generation, n as u64, n as u64);
        let dead = (self.handle.config.on_error != OnError::Drop).then(|| {
            let mut dead = self.letters(&input, version);
            let reason = Reason {
                kind: FailureKind::BreakerOpen,
                message: Arc::from(reason),
                attempts: attempt,
            };
            for event in input.events.iter() {
                dead.push(event, reason.clone(), input.origin_of(event.index()));
            }
            dead
        });
        StageResult {
            output: input.derive(Events::new(), Default::default(), None),
            dead,
            retry: None,
            tripped: None,
        }
    }

    fn letters(&self, input: &Batch, version: &StageVersion) -> DeadLetters {
        let letters = DeadLetters::new(
            Arc::clone(&self.handle.name),
            Arc::clone(&version.digest),
            input.provenance.clone(),
            input.ack.clone(),
        );
        // `drop` counts failed events but writes none: no need to copy them.
        if self.handle.config.on_error == OnError::Drop {
            letters.counted_only()
        } else {
            letters
        }
    }

    /// One call on a processor of `version`; after a trap it is dropped and the next call
    /// makes a fresh one. Also says whether a limit refused one of the call's state writes.
    fn call(&mut self, version: &StageVersion, events: &Events) -> (Result<Output, Trapped>, bool) {
        let metrics = Arc::clone(&self.handle.metrics);
        let slot = if version.generation == self.version.generation {
            &mut self.processor
        } else {
            if self.old_generation != version.generation {
                self.old = None;
                self.old_generation = version.generation;
            }
            &mut self.old
        };
        let processor = match slot {
            Some(p) => p,
            None => match version.factory.make() {
                Ok(p) => slot.insert(p),
                Err(trapped) => return (Err(trapped), false),
            },
        };
        let result = call_on(processor, events, &metrics);
        let state_limited = processor.last_state_refusals() > 0;
        let stripped = processor.last_stripped();
        if stripped > 0 && result.is_ok() {
            NodeMetrics::add(&metrics.reserved_stripped, stripped);
            version.warn_reserved(&self.handle.name, stripped);
        }
        let recycle = processor.wants_recycling();
        if let Err(trapped) = &result
            && trapped.kind.poisons()
        {
            *slot = None;
            self.log_trap(trapped, events.len());
        } else if recycle {
            // Its memory nears its cap: a fresh instance now costs less than a trap later.
            *slot = None;
            NodeMetrics::add(&metrics.recycled, 1);
        }
        self.count_instances();
        (result, state_limited)
    }

    fn log_trap(&mut self, trapped: &Trapped, events: usize) {
        let (since, quiet) = &mut self.traps_logged;
        if since.elapsed() < TRAP_LOG_INTERVAL && *quiet > 0 {
            *quiet += 1;
            return;
        }
        let earlier = quiet.saturating_sub(1);
        *since = Instant::now();
        *quiet = 1;
        tracing::warn!(stage = %self.handle.name, events, unlogged = earlier,
            "plugin trapped ({trapped}); replacing the instance");
    }

    /// Sorts every input event into one fate and builds the stage's result.
    fn settle(
        &mut self,
        input: Batch,
        version: &Arc<StageVersion>,
        attempt: u32,
        pieces: &mut Vec<Piece>,
        traps: u32,
    ) -> StageResult {
        let provenance = self.stamp.stamp(&input.provenance, &version.header);
        let (events, mut sorted) = self.outputs(&input, version, attempt, pieces);
        pieces.clear();
        if traps > 0 {
            tracing::debug!(stage = %self.handle.name, traps, "isolated the events that trapped");
        }
        let tripped = self.account(&events, &sorted, input.len(), version.generation);
        let retry = sorted.retry.take().map(|events| {
            NodeMetrics::add(&self.handle.metrics.retries, events.len() as u64);
            Retry {
                batch: input.derive(events, input.provenance.clone(), sorted.retry_origin.take()),
                attempt: attempt + 1,
                version: Arc::clone(version),
            }
        });
        let Batch {
            events: consumed,
            ack,
            ..
        } = input;
        // The input's buffers are done with: the next batch a source fills can have them.
        pool::recycle(consumed);
        StageResult {
            output: Batch {
                events,
                ack,
                provenance,
                origin: sorted.origin,
            },
            dead: sorted.dead,
            retry,
            tripped,
        }
    }

    /// The events the stage passes on, and the fates of the rest. The fast path: one piece
    /// that failed nothing and broke no cap is passed on as the guest wrote it.
    fn outputs(
        &mut self,
        input: &Batch,
        version: &Arc<StageVersion>,
        attempt: u32,
        pieces: &mut Vec<Piece>,
    ) -> (Events, Sorted) {
        let n = input.len();
        let limits = &self.handle.config.limits;
        let fast = match &pieces[..] {
            [
                Piece {
                    result: Ok(out), ..
                },
            ] => out.failures.is_empty() && caps::violations(out, n, limits).is_empty(),
            _ => false,
        };
        let mut sorted = Sorted::default();
        if fast {
            let Some(Piece {
                result: Ok(out), ..
            }) = pieces.pop()
            else {
                unreachable!("checked above")
            };
            sorted.filtered = out.counts.iter().filter(|&&c| c == 0).count();
            sorted.origin = input
                .origin
                .as_ref()
                .map(|o| o.outputs(&out.counts, self.stage_id));
            return (out.events, sorted);
        }
        sorted.origin = input.origin.as_ref().map(Origin::empty);
        sorted.retry_origin = input.origin.as_ref().map(Origin::empty);
        let mut dead = self.letters(input, version);
        let events = self.sort(input, attempt, pieces, &mut dead, &mut sorted);
        if !dead.is_empty() {
            sorted.dead = Some(dead);
        }
        (events, sorted)
    }

    /// Counts a settled batch in the stage's metrics, its version's canary and its breaker;
    /// returns why the breaker tripped, if this batch tripped it.
    fn account(
        &self,
        events: &Events,
        sorted: &Sorted,
        n: usize,
        generation: u64,
    ) -> Option<String> {
        let metrics = &self.handle.metrics;
        NodeMetrics::add(&metrics.events_out, events.len() as u64);
        NodeMetrics::add(&metrics.bytes_out, events.value_bytes());
        NodeMetrics::add(&metrics.filtered, sorted.filtered as u64);
        let failed = sorted.dead.as_ref().map_or(0, DeadLetters::len);
        if let Some(dead) = &sorted.dead {
            for (kind, count) in dead.kinds() {
                metrics.fail(kind, count);
            }
        }
        self.handle.record(generation, n as u64, failed as u64);
        let last = sorted
            .dead
            .as_ref()
            .and_then(|d| d.reasons.last())
            .map(|r| format!("{}: {}", r.kind.as_str(), r.message));
        self.handle
            .breaker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(generation, failed, n, last.as_deref(), Instant::now())
    }

    /// The slow path: some events failed, asked for a retry, or broke a cap, or the batch
    /// was bisected. Copies each kept output into a new buffer.
    fn sort(
        &self,
        input: &Batch,
        attempt: u32,
        pieces: &mut Vec<Piece>,
        dead: &mut DeadLetters,
        sorted: &mut Sorted,
    ) -> Events {
        let config = &self.handle.config;
        let mut out = Events::new();
        for piece in pieces.drain(..) {
            let output = match piece.result {
                Ok(output) => output,
                Err(trapped) => {
                    let reason = Reason {
                        kind: FailureKind::from(trapped.kind),
                        message: Arc::from(trapped.message),
                        attempts: attempt + 1,
                    };
                    for i in piece.range {
                        dead.push(input.events.get(i), reason.clone(), input.origin_of(i));
                    }
                    continue;
                }
            };
            let len = piece.range.len();
            let mut broken = caps::violations(&output, len, &config.limits)
                .into_iter()
                .peekable();
            let mut failures = output.failures.iter().peekable();
            for (j, outs) in output.ranges(len).enumerate() {
                let event = input.events.get(piece.range.start + j);
                if let Some(f) = failures.next_if(|f| f.index as usize == j) {
                    let (kind, retry) = match f.kind {
                        // Believed only from a call in which a limit did refuse a write.
                        GuestFailureKind::Reject
                            if piece.state_limited && f.reason.starts_with("state-limit") =>
                        {
                            (FailureKind::StateLimit, false)
                        }
                        GuestFailureKind::Reject => (FailureKind::Reject, false),
                        GuestFailureKind::Retry if attempt < config.retries => {
                            (FailureKind::RetriesExhausted, true)
                        }
                        GuestFailureKind::Retry => (FailureKind::RetriesExhausted, false),
                    };
                    if retry {
                        sorted
                            .retry
                            .get_or_insert_with(Events::new)
                            .push_event(event);
                        if let (Some(from), Some(to)) = (&input.origin, &mut sorted.retry_origin) {
                            to.push_same(from, event.index());
                        }
                    } else {
                        let reason = Reason {
                            kind,
                            message: Arc::from(f.reason.as_str()),
                            attempts: attempt + 1,
                        };
                        dead.push(event, reason, input.origin_of(event.index()));
                    }
                } else if let Some((_, message)) = broken.next_if(|(i, _)| *i == j) {
                    let reason = Reason {
                        kind: FailureKind::Trap(TrapKind::OutputCap),
                        message: Arc::from(message),
                        attempts: attempt + 1,
                    };
                    dead.push(event, reason, input.origin_of(event.index()));
                } else {
                    if outs.is_empty() {
                        sorted.filtered += 1;
                    }
                    for (k, o) in outs.enumerate() {
                        out.push_event(output.events.get(o));
                        if let (Some(from), Some(to)) = (&input.origin, &mut sorted.origin) {
                            to.push_output(from, event.index(), self.stage_id, k);
                        }
                    }
                }
            }
        }
        out
    }
}

/// What the slow path found besides the kept outputs.
#[derive(Default)]
struct Sorted {
    dead: Option<DeadLetters>,
    retry: Option<Events>,
    filtered: usize,
    /// In a tracked batch: the origins of the kept outputs and of the retried events.
    origin: Option<Origin>,
    retry_origin: Option<Origin>,
}

impl Drop for StageRunner {
    /// The instances go with the runner: the stage's gauges no longer count them.
    fn drop(&mut self) {
        self.processor = None;
        self.old = None;
        self.count_instances();
    }
}

fn call_on(
    processor: &mut Box<dyn Processor>,
    events: &Events,
    metrics: &NodeMetrics,
) -> Result<Output, Trapped> {
    // Two clock reads per call, not per event: the call-time histogram.
    let started = Instant::now();
    let result = processor.process(events);
    metrics.call_times.record(started.elapsed());
    NodeMetrics::add(&metrics.calls, 1);
    NodeMetrics::add(&metrics.fuel, processor.last_fuel());
    if let Err(t) = &result
        && t.kind.poisons()
    {
        metrics.trap(FailureKind::from(t.kind));
    }
    result
}
