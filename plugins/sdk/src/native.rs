//! Running a stage natively, without a host: the same code path a plugin runs in the
//! sandbox, for tests and benchmarks.
//!
//! [`process`] is the packed entry point: a [`Batch`] in, an [`Output`] out, through
//! [`Transform::process_batch`] exactly as the component's `process` export runs it (the
//! export only moves the vectors between the bindings' records and these). [`init`] applies
//! declared settings as the export's `init` does. [`process_event`] and [`process_events`]
//! pack owned events, run them, and read the output back as owned outcomes, which is what a
//! unit test wants to compare.
//!
//! [`crate::state`] works here on an in-memory store, one per thread, that enforces none of
//! the host's limits and keeps a failed call's writes; [`reset_state`] empties it between
//! tests and [`state_ttl`] shows the TTL a key was written with (both only off `wasm32`).

#[cfg(not(target_arch = "wasm32"))]
use std::time::Duration;

use crate::emit::Finished;
#[cfg(not(target_arch = "wasm32"))]
use crate::state::memory;
use crate::{Batch, Event, Outcome, Output, Outputs, Settings, Transform};

/// Builds a stage as the component's `init` does: the declared defaults are applied and the
/// declared rules checked before [`Transform::init`] sees the settings.
pub fn init<T: Transform>(settings: Settings) -> Result<T, String> {
    T::init(&settings.with_declared(T::SETTINGS)?)
}

/// Runs one packed batch through a stage, as the component's `process` does.
///
/// Panics if `input` breaks the contract's encoding ([`Batch::check`]). When the stage passed
/// every input unchanged, the output's events are a copy of `input` (the component returns the
/// input itself).
pub fn process<T: Transform>(stage: &mut T, input: &Batch) -> Output {
    match run(stage, input) {
        Finished::Input => Output {
            events: input.clone(),
            ..Output::default()
        },
        Finished::Written(output) => output,
    }
}

/// The common part of [`process`] and the component's export, which can give the input back
/// without copying it.
pub(crate) fn run<T: Transform>(stage: &mut T, input: &Batch) -> Finished {
    // A component's input comes from the host, which built or checked every batch it sends:
    // checking it again in the guest is a pass over every event of every call (7 % of a
    // pass-through stage's time). Natively, where tests build the batches, it is checked.
    // Either way nothing reads outside a batch: every access is a checked slice, so a bad
    // span panics (a trap, in a component) rather than read another event's bytes.
    #[cfg(not(target_arch = "wasm32"))]
    if let Err(breach) = input.check() {
        panic!("the input batch breaks the contract: {breach}");
    }
    let mut outputs = Outputs::for_input(input);
    stage.process_batch(input, &mut outputs);
    outputs.finish()
}

/// Runs owned events through [`process`] as one batch; one outcome per input (unless the
/// stage breaks the contract, in which case as many as it recorded).
pub fn process_events<T: Transform>(stage: &mut T, events: &[Event]) -> Vec<Outcome> {
    process(stage, &Batch::from_events(events)).outcomes()
}

/// Runs one owned event through [`process`].
pub fn process_event<T: Transform>(stage: &mut T, event: &Event) -> Outcome {
    let mut outcomes = process_events(stage, std::slice::from_ref(event));
    assert_eq!(
        outcomes.len(),
        1,
        "the stage recorded {} outcomes for one event",
        outcomes.len()
    );
    outcomes.remove(0)
}

/// Empties this thread's in-memory state store, timers and watermarks, so that a test starts
/// from nothing.
#[cfg(not(target_arch = "wasm32"))]
pub fn reset_state() {
    memory::reset();
    crate::time::memory::reset();
}

/// Sets the watermarks the events of the next batch see ([`crate::time::watermarks`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn set_watermarks(watermarks: Vec<u64>) {
    crate::time::memory::set_watermarks(watermarks);
}

/// Fires this thread's timers of `clock` at or before `until` through the stage's
/// [`Transform::on_timer`], as the host does, and returns the events they became.
#[cfg(not(target_arch = "wasm32"))]
pub fn fire<T: Transform>(stage: &mut T, clock: crate::time::Clock, until: u64) -> Vec<Event> {
    let fired = crate::time::memory::due(clock, until);
    if fired.is_empty() {
        return Vec::new();
    }
    stage.on_timer(fired)
}

/// The TTL `key` was last written with in this thread's in-memory store, if the key is live
/// and has one (a count made by `increment` keeps the TTL of the value it adds to).
#[cfg(not(target_arch = "wasm32"))]
pub fn state_ttl(key: impl AsRef<[u8]>) -> Option<Duration> {
    memory::ttl(key.as_ref())
}
