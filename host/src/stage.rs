//! Running one stage: batches in, plugin calls on worker threads, batches out in order.
//!
//! Wasm never runs on the tokio reactor. A stage has `workers` OS threads, each owning one
//! [`Instance`]. The stage's dispatcher task takes batches from its input channel, hands each
//! to a free worker with a one-shot reply slot, and queues the slot in a bounded FIFO; the
//! emitter task awaits the slots in that order, so output order equals input order whatever
//! worker finishes first, and the FIFO's bound is the stage's reorder window.
//!
//! On a worker, a batch goes through [`Worker::run`]: one `process` call; on a trap, the
//! instance is replaced and the batch is split in halves and re-run until the poison event is
//! alone (bounded by [`MAX_TRAPS_PER_BATCH`]); outputs that break the stage's caps fail
//! as `output-cap`; what fails becomes a [`DeadLetter`] carrying the batch's acks. Events
//! that asked for a retry go back to the emitter, which sends them to the plugin again after
//! an exponential backoff with jitter, in a task of their own, so the stage's other batches
//! keep flowing. A circuit breaker shared by the stage's workers counts failures over a
//! sliding window; once it trips, the stage's `on_error` policy acts, and batches fail at
//! once as `breaker-open` until a trial batch after the cooldown does well.
//!
//! A stage's version lives in a [`Live`] handle that hot loading can swap: each worker checks
//! it before a batch, tags every output event with the header `weir.version.<stage>` (made
//! once per version; upstream stages' version headers travel around the sandbox, not through
//! it), and reports the batch's event and failure counts back to it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::config::{self, OnError};
use crate::delivery::{Ack, Batch, DeadLetter, FailureKind};
use crate::metrics::NodeMetrics;
use crate::sandbox::{Event, Failure, Outcome, Trapped};
use crate::topology::{Outputs, Shared};

/// Traps one batch may cost while its poison events are isolated. One poison event in a
/// batch of 256 needs 9 (one per halving); this allows a second one, and bounds the re-run
/// work when every event traps (each trap may cost a full deadline).
pub const MAX_TRAPS_PER_BATCH: u32 = 20;

/// First retry delay; doubles per attempt, with ±50 % jitter so that retries of many
/// events do not hit a struggling dependency in lockstep.
const RETRY_BASE: Duration = Duration::from_millis(10);
/// Longest delay between two retries of an event.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// What became of one input event.
enum Fate {
    Out(Vec<Event>),
    Retry(String),
    Failed { kind: FailureKind, message: String },
}

struct Job {
    batch: Batch,
    /// 0 for a batch from the input; n for the n-th retry of events that asked for one.
    attempt: u32,
    reply: oneshot::Sender<Done>,
}

/// A worker's result for one batch.
struct Done {
    batch: Batch,
    dead: Vec<DeadLetter>,
    /// Events to send to the plugin again after a backoff.
    retry: Option<Batch>,
    /// Set when this batch tripped the stage's circuit breaker.
    tripped: Option<String>,
}

/// What runs a stage's batches: a sandboxed plugin instance, or native code for baselines.
pub trait Processor: Send {
    /// Runs one batch. `Err` means the processor is poisoned: it is dropped and a fresh one
    /// is made for the next call.
    fn process(&mut self, events: &[Event]) -> Result<Vec<Outcome>, Trapped>;
}

/// Makes a stage's processors: one per worker at start, and a fresh one after each trap.
/// One factory is one version of the stage.
pub trait ProcessorFactory: Send + Sync {
    fn make(&self) -> Result<Box<dyn Processor>, Trapped>;
    /// The version's identity (a plugin's sha256), written into dead letters.
    fn digest(&self) -> &str;
}

/// The version a stage runs now. Workers compare its generation before each batch, so a
/// swap takes effect between batches: a batch is processed by one version from its first
/// call to its last.
pub struct Live {
    generation: AtomicU64,
    factory: RwLock<Arc<dyn ProcessorFactory>>,
    /// What the current generation has done so far; the canary guard of hot loading reads it.
    counts: Mutex<GenerationCounts>,
    /// Signalled after each recorded batch, so that the canary guard decides at once.
    recorded: tokio::sync::Notify,
}

