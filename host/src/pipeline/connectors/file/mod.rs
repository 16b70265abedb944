//! Files: a source that reads one event per line (`read`), resumed after a restart from its
//! checkpoint in the data folder (`checkpoint`), and a sink that appends (or truncates and
//! writes) lines, flushed or `fsync`ed before their acknowledgements are released.
//!
//! The source reads on a blocking thread: it splits what it reads into batches and sends
//! each as soon as it is full, waiting while the first channel is full (that wait is
//! backpressure: it stops reading). With a data folder, a checkpointer task commits the
//! source's position every `checkpoint_interval`, and once more when the run has drained.

pub(crate) mod checkpoint;
mod read;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::parts::{SinkParts, SourceParts};
use super::seam::{ConnectorError, RunningSink, RunningSource};
use super::writer::{self, LineSink, Out};
use crate::config::{self, Encoding, SinkKind, SourceKind, SyncMode, WriteMode};
use crate::pipeline::ack::{Ledger, ledger_id};
use checkpoint::{Checkpointer, Positions};

/// `type = "file"` as a source.
pub(crate) struct FileSource {
    config: config::Source,
    path: PathBuf,
    repeat: u64,
}

impl FileSource {
    pub(crate) fn new(config: &config::Source) -> FileSource {
        let SourceKind::File { path, repeat } = &config.kind else {
            unreachable!("the registry makes a file source of a file's configuration")
        };
        FileSource {
            path: path.clone(),
            repeat: *repeat,
            config: config.clone(),
        }
    }
}

impl super::seam::Source for FileSource {
    fn ends(&self) -> bool {
        true
    }

    fn reads_file(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn describe(&self) -> String {
        let times = match self.repeat {
            1 => String::new(),
            n => format!(" {n} times"),
        };
        format!("file {}{times}", self.path.display())
    }

    fn start(self: Box<Self>, parts: SourceParts) -> Result<RunningSource, ConnectorError> {
        let this = *self;
        // With a data folder: the ledger of positions, and its checkpointer until the end;
        // with state kept there too, the state's commit rounds write the position instead.
        let committed = parts.state.as_ref().map(|state| {
            let positions = match &state.durable {
                Some(_) => Positions::for_state(),
                None => Arc::new(Positions::default()),
            };
            let cp = Arc::new(Checkpointer {
                path: state.checkpoint.clone(),
                positions,
                writing: Default::default(),
            });
            let stop = CancellationToken::new();
            match &state.durable {
                Some(durable) => {
                    let ledger: Arc<dyn Ledger> = cp.positions.clone();
                    durable.register(&this.config.name, ledger_id(&ledger), cp.positions.clone());
                }
                None => {
                    tokio::spawn(Arc::clone(&cp).run(state.interval, stop.clone()));
                }
            }
            (cp, stop, state.from_start && state.durable.is_none())
        });
        let resume = committed
            .as_ref()
            .map(|(cp, _, from_start)| read::Checkpoint {
                path: cp.path.clone(),
                positions: Arc::clone(&cp.positions),
                from_start: *from_start,
            });
        let durable = parts.state.as_ref().is_some_and(|s| s.durable.is_some());
        let task = tokio::task::spawn_blocking(move || {
            let input = read::Input {
                path: &this.path,
                repeat: this.repeat,
                checkpoint: resume.as_ref(),
            };
            read::read(&this.config, &input, &parts)
        });
        // The last commit, once every acknowledgement is released or never will be (the
        // state's last round, with state kept in the data folder).
        let committed = committed.filter(|_| !durable);
        let finish = committed.map(|(cp, stop, _)| -> super::seam::BoxFuture<'static, ()> {
            Box::pin(async move {
                stop.cancel();
                let _ = tokio::task::spawn_blocking(move || cp.commit()).await;
            })
        });
        Ok(RunningSource { task, finish })
    }
}

/// `type = "file"` as a sink.
pub(crate) struct FileSink {
    name: String,
    path: PathBuf,
    mode: WriteMode,
    sync: SyncMode,
    encoding: Encoding,
}

impl FileSink {
    pub(crate) fn new(config: &config::Sink) -> FileSink {
        let SinkKind::File { path, mode, sync } = &config.kind else {
            unreachable!("the registry makes a file sink of a file's configuration")
        };
        FileSink {
            name: config.name.clone(),
            path: path.clone(),
            mode: *mode,
            sync: *sync,
            encoding: config.encoding,
        }
    }
}

impl super::seam::Sink for FileSink {
    fn writes_file(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn describe(&self) -> String {
        let mode = match self.mode {
            WriteMode::Append => "appending",
            WriteMode::Truncate => "truncated first",
        };
        let sync = match self.sync {
            SyncMode::Flush => "flushed",
            SyncMode::Fsync => "fsynced",
        };
        format!(
            "file {} ({mode}, {sync} before acknowledging)",
            self.path.display()
        )
    }

    fn start(self: Box<Self>, parts: SinkParts) -> Result<RunningSink, ConnectorError> {
        let what = format!("cannot open {}", self.path.display());
        let out = Out::open(&self.path, self.mode, self.sync).map_err(ConnectorError::io(what))?;
        let sink = LineSink {
            name: self.name,
            out: Some(out),
            encoding: self.encoding,
        };
        writer::spawn(sink, parts).map_err(ConnectorError::io("cannot start its thread"))
    }
}
