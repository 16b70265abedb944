//! Pipeline files: TOML text in, a checked [`Pipeline`] out.
//!
//! Parsing happens in two passes. `toml` + serde turn the text into raw tables while keeping
//! the byte span of every value that a later check may complain about; then [`Pipeline::parse`]
//! checks the meaning (types of connectors, names of inputs, cycles, plugin files, units) and
//! turns every span into a line number, so each error names the file, the line and the key.
//! Relative paths in a pipeline file are taken relative to the file's own folder, so a pipeline
//! runs the same from any working directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

/// Events per batch unless the file says otherwise: large enough to amortise the sandbox
/// boundary (one call per batch), small enough that one batch stays a few tens of KiB.
pub const DEFAULT_BATCH_SIZE: usize = 256;
/// How long a partly filled batch may wait for more events: the bound on added latency.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);
/// Batches a channel between two nodes holds. Together with the batch size this bounds the
/// events in flight, and so the memory a slow sink can make the host hold.
pub const DEFAULT_BUFFER: usize = 4;

/// A configuration error, with the place it was found.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The pipeline file.
    pub file: PathBuf,
    /// 1-based line, when the error has a place in the file.
    pub line: Option<usize>,
    /// The dotted key the error is about, such as `stages.parse.inputs`.
    pub key: Option<String>,
    /// What is wrong, and where possible what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A checked pipeline: every input exists, the graph has no cycle, every plugin file exists.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file it was read from.
    pub file: PathBuf,
    pub sources: Vec<Source>,
    pub stages: Vec<Stage>,
    pub sinks: Vec<Sink>,
    pub dead_letter: DeadLetterConfig,
    pub batch_size: usize,
    pub linger: Duration,
    pub buffer: usize,
    /// Hot loading: the admin API, when the file has an `[admin]` table.
    pub admin: Option<Admin>,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    pub batch_size: usize,
    pub linger: Duration,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    Stdin,
    /// One event per line; `repeat` reads the file that many times in a row.
    File {
        path: PathBuf,
        repeat: u64,
    },
    /// `count` events whose values are `size` bytes: byte `j` of event `i` is
    /// `b'a' + (i + j) % 26` (benchmark workload W1).
    Generate {
        count: u64,
        size: usize,
    },
}

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
    pub workers: usize,
    pub limits: Limits,
    pub retries: u32,
    pub on_error: OnError,
    pub breaker: Breaker,
    pub grant: Grant,
    // ---- hot loading ----
    /// Reload the plugin when its file changes.
    pub watch: bool,
    /// The guard that rolls a new version back when it fails too often.
    pub canary: Canary,
}

/// When a stage's `on_error` policy acts: over the last `window` events sent to its plugin,
/// once the window is full and the failed fraction reaches `threshold`, the breaker trips and
/// stays open for `cooldown`, failing events at once (`breaker-open`) without calling the
/// plugin. Blocks a plugin that fails everything from costing a trap (and its re-runs) per
/// batch for ever, and from slowing the branches it shares a source with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breaker {
    pub window: usize,
    pub threshold: f64,
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

pub use weir_sandbox::{DirGrant, Grant};

// ---- hot loading --------------------------------------------------------------------------

/// Where the admin API listens, unless the file says otherwise. Loopback only: the API can
/// replace the code that runs on every event, so it is not offered to the network by default.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7878";
/// Shortest admin token accepted. Blocks a token short enough to be guessed over the API.
pub const MIN_TOKEN_LEN: usize = 16;

