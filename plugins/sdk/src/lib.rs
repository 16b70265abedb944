//! The SDK for writing weir transform stages in Rust.
//!
//! A stage is a WebAssembly component that targets the `stage` world of `weir:stage@0.3.0`
//! (a copy of the contract lives in this crate, `wit/stage.wit`; `docs/contract.md` explains
//! it). The host calls the component's `process` with a whole batch of events packed into one
//! byte buffer and columns of offsets; the component returns its outputs packed the same way.
//! This crate owns the bindings and that encoding, so an author writes a type and exports it
//! with [`export_stage!`]. There are two shapes to write it in.
//!
//! **[`Stage`], the simple shape.** Each input is an owned [`Event`]; the stage returns an
//! [`Outcome`]: zero or more owned events, or a [`Failure`]. The SDK copies events out of the
//! packed batch and back, a few allocations per event.
//!
//! ```
//! use weir_plugin::{Declare, Event, Failure, Outcome, Settings, Stage};
//!
//! /// Cuts every value to at most `max` bytes.
//! pub struct Truncate {
//!     max: usize,
//! }
//!
//! impl Stage for Truncate {
//!     const SETTINGS: &'static [Declare] =
//!         &[Declare::integer("max").default("1024").help("longest value kept, in bytes")];
//!
//!     fn init(settings: &Settings) -> Result<Self, String> {
//!         // The declared default is applied before `init`, so `max` is always set.
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
//! **[`Transform`], the fast shape.** Each input is an [`EventView`], slices of the packed
//! input; outputs are written through an [`Emitter`] straight into the call's output buffer:
//! [`Emitter::pass`] (the input unchanged), [`Emitter::emit_value`] (a new value, the input's
//! key, headers and timestamp), [`Emitter::emit_with`] (a value appended in place, no
//! intermediate buffer), [`Emitter::emit`] (every part given). No output filters the event
//! out. A call then makes the same few allocations whatever its number of events; when every
//! input becomes one output it writes no per-event counts, and when every input is passed
//! unchanged it hands the input batch back without copying a byte.
//!
//! ```
//! use weir_plugin::{Emitter, EventView, Failure, Settings, Transform};
//!
//! /// Upper-cases the ASCII letters of every value.
//! pub struct Upper;
//!
//! impl Transform for Upper {
//!     fn init(_: &Settings) -> Result<Self, String> {
//!         Ok(Upper)
//!     }
//!
//!     fn process(&mut self, event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
//!         let value = event.value();
//!         out.emit_with(|buf| buf.extend(value.iter().map(u8::to_ascii_uppercase)));
//!         Ok(())
//!     }
//! }
//!
//! weir_plugin::export_stage!(Upper);
//! ```
//!
//! **[`state`], keyed state kept by the host.** A stage can count, remember and look up
//! across events and batches with [`state::get`], [`state::set`], [`state::increment`],
//! [`state::scan`] and the rest: the store lives in the host, scoped to the pipeline and
//! stage, and survives instances and upgrades. A write the host refuses returns a
//! [`StateError`]; `?` turns it into a [`Failure`] ([`Failure::from_state`]). A component
//! that never calls `state` does not import it.
//!
//! Every `Stage` is also a `Transform`, so [`export_stage!`] takes either; import only the
//! trait a type implements, or calls such as `T::init` become ambiguous. Both traits declare
//! their settings in `SETTINGS` ([`Declare`]): the host reads them through `describe` along
//! with the plugin crate's name and version, and refuses pipeline files that do not fit; the
//! SDK applies their defaults before `init`.
//!
//! The plugin crate declares `crate-type = ["cdylib", "rlib"]` and is built with
//! `cargo build --release --target wasm32-wasip2`, which yields a component. The `rlib` lets
//! the same code run natively: on targets other than `wasm32`, [`export_stage!`] only checks
//! that the type implements [`Transform`], [`log`] writes to stderr, [`state`] works on an
//! in-memory store (no limits enforced), and [`native`] runs a
//! stage on packed batches ([`native::process`]) or owned events exactly as the component
//! does. Because [`export_stage!`] defines the component's exports, a plugin crate must not be
//! a (non-dev) dependency of another plugin crate: the two sets of exports would collide.
//!
//! Modules: `batch` ([`Batch`], [`EventView`]), `output` ([`Output`]), `emit` ([`Outputs`],
//! [`Emitter`]), `stage` and `transform` (the traits), `declare` and `settings`, `event` (the
//! owned types), [`state`], [`native`], `export` (the macro), `log`, and the generated
//! `bindings`.

mod batch;
mod declare;
mod emit;
mod event;
mod export;
mod log;
pub mod native;
mod output;
mod settings;
mod stage;
pub mod state;
pub mod time;
mod transform;
pub mod window;

pub use crate::log::{Level, log};
pub use batch::{Batch, EVENT_STRIDE, EventView, HEADER_STRIDE, Headers, NO_KEY, NO_TIMESTAMP};
pub use declare::{Declare, SettingType};
pub use emit::{Emitter, Outputs};
pub use event::{Event, Failure, Outcome};
pub use output::{FailedEvent, Output};
pub use settings::Settings;
pub use stage::Stage;
pub use state::StateError;
pub use transform::Transform;

#[doc(hidden)]
pub use export::__private;

pub mod bindings;
