//! Pipeline files: TOML text in, a checked [`Pipeline`] out.
//!
//! Checking happens in two passes. First the text is parsed into raw tables that keep the byte
//! span of every key and value, refusing unknown keys (with the closest known one), values of
//! the wrong type and missing required keys; then each concern checks the meaning (ranges,
//! kinds of connectors, names and inputs, cycles, plugin files) and turns spans into lines, so
//! that every error names the file, the line and the full key path (`stages.parse.inputs`).
//! Relative paths in a pipeline file are taken relative to the file's own folder, so a pipeline
//! runs the same from any working directory.
//!
//! The modules, leaves first (each imports only modules above it):
//!
//! - `error`: [`ConfigError`], and the context that turns a span into a line.
//! - `ranges`: the range of every number and duration, each with the threat it blocks.
//! - `units`: durations, sizes, whole numbers and fractions, parsed and checked against a range.
//! - `names`: what node names, setting keys and environment variable names may hold.
//! - `reader`: the TOML tree read table by table: key paths, types, unknown keys.
//! - `raw`: the tables as written (every known key, typed, with its span).
//! - `graph`: one namespace for every node, inputs, fan-in, cycles, flow order.
//! - `source`, `stage`, `sink` (with `[dead_letter]`), `admin`: the checks of each table.
//!
//! This file holds the checked types and [`Pipeline::parse`], which runs the passes in order.

mod admin;
mod error;
mod graph;
mod names;
pub mod ranges;
mod raw;
mod reader;
mod sink;
mod source;
mod stage;
mod units;

#[cfg(test)]
mod mutations;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use admin::{TokenFileError, read_token_file};
pub use error::ConfigError;
pub(crate) use error::{plain, shown};
pub(crate) use units::fmt_duration;
pub use units::{parse_duration, parse_size};
pub use weir_sandbox::{DirGrant, Grant};

use error::Ctx;

/// Events per batch unless the file says otherwise: large enough to amortise the sandbox
/// boundary (one call per batch), small enough that one batch stays a few tens of KiB.
pub const DEFAULT_BATCH_SIZE: usize = 256;
/// How long a partly filled batch may wait for more events: the bound on added latency.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);
/// Batches a channel between two nodes holds. Together with the batch size this bounds the
/// events in flight, and so the memory a slow sink can make the host hold.
pub const DEFAULT_BUFFER: usize = 4;
/// Instances a stage runs in parallel unless the file says otherwise.
pub const DEFAULT_WORKERS: usize = 1;
/// Retries of an event that asks for one, unless the file says otherwise.
pub const DEFAULT_RETRIES: u32 = 3;
/// Bytes per value of a `generate` source, unless the file says otherwise (workload W1).
pub const DEFAULT_GENERATE_SIZE: usize = 100;

/// A checked pipeline: every input exists, the graph has no cycle, every plugin file exists.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file it was read from.
    pub file: PathBuf,
    pub sources: Vec<Source>,
    /// Upstream stages first.
    pub stages: Vec<Stage>,
    pub sinks: Vec<Sink>,
    pub dead_letter: DeadLetterConfig,
    /// `[pipeline] batch_size`, in [`ranges::BATCH_SIZE`]: 1 to 65,536.
    pub batch_size: usize,
    /// `[pipeline] linger`, in [`ranges::LINGER`]: 0 to 60 s.
    pub linger: Duration,
    /// `[pipeline] buffer`, in [`ranges::BUFFER`]: 1 to 1,024 batches.
    pub buffer: usize,
    /// `[pipeline] chain` (default true): run consecutive stages with one input and one
    /// consumer on the same worker threads. Off, every stage runs on threads of its own, with a
    /// channel between stages: more parallelism across stages, a hop per stage per batch.
    pub chain: bool,
    /// `[pipeline] data_dir`: where sources keep their checkpoints; none, no checkpoints.
    pub data_dir: Option<PathBuf>,
    /// `[pipeline] checkpoint_interval`, in [`ranges::CHECKPOINT_INTERVAL`]: 10 ms to 1 h;
    /// 1 s unless set.
    pub checkpoint_interval: Duration,
    /// Hot loading: the admin API, when the file has an `[admin]` table.
    pub admin: Option<Admin>,
    /// `/metrics`, `/health` and the live page, when the file has a `[metrics]` table.
    pub metrics: Option<Metrics>,
}

/// Where `/metrics` listens unless the file says otherwise: loopback, like the admin API, on
/// the port Vector's Prometheus exporter uses.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9598";