/// The admin API: where it listens and the bearer token every request must carry.
#[derive(Clone)]
pub struct Admin {
    pub listen: std::net::SocketAddr,
    pub token: String,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token stays out of logs and error messages.
        f.debug_struct("Admin")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// The canary guard of a stage: over the first `events` events a new version processes, a
/// failure rate above `max_failure_rate` rolls it back. `events = 0` turns the guard off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Canary {
    pub events: u64,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<Sp<String>>,
    token: Option<Sp<String>>,
    token_env: Option<Sp<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCanary {
    events: Option<Sp<u64>>,
    max_failure_rate: Option<Sp<f64>>,
}

fn check_admin(cx: &Ctx, raw: &Sp<RawAdmin>) -> Result<Admin, ConfigError> {
    let raw_admin = raw.get_ref();
    let listen = match &raw_admin.listen {
        Some(l) => l.get_ref().parse().map_err(|_| {
            cx.err(
                &l.span(),
                "admin.listen",
                format!(
                    "`{}` is not an address: write IP:PORT, such as `127.0.0.1:7878`",
                    l.get_ref()
                ),
            )
        })?,
        None => DEFAULT_ADMIN_LISTEN
            .parse()
            .expect("the default address parses"),
    };
    let token = match (&raw_admin.token, &raw_admin.token_env) {
        (Some(t), None) => (t.get_ref().clone(), t.span()),
        (None, Some(var)) => match std::env::var(var.get_ref()) {
            Ok(t) => (t, var.span()),
            Err(_) => {
                return Err(cx.err(
                    &var.span(),
                    "admin.token_env",
                    format!("the environment variable `{}` is not set", var.get_ref()),
                ));
            }
        },
        (Some(t), Some(_)) => {
            return Err(cx.err(
                &t.span(),
                "admin.token",
                "give `token` or `token_env`, not both",
            ));
        }
        (None, None) => {
            return Err(cx.err(
                &raw.span(),
                "admin.token",
                "the admin API needs a bearer token: set `token` or `token_env`",
            ));
        }
    };
    let (token, span) = token;
    if token.trim().len() < MIN_TOKEN_LEN {
        return Err(cx.err(
            &span,
            "admin.token",
            format!("the token must be at least {MIN_TOKEN_LEN} characters"),
        ));
    }
    Ok(Admin {
        listen,
        token: token.trim().to_string(),
    })
}

fn check_canary(cx: &Ctx, name: &str, raw: Option<&Sp<RawCanary>>) -> Result<Canary, ConfigError> {
    let mut canary = Canary::default();
    let Some(raw) = raw else {
        return Ok(canary);
    };
    if let Some(events) = &raw.get_ref().events {
        canary.events = *events.get_ref();
    }
    if let Some(rate) = &raw.get_ref().max_failure_rate {
        let r = *rate.get_ref();
        if !(0.0..=1.0).contains(&r) {
            return Err(cx.err(
                &rate.span(),
                format!("stages.{name}.canary.max_failure_rate"),
                "must be between 0 and 1",
            ));
        }
        canary.max_failure_rate = r;
    }
    Ok(canary)
}

// ---- end of hot loading ----------------------------------------------------------------------

/// The sandbox limits of one stage. Each default blocks a threat named beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) per event; a call gets `events × fuel`. Blocks a
    /// plugin that burns CPU on every event and starves the other stages of the core.
    pub fuel: u64,
    /// Wall-clock limit per call, enforced by epoch interruption. Blocks endless loops and
    /// host calls that block: a stuck call costs one deadline, never a stuck pipeline.
    pub timeout: Duration,
    /// Linear-memory cap per instance. Blocks a memory bomb from taking the host's memory.
    pub memory: u64,
    /// Events out per event in. Blocks an amplification bomb (one event into millions)
    /// from flooding the stages and sinks downstream.
    pub max_output_events: usize,
    /// Bytes out (keys, values, headers) per call. Blocks one call from handing the host
    /// an unbounded amount of data to hold and pass on.
    pub max_output_bytes: u64,
    /// Bytes per output value. Blocks single huge values from reaching sinks and later
    /// stages, each of which would copy them.
    pub max_value_size: u64,
}

