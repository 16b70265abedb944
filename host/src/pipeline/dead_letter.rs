//! Dead letters: the events a stage or source could not pass on, with why.
//!
//! A stage call's failures travel as one [`DeadLetters`] batch: the failed events copied into
//! their own packed buffer, a [`Reason`] per event, the provenance they carried and the
//! acknowledgement of their source batch, which the dead-letter writer releases only once the
//! letters are flushed. A plugin that fails every event therefore costs a letter batch per
//! call, not an allocation per event.
//!
//! Each node also keeps its last few failure reasons ([`RecentReasons`], on its metrics) for
//! the live page: recorded once per letter batch, never per event, and read by the observer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use weir_sandbox::{EventRef, Events};

use crate::pipeline::ack::Ack;
use crate::pipeline::failure::FailureKind;
use crate::pipeline::origin::SourceBatch;
use crate::pipeline::provenance::Provenance;

/// Why one event failed.
#[derive(Debug, Clone)]
pub struct Reason {
    pub kind: FailureKind,
    /// Shared between the events of a call that failed for the same reason.
    pub message: Arc<str>,
    /// Times the event was sent to the plugin.
    pub attempts: u32,
}

/// Failed events of one node, from one source batch.
#[derive(Debug)]
pub struct DeadLetters {
    /// The stage (or source) the events failed at.
    pub stage: Arc<str>,
    /// The sha256 of the version that failed them; empty for a source.
    pub digest: Arc<str>,
    pub events: Events,
    /// One per event, in order.
    pub reasons: Vec<Reason>,
    /// The stage versions the events went through before failing.
    pub provenance: Provenance,
    /// Keeps the source batch open until the letters are written.
    pub ack: Ack,
    /// In a tracked pipeline, the index of each letter's source event (the ledger hears of
    /// them once the letters are written); empty otherwise.
    pub origins: Vec<u32>,
    /// In a tracked pipeline, where the source batch's events are: with `origins`, each
    /// letter's source and position.
    pub source: Option<Arc<SourceBatch>>,
    /// Whether the events are kept (to be written); `on_error = "drop"` only counts them.
    keep: bool,
}

impl DeadLetters {
    pub fn new(stage: Arc<str>, digest: Arc<str>, provenance: Provenance, ack: Ack) -> Self {
        DeadLetters {
            stage,
            digest,
            events: Events::new(),
            reasons: Vec::new(),
            provenance,
            ack,
            origins: Vec::new(),
            source: None,
            keep: true,
        }
    }

    /// Letters from a tracked batch from `source`: each letter then names its source event.
    pub fn from_source(mut self, source: Option<Arc<SourceBatch>>) -> Self {
        self.source = source;
        self
    }

    /// Letters that are counted but not written: the events are not copied.
    pub fn counted_only(mut self) -> Self {
        self.keep = false;
        self
    }

    /// Whether the letters are to be written.
    pub fn kept(&self) -> bool {
        self.keep
    }

    /// Adds a copy of `event`, failed for `reason`; `origin` is its source event's index in a
    /// tracked batch.
    pub fn push(&mut self, event: EventRef<'_>, reason: Reason, origin: Option<u32>) {
        if self.keep {
            self.events.push_event(event);
        }
        self.reasons.push(reason);
        if let Some(origin) = origin {
            self.origins.push(origin);
        }
    }

    pub fn len(&self) -> usize {
        self.reasons.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reasons.is_empty()
    }

    /// The letters, counted by kind: one entry per run of equal kinds.
    pub fn kinds(&self) -> impl Iterator<Item = (FailureKind, u64)> + '_ {
        let mut i = 0;
        std::iter::from_fn(move || {
            let kind = self.reasons.get(i)?.kind;
            let run = self.reasons[i..]
                .iter()
                .take_while(|r| r.kind == kind)
                .count();
            i += run;
            Some((kind, run as u64))
        })
    }
}

/// Reasons a node keeps for the live page. A stream of failures must not grow the host's
/// memory, nor the page's JSON: the node keeps the newest this many, one per run of events
/// failed for the same reason in a batch.
pub const RECENT_REASONS: usize = 16;

/// Bytes kept of a reason's message (cut at a character boundary). A plugin's reason reaches
/// the host cut at [`weir_sandbox::text::MAX_GUEST_TEXT`] (1 KiB); the page shows the newest
/// reasons of every node each second, so it keeps less: past this, each poll would carry
/// kilobytes of whatever the guest chose to send.
pub const RECENT_REASON_BYTES: usize = 240;

/// One recent failure reason of a node.
#[derive(Debug, Clone, Serialize)]
pub struct RecentReason {
    /// When the batch failed, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub kind: FailureKind,
    /// The reason's message, at most [`RECENT_REASON_BYTES`] bytes: guest text, which whoever
    /// shows it must escape.
    pub message: String,
    /// Whether the message was cut.
    pub cut: bool,
    /// Consecutive events of the batch that failed for this reason.
    pub events: u64,
    /// Whether the events went to the dead-letter file (not `on_error = "drop"`).
    pub kept: bool,
}