/// The metrics listener: `/metrics` (Prometheus), `/health` and the live page. It only reads,
/// so it needs no token; beyond loopback anyone who reaches the port sees the counters and
/// the graph (never events: those go through the admin API's `weir tap`).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub listen: std::net::SocketAddr,
    /// The line of `listen` (of `[metrics]` when the default is used).
    pub listen_line: usize,
    /// How long the listener keeps answering once the run has ended, so that a last scrape
    /// sees the final counts; in [`ranges::METRICS_LINGER`], 0 unless set.
    pub linger: Duration,
}

/// How often a source commits its position unless the file says otherwise.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Where a NATS source or sink connects unless the file says otherwise.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    /// In [`ranges::BATCH_SIZE`]; the pipeline's unless the source sets its own.
    pub batch_size: usize,
    /// In [`ranges::LINGER`]; the pipeline's unless the source sets its own.
    pub linger: Duration,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    Stdin,
    /// One event per line; `repeat` (in [`ranges::REPEAT`], 1 to 1,000,000) reads the file that
    /// many times in a row.
    File {
        path: PathBuf,
        repeat: u64,
    },
    /// `count` events (in [`ranges::COUNT`], 0 to 10^12) whose values are `size` bytes (in
    /// [`ranges::GENERATE_SIZE`], 0 to 16 MiB): byte `j` of event `i` is
    /// `b'a' + (i + j) % 26` (benchmark workload W1).
    Generate {
        count: u64,
        size: usize,
    },
    /// A durable pull consumer of a NATS JetStream stream.
    Nats(NatsSource),
}

/// A NATS JetStream source.
#[derive(Debug, Clone)]
pub struct NatsSource {
    pub url: String,
    pub stream: String,
    /// The durable consumer's name; created with `subject` as its filter if it does not exist.
    pub consumer: String,
    pub subject: Option<String>,
    /// Messages fetched per request, in [`ranges::NATS_BATCH`]; the source's batch size unless set.
    pub batch: usize,
    /// In [`ranges::ACK_WAIT`]: 1 s to a day; 30 s unless set.
    pub ack_wait: Duration,
    /// In [`ranges::MAX_ACK_PENDING`]; 4 × the fetch batch unless set.
    pub max_ack_pending: usize,
    /// The header whose value becomes the event's key.
    pub key_header: Option<String>,
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
    /// In [`ranges::WORKERS`]: 1 to 64.
    pub workers: usize,
    pub limits: Limits,
    /// In [`ranges::RETRIES`]: 0 to 100.
    pub retries: u32,
    pub on_error: OnError,
    pub breaker: Breaker,
    pub grant: Grant,
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
        let settings = error::join(&error::join("stages", &self.name), "settings");
        ConfigError {
            file: self.lines.file.clone(),
            line: Some(
                self.lines
                    .settings
                    .get(key)
                    .copied()
                    .unwrap_or(self.lines.table),
            ),
            key: Some(error::join(&settings, key)),
            message: message.into(),
        }
    }

    /// An error about this stage's plugin, as `stages.NAME.plugin` at the line of that key.
    pub fn plugin_error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.lines.file.clone(),
            line: Some(self.lines.plugin),
            key: Some(error::join(&error::join("stages", &self.name), "plugin")),
            message: message.into(),
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
    /// In [`ranges::BREAKER_WINDOW`]: 1 to 1,000,000 events.
    pub window: usize,
    /// Above 0 and at most 1.
    pub threshold: f64,
    /// In [`ranges::BREAKER_COOLDOWN`]: 0 to 1 h.
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
/// How long a client has to send a request's head (request line and headers), counted from
/// when the connection is ready for it. Blocks a head sent a byte at a time ("slowloris").
pub const DEFAULT_ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may stay open with no byte moving and no request being handled.
/// Blocks connections opened and left silent, or kept alive and forgotten, from holding a
/// file descriptor and a connection slot.
pub const DEFAULT_ADMIN_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request's body may take to arrive, from the end of its head. Blocks a body
/// trickled byte by byte from holding one of the few request slots (and a buffer) for ever.
pub const DEFAULT_ADMIN_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections open at once. Blocks a flood of connections, each within its timeouts, from
/// exhausting the host's file descriptors and memory.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;

