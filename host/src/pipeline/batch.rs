//! [`Batch`]: what moves along every edge of a pipeline.
//!
//! A batch is packed events (one buffer plus spans, [`Events`]), the acknowledgement of the
//! source batch they came from, and their provenance (the stage versions they went through).
//! A stage's output batch takes its input's acknowledgement and adds its own version to the
//! provenance; a fan-out copy clones all three. No step between source and sink allocates per
//! event.

use weir_sandbox::Events;

use crate::pipeline::ack::Ack;
use crate::pipeline::provenance::Provenance;

/// Events moving together between two nodes.
#[derive(Debug, Clone)]
pub struct Batch {
    pub events: Events,
    /// Released (dropped) by whoever writes the last of what these events became.
    pub ack: Ack,
    pub provenance: Provenance,
}

impl Batch {
    /// A batch fresh from a source.
    pub fn new(events: Events, ack: Ack) -> Batch {
        Batch {
            events,
            ack,
            provenance: Provenance::default(),
        }
    }

    /// A batch derived from this one: other events, the same acknowledgement.
    pub fn derive(&self, events: Events, provenance: Provenance) -> Batch {
        Batch {
            events,
            ack: self.ack.clone(),
            provenance,
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}
