//! Stages: versions, chains of stages on worker threads, and each stage's per-batch policy.
//!
//! - `version`: [`StageHandle`], what a stage's workers and the control plane share (the live
//!   [`StageVersion`] in a watch channel, per-generation counts, breaker, metrics).
//! - `reloads`: [`Reloads`], the hot-load record on the handle: the live version's number and
//!   what hot loading did (and a short ring of its changes), written by the control plane,
//!   read by the observer.
//! - `chain`: the worker threads of a chain, the reorder window, retries coming back.
//! - `runner`: one stage inside a worker: breaker, call, isolation, caps, fates.
//! - `isolate`, `caps`, `breaker`, `retry`: the pieces of that policy, each a small pure part
//!   with its own tests.
//! - `shadow`: a candidate version run beside the live one on copies of its input batches,
//!   its outputs compared with the live ones, never sent on.

mod breaker;
pub mod canary;
mod caps;
pub(crate) mod chain;
mod isolate;
mod reloads;
mod retry;
pub(crate) mod runner;
pub mod shadow;
mod version;

pub use canary::GenerationCounts;
/// Public for the property test of guest outputs (`tests/guest_output.rs`).
#[doc(hidden)]
pub use caps::violations;
pub use isolate::MAX_TRAPS_PER_BATCH;
pub use reloads::{Change, ChangeKind, ReloadCounts, Reloads};
pub use retry::MAX_WAITING_RETRIES;
pub use shadow::{Shadow, ShadowState, ShadowStats, ShadowStatus};
pub use version::{StageHandle, StageVersion};