impl Limits {
    /// The limits the sandbox enforces on each call.
    pub fn sandbox(&self) -> weir_sandbox::Limits {
        weir_sandbox::Limits {
            fuel: self.fuel,
            timeout: self.timeout,
            memory: self.memory,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 10_000_000,
            timeout: Duration::from_secs(1),
            memory: 64 << 20,
            max_output_events: 1024,
            max_output_bytes: 64 << 20,
            max_value_size: 16 << 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sink {
    pub name: String,
    pub inputs: Vec<String>,
    pub kind: SinkKind,
    pub encoding: Encoding,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Stdout,
    File {
        path: PathBuf,
    },
    /// Counts events and bytes, writes nothing.
    Null,
}

/// How a sink writes an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The value, then a newline.
    Text,
    /// A JSON object with key, value, headers and timestamp, then a newline.
    Json,
}

/// Where dead letters go: JSON lines, one per failed event.
#[derive(Debug, Clone)]
pub enum DeadLetterConfig {
    Stderr,
    File { path: PathBuf },
}

// ---- raw, as written in the file ------------------------------------------------------------

type Sp<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    pipeline: Option<RawGlobal>,
    #[serde(default)]
    sources: BTreeMap<String, Sp<RawSource>>,
    #[serde(default)]
    stages: BTreeMap<String, Sp<RawStage>>,
    #[serde(default)]
    sinks: BTreeMap<String, Sp<RawSink>>,
    #[serde(default)]
    dead_letter: Option<Sp<RawDeadLetter>>,
    // hot loading
    #[serde(default)]
    admin: Option<Sp<RawAdmin>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    batch_size: Option<Sp<usize>>,
    linger: Option<Sp<String>>,
    buffer: Option<Sp<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(rename = "type")]
    kind: Sp<String>,
    path: Option<Sp<String>>,
    repeat: Option<Sp<u64>>,
    count: Option<Sp<u64>>,
    size: Option<Sp<usize>>,
    batch_size: Option<Sp<usize>>,
    linger: Option<Sp<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    inputs: Sp<Vec<Sp<String>>>,
    plugin: Sp<String>,
    #[serde(default)]
    settings: BTreeMap<String, Sp<toml::Value>>,
    workers: Option<Sp<usize>>,
    fuel: Option<Sp<u64>>,
    timeout: Option<Sp<String>>,
    memory: Option<Sp<String>>,
    retries: Option<Sp<u32>>,
    on_error: Option<Sp<String>>,
    max_output_events: Option<Sp<usize>>,
    max_output_bytes: Option<Sp<String>>,
    max_value_size: Option<Sp<String>>,
    breaker: Option<RawBreaker>,
    grant: Option<RawGrant>,
    // hot loading
    watch: Option<Sp<bool>>,
    canary: Option<Sp<RawCanary>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    window: Option<Sp<usize>>,
    threshold: Option<Sp<f64>>,
    cooldown: Option<Sp<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    #[serde(default)]
    dirs: Vec<Sp<RawDir>>,
    #[serde(default)]
    env: Vec<Sp<String>>,
    #[serde(default)]
    network: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    host: Sp<String>,
    guest: Sp<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    inputs: Sp<Vec<Sp<String>>>,
    #[serde(rename = "type")]
    kind: Sp<String>,
    path: Option<Sp<String>>,
    encoding: Option<Sp<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeadLetter {
    #[serde(rename = "type")]
    kind: Sp<String>,
    path: Option<Sp<String>>,
}

// ---- checking --------------------------------------------------------------------------------

/// Turns byte spans into errors with line numbers.
struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    dir: PathBuf,
}

impl Ctx<'_> {
    fn line_of(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err(
        &self,
        span: &Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: Some(self.line_of(span)),
            key: Some(key.into()),
            message: message.into(),
        }
    }

    fn path(&self, raw: &str) -> PathBuf {
        let p = Path::new(raw);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    fn duration(&self, raw: &Sp<String>, key: String) -> Result<Duration, ConfigError> {
        parse_duration(raw.get_ref()).map_err(|m| self.err(&raw.span(), key, m))
    }

    fn positive(&self, raw: &Sp<usize>, key: String) -> Result<usize, ConfigError> {
        match *raw.get_ref() {
            0 => Err(self.err(&raw.span(), key, "must be at least 1")),
            n => Ok(n),
        }
    }
}

/// Parses `250ms`, `2s`, `1m`, `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| {
        format!("`{text}` is not a duration: write a number and a unit, such as `100ms` or `2s`")
    })?;
    let seconds = match unit.trim() {
        "us" | "µs" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" | "min" => number * 60.0,
        other => {
            return Err(format!(
                "`{other}` is not a unit of time: use `us`, `ms`, `s` or `m`"
            ));
        }
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses `64MiB`, `512KiB`, `1GiB`, `4096` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        format!("`{text}` is not a size: write a number and a unit, such as `64MiB`")
    })?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "`{other}` is not a unit of size: use `KiB`, `MiB` or `GiB`"
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too large"))
}

