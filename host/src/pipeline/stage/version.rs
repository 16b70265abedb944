//! A stage's versions as the data plane sees them: [`StageHandle`] and [`StageVersion`].
//!
//! A stage's live version sits in a `watch` channel. Each worker holds a receiver and looks
//! at it before each batch (an atomic load when nothing changed), so a swap takes effect
//! between batches: a batch runs on one version from its first call to its last, and a batch
//! already inside the old version finishes there. Workers report what each batch did
//! ([`StageHandle::record`]); the canary guard of hot loading reads those counts for the
//! generation it watches. The handle also holds what a stage's workers share (its circuit
//! breaker and its metrics) and the stage's hot-load record ([`Reloads`]), which the control
//! plane writes and the observer reads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use weir_sandbox::{LogQuota, ProcessorFactory};

use crate::config;
use crate::pipeline::provenance::VersionHeader;
use crate::pipeline::report::NodeMetrics;
use crate::pipeline::stage::breaker::Breaker;
use crate::pipeline::stage::canary::{GenerationCounts, Verdict, judge};
use crate::pipeline::stage::reloads::Reloads;
use crate::pipeline::stage::shadow::{Shadow, ShadowStats};
use crate::pipeline::state::StageState;

/// One version of a stage, as its workers run it.
pub struct StageVersion {
    /// Bumped by every swap; a batch's counts go to the generation that ran it.
    pub generation: u64,
    pub factory: Arc<dyn ProcessorFactory>,
    /// The version's sha256, written into dead letters.
    pub digest: Arc<str>,
    /// `weir.version.<stage>`, added to every output event's provenance.
    pub header: VersionHeader,
    /// Whether this version's reserved headers have been warned of: once per version, so a
    /// plugin that writes them on every event costs one log line.
    warned_reserved: AtomicBool,
}

impl StageVersion {
    fn new(generation: u64, stage: &str, factory: Arc<dyn ProcessorFactory>) -> StageVersion {
        StageVersion {
            generation,
            digest: Arc::from(factory.digest()),
            header: VersionHeader::new(stage, factory.digest()),
            factory,
            warned_reserved: AtomicBool::new(false),
        }
    }

    /// Logs, the first time only, that this version's plugin wrote headers with reserved
    /// names, which the host removed.
    pub fn warn_reserved(&self, stage: &str, stripped: u64) {
        if !self.warned_reserved.swap(true, Ordering::Relaxed) {
            tracing::warn!(stage, version = %self.header.value, stripped,
                "the plugin wrote headers whose names start with `weir.`, which the host reserves; \
                 they were removed (this warning is given once per version)");
        }
    }
}

/// What a stage's workers, its chain and the control plane share.
pub struct StageHandle {
    pub config: Arc<config::Stage>,
    pub name: Arc<str>,
    pub metrics: Arc<NodeMetrics>,
    /// The guest log lines the stage's instances may write, shared by every version.
    pub log_quota: Arc<LogQuota>,
    /// The stage's keyed state, shared by every version: a hot swap or a rollback keeps it.
    pub state: Arc<StageState>,
    /// Whether the stage's workers are routed by key (set at the start, for every version).
    pub keyed: bool,
    /// The live version's number and the hot-load counts.
    pub reloads: Reloads,
    version: watch::Sender<Arc<StageVersion>>,
    counts: Mutex<GenerationCounts>,
    recorded: Notify,
    pub(crate) breaker: Mutex<Breaker>,
    /// The generation the canary has condemned ([`NONE`] when none): its workers stop calling
    /// it and wait for the rollback, so a version that fails everything costs no more than its
    /// canary allows, however fast the input.
    condemned: AtomicU64,
    /// Whether a shadow runs: the one relaxed load a batch costs when none does.
    shadowing: AtomicBool,
    /// The running shadow, and the counts of the latest one (running or ended).
    shadow: Mutex<ShadowSlot>,
}

/// The running shadow, and the counts of the latest one (running or ended).
type ShadowSlot = (Option<Arc<Shadow>>, Option<Arc<ShadowStats>>);

/// No generation is condemned.
const NONE: u64 = u64::MAX;

/// How long a worker waits for a condemned version's rollback before it goes on calling it:
/// a rollback that cannot happen (the earlier version no longer starts) must not stall the
/// stage for good.
const CONDEMNED_WAIT: Duration = Duration::from_secs(10);

impl StageHandle {
    pub fn new(
        config: Arc<config::Stage>,
        factory: Arc<dyn ProcessorFactory>,
        metrics: Arc<NodeMetrics>,
        log_quota: Arc<LogQuota>,
        (state, keyed): (Arc<StageState>, bool),
    ) -> Arc<StageHandle> {
        let name: Arc<str> = Arc::from(config.name.as_str());
        let version = Arc::new(StageVersion::new(0, &name, factory));
        Arc::new(StageHandle {
            breaker: Mutex::new(Breaker::new(config.breaker)),
            config,
            name,
            metrics,
            log_quota,
            state,
            keyed,
            reloads: Reloads::default(),
            version: watch::Sender::new(version),
            counts: Mutex::new(GenerationCounts::default()),
            recorded: Notify::new(),
            condemned: AtomicU64::new(NONE),
            shadowing: AtomicBool::new(false),
            shadow: Mutex::new((None, None)),
        })
    }

