//! `[stages.NAME]`: the plugin file, its settings, its limits, breaker, grant and canary, and
//! the lines later checks need to name a place.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::error::{ConfigError, Ctx, Sp, did_you_mean, join, list, plain, shown};
use crate::config::names;
use crate::config::ranges::{
    ALLOWED_LATENESS, BREAKER_COOLDOWN, BREAKER_WINDOW, CANARY_EVENTS, FUEL, IDLE_TIMEOUT,
    MAX_OUTPUT_BYTES, MAX_OUTPUT_EVENTS, MAX_VALUE_SIZE, MEMORY, RETRIES, STATE_CACHE_BYTES,
    STATE_MAX_BYTES, STATE_MAX_KEYS, TIMEOUT, WORKERS,
};
use crate::config::raw::{RawBreaker, RawCanary, RawGrant, RawStage};
use crate::config::units;
use crate::config::{DirGrant, Grant};

/// Instances a stage runs in parallel when the file says `workers = "auto"` (or nothing) and
/// the machine's cores cannot be read.
pub const DEFAULT_WORKERS: usize = 1;

/// The most workers `"auto"` gives a stage. Blocks a host with many cores from reserving a
/// thread and an instance slot per core for every stage of every pipeline; more is one
/// explicit `workers = N` away (up to [`ranges::WORKERS`](super::ranges::WORKERS)).
pub const AUTO_WORKERS_MAX: usize = 8;
/// Retries of an event that asks for one, unless the file says otherwise.
pub const DEFAULT_RETRIES: u32 = 3;

/// What a stage does when its plugin fails on an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Write the event and the reason to the dead-letter sink and keep going.
    DeadLetter,
    /// Count the failure and drop the event.
    Drop,
    /// Drain what is in flight and exit non-zero, naming the stage and the failure.
    Stop,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub inputs: Vec<String>,
    pub plugin: PathBuf,
    pub settings: Vec<(String, String)>,
    /// In [`ranges::WORKERS`](super::ranges::WORKERS): 1 to 64. With `workers_auto`, what the
    /// topology chose once it knew the plugins (1 until then).
    pub workers: usize,
    /// `workers = "auto"`, the default: every core for a stateless stage whose timestamps feed
    /// no watermark, one worker otherwise (the topology decides).
    pub workers_auto: bool,
    pub limits: Limits,
    /// In [`ranges::RETRIES`](super::ranges::RETRIES): 0 to 100.
    pub retries: u32,
    pub on_error: OnError,
    pub breaker: Breaker,
    pub grant: Grant,
    /// Event time: the stage's watermark and what becomes of late events.
    pub time: EventTime,
    // ---- hot loading ----
    /// Reload the plugin when its file changes.
    pub watch: bool,
    /// The guard that rolls a new version back when it fails too often.
    pub canary: Canary,
    /// Where the stage was written, for errors found after the file was read.
    pub lines: StageLines,
}

/// Where a stage was written: the file, and the lines of its table, its `plugin` key and each
/// of its settings. Checks that run after the file was read (a plugin that refuses a setting)
/// use it to name the place, through [`Stage::setting_error`] and [`Stage::plugin_error`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageLines {
    /// The pipeline file.
    pub file: PathBuf,
    /// The line of the stage's table (`[stages.NAME]`).
    pub table: usize,
    /// The line of its `plugin` key.
    pub plugin: usize,
    /// The line of each key of its `settings`.
    pub settings: BTreeMap<String, usize>,
}

impl Stage {
    /// An error about setting `key` of this stage, as `stages.NAME.settings.KEY` at the line of
    /// that setting, or at the stage's table when the file does not set it (a missing setting).
    pub fn setting_error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let settings = join(&join("stages", &self.name), "settings");
        ConfigError {
            file: self.lines.file.clone(),
            line: Some(
                self.lines
                    .settings
                    .get(key)
                    .copied()
                    .unwrap_or(self.lines.table),
            ),
            key: Some(join(&settings, key)),
            message: message.into(),
        }
    }

    /// An error about this stage's plugin, as `stages.NAME.plugin` at the line of that key.
    pub fn plugin_error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.lines.file.clone(),
            line: Some(self.lines.plugin),
            key: Some(join(&join("stages", &self.name), "plugin")),
            message: message.into(),
        }
    }
}