impl Pipeline {
    /// Reads and checks a pipeline file.
    pub fn load(file: &Path) -> Result<Pipeline, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read the pipeline file: {e}"),
        })?;
        Pipeline::parse(file, &text)
    }

    /// Checks the text of a pipeline file; `file` names it in errors and anchors relative paths.
    pub fn parse(file: &Path, text: &str) -> Result<Pipeline, ConfigError> {
        let dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let cx = Ctx { file, text, dir };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| cx.line_of(&s));
            ConfigError {
                file: file.to_path_buf(),
                line,
                key: None,
                message: e.message().trim().to_string(),
            }
        })?;

        let global = raw.pipeline.as_ref();
        let batch_size = match global.and_then(|g| g.batch_size.as_ref()) {
            Some(v) => cx.positive(v, "pipeline.batch_size".into())?,
            None => DEFAULT_BATCH_SIZE,
        };
        let linger = match global.and_then(|g| g.linger.as_ref()) {
            Some(v) => cx.duration(v, "pipeline.linger".into())?,
            None => DEFAULT_LINGER,
        };
        let buffer = match global.and_then(|g| g.buffer.as_ref()) {
            Some(v) => cx.positive(v, "pipeline.buffer".into())?,
            None => DEFAULT_BUFFER,
        };

        if raw.sources.is_empty() {
            return Err(ConfigError {
                file: file.to_path_buf(),
                line: None,
                key: Some("sources".into()),
                message: "the pipeline has no source: add a `[sources.NAME]` table".into(),
            });
        }
        if raw.sinks.is_empty() {
            return Err(ConfigError {
                file: file.to_path_buf(),
                line: None,
                key: Some("sinks".into()),
                message: "the pipeline has no sink: add a `[sinks.NAME]` table".into(),
            });
        }

        // Every name lives in one namespace, so that `inputs` is never ambiguous.
        let mut names: BTreeMap<&str, &'static str> = BTreeMap::new();
        for name in raw.sources.keys() {
            names.insert(name, "source");
        }
        for (name, stage) in &raw.stages {
            if let Some(other) = names.insert(name, "stage") {
                return Err(cx.err(
                    &stage.span(),
                    format!("stages.{name}"),
                    format!("the name `{name}` is already used by a {other}: names must be unique"),
                ));
            }
        }
        for (name, sink) in &raw.sinks {
            if let Some(other) = names.insert(name, "sink") {
                return Err(cx.err(
                    &sink.span(),
                    format!("sinks.{name}"),
                    format!("the name `{name}` is already used by a {other}: names must be unique"),
                ));
            }
        }

        let mut sources = Vec::new();
        for (name, raw) in &raw.sources {
            sources.push(check_source(&cx, name, raw.get_ref(), batch_size, linger)?);
        }

        let check_inputs = |section: &str, name: &str, inputs: &Sp<Vec<Sp<String>>>| {
            if inputs.get_ref().is_empty() {
                return Err(cx.err(
                    &inputs.span(),
                    format!("{section}.{name}.inputs"),
                    "needs at least one input",
                ));
            }
            let mut seen = BTreeSet::new();
            for input in inputs.get_ref() {
                let key = format!("{section}.{name}.inputs");
                match names.get(input.get_ref().as_str()) {
                    None => {
                        return Err(cx.err(
                            &input.span(),
                            key,
                            format!(
                                "unknown input `{}`: no source or stage has that name",
                                input.get_ref()
                            ),
                        ));
                    }
                    Some(&"sink") => {
                        return Err(cx.err(
                            &input.span(),
                            key,
                            format!("`{}` is a sink: a sink cannot be an input", input.get_ref()),
                        ));
                    }
                    Some(_) => {}
                }
                if !seen.insert(input.get_ref().as_str()) {
                    return Err(cx.err(
                        &input.span(),
                        key,
                        format!("input `{}` is listed twice", input.get_ref()),
                    ));
                }
            }
            Ok(inputs
                .get_ref()
                .iter()
                .map(|i| i.get_ref().clone())
                .collect::<Vec<_>>())
        };

        let mut stages = Vec::new();
        for (name, spanned) in &raw.stages {
            let raw = spanned.get_ref();
            let inputs = check_inputs("stages", name, &raw.inputs)?;
            stages.push(check_stage(&cx, name, raw, inputs)?);
        }
        check_acyclic(&cx, &raw.stages)?;
        // Upstream stages first, so that reports and logs read in the direction of the flow.
        let mut ordered = Vec::with_capacity(stages.len());
        while !stages.is_empty() {
            let ready = stages
                .iter()
                .position(|s: &Stage| {
                    s.inputs
                        .iter()
                        .all(|i| !stages.iter().any(|o| &o.name == i))
                })
                .expect("an acyclic graph always has a stage whose inputs are placed");
            ordered.push(stages.remove(ready));
        }
        let stages = ordered;

        let mut sinks = Vec::new();
        for (name, spanned) in &raw.sinks {
            let raw = spanned.get_ref();
            let inputs = check_inputs("sinks", name, &raw.inputs)?;
            sinks.push(check_sink(&cx, name, raw, inputs)?);
        }

        // A source or stage whose output nobody reads would drop every event it makes.
        let consumed: BTreeSet<&str> = stages
            .iter()
            .flat_map(|s| &s.inputs)
            .chain(sinks.iter().flat_map(|s| &s.inputs))
            .map(String::as_str)
            .collect();
        for (section, name, span) in raw
            .sources
            .iter()
            .map(|(n, s)| ("sources", n, s.span()))
            .chain(raw.stages.iter().map(|(n, s)| ("stages", n, s.span())))
        {
            if !consumed.contains(name.as_str()) {
                return Err(cx.err(
                    &span,
                    format!("{section}.{name}"),
                    format!("`{name}` feeds nothing: name it in the `inputs` of a stage or sink"),
                ));
            }
        }

        let dead_letter = match &raw.dead_letter {
            None => DeadLetterConfig::Stderr,
            Some(dl) => {
                let dl = dl.get_ref();
                match dl.kind.get_ref().as_str() {
                    "stderr" => {
                        if let Some(p) = &dl.path {
                            return Err(cx.err(
                                &p.span(),
                                "dead_letter.path",
                                "a `stderr` dead-letter sink takes no path",
                            ));
                        }
                        DeadLetterConfig::Stderr
                    }
                    "file" => match &dl.path {
                        Some(p) => DeadLetterConfig::File {
                            path: cx.path(p.get_ref()),
                        },
                        None => {
                            return Err(cx.err(
                                &dl.kind.span(),
                                "dead_letter.path",
                                "a `file` dead-letter sink needs `path`",
                            ));
                        }
                    },
                    other => {
                        return Err(cx.err(
                            &dl.kind.span(),
                            "dead_letter.type",
                            format!("unknown dead-letter type `{other}`: use `file` or `stderr`"),
                        ));
                    }
                }
            }
        };

        Ok(Pipeline {
            file: file.to_path_buf(),
            sources,
            stages,
            sinks,
            dead_letter,
            batch_size,
            linger,
            buffer,
            admin: raw
                .admin
                .as_ref()
                .map(|a| check_admin(&cx, a))
                .transpose()?,
        })
    }

    /// The most events that can be in flight at once (emitted by a source, not yet written or
    /// dead-lettered), as this configuration implies: every channel full, every stage worker
    /// busy and every stage's reorder window full, each with a full batch, plus what a sink
    /// holds before it flushes. This is the memory bound that backpressure keeps.
    /// An error about setting `key` of stage `stage`, found after the file was read (a plugin
    /// that does not declare it, or declares another type).
    pub fn setting_error(&self, stage: &str, key: &str, message: &str) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: None,
            key: Some(format!("stages.{stage}.settings.{key}")),
            message: message.to_string(),
        }
    }

    pub fn in_flight_bound(&self) -> u64 {
        let batch = self
            .sources
            .iter()
            .map(|s| s.batch_size)
            .max()
            .unwrap_or(self.batch_size) as u64;
        let channels = (self.stages.len() + self.sinks.len()) as u64 * self.buffer as u64;
        // A stage holds a batch per worker, and as many finished batches waiting their turn.
        let stages: u64 = self.stages.iter().map(|s| 2 * s.workers as u64 + 1).sum();
        // Each sink holds what it wrote but has not flushed (it flushes every `buffer` batches
        // at the latest), plus the batch it is writing; each source the batch it is sending.
        let sinks = self.sinks.len() as u64 * (self.buffer as u64 + 1);
        let sources = self.sources.len() as u64;
        (channels + stages + sinks + sources) * batch
    }
}

