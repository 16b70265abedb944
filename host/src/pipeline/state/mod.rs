//! Keyed state of the stages: what a stage's plugin reads and writes through
//! `weir:stage/state`, kept by the host.
//!
//! Each stage has one [`StageState`], made with the stage and shared by its instances and its
//! versions, so a hot swap or a rollback keeps the state and a new instance after a trap finds
//! it as the last completed call left it. The sandbox reaches it through its `KeyedState`
//! trait; one call's writes go to an overlay ([`memory`]) that the instance commits when the
//! call's output is accepted, or discards (a trap, a refused output, `init`).
//!
//! Without `[pipeline] data_dir` the state lives in memory, bounded by the stage's
//! `state_max_keys` and `state_max_bytes`, and is gone when the process ends. With it, each
//! completed call's writes are also logged, tagged with the source batch the call ran on, and
//! commit rounds ([`durable`]) write them to a store in the data folder ([`store`]) together
//! with the sources' positions, as far as [`plan`] allows: what is on disk is exactly the
//! effect of the events up to the positions beside it. What timers fire on a tick or at the
//! end of the input is numbered as batches of its own ([`fired`]), so that it waits the same
//! way for its outputs.

mod durable;
mod fired;
mod memory;
pub mod plan;
mod store;

pub use durable::{Durable, Positioned};
pub use fired::Fired;
pub use memory::{OPERATIONS, StageState};
pub use store::{FILE as STORE_FILE, Store, StoreError};

use weir_sandbox::Plugin;

/// Whether a stage runs routed by key: its plugin keeps state, on several workers. Each worker
/// then owns the keys that hash to it, so no two update one key at once.
pub fn routed_by_key(stage: &crate::config::Stage, plugin: &Plugin) -> bool {
    plugin.uses_state() && stage.workers > 1
}

/// Why a new version cannot go live on a running stage: it keeps state, and the stage's
/// workers were started without routing by key (its first version kept none), so two workers
/// would update one key at once.
pub fn unrouted_state(
    stage: &crate::config::Stage,
    plugin: &Plugin,
    keyed: bool,
) -> Option<String> {
    (routed_by_key(stage, plugin) && !keyed).then(|| {
        format!(
            "the plugin keeps state (it imports weir:stage/state), but the stage's {} workers \
             started without routing events by key, since its first version keeps none: \
             restart the pipeline with this version",
            stage.workers
        )
    })
}
