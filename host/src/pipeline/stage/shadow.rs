//! Shadowing: a candidate version of a stage runs beside the live one on copies of the live
//! version's input batches, and its outputs are compared with the live outputs, never sent on.
//!
//! How data moves: the control plane makes a [`Shadow`] (a version prepared like any reload,
//! with its own keyed state and log quota) and hands it to the stage's
//! [`StageHandle`](super::StageHandle). Before each input batch a stage runner does one relaxed
//! atomic load; only while a shadow runs does it sample the batch ([`Shadow::wants`]), copy its
//! input events, and, once the live call is settled, copy the live outputs and each input's
//! live fate into one [`Item`]. The item goes to the shadow's bounded queue with `try_send`:
//! when the shadow is behind, the batch is skipped and counted, and the live path never waits.
//! Every worker of the stage (and every chain it runs in) offers its batches to the same queue.
//!
//! One thread per shadow takes the items, runs the candidate on each input copy (bisecting on
//! traps as the live path does, under the stage's fuel, deadline and memory limits, on its own
//! instance), and compares, input event by input event ([`compare`]): the events both versions
//! passed are `compared`, and `equal` when they made the same outputs, else `different`; an
//! event either version failed is counted among that side's failures by kind, not compared.
//! The last few differing pairs are kept, escaped and bounded ([`Sample`]).
//!
//! The thread runs at the lowest priority and keeps itself busy at most [`SHADOW_CPU_SHARE`]
//! of the time.
//!
//! The thread ends when the last [`Shadow`] is dropped (stop, promote, or a reload that
//! replaces it): the queue's sender goes with it, and the thread finishes what was queued.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use weir_sandbox::{EventRef, Events, GuestFailureKind, Output, Processor, ProcessorFactory};

use crate::config;
use crate::pipeline::failure::FailureKind;
use crate::pipeline::stage::caps;
use crate::pipeline::stage::isolate::{Piece, isolate};

/// Copied batches waiting for the shadow. With the source's batch size, bounds the memory a
/// shadow slower than the live path can make the host hold (8 input copies and their live
/// outputs); past it, batches are skipped and counted, never waited for.
pub const SHADOW_QUEUE: usize = 8;

/// Differing pairs kept for the user to see; the latest replace the oldest. Bounds the memory
/// and the size of a status answer, whatever the number of differences.
pub const MAX_SAMPLES: usize = 8;

/// Characters of one shown text (a value, a key, a header's name or value); the rest is cut
/// and marked. Blocks a guest that writes megabytes into one value from making every status
/// answer (and the terminal that prints it) carry them.
pub const SAMPLE_TEXT: usize = 200;

/// Headers shown per event in a sample; the rest are counted. Blocks an event with thousands
/// of headers from inflating a sample past its text bounds.
pub const SAMPLE_HEADERS: usize = 8;

/// The nice value of a shadow's thread: the lowest priority, so that a busy shadow takes CPU
/// from the live path only where a core would otherwise be idle.
const SHADOW_NICE: i32 = 19;

/// The share of one core a shadow's thread may keep busy: after each batch it rests in
/// proportion. Blocks a slow or hostile shadow from taking the cores the live path needs
/// (a nice value alone does not, where the scheduler weighs groups of threads first); past
/// it the shadow falls behind and skips batches, counted. A tenth of a core: on two cores whose
/// live path keeps both busy, a slow shadow then costs it about 2.5 % (`cargo bench --bench
/// shadow`; a fifth cost 9–10 %).
pub const SHADOW_CPU_SHARE: f64 = 0.1;

/// What a shadow has come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShadowState {
    Running,
    Stopped,
    /// It was made the live version.
    Promoted,
    /// A reload or rollback of the stage ended it.
    Replaced,
}

const RUNNING: u8 = 0;
const STOPPED: u8 = 1;
const PROMOTED: u8 = 2;
const REPLACED: u8 = 3;

/// One event as a sample shows it: text escaped (control characters written as `\u{..}`,
/// bytes that are not UTF-8 as U+FFFD) and cut at [`SAMPLE_TEXT`] characters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShownEvent {
    pub value: String,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Headers past [`SAMPLE_HEADERS`], not shown.
    #[serde(default)]
    pub more_headers: usize,
    pub timestamp: Option<u64>,
}

/// One input event whose outputs differed: the input, and the first pair of outputs that
/// differ (`None` on the side that made fewer outputs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub input: ShownEvent,
    pub live_outputs: usize,
    pub shadow_outputs: usize,
    pub live: Option<ShownEvent>,
    pub shadow: Option<ShownEvent>,
}

