//! One live plugin instance: its own store, its limits, and what became of its last call.
//!
//! An [`Instance`] is made from a plugin's pre-instantiated component, then `init` runs with
//! the stage's settings under the fuel and deadline rules of a call (with
//! [`INIT_FUEL_EVENTS`] events' worth of fuel). `process` arms fuel (events × the stage's
//! budget) and the epoch deadline before every call, hands the packed batch to the plugin
//! (through the 0.1 adapter for an older plugin) and checks what comes back against the
//! contract. When a call traps, the store is unusable: the caller drops the instance and
//! makes a new one, and the trap comes back as [`Trapped`], a [`TrapKind`] plus a message a
//! person can act on.

use std::sync::Arc;

use wasmtime::{Store, Trap};

use crate::contract::{self, Output, v01, v02};
use crate::engine::Sandbox;
use crate::events::Events;
use crate::host::HostState;
use crate::limits::{Grant, Limits};
use crate::plugin::{Plugin, Pre};

/// `init` may do more than one event's work (build tables, compile patterns): it gets this
/// many events' worth of fuel, under the same deadline as a call.
pub const INIT_FUEL_EVENTS: u64 = 100;

/// How a call, or making an instance, failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrapKind {
    /// The call ran out of fuel.
    OutOfFuel,
    /// The call ran past its wall-clock deadline.
    Deadline,
    /// The instance tried to grow its memory past the stage's cap.
    MemoryLimit,
    /// The guest overflowed its stack.
    StackOverflow,
    /// The guest panicked or reached `unreachable`.
    Panic,
    /// Any other trap (out-of-bounds access, bad cast, …), or an output that breaks the
    /// contract's encoding (a span outside the buffer, counts that do not add up).
    Trap,
    /// The plugin returned a different number of outcomes than events it was given. The
    /// instance is still usable; the call's events fail.
    WrongOutcomeCount,
    /// A fresh instance could not be made or initialised.
    InitFailed,
}

impl TrapKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrapKind::OutOfFuel => "out-of-fuel",
            TrapKind::Deadline => "deadline",
            TrapKind::MemoryLimit => "memory-limit",
            TrapKind::StackOverflow => "stack-overflow",
            TrapKind::Panic => "panic",
            TrapKind::Trap => "trap",
            TrapKind::WrongOutcomeCount => "wrong-outcome-count",
            TrapKind::InitFailed => "init-failed",
        }
    }
}

/// Why a call, or making an instance, failed.
#[derive(Debug, Clone)]
pub struct Trapped {
    pub kind: TrapKind,
    pub message: String,
}

impl std::fmt::Display for Trapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for Trapped {}

enum Bindings {
    V01(v01::Stage),
    V02(v02::Stage),
}

/// A live instance of a stage's plugin.
pub struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
    limits: Limits,
    deadline_ticks: u64,
    /// Fuel the last call burned.
    last_fuel: u64,
}

impl Instance {
    /// Instantiates the plugin and runs its `init`. Any failure, a trap included, is
    /// reported as `init-failed` with the reason.
    pub fn new(
        sandbox: &Sandbox,
        plugin: &Plugin,
        stage: &Arc<str>,
        limits: Limits,
        grant: &Grant,
        settings: &[(String, String)],
    ) -> Result<Instance, Trapped> {
        let init_failed = |message: String| Trapped {
            kind: TrapKind::InitFailed,
            message,
        };
        let mut store = new_store(sandbox, stage, limits, grant).map_err(init_failed)?;
        let deadline_ticks = Sandbox::deadline_ticks(limits.timeout);
        arm(
            &mut store,
            limits.fuel.saturating_mul(INIT_FUEL_EVENTS),
            deadline_ticks,
        );
        let bindings = match plugin.pre() {
            Pre::V01(pre) => pre.instantiate(&mut store).map(Bindings::V01),
            Pre::V02(pre) => pre.instantiate(&mut store).map(Bindings::V02),
        }
        .map_err(|e| {
            init_failed(format!(
                "cannot instantiate: {}",
                describe(&store, e).message
            ))
        })?;
        let result = match &bindings {
            Bindings::V01(b) => b.call_init(&mut store, settings),
            Bindings::V02(b) => b.call_init(&mut store, settings),
        };
        match result {
            Ok(Ok(())) => Ok(Instance {
                store,
                bindings,
                limits,
                deadline_ticks,
                last_fuel: 0,
            }),
            Ok(Err(reason)) => Err(init_failed(format!("init returned an error: {reason}"))),
            Err(e) => {
                let trapped = describe(&store, e);
                Err(init_failed(format!(
                    "init trapped ({}): {}",
                    trapped.kind.as_str(),
                    trapped.message
                )))
            }
        }
    }

