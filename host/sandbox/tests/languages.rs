//! Stages written in Python, JavaScript, C and Go, through the real sandbox.
//!
//! The components are built outside cargo, by `sdk/build-examples.sh` (which needs the
//! toolchains of `sdk/toolchains.sh`), into `target/languages/` or `$WEIR_LANG_DIR`:
//! `<lang>-uppercase.wasm` from `sdk/examples/<lang>-uppercase/`, and `<lang>-filter.wasm`
//! and `<lang>-count.wasm` from the `filter` and `count` templates. The uppercase and filter
//! stages must keep no state and no time (their components call none of those functions);
//! the count stage counts in a store kept by the test and emits its final counts from
//! `on-timer`. Every test that needs one is `#[ignore]`d, so that a plain
//! `cargo test` needs no toolchain; run them with
//!
//! ```text
//! sdk/toolchains.sh && sdk/build-examples.sh
//! cargo test --release -p weir-sandbox --test languages -- --ignored --nocapture
//! ```
//!
//! A test run with `--ignored` fails when its component is missing, rather than passing
//! without having checked anything. `throughput` prints events/s and sizes for every
//! language whose component is present, beside the Rust `passthrough` and `uppercase`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_sandbox::{
    CompileCache, ContractVersion, Events, Grant, Instance, KeyedState, Limits, LogQuota, Output,
    Page, Plugin, Refusal, Sandbox, SettingType, TimerClock, TimerEntry,
};

const LANGS: [&str; 4] = ["python", "js", "c", "go"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lang_dir() -> PathBuf {
    std::env::var_os("WEIR_LANG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/languages"))
}

fn component(name: &str) -> PathBuf {
    let path = lang_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "no component at {} (build it with sdk/build-examples.sh)",
        path.display()
    );
    path
}

/// Loads a component, compiled once into a cache beside it: the interpreters' components
/// take many seconds to compile.
fn load(sandbox: &Sandbox, path: &Path) -> Plugin {
    let cache = CompileCache::at(lang_dir().join(".cache"));
    let plugin = Plugin::load_with(sandbox, path, Some(&cache))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    plugin
        .check_grants(&Grant::default())
        .unwrap_or_else(|e| panic!("a stage that grants nothing refuses it: {e}"));
    plugin
}

fn instance(sandbox: &Sandbox, plugin: &Plugin, settings: &[(&str, &str)]) -> Instance {
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Instance::new(
        sandbox,
        plugin,
        &Arc::from("lang"),
        Limits::default(),
        &Grant::default(),
        &settings,
    )
    .unwrap_or_else(|e| panic!("init: {e:?}"))
}

/// 256 events: every fourth without a key, every third with two headers, every other with a
/// timestamp; values mix ASCII of both cases, digits, UTF-8 and bytes that are not UTF-8.
fn mixed_batch() -> Events {
    let mut batch = Events::new();
    for i in 0..256u32 {
        let mut value = format!("event {i}: Hello, wörld ß {} ", i * 7).into_bytes();
        value.extend_from_slice(&[0xff, b'z', 0x80, b'a' + (i % 26) as u8]);
        let key = format!("key-{i}");
        let h1 = format!("v{i}");
        let headers: Vec<(&[u8], &[u8])> = if i % 3 == 0 {
            vec![(b"trace", h1.as_bytes()), (b"weir.src", b"lang-test")]
        } else {
            vec![]
        };
        batch.push_parts(
            (i % 4 != 0).then_some(key.as_bytes()),
            &value,
            headers,
            (i % 2 == 0).then_some(1_700_000_000_000 + u64::from(i)),
        );
    }
    batch
}

fn check_uppercase(input: &Events, out: &Output) {
    assert!(
        out.counts.is_empty(),
        "one output per input: counts stay empty"
    );
    assert!(out.failures.is_empty());
    assert_eq!(out.events.len(), input.len());
    out.events.check().unwrap();
    for (a, b) in input.iter().zip(out.events.iter()) {
        assert_eq!(b.value(), a.value().to_ascii_uppercase().as_slice());
        assert_eq!(b.key(), a.key());
        assert_eq!(b.timestamp(), a.timestamp());
        // The host strips the headers it reserves (`weir.`) from every output, whoever
        // copied them: the others pass through as they came.
        let kept: Vec<_> = a
            .headers()
            .filter(|(n, _)| !n.starts_with(b"weir."))
            .collect();
        assert_eq!(b.headers().collect::<Vec<_>>(), kept);
    }
}

/// A stage that never calls state or time keeps neither: it imports no function of theirs,
/// so the host gives it no store.
fn keeps_nothing(plugin: &Plugin) {
    assert_eq!(plugin.contract, ContractVersion::V03);
    assert!(
        !plugin.uses_state() && !plugin.uses_time(),
        "{}: a stage that never calls state or time keeps them; imports: {:?}",
        plugin.path.display(),
        plugin.imports
    );
}