/// A shadow's counts and samples, as the admin API and `weir shadow status` report them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShadowStatus {
    pub state: ShadowState,
    /// The candidate's sha256.
    pub digest: String,
    /// The share of input batches copied to it.
    pub sample: f64,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Input batches run on both versions, and those skipped because the shadow's queue was
    /// full.
    pub batches: u64,
    pub skipped: u64,
    /// Input events both versions passed, and of those, the ones with the same outputs.
    pub compared: u64,
    pub equal: u64,
    pub different: u64,
    /// Input events each version failed, by kind (`trap`, `fuel`, `deadline`, `reject`, ...);
    /// the live version's `retry` are events set aside for another attempt.
    pub live_failed: BTreeMap<String, u64>,
    pub shadow_failed: BTreeMap<String, u64>,
    /// Input events run on each side, and the mean time per event, in microseconds.
    pub live_events: u64,
    pub shadow_events: u64,
    pub live_us_per_event: f64,
    pub shadow_us_per_event: f64,
    /// The latest differing pairs, oldest first.
    pub samples: Vec<Sample>,
}

/// What a shadow has counted; the runners and the shadow's thread write it, readers copy it.
pub struct ShadowStats {
    state: AtomicU8,
    digest: String,
    sample: f64,
    started_at_ms: u64,
    batches: AtomicU64,
    skipped: AtomicU64,
    compared: AtomicU64,
    equal: AtomicU64,
    different: AtomicU64,
    live_events: AtomicU64,
    live_ns: AtomicU64,
    shadow_events: AtomicU64,
    shadow_ns: AtomicU64,
    /// Batches in the queue: a runner looks at it before copying, so that a batch the queue
    /// has no room for costs the live path no copy.
    queued: AtomicUsize,
    /// Failures by kind, live then shadow; samples. Taken once per compared batch.
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    live_failed: BTreeMap<&'static str, u64>,
    shadow_failed: BTreeMap<&'static str, u64>,
    samples: VecDeque<Sample>,
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl ShadowStats {
    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Every update is one step: a panic elsewhere cannot leave it half-written.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> ShadowStatus {
        let per_event = |ns: &AtomicU64, events: &AtomicU64| match get(events) {
            0 => 0.0,
            n => get(ns) as f64 / n as f64 / 1e3,
        };
        let kept = self.kept();
        let kinds =
            |m: &BTreeMap<&'static str, u64>| m.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        ShadowStatus {
            state: match self.state.load(Ordering::Relaxed) {
                RUNNING => ShadowState::Running,
                STOPPED => ShadowState::Stopped,
                PROMOTED => ShadowState::Promoted,
                _ => ShadowState::Replaced,
            },
            digest: self.digest.clone(),
            sample: self.sample,
            started_at_ms: self.started_at_ms,
            batches: get(&self.batches),
            skipped: get(&self.skipped),
            compared: get(&self.compared),
            equal: get(&self.equal),
            different: get(&self.different),
            live_failed: kinds(&kept.live_failed),
            shadow_failed: kinds(&kept.shadow_failed),
            live_events: get(&self.live_events),
            shadow_events: get(&self.shadow_events),
            live_us_per_event: per_event(&self.live_ns, &self.live_events),
            shadow_us_per_event: per_event(&self.shadow_ns, &self.shadow_events),
            samples: kept.samples.iter().cloned().collect(),
        }
    }

    /// Marks how the shadow ended.
    pub fn end(&self, state: ShadowState) {
        let code = match state {
            ShadowState::Running => RUNNING,
            ShadowState::Stopped => STOPPED,
            ShadowState::Promoted => PROMOTED,
            ShadowState::Replaced => REPLACED,
        };
        self.state.store(code, Ordering::Relaxed);
    }
}

