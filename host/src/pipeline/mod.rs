//! The data plane: batches move from sources, through stage chains, to sinks.
//!
//! Read it in the order an event meets it:
//!
//! - [`batch`], [`ack`], [`provenance`], [`origin`], [`failure`]: the leaf types. A [`Batch`]
//!   is one packed buffer of events ([`weir_sandbox::Events`]), the acknowledgement of the
//!   source batch it came from, the versions of the stages it went through and, in a pipeline
//!   with a NATS source or sink, which source event each event came from. [`time`]: the
//!   watermark a batch carries where events have timestamps.
//! - [`edge`]: the bounded channels between nodes, fan-out, and the run's shared context
//!   (stop, first failure, the dead-letter channel).
//! - [`connectors`]: one [`Source`](connectors::Source) and one [`Sink`](connectors::Sink)
//!   seam, and a folder per kind (file, stdio, generate, null, NATS): sources turn what they
//!   read into batches, sinks write them and release their acknowledgements once durable; the
//!   dead-letter writer. [`data_dir`] is the folder a run keeps its checkpoints in.
//! - [`stage`]: stage versions, and the workers that run a chain of stages on one thread,
//!   one plugin call after another on the same batch, with isolation of poison events,
//!   retries, the circuit breaker and the reorder window that keeps output order.
//! - [`state`]: each stage's keyed state, which its plugin reads and writes through
//!   `weir:stage/state`; a call's writes land only when the call completes.
//! - [`topology`]: a checked pipeline in, chains planned and plugins loaded ([`Topology`]),
//!   then a running graph, and a [`RunReport`] when it ends.
//!
//! - [`partition`]: which partition a key belongs to, for a NATS sink that publishes to
//!   partitioned subjects; stable for ever, since it decides where a key's state lives.
//! - [`tap`]: each node's hook for `weir tap`: a lock-free check per batch, a bounded
//!   hand-off that never waits when someone taps.
//!
//! Nothing here imports the control plane or the observe module: hot loading reaches a stage
//! through the [`stage::StageHandle`] the topology hands out, and the observe module reads the
//! counters of [`report::NodeMetrics`] that the topology hands out.

pub mod ack;
pub mod batch;
pub mod connectors;
pub mod data_dir;
pub mod dead_letter;
pub mod edge;
pub mod encode;
pub mod failure;
pub mod origin;
pub mod partition;
pub mod pool;
pub mod provenance;
pub mod report;
pub mod stage;
pub mod state;
pub mod tap;
pub mod time;
pub mod topology;

pub use batch::Batch;
pub use failure::{FailureKind, NodeFailure};
pub use report::{NodeKind, NodeMetrics, NodeReport, RunReport};
pub use topology::{RunError, Topology};
