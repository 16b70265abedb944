//! [`Batch`]: what moves along every edge of a pipeline.
//!
//! A batch is packed events (one buffer plus spans, [`Events`]), the acknowledgement of the
//! source batch they came from, and their provenance (the stage versions they went through).
//! A stage's output batch takes its input's acknowledgement and adds its own version to the
//! provenance; a fan-out copy clones all three. No step between source and sink allocates per
//! event. A batch of a tracked pipeline (a NATS source or sink) also carries its events'
//! [`Origin`]; every other batch carries `None` and pays nothing for it.

use std::sync::Arc;

use weir_sandbox::Events;

use crate::pipeline::ack::Ack;
use crate::pipeline::origin::Origin;
use crate::pipeline::provenance::Provenance;
use crate::pipeline::time::Marks;

/// Events moving together between two nodes.
#[derive(Debug, Clone)]
pub struct Batch {
    pub events: Events,
    /// Released (dropped) by whoever writes the last of what these events became.
    pub ack: Ack,
    pub provenance: Provenance,
    /// Which source event each event came from, 1:1 with `events`; only in tracked pipelines.
    pub origin: Option<Origin>,
    /// The watermark of the edge the batch travels, where events carry event time
    /// ([`crate::pipeline::time`]); shared by fan-out copies.
    pub marks: Option<Arc<Marks>>,
    /// The node that sent it, set by [`crate::pipeline::edge::Outputs`]: a consumer with
    /// several inputs keeps a watermark per producer.
    pub from: u32,
}

impl Batch {
    /// A batch fresh from a source.
    pub fn new(events: Events, ack: Ack, origin: Option<Origin>) -> Batch {
        Batch {
            events,
            ack,
            provenance: Provenance::default(),
            origin,
            marks: None,
            from: 0,
        }
    }

    /// A batch derived from this one: other events, the same acknowledgement.
    pub fn derive(&self, events: Events, provenance: Provenance, origin: Option<Origin>) -> Batch {
        Batch {
            events,
            ack: self.ack.clone(),
            provenance,
            origin,
            marks: None,
            from: self.from,
        }
    }

    /// The index of event `i`'s source event, in a tracked batch.
    pub fn origin_of(&self, i: usize) -> Option<u32> {
        self.origin.as_ref().map(|o| o.index[i])
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether the batch carries nothing at all: no event, no watermark.
    pub fn is_void(&self) -> bool {
        self.events.is_empty() && self.marks.is_none()
    }
}
