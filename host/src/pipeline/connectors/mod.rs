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
//! - `tcp`: newline-delimited lines from TCP connections (TLS optional), bounded in
//!   connections, line length and idle time, read only while the pipeline takes them.
//! - `nats`: a JetStream durable consumer (acking each message once its batch is done), and a
//!   stream as a sink (releasing acknowledgements once the server confirmed).
//! - `http`: lines POSTed to an address, each request answered once its events are written
//!   (a ledger per request), 429 when the pipeline is full.
//! - `redrive`: a dead-letter file read back, each letter sent again into the stage that
//!   failed it, its progress kept so that no letter is sent twice.
//!
//! `seam` holds the two traits and what they return; this file only maps a configuration to
//! its kind. Shared by the kinds: `lines` splits byte streams into packed line events; `parts` is what a
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
pub mod redrive;
pub(crate) mod seam;
pub(crate) mod stdio;
pub(crate) mod tcp;
pub(crate) mod writer;

use crate::config::{self, SinkKind, SourceKind};

pub use dead_letters::DEAD_LETTER_BUFFER;
pub use lines::{MAX_LINE, OVERSIZED_KEPT};
pub use nats::NatsError;
/// Public for the property test of guest outputs (`tests/guest_output.rs`).
#[doc(hidden)]
pub use nats::sink::headers as nats_headers;
pub(crate) use parts::{SinkParts, SourceParts, SourceState};
pub use seam::ConnectorError;
pub(crate) use seam::{BoxFuture, RunningSink, Sink, Source};

/// The source a checked configuration describes.
pub(crate) fn source(config: &config::Source) -> Box<dyn Source> {
    match &config.kind {
        SourceKind::Stdin => Box::new(stdio::StdinSource::new(config)),
        SourceKind::File { .. } => Box::new(file::FileSource::new(config)),
        SourceKind::Generate { .. } => Box::new(generate::GenerateSource::new(config)),
        SourceKind::Nats(nats) => Box::new(nats::source::JetStreamSource::new(config, nats)),
        SourceKind::Tcp(_) => Box::new(tcp::TcpSource::new(config)),
        SourceKind::Http(http) => Box::new(http::HttpSource::new(config, http)),
        SourceKind::DeadLetters(_) => Box::new(redrive::DeadLettersSourceKind::new(config)),
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
