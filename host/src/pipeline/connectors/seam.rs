//! The seam every connector kind implements: [`Source`] and [`Sink`], what starting one
//! returns ([`RunningSource`], [`RunningSink`]), and why it could not start
//! ([`ConnectorError`]). The kinds import this file and `parts`; only the registry in
//! `connectors/mod.rs` imports the kinds.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use super::parts::{SinkParts, SourceParts};
use crate::config;

/// A future a connector returns: boxed, so that kinds can sit behind one trait object.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a connector could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A server that cannot be reached or used (a NATS server, a stream, a consumer).
    #[error(transparent)]
    Connect(Box<dyn std::error::Error + Send + Sync>),
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

    /// Whether it can commit its position with the state of the data folder, so that state
    /// stays exactly once across a crash: a source with a position it writes there (a file;
    /// a broker's consumer, whose acks then wait for the round), or one with no position at
    /// all. A pipeline with such state and a source that cannot is refused.
    fn commits_with_state(&self) -> bool {
        true
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
