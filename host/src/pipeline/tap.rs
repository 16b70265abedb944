//! Taps: live copies of the events leaving a node, for `weir tap`.
//!
//! Every node owns a [`TapPoint`]. The data plane offers it each batch the node sends on (a
//! source's batches, a stage's outputs and dead letters, what a sink wrote); with no one
//! tapping, an offer is one relaxed atomic load and returns. While someone taps, each
//! [`Tap`] picks its sample of the batch, encodes it as JSON lines (as a JSON sink writes
//! events, or as the dead-letter file writes letters) and hands the chunk over with
//! `try_send`: a reader slower than the pipeline never makes the node wait, it loses samples,
//! which its tap counts. A tap's memory is bounded by [`TAP_QUEUE`] chunks of at most
//! [`TAP_CHUNK`] bytes each, and a node has at most [`MAX_TAPS`] taps at once.
//!
//! The data plane knows nothing of who reads a tap: the observe module's HTTP stream holds
//! the [`TapReader`] and drops it when its client goes away, which removes the tap.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use weir_sandbox::Events;

use crate::pipeline::dead_letter::DeadLetters;
use crate::pipeline::encode;
use crate::pipeline::provenance::Provenance;

/// Chunks a tap holds for its reader. With [`TAP_CHUNK`], bounds the memory one tap can
/// make the host hold when its reader stops reading: 32 × 256 KiB = 8 MiB.
pub const TAP_QUEUE: usize = 32;
/// Bytes of JSON lines in one chunk; a batch's sample beyond it is counted lost. Blocks one
/// batch of huge values from making a tap buffer them all.
pub const TAP_CHUNK: usize = 256 << 10;
/// Taps on one node at once. Blocks a client that opens taps without end from making every
/// batch pay for encoding them all.
pub const MAX_TAPS: usize = 4;

/// What a tap copies: the events a node sends on, or the dead letters it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapWhat {
    Events,
    DeadLetters,
}

/// How a tap samples.
#[derive(Debug, Clone, Copy)]
pub struct TapSpec {
    pub what: TapWhat,
    /// Events to copy before the tap ends; `None` for no end.
    pub limit: Option<u64>,
    /// The fraction of events copied, above 0 and at most 1: `0.1` copies one in ten.
    pub sample: f64,
}

/// The taps of one node.
#[derive(Default)]
pub struct TapPoint {
    /// Taps open: the lock-free check every offer makes first.
    open: AtomicUsize,
    taps: Mutex<Vec<Arc<Tap>>>,
}

impl std::fmt::Debug for TapPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapPoint")
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish()
    }
}

/// Why a tap could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{MAX_TAPS} taps are open on this node already: close one first")]
pub struct TooManyTaps;

/// One tap: its sampling, what it has copied and lost, and its channel to the reader.
pub struct Tap {
    spec: TapSpec,
    /// Events offered so far (of the kind tapped): the sampler's position.
    seen: AtomicU64,
    /// Events copied so far.
    sent: AtomicU64,
    /// Sampled events not copied: the reader was behind, or a chunk was full.
    lost: AtomicU64,
    tx: mpsc::Sender<Vec<u8>>,
}

impl Tap {
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn done(&self) -> bool {
        self.tx.is_closed()
            || self
                .spec
                .limit
                .is_some_and(|l| self.sent.load(Ordering::Relaxed) >= l)
    }

    /// Whether the `i`-th event offered is in the sample: evenly spread, `sample` of them.
    fn picks(&self, i: u64) -> bool {
        let rate = self.spec.sample;
        rate >= 1.0 || ((i + 1) as f64 * rate).floor() > (i as f64 * rate).floor()
    }

    /// Copies this tap's sample of `n` events, each written by `write`, as one chunk.
    fn take(&self, n: usize, write: &mut dyn FnMut(usize, &mut Vec<u8>) -> Option<usize>) {
        let first = self.seen.fetch_add(n as u64, Ordering::Relaxed);
        let room = self.spec.limit.map_or(u64::MAX, |l| {
            l.saturating_sub(self.sent.load(Ordering::Relaxed))
        });
        let mut chunk = Vec::new();
        let (mut copied, mut lost) = (0u64, 0u64);
        for i in 0..n {
            if copied >= room || !self.picks(first + i as u64) {
                continue;
            }
            let before = chunk.len();
            match write(i, &mut chunk) {
                Some(len) if before + len <= TAP_CHUNK => copied += 1,
                _ => {
                    chunk.truncate(before);
                    lost += 1;
                }
            }
        }
        if copied > 0 {
            match self.tx.try_send(chunk) {
                Ok(()) => {
                    self.sent.fetch_add(copied, Ordering::Relaxed);
                }
                Err(_) => lost += copied,
            }
        }
        if lost > 0 {
            self.lost.fetch_add(lost, Ordering::Relaxed);
        }
    }
}

/// The reading end of a tap; dropping it closes the tap.
pub struct TapReader {
    pub rx: mpsc::Receiver<Vec<u8>>,
    pub tap: Arc<Tap>,
}

