//! A chain: consecutive stages run by the same worker threads, one plugin call after another
//! on the same batch.
//!
//! Stages where each has one input and one consumer, and the same number of workers, form a
//! chain (operator chaining, as in Flink): between them there is no channel hop and no thread
//! wake, only the next call. A chain has `workers` OS threads (wasm never runs on the tokio
//! reactor); each owns one [`StageRunner`] per stage and drives a small async loop with a
//! thread-parking executor, so channels and backpressure work as anywhere else. The loop must
//! not run inside the tokio runtime's context: WASI's synchronous host calls start their own
//! blocking section, which tokio refuses inside a runtime thread. Retry timers go to the
//! runtime through its handle.
//!
//! Data moves like this. A worker takes the next batch from the chain's input channel together
//! with a ticket (input order), runs it through every stage, sends dead letters to the
//! dead-letter channel and schedules retries, then hands its output to the reorder window,
//! which sends batches downstream in ticket order: output order is input order whatever worker
//! finishes first. The window holds at most `2 × workers` tickets, so finished batches waiting
//! for an earlier one are bounded. Retried events re-enter at the stage that asked, after
//! their backoff, and leave the chain when they succeed, possibly after later events. The
//! chain ends when its input is closed and drained and no retry is left; the last worker to go
//! drops the outputs, which closes the next channel.
//!
//! A chain whose head is routed by key (a stage that keeps state, on several workers) splits
//! each batch it takes among its workers instead: worker `i` gets the events whose keys
//! [`Route`] gives it, as a part of the ticket, in its own queue, in ticket order, so each key's
//! events reach their one worker in input order and no two workers touch one key. Every worker
//! gets a part when the batch carries a watermark (an empty one if it has none of the events),
//! so every worker's clock and timers move with the stage's. The reorder window sends a
//! ticket's parts on, as they finished, once the last is done; retries go back to the worker
//! that owns their keys. At the end of the input each worker fires its own timers, and the last
//! to finish says the input is at the end of time.
//!
//! Event time ([`crate::pipeline::time`]): a batch's input watermark is worked out as it is
//! taken, in ticket order, from what each producer sent ([`Inputs`]); a batch that leaves a
//! stage with no events but a watermark that moved goes on through the chain, so later stages
//! see time pass. A chain whose stages keep timers also gets a tick every
//! [`TICK`]: an empty batch through the chain, which moves the watermark past idle inputs
//! and fires due processing-time timers. When the input ends (and the run was not stopped), each
//! stage's watermark goes to the end of time and its remaining timers fire, before the chain
//! closes its outputs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify};
use weir_sandbox::Events;

use crate::config::OnError;
use crate::pipeline::ack::Ack;
use crate::pipeline::batch::Batch;
use crate::pipeline::edge::{self, DeadLetterTx, Outputs, Receiver, RunContext};
use crate::pipeline::failure::NodeFailure;
use crate::pipeline::origin::Origin;
use crate::pipeline::report::NodeMetrics;
use crate::pipeline::stage::retry::{MAX_WAITING_RETRIES, RetryJob, backoff};
use crate::pipeline::stage::runner::{Route, StageRunner};
use crate::pipeline::state::Fired;
use crate::pipeline::time::{Inputs, Marks};

/// How often a chain with timers wakes with no input: processing-time timers fire within this
/// of their time, and an idle input is noticed within this of its timeout.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// A chain ready to start: its workers' runners (instances made), its channels.
pub(crate) struct Chain {
    /// The metrics of the chain's first stage, whose queue is the chain's input.
    pub head: Arc<NodeMetrics>,
    /// One runner per stage of the chain, per worker.
    pub workers: Vec<Vec<StageRunner>>,
    /// The nodes that send to the chain's input, by the `from` of their batches.
    pub producers: Vec<u32>,
    pub input: Receiver,
    pub outputs: Outputs,
    pub dead_letters: DeadLetterTx,
    pub ctx: Arc<RunContext>,
    /// Whether the head is routed by key.
    pub keyed: bool,
    pub timers: TimerBatches,
}