/// One input batch as both versions saw it: the input's copy, the live outputs made from it
/// (timers' outputs excluded), the input each live output came from, and the inputs the live
/// version did not pass, with why.
pub(crate) struct Item {
    pub input: Events,
    pub live: Events,
    pub live_of: Vec<u32>,
    pub live_failed: Vec<(u32, &'static str)>,
    pub live_ns: u64,
}

/// A running shadow: what the stage's runners offer batches to.
pub struct Shadow {
    pub factory: Arc<dyn ProcessorFactory>,
    pub stats: Arc<ShadowStats>,
    queue: SyncSender<Item>,
    /// Input batches offered: the sampler's position.
    offered: AtomicU64,
}

impl Shadow {
    /// Starts the shadow's thread on `factory` (a prepared version with its own state) for a
    /// stage held to `limits`; `sample` is the share of batches copied, in (0, 1].
    pub fn start(
        stage: &str,
        factory: Arc<dyn ProcessorFactory>,
        limits: config::Limits,
        sample: f64,
    ) -> std::io::Result<Shadow> {
        let (queue, items) = sync_channel(SHADOW_QUEUE);
        let started_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let stats = Arc::new(ShadowStats {
            state: AtomicU8::new(RUNNING),
            digest: factory.digest().to_string(),
            sample,
            started_at_ms,
            batches: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            compared: AtomicU64::new(0),
            equal: AtomicU64::new(0),
            different: AtomicU64::new(0),
            live_events: AtomicU64::new(0),
            live_ns: AtomicU64::new(0),
            shadow_events: AtomicU64::new(0),
            shadow_ns: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            kept: Mutex::new(Kept::default()),
        });
        let worker = Worker {
            factory: Arc::clone(&factory),
            processor: None,
            limits,
            stats: Arc::clone(&stats),
            stage: Arc::from(stage),
        };
        std::thread::Builder::new()
            .name(format!("weir-shadow-{stage}"))
            .spawn(move || worker.run(items))?;
        Ok(Shadow {
            factory,
            stats,
            queue,
            offered: AtomicU64::new(0),
        })
    }

    /// Whether the next input batch is to be copied: exactly `sample` of them, spread evenly
    /// (batch k is taken when ⌊(k+1)·rate⌋ passes ⌊k·rate⌋), with no random numbers to draw.
    /// A sampled batch the queue has no room for is skipped here, before any copy is made.
    pub(crate) fn wants(&self) -> bool {
        if self.stats.sample < 1.0 {
            let k = self.offered.fetch_add(1, Ordering::Relaxed) as f64;
            if ((k + 1.0) * self.stats.sample).floor() <= (k * self.stats.sample).floor() {
                return false;
            }
        }
        if self.stats.queued.load(Ordering::Relaxed) >= SHADOW_QUEUE {
            add(&self.stats.skipped, 1);
            return false;
        }
        true
    }

    /// Queues a copied batch, or counts it skipped when the shadow is behind: never waits.
    pub(crate) fn offer(&self, item: Item) {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.queue.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                add(&self.stats.skipped, 1);
            }
        }
    }
}

/// The shadow's thread: its instance, the stage's limits, and where it counts.
struct Worker {
    factory: Arc<dyn ProcessorFactory>,
    processor: Option<Box<dyn Processor>>,
    limits: config::Limits,
    stats: Arc<ShadowStats>,
    stage: Arc<str>,
}

/// What became of one input event on one side.
enum Fate {
    /// Its outputs: a range of the side's output batch.
    Passed(Range<usize>),
    Failed(&'static str),
}

impl Worker {
    fn run(mut self, items: Receiver<Item>) {
        // The lowest priority: where the shadow's thread and the live path's threads want the
        // same core, the live path gets it, and the shadow falls behind and skips batches. On
        // Linux the nice value is the calling thread's alone.
        if let Err(e) = rustix::process::setpriority_process(None, SHADOW_NICE) {
            tracing::debug!(stage = %self.stage, "the shadow's thread keeps its priority: {e}");
        }
        while let Ok(item) = items.recv() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            let started = Instant::now();
            self.take(item);
            // Rest in proportion to the work, so that the thread is busy at most
            // SHADOW_CPU_SHARE of the time, whatever the scheduler makes of its priority.
            let rest = (1.0 - SHADOW_CPU_SHARE) / SHADOW_CPU_SHARE;
            std::thread::sleep(started.elapsed().mul_f64(rest));
        }
        tracing::debug!(stage = %self.stage, "shadow ended");
    }

