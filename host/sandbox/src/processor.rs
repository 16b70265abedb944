//! What runs a stage's batches: [`Processor`] (one instance) and [`ProcessorFactory`] (one
//! version, which makes instances), with [`WasmStage`], the factory backed by a plugin.
//!
//! The data plane only sees these two traits, so native code (the benchmarks' baseline) and
//! sandboxed plugins run through the same worker.

use std::sync::Arc;

use crate::contract::Output;
use crate::engine::Sandbox;
use crate::events::Events;
use crate::host::LogQuota;
use crate::instance::Instance;
use crate::keyed::{KeyedState, TimerEntry};
use crate::limits::{Grant, Limits};
use crate::plugin::Plugin;
use crate::store::Trapped;

/// Runs batches: a sandboxed plugin instance, or native code.
pub trait Processor: Send {
    /// Runs one batch; the output is checked against the contract. On `Err` whose kind
    /// [poisons](crate::TrapKind::poisons) it, the processor is dropped and a fresh one made.
    fn process(&mut self, input: &Events) -> Result<Output, Trapped>;

    /// Sets the watermarks the events of the next [`Processor::process`] call saw, one per
    /// event (empty: the stage has no event time). Native code ignores them.
    fn set_watermarks(&mut self, _watermarks: &[u64]) {}

    /// Hands fired timers to the stage and returns the events they became; native code sets
    /// no timers and returns none.
    fn on_timer(&mut self, _fired: &[TimerEntry]) -> Result<Events, Trapped> {
        Ok(Events::new())
    }

    /// Fuel the last call burned; 0 for native code.
    fn last_fuel(&self) -> u64 {
        0
    }

    /// Header references with a reserved (`weir.`) name removed from the last call's
    /// output; 0 for native code.
    fn last_stripped(&self) -> u64 {
        0
    }

    /// State writes a limit refused in the last call; 0 for native code.
    fn last_state_refusals(&self) -> u64 {
        0
    }

    /// Linear memory the processor holds, in bytes; 0 for native code.
    fn memory(&self) -> usize {
        0
    }

    /// Whether it should be replaced before its next call (its memory nears its cap).
    fn wants_recycling(&self) -> bool {
        false
    }
}

/// Makes a stage's processors: one per worker at start, and a fresh one after each trap.
/// One factory is one version of the stage.
pub trait ProcessorFactory: Send + Sync {
    fn make(&self) -> Result<Box<dyn Processor>, Trapped>;
    /// The version's identity (a plugin's sha256), written into dead letters.
    fn digest(&self) -> &str;
    /// Whether the version's processors can set timers (a plugin that imports `time`): only
    /// then does the host look for timers to fire.
    fn keeps_time(&self) -> bool {
        false
    }
}

impl Processor for Instance {
    fn process(&mut self, input: &Events) -> Result<Output, Trapped> {
        Instance::process(self, input)
    }

    fn set_watermarks(&mut self, watermarks: &[u64]) {
        Instance::set_watermarks(self, watermarks)
    }

    fn on_timer(&mut self, fired: &[TimerEntry]) -> Result<Events, Trapped> {
        Instance::on_timer(self, fired)
    }

    fn last_fuel(&self) -> u64 {
        Instance::last_fuel(self)
    }

    fn last_stripped(&self) -> u64 {
        Instance::last_stripped(self)
    }

    fn last_state_refusals(&self) -> u64 {
        Instance::last_state_refusals(self)
    }

    fn memory(&self) -> usize {
        Instance::memory(self)
    }

    fn wants_recycling(&self) -> bool {
        Instance::wants_recycling(self)
    }
}

/// One version of a stage backed by a plugin: it makes the stage's instances, each with the
/// stage's limits, grants and settings.
pub struct WasmStage {
    pub sandbox: Arc<Sandbox>,
    pub plugin: Arc<Plugin>,
    pub stage: Arc<str>,
    pub limits: Limits,
    pub grant: Grant,
    pub settings: Vec<(String, String)>,
    /// The stage's log quota, shared by its instances (and its versions).
    pub log: Arc<LogQuota>,
    /// The stage's keyed state, shared by its instances and its versions, when the plugin
    /// imports `state`.
    pub state: Option<Arc<dyn KeyedState>>,
}

impl ProcessorFactory for WasmStage {
    fn make(&self) -> Result<Box<dyn Processor>, Trapped> {
        let instance = Instance::with_state(
            &self.sandbox,
            &self.plugin,
            &self.stage,
            self.limits,
            &self.grant,
            &self.settings,
            Arc::clone(&self.log),
            self.state.clone(),
        )?;
        Ok(Box::new(instance))
    }

    fn digest(&self) -> &str {
        &self.plugin.digest
    }

    fn keeps_time(&self) -> bool {
        self.plugin.uses_time()
    }
}