/// Batches, events and failures of one generation, as its workers report them after each
/// batch. Reports of a batch that an older generation ran are not counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenerationCounts {
    pub generation: u64,
    pub batches: u64,
    pub events: u64,
    /// Events that failed (dead-lettered or dropped by policy).
    pub failed: u64,
    /// When the first batch of this generation finished: the moment it was serving.
    pub first_batch: Option<Instant>,
    /// Events of every generation so far: the stage's throughput across swaps.
    pub total_events: u64,
}

impl Live {
    pub fn new(factory: Arc<dyn ProcessorFactory>) -> Arc<Live> {
        Arc::new(Live {
            generation: AtomicU64::new(0),
            factory: RwLock::new(factory),
            counts: Mutex::new(GenerationCounts::default()),
            recorded: tokio::sync::Notify::new(),
        })
    }

    /// Makes `factory` the version for every batch not yet started; returns the old one.
    pub fn swap(&self, factory: Arc<dyn ProcessorFactory>) -> Arc<dyn ProcessorFactory> {
        let mut current = self.factory.write().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::replace(&mut *current, factory);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        // Reset under the write lock: no worker can see the new generation before its
        // counts start from zero.
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts = GenerationCounts {
            generation,
            total_events: counts.total_events,
            ..GenerationCounts::default()
        };
        drop(counts);
        old
    }