/// How the batches of timers fired on a tick or at the end of the input are made.
#[derive(Clone, Default)]
pub(crate) struct TimerBatches {
    /// With state in the data folder: their acknowledgements, so that a commit round waits
    /// for what they made to be written.
    pub fired: Option<Arc<Fired>>,
    /// Whether batches carry origins: a NATS sink gives each event a timer made an id.
    pub tracked: bool,
}

/// A worker's share of a ticket, in a chain routed by key.
struct Part {
    ticket: u64,
    batch: Batch,
    /// How many parts the ticket has.
    of: usize,
    /// A tick that moved no watermark: empty outputs are not worth sending.
    quiet: bool,
}

type Channel<T> = (async_channel::Sender<T>, async_channel::Receiver<T>);

/// What a chain's workers share.
struct Shared {
    head: Arc<NodeMetrics>,
    outputs: Outputs,
    dead_letters: DeadLetterTx,
    ctx: Arc<RunContext>,
    /// Tickets a chain may have out (in progress, or finished and waiting for an earlier one).
    window: u64,
    /// Retry batches that may wait at once.
    retry_bound: usize,
    /// The input; held while waiting for room and taking a batch (one worker at a time
    /// receives).
    input: Mutex<Receiver>,
    /// The next ticket and the input watermark: held for a moment while a batch or a tick gets
    /// its ticket (and, routed by key, its parts are queued), so tickets follow the channel's
    /// order and each worker's queue follows the tickets. A tick needs no more than this, so
    /// it is never held up by a worker waiting for input.
    intake: std::sync::Mutex<Intake>,
    reorder: Mutex<Reorder>,
    /// Tickets sent downstream so far.
    emitted: AtomicU64,
    /// Woken when a ticket is emitted or a retry finishes: room for more input.
    progress: Notify,
    /// Retries waiting out their backoff come back here: one channel for the chain, or one per
    /// worker when it is routed by key (a retry goes back to the worker owning its keys).
    retries_to: Vec<Channel<RetryJob>>,
    /// Routed by key: each worker's queue of parts. Bounded by the window: a ticket is at most
    /// one part per worker.
    parts: Vec<Channel<Part>>,
    /// Routed by key: workers still firing their timers at the end of the input.
    ending: AtomicUsize,
    timers: TimerBatches,
    /// Batches taken and not yet emitted, plus retries waiting or running.
    pending: AtomicUsize,
    retries: AtomicUsize,
    input_closed: AtomicBool,
    /// Where retry timers run.
    runtime: tokio::runtime::Handle,
    /// Whether the end of the input has been run through the chain's stages.
    ended: AtomicBool,
    /// Routed by key: whether a worker's stages had event time when it fired its last timers
    /// (then the last worker to finish says the input is at the end of time).
    ended_timed: AtomicBool,
}

struct Intake {
    next: u64,
    /// The input watermark, from what each producer sends.
    inputs: Inputs,
    /// The input watermark last run through the chain.
    mark: u64,
}

/// Finished batches waiting for their turn: slot `i` is ticket `next + i`.
struct Reorder {
    next: u64,
    parked: VecDeque<Slot>,
}

/// A ticket in the reorder window: the parts still running (known once the first is done)
/// and what the finished ones left.
#[derive(Default)]
struct Slot {
    left: Option<usize>,
    /// The first output, and the others (routed by key): a ticket of one part allocates
    /// nothing here.
    first: Option<Batch>,
    rest: Vec<Batch>,
}

