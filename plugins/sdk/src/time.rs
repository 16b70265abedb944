//! Event time, watermarks and timers: a safe API over the contract's `time` import.
//!
//! The host derives a watermark from the timestamps of the events a stage is given (see
//! `docs/contract.md`): [`watermarks`] returns the one each event of the batch in progress saw,
//! in input order. An event whose time (or whose window's end) is at or before its watermark
//! is late: fail it with [`Failure::late`](crate::Failure::late), which the host dead-letters
//! as `late` (or drops, where the stage says `late = "drop"`).
//!
//! Timers are kept by the host in the stage's state, so they survive an instance being
//! replaced, the plugin being upgraded and (with a data folder) the host restarting. A timer
//! is a key, a time and a [`Clock`]; when it fires, the host calls the stage's
//! [`Transform::on_timer`](crate::Transform::on_timer) with it. Setting and cancelling land
//! with the call's other state writes, or not at all.
//!
//! A component imports `time` only if it calls one of these functions. Off `wasm32` the same
//! functions work on a per-thread clock and timer set, which tests drive through
//! [`native`](crate::native) (`set_watermarks`, `due_timers`).

use crate::StateError;
use crate::bindings::weir::stage::time as wit;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod memory;

#[cfg(not(target_arch = "wasm32"))]
use memory as backend;
#[cfg(target_arch = "wasm32")]
use wit as backend;

/// The clock a timer follows: event time (the watermark) or processing time (the host's wall
/// clock).
pub use wit::Clock;
/// A timer: the contract's own record (`key`, `at` in milliseconds since the Unix epoch,
/// `clock`).
pub use wit::Timer;

impl Timer {
    /// An event-time timer: fires once the stage's watermark reaches `at`.
    pub fn event(key: impl Into<Vec<u8>>, at: u64) -> Timer {
        Timer {
            key: key.into(),
            at,
            clock: Clock::Event,
        }
    }

    /// A processing-time timer: fires once the host's wall clock reaches `at`.
    pub fn processing(key: impl Into<Vec<u8>>, at: u64) -> Timer {
        Timer {
            key: key.into(),
            at,
            clock: Clock::Processing,
        }
    }
}

/// The watermark each event of the batch in progress saw, in input order (0 before there is
/// one); empty when no input of the stage carries event time, and in `on_timer`.
pub fn watermarks() -> Vec<u64> {
    backend::watermarks()
}

/// The host's wall clock, in milliseconds since the Unix epoch.
pub fn now() -> u64 {
    backend::now()
}

/// Sets a timer; setting one that is set does nothing. Refused over the stage's state limits.
pub fn set_timer(timer: &Timer) -> Result<(), StateError> {
    backend::set_timer(timer).map_err(StateError::from)
}

/// Sets each timer, in one host call: one result per timer.
pub fn set_timers(timers: &[Timer]) -> Vec<Result<(), StateError>> {
    (backend::set_timers(timers).into_iter())
        .map(|r| r.map_err(StateError::from))
        .collect()
}

/// Cancels a timer; cancelling one that is not set does nothing.
pub fn cancel_timer(timer: &Timer) {
    backend::cancel_timer(timer)
}