fn uppercase(lang: &str) {
    let sandbox = Sandbox::new().unwrap();
    let name = format!("{lang}-uppercase");
    let plugin = load(&sandbox, &component(&name));
    keeps_nothing(&plugin);
    let description = plugin.description.as_ref().expect("0.3 describes itself");
    assert_eq!(description.name, name);
    assert_eq!(description.version, "0.1.0");
    assert!(description.settings.is_empty());
    let mut instance = instance(&sandbox, &plugin, &[]);
    let input = mixed_batch();
    // Twice: the second batch runs on an instance that has already run one.
    for _ in 0..2 {
        let out = instance.process(&input).unwrap();
        check_uppercase(&input, &out);
    }
    let mut empty = Events::new();
    let out = instance.process(&empty).unwrap();
    assert!(out.events.is_empty() && out.counts.is_empty() && out.failures.is_empty());
    empty.push_value(b"");
    let out = instance.process(&empty).unwrap();
    assert_eq!(out.events.get(0).value(), b"");
}

/// The `filter` template: drops values containing `drop` (default `DEBUG`), rejects empty
/// values, passes the rest through whole.
fn filter(lang: &str) {
    let sandbox = Sandbox::new().unwrap();
    let name = format!("{lang}-filter");
    let plugin = load(&sandbox, &component(&name));
    keeps_nothing(&plugin);
    let description = plugin.description.as_ref().unwrap();
    assert_eq!(description.name, name);
    let settings: Vec<_> = description
        .settings
        .iter()
        .map(|s| (s.name.as_str(), s.type_, s.default.as_deref(), s.required))
        .collect();
    assert_eq!(
        settings,
        [
            ("drop", SettingType::Text, Some("DEBUG"), false),
            ("ignore-case", SettingType::Boolean, Some("false"), false),
        ]
    );
    let mut input = Events::new();
    let values: [&[u8]; 6] = [b"INFO a", b"DEBUG b", b"", b"WARN c", b"debug d", b"x"];
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{i}");
        input.push_parts(Some(key.as_bytes()), v, [(&b"h"[..], &b"1"[..])], Some(5));
    }
    let kept = |out: &Output| -> Vec<Vec<u8>> {
        out.events.check().unwrap();
        out.events.iter().map(|e| e.value().to_vec()).collect()
    };

    let mut defaults = instance(&sandbox, &plugin, &[]);
    let out = defaults.process(&input).unwrap();
    assert_eq!(kept(&out), [&b"INFO a"[..], b"WARN c", b"debug d", b"x"]);
    assert_eq!(out.counts, [1, 0, 0, 1, 1, 1]);
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].index, 2);
    assert_eq!(out.failures[0].kind, weir_sandbox::GuestFailureKind::Reject);
    assert_eq!(out.failures[0].reason, "empty value");
    let first = out.events.get(0);
    assert_eq!(first.key(), Some(&b"k0"[..]));
    assert_eq!(first.timestamp(), Some(5));
    assert_eq!(
        first.headers().collect::<Vec<_>>(),
        [(&b"h"[..], &b"1"[..])]
    );

    let mut set = instance(&sandbox, &plugin, &[("drop", "c"), ("ignore-case", "true")]);
    let out = set.process(&input).unwrap();
    assert_eq!(kept(&out), [&b"INFO a"[..], b"DEBUG b", b"debug d", b"x"]);

    let bad = Instance::new(
        &sandbox,
        &plugin,
        &Arc::from("lang"),
        Limits::default(),
        &Grant::default(),
        &[("ignore-case".to_string(), "maybe".to_string())],
    );
    assert!(
        bad.is_err(),
        "a boolean that is not true or false fails init"
    );
}

/// A stage's state, in memory, as the pipeline keeps it but without limits or TTLs (the count
/// template sets none); a call's writes land at once, since every call here completes.
#[derive(Default)]
struct Memory(Mutex<BTreeMap<Vec<u8>, Vec<u8>>>);