impl Chain {
    /// Starts the chain's worker threads; each ends when the chain is done.
    pub(crate) fn spawn(
        self,
        runtime: &tokio::runtime::Handle,
        name: &str,
    ) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
        let workers = self.workers.len();
        let idle = (self.workers.first())
            .and_then(|w| w.first())
            .map_or(crate::config::DEFAULT_IDLE_TIMEOUT, |r| {
                r.handle.config.time.idle_timeout
            });
        let timed = self.workers.iter().flatten().any(StageRunner::keeps_time);
        let lanes = if self.keyed { workers } else { 1 };
        let retries_to = (0..lanes).map(|_| async_channel::unbounded()).collect();
        let parts = (0..workers)
            .filter(|_| self.keyed)
            .map(|_| async_channel::unbounded())
            .collect();
        let window = 2 * workers as u64;
        let shared = Arc::new(Shared {
            head: self.head,
            outputs: self.outputs,
            dead_letters: self.dead_letters,
            ctx: self.ctx,
            window,
            retry_bound: MAX_WAITING_RETRIES * workers,
            input: Mutex::new(self.input),
            intake: std::sync::Mutex::new(Intake {
                next: 0,
                inputs: Inputs::new(&self.producers, idle),
                mark: crate::pipeline::time::NONE,
            }),
            reorder: Mutex::new(Reorder {
                next: 0,
                parked: VecDeque::with_capacity(window as usize),
            }),
            emitted: AtomicU64::new(0),
            progress: Notify::new(),
            retries_to,
            parts,
            ending: AtomicUsize::new(workers),
            timers: self.timers,
            pending: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
            input_closed: AtomicBool::new(false),
            runtime: runtime.clone(),
            ended: AtomicBool::new(false),
            ended_timed: AtomicBool::new(false),
        });
        // The tick: a task on the runtime (the workers have no timer of their own) that stops
        // when the chain drops its receiver.
        let ticks = timed.then(|| {
            let (tx, rx) = async_channel::bounded::<()>(1);
            runtime.spawn(async move {
                let mut every = tokio::time::interval(TICK);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    if tx.is_closed() {
                        return;
                    }
                    let _ = tx.try_send(());
                }
            });
            rx
        });
        let mut threads = Vec::with_capacity(workers);
        for (i, runners) in self.workers.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            let ticks = ticks.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("weir-{name}-{i}"))
                    .spawn(move || futures::executor::block_on(work(i, runners, shared, ticks)))?,
            );
        }
        Ok(threads)
    }
}

/// One worker's loop: retries first (they hold their source batch open), then its parts of
/// tickets when routed by key, then new input, and the tick of a chain with timers.
async fn work(
    worker: usize,
    mut runners: Vec<StageRunner>,
    shared: Arc<Shared>,
    ticks: Option<async_channel::Receiver<()>>,
) {
    let mut input_done = false;
    let ticking = ticks.is_some();
    let ticks = ticks.unwrap_or_else(|| async_channel::bounded(1).1);
    let mut tick = std::pin::pin!(ticks.recv());
    let keyed = !shared.parts.is_empty();
    let retries = shared.retries_to[worker % shared.retries_to.len()]
        .1
        .clone();
    let parts = (shared.parts.get(worker))
        .map_or_else(|| async_channel::bounded(1).1, |(_, rx)| rx.clone());
    // One receive on the retry channel, kept from turn to turn until it yields: a fresh one
    // each turn would find the channel empty (it nearly always is) and register a new
    // listener, one allocation per batch (tests/allocations.rs counts them). The same for
    // the parts.
    let mut retry = std::pin::pin!(retries.recv());
    let mut part = std::pin::pin!(parts.recv());
    loop {
        tokio::select! {
            biased;
            job = &mut retry => {
                retry.set(retries.recv());
                let Ok(job) = job else { break };
                let out = run_chain(&mut runners, worker, job.batch, job.stage, job.attempt, Some(job.version), &shared).await;
                if let Some(batch) = out {
                    shared.outputs.send(batch).await;
                }
                shared.finished(true);
            }
            taken = &mut part, if keyed => {
                part.set(parts.recv());
                let Ok(Part { ticket, batch, of, quiet }) = taken else { continue };
                let out = run_chain(&mut runners, worker, batch, 0, 0, None, &shared).await;
                let out = out.filter(|b| !(quiet && b.is_empty()));
                if shared.emit(ticket, out, of).await {
                    shared.finished(false);
                }
            }
            taken = shared.take(), if !input_done => match taken {
                Taken::Batch(ticket, batch) => {
                    let out = run_chain(&mut runners, worker, batch, 0, 0, None, &shared).await;
                    shared.emit(ticket, out, 1).await;
                    shared.finished(false);
                }
                Taken::Routed(..) => {}
                Taken::Ended => {
                    input_done = true;
                    shared.input_ended();
                }
            },
            _ = &mut tick, if ticking && !input_done => {
                tick.set(ticks.recv());
                if keyed {
                    shared.tick_keyed().await;
                } else {
                    shared.tick(&mut runners, worker).await;
                }
            }
        }
    }
    shared.end_of_time(&mut runners, worker).await;
}

