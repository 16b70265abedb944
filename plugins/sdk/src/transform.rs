//! The [`Transform`] trait: the fast shape of a stage, which reads its input in place and
//! writes its outputs straight into the call's output buffers.
//!
//! An input arrives as an [`EventView`], slices of the packed input batch; outputs go through
//! the [`Emitter`] into the one output buffer of the call. Nothing is allocated per event
//! unless the stage does it. The blanket impl at the end of this module makes every
//! [`Stage`] a `Transform`, copying each event out and back.

use crate::time::Timer;
use crate::{Batch, Declare, Emitter, Event, EventView, Failure, Outputs, Settings, Stage};

/// A transform stage that works on borrowed inputs and writes its outputs in place.
///
/// ```
/// use weir_plugin::{Declare, Emitter, EventView, Failure, Settings, Transform};
///
/// /// Keeps events whose value contains `needle` (setting, default `error`).
/// pub struct Grep {
///     needle: Vec<u8>,
/// }
///
/// impl Transform for Grep {
///     const SETTINGS: &'static [Declare] =
///         &[Declare::text("needle").default("error").help("the bytes a kept value contains")];
///
///     fn init(settings: &Settings) -> Result<Self, String> {
///         Ok(Grep { needle: settings.require("needle")?.as_bytes().to_vec() })
///     }
///
///     fn process(&mut self, event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
///         if event.value().windows(self.needle.len()).any(|w| w == self.needle) {
///             out.pass();
///         }
///         Ok(())
///     }
/// }
///
/// weir_plugin::export_stage!(Grep);
/// ```
///
/// The host calls `init` on every new instance (instances are recycled and restarted
/// freely), so a stage must not rely on state surviving across instances.
pub trait Transform: Sized + 'static {
    /// The settings the stage accepts, for the contract's `describe`; their defaults are
    /// applied before [`Transform::init`]. None by default.
    const SETTINGS: &'static [Declare] = &[];

    /// Builds the stage from its settings. An `Err` fails the instance with that message.
    fn init(settings: &Settings) -> Result<Self, String>;

    /// Transforms one event: emits zero or more outputs through `out` (zero filters the event
    /// out), or fails it. A failed event's outputs, if any were emitted, are discarded.
    fn process(&mut self, event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure>;

    /// Transforms a batch: records exactly one outcome per input event, in order. The default
    /// calls [`Transform::process`] for each event; override it only to work across a batch.
    /// The host reports any other number of outcomes as `wrong-outcome-count`.
    fn process_batch(&mut self, batch: &Batch, out: &mut Outputs<'_>) {
        for event in batch.iter() {
            out.emit_for(&event, |emitter| self.process(&event, emitter));
        }
    }

    /// Timers that fired ([`crate::time`]), in time order: returns the events they became,
    /// which flow on like any output. The default returns none; a stage that sets no timer
    /// is never called.
    fn on_timer(&mut self, fired: Vec<Timer>) -> Vec<Event> {
        let _ = fired;
        Vec::new()
    }
}

/// Every [`Stage`] is a [`Transform`]: inputs are copied out as owned events, outcomes copied
/// back into the output buffers, and [`Stage::process_batch`] is honoured.
impl<S: Stage> Transform for S {
    const SETTINGS: &'static [Declare] = S::SETTINGS;

    fn init(settings: &Settings) -> Result<Self, String> {
        <S as Stage>::init(settings)
    }

    fn process(&mut self, event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
        for output in <S as Stage>::process(self, event.to_owned())? {
            out.emit_event(&output);
        }
        Ok(())
    }

    fn process_batch(&mut self, batch: &Batch, out: &mut Outputs<'_>) {
        for outcome in <S as Stage>::process_batch(self, batch.to_events()) {
            out.push_outcome(outcome);
        }
    }

    fn on_timer(&mut self, fired: Vec<Timer>) -> Vec<Event> {
        <S as Stage>::on_timer(self, fired)
    }
}
