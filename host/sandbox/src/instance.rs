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

use wasmtime::Store;

use crate::contract::{self, Output, v01, v02, v03};
use crate::cost::{self, Breach};
use crate::engine::Sandbox;
use crate::events::Events;
use crate::host::{HostState, LogQuota};
use crate::keyed::{KeyedState, TimerEntry};
use crate::limits::{Grant, Limits};
use crate::plugin::{Plugin, Pre};
use crate::store::{INIT_FUEL_EVENTS, TrapKind, Trapped, arm, drive, new_store, stopped};
use crate::text::{MAX_GUEST_TEXT, guest_text, needs_escape};
use crate::timers;

enum Bindings {
    V01(v01::Stage),
    V02(v02::Stage),
    V03(v03::Stage),
}

/// A live instance of a stage's plugin.
pub struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
    limits: Limits,
    deadline_ticks: u64,
    /// Fuel the last call burned.
    last_fuel: u64,
    /// Reserved header references removed from the last call's output.
    last_stripped: u64,
    /// State writes a limit refused in the last call.
    last_refusals: u64,
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
        Instance::with_state(
            sandbox,
            plugin,
            stage,
            limits,
            grant,
            settings,
            LogQuota::new(),
            None,
        )
    }

    /// Like [`Instance::new`], writing its log lines under `quota`, which the stage's other
    /// instances share, and with the stage's keyed state, which a plugin that imports `state`
    /// reads and writes in `process` (`init` has none).
    #[allow(clippy::too_many_arguments)]
    pub fn with_state(
        sandbox: &Sandbox,
        plugin: &Plugin,
        stage: &Arc<str>,
        limits: Limits,
        grant: &Grant,
        settings: &[(String, String)],
        quota: Arc<LogQuota>,
        state: Option<Arc<dyn KeyedState>>,
    ) -> Result<Instance, Trapped> {
        let init_failed = |message: String| Trapped {
            kind: TrapKind::InitFailed,
            message,
        };
        let mut store = new_store(sandbox, stage, limits, grant, quota).map_err(init_failed)?;
        let deadline_ticks = Sandbox::deadline_ticks(limits.timeout);
        arm(
            &mut store,
            limits.fuel.saturating_mul(INIT_FUEL_EVENTS),
            deadline_ticks,
        );
        let instantiated = drive(limits.timeout, async {
            match plugin.pre() {
                Pre::V01(pre) => pre.instantiate_async(&mut store).await.map(Bindings::V01),
                Pre::V02(pre) => pre.instantiate_async(&mut store).await.map(Bindings::V02),
                Pre::V03(pre) => pre.instantiate_async(&mut store).await.map(Bindings::V03),
            }
        });
        let bindings = instantiated.map_err(|stop| {
            init_failed(format!(
                "cannot instantiate: {}",
                stopped(&store, stop).message
            ))
        })?;
        let result = drive(limits.timeout, async {
            match &bindings {
                Bindings::V01(b) => b.call_init(&mut store, settings).await,
                Bindings::V02(b) => b.call_init(&mut store, settings).await,
                Bindings::V03(b) => b.call_init(&mut store, settings).await,
            }
        });

        // Only now: `init` runs without state, so an instance made beside a running one (a
        // version tried before a swap) cannot touch the call in progress.
        store.data_mut().state = state;
        match result {
            Ok(Ok(())) => Ok(Instance {
                store,
                bindings,
                limits,
                deadline_ticks,
                last_fuel: 0,
                last_stripped: 0,
                last_refusals: 0,
            }),
            Ok(Err(reason)) => Err(init_failed(format!(
                "init returned an error: {}",
                guest_text(reason.as_bytes())
            ))),
            Err(stop) => {
                let trapped = stopped(&store, stop);
                Err(init_failed(format!(
                    "init trapped ({}): {}",
                    trapped.kind.as_str(),
                    trapped.message
                )))
            }
        }
    }

    /// Runs one batch, charges its output ([`cost::charge`]: refused as `output-cap` over
    /// the stage's `output_bytes`, before anything else is done with it), checks it against
    /// the contract and strips the header references with reserved names. On `Err` the
    /// instance must be dropped when the kind [poisons](TrapKind::poisons) it.
    pub fn process(&mut self, input: &Events) -> Result<Output, Trapped> {
        let fuel = self.limits.fuel.saturating_mul(input.len().max(1) as u64);
        arm(&mut self.store, fuel, self.deadline_ticks);
        let timeout = self.limits.timeout;
        let store = &mut self.store;
        store.data_mut().state_refusals = 0;
        let result = match &self.bindings {
            Bindings::V02(b) => drive(timeout, b.call_process(&mut *store, input)).map(Ok),
            Bindings::V03(b) => drive(timeout, b.call_process(&mut *store, input)).map(Ok),
            Bindings::V01(b) => {
                let events = contract::to_v01(input);
                drive(timeout, b.call_process(&mut *store, &events)).map(|outcomes| {
                    if outcomes.len() == input.len() {
                        Ok(contract::from_v01(outcomes))
                    } else {
                        Err(outcomes.len())
                    }
                })
            }
        };
        self.last_fuel = fuel.saturating_sub(self.store.get_fuel().unwrap_or(0));
        self.last_refusals = self.store.data().state_refusals;
        let accepted = match result {
            Ok(Ok(output)) => accept_output(output, input.len(), self.limits.output_bytes),
            Ok(Err(outcomes)) => Err(wrong_count(outcomes, input.len())),
            Err(stop) => Err(stopped(&self.store, stop)),
        };
        // The call's state writes land only with an output the host accepts.
        if let Some(state) = &self.store.data().state {
            match &accepted {
                Ok(_) => state.commit(),
                Err(_) => state.discard(),
            }
        }
        let (output, stripped) = accepted?;
        self.last_stripped = stripped;
        Ok(output)
    }

    /// Sets the watermarks the events of the next `process` call saw (one per event, or none
    /// when the stage has no event time); the guest reads them with `time.watermarks`.
    pub fn set_watermarks(&mut self, watermarks: &[u64]) {
        let held = &mut self.store.data_mut().watermarks;
        held.clear();
        held.extend_from_slice(watermarks);
    }

    /// Hands fired timers to the plugin's `on-timer` and returns the events they became,
    /// charged and checked as a `process` output is, with fuel for as many events as timers.
    /// A plugin of 0.1 or 0.2 has no timers: it returns nothing. On `Err` the instance must be
    /// dropped when the kind [poisons](TrapKind::poisons) it; the call's state writes are
    /// dropped.
    pub fn on_timer(&mut self, fired: &[TimerEntry]) -> Result<Events, Trapped> {
        let Bindings::V03(bindings) = &self.bindings else {
            return Ok(Events::new());
        };
        let fuel = self.limits.fuel.saturating_mul(fired.len().max(1) as u64);
        arm(&mut self.store, fuel, self.deadline_ticks);
        let store = &mut self.store;
        store.data_mut().state_refusals = 0;
        store.data_mut().watermarks.clear();
        let timers: Vec<_> = fired.iter().map(timers::guest).collect();
        let result = drive(
            self.limits.timeout,
            bindings.call_on_timer(&mut *store, &timers),
        );
        self.last_fuel = fuel.saturating_sub(self.store.get_fuel().unwrap_or(0));
        self.last_refusals = self.store.data().state_refusals;
        let accepted = match result {
            Ok(events) => {
                let n = events.len();
                let output = Output {
                    events,
                    counts: Vec::new(),
                    failures: Vec::new(),
                };
                accept_output(output, n, self.limits.output_bytes)
            }
            Err(stop) => Err(stopped(&self.store, stop)),
        };
        if let Some(state) = &self.store.data().state {
            match &accepted {
                Ok(_) => state.commit(),
                Err(_) => state.discard(),
            }
        }
        let (output, stripped) = accepted?;
        self.last_stripped = stripped;
        Ok(output.events)
    }

    /// Header references with a reserved (`weir.`) name the last call's output made, which
    /// the host removed.
    pub fn last_stripped(&self) -> u64 {
        self.last_stripped
    }

    /// State writes a limit refused in the last call: a failure it reports as `state-limit`
    /// is believed only when this is not 0.
    pub fn last_state_refusals(&self) -> u64 {
        self.last_refusals
    }

    /// The largest linear memory this instance has grown to, in bytes.
    pub fn memory(&self) -> usize {
        self.store.data().limiter.peak
    }

    /// Whether the instance should be replaced before its next call: its memory has grown past
    /// three quarters of its cap. Some guests (CPython, a JavaScript engine) grow a little on
    /// every call and never give memory back; replacing them between calls costs a fresh
    /// instance, where reaching the cap would cost a trap and the re-run of a batch.
    pub fn wants_recycling(&self) -> bool {
        let cap = usize::try_from(self.limits.memory).unwrap_or(usize::MAX);
        self.memory() > cap / 4 * 3
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

/// Bytes of an output's buffer that no event references which the host passes on as they
/// are. The charge counts what the events reference, not the buffer, so a plugin could
/// return a 60 MiB buffer under one 10-byte event, well within its `max_output_bytes`, and
/// every later step would carry it: the next stage's call copies the whole buffer into that
/// plugin's memory (and may fail it at its memory cap, in place of the plugin that made
/// it). A buffer longer than its charge and this is copied into one of what its events
/// reference.
const UNREFERENCED_SLACK: u64 = 4096;

/// What the host does with a plugin's output before anything else sees it, in this order:
/// charges it against `output_bytes` ([`cost::charge`]: refused as `output-cap` over it,
/// before any other work on it), checks it against the contract for a call of `inputs`
/// events, strips the header references with reserved names, leaves a buffer that is mostly
/// unreferenced behind ([`UNREFERENCED_SLACK`]) and bounds the failures' reasons. Returns
/// the output and the references stripped. [`Instance::process`] calls it; it is public for
/// the property test of guest outputs (`tests/guest_output.rs`).
#[doc(hidden)]
pub fn accept_output(
    mut output: Output,
    inputs: usize,
    output_bytes: u64,
) -> Result<(Output, u64), Trapped> {
    let charge = cost::charge(&output.events, output_bytes).map_err(refused)?;
    check(&output, inputs)?;
    let stripped = if charge.reserved {
        cost::strip_reserved(&mut output.events)
    } else {
        0
    };
    // An honest output's buffer is at most its charge: each byte referenced at least once.
    if output.events.data.len() as u64 > charge.bytes.saturating_add(UNREFERENCED_SLACK) {
        output.events = output.events.compact();
    }
    Ok((bound_reasons(output), stripped))
}

/// Checks an output against the contract; a wrong number of outcomes is told apart from
/// other breaches, as it was in 0.1.
fn check(output: &Output, inputs: usize) -> Result<(), Trapped> {
    if !output.counts.is_empty() && output.counts.len() != inputs {
        return Err(wrong_count(output.counts.len(), inputs));
    }
    output.check_outcomes(inputs).map_err(|message| Trapped {
        kind: TrapKind::Trap,
        message: format!("the plugin's output breaks the contract: {message}"),
    })
}

/// Cuts and escapes the failures' reasons, once per call: each may be copied into many dead
/// letters and log lines.
fn bound_reasons(mut output: Output) -> Output {
    for failure in &mut output.failures {
        if failure.reason.len() > MAX_GUEST_TEXT || failure.reason.chars().any(needs_escape) {
            failure.reason = guest_text(failure.reason.as_bytes());
        }
    }
    output
}

/// An output the cost model refused, before the host did anything else with it.
fn refused(breach: Breach) -> Trapped {
    match breach {
        Breach::Malformed(message) => Trapped {
            kind: TrapKind::Trap,
            message: format!("the plugin's output breaks the contract: {message}"),
        },
        Breach::OverCap(message) => Trapped {
            kind: TrapKind::OutputCap,
            message,
        },
    }
}

fn wrong_count(outcomes: usize, inputs: usize) -> Trapped {
    Trapped {
        kind: TrapKind::WrongOutcomeCount,
        message: format!("the plugin returned {outcomes} outcomes for {inputs} events"),
    }
}
