//! Micro-benchmarks of the sandbox (criterion): what one stage call costs per event on top of
//! the same code run natively, what replacing a trapped instance and loading a plugin cost,
//! and what fuel, the epoch deadline and Cranelift's settings cost.
//!
//! ```text
//! cargo bench --bench micro [-- FILTER]
//! ```
//!
//! - `call-256/<plugin>-weir`: one `process` call on a weir [`Instance`] (default limits:
//!   fuel and deadline on) with a batch of 256 W1 events (100-byte values); `<plugin>-native`
//!   is the same packed batch through `weir_plugin::native::process` on the plugin's own
//!   type, the code the component runs, compiled natively. Their difference over 256 is the
//!   sandbox's overhead per event per stage (target: at most 100 ns). `fixture-v01-upper`
//!   is an uppercase plugin on the 0.1 contract; its native counterpart is `uppercase`.
//!   `call-<n>/passthrough-*` repeat the pair at other batch sizes, to split the cost per
//!   call from the cost per event.
//! - `instance/*`: a new instance and its `init`; the trapping call plus its replacement.
//! - `load/*`: compiling a plugin against mapping it from the compile cache.
//! - `engine/<plugin>-<settings>`: the same call on bare wasmtime engines that differ from
//!   weir's in one setting each: fuel, epoch interruption, Cranelift's optimisation level
//!   and register allocator. weir's engine always counts fuel, so its cost only shows
//!   against an engine built without it.
//!
//! Every output is checked once before it is timed: weir's output of each call equals the
//! native output, value for value. After the criterion runs, a table of the per-event
//! figures is printed from criterion's estimates (the median of the samples).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use weir::sandbox::{CompileCache, Events, Instance, Limits, Output, Plugin, Sandbox};
use weir_plugin::{Batch, Transform, native};

/// The batch size of the overhead target.
const BATCH: usize = 256;
/// The plugins whose calls are compared with native code, with the native type's name.
const CALLS: [(&str, &str); 3] = [
    ("passthrough", "passthrough"),
    ("uppercase", "uppercase"),
    ("fixture-v01-upper", "uppercase"),
];

/// W1's events `0..n`: 100-byte values, nothing else.
fn w1_batch(n: usize) -> Events {
    let mut events = Events::new();
    for i in 0..n as u64 {
        let value: Vec<u8> = (0..100u64).map(|j| b'a' + ((i + j) % 26) as u8).collect();
        events.push_value(&value);
    }
    events
}

/// The first `n` lines of the W3 log.
fn w3_batch(n: usize) -> Events {
    let log = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/auth-log/data/OpenSSH_2k.log"),
    )
    .expect("the W3 log");
    let mut events = Events::new();
    for line in log.split(|&b| b == b'\n').take(n) {
        events.push_value(line.strip_suffix(b"\r").unwrap_or(line));
    }
    events
}

fn sdk_batch(events: &Events) -> Batch {
    Batch {
        data: events.data.clone(),
        events: events.events.clone(),
        headers: events.headers.clone(),
        timestamps: events.timestamps.clone(),
    }
}

fn load(sandbox: &Sandbox, name: &str) -> Plugin {
    Plugin::load_with(sandbox, &weir_test_plugins::plugin(name), None).expect("plugin")
}

fn instance(sandbox: &Sandbox, plugin: &Plugin) -> Instance {
    let stage = Arc::from("bench");
    Instance::new(
        sandbox,
        plugin,
        &stage,
        Limits::default(),
        &Default::default(),
        &[],
    )
    .expect("instance")
}

/// The values of a call's outputs, in order; every input must have become one output.
fn values(output: &Output, inputs: usize) -> Vec<Vec<u8>> {
    assert!(output.failures.is_empty(), "no input fails");
    assert!(
        output.ranges(inputs).all(|r| r.len() == 1),
        "one output per input"
    );
    output.events.iter().map(|e| e.value().to_vec()).collect()
}

/// A plugin type's native `process`, as a closure over a batch.
type NativeCall = Box<dyn FnMut(&Batch) -> weir_plugin::Output>;

fn native_call(name: &str) -> NativeCall {
    fn make<T: Transform>() -> NativeCall {
        let mut stage: T = native::init(Default::default()).expect("init");
        Box::new(move |batch| native::process(&mut stage, batch))
    }
    match name {
        "passthrough" => make::<passthrough::Passthrough>(),
        "uppercase" => make::<uppercase::Uppercase>(),
        "sshd-parse" => make::<sshd_parse::SshdParse>(),
        other => panic!("no native stage for {other}"),
    }
}

/// Checks once that a weir instance and the native type give the same values for `events`.
fn check_same(weir: &mut Instance, native: &mut NativeCall, events: &Events) {
    let ours = weir.process(events).expect("process");
    let theirs = native(&sdk_batch(events));
    let native_values: Vec<Vec<u8>> = theirs.events.iter().map(|e| e.value().to_vec()).collect();
    assert_eq!(
        values(&ours, events.len()),
        native_values,
        "weir and native agree"
    );
}