impl KeyedState for Memory {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.lock().unwrap().get(key).cloned()
    }

    fn set(&self, key: &[u8], value: &[u8], _ttl: Option<Duration>) -> Result<(), Refusal> {
        self.0.lock().unwrap().insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &[u8]) {
        self.0.lock().unwrap().remove(key);
    }

    fn increment(&self, key: &[u8], by: i64) -> Result<i64, Refusal> {
        let mut map = self.0.lock().unwrap();
        let before = match map.get(key) {
            None => 0,
            Some(v) => {
                i64::from_le_bytes(v.as_slice().try_into().map_err(|_| Refusal::NotACounter)?)
            }
        };
        let after = before.checked_add(by).ok_or(Refusal::Overflow)?;
        map.insert(key.to_vec(), after.to_le_bytes().to_vec());
        Ok(after)
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize, _max_bytes: usize) -> Page {
        let map = self.0.lock().unwrap();
        let mut entries: Vec<_> = map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| after.is_none_or(|a| k.as_slice() > a))
            .map(|(k, v)| (k.clone(), v.clone()))
            .take(limit + 1)
            .collect();
        let more = entries.len() > limit;
        entries.truncate(limit);
        Page { entries, more }
    }

    fn commit(&self) {}

    fn discard(&self) {}
}

/// The `count` template: each event becomes `KEY,N` (the value is the key when there is
/// none) with N counted in the host's store; the first of a key sets an event-time timer at
/// the end of time, and `on-timer` turns it into `KEY,TOTAL,final`.
fn count(lang: &str) {
    let sandbox = Sandbox::new().unwrap();
    let name = format!("{lang}-count");
    let plugin = load(&sandbox, &component(&name));
    assert_eq!(plugin.contract, ContractVersion::V03);
    assert!(
        plugin.uses_state() && plugin.uses_time(),
        "{name} keeps no state or no time: imports {:?}",
        plugin.imports
    );
    let memory = Arc::new(Memory::default());
    let store: Arc<dyn KeyedState> = memory.clone();
    let mut instance = Instance::with_state(
        &sandbox,
        &plugin,
        &Arc::from("lang"),
        Limits::default(),
        &Grant::default(),
        &[],
        LogQuota::new(),
        Some(store.clone()),
    )
    .unwrap_or_else(|e| panic!("init: {e:?}"));
    let mut input = Events::new();
    for v in ["a", "b", "a"] {
        input.push_value(v.as_bytes());
    }
    input.push_parts(Some(&b"k"[..]), b"x", [(&b"h"[..], &b"1"[..])], Some(7));
    let values = |events: &Events| -> Vec<String> {
        events.check().unwrap();
        (events.iter())
            .map(|e| String::from_utf8(e.value().to_vec()).unwrap())
            .collect()
    };
    let out = instance.process(&input).unwrap();
    assert!(out.counts.is_empty() && out.failures.is_empty());
    assert_eq!(values(&out.events), ["a,1", "b,1", "a,2", "k,1"]);
    let keyed = out.events.get(3);
    assert_eq!(keyed.key(), Some(&b"k"[..]));
    assert_eq!(keyed.timestamp(), Some(7));
    // A new instance counts on in the same store: the counts are the host's.
    let mut again = Instance::with_state(
        &sandbox,
        &plugin,
        &Arc::from("lang"),
        Limits::default(),
        &Grant::default(),
        &[],
        LogQuota::new(),
        Some(store),
    )
    .unwrap();
    let mut more = Events::new();
    more.push_value(b"a");
    assert_eq!(values(&again.process(&more).unwrap().events), ["a,3"]);
    // One timer per key, at the end of time, kept in the store.
    let timer = |key: &[u8]| TimerEntry {
        clock: TimerClock::Event,
        at: u64::MAX,
        key: key.to_vec(),
    };
    let fired = [timer(b"a"), timer(b"b"), timer(b"k")];
    for t in &fired {
        assert!(
            memory.get(&t.state_key()).is_some(),
            "{name}: no timer for {:?}",
            String::from_utf8_lossy(&t.key)
        );
    }
    let finals = again.on_timer(&fired).unwrap();
    assert_eq!(values(&finals), ["a,3,final", "b,1,final", "k,1,final"]);
    assert!(
        finals
            .iter()
            .all(|e| e.key().is_none() && e.timestamp().is_none())
    );
}

#[test]
#[ignore = "needs sdk/build-examples.sh"]
fn python_uppercase() {
    uppercase("python");
}

#[test]
#[ignore = "needs sdk/build-examples.sh"]
fn python_filter() {
    filter("python");
}

#[test]
#[ignore = "needs sdk/build-examples.sh"]
fn python_count() {
    count("python");
}

#[test]
#[ignore = "needs sdk/build-examples.sh"]
fn js_uppercase() {
    uppercase("js");
}

#[test]
#[ignore = "needs sdk/build-examples.sh"]
fn js_filter() {
    filter("js");
}

#[test]
#[ignore = "needs sdk/build-examples.sh"]
fn js_count() {
    count("js");
}

#[test]
#[ignore = "needs sdk/build-examples.sh"]
fn c_uppercase() {
    uppercase("c");
}

#[test]
#[ignore = "needs sdk/build-examples.sh"]
fn c_filter() {
    filter("c");
}

