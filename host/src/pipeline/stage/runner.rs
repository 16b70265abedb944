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
use weir_sandbox::keyed::{WATERMARK_KEY, timer_prefix};
use weir_sandbox::{
    Events, GuestFailureKind, KeyedState, Output, Processor, TimerClock, TimerEntry, TrapKind,
    Trapped,
};

use crate::config::{Late, OnError};
use crate::pipeline::batch::Batch;
use crate::pipeline::dead_letter::{DeadLetters, Reason};
use crate::pipeline::failure::FailureKind;
use crate::pipeline::origin::{self, Origin};
use crate::pipeline::pool;
use crate::pipeline::provenance::Stamp;
use crate::pipeline::report::NodeMetrics;
use crate::pipeline::stage::caps;
use crate::pipeline::stage::isolate::{Piece, isolate};
use crate::pipeline::stage::shadow::{Item, Shadow};
use crate::pipeline::stage::version::{StageHandle, StageVersion};
use crate::pipeline::time::{Clock, END, Marks, NONE};

/// Timers handed to the plugin in one `on-timer` call. Bounds the fuel, deadline and output of
/// one call, as a batch's size does for `process`.
const TIMERS_PER_CALL: usize = 256;

/// Timers fired after one input batch; the rest fire after the next batch or tick. Bounds the
/// work (and the output) one batch can set off, whatever a plugin has set; at the end of the
/// input every timer fires, a bounded call at a time.
const TIMERS_PER_BATCH: usize = 4096;

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
    /// Timers were due beyond what one batch fires: the rest wait for the next batch or tick.
    pub more_timers: bool,
}

/// Which keys a worker of a stage routed by key owns: those whose
/// [`partition_of`](crate::pipeline::partition::partition_of) among `workers` is `worker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    pub worker: u32,
    pub workers: u32,
}

impl Route {
    /// The worker that owns `key`; an event without a key goes to the first, as a NATS sink
    /// sends it to partition 0.
    pub(crate) fn of(key: Option<&[u8]>, workers: u32) -> u32 {
        key.map_or(0, |k| crate::pipeline::partition::partition_of(k, workers))
    }

    fn owns(&self, key: &[u8]) -> bool {
        Route::of(Some(key), self.workers) == self.worker
    }
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
    /// The stage's watermark.
    clock: Clock,
    /// Whether the watermark kept with the stage's state has been read back.
    resumed: bool,
    /// The watermark last written to the state.
    kept: u64,
    /// The keys this worker owns, when the stage's events are routed by key: its timers are
    /// the ones whose key it owns.
    route: Option<Route>,
    /// While a shadow runs and wants the batch in hand: the shadow, a copy of the batch's
    /// input events, and when the live call started.
    copy: Option<(Arc<Shadow>, Events, Instant)>,
}

