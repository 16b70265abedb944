//! One live plugin instance: its own store, its limits, and what became of its last call.
//!
//! An [`Instance`] is made from a plugin's pre-instantiated component, then `init` runs with
//! the stage's settings under the same fuel and deadline rules as any call. `process` arms
//! fuel (events × the stage's budget) and the epoch deadline before every call. When a call
//! traps, the store is unusable: the caller drops the instance and makes a new one, and the
//! trap comes back as [`Trapped`], a [`FailureKind`] plus a message a person can act on.

use std::sync::Arc;

use wasmtime::{Store, Trap};

use super::{Event, HostState, Outcome, Sandbox, StageBindings};
use crate::config::{Grant, Limits};
use crate::delivery::FailureKind;
use crate::plugins::Plugin;
use crate::stage::{Processor, ProcessorFactory};

/// `init` may do more than one event's work (build tables, compile patterns): it gets this
/// many events' worth of fuel.
const INIT_FUEL_EVENTS: u64 = 100;

/// Why a call, or making an instance, failed.
#[derive(Debug, Clone)]
pub struct Trapped {
    pub kind: FailureKind,
    pub message: String,
}

impl std::fmt::Display for Trapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

/// A live instance of a stage's plugin.
pub struct Instance {
    store: Store<HostState>,
    bindings: StageBindings,
    limits: Limits,
    deadline_ticks: u64,
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
        let state =
            HostState::new(Arc::clone(stage), limits.memory, grant).map_err(|message| Trapped {
                kind: FailureKind::InitFailed,
                message,
            })?;
        let mut store = Store::new(sandbox.engine(), state);
        store.limiter(|state| &mut state.limiter);
        // A deadline traps the call (rather than yielding): the pipeline's calls are
        // synchronous on worker threads, and a stuck call must end.
        store.epoch_deadline_trap();
        let deadline_ticks = Sandbox::deadline_ticks(limits.timeout);
        arm(
            &mut store,
            limits.fuel.saturating_mul(INIT_FUEL_EVENTS),
            deadline_ticks,
        );
        let bindings = plugin.pre().instantiate(&mut store).map_err(|e| Trapped {
            kind: FailureKind::InitFailed,
            message: format!("cannot instantiate: {}", describe(&store, e).message),
        })?;
        let mut instance = Instance {
            store,
            bindings,
            limits,
            deadline_ticks,
        };
        match instance.bindings.call_init(&mut instance.store, settings) {
            Ok(Ok(())) => Ok(instance),
            Ok(Err(reason)) => Err(Trapped {
                kind: FailureKind::InitFailed,
                message: format!("init returned an error: {reason}"),
            }),
            Err(e) => {
                let trapped = describe(&instance.store, e);
                Err(Trapped {
                    kind: FailureKind::InitFailed,
                    message: format!(
                        "init trapped ({}): {}",
                        trapped.kind.as_str(),
                        trapped.message
                    ),
                })
            }
        }
    }

    /// Runs one batch. On `Err` the instance is poisoned and must be dropped.
    pub fn process(&mut self, events: &[Event]) -> Result<Vec<Outcome>, Trapped> {
        let fuel = self.limits.fuel.saturating_mul(events.len().max(1) as u64);
        arm(&mut self.store, fuel, self.deadline_ticks);
        self.bindings
            .call_process(&mut self.store, events)
            .map_err(|e| describe(&self.store, e))
    }

    /// Guest output lines dropped by the log rate limit so far.
    pub fn dropped_log_lines(&self) -> u64 {
        self.store.data().log.dropped()
    }
}

impl Processor for Instance {
    fn process(&mut self, events: &[Event]) -> Result<Vec<Outcome>, Trapped> {
        Instance::process(self, events)
    }
}

/// One version of a stage backed by a plugin: it makes the stage's instances, each with the
/// stage's limits and settings.
pub struct WasmStage {
    pub sandbox: Arc<Sandbox>,
    pub plugin: Arc<Plugin>,
    pub stage: Arc<str>,
    pub limits: Limits,
    pub grant: Grant,
    pub settings: Vec<(String, String)>,
}

impl ProcessorFactory for WasmStage {
    fn make(&self) -> Result<Box<dyn Processor>, Trapped> {
        let instance = Instance::new(
            &self.sandbox,
            &self.plugin,
            &self.stage,
            self.limits,
            &self.grant,
            &self.settings,
        )?;
        Ok(Box::new(instance))
    }

    fn digest(&self) -> &str {
        &self.plugin.digest
    }
}

fn arm(store: &mut Store<HostState>, fuel: u64, deadline_ticks: u64) {
    // Setting fuel cannot fail: fuel consumption is always on in weir's engine.
    let _ = store.set_fuel(fuel);
    store.set_epoch_deadline(deadline_ticks);
}

/// Names a failed call: the limit that stopped it, or what the guest did.
fn describe(store: &Store<HostState>, error: wasmtime::Error) -> Trapped {
    let state = store.data();
    if let Some(message) = &state.limiter.hit {
        return Trapped {
            kind: FailureKind::MemoryLimit,
            message: message.clone(),
        };
    }
    let (kind, message) = match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => (
            FailureKind::OutOfFuel,
            "the call used all its fuel".to_string(),
        ),
        Some(Trap::Interrupt) => (
            FailureKind::Deadline,
            "the call ran past its deadline".to_string(),
        ),
        Some(Trap::StackOverflow) => (
            FailureKind::StackOverflow,
            "the guest exhausted its stack".to_string(),
        ),
        Some(Trap::UnreachableCodeReached) => {
            let message = panic_message(&state.log.recent_stderr()).unwrap_or_else(|| {
                "the guest reached `unreachable` (an abort or a panic)".to_string()
            });
            (FailureKind::Panic, message)
        }
        Some(trap) => (FailureKind::Trap, trap.to_string()),
        None => (FailureKind::Trap, format!("{error:#}")),
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