/// Runs a batch through the chain from stage `from`: failures to the dead-letter channel,
/// retries scheduled; returns what comes out of the last stage.
async fn run_chain(
    runners: &mut [StageRunner],
    worker: usize,
    mut batch: Batch,
    from: usize,
    mut attempt: u32,
    mut pinned: Option<Arc<crate::pipeline::stage::StageVersion>>,
    shared: &Arc<Shared>,
) -> Option<Batch> {
    for (i, runner) in runners.iter_mut().enumerate().skip(from) {
        let result = runner.run(batch, attempt, pinned.take());
        attempt = 0;
        let config = &runner.handle.config;
        if let Some(tripped) = &result.tripped {
            tracing::error!(stage = %config.name, "{tripped}");
            if config.on_error == OnError::Stop {
                shared.ctx.fail(NodeFailure::Tripped {
                    stage: config.name.clone(),
                    tripped: tripped.clone(),
                });
            }
        }
        let metrics = &runner.handle.metrics;
        metrics
            .tap
            .offer(&result.output.events, &result.output.provenance);
        if let Some(dead) = &result.dead {
            metrics.tap.offer_dead(dead);
            metrics.reasons.record(dead);
        }
        // `drop` counts failed events but writes none; the other policies write every
        // failure, even when stopping: nothing accepted is lost.
        if let Some(dead) = result.dead
            && dead.kept()
            && let Err(lost) = shared.dead_letters.send(dead).await
        {
            lost.0.ack.forget();
        }
        if let Some(retry) = result.retry {
            shared.schedule(RetryJob {
                worker,
                stage: i,
                batch: retry.batch,
                attempt: retry.attempt,
                version: retry.version,
            });
        }
        batch = result.output;
        if batch.is_void() {
            return None;
        }
    }
    Some(batch)
}

/// What a worker got from the chain's input.
enum Taken {
    /// A batch of its own to run, and its ticket.
    Batch(u64, Batch),
    /// A batch split into parts among the workers (routed by key): its ticket, and whether
    /// any worker had a part to run.
    Routed(u64, bool),
    /// The input is closed and drained.
    Ended,
}

