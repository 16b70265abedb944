//! The SDK for writing weir transform stages.
//!
//! A stage is a WebAssembly component that targets the `weir:stage` world (`wit/stage.wit`).
//! This crate owns the generated bindings for that world, so a stage author only writes a type
//! that implements [`Stage`] and exports it with [`export_stage!`]:
//!
//! ```
//! use weir_plugin::{Event, Failure, Outcome, Settings, Stage};
//!
//! /// Cuts every value to at most `max` bytes (setting `max`, default 1024).
//! pub struct Truncate {
//!     max: usize,
//! }
//!
//! impl Stage for Truncate {
//!     fn init(settings: &Settings) -> Result<Self, String> {
//!         Ok(Truncate { max: settings.parse_or("max", 1024)? })
//!     }
//!
//!     fn process(&mut self, mut event: Event) -> Outcome {
//!         if event.value.is_empty() {
//!             return Err(Failure::reject("empty value"));
//!         }
//!         event.value.truncate(self.max);
//!         Ok(vec![event])
//!     }
//! }
//!
//! weir_plugin::export_stage!(Truncate);
//! ```
//!
//! The plugin crate declares `crate-type = ["cdylib", "rlib"]` and is built with
//! `cargo build --release --target wasm32-wasip2`, which yields a component. The `rlib` lets the
//! same logic be called natively from tests and benchmarks: on targets other than `wasm32`,
//! [`export_stage!`] only checks that the type implements [`Stage`], and [`log`] writes to
//! stderr instead of calling the host.
//!
//! Because [`export_stage!`] defines the component's exports, a plugin crate must not be a
//! (non-dev) dependency of another plugin crate: the two sets of exports would collide.

mod batch;
mod event;
mod export;
mod log;
mod output;
mod settings;
mod stage;

pub use crate::log::{Level, log};
pub use batch::{Batch, EVENT_STRIDE, EventView, HEADER_STRIDE, Headers, NO_KEY, NO_TIMESTAMP};
pub use bindings::weir::stage::types::{Event, Failure, Outcome};
pub use output::{FailedEvent, Output};
pub use settings::Settings;
pub use stage::Stage;

#[doc(hidden)]
pub use export::__private;

pub mod bindings;
