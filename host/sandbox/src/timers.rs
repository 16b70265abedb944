//! Event time and timers: the host side of `weir:stage/time@0.3.0`.
//!
//! The watermarks a call's events saw come from the pipeline, which hands them to the instance
//! before the call ([`crate::Instance::set_watermarks`]); `watermarks` copies them into the
//! guest. Timers are entries of the stage's keyed state under the host's reserved prefix
//! ([`TimerEntry::state_key`]): setting one is a state write of an empty value, cancelling one
//! a delete, so a call's timers land with its other writes or not at all, count against the
//! stage's limits (a plugin cannot park unbounded timers in the host), survive a restart with
//! the state, and cost fuel as state calls do.

use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

use crate::contract::v03::weir::stage::time::{Clock, Timer};
use crate::host::HostState;
use crate::keyed::{MAX_KEY, Refusal, TimerClock, TimerEntry};
use crate::state::{StateError, charge, refused, state};

type Ctx<'a> = StoreContextMut<'a, HostState>;

/// The host's record of a guest's timer.
pub(crate) fn entry(timer: &Timer) -> TimerEntry {
    TimerEntry {
        clock: match timer.clock {
            Clock::Event => TimerClock::Event,
            Clock::Processing => TimerClock::Processing,
        },
        at: timer.at,
        key: timer.key.clone(),
    }
}

/// The guest's record of a timer the host fires.
pub(crate) fn guest(timer: &TimerEntry) -> Timer {
    Timer {
        key: timer.key.clone(),
        at: timer.at,
        clock: match timer.clock {
            TimerClock::Event => Clock::Event,
            TimerClock::Processing => Clock::Processing,
        },
    }
}

fn set_timer(store: &mut Ctx<'_>, timer: &Timer) -> wasmtime::Result<Result<(), StateError>> {
    charge(store, 1, timer.key.len() + 8)?;
    let result = if timer.key.len() > MAX_KEY {
        Err(Refusal::Limit(format!(
            "a timer key of {} bytes is over the 1 KiB limit",
            timer.key.len()
        )))
    } else {
        state(store)
            .map_err(|e| Refusal::Limit(e.to_string()))
            .and_then(|s| s.set(&entry(timer).state_key(), &[], None))
    };
    Ok(refused(store, result))
}

/// Links `weir:stage/time@0.3.0`.
pub(crate) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let mut i = linker.instance("weir:stage/time@0.3.0")?;
    i.func_wrap("watermarks", |mut store: Ctx<'_>, (): ()| {
        let n = store.data().watermarks.len();
        charge(&mut store, 1, n * 8)?;
        Ok((store.data().watermarks.clone(),))
    })?;
    i.func_wrap("now", |mut store: Ctx<'_>, (): ()| {
        charge(&mut store, 1, 0)?;
        Ok((crate::keyed::wall_ms(),))
    })?;
    i.func_wrap("set-timer", |mut store: Ctx<'_>, (timer,): (Timer,)| {
        Ok((set_timer(&mut store, &timer)?,))
    })?;
    i.func_wrap(
        "set-timers",
        |mut store: Ctx<'_>, (timers,): (Vec<Timer>,)| {
            let mut results = Vec::with_capacity(timers.len());
            for timer in &timers {
                results.push(set_timer(&mut store, timer)?);
            }
            Ok((results,))
        },
    )?;
    i.func_wrap("cancel-timer", |mut store: Ctx<'_>, (timer,): (Timer,)| {
        charge(&mut store, 1, timer.key.len() + 8)?;
        if timer.key.len() <= MAX_KEY {
            state(&store)?.delete(&entry(&timer).state_key());
        }
        Ok(())
    })?;
    Ok(())
}
