//! Sinks (`stdout`, `file`, `null`) and the dead-letter writer, each on its own thread.
//!
//! A sink takes batches from its channel, writes each event (the value and a newline, or a
//! JSON object), and holds the batches' acknowledgements until it flushes, which it does as
//! soon as its channel is empty: under load that is one flush per burst, at rest one per batch.
//! A sink that fails to write reports why, stops the sources, and keeps draining so that the
//! stages can finish; the acknowledgements of what it could not write are never released.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{DeadLetterConfig, Encoding, Sink, SinkKind};
use crate::delivery::{Ack, Batch, DeadLetter, dead_letter_json, event_json};
use crate::metrics::NodeMetrics;

/// Dead letters that may wait for the writer. Failures are rare; when a plugin fails every
/// event, this bound makes the stage wait for the writer instead of piling letters in memory.
pub const DEAD_LETTER_BUFFER: usize = 1024;

const WRITE_BUFFER: usize = 64 << 10;

fn open(path: &Path) -> std::io::Result<Box<dyn Write + Send>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = File::create(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(Box::new(BufWriter::with_capacity(WRITE_BUFFER, file)))
}

fn stdout() -> Box<dyn Write + Send> {
    Box::new(BufWriter::with_capacity(WRITE_BUFFER, std::io::stdout()))
}

pub(crate) fn spawn_sink(
    sink: &Sink,
    mut rx: mpsc::Receiver<Batch>,
    metrics: Arc<NodeMetrics>,
    stop: CancellationToken,
    buffer: usize,
) -> std::io::Result<JoinHandle<Result<(), String>>> {
    let mut out: Option<Box<dyn Write + Send>> = match &sink.kind {
        SinkKind::Stdout => Some(stdout()),
        SinkKind::File { path } => Some(open(path)?),
        SinkKind::Null => None,
    };
    let name = sink.name.clone();
    let encoding = sink.encoding;
    std::thread::Builder::new()
        .name(format!("weir-sink-{name}"))
        .spawn(move || {
            let mut failure: Option<String> = None;
            let mut held: Vec<Ack> = Vec::with_capacity(buffer + 1);
            let mut held_batches = 0;
            while let Some(batch) = rx.blocking_recv() {
                let n = batch.events.len() as u64;
                let bytes: usize = batch.events.iter().map(|e| e.value.len()).sum();
                NodeMetrics::add(&metrics.events_in, n);
                if failure.is_none() {
                    let written = match &mut out {
                        Some(w) => write_batch(w.as_mut(), &batch, encoding),
                        None => Ok(()),
                    };
                    match written {
                        Ok(()) => {
                            NodeMetrics::add(&metrics.events_out, n);
                            NodeMetrics::add(&metrics.bytes_out, bytes as u64);
                        }
                        Err(e) => {
                            failure = Some(format!("sink `{name}`: cannot write: {e}"));
                            stop.cancel();
                        }
                    }
                }
                if failure.is_some() {
                    // Never written, so never acknowledged: a checkpoint must not pass them.
                    std::mem::forget(batch.acks);
                    continue;
                }
                held.extend(batch.acks);
                // Flush when idle, and at the latest every `buffer` batches: held
                // acknowledgements are events in flight, and under sustained load their
                // number must stay bounded too.
                held_batches += 1;
                if rx.is_empty() || held_batches >= buffer {
                    held_batches = 0;
                    if let Some(w) = &mut out
                        && let Err(e) = w.flush()
                    {
                        failure = Some(format!("sink `{name}`: cannot write: {e}"));
                        stop.cancel();
                        std::mem::forget(std::mem::take(&mut held));
                        continue;
                    }
                    held.clear();
                }
            }
            if failure.is_none()
                && let Some(w) = &mut out
                && let Err(e) = w.flush()
            {
                failure = Some(format!("sink `{name}`: cannot write: {e}"));
                std::mem::forget(std::mem::take(&mut held));
            }
            match failure {
                Some(f) => Err(f),
                None => Ok(()),
            }
        })
}

fn write_batch(w: &mut dyn Write, batch: &Batch, encoding: Encoding) -> std::io::Result<()> {
    for event in &batch.events {
        match encoding {
            Encoding::Text => w.write_all(&event.value)?,
            Encoding::Json => serde_json::to_writer(&mut *w, &event_json(event))?,
        }
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// Starts the dead-letter writer; its thread returns how many letters it wrote.
pub(crate) fn spawn_dead_letters(
    config: &DeadLetterConfig,
    mut rx: mpsc::Receiver<DeadLetter>,
    stop: CancellationToken,
) -> std::io::Result<JoinHandle<Result<u64, String>>> {
    let (mut out, place): (Box<dyn Write + Send>, String) = match config {
        DeadLetterConfig::Stderr => (Box::new(BufWriter::new(std::io::stderr())), "stderr".into()),
        DeadLetterConfig::File { path } => (open(path)?, path.display().to_string()),
    };
    std::thread::Builder::new()
        .name("weir-dead-letters".into())
        .spawn(move || {
            let mut written = 0u64;
            let mut held: Vec<Ack> = Vec::new();
            let fail = |e: std::io::Error| format!("dead-letter sink {place}: cannot write: {e}");
            while let Some(letter) = rx.blocking_recv() {
                let line = dead_letter_json(&letter);
                let result = serde_json::to_writer(&mut out, &line)
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"));
                if let Err(e) = result {
                    stop.cancel();
                    std::mem::forget(letter.ack);
                    // Drain so the stages can finish; none of these letters is acknowledged.
                    while let Some(letter) = rx.blocking_recv() {
                        std::mem::forget(letter.ack);
                    }
                    return Err(fail(e));
                }
                written += 1;
                held.extend(letter.ack);
                if rx.is_empty() {
                    out.flush().map_err(fail)?;
                    held.clear();
                }
            }
            out.flush().map_err(fail)?;
            Ok(written)
        })
}