/// A node's last failure reasons, newest last: a ring of at most [`RECENT_REASONS`].
#[derive(Debug, Default)]
pub struct RecentReasons {
    ring: Mutex<VecDeque<RecentReason>>,
}

impl RecentReasons {
    /// Records the reasons of one letter batch: one entry per run of events that failed for
    /// the same reason (the events of a call share its message), at most [`RECENT_REASONS`]
    /// per batch. One lock per batch that failed anything.
    pub fn record(&self, letters: &DeadLetters) {
        if letters.reasons.is_empty() {
            return;
        }
        let at_ms = weir_sandbox::wall_ms();
        let mut runs: Vec<(&Reason, u64)> = Vec::new();
        for reason in &letters.reasons {
            if let Some((last, n)) = runs.last_mut()
                && last.kind == reason.kind
                && same_message(&last.message, &reason.message)
            {
                *n += 1;
            } else if runs.len() == RECENT_REASONS {
                break;
            } else {
                runs.push((reason, 1));
            }
        }
        let entries: Vec<RecentReason> = runs
            .into_iter()
            .map(|(reason, events)| {
                let (message, cut) = bounded(&reason.message, RECENT_REASON_BYTES);
                RecentReason {
                    at_ms,
                    kind: reason.kind,
                    message: message.to_string(),
                    cut,
                    events,
                    kept: letters.kept(),
                }
            })
            .collect();
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        for entry in entries {
            if ring.len() == RECENT_REASONS {
                ring.pop_front();
            }
            ring.push_back(entry);
        }
    }

    /// The reasons kept, oldest first.
    pub fn list(&self) -> Vec<RecentReason> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().cloned().collect()
    }
}

/// Whether two reasons say the same: the same shared message (a call's events share it), or
/// equal short ones. Long messages are not compared byte by byte: a guest could make every
/// failed event of a batch cost a compare of a kibibyte.
fn same_message(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || (a.len() <= RECENT_REASON_BYTES && a == b)
}

/// The first `max` bytes of `text` at most, cut at a character boundary, and whether it was
/// cut.
fn bounded(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ack::Tracker;

    fn letters(reasons: &[(&str, usize)]) -> DeadLetters {
        let mut letters = DeadLetters::new(
            Arc::from("s"),
            Arc::from(""),
            Provenance::default(),
            Arc::new(Tracker::default()).emit(1),
        );
        let mut events = weir_sandbox::Events::new();
        events.push_value(b"v");
        for (message, n) in reasons {
            let message: Arc<str> = Arc::from(*message);
            for _ in 0..*n {
                let reason = Reason {
                    kind: FailureKind::Reject,
                    message: Arc::clone(&message),
                    attempts: 1,
                };
                letters.push(events.get(0), reason, None);
            }
        }
        letters
    }

    #[test]
    fn a_run_of_equal_reasons_is_one_entry_and_the_ring_keeps_its_bound() {
        let recent = RecentReasons::default();
        recent.record(&letters(&[("a", 3), ("b", 1), ("a", 2)]));
        let list = recent.list();
        let seen: Vec<(&str, u64)> = list
            .iter()
            .map(|r| (r.message.as_str(), r.events))
            .collect();
        assert_eq!(seen, [("a", 3), ("b", 1), ("a", 2)]);
        for i in 0..100 {
            recent.record(&letters(&[(&format!("m{i}"), 1)]));
        }
        let list = recent.list();
        assert_eq!(list.len(), RECENT_REASONS);
        assert_eq!(list.last().unwrap().message, "m99");
        assert_eq!(list[0].message, format!("m{}", 100 - RECENT_REASONS));
        // One batch of many distinct reasons keeps no more than the bound either.
        let many: Vec<(String, usize)> = (0..100).map(|i| (format!("x{i}"), 1)).collect();
        let many: Vec<(&str, usize)> = many.iter().map(|(m, n)| (m.as_str(), *n)).collect();
        recent.record(&letters(&many));
        let list = recent.list();
        assert_eq!(list.len(), RECENT_REASONS);
        assert_eq!(
            list.last().unwrap().message,
            format!("x{}", RECENT_REASONS - 1)
        );
    }

    #[test]
    fn a_long_reason_is_cut_at_a_character_boundary() {
        let recent = RecentReasons::default();
        let long = "é".repeat(RECENT_REASON_BYTES);
        recent.record(&letters(&[(&long, 1)]));
        let kept = &recent.list()[0];
        assert!(kept.cut);
        assert!(kept.message.len() <= RECENT_REASON_BYTES);
        assert_eq!(kept.message.chars().count(), RECENT_REASON_BYTES / 2);
    }
}
