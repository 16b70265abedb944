//! Sources: `stdin`, `file` (one event per line) and `generate` (workload W1's values).
//!
//! Line sources read on a thread of their own (a read may block for ever on a terminal or a
//! pipe) and hand chunks of events to the source's task, which closes a batch when it holds
//! `batch_size` events or when `linger` has passed since its first event, registers it with
//! the acknowledgement tracker and sends it on. When the pipeline stops, the task closes the
//! chunk channel and still sends every event already read: what was accepted is not lost.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{Source, SourceKind};
use crate::delivery::{Batch, DeadLetter, Event, FailureKind};
use crate::metrics::NodeMetrics;
use crate::topology::{Outputs, Shared};

/// Longest line a line source accepts as one event. Blocks a file without line endings from
/// making the host buffer all of it; a longer line is dead-lettered (its first bytes kept).
pub const MAX_LINE: usize = 16 << 20;
/// Bytes of an over-long line kept in its dead letter.
const OVERSIZED_KEPT: usize = 1024;
/// Read buffer of a line source.
const READ_BUFFER: usize = 64 << 10;

/// What a reader thread hands to its source task.
enum Chunk {
    Events(Vec<Event>),
    Oversized {
        line: u64,
        kept: Vec<u8>,
        len: usize,
    },
    Failed(String),
}

pub(crate) fn spawn_source(
    source: &Source,
    outputs: Outputs,
    metrics: Arc<NodeMetrics>,
    shared: Arc<Shared>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let source = source.clone();
    match &source.kind {
        SourceKind::Generate { count, size } => {
            let (count, size) = (*count, *size);
            Ok(tokio::spawn(generate(
                source, count, size, outputs, metrics, shared,
            )))
        }
        SourceKind::Stdin | SourceKind::File { .. } => {
            // Two chunks in hand let the reader work ahead by one while a batch is sent.
            let (tx, rx) = mpsc::channel(2);
            let reader_source = source.clone();
            std::thread::Builder::new()
                .name(format!("weir-source-{}", source.name))
                .spawn(move || read_lines(&reader_source, tx))?;
            Ok(tokio::spawn(batch_lines(
                source, rx, outputs, metrics, shared,
            )))
        }
    }
}

async fn emit(events: Vec<Event>, outputs: &Outputs, metrics: &NodeMetrics, shared: &Shared) {
    let n = events.len() as u64;
    let bytes: usize = events.iter().map(|e| e.value.len()).sum();
    let ack = shared.tracker.emit(n);
    NodeMetrics::add(&metrics.events_out, n);
    NodeMetrics::add(&metrics.bytes_out, bytes as u64);
    outputs
        .send(Batch {
            events,
            acks: vec![ack],
        })
        .await;
}

/// W1's values: event `i` is `size` bytes, byte `j` being `b'a' + (i + j) % 26`.
async fn generate(
    source: Source,
    count: u64,
    size: usize,
    outputs: Outputs,
    metrics: Arc<NodeMetrics>,
    shared: Arc<Shared>,
) {
    // Every value is a window of one repeating alphabet, so making one is a single copy.
    let pattern: Vec<u8> = (0..size + 26).map(|j| b'a' + (j % 26) as u8).collect();
    let mut i = 0u64;
    while i < count && !shared.stop.is_cancelled() {
        let n = (count - i).min(source.batch_size as u64);
        let events = (i..i + n)
            .map(|k| {
                let start = (k % 26) as usize;
                Event {
                    key: None,
                    value: pattern[start..start + size].to_vec(),
                    headers: Vec::new(),
                    timestamp: None,
                }
            })
            .collect();
        emit(events, &outputs, &metrics, &shared).await;
        i += n;
    }
}

/// The reader thread of a line source.
fn read_lines(source: &Source, tx: mpsc::Sender<Chunk>) {
    let batch_size = source.batch_size;
    let mut line_no = 0u64;
    let result = match &source.kind {
        SourceKind::Stdin => {
            let stdin = std::io::stdin();
            let mut reader = BufReader::with_capacity(READ_BUFFER, stdin.lock());
            // On an interactive or trickling input, hand over what was read as soon as the
            // next read would wait; the task's linger then groups it.
            pump(&mut reader, batch_size, true, &mut line_no, &tx)
        }
        SourceKind::File { path, repeat } => {
            let mut result = Ok(());
            for _ in 0..*repeat {
                let file = match std::fs::File::open(path) {
                    Ok(f) => f,
                    Err(e) => {
                        result = Err(format!("cannot open {}: {e}", path.display()));
                        break;
                    }
                };
                let mut reader = BufReader::with_capacity(READ_BUFFER, file);
                result = pump(&mut reader, batch_size, false, &mut line_no, &tx)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()));
                if result.is_err() || tx.is_closed() {
                    break;
                }
            }
            result
        }
        SourceKind::Generate { .. } => Ok(()),
    };
    if let Err(message) = result {
        let _ = tx.blocking_send(Chunk::Failed(message));
    }
}

