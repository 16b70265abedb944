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

use crate::config::OnError;
use crate::pipeline::batch::Batch;
use crate::pipeline::edge::{self, DeadLetterTx, Outputs, Receiver, RunContext};
use crate::pipeline::failure::NodeFailure;
use crate::pipeline::report::NodeMetrics;
use crate::pipeline::stage::retry::{MAX_WAITING_RETRIES, RetryJob, backoff};
use crate::pipeline::stage::runner::StageRunner;
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
}

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
    /// The input and the next ticket; held while taking a batch, so tickets follow the
    /// channel's order (and one worker at a time receives).
    intake: Mutex<Intake>,
    reorder: Mutex<Reorder>,
    /// Tickets sent downstream so far.
    emitted: AtomicU64,
    /// Woken when a ticket is emitted or a retry finishes: room for more input.
    progress: Notify,
    retry_tx: async_channel::Sender<RetryJob>,
    retry_rx: async_channel::Receiver<RetryJob>,
    /// Batches taken and not yet emitted, plus retries waiting or running.
    pending: AtomicUsize,
    retries: AtomicUsize,
    input_closed: AtomicBool,
    /// Where retry timers run.
    runtime: tokio::runtime::Handle,
    /// Whether the end of the input has been run through the chain's stages.
    ended: AtomicBool,
}

struct Intake {
    input: Receiver,
    next: u64,
    /// The input watermark, from what each producer sends.
    inputs: Inputs,
    /// The input watermark last run through the chain.
    mark: u64,
}

