//! The clock and timers behind [`crate::time`] off `wasm32`: per thread, with the contract's
//! signatures, so that a stage's logic runs unchanged under [`native`](crate::native).
//!
//! Watermarks are what a test sets ([`set_watermarks`]); timers are an ordered set, taken by
//! [`due`] in the order the host fires them (time, then key). No limit is enforced.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::bindings::weir::stage::state::StateError;
use crate::bindings::weir::stage::time::{Clock, Timer};

/// A timer as the set orders it: clock (event first), time, key.
type Slot = (u8, u64, Vec<u8>);

fn slot(timer: &Timer) -> Slot {
    let clock = match timer.clock {
        Clock::Event => 0,
        Clock::Processing => 1,
    };
    (clock, timer.at, timer.key.clone())
}

thread_local! {
    static WATERMARKS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    static TIMERS: RefCell<BTreeSet<Slot>> = const { RefCell::new(BTreeSet::new()) };
}

pub(crate) fn watermarks() -> Vec<u64> {
    WATERMARKS.with(|w| w.borrow().clone())
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn set_timer(timer: &Timer) -> Result<(), StateError> {
    TIMERS.with(|t| t.borrow_mut().insert(slot(timer)));
    Ok(())
}

pub(crate) fn set_timers(timers: &[Timer]) -> Vec<Result<(), StateError>> {
    timers.iter().map(set_timer).collect()
}

pub(crate) fn cancel_timer(timer: &Timer) {
    TIMERS.with(|t| t.borrow_mut().remove(&slot(timer)));
}

/// The watermarks the next batch's events see.
pub(crate) fn set_watermarks(watermarks: Vec<u64>) {
    WATERMARKS.with(|w| *w.borrow_mut() = watermarks);
}

/// Removes and returns the timers of `clock` at or before `until`, in firing order.
pub(crate) fn due(clock: Clock, until: u64) -> Vec<Timer> {
    let c = match clock {
        Clock::Event => 0,
        Clock::Processing => 1,
    };
    TIMERS.with(|t| {
        let mut t = t.borrow_mut();
        let fired: Vec<Slot> = t
            .range((c, 0, Vec::new())..)
            .take_while(|(cl, at, _)| *cl == c && *at <= until)
            .cloned()
            .collect();
        fired
            .into_iter()
            .map(|s| {
                t.remove(&s);
                Timer {
                    key: s.2,
                    at: s.1,
                    clock,
                }
            })
            .collect()
    })
}

/// Forgets every timer and watermark of this thread.
pub(crate) fn reset() {
    WATERMARKS.with(|w| w.borrow_mut().clear());
    TIMERS.with(|t| t.borrow_mut().clear());
}
