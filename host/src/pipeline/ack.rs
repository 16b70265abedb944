//! Acknowledgements: how the host knows that what a source emitted has been written.
//!
//! A source registers each batch it emits with the [`Tracker`] and gets one [`Ack`] for it.
//! Every batch derived from it (a stage's output, each fan-out copy, each dead letter, each
//! retry) carries a clone; a sink drops its clones only once the events are flushed, the
//! dead-letter writer once the letters are. When the last clone drops, every event the source
//! emitted in that batch has been written or dead-lettered: the tracker counts them done,
//! which yields the number of events in flight and its high-water mark.
//!
//! A source that keeps a position (a file's offset, a broker's messages) registers its batches
//! with a [`Ledger`] of its own: when a batch's acknowledgement is released, the ledger hears
//! of it, whatever order batches finish in, and the source commits only the contiguous prefix
//! of finished batches.
//!
//! An acknowledgement that must never be released (its events could not be written) is
//! [`Ack::forget`]ten: the events stay in flight and its source never hears of it, so nothing
//! downstream of a failed sink can count as delivered, nor be committed past.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared bookkeeping of the events in flight.
#[derive(Debug, Default)]
pub struct Tracker {
    emitted: AtomicU64,
    done: AtomicU64,
    high_water: AtomicU64,
}

impl Tracker {
    /// Registers `count` events a source is about to send, and returns their acknowledgement.
    pub fn emit(self: &Arc<Self>, count: u64) -> Ack {
        self.emit_to(count, None)
    }

    /// Like [`Tracker::emit`], and `ledger` hears of batch `seq` when it is done.
    pub fn emit_to(self: &Arc<Self>, count: u64, ledger: Option<(Arc<dyn Ledger>, u64)>) -> Ack {
        self.emit_placed(count, ledger, None)
    }

    /// Like [`Tracker::emit_to`], for a batch at `place` in its source.
    pub fn emit_placed(
        self: &Arc<Self>,
        count: u64,
        ledger: Option<(Arc<dyn Ledger>, u64)>,
        place: Option<BatchPlace>,
    ) -> Ack {
        let emitted = self.emitted.fetch_add(count, Ordering::AcqRel) + count;
        let in_flight = emitted.saturating_sub(self.done.load(Ordering::Acquire));
        self.high_water.fetch_max(in_flight, Ordering::AcqRel);
        Ack(Arc::new(AckInner {
            count,
            tracker: Arc::clone(self),
            ledger,
            place,
        }))
    }

    /// Events emitted by sources so far.
    pub fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::Acquire)
    }

    /// Events all of whose results were written or dead-lettered.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
    }

    /// Events emitted and not yet done.
    pub fn in_flight(&self) -> u64 {
        self.emitted().saturating_sub(self.done())
    }

    /// The most events that were in flight at once.
    pub fn high_water(&self) -> u64 {
        self.high_water.load(Ordering::Acquire)
    }
}

/// The acknowledgement of one source batch. Clone it to every batch derived from it; when the
/// last clone drops, the source batch is done.
#[derive(Debug, Clone)]
pub struct Ack(Arc<AckInner>);

/// What a source with a position learns of its batches.
pub trait Ledger: Send + Sync {
    /// Batch `seq` is done: every event derived from it is written or dead-lettered, and
    /// flushed.
    fn done(&self, seq: u64);

    /// The source events `indices` of batch `seq` (or events derived from them) were
    /// dead-lettered. Heard before [`Ledger::done`] for that batch; only tracked batches
    /// (see [`crate::pipeline::origin`]) report it.
    fn dead_lettered(&self, _seq: u64, _indices: &[u32]) {}
}

/// A ledger's identity while the run lasts: the address it lives at.
pub fn ledger_id(ledger: &Arc<dyn Ledger>) -> usize {
    Arc::as_ptr(ledger) as *const () as usize
}

struct AckInner {
    count: u64,
    tracker: Arc<Tracker>,
    ledger: Option<(Arc<dyn Ledger>, u64)>,
    place: Option<BatchPlace>,
}

/// Where a source batch is in its source, for a dead letter of a pipeline that does not track
/// each event's origin: the batch's place costs a few reference counts per batch, nothing per
/// event. For a file: its identity, the round of `repeat` and the offset past the batch's last
/// line.
#[derive(Debug, Clone)]
pub struct BatchPlace {
    pub source: Arc<str>,
    pub file: Arc<str>,
    pub round: u64,
    pub end: u64,
}

impl std::fmt::Display for BatchPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.round, self.end)
    }
}

impl std::fmt::Debug for AckInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack")
            .field("count", &self.count)
            .field("seq", &self.ledger.as_ref().map(|(_, seq)| seq))
            .finish()
    }
}

impl Drop for AckInner {
    fn drop(&mut self) {
        self.tracker.done.fetch_add(self.count, Ordering::AcqRel);
        if let Some((ledger, seq)) = &self.ledger {
            ledger.done(*seq);
        }
    }
}

impl Ack {
    /// Never releases this acknowledgement: its events were not written, so they must never
    /// count as done (a checkpoint must not pass them).
    pub fn forget(self) {
        std::mem::forget(self);
    }

    /// Tells the source's ledger, if any, that these of its events were dead-lettered.
    pub fn dead_lettered(&self, indices: &[u32]) {
        if let Some((ledger, seq)) = &self.0.ledger {
            // Events a timer made have no source event to tell of (`origin::TIMER`).
            if indices.contains(&u32::MAX) {
                let sourced: Vec<u32> =
                    indices.iter().copied().filter(|&i| i != u32::MAX).collect();
                ledger.dead_lettered(*seq, &sourced);
            } else {
                ledger.dead_lettered(*seq, indices);
            }
        }
    }

    /// Which source batch this acknowledges, for a source with a ledger: the ledger's identity
    /// (its address, stable while the run lasts) and the batch's sequence number there.
    pub fn tag(&self) -> Option<(usize, u64)> {
        let (ledger, seq) = self.0.ledger.as_ref()?;
        Some((ledger_id(ledger), *seq))
    }

    /// Where the source batch is in its source, when its source said.
    pub fn place(&self) -> Option<&BatchPlace> {
        self.0.place.as_ref()
    }

    /// The events of the source batch this acknowledges.
    pub fn count(&self) -> u64 {
        self.0.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_counts_its_events_done_when_its_last_clone_drops() {
        let tracker = Arc::new(Tracker::default());
        let ack = tracker.emit(10);
        let copy = ack.clone();
        assert_eq!(tracker.high_water(), 10);
        drop(ack);
        assert_eq!(tracker.done(), 0);
        drop(copy);
        assert_eq!(tracker.done(), 10);
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn a_forgotten_ack_stays_in_flight() {
        let tracker = Arc::new(Tracker::default());
        tracker.emit(3).forget();
        assert_eq!(tracker.in_flight(), 3);
    }
}
