//! Pipeline files: TOML text in, a checked [`Pipeline`] out.
//!
//! Parsing happens in two passes. `toml` + serde turn the text into raw tables while keeping
//! the byte span of every value that a later check may complain about; then [`Pipeline::parse`]
//! checks the meaning (types of connectors, names of inputs, cycles, plugin files, units) and
//! turns every span into a line number, so each error names the file, the line and the key.
//! Relative paths in a pipeline file are taken relative to the file's own folder, so a pipeline
//! runs the same from any working directory.

mod admin;
mod error;
mod graph;
mod raw;
mod sink;
mod source;
mod stage;
#[cfg(test)]
mod tests;
mod units;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::ConfigError;
pub use units::{parse_duration, parse_size};
pub use weir_sandbox::{DirGrant, Grant};

use error::Ctx;
use raw::RawFile;

/// Events per batch unless the file says otherwise: large enough to amortise the sandbox
/// boundary (one call per batch), small enough that one batch stays a few tens of KiB.
pub const DEFAULT_BATCH_SIZE: usize = 256;
/// How long a partly filled batch may wait for more events: the bound on added latency.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);
/// Batches a channel between two nodes holds. Together with the batch size this bounds the
/// events in flight, and so the memory a slow sink can make the host hold.
pub const DEFAULT_BUFFER: usize = 4;

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

impl Limits {
    /// The limits the sandbox enforces on a call (fuel, deadline, memory); the output caps
    /// are the host's to enforce.
    pub fn sandbox(&self) -> weir_sandbox::Limits {
        weir_sandbox::Limits {
            fuel: self.fuel,
            timeout: self.timeout,
            memory: self.memory,
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
        let names = graph::names(&cx, &raw)?;

        let mut sources = Vec::new();
        for (name, raw) in &raw.sources {
            sources.push(source::check_source(
                &cx,
                name,
                raw.get_ref(),
                batch_size,
                linger,
            )?);
        }
        let mut stages = Vec::new();
        for (name, spanned) in &raw.stages {
            let raw = spanned.get_ref();
            let inputs = graph::inputs(&cx, &names, "stages", name, &raw.inputs)?;
            stages.push(stage::check_stage(&cx, name, raw, inputs)?);
        }
        graph::check_acyclic(&cx, &raw.stages)?;
        let stages = graph::upstream_first(stages);
        let mut sinks = Vec::new();
        for (name, spanned) in &raw.sinks {
            let raw = spanned.get_ref();
            let inputs = graph::inputs(&cx, &names, "sinks", name, &raw.inputs)?;
            sinks.push(sink::check_sink(&cx, name, raw, inputs)?);
        }
        graph::check_consumed(&cx, &raw, &stages, &sinks)?;

        Ok(Pipeline {
            file: file.to_path_buf(),
            sources,
            stages,
            sinks,
            dead_letter: sink::check_dead_letter(&cx, raw.dead_letter.as_ref())?,
            batch_size,
            linger,
            buffer,
            admin: raw
                .admin
                .as_ref()
                .map(|a| admin::check_admin(&cx, a))
                .transpose()?,
        })
    }

    /// The most events that can be in flight at once (emitted by a source, not yet written or
    /// dead-lettered), as this configuration implies: every channel full, every stage worker
    /// busy and every stage's reorder window full, each with a full batch, plus what a sink
    /// holds before it flushes. This is the memory bound that backpressure keeps.
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