/// Reads lines into chunks of up to `batch_size` events until the input ends or the task
/// stops listening. A value is the line without `\n` or `\r\n`, like `BufRead::lines`.
fn pump<R: Read>(
    reader: &mut BufReader<R>,
    batch_size: usize,
    hand_over_when_idle: bool,
    line_no: &mut u64,
    tx: &mpsc::Sender<Chunk>,
) -> Result<(), String> {
    let mut chunk = Vec::with_capacity(batch_size);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| e.to_string())?;
        if read == 0 {
            break;
        }
        *line_no += 1;
        if line.len() > MAX_LINE && !line.ends_with(b"\n") {
            // Skip the rest of the over-long line, counting it.
            let mut len = line.len();
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let n = reader
                    .by_ref()
                    .take(READ_BUFFER as u64)
                    .read_until(b'\n', &mut rest)
                    .map_err(|e| e.to_string())?;
                len += n;
                if n == 0 || rest.ends_with(b"\n") {
                    break;
                }
            }
            line.truncate(OVERSIZED_KEPT);
            let kept = std::mem::take(&mut line);
            if tx
                .blocking_send(Chunk::Oversized {
                    line: *line_no,
                    kept,
                    len,
                })
                .is_err()
            {
                return Ok(());
            }
            continue;
        }
        let mut end = line.len();
        if line[..end].ends_with(b"\n") {
            end -= 1;
            if line[..end].ends_with(b"\r") {
                end -= 1;
            }
        }
        chunk.push(Event {
            key: None,
            value: line[..end].to_vec(),
            headers: Vec::new(),
            timestamp: None,
        });
        // An empty buffer means the next read may wait (`buffer` itself never reads).
        let idle = hand_over_when_idle && reader.buffer().is_empty();
        if chunk.len() >= batch_size || (idle && !chunk.is_empty()) {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(batch_size));
            if tx.blocking_send(Chunk::Events(full)).is_err() {
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Chunk::Events(chunk));
    }
    Ok(())
}

/// The task of a line source: groups chunks into batches by size and linger.
async fn batch_lines(
    source: Source,
    mut rx: mpsc::Receiver<Chunk>,
    outputs: Outputs,
    metrics: Arc<NodeMetrics>,
    shared: Arc<Shared>,
) {
    let mut pending: Vec<Event> = Vec::new();
    let mut deadline: Option<Instant> = None;
    let mut stopping = false;
    loop {
        let next = tokio::select! {
            biased;
            _ = shared.stop.cancelled(), if !stopping => {
                // Stop reading, but keep what was already read: it is accepted.
                rx.close();
                stopping = true;
                continue;
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                deadline = None;
                let batch = std::mem::take(&mut pending);
                emit(batch, &outputs, &metrics, &shared).await;
                continue;
            }
            next = rx.recv() => next,
        };
        match next {
            Some(Chunk::Events(mut chunk)) => {
                NodeMetrics::add(&metrics.events_in, chunk.len() as u64);
                if pending.is_empty() && chunk.len() >= source.batch_size {
                    emit(chunk, &outputs, &metrics, &shared).await;
                    continue;
                }
                pending.append(&mut chunk);
                while pending.len() >= source.batch_size {
                    let rest = pending.split_off(source.batch_size);
                    emit(
                        std::mem::replace(&mut pending, rest),
                        &outputs,
                        &metrics,
                        &shared,
                    )
                    .await;
                    deadline = None;
                }
                if !pending.is_empty() && deadline.is_none() {
                    deadline = Some(Instant::now() + source.linger);
                }
            }
            Some(Chunk::Oversized { line, kept, len }) => {
                tracing::error!(source = %source.name, line, len, "line over {MAX_LINE} bytes; dead-lettered");
                let ack = shared.tracker.emit(1);
                metrics.fail(FailureKind::Oversized, 1);
                shared
                    .dead_letter(DeadLetter {
                        stage: Arc::from(source.name.as_str()),
                        plugin_digest: Arc::from(""),
                        kind: FailureKind::Oversized,
                        message: format!("line {line} is {len} bytes, over the {MAX_LINE}-byte limit; its first {OVERSIZED_KEPT} bytes are kept"),
                        attempts: 0,
                        event: Event { key: None, value: kept, headers: Vec::new(), timestamp: None },
                        ack: vec![ack],
                    })
                    .await;
            }
            Some(Chunk::Failed(message)) => {
                shared.fail(format!("source `{}`: {message}", source.name));
            }
            None => break,
        }
    }
    if !pending.is_empty() {
        emit(pending, &outputs, &metrics, &shared).await;
    }
}
