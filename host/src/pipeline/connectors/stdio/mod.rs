//! Standard input as a source, standard output as a sink.
//!
//! Standard input may wait for ever on a terminal or a trickling pipe, so its reader thread
//! (`reader`) hands over whatever it has whenever the next read would wait, and an async task
//! groups those chunks into batches by size and `linger`. Standard input cannot be read again,
//! so when the run stops its reader turns all it has read into events and reads on to the end
//! of the line it is in before it ends (see `reader`): what was accepted is not lost.
//!
//! The stdout sink writes through the line writer; when the reader of standard output goes
//! away (`weir run … | head -1`) it stops the run as a Unix tool would, without calling it a
//! failure.

pub(crate) mod reader;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use weir_sandbox::Events;

use super::lines::Chunk;
use super::writer::{self, LineSink, Out};
use super::{ConnectorError, RunningSink, RunningSource, SinkParts, SourceParts};
use crate::config::{self, Encoding};
use crate::pipeline::failure::NodeFailure;
use reader::FromReader;

/// `type = "stdin"`.
pub(crate) struct StdinSource {
    config: config::Source,
}

impl StdinSource {
    pub(crate) fn new(config: &config::Source) -> StdinSource {
        StdinSource {
            config: config.clone(),
        }
    }
}

impl super::Source for StdinSource {
    fn ends(&self) -> bool {
        false
    }

    /// The batch it sends, and the one it gathers.
    fn batches_held(&self) -> u64 {
        2
    }

    fn describe(&self) -> String {
        "standard input".to_string()
    }

    fn start(self: Box<Self>, parts: SourceParts) -> Result<RunningSource, ConnectorError> {
        let source = self.config;
        // Two chunks in hand let the reader work ahead by one while a batch is sent.
        let (tx, rx) = mpsc::channel(2);
        let stop = parts.ctx.stop.clone();
        let metrics = Arc::clone(&parts.metrics);
        let (name, batch_size) = (source.name.clone(), source.batch_size);
        // A plain thread, not a blocking task: its reads wait on the input, and the
        // runtime's blocking pool is for short tasks.
        std::thread::Builder::new()
            .name(format!("weir-source-{}", source.name))
            .spawn(move || reader::read(&name, batch_size, &tx, &stop, &metrics))
            .map_err(ConnectorError::io("cannot start its reader thread"))?;
        Ok(RunningSource {
            task: tokio::spawn(batch_stdin(source, rx, parts)),
            finish: None,
        })
    }
}

/// The task of the stdin source: groups chunks into batches by size and linger.
async fn batch_stdin(
    source: config::Source,
    mut rx: mpsc::Receiver<FromReader>,
    parts: SourceParts,
) -> bool {
    let mut pending = Events::new();
    let mut deadline: Option<Instant> = None;
    let mut interrupted = false;
    // The reader ends by itself when the run stops, once it has handed over all it read (its
    // waits are bounded): everything it sends is taken, until it hangs up.
    loop {
        let next = tokio::select! {
            biased;
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                deadline = None;
                parts.outputs.send(parts.emit(std::mem::take(&mut pending))).await;
                continue;
            }
            next = rx.recv() => next,
        };
        match next {
            Some(FromReader::Chunk(Chunk::Events(chunk, _, _))) => {
                if pending.is_empty() && chunk.len() >= source.batch_size {
                    parts.outputs.send(parts.emit(chunk)).await;
                    continue;
                }
                for event in chunk.iter() {
                    pending.push_event(event);
                    if pending.len() >= source.batch_size {
                        deadline = None;
                        parts
                            .outputs
                            .send(parts.emit(std::mem::take(&mut pending)))
                            .await;
                    }
                }
                if !pending.is_empty() && deadline.is_none() {
                    deadline = Some(Instant::now() + source.linger);
                }
            }
            Some(FromReader::Chunk(Chunk::Oversized {
                line, kept, len, ..
            })) => {
                let letters = parts.oversized(&source.name, line, kept, len, None);
                parts.metrics.tap.offer_dead(&letters);
                if let Err(lost) = parts.dead_letters.send(letters).await {
                    lost.0.ack.forget();
                }
            }
            Some(FromReader::Failed(doing, e)) => {
                parts.ctx.fail(NodeFailure::read(&source.name, doing, e));
            }
            Some(FromReader::Ended {
                interrupted: stopped,
            }) => interrupted |= stopped,
            None => break,
        }
    }
    if !pending.is_empty() {
        parts.outputs.send(parts.emit(pending)).await;
    }
    interrupted
}

/// `type = "stdout"`.
pub(crate) struct StdoutSink {
    name: String,
    encoding: Encoding,
}

impl StdoutSink {
    pub(crate) fn new(config: &config::Sink) -> StdoutSink {
        StdoutSink {
            name: config.name.clone(),
            encoding: config.encoding,
        }
    }
}

impl super::Sink for StdoutSink {
    fn describe(&self) -> String {
        "standard output".to_string()
    }

    fn start(self: Box<Self>, parts: SinkParts) -> Result<RunningSink, ConnectorError> {
        let sink = LineSink {
            name: self.name,
            out: Some(Out::stdout()),
            encoding: self.encoding,
        };
        writer::spawn(sink, parts).map_err(ConnectorError::io("cannot start its thread"))
    }
}
