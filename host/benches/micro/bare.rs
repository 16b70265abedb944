//! Bare wasmtime engines, each differing from weir's engine in one setting, to see what that
//! setting costs or saves on a call: fuel, epoch interruption, Cranelift's optimisation level
//! and its register allocator. Instances are made on demand (no pooling): the pool only
//! changes how instances are made, not how a call runs.

use wasmtime::component::{Component, Linker, ResourceTable, TypedFunc};
use wasmtime::{Config, Engine, OptLevel, RegallocAlgorithm, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use weir::sandbox::{Events, Output};

/// One engine's settings; weir's are fuel and deadline on, `Speed`, backtracking.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    fuel: bool,
    epochs: bool,
    opt: OptLevel,
    single_pass: bool,
    name: &'static str,
}

impl Settings {
    const WEIR: Settings = Settings {
        fuel: true,
        epochs: true,
        opt: OptLevel::Speed,
        single_pass: false,
        name: "fuel+deadline",
    };

    pub const ALL: [Settings; 7] = [
        Settings::WEIR,
        Settings {
            fuel: false,
            epochs: false,
            name: "neither",
            ..Settings::WEIR
        },
        Settings {
            epochs: false,
            name: "fuel",
            ..Settings::WEIR
        },
        Settings {
            fuel: false,
            name: "deadline",
            ..Settings::WEIR
        },
        Settings {
            opt: OptLevel::None,
            name: "opt-none",
            ..Settings::WEIR
        },
        Settings {
            opt: OptLevel::SpeedAndSize,
            name: "opt-speed-and-size",
            ..Settings::WEIR
        },
        Settings {
            single_pass: true,
            name: "regalloc-single-pass",
            ..Settings::WEIR
        },
    ];

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn config(&self) -> Config {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(self.fuel);
        config.epoch_interruption(self.epochs);
        config.max_wasm_stack(1 << 20);
        config.cranelift_opt_level(self.opt);
        if self.single_pass {
            config.cranelift_regalloc_algorithm(RegallocAlgorithm::SinglePass);
        }
        config
    }
}

pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// An initialised instance of a 0.2 plugin on an engine of its own.
pub struct Bare {
    store: Store<State>,
    process: TypedFunc<(&'static Events,), (Output,)>,
    settings: Settings,
}

impl Bare {
    pub fn new(path: &std::path::Path, settings: Settings) -> wasmtime::Result<Bare> {
        let engine = Engine::new(&settings.config())?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        linker
            .instance("weir:stage/log@0.2.0")?
            .func_new("log", |_, _, _, _| Ok(()))?;
        let component = Component::from_file(&engine, path)?;
        let state = State {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&engine, state);
        arm(&mut store, settings);
        let instance = linker.instantiate(&mut store, &component)?;
        let init = instance
            .get_typed_func::<(&[(String, String)],), (Result<(), String>,)>(&mut store, "init")?;
        init.call(&mut store, (&[],))?
            .0
            .map_err(wasmtime::Error::msg)?;
        let process = instance.get_typed_func(&mut store, "process")?;
        Ok(Bare {
            store,
            process,
            settings,
        })
    }

    /// One call, armed as weir arms one: fuel and deadline set before it.
    pub fn call(&mut self, batch: &'static Events) -> Output {
        arm(&mut self.store, self.settings);
        self.process
            .call(&mut self.store, (batch,))
            .expect("process")
            .0
    }
}

fn arm(store: &mut Store<State>, settings: Settings) {
    if settings.fuel {
        store.set_fuel(u64::MAX / 2).expect("fuel is on");
    }
    if settings.epochs {
        store.set_epoch_deadline(1 << 40);
    }
}