/// The admin API: where it listens, the bearer token every request must carry, TLS when it
/// listens beyond loopback, and the limits each connection is served under.
#[derive(Clone)]
pub struct Admin {
    pub listen: std::net::SocketAddr,
    /// The line of `listen` (of `[admin]` when the default is used): an address that cannot
    /// be bound is refused there.
    pub listen_line: usize,
    /// At least [`MIN_TOKEN_LEN`] characters, all visible ASCII (it travels in a header).
    pub token: String,
    /// `tls_cert` and `tls_key`, loaded; required when `listen` is beyond loopback.
    pub tls: Option<AdminTls>,
    pub limits: AdminLimits,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token stays out of logs and error messages.
        f.debug_struct("Admin")
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The admin API's certificate and key, read and checked against each other.
#[derive(Clone)]
pub struct AdminTls {
    /// The PEM files, as the pipeline file names them (relative to its folder).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The server's TLS settings, with the `ring` provider.
    pub config: std::sync::Arc<rustls::ServerConfig>,
}

impl fmt::Debug for AdminTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// What each connection to the admin API is held to; each default says the threat it blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// `header_timeout`, in [`ranges::ADMIN_TIMEOUT`]; also bounds a TLS handshake.
    pub header_timeout: Duration,
    /// `idle_timeout`, in [`ranges::ADMIN_TIMEOUT`].
    pub idle_timeout: Duration,
    /// `body_timeout`, in [`ranges::ADMIN_TIMEOUT`].
    pub body_timeout: Duration,
    /// `max_connections`, in [`ranges::ADMIN_MAX_CONNECTIONS`].
    pub max_connections: usize,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            header_timeout: DEFAULT_ADMIN_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_ADMIN_IDLE_TIMEOUT,
            body_timeout: DEFAULT_ADMIN_BODY_TIMEOUT,
            max_connections: DEFAULT_ADMIN_MAX_CONNECTIONS,
        }
    }
}

/// The canary guard of a stage: over the first `events` events a new version processes, a
/// failure rate above `max_failure_rate` rolls it back. `events = 0` turns the guard off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Canary {
    /// In [`ranges::CANARY_EVENTS`]: 0 to 10,000,000.
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

// ---- end of hot loading ----------------------------------------------------------------------

/// The sandbox limits of one stage. Each default blocks a threat named beside it; each range
/// is in [`ranges`], with the threat a value outside it would let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) per event; a call gets `events × fuel`. Blocks a
    /// plugin that burns CPU on every event and starves the other stages of the core.
    /// In [`ranges::FUEL`]: 1 to 10^12.
    pub fuel: u64,
    /// Wall-clock limit per call, enforced by epoch interruption. Blocks endless loops and
    /// host calls that block: a stuck call costs one deadline, never a stuck pipeline.
    /// In [`ranges::TIMEOUT`]: 1 ms to 1 h.
    pub timeout: Duration,
    /// Linear-memory cap per instance. Blocks a memory bomb from taking the host's memory.
    /// In [`ranges::MEMORY`]: 64 KiB to 4 GiB.
    pub memory: u64,
    /// Events out per event in. Blocks an amplification bomb (one event into millions)
    /// from flooding the stages and sinks downstream. In [`ranges::MAX_OUTPUT_EVENTS`]: 1 to
    /// 65,536.
    pub max_output_events: usize,
    /// Bytes out (keys, values, headers) per call. Blocks one call from handing the host
    /// an unbounded amount of data to hold and pass on. In [`ranges::MAX_OUTPUT_BYTES`]:
    /// 1 byte to 1 GiB.
    pub max_output_bytes: u64,
    /// Bytes per output value. Blocks single huge values from reaching sinks and later
    /// stages, each of which would copy them. In [`ranges::MAX_VALUE_SIZE`]: 1 byte to 1 GiB.
    pub max_value_size: u64,
}

impl Default for Limits {
    /// The sandbox's own defaults for what it enforces (one place for them, so that
    /// `weir plugin test` and a pipeline agree), and the host's for the output caps.
    fn default() -> Self {
        let sandbox = weir_sandbox::Limits::default();
        Limits {
            fuel: sandbox.fuel,
            timeout: sandbox.timeout,
            memory: sandbox.memory,
            max_output_events: 1024,
            max_output_bytes: 64 << 20,
            max_value_size: 16 << 20,
        }
    }
}

impl Limits {
    /// The limits the sandbox enforces on a call (fuel, deadline, memory, and what the call's
    /// output may cost); the per-input caps are the host's to enforce.
    pub fn sandbox(&self) -> weir_sandbox::Limits {
        weir_sandbox::Limits {
            fuel: self.fuel,
            timeout: self.timeout,
            memory: self.memory,
            output_bytes: self.max_output_bytes,
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
        mode: WriteMode,
        sync: SyncMode,
    },
    /// Counts events and bytes, writes nothing.
    Null,
    /// Publishes each event to a NATS JetStream subject, with a message id for deduplication.
    Nats {
        url: String,
        subject: String,
    },
}

/// What a file sink does with what the file already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Keep it and write after it (the default: a second run never destroys the first's).
    Append,
    /// Start empty.
    Truncate,
}