/// What becomes of an event the plugin fails as late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Late {
    /// Dead-lettered with the kind `late` (the default): nothing is lost silently.
    DeadLetter,
    /// Counted (`weir_failures_total{kind="late"}`) and dropped.
    Drop,
}

/// A stage's event-time settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTime {
    /// How far behind the highest event time seen the stage's watermark stays; in
    /// [`ranges::ALLOWED_LATENESS`](super::ranges::ALLOWED_LATENESS).
    pub allowed_lateness: Duration,
    /// How long an input may send nothing before it stops holding the stage's watermark back;
    /// in [`ranges::IDLE_TIMEOUT`](super::ranges::IDLE_TIMEOUT).
    pub idle_timeout: Duration,
    pub late: Late,
}

/// An input that sends nothing for this long stops holding a watermark back, unless the file
/// says otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for EventTime {
    fn default() -> Self {
        EventTime {
            allowed_lateness: Duration::ZERO,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            late: Late::DeadLetter,
        }
    }
}

/// When a stage's `on_error` policy acts: over the last `window` events sent to its plugin,
/// once the window is full and the failed fraction reaches `threshold`, the breaker trips and
/// stays open for `cooldown`, failing events at once (`breaker-open`) without calling the
/// plugin. Blocks a plugin that fails everything from costing a trap (and its re-runs) per
/// batch for ever, and from slowing the branches it shares a source with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breaker {
    /// In [`ranges::BREAKER_WINDOW`](super::ranges::BREAKER_WINDOW): 1 to 1,000,000 events.
    pub window: usize,
    /// Above 0 and at most 1.
    pub threshold: f64,
    /// In [`ranges::BREAKER_COOLDOWN`](super::ranges::BREAKER_COOLDOWN): 0 to 1 h.
    pub cooldown: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            window: 100,
            threshold: 0.5,
            cooldown: Duration::from_secs(5),
        }
    }
}

/// The canary guard of a stage: over the first `events` events a new version processes, a
/// failure rate above `max_failure_rate` rolls it back. `events = 0` turns the guard off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Canary {
    /// In [`ranges::CANARY_EVENTS`](super::ranges::CANARY_EVENTS): 0 to 10,000,000.
    pub events: u64,
    /// From 0 to 1.
    pub max_failure_rate: f64,
}

impl Default for Canary {
    fn default() -> Self {
        Canary {
            events: 1000,
            max_failure_rate: 0.5,
        }
    }
}

/// The limits of one stage: what the sandbox enforces on each call, and the per-input caps on
/// its output that the host enforces. Each default blocks a threat named beside it; each range
/// is in [`ranges`](super::ranges), with the threat a value outside it would let in. The keys
/// of the file are `fuel` (in [`ranges::FUEL`](super::ranges::FUEL): 1 to 10^12), `timeout`
/// (in [`ranges::TIMEOUT`](super::ranges::TIMEOUT): 1 ms to 1 h), `memory` (in
/// [`ranges::MEMORY`](super::ranges::MEMORY): 64 KiB to 4 GiB) and `max_output_bytes` (in
/// [`ranges::MAX_OUTPUT_BYTES`](super::ranges::MAX_OUTPUT_BYTES): 1 byte to 1 GiB, the
/// sandbox's `output_bytes`) for the sandbox, and the two caps below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// What the sandbox enforces on a call: fuel, deadline, memory, and what the call's output
    /// may cost in all.
    pub sandbox: weir_sandbox::Limits,
    /// Events out per event in. Blocks an amplification bomb (one event into millions)
    /// from flooding the stages and sinks downstream. In
    /// [`ranges::MAX_OUTPUT_EVENTS`](super::ranges::MAX_OUTPUT_EVENTS): 1 to 65,536.
    pub max_output_events: usize,
    /// Bytes per output value. Blocks single huge values from reaching sinks and later
    /// stages, each of which would copy them. In
    /// [`ranges::MAX_VALUE_SIZE`](super::ranges::MAX_VALUE_SIZE): 1 byte to 1 GiB.
    pub max_value_size: u64,
    /// Keys the stage's state may hold, for a plugin that imports `state`. Blocks a plugin
    /// from filling the host's memory (or disk) one small key at a time. In
    /// [`ranges::STATE_MAX_KEYS`](super::ranges::STATE_MAX_KEYS).
    pub state_max_keys: usize,
    /// Bytes of keys and values the stage's state may hold. Blocks a plugin from filling the
    /// host's memory (or disk) with large values. In
    /// [`ranges::STATE_MAX_BYTES`](super::ranges::STATE_MAX_BYTES).
    pub state_max_bytes: u64,
    /// With the state on disk (`[pipeline] data_dir`), what the entries the host keeps in
    /// memory may cost. Bounds the memory a state larger than memory takes. In
    /// [`ranges::STATE_CACHE_BYTES`](super::ranges::STATE_CACHE_BYTES).
    pub state_cache_bytes: u64,
}