fn check_source(
    cx: &Ctx,
    name: &str,
    raw: &RawSource,
    batch_size: usize,
    linger: Duration,
) -> Result<Source, ConfigError> {
    let key = |k: &str| format!("sources.{name}.{k}");
    // Fields a source type does not use are refused, not ignored: a typo'd setup must not
    // run quietly with defaults.
    let unused = |fields: &[(&str, Option<Range<usize>>)], kind: &str| -> Result<(), ConfigError> {
        match fields.iter().find(|(_, sp)| sp.is_some()) {
            Some((k, Some(sp))) => {
                Err(cx.err(sp, key(k), format!("a `{kind}` source has no `{k}`")))
            }
            _ => Ok(()),
        }
    };
    let path_span = raw.path.as_ref().map(|f| f.span());
    let repeat_span = raw.repeat.as_ref().map(|f| f.span());
    let count_span = raw.count.as_ref().map(|f| f.span());
    let size_span = raw.size.as_ref().map(|f| f.span());
    let kind = match raw.kind.get_ref().as_str() {
        "stdin" => {
            unused(
                &[
                    ("path", path_span),
                    ("repeat", repeat_span),
                    ("count", count_span),
                    ("size", size_span),
                ],
                "stdin",
            )?;
            SourceKind::Stdin
        }
        "file" => {
            unused(&[("count", count_span), ("size", size_span)], "file")?;
            let path = match &raw.path {
                Some(p) => cx.path(p.get_ref()),
                None => {
                    return Err(cx.err(
                        &raw.kind.span(),
                        key("path"),
                        "a `file` source needs `path`",
                    ));
                }
            };
            if !path.is_file() {
                let span = raw
                    .path
                    .as_ref()
                    .map(|p| p.span())
                    .unwrap_or(raw.kind.span());
                return Err(cx.err(
                    &span,
                    key("path"),
                    format!("no such file: {}", path.display()),
                ));
            }
            let repeat = raw.repeat.as_ref().map(|r| *r.get_ref()).unwrap_or(1);
            SourceKind::File { path, repeat }
        }
        "generate" => {
            unused(&[("path", path_span), ("repeat", repeat_span)], "generate")?;
            let count = match &raw.count {
                Some(c) => *c.get_ref(),
                None => {
                    return Err(cx.err(
                        &raw.kind.span(),
                        key("count"),
                        "a `generate` source needs `count`",
                    ));
                }
            };
            let size = raw.size.as_ref().map(|s| *s.get_ref()).unwrap_or(100);
            SourceKind::Generate { count, size }
        }
        other => {
            return Err(cx.err(
                &raw.kind.span(),
                key("type"),
                format!("unknown source type `{other}`: use `stdin`, `file` or `generate`"),
            ));
        }
    };
    Ok(Source {
        name: name.to_string(),
        kind,
        batch_size: match &raw.batch_size {
            Some(v) => cx.positive(v, key("batch_size"))?,
            None => batch_size,
        },
        linger: match &raw.linger {
            Some(v) => cx.duration(v, key("linger"))?,
            None => linger,
        },
    })
}