/// How far written events must have gone before their acknowledgement is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Flushed to the operating system: a crash of the process loses nothing acknowledged.
    Flush,
    /// Flushed and `fsync`ed: a crash of the machine loses nothing acknowledged.
    Fsync,
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
    File {
        path: PathBuf,
        mode: WriteMode,
        sync: SyncMode,
    },
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
    /// Never panics: whatever the text, the answer is a pipeline or an error with a place.
    pub fn parse(file: &Path, text: &str) -> Result<Pipeline, ConfigError> {
        let cx = Ctx::new(file, text);
        let raw = raw::read(&cx)?;
        let (batch_size, linger, buffer) = check_global(&cx, raw.pipeline.as_ref())?;
        let names = graph::names(&cx, &raw)?;
        let mut sources = Vec::with_capacity(raw.sources.len());
        for (name, source) in &raw.sources {
            sources.push(source::check(&cx, name, source, batch_size, linger)?);
        }
        let mut stages = Vec::with_capacity(raw.stages.len());
        for (name, stage) in &raw.stages {
            let inputs = graph::inputs(&cx, &names, "stages", name, &stage.inputs)?;
            stages.push(stage::check(&cx, name, stage, inputs)?);
        }
        let stages = graph::upstream_first(&cx, &raw.stages, stages)?;
        let mut sinks = Vec::with_capacity(raw.sinks.len());
        for (name, sink) in &raw.sinks {
            let inputs = graph::inputs(&cx, &names, "sinks", name, &sink.inputs)?;
            sinks.push(sink::check(&cx, name, sink, inputs)?);
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
            chain: raw
                .pipeline
                .as_ref()
                .and_then(|g| g.chain.as_ref())
                .is_none_or(|c| *c.get_ref()),
            data_dir: raw
                .pipeline
                .as_ref()
                .and_then(|g| g.data_dir.as_ref())
                .map(|d| cx.path(d.get_ref())),
            checkpoint_interval: match raw
                .pipeline
                .as_ref()
                .and_then(|g| g.checkpoint_interval.as_ref())
            {
                Some(v) => units::duration(
                    &cx,
                    v,
                    "pipeline.checkpoint_interval",
                    &ranges::CHECKPOINT_INTERVAL,
                )?,
                None => DEFAULT_CHECKPOINT_INTERVAL,
            },
            admin: raw
                .admin
                .as_ref()
                .map(|a| admin::check(&cx, a))
                .transpose()?,
            metrics: raw
                .metrics
                .as_ref()
                .map(|m| check_metrics(&cx, m))
                .transpose()?,
        })
    }
}

/// `[metrics]`: an address (loopback unless written otherwise) and the linger after the run.
fn check_metrics(cx: &Ctx, raw: &raw::RawMetrics) -> Result<Metrics, ConfigError> {
    let (listen, span) = match &raw.listen {
        Some(l) => {
            let addr = l.get_ref().parse().map_err(|_| {
                cx.err(
                    &l.span(),
                    "metrics.listen",
                    format!(
                        "{} is not an address: write IP:PORT, such as `127.0.0.1:9598`",
                        shown(l.get_ref())
                    ),
                )
            })?;
            (addr, l.span())
        }
        None => {
            let addr = DEFAULT_METRICS_LISTEN
                .parse()
                .map_err(|_| cx.err(&raw.table, "metrics.listen", "the default is unusable"))?;
            (addr, raw.table.clone())
        }
    };
    let linger = match &raw.linger {
        Some(v) => units::duration(cx, v, "metrics.linger", &ranges::METRICS_LINGER)?,
        None => Duration::ZERO,
    };
    Ok(Metrics {
        listen,
        listen_line: cx.line_of(&span),
        linger,
    })
}

/// `[pipeline]`: the batch size, linger and buffer every node uses unless it sets its own.
fn check_global(
    cx: &Ctx,
    raw: Option<&raw::RawGlobal>,
) -> Result<(usize, Duration, usize), ConfigError> {
    let Some(raw) = raw else {
        return Ok((DEFAULT_BATCH_SIZE, DEFAULT_LINGER, DEFAULT_BUFFER));
    };
    let batch_size = match &raw.batch_size {
        Some(v) => units::whole(cx, v, "pipeline.batch_size", &ranges::BATCH_SIZE)?,
        None => DEFAULT_BATCH_SIZE,
    };
    let linger = match &raw.linger {
        Some(v) => units::duration(cx, v, "pipeline.linger", &ranges::LINGER)?,
        None => DEFAULT_LINGER,
    };
    let buffer = match &raw.buffer {
        Some(v) => units::whole(cx, v, "pipeline.buffer", &ranges::BUFFER)?,
        None => DEFAULT_BUFFER,
    };
    Ok((batch_size, linger, buffer))
}
