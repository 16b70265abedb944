//! What every instance's store shares: its making (WASI, limiter, a deadline that traps),
//! arming it before a call, driving a call to its end or its deadline, and naming what
//! stopped a call ([`Trapped`]).
//!
//! Both a stage's instances and the throwaway instance that asks a plugin to describe itself
//! are made here, so they run under the same rules.
//!
//! A call's wall-clock deadline is enforced twice, because a guest can wait in two ways.
//! While it runs wasm code, epoch interruption traps it at the next tick past its deadline.
//! While it waits in a host call (a WASI sleep, a poll, a read from a granted file or socket),
//! no wasm runs and the epoch cannot fire, so every call is made asynchronously ([`drive`])
//! on a small runtime of the calling thread's own, under a timer a little later than the
//! epoch deadline: when the timer fires first, the call is abandoned there and then. An
//! abandoned call leaves its store unusable, like a trap, so the instance is replaced.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Store, Trap};

use crate::engine::{EPOCH_TICK, Sandbox};
use crate::host::{HostState, LogQuota};
use crate::limits::{Grant, Limits};
use crate::text::guest_text;

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
    /// The call's output costs more than the stage's `max_output_bytes`, or breaks a hard
    /// limit of the contract (`cost`). The instance is still usable.
    OutputCap,
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
            TrapKind::OutputCap => "output-cap",
        }
    }

    /// Whether the instance that failed this way is unusable and must be replaced: true for a
    /// trap, false for an output the host refused (its store is intact).
    pub fn poisons(self) -> bool {
        !matches!(self, TrapKind::WrongOutcomeCount | TrapKind::OutputCap)
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

/// A new store for one instance: WASI with what `grant` names, the memory cap, and a
/// deadline that traps.
pub(crate) fn new_store(
    sandbox: &Sandbox,
    stage: &Arc<str>,
    limits: Limits,
    grant: &Grant,
    quota: Arc<LogQuota>,
) -> Result<Store<HostState>, String> {
    let state = HostState::new(Arc::clone(stage), limits.memory, grant, quota)?;
    let mut store = Store::new(sandbox.engine(), state);
    store.limiter(|state| &mut state.limiter);
    // A deadline traps the call (rather than yielding): the pipeline's calls are
    // synchronous on worker threads, and a stuck call must end.
    store.epoch_deadline_trap();
    Ok(store)
}

/// Why a driven call did not return a value.
pub(crate) enum Stopped {
    /// The deadline passed while the guest waited in a host call.
    Deadline,
    /// The call failed: a trap, or an error from wasmtime.
    Failed(wasmtime::Error),
}

/// The runtime that drives this thread's calls; shut down in the background when the thread
/// ends, so a host call still blocked in a read (abandoned at its deadline) cannot hold the
/// thread's exit.
struct CallRuntime(Option<tokio::runtime::Runtime>);

impl Drop for CallRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

thread_local! {
    static CALLS: CallRuntime = CallRuntime(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("weir-call")
            .build()
            .ok(),
    );
}

/// The timer's deadline for a call whose epoch deadline is `timeout`: two ticks later, so
/// that a guest running wasm code is stopped by the epoch (the precise path) and the timer
/// only catches one that waits in a host call.
pub(crate) fn timer(timeout: Duration) -> Duration {
    timeout + 2 * EPOCH_TICK
}

/// Drives `call` on this thread until it returns or `timeout` passes. Must not be called
/// from inside an async task (the data plane's workers and blocking tasks are fine).
pub(crate) fn drive<T>(
    timeout: Duration,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> Result<T, Stopped> {
    CALLS.with(|calls| {
        let Some(runtime) = &calls.0 else {
            return Err(Stopped::Failed(wasmtime::format_err!(
                "cannot start the runtime that drives plugin calls"
            )));
        };
        // The timer is made inside `block_on`: it needs the runtime's context.
        match runtime.block_on(async { tokio::time::timeout(timer(timeout), call).await }) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Stopped::Failed(e)),
            Err(_) => Err(Stopped::Deadline),
        }
    })
}

/// Names what stopped a driven call.
pub(crate) fn stopped(store: &Store<HostState>, stop: Stopped) -> Trapped {
    match stop {
        Stopped::Deadline => Trapped {
            kind: TrapKind::Deadline,
            message: "the call ran past its deadline while waiting in a host call (a sleep, a poll or a read)".into(),
        },
        Stopped::Failed(e) => describe_trap(store, e),
    }
}

pub(crate) fn arm(store: &mut Store<HostState>, fuel: u64, deadline_ticks: u64) {
    // Setting fuel cannot fail: fuel consumption is always on in weir's engine.
    let _ = store.set_fuel(fuel);
    store.set_epoch_deadline(deadline_ticks);
}

/// Names a failed call: the limit that stopped it, or what the guest did.
pub(crate) fn describe_trap(store: &Store<HostState>, error: wasmtime::Error) -> Trapped {
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
    // A backtrace names guest functions, and a panic message is the guest's own: guest text.
    Trapped {
        kind,
        message: guest_text(message.as_bytes()),
    }
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