    /// What the current generation has done so far.
    pub fn counts(&self) -> GenerationCounts {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves after the next batch is recorded (or at once if one was recorded since the
    /// last call).
    pub async fn recorded(&self) {
        self.recorded.notified().await;
    }

    /// Counts a finished batch of `generation`; one uncontended lock per batch.
    fn record(&self, generation: u64, events: u64, failed: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total_events += events;
        if counts.generation == generation {
            counts.batches += 1;
            counts.events += events;
            counts.failed += failed;
            counts.first_batch.get_or_insert_with(Instant::now);
        }
        drop(counts);
        self.recorded.notify_one();
    }

    pub fn current(&self) -> (u64, Arc<dyn ProcessorFactory>) {
        let factory = self.factory.read().unwrap_or_else(|e| e.into_inner());
        (
            self.generation.load(Ordering::Acquire),
            Arc::clone(&factory),
        )
    }
}

/// One stage's worker: the thread-side state around a processor.
pub(crate) struct Worker {
    live: Arc<Live>,
    generation: u64,
    factory: Arc<dyn ProcessorFactory>,
    config: Arc<config::Stage>,
    name: Arc<str>,
    digest: Arc<str>,
    /// `weir.version.<stage>` and the version's short digest, made once per version.
    header: (String, Vec<u8>),
    processor: Option<Box<dyn Processor>>,
    metrics: Arc<NodeMetrics>,
    breaker: Arc<Mutex<BreakerState>>,
}

/// The host header that names the version of `stage` that produced an event: its name and
/// the first 12 hex digits of the version's digest.
pub fn version_header(stage: &str, digest: &str) -> (String, Vec<u8>) {
    (
        format!("weir.version.{stage}"),
        digest.as_bytes()[..digest.len().min(12)].to_vec(),
    )
}

/// Prefix of the version headers.
const VERSION_HEADER: &str = "weir.version.";

/// Takes the upstream version headers off each event before it enters the sandbox, so that
/// a plugin never pays to copy them in and out (about half a microsecond per header and
/// event on a passthrough stage); they are put back on what each event becomes. An event
/// without them costs a scan of its headers and no allocation.
fn take_versions(events: &mut [Event]) -> Vec<Vec<(String, Vec<u8>)>> {
    events
        .iter_mut()
        .map(|event| {
            if !event
                .headers
                .iter()
                .any(|(n, _)| n.starts_with(VERSION_HEADER))
            {
                return Vec::new();
            }
            event
                .headers
                .extract_if(.., |(n, _)| n.starts_with(VERSION_HEADER))
                .collect()
        })
        .collect()
}

/// Gives an output event the versions of its input and this stage's own, dropping any
/// version header the plugin set: a plugin cannot forge the version that produced an event.
fn tag(event: &mut Event, upstream: Vec<(String, Vec<u8>)>, own: &(String, Vec<u8>)) {
    if event
        .headers
        .iter()
        .any(|(n, _)| n.starts_with(VERSION_HEADER))
    {
        event
            .headers
            .retain(|(n, _)| !n.starts_with(VERSION_HEADER));
    }
    if event.headers.is_empty() {
        // Reuse the upstream list's allocation.
        event.headers = upstream;
    } else {
        event.headers.extend(upstream);
    }
    event.headers.push(own.clone());
}

impl Worker {
    /// Makes the worker and its first processor, so that a plugin whose `init` fails stops
    /// the pipeline before any event is read.
    pub(crate) fn new(
        live: Arc<Live>,
        config: Arc<config::Stage>,
        metrics: Arc<NodeMetrics>,
        breaker: Arc<Mutex<BreakerState>>,
    ) -> Result<Worker, Trapped> {
        let (generation, factory) = live.current();
        let processor = factory.make()?;
        Ok(Worker {
            digest: Arc::from(factory.digest()),
            header: version_header(&config.name, factory.digest()),
            name: Arc::from(config.name.as_str()),
            live,
            generation,
            factory,
            config,
            processor: Some(processor),
            metrics,
            breaker,
        })
    }

    /// Picks up a new version, if one was swapped in since the last batch.
    fn refresh(&mut self) {
        let (generation, factory) = self.live.current();
        if generation != self.generation {
            self.generation = generation;
            self.digest = Arc::from(factory.digest());
            self.header = version_header(&self.name, factory.digest());
            self.factory = factory;
            self.processor = None;
        }
    }

    /// One call on a live processor; after a trap it is dropped and the next call makes a
    /// fresh one.
    fn call(&mut self, events: &[Event]) -> Result<Vec<Outcome>, Trapped> {
        let processor = match &mut self.processor {
            Some(processor) => processor,
            None => self.processor.insert(self.factory.make()?),
        };
        let result = processor.process(events);
        if let Err(trapped) = &result {
            NodeMetrics::add(&self.metrics.traps, 1);
            tracing::warn!(stage = %self.name, plugin = %&self.digest[..self.digest.len().min(12)], events = events.len(),
                "plugin trapped ({trapped}); replacing the instance");
            self.processor = None;
        }
        result
    }

    /// Runs `events` and writes one fate per event into `fates`, isolating trapping events by
    /// halving. `traps` counts the traps this batch has cost so far.
    fn isolate(&mut self, events: &[Event], fates: &mut Vec<Fate>, traps: &mut u32) {
        match self.call(events) {
            Ok(outcomes) if outcomes.len() == events.len() => {
                fates.extend(outcomes.into_iter().map(|outcome| match outcome {
                    Ok(out) => Fate::Out(out),
                    Err(Failure::Reject(reason)) => Fate::Failed {
                        kind: FailureKind::Reject,
                        message: reason,
                    },
                    Err(Failure::Retry(reason)) => Fate::Retry(reason),
                }));
            }
            Ok(outcomes) => {
                let message = format!(
                    "the plugin returned {} outcomes for {} events",
                    outcomes.len(),
                    events.len()
                );
                fates.extend(events.iter().map(|_| Fate::Failed {
                    kind: FailureKind::WrongOutcomeCount,
                    message: message.clone(),
                }));
            }
            Err(trapped) => {
                *traps += 1;
                if events.len() == 1
                    || trapped.kind == FailureKind::InitFailed
                    || *traps >= MAX_TRAPS_PER_BATCH
                {
                    let message = if events.len() > 1 && trapped.kind != FailureKind::InitFailed {
                        format!(
                            "{} (not isolated: the batch trapped {} times)",
                            trapped.message, *traps
                        )
                    } else {
                        trapped.message
                    };
                    fates.extend(events.iter().map(|_| Fate::Failed {
                        kind: trapped.kind,
                        message: message.clone(),
                    }));
                } else {
                    let (left, right) = events.split_at(events.len() / 2);
                    self.isolate(left, fates, traps);
                    if *traps >= MAX_TRAPS_PER_BATCH {
                        // The budget ran out in the left half: the right half is not tried.
                        let message = format!(
                            "{} (not isolated: the batch trapped {} times)",
                            trapped.message, *traps
                        );
                        fates.extend(right.iter().map(|_| Fate::Failed {
                            kind: trapped.kind,
                            message: message.clone(),
                        }));
                    } else {
                        self.isolate(right, fates, traps);
                    }
                }
            }
        }
    }

    /// Processes one batch: outputs in order, failures as dead letters, and the events that
    /// asked for a retry (while attempts remain) set aside for the emitter to send again.
    /// `attempt` is 0 for a batch from the input, n for its n-th retry.
    fn run(&mut self, batch: Batch, attempt: u32) -> Done {
        self.refresh();
        let Batch { mut events, acks } = batch;
        let count = events.len();
        NodeMetrics::add(&self.metrics.events_in, count as u64);

        let refused = self.breaker().admit(self.generation);
        if let Some(reason) = refused {
            let dead = events
                .into_iter()
                .map(|event| {
                    self.letter(
                        FailureKind::BreakerOpen,
                        reason.clone(),
                        attempt,
                        event,
                        &acks,
                    )
                })
                .collect();
            return self.done(Vec::new(), dead, Vec::new(), acks, None);
        }

        let mut fates = Vec::with_capacity(count);
        let mut traps = 0;
        self.isolate(&events, &mut fates, &mut traps);
        self.cap_outputs(&mut fates);

        let mut out = Vec::with_capacity(count);
        let mut dead = Vec::new();
        let mut retry = Vec::new();
        let versions = take_versions(&mut events);
        for ((mut event, fate), upstream) in events.into_iter().zip(fates).zip(versions) {
            let (kind, message) = match fate {
                Fate::Out(produced) => {
                    // The last output takes the upstream headers; only a fan-out copies them.
                    let last = produced.len().saturating_sub(1);
                    let mut upstream = Some(upstream);
                    for (k, mut produced) in produced.into_iter().enumerate() {
                        let carried = if k == last {
                            upstream.take().unwrap_or_default()
                        } else {
                            upstream.clone().unwrap_or_default()
                        };
                        tag(&mut produced, carried, &self.header);
                        out.push(produced);
                    }
                    continue;
                }
                Fate::Retry(_) if attempt < self.config.retries => {
                    event.headers.extend(upstream);
                    retry.push(event);
                    continue;
                }
                Fate::Retry(reason) => (FailureKind::RetriesExhausted, reason),
                Fate::Failed { kind, message } => (kind, message),
            };
            // A dead letter keeps the event as it arrived, for replay.
            event.headers.extend(upstream);
            dead.push(self.letter(kind, message, attempt, event, &acks));
        }
        self.live.record(
            self.generation,
            (count - retry.len()) as u64,
            dead.len() as u64,
        );
        let last = dead
            .last()
            .map(|d| format!("{}: {}", d.kind.as_str(), d.message));
        let tripped = self.breaker().record(dead.len(), count - retry.len(), last);
        self.done(out, dead, retry, acks, tripped)
    }

    fn breaker(&self) -> MutexGuard<'_, BreakerState> {
        // The state is a few counters; a panic elsewhere cannot leave them unusable.
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn letter(
        &self,
        kind: FailureKind,
        message: String,
        attempt: u32,
        event: Event,
        acks: &[Ack],
    ) -> DeadLetter {
        DeadLetter {
            stage: Arc::clone(&self.name),
            plugin_digest: Arc::clone(&self.digest),
            kind,
            message,
            attempts: attempt + 1,
            event,
            ack: acks.to_vec(),
        }
    }

    fn done(
        &self,
        out: Vec<Event>,
        dead: Vec<DeadLetter>,
        retry: Vec<Event>,
        acks: Vec<Ack>,
        tripped: Option<String>,
    ) -> Done {
        NodeMetrics::add(&self.metrics.events_out, out.len() as u64);
        NodeMetrics::add(&self.metrics.retries, retry.len() as u64);
        for run in dead.chunk_by(|a, b| a.kind == b.kind) {
            self.metrics.fail(run[0].kind, run.len() as u64);
        }
        let retry = (!retry.is_empty()).then(|| Batch {
            events: retry,
            acks: acks.clone(),
        });
        Done {
            batch: Batch { events: out, acks },
            dead,
            retry,
            tripped,
        }
    }

    /// Fails the events whose outputs break the stage's output caps, so that a plugin
    /// cannot amplify one event into a flood downstream.
    fn cap_outputs(&self, fates: &mut [Fate]) {
        let limits = &self.config.limits;
        let mut call_bytes = 0u64;
        for fate in fates.iter_mut() {
            let Fate::Out(produced) = fate else { continue };
            let message = if produced.len() > limits.max_output_events {
                Some(format!(
                    "the plugin made {} events from one; the cap is {} (max_output_events)",
                    produced.len(),
                    limits.max_output_events
                ))
            } else if let Some(big) = produced
                .iter()
                .find(|e| e.value.len() as u64 > limits.max_value_size)
            {
                Some(format!(
                    "the plugin made a {}-byte value; the cap is {} (max_value_size)",
                    big.value.len(),
                    limits.max_value_size
                ))
            } else {
                let bytes: u64 = produced.iter().map(event_bytes).sum();
                if call_bytes + bytes > limits.max_output_bytes {
                    Some(format!(
                        "the call's output would pass {} bytes (max_output_bytes)",
                        limits.max_output_bytes
                    ))
                } else {
                    call_bytes += bytes;
                    None
                }
            };
            if let Some(message) = message {
                *fate = Fate::Failed {
                    kind: FailureKind::OutputCap,
                    message,
                };
            }
        }
    }
}

fn event_bytes(event: &Event) -> u64 {
    let key = event.key.as_ref().map_or(0, Vec::len);
    let headers: usize = event.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    (key + event.value.len() + headers) as u64
}

/// A stage's circuit breaker, shared by its workers: the failures among the last `window`
/// events sent to the plugin decide whether the next batch is sent at all.
pub(crate) struct BreakerState {
    config: config::Breaker,
    /// One entry per recent event: whether it failed.
    recent: VecDeque<bool>,
    failed: usize,
    open_until: Option<Instant>,
    /// After a cooldown, the next batch is a trial: it closes the breaker or reopens it.
    trial: bool,
    /// The stage version the window describes: a swap starts a clean window, since the
    /// failures of one version say nothing of the next.
    generation: u64,
}

impl BreakerState {
    pub(crate) fn new(config: config::Breaker) -> Arc<Mutex<BreakerState>> {
        Arc::new(Mutex::new(BreakerState {
            config,
            recent: VecDeque::with_capacity(config.window),
            failed: 0,
            open_until: None,
            trial: false,
            generation: 0,
        }))
    }

    /// `None` when a batch may go to the plugin; otherwise why it may not.
    fn admit(&mut self, generation: u64) -> Option<String> {
        if generation != self.generation {
            self.generation = generation;
            self.recent.clear();
            self.failed = 0;
            self.open_until = None;
            self.trial = false;
        }
        let until = self.open_until?;
        let now = Instant::now();
        if now >= until {
            self.open_until = None;
            self.trial = true;
            return None;
        }
        Some(format!(
            "the circuit breaker is open: {} of the last {} events failed; the plugin is tried again in {:.1}s",
            self.failed,
            self.recent.len(),
            (until - now).as_secs_f64()
        ))
    }

    /// Records a batch's results; returns a description when this batch trips the breaker.
    fn record(&mut self, failed: usize, processed: usize, last: Option<String>) -> Option<String> {
        if std::mem::take(&mut self.trial) {
            // The trial batch alone decides: a healthy one closes the breaker on a clean
            // window, a failing one reopens it for another cooldown.
            if processed > 0 && (failed as f64) < self.config.threshold * processed as f64 {
                self.recent.clear();
                self.failed = 0;
                tracing::info!("circuit breaker closed after a healthy trial batch");
            } else {
                self.open_until = Some(Instant::now() + self.config.cooldown);
            }
            return None;
        }
        for i in 0..processed {
            let bad = i < failed;
            if self.recent.len() == self.config.window && self.recent.pop_front() == Some(true) {
                self.failed -= 1;
            }
            self.recent.push_back(bad);
            self.failed += usize::from(bad);
        }
        let full = self.recent.len() == self.config.window;
        if self.open_until.is_none()
            && full
            && self.failed as f64 >= self.config.threshold * self.config.window as f64
        {
            self.open_until = Some(Instant::now() + self.config.cooldown);
            return Some(format!(
                "circuit breaker tripped: {} of the last {} events failed (last: {})",
                self.failed,
                self.recent.len(),
                last.unwrap_or_else(|| "none".into())
            ));
        }
        None
    }
}

/// Exponential backoff with ±50 % jitter.
fn backoff(attempt: u32) -> Duration {
    let base = RETRY_BASE
        .saturating_mul(1 << attempt.min(16))
        .min(RETRY_MAX);
    base.mul_f64(0.5 + fastrand::f64())
}

/// What a stage's emitter and its retry tasks share.
struct Emit {
    config: Arc<config::Stage>,
    outputs: Outputs,
    shared: Arc<Shared>,
    jobs: async_channel::Sender<Job>,
}

/// Starts a stage: its worker threads, dispatcher and emitter. Returns when all three have
/// been started; the tasks end when the input channel closes and everything is drained.
pub(crate) fn spawn(
    workers: Vec<Worker>,
    input: mpsc::Receiver<Batch>,
    outputs: Outputs,
    shared: Arc<Shared>,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let config = Arc::clone(&workers[0].config);
    let (job_tx, job_rx) = async_channel::bounded::<Job>(workers.len());
    for (i, mut worker) in workers.into_iter().enumerate() {
        let jobs = job_rx.clone();
        std::thread::Builder::new()
            .name(format!("weir-{}-{i}", config.name))
            .spawn(move || {
                while let Ok(job) = jobs.recv_blocking() {
                    let done = worker.run(job.batch, job.attempt);
                    // The emitter is gone only when the pipeline is being torn down.
                    let _ = job.reply.send(done);
                }
            })?;
    }

    // The reorder window: a batch per worker may be in progress, and as many finished
    // batches may wait for an earlier one.
    let (order_tx, mut order_rx) = mpsc::channel::<oneshot::Receiver<Done>>(config.workers);
    let jobs = job_tx.clone();
    let dispatcher = tokio::spawn(async move {
        let mut input = input;
        while let Some(batch) = input.recv().await {
            let (reply, slot) = oneshot::channel();
            if order_tx.send(slot).await.is_err()
                || jobs
                    .send(Job {
                        batch,
                        attempt: 0,
                        reply,
                    })
                    .await
                    .is_err()
            {
                break;
            }
        }
    });

    let emit = Arc::new(Emit {
        config,
        outputs,
        shared,
        jobs: job_tx,
    });
    let emitter = tokio::spawn(async move {
        let mut retries = tokio::task::JoinSet::new();
        while let Some(slot) = order_rx.recv().await {
            let Ok(done) = slot.await else {
                emit.shared.fail(format!(
                    "stage `{}`: a worker thread stopped unexpectedly",
                    emit.config.name
                ));
                break;
            };
            if let Some(retry) = settle(&emit, done).await {
                retries.spawn(retry_later(Arc::clone(&emit), retry));
            }
            while retries.try_join_next().is_some() {}
        }
        // Retried events are still accepted events: the stage ends only after them. The
        // worker threads end once the last sender of jobs (held by `emit`) is gone.
        while retries.join_next().await.is_some() {}
    });
    Ok(vec![dispatcher, emitter])
}

/// Sends events that asked for a retry back to the plugin after a backoff, until they
/// succeed or run out of attempts. Other batches keep flowing meanwhile, so a retried event
/// leaves the stage when it succeeds, possibly after events that came after it.
async fn retry_later(emit: Arc<Emit>, mut batch: Batch) {
    let mut attempt = 0;
    loop {
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
        let (reply, slot) = oneshot::channel();
        if emit
            .jobs
            .send(Job {
                batch,
                attempt,
                reply,
            })
            .await
            .is_err()
        {
            return;
        }
        let Ok(done) = slot.await else { return };
        match settle(&emit, done).await {
            Some(again) => batch = again,
            None => return,
        }
    }
}

/// Passes a finished batch on: failures per the stage's policy, outputs downstream. Returns
/// the events to retry, if any.
async fn settle(emit: &Emit, done: Done) -> Option<Batch> {
    let config = &emit.config;
    if let Some(tripped) = &done.tripped {
        tracing::error!(stage = %config.name, "{tripped}");
        if config.on_error == OnError::Stop {
            emit.shared.fail(format!(
                "stage `{}`: {tripped} (on_error = \"stop\")",
                config.name
            ));
        }
    }
    if let Some(first) = done
        .dead
        .iter()
        .find(|d| d.kind != FailureKind::BreakerOpen)
    {
        tracing::warn!(stage = %config.name, kind = first.kind.as_str(), failed = done.dead.len(),
            "events failed: {}", first.message);
    }
    // `drop` counts and logs failed events but writes none; the other policies write every
    // failure, even when stopping: nothing accepted is lost.
    if config.on_error != OnError::Drop {
        for letter in done.dead {
            emit.shared.dead_letter(letter).await;
        }
    }
    if !done.batch.events.is_empty() {
        emit.outputs.send(done.batch).await;
    }
    done.retry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(window: usize) -> Arc<Mutex<BreakerState>> {
        BreakerState::new(config::Breaker {
            window,
            threshold: 0.5,
            cooldown: Duration::from_millis(30),
        })
    }

    #[test]
    fn the_breaker_trips_once_the_window_is_full_of_failures_and_closes_after_a_good_trial() {
        let b = breaker(10);
        let mut b = b.lock().unwrap();
        assert!(b.record(4, 8, None).is_none(), "the window is not full yet");
        assert!(b.admit(0).is_none());
        let tripped = b
            .record(2, 2, Some("panic: boom".into()))
            .expect("6 of 10 failed");
        assert!(
            tripped.contains("6 of the last 10") && tripped.contains("panic: boom"),
            "{tripped}"
        );
        assert!(b.admit(0).is_some(), "open during the cooldown");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admit(0).is_none(), "a trial batch after the cooldown");
        assert!(b.record(0, 5, None).is_none());
        assert!(b.admit(0).is_none(), "closed after a good trial");
        assert!(
            b.record(5, 5, None).is_none(),
            "a clean window must fill again before tripping"
        );
    }

    #[test]
    fn a_failing_trial_reopens_the_breaker() {
        let b = breaker(4);
        let mut b = b.lock().unwrap();
        assert!(b.record(4, 4, None).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admit(0).is_none());
        assert!(b.record(3, 3, None).is_none());
        assert!(b.admit(0).is_some(), "reopened");
    }

    fn event(headers: &[(&str, &str)]) -> Event {
        Event {
            key: None,
            value: vec![b'x'; 100],
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            timestamp: None,
        }
    }

    #[test]
    fn version_headers_go_around_the_plugin_and_cannot_be_forged() {
        let mut events = vec![
            event(&[("trace", "1"), ("weir.version.parse", "aaaaaaaaaaaa")]),
            event(&[]),
        ];
        let versions = take_versions(&mut events);
        assert_eq!(
            events[0].headers.len(),
            1,
            "the plugin sees only its own headers"
        );
        assert!(versions[1].is_empty());
        // The plugin tries to claim another version for both stages.
        let mut out = event(&[
            ("trace", "1"),
            ("weir.version.parse", "forged"),
            ("weir.version.tag", "forged"),
        ]);
        let own = version_header("tag", &"b".repeat(64));
        tag(&mut out, versions[0].clone(), &own);
        let names: Vec<(&str, &[u8])> = out
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        assert_eq!(
            names,
            [
                ("trace", b"1".as_slice()),
                ("weir.version.parse", b"aaaaaaaaaaaa".as_slice()),
                ("weir.version.tag", b"bbbbbbbbbbbb".as_slice()),
            ]
        );
    }

    /// What a worker adds per event for the version headers, on batches of 256 as they come
    /// from the sandbox. A measurement: `cargo test --release --lib -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark"]
    fn bench_version_header_cost() {
        let own = version_header("tag", &"b".repeat(64));
        let rounds = 4_000;
        for upstream in [0usize, 1, 3] {
            let headers: Vec<(String, &str)> = (0..upstream)
                .map(|i| (format!("weir.version.s{i}"), "aaaaaaaaaaaa"))
                .collect();
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            let mut spent = [Duration::ZERO; 2];
            for with in [false, true] {
                for _ in 0..rounds {
                    let mut batch: Vec<Event> = (0..256).map(|_| event(&headers)).collect();
                    let start = Instant::now();
                    if with {
                        let versions = take_versions(&mut batch);
                        for (e, v) in batch.iter_mut().zip(versions) {
                            tag(e, v, &own);
                        }
                    }
                    drop(std::hint::black_box(batch));
                    spent[with as usize] += start.elapsed();
                }
            }
            let per_event = |d: Duration| d.as_nanos() as f64 / (rounds * 256) as f64;
            println!(
                "{upstream} upstream version headers: {:.1} ns/event for the version headers (free included)",
                per_event(spent[1]) - per_event(spent[0])
            );
        }
    }
}