/// Splits `batch` among `workers` by the keys [`Route`] gives them: part `i` holds worker `i`'s
/// events in input order, with their origins and watermarks. A worker with none of the events
/// still gets an empty part when the batch carries a watermark, so its clock moves.
fn split(batch: Batch, workers: usize) -> Vec<Option<Batch>> {
    let mut owned: Vec<Vec<usize>> = vec![Vec::new(); workers];
    for (i, event) in batch.events.iter().enumerate() {
        owned[Route::of(event.key(), workers as u32) as usize].push(i);
    }
    // One worker owns every event (a batch of one key, or of keyless events): it takes the
    // batch as it is, with no copy, and the others an empty part if it carries a watermark.
    if let Some(whole) = (!batch.is_empty())
        .then(|| owned.iter().position(|o| o.len() == batch.len()))
        .flatten()
    {
        let empty = |_| {
            batch.marks.as_ref().map(|m| {
                let mut part = batch.derive(
                    Events::default(),
                    batch.provenance.clone(),
                    batch.origin.as_ref().map(Origin::empty),
                );
                part.marks = Some(Arc::new(Marks {
                    before: Vec::new(),
                    after: m.after,
                }));
                part
            })
        };
        let mut parts: Vec<Option<Batch>> = (0..workers).map(empty).collect();
        parts[whole] = Some(batch);
        return parts;
    }
    let mut parts = Vec::with_capacity(workers);
    for indices in owned {
        if indices.is_empty() && batch.marks.is_none() {
            parts.push(None);
            continue;
        }
        let origin = batch.origin.as_ref().map(|o| {
            let mut part = o.empty();
            for &i in &indices {
                part.push_same(o, i);
            }
            part
        });
        let marks = batch.marks.as_ref().map(|m| {
            Arc::new(Marks {
                before: indices
                    .iter()
                    .filter_map(|&i| m.before.get(i).copied())
                    .collect(),
                after: m.after,
            })
        });
        let mut part = batch.derive(
            batch.events.select(indices.iter().copied()),
            batch.provenance.clone(),
            origin,
        );
        part.marks = marks;
        parts.push(Some(part));
    }
    parts
}