fn check_stage(
    cx: &Ctx,
    name: &str,
    raw: &RawStage,
    inputs: Vec<String>,
) -> Result<Stage, ConfigError> {
    let key = |k: &str| format!("stages.{name}.{k}");
    let plugin = cx.path(raw.plugin.get_ref());
    if !plugin.is_file() {
        return Err(cx.err(
            &raw.plugin.span(),
            key("plugin"),
            format!(
                "plugin file not found: {} (build it first, or fix the path)",
                plugin.display()
            ),
        ));
    }
    let mut settings = Vec::with_capacity(raw.settings.len());
    for (k, v) in &raw.settings {
        let text = match v.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            toml::Value::Array(_) | toml::Value::Table(_) => {
                return Err(cx.err(
                    &v.span(),
                    format!("stages.{name}.settings.{k}"),
                    "a setting must be a string, number or boolean",
                ));
            }
        };
        settings.push((k.clone(), text));
    }
    let defaults = Limits::default();
    let limits = Limits {
        fuel: match &raw.fuel {
            Some(f) if *f.get_ref() == 0 => {
                return Err(cx.err(&f.span(), key("fuel"), "must be at least 1"));
            }
            Some(f) => *f.get_ref(),
            None => defaults.fuel,
        },
        timeout: match &raw.timeout {
            Some(t) => {
                let d = cx.duration(t, key("timeout"))?;
                if d.is_zero() {
                    return Err(cx.err(&t.span(), key("timeout"), "must be more than zero"));
                }
                d
            }
            None => defaults.timeout,
        },
        memory: match &raw.memory {
            Some(m) => {
                let bytes =
                    parse_size(m.get_ref()).map_err(|e| cx.err(&m.span(), key("memory"), e))?;
                // Below one wasm page nothing can run; above 4 GiB a 32-bit guest cannot
                // address it anyway.
                if !(64 << 10..=4 << 30).contains(&bytes) {
                    return Err(cx.err(&m.span(), key("memory"), "must be between 64KiB and 4GiB"));
                }
                bytes
            }
            None => defaults.memory,
        },
        max_output_events: match &raw.max_output_events {
            Some(v) => cx.positive(v, key("max_output_events"))?,
            None => defaults.max_output_events,
        },
        max_output_bytes: match &raw.max_output_bytes {
            Some(v) => parse_size(v.get_ref())
                .map_err(|e| cx.err(&v.span(), key("max_output_bytes"), e))?,
            None => defaults.max_output_bytes,
        },
        max_value_size: match &raw.max_value_size {
            Some(v) => {
                parse_size(v.get_ref()).map_err(|e| cx.err(&v.span(), key("max_value_size"), e))?
            }
            None => defaults.max_value_size,
        },
    };
    let mut breaker = Breaker::default();
    if let Some(b) = &raw.breaker {
        if let Some(w) = &b.window {
            breaker.window = cx.positive(w, key("breaker.window"))?;
        }
        if let Some(t) = &b.threshold {
            if !(*t.get_ref() > 0.0 && *t.get_ref() <= 1.0) {
                return Err(cx.err(
                    &t.span(),
                    key("breaker.threshold"),
                    "must be a fraction above 0 and at most 1",
                ));
            }
            breaker.threshold = *t.get_ref();
        }
        if let Some(c) = &b.cooldown {
            breaker.cooldown = cx.duration(c, key("breaker.cooldown"))?;
        }
    }
    let mut grant = Grant::default();
    if let Some(g) = &raw.grant {
        for dir in &g.dirs {
            let dir = dir.get_ref();
            let host = cx.path(dir.host.get_ref());
            if !host.is_dir() {
                return Err(cx.err(
                    &dir.host.span(),
                    key("grant.dirs"),
                    format!("no such directory: {}", host.display()),
                ));
            }
            if !dir.guest.get_ref().starts_with('/') {
                return Err(cx.err(
                    &dir.guest.span(),
                    key("grant.dirs"),
                    "the guest path must be absolute, such as `/data`",
                ));
            }
            grant.dirs.push(DirGrant {
                host,
                guest: dir.guest.get_ref().clone(),
            });
        }
        grant.env = g.env.iter().map(|e| e.get_ref().clone()).collect();
        grant.network = g.network;
    }
    let on_error = match &raw.on_error {
        None => OnError::DeadLetter,
        Some(v) => match v.get_ref().as_str() {
            "dead-letter" => OnError::DeadLetter,
            "drop" => OnError::Drop,
            "stop" => OnError::Stop,
            other => {
                return Err(cx.err(
                    &v.span(),
                    key("on_error"),
                    format!("unknown policy `{other}`: use `dead-letter`, `drop` or `stop`"),
                ));
            }
        },
    };
    Ok(Stage {
        name: name.to_string(),
        inputs,
        plugin,
        settings,
        workers: match &raw.workers {
            Some(w) => cx.positive(w, key("workers"))?,
            None => 1,
        },
        limits,
        retries: raw.retries.as_ref().map(|r| *r.get_ref()).unwrap_or(3),
        on_error,
        breaker,
        grant,
        watch: raw.watch.as_ref().is_some_and(|w| *w.get_ref()),
        canary: check_canary(cx, name, raw.canary.as_ref())?,
    })
}