impl Default for Limits {
    /// The sandbox's own defaults for what it enforces (one place for them, so that
    /// `weir plugin test` and a pipeline agree), and the host's for the output caps.
    fn default() -> Self {
        Limits {
            sandbox: weir_sandbox::Limits::default(),
            max_output_events: 1024,
            max_value_size: 16 << 20,
            state_max_keys: 1_000_000,
            state_max_bytes: 64 << 20,
            state_cache_bytes: 64 << 20,
        }
    }
}

const POLICIES: &[&str] = &["dead-letter", "drop", "stop"];

/// Longest guest path of a directory grant, in bytes (as `PATH_MAX`).
const GUEST_PATH_MAX: usize = 4096;

/// One stage, whose `inputs` the graph checks have already checked.
pub(crate) fn check(
    cx: &Ctx,
    name: &str,
    raw: &RawStage,
    inputs: Vec<String>,
) -> Result<Stage, ConfigError> {
    let node = join("stages", name);
    let key = |k: &str| join(&node, k);
    let plugin = cx.path(raw.plugin.get_ref());
    if !plugin.is_file() {
        return Err(cx.err(
            &raw.plugin.span(),
            key("plugin"),
            format!(
                "plugin file not found: {} (build it first, or fix the path)",
                plain(&plugin.display().to_string())
            ),
        ));
    }
    Ok(Stage {
        name: name.to_string(),
        inputs,
        plugin,
        settings: settings(cx, &node, raw)?,
        workers: match raw.workers.as_ref() {
            Some(v) => match v.get_ref() {
                Some(n) => units::whole(cx, &Sp::new(v.span(), *n), &key("workers"), &WORKERS)?,
                None => DEFAULT_WORKERS,
            },
            None => DEFAULT_WORKERS,
        },
        workers_auto: raw.workers.as_ref().is_none_or(|v| v.get_ref().is_none()),
        limits: limits(cx, &node, raw)?,
        retries: (raw.retries.as_ref())
            .map(|v| units::whole(cx, v, &key("retries"), &RETRIES))
            .transpose()?
            .unwrap_or(DEFAULT_RETRIES),
        on_error: on_error(cx, &node, raw)?,
        breaker: breaker(cx, &join(&node, "breaker"), raw.breaker.as_ref())?,
        grant: grant(cx, &join(&node, "grant"), raw.grant.as_ref())?,
        time: event_time(cx, &node, raw)?,
        watch: raw.watch.as_ref().is_some_and(|w| *w.get_ref()),
        canary: canary(cx, &join(&node, "canary"), raw.canary.as_ref())?,
        lines: lines(cx, raw),
    })
}

/// Settings reach the plugin as text; their keys must be plain names.
fn settings(cx: &Ctx, node: &str, raw: &RawStage) -> Result<Vec<(String, String)>, ConfigError> {
    let path = join(node, "settings");
    let mut out = Vec::with_capacity(raw.settings.len());
    for (key, value) in &raw.settings {
        names::setting_key(key.get_ref())
            .map_err(|m| cx.err(&key.span(), join(&path, key.get_ref()), m))?;
        out.push((key.get_ref().clone(), value.get_ref().clone()));
    }
    Ok(out)
}

