//! `weir plugin test PLUGIN.wasm`: runs a component in the real sandbox, in this process, one
//! event per call, and prints each event's outcome.
//!
//! Standard output has one JSON line per input event: `{"event": i, "outputs": [...]}` (each
//! output as the `json` sink writes an event: `key`, `value`, `headers`, `timestamp`, with
//! `_base64` for bytes that are not UTF-8) or `{"event": i, "failure": KIND, "reason": ...}`
//! for a reject, a retry or a trap (after a trap a fresh instance takes the next event, as in
//! a pipeline). Fuel and time vary from run to run, so they go to standard error, a line per
//! event and a total: standard output alone is what `--expect` compares, and what a golden
//! file holds (`weir plugin test X.wasm --input in.txt > expected.jsonl` makes one).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use weir_sandbox::{
    Events, Grant, Instance, KeyedState, Limits, LogQuota, Output, Plugin, Sandbox,
};

use crate::pipeline::state::StageState;

/// What to run and how.
pub struct TestRun {
    pub plugin: PathBuf,
    /// Event values: `--text`s, then the lines of `--input`.
    pub values: Vec<Vec<u8>>,
    pub settings: Vec<(String, String)>,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub limits: Limits,
}

/// Why a test could not run (a difference from `--expect` is not an error: see [`Verdict`]).
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("{0}")]
    Refused(String),
    #[error("the plugin's init failed: {0}")]
    Init(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl TestError {
    pub fn code(&self) -> u8 {
        match self {
            TestError::Refused(_) => 2,
            _ => 1,
        }
    }
}

/// Each event's outcome line, in order.
pub struct Ran {
    pub lines: Vec<String>,
}

/// Runs every event through the plugin, printing as it goes.
pub fn run(test: &TestRun) -> Result<Ran, TestError> {
    let refused = |e: &dyn std::fmt::Display| TestError::Refused(super::super::one_line(e));
    let sandbox = Sandbox::new().map_err(|e| refused(&e))?;
    let plugin = Plugin::load(&sandbox, &test.plugin).map_err(|e| refused(&e))?;
    plugin
        .check_grants(&Grant::default())
        .map_err(|e| refused(&e))?;
    if let Some(description) = &plugin.description {
        weir_sandbox::settings::check(&description.settings, &test.settings)
            .map_err(|e| refused(&format!("--setting {}: {}", e.key, e.message)))?;
    }
    // A plugin that keeps state gets a store in memory for the run, with a stage's default
    // limits, kept across the instances a trap replaces.
    let defaults = crate::config::Limits::default();
    let state = plugin.uses_state().then(|| {
        Arc::new(StageState::new(
            defaults.state_max_keys,
            defaults.state_max_bytes,
            defaults.state_cache_bytes,
        )) as Arc<dyn KeyedState>
    });
    let fresh = || {
        Instance::with_state(
            &sandbox,
            &plugin,
            &Arc::from("test"),
            test.limits,
            &Grant::default(),
            &test.settings,
            LogQuota::new(),
            state.clone(),
        )
        .map_err(|t| TestError::Init(t.message))
    };
    let mut instance = fresh()?;
    let mut lines = Vec::with_capacity(test.values.len());
    let (mut fuel_total, mut time_total, mut failed) = (0u64, Duration::ZERO, 0usize);
    for (index, value) in test.values.iter().enumerate() {
        let batch = one_event(test, value);
        let started = Instant::now();
        let result = instance.process(&batch);
        let took = started.elapsed();
        let fuel = instance.last_fuel();
        let line = match result {
            Ok(output) => outcome(index, &output),
            Err(trapped) => {
                if trapped.kind.poisons() {
                    instance = fresh()?;
                }
                failure(index, trapped.kind.as_str(), &trapped.message)
            }
        };
        failed += usize::from(line.get("failure").is_some());
        let line = line.to_string();
        crate::cli::print_line(format_args!("{line}"));
        eprintln!("event {index}: {fuel} fuel, {} µs", took.as_micros());
        lines.push(line);
        fuel_total += fuel;
        time_total += took;
    }
    eprintln!(
        "{} events, {failed} failed: {fuel_total} fuel, {} µs in the plugin",
        test.values.len(),
        time_total.as_micros()
    );
    Ok(Ran { lines })
}

/// A batch of one event: the value, with the run's key and headers.
fn one_event(test: &TestRun, value: &[u8]) -> Events {
    let mut batch = Events::new();
    batch.push_parts(
        test.key.as_deref().map(str::as_bytes),
        value,
        test.headers
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        None,
    );
    batch
}

/// The line of an event that did not trap: its outputs, or its failure.
fn outcome(index: usize, output: &Output) -> Value {
    if let Some(f) = output.failures.first() {
        let kind = match f.kind {
            weir_sandbox::GuestFailureKind::Reject => "reject",
            weir_sandbox::GuestFailureKind::Retry => "retry",
        };
        return failure(index, kind, &f.reason);
    }
    let outputs: Vec<Value> = output.events.iter().map(|e| event_json(&e)).collect();
    json!({ "event": index, "outputs": outputs })
}

fn failure(index: usize, kind: &str, reason: &str) -> Value {
    json!({ "event": index, "failure": kind, "reason": reason })
}

/// An output event as the `json` sink writes one.
fn event_json(event: &weir_sandbox::EventRef<'_>) -> Value {
    let mut object = Map::new();
    if let Some(key) = event.key() {
        bytes_field(&mut object, "key", key);
    }
    bytes_field(&mut object, "value", event.value());
    if event.header_count() > 0 {
        let headers: Vec<Value> = event
            .headers()
            .map(|(name, value)| {
                let value = match std::str::from_utf8(value) {
                    Ok(text) => json!(text),
                    Err(_) => json!({ "base64": base64(value) }),
                };
                json!([String::from_utf8_lossy(name), value])
            })
            .collect();
        object.insert("headers".into(), Value::Array(headers));
    }
    if let Some(ts) = event.timestamp() {
        object.insert("timestamp".into(), json!(ts));
    }
    Value::Object(object)
}

fn bytes_field(object: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object.insert(name.into(), json!(text)),
        Err(_) => object.insert(format!("{name}_base64"), json!(base64(bytes))),
    };
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The lines of a file, without their line endings: the values of `--input`, or a golden
/// file.
pub fn read_lines(path: &Path) -> Result<Vec<Vec<u8>>, TestError> {
    let bytes = std::fs::read(path).map_err(|source| TestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines: Vec<Vec<u8>> = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .collect();
    if lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    Ok(lines)
}

/// The differences between the expected lines and the ones printed, as lines to show; empty
/// when they match.
pub fn compare(expected: &[Vec<u8>], got: &[String]) -> Vec<String> {
    let mut diff = Vec::new();
    for i in 0..expected.len().max(got.len()) {
        let want = expected.get(i).map(|l| String::from_utf8_lossy(l));
        match (want, got.get(i)) {
            (Some(w), Some(g)) if *w == **g => {}
            (Some(w), Some(g)) => diff.push(format!("line {}:\n  - {w}\n  + {g}", i + 1)),
            (Some(w), None) => diff.push(format!("line {}: missing\n  - {w}", i + 1)),
            (None, Some(g)) => diff.push(format!("line {}: not expected\n  + {g}", i + 1)),
            (None, None) => {}
        }
    }
    diff
}