impl TapPoint {
    /// Whether anyone taps this node: the only cost of an offer when no one does.
    #[inline]
    fn tapped(&self) -> bool {
        self.open.load(Ordering::Relaxed) > 0
    }

    /// Opens a tap.
    pub fn open(&self, spec: TapSpec) -> Result<TapReader, TooManyTaps> {
        let mut taps = self.lock();
        taps.retain(|t| !t.done());
        if taps.len() >= MAX_TAPS {
            return Err(TooManyTaps);
        }
        let (tx, rx) = mpsc::channel(TAP_QUEUE);
        let tap = Arc::new(Tap {
            spec,
            seen: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            tx,
        });
        taps.push(Arc::clone(&tap));
        self.open.store(taps.len(), Ordering::Relaxed);
        Ok(TapReader { rx, tap })
    }

    /// Offers events the node sends on.
    #[inline]
    pub fn offer(&self, events: &Events, provenance: &Provenance) {
        if self.tapped() && !events.is_empty() {
            self.each(TapWhat::Events, events.len(), &mut |i, out| {
                let before = out.len();
                let event = events.get(i);
                // A value far over the chunk is not encoded at all.
                if event.value().len() > TAP_CHUNK {
                    return None;
                }
                encode::event(out, event, provenance).ok()?;
                out.push(b'\n');
                Some(out.len() - before)
            });
        }
    }

    /// Offers dead letters the node made (written or, with `on_error = "drop"`, only
    /// counted: those have no event to copy and are not offered).
    #[inline]
    pub fn offer_dead(&self, letters: &DeadLetters) {
        if self.tapped() && letters.kept() && !letters.is_empty() {
            self.each(TapWhat::DeadLetters, letters.len(), &mut |i, out| {
                let before = out.len();
                let event = letters.events.get(i);
                if event.value().len() > TAP_CHUNK {
                    return None;
                }
                encode::dead_letter(out, letters, i, encode::now_ms()).ok()?;
                out.push(b'\n');
                Some(out.len() - before)
            });
        }
    }

    #[cold]
    fn each(
        &self,
        what: TapWhat,
        n: usize,
        write: &mut dyn FnMut(usize, &mut Vec<u8>) -> Option<usize>,
    ) {
        let mut taps = self.lock();
        let before = taps.len();
        taps.retain(|t| !t.done());
        if taps.len() != before {
            self.open.store(taps.len(), Ordering::Relaxed);
        }
        for tap in taps.iter().filter(|t| t.spec.what == what) {
            tap.take(n, write);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Tap>>> {
        // Every change is one step: a panic elsewhere cannot leave the list half-written.
        self.taps.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize) -> Events {
        let mut e = Events::new();
        for i in 0..n {
            e.push_value(format!("e{i}").as_bytes());
        }
        e
    }

    fn lines(reader: &mut TapReader) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(chunk) = reader.rx.try_recv() {
            let text = String::from_utf8(chunk).unwrap();
            out.extend(text.lines().map(str::to_string));
        }
        out
    }

    #[test]
    fn an_untapped_node_copies_nothing() {
        let point = TapPoint::default();
        assert!(!point.tapped());
        point.offer(&events(3), &Provenance::default());
        assert!(point.lock().is_empty());
    }

    #[test]
    fn a_tap_copies_its_sample_up_to_its_limit_then_closes() {
        let point = TapPoint::default();
        let spec = TapSpec {
            what: TapWhat::Events,
            limit: Some(3),
            sample: 0.5,
        };
        let mut reader = point.open(spec).unwrap();
        point.offer(&events(4), &Provenance::default());
        point.offer(&events(4), &Provenance::default());
        let got = lines(&mut reader);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].contains("\"value\":\"e1\""), "{got:?}");
        point.offer(&events(1), &Provenance::default());
        assert!(!point.tapped(), "a tap past its limit is removed");
    }

    #[test]
    fn a_reader_that_does_not_read_loses_samples_and_never_blocks() {
        let point = TapPoint::default();
        let spec = TapSpec {
            what: TapWhat::Events,
            limit: None,
            sample: 1.0,
        };
        let reader = point.open(spec).unwrap();
        for _ in 0..TAP_QUEUE + 10 {
            point.offer(&events(2), &Provenance::default());
        }
        assert_eq!(reader.tap.sent(), 2 * TAP_QUEUE as u64);
        assert_eq!(reader.tap.lost(), 20);
        drop(reader);
        point.offer(&events(1), &Provenance::default());
        assert!(!point.tapped(), "a tap whose reader is gone is removed");
    }

    #[test]
    fn a_node_takes_a_bounded_number_of_taps() {
        let point = TapPoint::default();
        let spec = TapSpec {
            what: TapWhat::DeadLetters,
            limit: None,
            sample: 1.0,
        };
        let open: Vec<_> = (0..MAX_TAPS).map(|_| point.open(spec).unwrap()).collect();
        assert!(point.open(spec).is_err());
        drop(open);
        assert!(point.open(spec).is_ok());
    }
}