    /// Runs one copied batch on the candidate and compares.
    fn take(&mut self, item: Item) {
        let n = item.input.len();
        let started = Instant::now();
        let mut pieces = Vec::new();
        isolate(
            &item.input,
            &mut |events, _| (self.call(events), false),
            &mut pieces,
        );
        let (shadow_out, shadow_fates) = self.fates(&pieces, n);
        let stats = &self.stats;
        add(&stats.shadow_ns, started.elapsed().as_nanos() as u64);
        add(&stats.shadow_events, n as u64);
        add(&stats.live_ns, item.live_ns);
        add(&stats.live_events, n as u64);
        add(&stats.batches, 1);
        let live_fates = live_fates(&item, n);
        let mut counted = Counted::default();
        let mut samples = Vec::new();
        for (i, (live, shadow)) in live_fates.iter().zip(&shadow_fates).enumerate() {
            match (live, shadow) {
                (Fate::Passed(l), Fate::Passed(s)) => {
                    counted.compared += 1;
                    match compare(&item.live, l.clone(), &shadow_out, s.clone()) {
                        None => counted.equal += 1,
                        Some(first) => {
                            counted.different += 1;
                            samples.push(sample(&item, i, l, &shadow_out, s, first));
                        }
                    }
                }
                (live, shadow) => {
                    if let Fate::Failed(kind) = live {
                        *counted.live_failed.entry(kind).or_default() += 1;
                    }
                    if let Fate::Failed(kind) = shadow {
                        *counted.shadow_failed.entry(kind).or_default() += 1;
                    }
                }
            }
        }
        add(&stats.compared, counted.compared);
        add(&stats.equal, counted.equal);
        add(&stats.different, counted.different);
        if counted.live_failed.is_empty() && counted.shadow_failed.is_empty() && samples.is_empty()
        {
            return;
        }
        let mut kept = stats.kept();
        for (kind, c) in counted.live_failed {
            *kept.live_failed.entry(kind).or_default() += c;
        }
        for (kind, c) in counted.shadow_failed {
            *kept.shadow_failed.entry(kind).or_default() += c;
        }
        // Only the latest [`MAX_SAMPLES`] of this batch can stay.
        let skip = samples.len().saturating_sub(MAX_SAMPLES);
        for s in samples.into_iter().skip(skip) {
            if kept.samples.len() == MAX_SAMPLES {
                kept.samples.pop_front();
            }
            kept.samples.push_back(s);
        }
    }

    /// One call on the shadow's instance; a trap drops it and the next call makes a new one.
    fn call(&mut self, events: &Events) -> Result<Output, weir_sandbox::Trapped> {
        let processor = match &mut self.processor {
            Some(p) => p,
            None => self.processor.insert(self.factory.make()?),
        };
        let result = processor.process(events);
        if let Err(t) = &result
            && t.kind.poisons()
        {
            self.processor = None;
        } else if processor.wants_recycling() {
            self.processor = None;
        }
        result
    }

    /// The shadow's outputs as one batch, and each input's fate, from the pieces of a call.
    fn fates(&self, pieces: &[Piece], n: usize) -> (Events, Vec<Fate>) {
        let mut out = Events::new();
        let mut fates = Vec::with_capacity(n);
        for piece in pieces {
            let output = match &piece.result {
                Ok(output) => output,
                Err(trapped) => {
                    let kind = FailureKind::from(trapped.kind).as_str();
                    fates.extend(piece.range.clone().map(|_| Fate::Failed(kind)));
                    continue;
                }
            };
            let len = piece.range.len();
            let broken = caps::violations(output, len, &self.limits);
            let mut failures = output.failures.iter().peekable();
            for (j, outs) in output.ranges(len).enumerate() {
                if let Some(f) = failures.next_if(|f| f.index as usize == j) {
                    fates.push(Fate::Failed(match f.kind {
                        GuestFailureKind::Reject => FailureKind::Reject.as_str(),
                        GuestFailureKind::Retry => "retry",
                    }));
                } else if broken.iter().any(|(i, _)| *i == j) {
                    fates.push(Fate::Failed("output-cap"));
                } else {
                    let start = out.len();
                    for o in outs {
                        out.push_event(output.events.get(o));
                    }
                    fates.push(Fate::Passed(start..out.len()));
                }
            }
        }
        (out, fates)
    }
}

#[derive(Default)]
struct Counted {
    compared: u64,
    equal: u64,
    different: u64,
    live_failed: BTreeMap<&'static str, u64>,
    shadow_failed: BTreeMap<&'static str, u64>,
}

/// Each input's fate on the live side, from the item's output sources and failures.
fn live_fates(item: &Item, n: usize) -> Vec<Fate> {
    let mut fates: Vec<Fate> = (0..n).map(|_| Fate::Passed(0..0)).collect();
    // The outputs of one input are contiguous and in input order, on both of the live path's
    // ways (the guest's buffer as it is, or the sorted copy).
    let mut start = 0;
    while start < item.live_of.len() {
        let input = item.live_of[start] as usize;
        let mut end = start + 1;
        while end < item.live_of.len() && item.live_of[end] as usize == input {
            end += 1;
        }
        if let Some(f) = fates.get_mut(input) {
            *f = Fate::Passed(start..end);
        }
        start = end;
    }
    for &(i, kind) in &item.live_failed {
        if let Some(f) = fates.get_mut(i as usize) {
            *f = Fate::Failed(kind);
        }
    }
    fates
}