fn check_sink(
    cx: &Ctx,
    name: &str,
    raw: &RawSink,
    inputs: Vec<String>,
) -> Result<Sink, ConfigError> {
    let key = |k: &str| format!("sinks.{name}.{k}");
    let kind = match raw.kind.get_ref().as_str() {
        "stdout" => SinkKind::Stdout,
        "null" => SinkKind::Null,
        "file" => match &raw.path {
            Some(p) => SinkKind::File {
                path: cx.path(p.get_ref()),
            },
            None => {
                return Err(cx.err(&raw.kind.span(), key("path"), "a `file` sink needs `path`"));
            }
        },
        other => {
            return Err(cx.err(
                &raw.kind.span(),
                key("type"),
                format!("unknown sink type `{other}`: use `stdout`, `file` or `null`"),
            ));
        }
    };
    if !matches!(kind, SinkKind::File { .. })
        && let Some(p) = &raw.path
    {
        return Err(cx.err(
            &p.span(),
            key("path"),
            format!("a `{}` sink has no `path`", raw.kind.get_ref()),
        ));
    }
    let encoding = match &raw.encoding {
        None => Encoding::Text,
        Some(e) => match e.get_ref().as_str() {
            "text" => Encoding::Text,
            "json" => Encoding::Json,
            other => {
                return Err(cx.err(
                    &e.span(),
                    key("encoding"),
                    format!("unknown encoding `{other}`: use `text` or `json`"),
                ));
            }
        },
    };
    Ok(Sink {
        name: name.to_string(),
        inputs,
        kind,
        encoding,
    })
}

