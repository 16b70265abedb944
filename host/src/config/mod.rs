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
//! - `nats_url`: the `url` of a NATS source or sink, one server or a list of seeds.
//! - `partitions`: the partitions of a NATS subject, as a sink splits it and a source
//!   consumes some of it.
//! - `tls`: a listener's certificate and key (`[admin]`, a TCP source), loaded and checked.
//! - `reader`: the TOML tree read table by table: key paths, types, unknown keys.
//! - `kinds`: connector tables whose `type` chooses the keys they may hold; a key of another
//!   kind is refused by name.
//! - `listener`: the keys every HTTP listener takes (`[admin]`, an `http` source): its token,
//!   TLS and connection limits.
//! - `source` and `sink` (with `[dead_letter]`): what every source or sink has, and a folder
//!   with one file per kind (`source/stdin.rs`, `sink/file.rs`…), each holding that kind's
//!   keys, its table as written, its reader and its check.
//! - `raw`: the rest of the tables as written (every known key, typed, with its span): the
//!   top level, `[pipeline]`, stages, `[admin]`, `[metrics]`.
//! - `graph`: one namespace for every node, inputs, fan-in, cycles, flow order.
//! - `stage`, `admin`: each table's checked type beside its checks.
//! - `redrive`: the pipeline `weir redrive` runs, made from a checked one.
//!
//! The checked types of `source`, `stage`, `sink` and `admin` are re-exported here.
//!
//! This file holds [`Pipeline`], the `[pipeline]` and `[metrics]` tables, and
//! [`Pipeline::parse`], which runs the passes in order.

mod admin;
mod error;
mod graph;
mod kinds;
mod listener;
mod names;
mod nats_url;
mod partitions;
pub mod ranges;
mod raw;
mod reader;
mod redrive;
mod sink;
mod source;
mod stage;
mod tls;
mod units;

#[cfg(test)]
mod mutations;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use admin::{
    Admin, AdminLimits, DEFAULT_ADMIN_BODY_TIMEOUT, DEFAULT_ADMIN_HEADER_TIMEOUT,
    DEFAULT_ADMIN_IDLE_TIMEOUT, DEFAULT_ADMIN_LISTEN, DEFAULT_ADMIN_MAX_CONNECTIONS, MIN_TOKEN_LEN,
    TokenFileError, read_token_file,
};
pub use error::ConfigError;
pub(crate) use error::{plain, shown};
pub use partitions::Partitions;
pub use sink::{DeadLetterConfig, Encoding, Sink, SinkKind, SyncMode, WriteMode};
pub use source::{
    DEFAULT_GENERATE_SIZE, DEFAULT_HTTP_MAX_BODY, DEFAULT_HTTP_MAX_LINE, DEFAULT_TCP_IDLE_TIMEOUT,
    DEFAULT_TCP_MAX_CONNECTIONS, HttpSource, NatsSource, Source, SourceKind, TcpSource,
};
pub use source::{
    DeadLettersSource, LETTER_KINDS, Selection, check_kind, default_progress, now_ms, parse_since,
};
pub use stage::{
    AUTO_WORKERS_MAX, Breaker, Canary, DEFAULT_IDLE_TIMEOUT, DEFAULT_RETRIES, DEFAULT_WORKERS,
    EventTime, Late, Limits, OnError, Stage, StageLines,
};
pub use tls::ServerTls;
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
        check_into(&cx, &sources, &stages)?;
        let mut pipeline = Pipeline {
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
        };
        for source in &mut pipeline.sources {
            if let SourceKind::DeadLetters(d) = &mut source.kind {
                d.interval = pipeline.checkpoint_interval;
            }
        }
        Ok(pipeline)
    }
}

/// A `dead_letters` source's `into` names a stage that takes it as an input: its letters go
/// there, and nowhere else.
fn check_into(cx: &Ctx, sources: &[Source], stages: &[Stage]) -> Result<(), ConfigError> {
    for source in sources {
        let SourceKind::DeadLetters(d) = &source.kind else {
            continue;
        };
        let Some(into) = &d.into else { continue };
        let fed = stages
            .iter()
            .any(|s| &s.name == into && s.inputs.contains(&source.name));
        if !fed {
            return Err(cx.err_file(
                &format!("sources.{}.into", source.name),
                format!(
                    "{} is not a stage that names `{}` in its `inputs`: the letters go into \
                     such a stage",
                    shown(into),
                    source.name
                ),
            ));
        }
    }
    Ok(())
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
