//! Connectors: where events enter and leave a pipeline, behind one seam.
//!
//! Every source kind implements [`Source`] and every sink kind [`Sink`]; [`source`] and
//! [`sink`] are the one place that maps a checked configuration to its kind. The topology
//! asks a connector what it needs to know (how many batches it can hold, whether it reads a
//! file, whether its input ends, whether it needs each event's origin), connects every one
//! before any node starts ([`Source::connect`], [`Sink::connect`]: a server that cannot be
//! reached or a port that is taken stops the run before anything is read), starts them with
//! their [`SourceParts`] and [`SinkParts`], and once the graph has drained lets each source
//! finish (a last checkpoint, the last acks). It names no kind.
//!
//! A source hands batches to the graph through [`SourceParts::emit`] (which registers them with
//! the acknowledgement tracker), so a source learns that a batch is done through the ledger it
//! gives with it. A sink holds a batch's acknowledgement until what it wrote is as durable as
//! it promises, then drops it.
//!
//! The kinds, one folder each:
//!
//! - `file`: a file read `repeat` times, resumed from its checkpoint (`file::checkpoint`); a
//!   file sink.
//! - `stdio`: standard input (`stdio::reader` reads it unbuffered, so a stop loses nothing
//!   read); standard output as a sink.
//! - `generate`: workload W1's values.
//! - `null`: a sink that counts and writes nothing.
//! - `nats`: a JetStream durable consumer (acking each message once its batch is done), and a
//!   stream as a sink (releasing acknowledgements once the server confirmed).
//! - `http`: lines POSTed to an address, each request answered once its events are written
//!   (a ledger per request), 429 when the pipeline is full.
//!
//! Shared by the kinds: `lines` splits byte streams into packed line events; `parts` is what a
//! source or sink gets from the run; `writer` writes batches as lines (value or JSON) and holds
//! their acknowledgements until flushed, for the file, stdout and null sinks and the
//! dead-letter writer (`dead_letters`).

pub(crate) mod dead_letters;
pub(crate) mod file;
pub(crate) mod generate;
pub(crate) mod http;
pub(crate) mod lines;
pub(crate) mod nats;
pub(crate) mod null;
pub(crate) mod parts;
pub(crate) mod stdio;
pub(crate) mod writer;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use crate::config::{self, SinkKind, SourceKind};

pub use dead_letters::DEAD_LETTER_BUFFER;
pub use lines::{MAX_LINE, OVERSIZED_KEPT};
pub use nats::NatsError;
/// Public for the property test of guest outputs (`tests/guest_output.rs`).
#[doc(hidden)]
pub use nats::sink::headers as nats_headers;
pub(crate) use parts::{SinkParts, SourceParts, SourceState};

/// A future a connector returns: boxed, so that kinds can sit behind one trait object.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a connector could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A NATS server, stream, consumer or subject that cannot be used.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// A thread, file or socket the connector needs.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A setting of the pipeline file that turns out unusable when the connector starts (an
    /// address that is taken): refused as the file's, with its key.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

impl ConnectorError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ConnectorError {
        let what = what.into();
        move |source| ConnectorError::Io { what, source }
    }
}

/// A running source: its task returns whether the run stopped it before its input ended.
pub(crate) struct RunningSource {
    pub task: tokio::task::JoinHandle<bool>,
    /// What it does once every acknowledgement is released or forgotten: a last checkpoint,
    /// the last acks.
    pub finish: Option<BoxFuture<'static, ()>>,
}

/// A running sink's thread: it returns why the sink failed, if it did.
pub(crate) type RunningSink =
    std::thread::JoinHandle<Result<(), crate::pipeline::failure::NodeFailure>>;

/// A kind of source.
pub(crate) trait Source: Send {
    /// Whether its input ends by itself (a file, the generator), so that a progress line
    /// can say how far it is.
    fn ends(&self) -> bool;

    /// The batches it may hold at once that already count as in flight: the one it is
    /// sending, and one it gathers if it gathers.
    fn batches_held(&self) -> u64 {
        1
    }

    /// Whether its batches must carry their events' origins whatever the sinks (a NATS
    /// source ends a dead-lettered message with `Term`).
    fn needs_origins(&self) -> bool {
        false
    }

    /// The file it reads, so that no sink writes into it.
    fn reads_file(&self) -> Option<&Path> {
        None
    }

    /// One line for `weir check`: what it reads, and where.
    fn describe(&self) -> String;

    /// Connects or binds: everything that can fail before an event is read.
    fn connect(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async { Ok(()) })
    }

    /// Starts reading.
    fn start(self: Box<Self>, parts: SourceParts) -> Result<RunningSource, ConnectorError>;
}

/// A kind of sink.
pub(crate) trait Sink: Send {
    /// The file it writes, so that it is never a source's.
    fn writes_file(&self) -> Option<&Path> {
        None
    }

    /// Whether it needs each event's origin (a NATS sink names each message by it).
    fn needs_origins(&self) -> bool {
        false
    }

    /// One line for `weir check`: what it writes, and where.
    fn describe(&self) -> String;

    /// Connects: everything that can fail before an event is read.
    fn connect(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async { Ok(()) })
    }

    /// Starts writing.
    fn start(self: Box<Self>, parts: SinkParts) -> Result<RunningSink, ConnectorError>;
}

/// The source a checked configuration describes.
pub(crate) fn source(config: &config::Source) -> Box<dyn Source> {
    match &config.kind {
        SourceKind::Stdin => Box::new(stdio::StdinSource::new(config)),
        SourceKind::File { .. } => Box::new(file::FileSource::new(config)),
        SourceKind::Generate { .. } => Box::new(generate::GenerateSource::new(config)),
        SourceKind::Nats(nats) => Box::new(nats::source::JetStreamSource::new(config, nats)),
        SourceKind::Http(http) => Box::new(http::HttpSource::new(config, http)),
    }
}

/// The sink a checked configuration describes.
pub(crate) fn sink(config: &config::Sink) -> Box<dyn Sink> {
    match &config.kind {
        SinkKind::Stdout => Box::new(stdio::StdoutSink::new(config)),
        SinkKind::File { .. } => Box::new(file::FileSink::new(config)),
        SinkKind::Null => Box::new(null::NullSink::new(config)),
        SinkKind::Nats { .. } => Box::new(nats::sink::JetStreamSink::new(config)),
    }
}