impl StageRunner {
    /// A runner with its first processor made, so that a plugin whose `init` fails stops the
    /// pipeline before any event is read.
    pub(crate) fn new(handle: Arc<StageHandle>) -> Result<StageRunner, Trapped> {
        let rx = handle.subscribe();
        let version = rx.borrow().clone();
        let processor = version.factory.make()?;
        let stage_id = origin::stage_id(&handle.config.name);
        let handle_lateness = handle.config.time.allowed_lateness;
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
            clock: Clock::new(handle_lateness),
            resumed: false,
            kept: NONE,
            route: None,
            copy: None,
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

    /// Makes this runner the worker `route` names of a stage routed by key.
    pub(crate) fn route(&mut self, route: Route) {
        self.route = Some(route);
    }

    /// Whether the stage's plugin can set timers: its chain then ticks.
    pub(crate) fn keeps_time(&self) -> bool {
        self.version.factory.keeps_time()
    }

    /// Whether the stage has seen event time.
    pub(crate) fn timed(&self) -> bool {
        self.clock.timed()
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
        if input.is_empty() {
            return self.pass_time(input, &version);
        }
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
        self.resume(&version);
        self.clock.take(n, input.marks.as_deref());
        // A shadow sees the input batches, not the retries: one relaxed load without one.
        if attempt == 0
            && let Some(shadow) = self.handle.shadow().filter(|s| s.wants())
        {
            self.copy = Some((shadow, input.events.clone(), Instant::now()));
        }
        let mut pieces = std::mem::take(&mut self.pieces);
        let traps = isolate(
            &input.events,
            &mut |events, range| self.call(&version, events, range),
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
            more_timers: false,
        }
    }

    fn letters(&self, input: &Batch, version: &StageVersion) -> DeadLetters {
        let letters = DeadLetters::new(
            Arc::clone(&self.handle.name),
            Arc::clone(&version.digest),
            input.provenance.clone(),
            input.ack.clone(),
        )
        .from_source(input.origin.as_ref().map(|o| Arc::clone(&o.source)));
        // `drop` counts failed events but writes none: no need to copy them.
        if self.handle.config.on_error == OnError::Drop {
            letters.counted_only()
        } else {
            letters
        }
    }

    /// One call on a processor of `version`; after a trap it is dropped and the next call
    /// makes a fresh one. Also says whether a limit refused one of the call's state writes.
    fn call(
        &mut self,
        version: &StageVersion,
        events: &Events,
        range: std::ops::Range<usize>,
    ) -> (Result<Output, Trapped>, bool) {
        let metrics = Arc::clone(&self.handle.metrics);
        let seen = std::mem::take(&mut self.clock.seen);
        let slot = slot(
            &mut self.processor,
            &mut self.old,
            &mut self.old_generation,
            self.version.generation,
            version.generation,
        );
        let processor = match slot {
            Some(p) => p,
            None => match version.factory.make() {
                Ok(p) => slot.insert(p),
                Err(trapped) => {
                    self.clock.seen = seen;
                    return (Err(trapped), false);
                }
            },
        };
        if !seen.is_empty() {
            processor.set_watermarks(&seen[range]);
        }
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
        self.clock.seen = seen;
        (result, state_limited)
    }

    /// A batch with no events (a watermark moving on, a tick, the end of the input): no
    /// `process` call, but the watermark advances, due timers fire, and the marks go on.
    fn pass_time(&mut self, input: Batch, version: &Arc<StageVersion>) -> StageResult {
        if self.handle.state.attached() {
            self.handle.state.set_tag(input.ack.tag());
        }
        self.resume(version);
        self.clock
            .advance(input.marks.as_ref().map_or(NONE, |m| m.after));
        let mut events = Events::new();
        let mut sorted = Sorted {
            origin: input.origin.as_ref().map(Origin::empty),
            ..Sorted::default()
        };
        let marks = self.time(&input, version, &mut events, &mut sorted, TIMERS_PER_BATCH);
        let metrics = &self.handle.metrics;
        NodeMetrics::add(&metrics.events_out, events.len() as u64);
        NodeMetrics::add(&metrics.bytes_out, events.value_bytes());
        if let Some(dead) = &sorted.dead {
            for (kind, count) in dead.kinds() {
                metrics.fail(kind, count);
            }
        }
        let provenance = self.stamp.stamp(&input.provenance, &version.header);
        StageResult {
            output: Batch {
                events,
                ack: input.ack,
                provenance,
                origin: sorted.origin,
                marks,
                from: 0,
            },
            dead: sorted.dead,
            retry: None,
            tripped: None,
            more_timers: sorted.more_timers,
        }
    }

    /// Reads back the watermark kept with the stage's state, once, before the first batch of
    /// a version that keeps time: a restart resumes where the committed state ends. The value
    /// the store held at the start, not the entry now: a worker routed by key that takes its
    /// first batch late must not take the watermark another worker has moved since.
    fn resume(&mut self, version: &StageVersion) {
        if self.resumed || !version.factory.keeps_time() {
            return;
        }
        self.resumed = true;
        if let Some(node) = self.handle.state.loaded_watermark() {
            self.clock.resume(node);
        }
    }

    /// Whether event `index` of the batch, at time `time`, was at or before the watermark it
    /// saw: only then is the plugin's `late:` believed.
    fn saw_late(&self, index: usize, time: Option<u64>) -> bool {
        match (time, self.clock.seen.get(index)) {
            (Some(t), Some(&w)) => w != NONE && t <= w,
            _ => false,
        }
    }

    /// The event-time part of a settled batch: fires the timers now due (appending what they
    /// became to `events`), keeps the watermark with the state, and returns the marks of the
    /// outputs (`None` while the stage has no event time).
    fn time(
        &mut self,
        input: &Batch,
        version: &Arc<StageVersion>,
        events: &mut Events,
        sorted: &mut Sorted,
        budget: usize,
    ) -> Option<Arc<Marks>> {
        let keeps_time = self.handle.state.attached() && version.factory.keeps_time();
        if !keeps_time
            && !self.clock.timed()
            && input.marks.is_none()
            && events.timestamps.is_empty()
        {
            return None;
        }
        let sources = match sorted.counts.take() {
            Some(counts) if counts.is_empty() => (0..events.len() as u32).collect(),
            Some(counts) => (counts.iter().enumerate())
                .flat_map(|(i, &c)| std::iter::repeat_n(i as u32, c as usize))
                .collect(),
            None => std::mem::take(&mut sorted.sources),
        };
        let node = self.clock.input();
        if node != NONE {
            self.handle
                .metrics
                .watermark
                .store(node, std::sync::atomic::Ordering::Relaxed);
        }
        if keeps_time {
            self.fire(input, version, events, sorted, budget);
            let node = self.clock.input();
            if node != self.kept {
                // Committed with the batch's other writes: a restart resumes the watermark
                // that goes with the state and the source positions it holds. Workers routed
                // by key share the one kept watermark: it only moves forward.
                self.kept = node;
                let state = &self.handle.state;
                let kept = (state.get(WATERMARK_KEY))
                    .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                    .map_or(NONE, u64::from_le_bytes);
                if node > kept {
                    let _ = state.set(WATERMARK_KEY, &node.to_le_bytes(), None);
                }
                state.commit();
            }
        }
        self.clock
            .outputs(events, &input.events, &sources)
            .map(Arc::new)
    }

    /// Fires the timers due (event time: at or before the watermark the stage sees;
    /// processing time: at or before now), at most `budget`, in time order and
    /// [`TIMERS_PER_CALL`] to a call. A fired timer is removed before its call, so a call that
    /// fails does not fire it again: its timers are dead-lettered instead.
    fn fire(
        &mut self,
        input: &Batch,
        version: &Arc<StageVersion>,
        events: &mut Events,
        sorted: &mut Sorted,
        mut budget: usize,
    ) {
        let now = weir_sandbox::wall_ms();
        let seen = self.clock.seen_now();
        for (clock, until) in [(TimerClock::Event, seen), (TimerClock::Processing, now)] {
            if until == NONE {
                continue;
            }
            // Where the last look for due timers stopped: a worker routed by key goes on from
            // there rather than paging past the other workers' due timers again, then looks
            // once more from the start for a timer a call set behind it.
            let mut cursor: Option<Vec<u8>> = None;
            loop {
                let want = TIMERS_PER_CALL.min(budget.max(1));
                let mut due = self.due(clock, until, want, &mut cursor);
                if due.is_empty() && cursor.take().is_some() {
                    due = self.due(clock, until, want, &mut None);
                }
                if due.is_empty() {
                    break;
                }
                if budget == 0 {
                    sorted.more_timers = true;
                    return;
                }
                budget = budget.saturating_sub(due.len());
                for timer in &due {
                    self.handle.state.delete(&timer.state_key());
                }
                self.handle.state.commit();
                NodeMetrics::add(&self.handle.metrics.timers_fired, due.len() as u64);
                match self.call_timers(version, &due) {
                    Ok(out) => {
                        for event in out.iter() {
                            if let Some(origin) = &mut sorted.origin {
                                origin.push_timer(self.stage_id, event);
                            }
                            events.push_event(event);
                        }
                    }
                    Err(trapped) => self.timers_failed(input, version, &due, trapped, sorted),
                }
            }
        }
    }

    /// Up to `want` of this worker's timers of `clock` due at `until`, in time order. A worker
    /// routed by key pages past the other workers' timers.
    /// `after`: where to start, left where this look stopped (routed by key only).
    fn due(
        &self,
        clock: TimerClock,
        until: u64,
        want: usize,
        after: &mut Option<Vec<u8>>,
    ) -> Vec<TimerEntry> {
        let prefix = timer_prefix(clock);
        let mut due = Vec::new();
        loop {
            let page = self.handle.state.scan(
                &prefix,
                after.as_deref(),
                want,
                weir_sandbox::keyed::MAX_REPLY_BYTES,
            );
            for (key, _) in &page.entries {
                let Some(timer) = TimerEntry::parse(clock, key) else {
                    continue;
                };
                if timer.at > until {
                    return due;
                }
                if self.route.is_some() {
                    *after = Some(key.clone());
                }
                if self.route.is_none_or(|r| r.owns(&timer.key)) {
                    due.push(timer);
                    if due.len() == want {
                        return due;
                    }
                }
            }
            match page.entries.last() {
                Some((last, _)) if page.more => *after = Some(last.clone()),
                _ => return due,
            }
        }
    }

    /// Dead letters for timers whose call failed: one per timer, its key as the key, its time
    /// as the timestamp, what it was as the value.
    fn timers_failed(
        &self,
        input: &Batch,
        version: &StageVersion,
        due: &[TimerEntry],
        trapped: Trapped,
        sorted: &mut Sorted,
    ) {
        let mut letters = Events::new();
        for t in due {
            let value = format!(
                "{{\"timer\":{{\"clock\":\"{}\",\"at\":{}}}}}",
                t.clock.as_str(),
                t.at
            );
            letters.push_parts(
                Some(&t.key),
                value.as_bytes(),
                std::iter::empty(),
                Some(t.at),
            );
        }
        let reason = Reason {
            kind: FailureKind::from(trapped.kind),
            message: Arc::from(format!("on-timer: {}", trapped.message)),
            attempts: 1,
        };
        let dead = sorted
            .dead
            .get_or_insert_with(|| self.letters(input, version));
        let origin = input.origin.as_ref().map(|_| origin::TIMER);
        for event in letters.iter() {
            dead.push(event, reason.clone(), origin);
        }
    }

    /// One `on-timer` call on a processor of `version`; after a trap it is dropped.
    fn call_timers(
        &mut self,
        version: &StageVersion,
        due: &[TimerEntry],
    ) -> Result<Events, Trapped> {
        let metrics = Arc::clone(&self.handle.metrics);
        let slot = slot(
            &mut self.processor,
            &mut self.old,
            &mut self.old_generation,
            self.version.generation,
            version.generation,
        );
        let processor = match slot {
            Some(p) => p,
            None => slot.insert(version.factory.make()?),
        };
        let started = Instant::now();
        let result = processor.on_timer(due);
        metrics.call_times.record(started.elapsed());
        NodeMetrics::add(&metrics.calls, 1);
        NodeMetrics::add(&metrics.fuel, processor.last_fuel());
        if let Err(t) = &result
            && t.kind.poisons()
        {
            metrics.trap(FailureKind::from(t.kind));
            *slot = None;
        }
        self.count_instances();
        result
    }

    /// Runs the end of the input through this stage: the watermark goes to the end of time,
    /// and every timer still set fires, a bounded batch at a time (`more_timers` says whether
    /// another call is needed).
    pub(crate) fn end_of_time(
        &mut self,
        ack: crate::pipeline::ack::Ack,
        origin: Option<Origin>,
    ) -> StageResult {
        let marks = Marks {
            before: Vec::new(),
            after: END,
        };
        let batch = Batch {
            events: Events::new(),
            ack,
            provenance: Default::default(),
            origin,
            marks: Some(Arc::new(marks)),
            from: 0,
        };
        self.run(batch, 0, None)
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
        let (mut events, mut sorted) = self.outputs(&input, version, attempt, pieces);
        pieces.clear();
        if let Some((shadow, copy, started)) = self.copy.take() {
            offer(&shadow, copy, &events, &mut sorted, started);
        }
        let marks = self.time(&input, version, &mut events, &mut sorted, TIMERS_PER_BATCH);
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
                marks,
                from: 0,
            },
            dead: sorted.dead,
            retry,
            tripped,
            more_timers: sorted.more_timers,
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
            sorted.counts = Some(out.counts);
            return (out.events, sorted);
        }
        sorted.origin = input.origin.as_ref().map(Origin::empty);
        sorted.retry_origin = input.origin.as_ref().map(Origin::empty);
        sorted.unkept = self.copy.is_some().then(Vec::new);
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
        let mut failed = sorted.dead.as_ref().map_or(0, DeadLetters::len);
        if let Some(dead) = &sorted.dead {
            for (kind, count) in dead.kinds() {
                metrics.fail(kind, count);
                // A late event is the input's lateness, not the plugin's failure: it counts
                // toward neither the canary nor the breaker.
                if kind == FailureKind::Late {
                    failed -= count as usize;
                }
            }
        }
        if sorted.late_dropped > 0 {
            metrics.fail(FailureKind::Late, sorted.late_dropped as u64);
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
                        sorted.not_kept(i, reason.kind.as_str());
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
                        // Believed only of an event whose time is at or before the watermark
                        // it saw: a plugin cannot pass a bad event off as merely late.
                        GuestFailureKind::Reject
                            if f.reason.starts_with("late:")
                                && self.saw_late(event.index(), event.timestamp()) =>
                        {
                            (FailureKind::Late, false)
                        }
                        GuestFailureKind::Reject => (FailureKind::Reject, false),
                        GuestFailureKind::Retry if attempt < config.retries => {
                            (FailureKind::RetriesExhausted, true)
                        }
                        GuestFailureKind::Retry => (FailureKind::RetriesExhausted, false),
                    };
                    let index = piece.range.start + j;
                    sorted.not_kept(index, if retry { "retry" } else { kind.as_str() });
                    if retry {
                        sorted
                            .retry
                            .get_or_insert_with(Events::new)
                            .push_event(event);
                        if let (Some(from), Some(to)) = (&input.origin, &mut sorted.retry_origin) {
                            to.push_same(from, event.index());
                        }
                    } else if kind == FailureKind::Late && config.time.late == Late::Drop {
                        sorted.late_dropped += 1;
                    } else {
                        let reason = Reason {
                            kind,
                            message: Arc::from(f.reason.as_str()),
                            attempts: attempt + 1,
                        };
                        dead.push(event, reason, input.origin_of(event.index()));
                    }
                } else if let Some((_, message)) = broken.next_if(|(i, _)| *i == j) {
                    sorted.not_kept(piece.range.start + j, "output-cap");
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
                        sorted.sources.push(event.index() as u32);
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
    /// Late events dropped (`late = "drop"`): counted, not written.
    late_dropped: usize,
    /// The fast path's counts (outputs per input), kept for the watermark.
    counts: Option<Vec<u32>>,
    /// The slow path's input index of each kept output.
    sources: Vec<u32>,
    /// Timers were due beyond the batch's budget.
    more_timers: bool,
    /// In a tracked batch: the origins of the kept outputs and of the retried events.
    origin: Option<Origin>,
    retry_origin: Option<Origin>,
    /// While a shadow copies the batch: the inputs not passed on, with why.
    unkept: Option<Vec<(u32, &'static str)>>,
}

impl Sorted {
    fn not_kept(&mut self, index: usize, why: &'static str) {
        if let Some(unkept) = &mut self.unkept {
            unkept.push((index as u32, why));
        }
    }
}

/// Hands a shadow the batch's input copy with the live outputs made from it, which input
/// each came from, and the inputs the live version did not pass on.
fn offer(shadow: &Shadow, input: Events, events: &Events, sorted: &mut Sorted, started: Instant) {
    let live_of = match &sorted.counts {
        Some(counts) if counts.is_empty() => (0..events.len() as u32).collect(),
        Some(counts) => (counts.iter().enumerate())
            .flat_map(|(i, &c)| std::iter::repeat_n(i as u32, c as usize))
            .collect(),
        None => sorted.sources.clone(),
    };
    shadow.offer(Item {
        input,
        live: events.clone(),
        live_of,
        live_failed: sorted.unkept.take().unwrap_or_default(),
        live_ns: started.elapsed().as_nanos() as u64,
    });
}

impl Drop for StageRunner {
    /// The instances go with the runner: the stage's gauges no longer count them.
    fn drop(&mut self) {
        self.processor = None;
        self.old = None;
        self.count_instances();
    }
}

/// The processor slot for a version of generation `wanted`: the current one, or the one kept
/// for an older version's retries (replacing an instance of yet another version).
fn slot<'a>(
    processor: &'a mut Option<Box<dyn Processor>>,
    old: &'a mut Option<Box<dyn Processor>>,
    old_generation: &mut u64,
    current: u64,
    wanted: u64,
) -> &'a mut Option<Box<dyn Processor>> {
    if wanted == current {
        processor
    } else {
        if *old_generation != wanted {
            *old = None;
            *old_generation = wanted;
        }
        old
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
