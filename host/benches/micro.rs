//! Criterion micro-benchmarks of the sandbox: one `process` call per batch size, making an
//! instance (and replacing one after a trap), compiling a plugin against loading its cached
//! artifact, and the cost of fuel and of the epoch deadline.
//!
//! ```text
//! cargo bench --bench micro [-- FILTER]
//! ```
//!
//! `process/weir/N` is a call on a weir [`Instance`] of the `passthrough` plugin with a batch
//! of N W1 events (100-byte values); `process/native/N` is the same batch through the plugin
//! crate called directly, with the same owned copy in, so their difference per event is the
//! sandbox's overhead. `limits/*` calls the same component through bare wasmtime engines that
//! differ from weir's only in fuel and epoch interruption being on or off; weir's engine
//! always counts fuel, so its cost can only be seen against an engine built without it.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use weir::config::Limits;
use weir::plugins::{CompileCache, Plugin};
use weir::sandbox::{Event, Instance, Outcome, Sandbox};
use weir_plugin::Stage;

const BATCH_SIZES: [usize; 4] = [1, 16, 256, 1024];

/// W1's events `0..n`.
fn events(n: usize) -> Vec<Event> {
    (0..n as u64)
        .map(|i| Event {
            key: None,
            value: (0..100u64).map(|j| b'a' + ((i + j) % 26) as u8).collect(),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect()
}

fn instance(sandbox: &Sandbox, plugin: &Plugin, limits: Limits) -> Instance {
    Instance::new(
        sandbox,
        plugin,
        &Arc::from("bench"),
        limits,
        &Default::default(),
        &[],
    )
    .expect("instance")
}

fn load(sandbox: &Sandbox, name: &str) -> Plugin {
    Plugin::load_with(sandbox, &weir_test_plugins::plugin(name), None).expect("plugin")
}

fn process(c: &mut Criterion) {
    let sandbox = Sandbox::new().expect("sandbox");
    let plugin = load(&sandbox, "passthrough");
    let mut weir = instance(&sandbox, &plugin, Limits::default());
    let mut native = passthrough::Passthrough::init(&Default::default()).expect("init");
    let mut group = c.benchmark_group("process");
    for n in BATCH_SIZES {
        let batch = events(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("weir/{n}"), |b| {
            b.iter(|| weir.process(&batch).expect("process"))
        });
        group.bench_function(format!("native/{n}"), |b| {
            b.iter(|| {
                let copy = batch
                    .iter()
                    .map(|e| weir_plugin::Event::new(e.value.clone()))
                    .collect();
                native.process_batch(copy)
            })
        });
    }
    group.finish();
}

fn instances(c: &mut Criterion) {
    let sandbox = Sandbox::new().expect("sandbox");
    let mut group = c.benchmark_group("instance");
    for name in ["passthrough", "sshd-parse"] {
        let plugin = load(&sandbox, name);
        group.bench_function(format!("new/{name}"), |b| {
            b.iter(|| instance(&sandbox, &plugin, Limits::default()))
        });
    }
    // What a worker pays when a call traps: the trapping call, dropping the poisoned instance,
    // and making (instantiate + init) its replacement.
    let plugin = load(&sandbox, "fixture-poison");
    let poison = vec![Event {
        key: None,
        value: b"poison".to_vec(),
        headers: Vec::new(),
        timestamp: None,
    }];
    group.bench_function("trap-and-replace/fixture-poison", |b| {
        b.iter_batched(
            || instance(&sandbox, &plugin, Limits::default()),
            |mut trapped| {
                assert!(trapped.process(&poison).is_err());
                drop(trapped);
                instance(&sandbox, &plugin, Limits::default())
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("replace-after-trap/fixture-poison", |b| {
        b.iter_batched(
            || {
                let mut trapped = instance(&sandbox, &plugin, Limits::default());
                assert!(trapped.process(&poison).is_err());
                trapped
            },
            |trapped| {
                drop(trapped);
                instance(&sandbox, &plugin, Limits::default())
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn compile_cache(c: &mut Criterion) {
    let sandbox = Sandbox::new().expect("sandbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = CompileCache::at(dir.path());
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for name in ["passthrough", "sshd-parse"] {
        let path = weir_test_plugins::plugin(name);
        group.bench_function(format!("compile/{name}"), |b| {
            b.iter(|| Plugin::load_with(&sandbox, &path, None).expect("compile"))
        });
        // Fill the cache, then measure loads that map the artifact.
        Plugin::load_with(&sandbox, &path, Some(&cache)).expect("fill");
        group.bench_function(format!("cached/{name}"), |b| {
            b.iter(|| Plugin::load_with(&sandbox, &path, Some(&cache)).expect("cached"))
        });
    }
    group.finish();
}

/// Bare wasmtime engines, to see what fuel and epochs cost.
mod bare {
    use wasmtime::component::{Component, Linker, ResourceTable, TypedFunc};
    use wasmtime::{Config, Engine, OptLevel, Store};
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

    use super::{Event, Outcome};

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

    /// A store with an initialised instance of the component at `path`, compiled by an
    /// engine with weir's code generation settings and the given fuel and epoch switches.
    pub struct Bare {
        pub store: Store<State>,
        pub process: TypedFunc<(&'static [Event],), (Vec<Outcome>,)>,
        fuel: bool,
        epochs: bool,
    }

    impl Bare {
        pub fn new(path: &std::path::Path, fuel: bool, epochs: bool) -> wasmtime::Result<Bare> {
            let mut config = Config::new();
            config.wasm_component_model(true);
            config.consume_fuel(fuel);
            config.epoch_interruption(epochs);
            config.max_wasm_stack(1 << 20);
            config.cranelift_opt_level(OptLevel::Speed);
            let engine = Engine::new(&config)?;
            let mut linker = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
            linker
                .instance("weir:stage/log@0.1.0")?
                .func_new("log", |_, _, _, _| Ok(()))?;
            let component = Component::from_file(&engine, path)?;
            let mut store = Store::new(
                &engine,
                State {
                    wasi: WasiCtx::builder().build(),
                    table: ResourceTable::new(),
                },
            );
            let mut bare = Bare {
                process: {
                    arm(&mut store, fuel, epochs);
                    let instance = linker.instantiate(&mut store, &component)?;
                    let init = instance
                        .get_typed_func::<(Vec<(String, String)>,), (Result<(), String>,)>(
                            &mut store, "init",
                        )?;
                    init.call(&mut store, (Vec::new(),))?
                        .0
                        .map_err(wasmtime::Error::msg)?;
                    instance.get_typed_func(&mut store, "process")?
                },
                store,
                fuel,
                epochs,
            };
            arm(&mut bare.store, fuel, epochs);
            Ok(bare)
        }

        /// One call, armed as weir arms one: fuel set and deadline set before it.
        pub fn call(&mut self, batch: &'static [Event]) -> Vec<Outcome> {
            arm(&mut self.store, self.fuel, self.epochs);
            self.process
                .call(&mut self.store, (batch,))
                .expect("process")
                .0
        }
    }

    fn arm(store: &mut Store<State>, fuel: bool, epochs: bool) {
        if fuel {
            store.set_fuel(u64::MAX / 2).expect("fuel is on");
        }
        if epochs {
            store.set_epoch_deadline(1 << 40);
        }
    }
}

fn limits(c: &mut Criterion) {
    let mut group = c.benchmark_group("limits");
    let n = 256;
    // Leaked once: the typed function of a stored instance takes a `'static` batch.
    let batch: &'static [Event] = Box::leak(events(n).into_boxed_slice());
    let lines: &'static [Event] = Box::leak(w3_lines(n).into_boxed_slice());
    group.throughput(Throughput::Elements(n as u64));
    let sandbox = Sandbox::new().expect("sandbox");
    for plugin in ["passthrough", "uppercase", "sshd-parse"] {
        let path = weir_test_plugins::plugin(plugin);
        let input = if plugin == "sshd-parse" { lines } else { batch };
        // weir's own instance: its engine (fuel and deadline on), limits as by default.
        let mut weir = instance(&sandbox, &load(&sandbox, plugin), Limits::default());
        group.bench_function(format!("{plugin}/weir"), |b| {
            b.iter(|| weir.process(input).expect("process"))
        });
        // The same logic called natively, with the same owned copy of the batch in.
        let mut native = native_stage(plugin);
        group.bench_function(format!("{plugin}/native"), |b| {
            b.iter(|| {
                let copy = input
                    .iter()
                    .map(|e| weir_plugin::Event::new(e.value.clone()))
                    .collect();
                native(copy)
            })
        });
        for (fuel, epochs, name) in [
            (false, false, "neither"),
            (true, false, "fuel"),
            (false, true, "deadline"),
            (true, true, "fuel+deadline"),
        ] {
            let mut bare = bare::Bare::new(&path, fuel, epochs).expect("bare engine");
            group.bench_function(format!("{plugin}/{name}"), |b| b.iter(|| bare.call(input)));
        }
    }
    group.finish();
}

/// A plugin crate's stage, called directly.
fn native_stage(
    plugin: &str,
) -> Box<dyn FnMut(Vec<weir_plugin::Event>) -> Vec<weir_plugin::Outcome>> {
    fn make<S: Stage>() -> Box<dyn FnMut(Vec<weir_plugin::Event>) -> Vec<weir_plugin::Outcome>> {
        let mut stage = S::init(&Default::default()).expect("init");
        Box::new(move |batch| stage.process_batch(batch))
    }
    match plugin {
        "passthrough" => make::<passthrough::Passthrough>(),
        "uppercase" => make::<uppercase::Uppercase>(),
        "sshd-parse" => make::<sshd_parse::SshdParse>(),
        other => panic!("no native stage for {other}"),
    }
}

/// The first `n` lines of the W3 log, as events.
fn w3_lines(n: usize) -> Vec<Event> {
    let log = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/auth-log/data/OpenSSH_2k.log"),
    )
    .expect("the W3 log");
    log.split(|&b| b == b'\n')
        .take(n)
        .map(|l| Event {
            key: None,
            value: l.strip_suffix(b"\r").unwrap_or(l).to_vec(),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect()
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = process, instances, compile_cache, limits
}
criterion_main!(benches);