fn lines(cx: &Ctx, raw: &RawStage) -> StageLines {
    StageLines {
        file: cx.file.to_path_buf(),
        table: cx.line_of(&raw.at.table),
        plugin: cx.line_of(&raw.plugin.span()),
        settings: (raw.settings.iter())
            .map(|(k, _)| (k.get_ref().clone(), cx.line_of(&k.span())))
            .collect(),
    }
}

fn limits(cx: &Ctx, node: &str, raw: &RawStage) -> Result<Limits, ConfigError> {
    let key = |k: &str| join(node, k);
    let d = Limits::default();
    let size = |v: &Option<Sp<String>>, k: &str, range: &RangeInclusive<u64>, default: u64| {
        (v.as_ref())
            .map(|v| units::size(cx, v, &key(k), range))
            .transpose()
            .map(|v| v.unwrap_or(default))
    };
    Ok(Limits {
        sandbox: weir_sandbox::Limits {
            fuel: (raw.fuel.as_ref())
                .map(|v| units::whole(cx, v, &key("fuel"), &FUEL))
                .transpose()?
                .unwrap_or(d.sandbox.fuel),
            timeout: (raw.timeout.as_ref())
                .map(|v| units::duration(cx, v, &key("timeout"), &TIMEOUT))
                .transpose()?
                .unwrap_or(d.sandbox.timeout),
            memory: size(&raw.memory, "memory", &MEMORY, d.sandbox.memory)?,
            output_bytes: size(
                &raw.max_output_bytes,
                "max_output_bytes",
                &MAX_OUTPUT_BYTES,
                d.sandbox.output_bytes,
            )?,
        },
        max_output_events: (raw.max_output_events.as_ref())
            .map(|v| units::whole(cx, v, &key("max_output_events"), &MAX_OUTPUT_EVENTS))
            .transpose()?
            .unwrap_or(d.max_output_events),
        max_value_size: size(
            &raw.max_value_size,
            "max_value_size",
            &MAX_VALUE_SIZE,
            d.max_value_size,
        )?,
        state_max_keys: (raw.state_max_keys.as_ref())
            .map(|v| units::whole(cx, v, &key("state_max_keys"), &STATE_MAX_KEYS))
            .transpose()?
            .unwrap_or(d.state_max_keys),
        state_max_bytes: size(
            &raw.state_max_bytes,
            "state_max_bytes",
            &STATE_MAX_BYTES,
            d.state_max_bytes,
        )?,
        state_cache_bytes: size(
            &raw.state_cache_bytes,
            "state_cache_bytes",
            &STATE_CACHE_BYTES,
            d.state_cache_bytes,
        )?,
    })
}

fn event_time(cx: &Ctx, node: &str, raw: &RawStage) -> Result<EventTime, ConfigError> {
    let d = EventTime::default();
    let late = match &raw.late {
        None => d.late,
        Some(v) => match v.get_ref().as_str() {
            "dead-letter" => Late::DeadLetter,
            "drop" => Late::Drop,
            other => {
                return Err(cx.err(
                    &v.span(),
                    join(node, "late"),
                    format!(
                        "unknown policy {}: use {}{}",
                        shown(other),
                        list(LATE_POLICIES, "or"),
                        did_you_mean(other, LATE_POLICIES)
                    ),
                ));
            }
        },
    };
    Ok(EventTime {
        allowed_lateness: (raw.allowed_lateness.as_ref())
            .map(|v| units::duration(cx, v, &join(node, "allowed_lateness"), &ALLOWED_LATENESS))
            .transpose()?
            .unwrap_or(d.allowed_lateness),
        idle_timeout: (raw.idle_timeout.as_ref())
            .map(|v| units::duration(cx, v, &join(node, "idle_timeout"), &IDLE_TIMEOUT))
            .transpose()?
            .unwrap_or(d.idle_timeout),
        late,
    })
}

const LATE_POLICIES: &[&str] = &["dead-letter", "drop"];

