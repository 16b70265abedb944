//! The [`Stage`] trait: what a plugin author implements.

use crate::{Event, Outcome, Settings};

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
    /// Builds the stage from its settings. An `Err` fails the instance with that message.
    fn init(settings: &Settings) -> Result<Self, String>;

    /// Transforms one event.
    fn process(&mut self, event: Event) -> Outcome;

    /// Transforms a batch. Override it to amortise work across a batch; an override must keep
    /// the one-outcome-per-input contract, which the host checks.
    fn process_batch(&mut self, batch: Vec<Event>) -> Vec<Outcome> {
        batch.into_iter().map(|event| self.process(event)).collect()
    }
}