/// Finished batches waiting for their turn: slot `i` is ticket `next + i`; `None` while that
/// ticket is still running, `Some(None)` when it left nothing to send.
struct Reorder {
    next: u64,
    parked: VecDeque<Option<Option<Batch>>>,
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
        let (retry_tx, retry_rx) = async_channel::unbounded();
        let window = 2 * workers as u64;
        let shared = Arc::new(Shared {
            head: self.head,
            outputs: self.outputs,
            dead_letters: self.dead_letters,
            ctx: self.ctx,
            window,
            retry_bound: MAX_WAITING_RETRIES * workers,
            intake: Mutex::new(Intake {
                input: self.input,
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
            retry_tx,
            retry_rx,
            pending: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
            input_closed: AtomicBool::new(false),
            runtime: runtime.clone(),
            ended: AtomicBool::new(false),
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
                    .spawn(move || futures::executor::block_on(work(runners, shared, ticks)))?,
            );
        }
        Ok(threads)
    }
}

/// One worker's loop: retries first (they hold their source batch open), then new input, and
/// the tick of a chain with timers.
async fn work(
    mut runners: Vec<StageRunner>,
    shared: Arc<Shared>,
    ticks: Option<async_channel::Receiver<()>>,
) {
    let mut input_done = false;
    let ticking = ticks.is_some();
    let ticks = ticks.unwrap_or_else(|| async_channel::bounded(1).1);
    let mut tick = std::pin::pin!(ticks.recv());
    // One receive on the retry channel, kept from turn to turn until it yields: a fresh one
    // each turn would find the channel empty (it nearly always is) and register a new
    // listener, one allocation per batch (tests/allocations.rs counts them).
    let mut retry = std::pin::pin!(shared.retry_rx.recv());
    loop {
        tokio::select! {
            biased;
            job = &mut retry => {
                retry.set(shared.retry_rx.recv());
                let Ok(job) = job else { break };
                let out = run_chain(&mut runners, job.batch, job.stage, job.attempt, Some(job.version), &shared).await;
                if let Some(batch) = out {
                    shared.outputs.send(batch).await;
                }
                shared.finished(true);
            }
            taken = shared.take(), if !input_done => match taken {
                Some((ticket, batch)) => {
                    let out = run_chain(&mut runners, batch, 0, 0, None, &shared).await;
                    shared.emit(ticket, out).await;
                    shared.finished(false);
                }
                None => {
                    input_done = true;
                    shared.input_ended();
                }
            },
            _ = &mut tick, if ticking && !input_done => {
                tick.set(ticks.recv());
                shared.tick(&mut runners).await;
            }
        }
    }
    shared.end_of_time(&mut runners).await;
}

/// Runs a batch through the chain from stage `from`: failures to the dead-letter channel,
/// retries scheduled; returns what comes out of the last stage.
async fn run_chain(
    runners: &mut [StageRunner],
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
        let tap = &runner.handle.metrics.tap;
        tap.offer(&result.output.events, &result.output.provenance);
        if let Some(dead) = &result.dead {
            tap.offer_dead(dead);
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

impl Shared {
    /// Takes the next input batch and its ticket, once the window and the retry bound leave
    /// room; `None` when the input is closed and drained.
    async fn take(&self) -> Option<(u64, Batch)> {
        let mut intake = self.intake.lock().await;
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            let room = intake.next < self.emitted.load(Ordering::Acquire) + self.window
                && self.retries.load(Ordering::Acquire) < self.retry_bound;
            if room {
                break;
            }
            progress.await;
        }
        let mut batch = intake.input.recv().await?;
        edge::taken(&self.head, &batch);
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
        Some((ticket, batch))
    }

    /// Parks a finished ticket's output and sends every batch whose turn has come.
    async fn emit(&self, ticket: u64, output: Option<Batch>) {
        let mut reorder = self.reorder.lock().await;
        let slot = (ticket - reorder.next) as usize;
        if reorder.parked.len() <= slot {
            reorder.parked.resize_with(slot + 1, || None);
        }
        reorder.parked[slot] = Some(output);
        while let Some(Some(_)) = reorder.parked.front() {
            let Some(Some(output)) = reorder.parked.pop_front() else {
                unreachable!("checked above")
            };
            reorder.next += 1;
            if let Some(batch) = output {
                self.outputs.send(batch).await;
            }
            self.emitted.store(reorder.next, Ordering::Release);
            self.progress.notify_waiters();
        }
    }

    /// A tick: the input watermark as it stands now (an idle producer no longer holds it
    /// back) and the processing-time clock run through the chain as an empty batch; what the
    /// timers made goes on. Only chains of one worker tick (stages with timers have one).
    async fn tick(self: &Arc<Self>, runners: &mut [StageRunner]) {
        let marks = {
            let mut intake = self.intake.lock().await;
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
        };
        let moved = marks.is_some();
        let batch = Batch {
            events: Default::default(),
            ack: self.ctx.tracker.emit(0),
            provenance: Default::default(),
            origin: None,
            marks: marks.or_else(|| {
                // No move: the stages still look at their processing-time timers.
                Some(Arc::new(Marks {
                    before: Vec::new(),
                    after: crate::pipeline::time::NONE,
                }))
            }),
            from: 0,
        };
        if let Some(out) = run_chain(runners, batch, 0, 0, None, self).await
            && (moved || !out.is_empty())
        {
            self.outputs.send(out).await;
        }
    }

    /// The input has ended: unless the run was stopped (a stopped run resumes later, and its
    /// windows must stay open), each stage in turn sees the end of time and fires every timer
    /// left, and what they make goes through the rest of the chain and on. Then the chain's
    /// consumers hear that this input is at the end of time. Once per chain.
    async fn end_of_time(self: &Arc<Self>, runners: &mut [StageRunner]) {
        if self.ctx.stop.is_cancelled() || self.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        let timed = runners.iter().any(StageRunner::timed);
        for i in 0..runners.len() {
            loop {
                let result = runners[i].end_of_time(self.ctx.tracker.emit(0));
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
                        run_chain(runners, out, i + 1, 0, None, self).await
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
        let tx = self.retry_tx.clone();
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
            self.retry_tx.close();
        }
    }

    /// The input is closed and drained: once nothing is pending, the workers may go.
    fn input_ended(&self) {
        self.input_closed.store(true, Ordering::SeqCst);
        if self.pending.load(Ordering::SeqCst) == 0 {
            self.retry_tx.close();
        }
    }
}