    /// Runs one batch and checks the output against the contract. On `Err` the instance is
    /// poisoned and must be dropped, unless the kind is `WrongOutcomeCount`.
    pub fn process(&mut self, input: &Events) -> Result<Output, Trapped> {
        let fuel = self.limits.fuel.saturating_mul(input.len().max(1) as u64);
        arm(&mut self.store, fuel, self.deadline_ticks);
        let result = match &self.bindings {
            Bindings::V02(b) => b
                .call_process(&mut self.store, input)
                .map_err(|e| describe(&self.store, e)),
            Bindings::V01(b) => {
                let events = contract::to_v01(input);
                match b.call_process(&mut self.store, &events) {
                    Ok(outcomes) if outcomes.len() == input.len() => {
                        Ok(contract::from_v01(outcomes))
                    }
                    Ok(outcomes) => Err(wrong_count(outcomes.len(), input.len())),
                    Err(e) => Err(describe(&self.store, e)),
                }
            }
        };
        self.last_fuel = fuel.saturating_sub(self.store.get_fuel().unwrap_or(0));
        let output = result?;
        check(&output, input.len())?;
        Ok(output)
    }

    /// Fuel the last call burned.
    pub fn last_fuel(&self) -> u64 {
        self.last_fuel
    }

    /// Guest output lines dropped by the log rate limit so far.
    pub fn dropped_log_lines(&self) -> u64 {
        self.store.data().log.dropped()
    }
}

/// A new store for one instance: WASI with what `grant` names, the memory cap, and a
/// deadline that traps.
pub(crate) fn new_store(
    sandbox: &Sandbox,
    stage: &Arc<str>,
    limits: Limits,
    grant: &Grant,
) -> Result<Store<HostState>, String> {
    let state = HostState::new(Arc::clone(stage), limits.memory, grant)?;
    let mut store = Store::new(sandbox.engine(), state);
    store.limiter(|state| &mut state.limiter);
    // A deadline traps the call (rather than yielding): the pipeline's calls are
    // synchronous on worker threads, and a stuck call must end.
    store.epoch_deadline_trap();
    Ok(store)
}

/// Checks an output against the contract; a wrong number of outcomes is told apart from
/// other breaches, as it was in 0.1.
fn check(output: &Output, inputs: usize) -> Result<(), Trapped> {
    if !output.counts.is_empty() && output.counts.len() != inputs {
        return Err(wrong_count(output.counts.len(), inputs));
    }
    output.check(inputs).map_err(|message| Trapped {
        kind: TrapKind::Trap,
        message: format!("the plugin's output breaks the contract: {message}"),
    })
}

fn wrong_count(outcomes: usize, inputs: usize) -> Trapped {
    Trapped {
        kind: TrapKind::WrongOutcomeCount,
        message: format!("the plugin returned {outcomes} outcomes for {inputs} events"),
    }
}

pub(crate) fn arm(store: &mut Store<HostState>, fuel: u64, deadline_ticks: u64) {
    // Setting fuel cannot fail: fuel consumption is always on in weir's engine.
    let _ = store.set_fuel(fuel);
    store.set_epoch_deadline(deadline_ticks);
}

/// Names a failed call: the limit that stopped it, or what the guest did.
pub(crate) fn describe(store: &Store<HostState>, error: wasmtime::Error) -> Trapped {
    let state = store.data();
    if let Some(message) = &state.limiter.hit {
        return Trapped {
            kind: TrapKind::MemoryLimit,
            message: message.clone(),
        };
    }
    let (kind, message) = match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => (
            TrapKind::OutOfFuel,
            "the call used all its fuel".to_string(),
        ),
        Some(Trap::Interrupt) => (
            TrapKind::Deadline,
            "the call ran past its deadline".to_string(),
        ),
        Some(Trap::StackOverflow) => (
            TrapKind::StackOverflow,
            "the guest exhausted its stack".to_string(),
        ),
        Some(Trap::UnreachableCodeReached) => {
            let message = panic_message(&state.log.recent_stderr()).unwrap_or_else(|| {
                "the guest reached `unreachable` (an abort or a panic)".to_string()
            });
            (TrapKind::Panic, message)
        }
        Some(trap) => (TrapKind::Trap, trap.to_string()),
        None => (TrapKind::Trap, format!("{error:#}")),
    };
    Trapped { kind, message }
}

/// A Rust guest prints `panicked at FILE:LINE:COL:` and then its message before it aborts;
/// other languages print their own. Returns the message lines after that header, or the last
/// stderr lines when there is no header.
fn panic_message(recent: &[String]) -> Option<String> {
    let start = recent.iter().rposition(|l| l.contains("panicked at"));
    let lines: Vec<&str> = match start {
        Some(i) => recent[i..]
            .iter()
            .map(String::as_str)
            .filter(|l| !l.starts_with("note:"))
            .collect(),
        None => recent
            .iter()
            .rev()
            .take(2)
            .rev()
            .map(String::as_str)
            .collect(),
    };
    let text = lines.join(" ").trim().to_string();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_panic_message_is_found_in_stderr() {
        let recent = vec![
            "thread '<unnamed>' panicked at src/lib.rs:9:13:".to_string(),
            "poison event".to_string(),
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
                .to_string(),
        ];
        assert_eq!(
            panic_message(&recent).unwrap(),
            "thread '<unnamed>' panicked at src/lib.rs:9:13: poison event"
        );
    }
}