/// One call at a batch size, weir and native, for each plugin of `CALLS`.
fn calls(c: &mut Criterion) {
    let sandbox = Sandbox::new().expect("sandbox");
    let mut pairs: Vec<(usize, &str, &str)> = CALLS.iter().map(|&(p, n)| (BATCH, p, n)).collect();
    pairs.extend([16, 1024].map(|n| (n, "passthrough", "passthrough")));
    for (n, plugin, native_name) in pairs {
        let events = w1_batch(n);
        let batch = sdk_batch(&events);
        let mut weir = instance(&sandbox, &load(&sandbox, plugin));
        let mut native = native_call(native_name);
        check_same(&mut weir, &mut native, &events);
        let mut group = c.benchmark_group(format!("call-{n}"));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{plugin}-weir"), |b| {
            b.iter(|| weir.process(&events).expect("process"))
        });
        group.bench_function(format!("{plugin}-native"), |b| b.iter(|| native(&batch)));
        group.finish();
    }
}

fn instances(c: &mut Criterion) {
    let sandbox = Sandbox::new().expect("sandbox");
    let mut group = c.benchmark_group("instance");
    for name in ["passthrough", "sshd-parse"] {
        let plugin = load(&sandbox, name);
        group.bench_function(format!("new-{name}"), |b| {
            b.iter(|| instance(&sandbox, &plugin))
        });
    }
    // What a worker pays when a call traps: dropping the poisoned instance and making (and
    // initialising) its replacement; then the same with the trapping call itself.
    let plugin = load(&sandbox, "fixture-poison");
    let mut poison = Events::new();
    poison.push_value(b"poison");
    assert!(
        instance(&sandbox, &plugin).process(&poison).is_err(),
        "it traps"
    );
    group.bench_function("replace-after-trap", |b| {
        b.iter_batched(
            || {
                let mut trapped = instance(&sandbox, &plugin);
                assert!(trapped.process(&poison).is_err());
                trapped
            },
            |trapped| {
                drop(trapped);
                instance(&sandbox, &plugin)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("trap-and-replace", |b| {
        b.iter_batched(
            || instance(&sandbox, &plugin),
            |mut trapped| {
                assert!(trapped.process(&poison).is_err());
                drop(trapped);
                instance(&sandbox, &plugin)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn loads(c: &mut Criterion) {
    let sandbox = Sandbox::new().expect("sandbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = CompileCache::at(dir.path());
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for name in ["passthrough", "sshd-parse"] {
        let path = weir_test_plugins::plugin(name);
        group.bench_function(format!("compile-{name}"), |b| {
            b.iter(|| Plugin::load_with(&sandbox, &path, None).expect("compile"))
        });
        // Fill the cache, then time loads that map the compiled file.
        Plugin::load_with(&sandbox, &path, Some(&cache)).expect("fill");
        group.bench_function(format!("cached-{name}"), |b| {
            b.iter(|| Plugin::load_with(&sandbox, &path, Some(&cache)).expect("cached"))
        });
    }
    group.finish();
}

#[path = "micro/bare.rs"]
mod bare;
#[path = "micro/summary.rs"]
mod summary;

/// The same call on engines that differ from weir's in one setting each.
fn engines(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(BATCH as u64));
    for plugin in ["passthrough", "uppercase", "sshd-parse"] {
        // Leaked once: a stored typed function takes a `'static` batch.
        let events: &'static Events = Box::leak(Box::new(match plugin {
            "sshd-parse" => w3_batch(BATCH),
            _ => w1_batch(BATCH),
        }));
        let mut native = native_call(plugin);
        let expected: Vec<Vec<u8>> = native(&sdk_batch(events))
            .events
            .iter()
            .map(|e| e.value().to_vec())
            .collect();
        for settings in bare::Settings::ALL {
            let path = weir_test_plugins::plugin(plugin);
            let mut bare = bare::Bare::new(&path, settings).expect("bare engine");
            assert_eq!(
                values(&bare.call(events), BATCH),
                expected,
                "{plugin} {settings:?}"
            );
            group.bench_function(format!("{plugin}-{}", settings.name()), |b| {
                b.iter(|| bare.call(events))
            });
        }
        // The same logic natively, and on weir's own engine, for scale.
        let batch = sdk_batch(events);
        group.bench_function(format!("{plugin}-native"), |b| b.iter(|| native(&batch)));
        let sandbox = Sandbox::new().expect("sandbox");
        let mut weir = instance(&sandbox, &load(&sandbox, plugin));
        group.bench_function(format!("{plugin}-weir"), |b| {
            b.iter(|| weir.process(events).expect("process"))
        });
    }
    group.finish();
}

/// Where criterion keeps its estimates, read back for the summary.
fn criterion_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .output_directory(&criterion_dir())
        .configure_from_args();
    calls(&mut c);
    instances(&mut c);
    loads(&mut c);
    engines(&mut c);
    c.final_summary();
    summary::print(&criterion_dir(), BATCH, &CALLS);
}
