//! Connectors: where events enter and leave a pipeline.
//!
//! Sources (`sources`) turn lines or generated values into acknowledged [`Batch`]es and send
//! them into the graph, waiting whenever the first channel is full. Sinks (`sinks`) and the
//! dead-letter writer run on their own threads, since writing to a slow pipe or disk blocks;
//! they flush whenever their channel is empty and only then release the acknowledgements of
//! what they wrote.
//!
//! [`Batch`]: crate::delivery::Batch

mod sinks;
mod sources;

pub(crate) use sinks::{DEAD_LETTER_BUFFER, spawn_dead_letters, spawn_sink};
pub(crate) use sources::spawn_source;