fn on_error(cx: &Ctx, node: &str, raw: &RawStage) -> Result<OnError, ConfigError> {
    let Some(v) = &raw.on_error else {
        return Ok(OnError::DeadLetter);
    };
    match v.get_ref().as_str() {
        "dead-letter" => Ok(OnError::DeadLetter),
        "drop" => Ok(OnError::Drop),
        "stop" => Ok(OnError::Stop),
        other => Err(cx.err(
            &v.span(),
            join(node, "on_error"),
            format!(
                "unknown policy {}: use {}{}",
                shown(other),
                list(POLICIES, "or"),
                did_you_mean(other, POLICIES)
            ),
        )),
    }
}

/// `path` is the breaker's key path, `stages.NAME.breaker`.
fn breaker(cx: &Ctx, path: &str, raw: Option<&RawBreaker>) -> Result<Breaker, ConfigError> {
    let mut breaker = Breaker::default();
    let Some(raw) = raw else {
        return Ok(breaker);
    };
    if let Some(w) = &raw.window {
        breaker.window = units::whole(cx, w, &join(path, "window"), &BREAKER_WINDOW)?;
    }
    if let Some(t) = &raw.threshold {
        breaker.threshold = units::fraction(cx, t, &join(path, "threshold"), false)?;
    }
    if let Some(c) = &raw.cooldown {
        breaker.cooldown = units::duration(cx, c, &join(path, "cooldown"), &BREAKER_COOLDOWN)?;
    }
    Ok(breaker)
}

/// `path` is the grant's key path, `stages.NAME.grant`.
fn grant(cx: &Ctx, path: &str, raw: Option<&RawGrant>) -> Result<Grant, ConfigError> {
    let mut grant = Grant::default();
    let Some(raw) = raw else {
        return Ok(grant);
    };
    let mut guests = BTreeSet::new();
    for dir in &raw.dirs {
        let host = cx.path(dir.host.get_ref());
        if !host.is_dir() {
            return Err(cx.err(
                &dir.host.span(),
                join(&dir.path, "host"),
                format!("no such directory: {}", plain(&host.display().to_string())),
            ));
        }
        let guest = dir.guest.get_ref();
        guest_path(guest).map_err(|m| cx.err(&dir.guest.span(), join(&dir.path, "guest"), m))?;
        if !guests.insert(guest.as_str()) {
            return Err(cx.err(
                &dir.guest.span(),
                join(&dir.path, "guest"),
                format!(
                    "{} is granted twice: each guest path names one directory",
                    shown(guest)
                ),
            ));
        }
        grant.dirs.push(DirGrant {
            host,
            guest: guest.clone(),
        });
    }
    for var in &raw.env {
        names::env(var.get_ref()).map_err(|m| cx.err(&var.span(), join(path, "env"), m))?;
        grant.env.push(var.get_ref().clone());
    }
    grant.network = raw.network.as_ref().is_some_and(|n| *n.get_ref());
    Ok(grant)
}

/// A guest path: absolute, without `.` or `..` parts or control characters, at most 4096
/// bytes. It is the name the plugin sees the directory under; a relative or dotted name would
/// resolve differently in every guest.
fn guest_path(guest: &str) -> Result<(), String> {
    let fits = guest.starts_with('/')
        && guest.len() <= GUEST_PATH_MAX
        && !guest.chars().any(char::is_control)
        && !guest.split('/').any(|part| part == "." || part == "..");
    if fits {
        return Ok(());
    }
    Err(format!(
        "{} is not a usable guest path: write an absolute path without `.` or `..` parts, \
         such as `/data`",
        shown(guest)
    ))
}

/// `path` is the canary's key path, `stages.NAME.canary`.
fn canary(cx: &Ctx, path: &str, raw: Option<&RawCanary>) -> Result<Canary, ConfigError> {
    let mut canary = Canary::default();
    let Some(raw) = raw else {
        return Ok(canary);
    };
    if let Some(events) = &raw.events {
        canary.events = units::whole(cx, events, &join(path, "events"), &CANARY_EVENTS)?;
    }
    if let Some(rate) = &raw.max_failure_rate {
        canary.max_failure_rate = units::fraction(cx, rate, &join(path, "max_failure_rate"), true)?;
    }
    Ok(canary)
}