#[test]
#[ignore = "needs sdk/build-examples.sh"]
fn c_count() {
    count("c");
}

#[test]
#[ignore = "needs sdk/build-examples.sh"]
fn go_uppercase() {
    uppercase("go");
}

#[test]
#[ignore = "needs sdk/build-examples.sh"]
fn go_filter() {
    filter("go");
}

#[test]
#[ignore = "needs sdk/build-examples.sh"]
fn go_count() {
    count("go");
}

/// Events/s through `Instance::process` on batches of 256 × 100-byte values, after a
/// warm-up, for every language component present and the Rust example plugins.
#[test]
#[ignore = "a measurement; needs sdk/build-examples.sh for the other languages"]
fn throughput() {
    let sandbox = Sandbox::new().unwrap();
    let mut batch = Events::with_capacity(256, 256 * 100);
    for i in 0..256 {
        let value = format!(
            "{:<100}",
            format!("{i:03} Accepted publickey for root from 203.0.113.7 port 52344 ssh2: ED25519")
        );
        assert_eq!(value.len(), 100);
        batch.push_value(value.as_bytes());
    }
    let mut plugins: Vec<(String, PathBuf)> = ["passthrough", "uppercase"]
        .iter()
        .map(|p| (format!("rust-{p}"), weir_test_plugins::plugin(p)))
        .collect();
    for lang in LANGS {
        let path = lang_dir().join(format!("{lang}-uppercase.wasm"));
        if path.is_file() {
            plugins.push((format!("{lang}-uppercase"), path));
        } else {
            println!("{lang}-uppercase: not built, skipped");
        }
    }
    let budget = Duration::from_secs(
        std::env::var("WEIR_LANG_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    );
    println!(
        "{:<18} {:>10} {:>8} {:>12} {:>10} {:>9}",
        "plugin", "size", "contract", "events/s", "µs/batch", "replaced"
    );
    let cache = CompileCache::at(lang_dir().join(".cache"));
    let mut notes = Vec::new();
    for (name, path) in plugins {
        let plugin = match Plugin::load_with(&sandbox, &path, Some(&cache)) {
            Ok(plugin) => plugin,
            Err(e) => {
                println!("{name}: not loaded: {e}");
                continue;
            }
        };
        let mut instance = instance(&sandbox, &plugin, &[]);
        for _ in 0..20 {
            // Checked against the contract by `process`; the values are the tests' business.
            std::hint::black_box(instance.process(&batch).unwrap());
        }
        // As the host does: an instance that traps (a memory cap reached, say) is replaced
        // by a new one, and the time that takes counts.
        let start = Instant::now();
        let (mut batches, mut replaced) = (0u64, 0u64);
        while start.elapsed() < budget {
            match instance.process(&batch) {
                Ok(out) => {
                    std::hint::black_box(&out);
                    batches += 1;
                }
                Err(trapped) => {
                    if replaced == 0 {
                        notes.push(format!(
                            "{name}: trapped after {batches} batches: {}",
                            trapped.message
                        ));
                    }
                    replaced += 1;
                    instance = self::instance(&sandbox, &plugin, &[]);
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:<18} {:>10} {:>8} {:>12.0} {:>10.1} {:>9}",
            name,
            plugin.size,
            plugin.contract.as_str(),
            (batches * 256) as f64 / secs,
            secs * 1e6 / batches.max(1) as f64,
            replaced
        );
    }
    for note in notes {
        println!("{note}");
    }
}

/// `wit/0.3/stage.wit` is the contract's one source: the templates carry no copy (`sdk/new.sh`
/// writes it into a project), and the copies kept where a project is built in place (the
/// examples, the Rust SDK) must not drift from it.
#[test]
fn every_sdk_project_carries_the_current_contract() {
    // Every SDK speaks 0.3 (keyed state, timers).
    let contract = |version: &str| {
        std::fs::read_to_string(root().join(format!("wit/{version}/stage.wit"))).unwrap()
    };
    let mut seen = 0;
    for (base, version) in [
        ("sdk/templates", "0.3"),
        ("sdk/examples", "0.3"),
        ("plugins/sdk", "0.3"),
    ] {
        let contract = contract(version);
        let mut stack = vec![root().join(base)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "wit") {
                    assert!(
                        base != "sdk/templates",
                        "{}: a template carries no copy of the contract",
                        path.display()
                    );
                    let copy = std::fs::read_to_string(&path).unwrap();
                    assert!(
                        copy == contract,
                        "{} differs from wit/{version}",
                        path.display()
                    );
                    seen += 1;
                }
            }
        }
    }
    assert!(
        seen >= 5,
        "found {seen} copies of the contract under sdk/ and plugins/sdk"
    );
}