    /// The version new batches go to.
    pub fn current(&self) -> Arc<StageVersion> {
        self.version.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<StageVersion>> {
        self.version.subscribe()
    }

    /// Makes `factory` the version for every batch not yet started; returns the new version.
    /// A `guarded` version is watched by the canary from its first batch.
    pub fn swap(&self, factory: Arc<dyn ProcessorFactory>, guarded: bool) -> Arc<StageVersion> {
        // The counts restart under their lock before the version is published, so no worker
        // can report a batch of the new generation into the old counts.
        let mut counts = self.lock_counts();
        let generation = counts.generation.max(self.current().generation) + 1;
        *counts = GenerationCounts {
            generation,
            total_events: counts.total_events,
            guarded: guarded && self.config.canary.events > 0,
            ..GenerationCounts::default()
        };
        self.condemned.store(NONE, Ordering::Release);
        let version = Arc::new(StageVersion::new(generation, &self.name, factory));
        self.version.send_replace(Arc::clone(&version));
        drop(counts);
        version
    }

    /// Whether the stage's circuit breaker is open now: batches fail as `breaker-open`.
    pub fn breaker_open(&self) -> bool {
        self.breaker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_open(Instant::now())
    }

    /// What the current generation has done so far.
    pub fn counts(&self) -> GenerationCounts {
        *self.lock_counts()
    }

    /// Resolves after the next batch is recorded (or at once if one was recorded since the
    /// last call).
    pub async fn recorded(&self) {
        self.recorded.notified().await;
    }

    /// Counts a finished batch of `generation`: one uncontended lock per batch.
    pub(crate) fn record(&self, generation: u64, events: u64, failed: u64) {
        let mut counts = self.lock_counts();
        counts.total_events += events;
        if counts.generation == generation {
            counts.batches += 1;
            counts.events += events;
            counts.failed += failed;
            counts.first_batch.get_or_insert_with(Instant::now);
            if counts.guarded && judge(&counts, &self.config.canary) == Verdict::RollBack {
                self.condemned.store(generation, Ordering::Release);
            }
        }
        drop(counts);
        self.recorded.notify_one();
    }

    /// The rollback of a condemned version could not happen: its workers go on calling it.
    pub fn pardon(&self) {
        self.condemned.store(NONE, Ordering::Release);
    }

    /// Waits, on a worker thread, while `generation` is condemned and not yet replaced, for at
    /// most [`CONDEMNED_WAIT`]. Returns at once for any other generation.
    pub(crate) fn wait_if_condemned(&self, generation: u64) {
        let since = Instant::now();
        while self.condemned.load(Ordering::Acquire) == generation
            && self.current().generation == generation
            && since.elapsed() < CONDEMNED_WAIT
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The running shadow, when one runs: one relaxed load when none does.
    pub(crate) fn shadow(&self) -> Option<Arc<Shadow>> {
        if !self.shadowing.load(Ordering::Relaxed) {
            return None;
        }
        self.lock_shadow().0.clone()
    }

    /// Starts feeding `shadow` copies of the input batches; ends any shadow running before.
    pub fn set_shadow(&self, shadow: Arc<Shadow>) {
        let mut slot = self.lock_shadow();
        if let Some(old) = slot.0.take() {
            old.stats.end(crate::pipeline::stage::ShadowState::Replaced);
        }
        slot.1 = Some(Arc::clone(&shadow.stats));
        slot.0 = Some(shadow);
        self.shadowing.store(true, Ordering::Relaxed);
    }

    /// Ends the running shadow, marked `state`; returns it, `None` when none runs. Batches
    /// already copied are still compared, and its counts stay readable.
    pub fn end_shadow(&self, state: crate::pipeline::stage::ShadowState) -> Option<Arc<Shadow>> {
        let mut slot = self.lock_shadow();
        self.shadowing.store(false, Ordering::Relaxed);
        let shadow = slot.0.take()?;
        shadow.stats.end(state);
        Some(shadow)
    }

    /// The counts of the running shadow, or of the latest one to have run.
    pub fn shadow_stats(&self) -> Option<Arc<ShadowStats>> {
        self.lock_shadow().1.clone()
    }

    fn lock_shadow(&self) -> std::sync::MutexGuard<'_, ShadowSlot> {
        self.shadow.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_counts(&self) -> std::sync::MutexGuard<'_, GenerationCounts> {
        // Every update is one step: a panic elsewhere cannot leave them half-written.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}