/// Stages may only feed forward: a cycle would make a batch circle forever.
fn check_acyclic(cx: &Ctx, stages: &BTreeMap<String, Sp<RawStage>>) -> Result<(), ConfigError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        stages: &'a BTreeMap<String, Sp<RawStage>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        match marks.get(name) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(name);
                return Some(cycle);
            }
            None => {}
        }
        let stage = stages.get(name)?;
        marks.insert(name, Mark::Visiting);
        path.push(name);
        for input in stage.get_ref().inputs.get_ref() {
            if let Some(cycle) = visit(input.get_ref(), stages, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(name, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in stages.keys() {
        if let Some(cycle) = visit(name, stages, &mut marks, &mut Vec::new()) {
            let first = cycle[0];
            let stage = stages[first].get_ref();
            return Err(cx.err(
                &stage.inputs.span(),
                format!("stages.{first}.inputs"),
                format!("the stages form a cycle: {}", cycle.join(" -> ")),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Pipeline, ConfigError> {
        Pipeline::parse(Path::new("/nonexistent/p.toml"), text)
    }

    #[test]
    fn durations_and_sizes_read_their_units() {
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("10 parsecs").is_err());
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn a_cycle_is_named_with_its_line() {
        let text = "[sources.s]\ntype = \"stdin\"\n\n[stages.a]\ninputs = [\"b\"]\nplugin = \"/bin/sh\"\n\n[stages.b]\ninputs = [\"a\"]\nplugin = \"/bin/sh\"\n\n[sinks.o]\ninputs = [\"a\"]\ntype = \"null\"\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.line, Some(5), "{err}");
        assert!(err.message.contains("cycle"), "{err}");
    }

    #[test]
    fn the_admin_table_needs_a_long_enough_token_and_the_canary_a_rate() {
        let base = "[sources.s]\ntype = \"stdin\"\n[sinks.o]\ninputs = [\"s\"]\ntype = \"null\"\n";
        let admin = |table: &str| parse(&format!("{base}[admin]\n{table}"));
        let err = admin("listen = \"127.0.0.1:0\"\n").unwrap_err();
        assert!(err.message.contains("needs a bearer token"), "{err}");
        let err = admin("token = \"short\"\n").unwrap_err();
        assert!(err.message.contains("at least 16"), "{err}");
        let err = admin("token_env = \"WEIR_NO_SUCH_VARIABLE_FOR_TESTS\"\n").unwrap_err();
        assert!(err.message.contains("is not set"), "{err}");
        let ok = admin("token = \"0123456789abcdef\"\n").unwrap();
        let listen = ok.admin.map(|a| a.listen.to_string());
        assert_eq!(listen.as_deref(), Some(DEFAULT_ADMIN_LISTEN));

        let stage = |extra: &str| {
            parse(&format!(
                "[sources.s]\ntype = \"stdin\"\n[stages.a]\ninputs = [\"s\"]\nplugin = \"/bin/sh\"\n{extra}\n[sinks.o]\ninputs = [\"a\"]\ntype = \"null\"\n"
            ))
        };
        let err = stage("canary = { max_failure_rate = 1.5 }").unwrap_err();
        assert!(err.message.contains("between 0 and 1"), "{err}");
        let ok = stage("watch = true\ncanary = { events = 10 }").unwrap();
        assert!(ok.stages[0].watch);
        assert_eq!(ok.stages[0].canary.events, 10);
        assert_eq!(ok.stages[0].canary.max_failure_rate, 0.5);
    }

    #[test]
    fn an_unknown_field_names_its_line() {
        let text = "[sources.s]\ntype = \"stdin\"\ncolour = \"red\"\n[sinks.o]\ninputs = [\"s\"]\ntype = \"null\"\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("colour"), "{err}");
    }
}
