//! Connectors: where events enter and leave a pipeline.
//!
//! `lines` splits byte streams into packed line events; `parts` is what every source needs
//! from the run and how it hands over batches and dead letters; `sources` turns files (read by
//! `file`), standard input (read by `stdin`) and the W1 generator into acknowledged batches
//! sent into the graph; `sinks` writes batches
//! out (and the dead-letter writer, dead letters) and releases their acknowledgements only
//! once flushed; `nats` reads a JetStream consumer (acking each message once its batch is
//! done) and publishes to a stream (releasing acknowledgements once the server confirmed).

pub(crate) mod file;
pub(crate) mod lines;
pub(crate) mod nats;
pub(crate) mod parts;
pub(crate) mod sinks;
pub(crate) mod sources;
pub(crate) mod stdin;

pub use lines::{MAX_LINE, OVERSIZED_KEPT};
pub use nats::NatsError;
/// Public for the property test of guest outputs (`tests/guest_output.rs`).
#[doc(hidden)]
pub use nats::sink::headers as nats_headers;
pub use sinks::DEAD_LETTER_BUFFER;