/// Whether two events are equal: the same value bytes, the same key (none differs from an
/// empty one), the same headers in the same order, and the same timestamp.
fn same(a: EventRef<'_>, b: EventRef<'_>) -> bool {
    a.value() == b.value()
        && a.key() == b.key()
        && a.timestamp() == b.timestamp()
        && a.header_count() == b.header_count()
        && a.headers().eq(b.headers())
}

/// Compares one input's outputs on both sides, pair by pair; returns the position of the
/// first pair that differs (a missing output differs from any), or `None` when all are equal.
fn compare(live: &Events, l: Range<usize>, shadow: &Events, s: Range<usize>) -> Option<usize> {
    let longest = l.len().max(s.len());
    (0..longest).find(|&k| {
        let a = (k < l.len()).then(|| live.get(l.start + k));
        let b = (k < s.len()).then(|| shadow.get(s.start + k));
        match (a, b) {
            (Some(a), Some(b)) => !same(a, b),
            _ => true,
        }
    })
}

fn sample(
    item: &Item,
    input: usize,
    l: &Range<usize>,
    shadow: &Events,
    s: &Range<usize>,
    first: usize,
) -> Sample {
    Sample {
        input: shown(item.input.get(input)),
        live_outputs: l.len(),
        shadow_outputs: s.len(),
        live: (first < l.len()).then(|| shown(item.live.get(l.start + first))),
        shadow: (first < s.len()).then(|| shown(shadow.get(s.start + first))),
    }
}

fn shown(event: EventRef<'_>) -> ShownEvent {
    let headers: Vec<(String, String)> = event
        .headers()
        .take(SAMPLE_HEADERS)
        .map(|(n, v)| (escaped(n), escaped(v)))
        .collect();
    ShownEvent {
        value: escaped(event.value()),
        key: event.key().map(escaped),
        more_headers: event.header_count().saturating_sub(headers.len()),
        headers,
        timestamp: event.timestamp(),
    }
}

/// Guest bytes as text a terminal can print safely: not UTF-8 as U+FFFD, what guest text
/// escapes everywhere else (control characters, line separators, bidirectional overrides:
/// [`weir_sandbox::text::needs_escape`]) written out, at most [`SAMPLE_TEXT`] characters then
/// `…`.
pub fn escaped(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == SAMPLE_TEXT {
            out.push('…');
            break;
        }
        if weir_sandbox::text::needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(values: &[&str]) -> Events {
        let mut e = Events::new();
        for v in values {
            e.push_value(v.as_bytes());
        }
        e
    }

    #[test]
    fn guest_text_is_escaped_and_cut() {
        assert_eq!(escaped(b"a\x1b[2Jb\n"), "a\\u{1b}[2Jb\\n");
        let long = escaped(&[b'x'; 1000]);
        assert_eq!(long.chars().count(), SAMPLE_TEXT + 1);
        assert!(long.ends_with('…'));
        assert_eq!(escaped(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn outputs_are_compared_pair_by_pair_and_missing_ones_differ() {
        let a = events(&["x", "y"]);
        let b = events(&["x", "z"]);
        assert_eq!(compare(&a, 0..1, &b, 0..1), None);
        assert_eq!(compare(&a, 0..2, &b, 0..2), Some(1));
        assert_eq!(compare(&a, 0..2, &b, 0..1), Some(1));
        assert_eq!(compare(&a, 0..0, &b, 0..0), None);
    }

    #[test]
    fn a_sample_rate_takes_that_share_of_batches() {
        let (queue, _items) = sync_channel(1);
        let stats = Arc::new(ShadowStats {
            state: AtomicU8::new(RUNNING),
            digest: String::new(),
            sample: 0.25,
            started_at_ms: 0,
            batches: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            compared: AtomicU64::new(0),
            equal: AtomicU64::new(0),
            different: AtomicU64::new(0),
            live_events: AtomicU64::new(0),
            live_ns: AtomicU64::new(0),
            shadow_events: AtomicU64::new(0),
            shadow_ns: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            kept: Mutex::new(Kept::default()),
        });
        let shadow = Shadow {
            factory: Arc::new(crate::pipeline::stage::shadow::tests::Nothing),
            stats,
            queue,
            offered: AtomicU64::new(0),
        };
        let taken = (0..100).filter(|_| shadow.wants()).count();
        assert_eq!(taken, 25);
    }

    struct Nothing;

    impl ProcessorFactory for Nothing {
        fn make(&self) -> Result<Box<dyn Processor>, weir_sandbox::Trapped> {
            unreachable!("never called")
        }
        fn digest(&self) -> &str {
            ""
        }
    }
}
