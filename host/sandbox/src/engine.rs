//! The engine: the one place that owns wasmtime's settings.
//!
//! [`Sandbox`] holds the engine (compiler, fuel, epochs, pooling allocator) and the linker that
//! provides a plugin's imports: the `weir:stage/log` interface of every contract version,
//! 0.3's `state` (`crate::state`) and WASI with nothing granted. A background thread advances the engine's epoch every
//! [`EPOCH_TICK`], which is how a call's wall-clock deadline is enforced.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::contract::v02::weir::stage::log::{Host as LogHost, Level};
use crate::contract::{v01, v02};
use crate::host::HostState;
use crate::{state, timers};

/// How often the epoch advances, and so the resolution of every deadline. A tick is one
/// atomic increment; 5 ms keeps the ticker's cost negligible while a deadline overshoots by
/// at most one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Native stack a guest's wasm frames may use. Blocks unbounded recursion from overflowing
/// the host thread's stack; the guest gets a `stack-overflow` trap instead.
const MAX_WASM_STACK: usize = 1 << 20;

/// Live component instances across the whole process. Each worker of each stage holds one
/// (and briefly two while it replaces a trapped one); the pool's slots are reserved up
/// front, so this bounds what a pipeline file can make the host reserve.
const MAX_INSTANCES: u32 = 1_000;

/// The largest linear memory any stage may be granted (a stage's own cap is lower and is
/// enforced by its store's limiter). A 32-bit guest cannot address more.
const MAX_MEMORY: usize = 4 << 30;

/// Owns the engine and the linker every plugin is checked against.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<HostState>,
    ticker_stop: Arc<AtomicBool>,
}

impl Sandbox {
    /// Builds the engine with weir's settings and starts the epoch ticker.
    pub fn new() -> Result<Arc<Sandbox>, wasmtime::Error> {
        let engine = Engine::new(&Self::config())?;
        let mut linker = Linker::new(&engine);
        // WASI is linked because ordinary guests (Rust's std among them) import it; the
        // context each store gets grants nothing (see `host`).
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        v01::weir::stage::log::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        v02::weir::stage::log::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        // 0.3's `log` is 0.2's under the newer version: the same funnel.
        linker.instance("weir:stage/log@0.3.0")?.func_wrap(
            "log",
            |mut store: wasmtime::StoreContextMut<'_, HostState>,
             (level, message): (Level, String)| {
                LogHost::log(store.data_mut(), level, message);
                Ok(())
            },
        )?;
        state::link(&mut linker)?;
        timers::link(&mut linker)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&ticker_stop);
        let ticking = engine.clone();
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| wasmtime::format_err!("cannot start the epoch thread: {e}"))?;

        Ok(Arc::new(Sandbox {
            engine,
            linker,
            ticker_stop,
        }))
    }

    fn config() -> Config {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Fuel bounds the CPU a call may burn, counted in instructions: deterministic, so a
        // plugin cannot starve the others on a busy machine.
        config.consume_fuel(true);
        // Epochs bound wall-clock time per call, which fuel cannot: host calls that block.
        config.epoch_interruption(true);
        config.max_wasm_stack(MAX_WASM_STACK);
        config.cranelift_opt_level(OptLevel::Speed);
        // `WEIR_PERF_MAP=1` has wasmtime write `/tmp/perf-PID.map`, so that `perf` names the
        // plugins' compiled functions in a profile (docs/perf/README.md). Off by default: the
        // map only grows, with every module the process loads.
        if std::env::var_os("WEIR_PERF_MAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }

        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(MAX_INSTANCES);
        // Components from other toolchains carry many core modules: CPython built with its
        // WASI imports stubbed out has 38.
        pool.max_core_instances_per_component(64);
        pool.max_memories_per_component(8);
        pool.max_tables_per_component(16);
        pool.total_core_instances(MAX_INSTANCES * 8);
        pool.total_memories(MAX_INSTANCES * 2);
        pool.total_tables(MAX_INSTANCES * 4);
        pool.max_memory_size(MAX_MEMORY);
        // Room for the tables the limiter allows; the limiter refuses growth past it.
        pool.table_elements(crate::host::MAX_TABLE_ELEMENTS);
        // Where the kernel can list the pages a guest dirtied (PAGEMAP_SCAN, Linux 6.7), a
        // freed slot keeps its low memory resident and only those pages are reset: no madvise
        // and no page faults when the next instance takes the slot. That is most of the cost
        // of replacing an instance after a trap (31 µs down to 9 µs, BENCHMARKS.md); the price
        // is at most this much resident memory per slot ever used. Without the scan the whole
        // kept region would be zeroed on every free, which costs more than it saves.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.linear_memory_keep_resident(1 << 20);
            pool.table_keep_resident(64 << 10);
            pool.pagemap_scan(wasmtime::Enabled::Yes);
        }
        // Slots are reused warm: a fresh instance after a trap costs microseconds.
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        config
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// Epoch ticks for a deadline: rounded up, plus one because the current tick is partly gone.
    pub fn deadline_ticks(timeout: Duration) -> u64 {
        (timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64).max(1) + 1
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
