//! Dead letters: the events a stage or source could not pass on, with why.
//!
//! A stage call's failures travel as one [`DeadLetters`] batch: the failed events copied into
//! their own packed buffer, a [`Reason`] per event, the provenance they carried and the
//! acknowledgement of their source batch, which the dead-letter writer releases only once the
//! letters are flushed. A plugin that fails every event therefore costs a letter batch per
//! call, not an allocation per event.

use std::sync::Arc;

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
