//! weir-sandbox: everything weir knows of WebAssembly, and nothing of pipelines.
//!
//! A plugin file goes in at [`Plugin::load`]: read, compiled (or mapped from the
//! [`CompileCache`]), checked against the contract (`weir:stage@0.3` or `@0.2`, or `@0.1`
//! through an adapter) and pre-instantiated. [`Instance`] is one live instance in its own store, under
//! the [`Limits`] of its stage and with only the capabilities its [`Grant`] names; a batch
//! goes in as packed [`Events`] and comes back as a checked [`Output`], or as [`Trapped`].
//! [`Sandbox`] owns the engine and every wasmtime setting. The data plane sees a stage
//! through [`ProcessorFactory`] and [`Processor`], so native code can stand in for a plugin.
//!
//! Modules: `events` (the packed batch and its views), `cost` (what a guest's output costs
//! the host, judged before any other work on it), `contract` (the bindings of both
//! contract versions and the 0.1 adapter), `engine`, `host` (what a store holds: WASI,
//! limiter, the guest log funnel), `instance`, `plugin` (load, check, inspect), `cache`,
//! `settings` (declared settings), `limits`, `processor`, `keyed` (the [`KeyedState`]
//! seam the pipeline implements), `state` (the guest's state calls, linked to it) and
//! `timers` (the guest's watermarks, clock and timers).

mod cache;
mod contract;
pub mod cost;
mod engine;
pub mod events;
mod host;
mod instance;
pub mod keyed;
mod limits;
mod plugin;
mod processor;
pub mod settings;
mod state;
mod store;
pub mod text;
mod timers;

pub use cache::{CompileCache, Origin as CacheOrigin};
#[doc(hidden)]
pub use contract::adapter;
pub use contract::{Description, GuestFailure, GuestFailureKind, Output, Setting, SettingType};
pub use engine::{EPOCH_TICK, Sandbox};
pub use events::{EventRef, Events};
pub use host::{HostState, LOG_LINES_PER_SECOND, LogQuota};
pub use instance::Instance;
#[doc(hidden)]
pub use instance::accept_output;
pub use keyed::{KeyedState, Page, Refusal, TimerClock, TimerEntry, wall_ms};
pub use limits::{DirGrant, Grant, Limits};
pub use plugin::{
    ContractVersion, DescriptionInfo, InspectedImport, Inspection, MAX_PLUGIN_SIZE, Plugin,
    PluginError, SettingInfo, check_bytes, grant, inspect, read,
};
pub use processor::{Processor, ProcessorFactory, WasmStage};
pub use store::{INIT_FUEL_EVENTS, TrapKind, Trapped};
