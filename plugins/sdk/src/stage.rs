//! The [`Stage`] trait: the simple, owned shape of a stage.
//!
//! Each input event is copied out of the packed batch into an owned [`Event`], handed to
//! [`Stage::process`], and the events it returns are copied into the packed output. That is
//! a few allocations per event, the price of the simplest API; a stage that cares implements
//! [`Transform`](crate::Transform) instead. Every `Stage` is a `Transform` (a blanket impl),
//! so [`export_stage!`](crate::export_stage) takes either.

use crate::time::Timer;
use crate::{Declare, Event, Outcome, Settings};

/// A transform stage: built once per instance by [`Stage::init`], then fed batches of events.
///
/// The host calls `init` on every new instance (instances are recycled and restarted freely),
/// so a stage must not rely on state surviving across instances.
///
/// Contract of [`Stage::process_batch`]: exactly one [`Outcome`] per input event, in input
/// order. `Ok(events)` emits zero or more events; `Err(Failure::Reject(_))` dead-letters the
/// input; `Err(Failure::Retry(_))` asks the host to retry it later.
///
/// [`Failure`]: crate::Failure
pub trait Stage: Sized + 'static {
    /// The settings the stage accepts, for the contract's `describe`; their defaults are
    /// applied before [`Stage::init`]. None by default.
    const SETTINGS: &'static [Declare] = &[];

    /// Builds the stage from its settings. An `Err` fails the instance with that message.
    fn init(settings: &Settings) -> Result<Self, String>;

    /// Transforms one event.
    fn process(&mut self, event: Event) -> Outcome;

    /// Transforms a batch. Override it to amortise work across a batch; an override must keep
    /// the one-outcome-per-input contract: the host reports any other number of outcomes as
    /// `wrong-outcome-count` and fails the call's events.
    fn process_batch(&mut self, batch: Vec<Event>) -> Vec<Outcome> {
        batch.into_iter().map(|event| self.process(event)).collect()
    }

    /// Timers that fired ([`crate::time`]), in time order: returns the events they became.
    /// The default returns none; a stage that sets no timer is never called.
    fn on_timer(&mut self, fired: Vec<Timer>) -> Vec<Event> {
        let _ = fired;
        Vec::new()
    }
}