impl Shared {
    /// Takes the next input batch and its ticket, once the window and the retry bound leave
    /// room. Routed by key, the batch is split among the workers' queues as it gets its
    /// ticket, so every worker's parts stay in ticket order.
    async fn take(&self) -> Taken {
        let mut input = self.input.lock().await;
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if self.room(self.intake().next) {
                break;
            }
            progress.await;
        }
        let Some(batch) = input.recv().await else {
            return Taken::Ended;
        };
        edge::taken(&self.head, &batch);
        match self.admit(batch) {
            Taken::Routed(ticket, false) => {
                drop(input);
                self.nothing_to_run(ticket).await;
                Taken::Routed(ticket, false)
            }
            taken => taken,
        }
    }

    /// Gives a batch just taken its marks and its ticket; routed by key, queues its parts
    /// while the ticket is held, so that each worker's queue follows the tickets.
    fn admit(&self, mut batch: Batch) -> Taken {
        let mut intake = self.intake();
        let marks = intake.inputs.take(
            batch.from,
            &batch.events,
            batch.marks.as_deref(),
            Instant::now(),
        );
        if let Some(m) = &marks {
            intake.mark = intake.mark.max(m.after);
        }
        batch.marks = marks.map(Arc::new);
        self.pending.fetch_add(1, Ordering::SeqCst);
        let ticket = intake.next;
        intake.next += 1;
        if self.parts.is_empty() {
            return Taken::Batch(ticket, batch);
        }
        Taken::Routed(ticket, self.route(ticket, batch, false))
    }

    fn intake(&self) -> std::sync::MutexGuard<'_, Intake> {
        // Every change under the lock is a plain assignment: a poisoned lock is still whole.
        self.intake.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the window and the retry bound leave room for ticket `next`.
    fn room(&self, next: u64) -> bool {
        next < self.emitted.load(Ordering::Acquire) + self.window
            && self.retries.load(Ordering::Acquire) < self.retry_bound
    }

    /// Splits ticket `ticket`'s batch into the workers' queues (with the intake held); false
    /// when no worker has anything to run.
    fn route(&self, ticket: u64, batch: Batch, quiet: bool) -> bool {
        let parts = split(batch, self.parts.len());
        let of = parts.iter().flatten().count();
        for (i, part) in parts.into_iter().enumerate() {
            if let Some(batch) = part {
                // Unbounded (the window bounds it) and open while any ticket is pending, and
                // this one is.
                let _ = self.parts[i].0.try_send(Part {
                    ticket,
                    batch,
                    of,
                    quiet,
                });
            }
        }
        of > 0
    }

    /// A routed ticket with no part to run is done as it is.
    async fn nothing_to_run(&self, ticket: u64) {
        if self.emit(ticket, None, 1).await {
            self.finished(false);
        }
    }

    /// Parks a finished part of a ticket (of `of`; the whole ticket when not routed by key)
    /// and sends every ticket whose turn has come; true when this finished the ticket.
    async fn emit(&self, ticket: u64, output: Option<Batch>, of: usize) -> bool {
        let mut reorder = self.reorder.lock().await;
        let slot = reorder.slot(ticket);
        if let Some(batch) = output {
            match &slot.first {
                None => slot.first = Some(batch),
                Some(_) => slot.rest.push(batch),
            }
        }
        let left = slot.left.get_or_insert(of);
        *left -= 1;
        if *left > 0 {
            return false;
        }
        while reorder.parked.front().is_some_and(|s| s.left == Some(0)) {
            let slot = reorder.parked.pop_front().expect("checked above");
            reorder.next += 1;
            for batch in slot.first.into_iter().chain(slot.rest) {
                self.outputs.send(batch).await;
            }
            self.emitted.store(reorder.next, Ordering::Release);
            self.progress.notify_waiters();
        }
        true
    }

    /// The input watermark as it stands now, when it moved: an idle producer no longer holds
    /// it back.
    fn moved(intake: &mut Intake) -> Option<Arc<Marks>> {
        match intake.inputs.now(Instant::now()) {
            Some(now) if now > intake.mark => {
                intake.mark = now;
                Some(Arc::new(Marks {
                    before: Vec::new(),
                    after: now,
                }))
            }
            _ => None,
        }
    }

    /// The acknowledgement of a batch of timers fired on a tick or at the end of the input.
    fn timer_ack(&self) -> Ack {
        match &self.timers.fired {
            Some(fired) => fired.ack(&self.ctx.tracker),
            None => self.ctx.tracker.emit(0),
        }
    }

    fn timer_origin(&self) -> Option<Origin> {
        self.timers.tracked.then(Origin::timers)
    }

    /// An empty batch carrying `marks`, or the unmoved clock for the processing-time timers.
    fn tick_batch(&self, marks: Option<Arc<Marks>>) -> Batch {
        Batch {
            events: Default::default(),
            ack: self.timer_ack(),
            provenance: Default::default(),
            origin: self.timer_origin(),
            marks: marks.or_else(|| {
                // No move: the stages still look at their processing-time timers.
                Some(Arc::new(Marks {
                    before: Vec::new(),
                    after: crate::pipeline::time::NONE,
                }))
            }),
            from: 0,
        }
    }

    /// A tick: the input watermark as it stands now and the processing-time clock run through
    /// the chain as an empty batch; what the timers made goes on. A chain not routed by key
    /// keeps timers only with one worker, which is then idle: nothing it took is unsent.
    async fn tick(self: &Arc<Self>, runners: &mut [StageRunner], worker: usize) {
        let marks = Shared::moved(&mut self.intake());
        let moved = marks.is_some();
        let batch = self.tick_batch(marks);
        if let Some(out) = run_chain(runners, worker, batch, 0, 0, None, self).await
            && (moved || !out.is_empty())
        {
            self.outputs.send(out).await;
        }
    }

    /// A tick of a chain routed by key: a ticket of its own, split to every worker like a
    /// batch, so that what its timers make goes on in order with the tickets around it.
    /// Skipped when the window is full: the input is moving, and with it the clocks.
    async fn tick_keyed(&self) {
        let ticket = {
            let mut intake = self.intake();
            if !self.room(intake.next) {
                return;
            }
            let marks = Shared::moved(&mut intake);
            let quiet = marks.is_none();
            let batch = self.tick_batch(marks);
            self.pending.fetch_add(1, Ordering::SeqCst);
            let ticket = intake.next;
            intake.next += 1;
            if self.route(ticket, batch, quiet) {
                return;
            }
            ticket
        };
        self.nothing_to_run(ticket).await;
    }

    /// The input has ended: unless the run was stopped (a stopped run resumes later, and its
    /// windows must stay open), each stage in turn sees the end of time and fires every timer
    /// left, and what they make goes through the rest of the chain and on. Then the chain's
    /// consumers hear that this input is at the end of time. Once per chain, or, routed by
    /// key, once per worker (each fires its own timers) with the last to finish telling the
    /// consumers.
    async fn end_of_time(self: &Arc<Self>, runners: &mut [StageRunner], worker: usize) {
        let keyed = !self.parts.is_empty();
        if self.ctx.stop.is_cancelled() || (!keyed && self.ended.swap(true, Ordering::SeqCst)) {
            return;
        }
        let mut timed = runners.iter().any(StageRunner::timed);
        for i in 0..runners.len() {
            loop {
                let result = runners[i].end_of_time(self.timer_ack(), self.timer_origin());
                let more = result.more_timers;
                if let Some(dead) = result.dead
                    && dead.kept()
                    && let Err(lost) = self.dead_letters.send(dead).await
                {
                    lost.0.ack.forget();
                }
                let out = result.output;
                if !out.is_empty() {
                    let rest = if i + 1 < runners.len() {
                        run_chain(runners, worker, out, i + 1, 0, None, self).await
                    } else {
                        Some(out)
                    };
                    if let Some(batch) = rest
                        && !batch.is_empty()
                    {
                        self.outputs.send(batch).await;
                    }
                }
                if !more {
                    break;
                }
            }
        }
        if keyed {
            // Every worker fires its own timers; the last to finish speaks for all.
            if timed {
                self.ended_timed.store(true, Ordering::SeqCst);
            }
            if self.ending.fetch_sub(1, Ordering::SeqCst) != 1 {
                return;
            }
            timed = self.ended_timed.load(Ordering::SeqCst);
        }
        if timed {
            let last = Batch {
                events: Default::default(),
                ack: self.ctx.tracker.emit(0),
                provenance: Default::default(),
                origin: None,
                marks: Some(Arc::new(Marks {
                    before: Vec::new(),
                    after: crate::pipeline::time::END,
                })),
                from: 0,
            };
            self.outputs.send(last).await;
        }
    }

    fn schedule(self: &Arc<Self>, job: RetryJob) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        self.retries.fetch_add(1, Ordering::AcqRel);
        let tx = self.retries_to[job.worker % self.retries_to.len()]
            .0
            .clone();
        self.runtime.spawn(async move {
            tokio::time::sleep(backoff(job.attempt)).await;
            // Open while anything is pending, and this job is.
            let _ = tx.send(job).await;
        });
    }

    /// A taken batch was emitted, or a retry job finished.
    fn finished(&self, retry: bool) {
        if retry {
            self.retries.fetch_sub(1, Ordering::AcqRel);
        }
        let left = self.pending.fetch_sub(1, Ordering::SeqCst) - 1;
        self.progress.notify_waiters();
        if left == 0 && self.input_closed.load(Ordering::SeqCst) {
            self.close();
        }
    }

    /// The input is closed and drained: once nothing is pending, the workers may go.
    fn input_ended(&self) {
        self.input_closed.store(true, Ordering::SeqCst);
        if self.pending.load(Ordering::SeqCst) == 0 {
            self.close();
        }
    }

    /// Nothing is pending and no input is left: the retry channels close, which ends the
    /// workers' loops.
    fn close(&self) {
        for (tx, _) in &self.retries_to {
            tx.close();
        }
    }
}

impl Reorder {
    /// The slot of `ticket`, made when it is the first to speak of it.
    fn slot(&mut self, ticket: u64) -> &mut Slot {
        let slot = (ticket - self.next) as usize;
        if self.parked.len() <= slot {
            self.parked.resize_with(slot + 1, Slot::default);
        }
        &mut self.parked[slot]
    }
}
