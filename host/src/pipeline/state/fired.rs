//! What timers fire outside any source batch: on a chain's tick (the watermark moved past an
//! idle input, a processing-time timer came due) and at the end of the input.
//!
//! A timer that fires removes its entry (and, usually, the window it closes) from the stage's
//! state, and its call's outputs go on. After a source batch that removal is tagged with the
//! batch, so a commit round writes it only once the batch, outputs included, is finished. A
//! tick has no source batch: untagged, its removal could be written before its outputs are,
//! and a crash in between would lose them (the timer is gone, the outputs never written).
//!
//! So the ticks and the end of the input get batches of their own, numbered by [`Fired`]: a
//! ledger like a source's, whose acknowledgement travels with what the timers made. A round
//! writes a tick's deltas only once the tick's batches up to it are finished, and a crash
//! before that leaves the timers in the store, to fire again after the restart. It has no
//! position to write: nothing needs reading again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::Positioned;
use crate::pipeline::ack::{Ack, Ledger, Tracker};

/// The batches of fired timers of a run whose stages keep state in the data folder.
#[derive(Default)]
pub struct Fired {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    /// The batches not yet finished, from the oldest, and whether each is done.
    pending: VecDeque<(u64, bool)>,
    /// The last batch of the finished prefix.
    through: Option<u64>,
}

impl Fired {
    /// The acknowledgement of a new batch of fired timers (no source event in it).
    pub fn ack(self: &Arc<Self>, tracker: &Arc<Tracker>) -> Ack {
        let seq = {
            let mut inner = self.lock();
            let seq = inner.next;
            inner.next += 1;
            inner.pending.push_back((seq, false));
            seq
        };
        tracker.emit_to(0, Some((Arc::clone(self) as Arc<dyn Ledger>, seq)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every change is a push, a pop or an assignment: a poisoned lock is still whole.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Ledger for Fired {
    fn done(&self, seq: u64) {
        let mut inner = self.lock();
        let Some(front) = inner.pending.front().map(|p| p.0) else {
            return;
        };
        if let Some(entry) =
            (seq.checked_sub(front)).and_then(|i| inner.pending.get_mut(i as usize))
        {
            entry.1 = true;
        }
        while let Some(&(seq, true)) = inner.pending.front() {
            inner.pending.pop_front();
            inner.through = Some(seq);
        }
    }
}

impl Positioned for Fired {
    fn done_through(&self) -> Option<u64> {
        self.lock().through
    }

    fn checkpoint_through(&self, _seq: u64) -> Option<Vec<u8>> {
        None
    }

    fn forget_through(&self, _seq: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finished_prefix_waits_for_the_oldest_batch() {
        let fired = Arc::new(Fired::default());
        let tracker = Arc::new(Tracker::default());
        let first = fired.ack(&tracker);
        let second = fired.ack(&tracker);
        drop(second);
        assert_eq!(fired.done_through(), None, "batch 0 is still out");
        drop(first);
        assert_eq!(fired.done_through(), Some(1));
        let third = fired.ack(&tracker);
        assert_eq!(third.tag().map(|t| t.1), Some(2));
        drop(third);
        assert_eq!(fired.done_through(), Some(2));
    }
}
