//! Sources: `file` and `stdin` (one event per line) and `generate` (workload W1's values).
//!
//! A file source (in `file`) runs on a blocking thread: it splits what it reads into batches
//! ([`Lines`]) and sends each one as soon as it is full, waiting while the first channel is
//! full (that wait is backpressure: it stops reading), and resumes from its checkpoint.
//! Standard input may wait for ever on a terminal or a trickling pipe, so its reader thread
//! (in `stdin`) hands over whatever it has whenever the next read would wait, and an async
//! task groups those chunks into batches by size and `linger`. The generator fills batches
//! with W1's values on a blocking thread.
//!
//! Every batch is registered with the acknowledgement tracker as it leaves. When the run
//! stops, a source stops reading but still sends every event it has already read: what was
//! accepted is not lost. A file source can read the rest again from its checkpoint; stdin
//! cannot, so its reader turns all it has read into events and reads on to the end of the
//! line it is in before it ends (see `stdin`). Each source's task returns whether it was
//! stopped before its input ended.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio::time::Instant;
use weir_sandbox::Events;

use crate::config::{Source, SourceKind};
use crate::pipeline::connectors::file;
use crate::pipeline::connectors::lines::Chunk;
use crate::pipeline::connectors::parts::SourceParts;
use crate::pipeline::connectors::stdin::{self, FromReader};
use crate::pipeline::pool;

/// Starts a source; its task returns whether the run stopped it before its input ended.
pub(crate) fn spawn(
    source: &Source,
    parts: SourceParts,
) -> std::io::Result<tokio::task::JoinHandle<bool>> {
    let source = source.clone();
    Ok(match &source.kind {
        SourceKind::Generate { count, size } => {
            let (count, size) = (*count, *size);
            tokio::task::spawn_blocking(move || generate(&source, count, size, &parts))
        }
        SourceKind::File { .. } => tokio::task::spawn_blocking(move || file::read(&source, &parts)),
        SourceKind::Nats(_) => {
            return Err(std::io::Error::other(
                "NATS sources are started by the nats module",
            ));
        }
        SourceKind::Stdin => {
            // Two chunks in hand let the reader work ahead by one while a batch is sent.
            let (tx, rx) = mpsc::channel(2);
            let stop = parts.ctx.stop.clone();
            let metrics = Arc::clone(&parts.metrics);
            let (name, batch_size) = (source.name.clone(), source.batch_size);
            // A plain thread, not a blocking task: its reads wait on the input, and the
            // runtime's blocking pool is for short tasks.
            std::thread::Builder::new()
                .name(format!("weir-source-{}", source.name))
                .spawn(move || stdin::read(&name, batch_size, &tx, &stop, &metrics))?;
            tokio::spawn(batch_stdin(source, rx, parts))
        }
    })
}

/// W1's values: event `i` is `size` bytes, byte `j` being `b'a' + (i + j) % 26`.
fn generate(source: &Source, count: u64, size: usize, parts: &SourceParts) -> bool {
    // Every value is a window of one repeating alphabet, so making one is a single copy.
    let pattern: Vec<u8> = (0..size + 26).map(|j| b'a' + (j % 26) as u8).collect();
    // Its position is in values: their bytes, all known ahead.
    let total = count.saturating_mul(size as u64);
    parts.metrics.size.store(total, Ordering::Relaxed);
    let mut i = 0u64;
    while i < count {
        if parts.ctx.stop.is_cancelled() {
            return true;
        }
        let n = (count - i).min(source.batch_size as u64);
        let mut events = pool::take();
        events.data.reserve(n as usize * size);
        events
            .events
            .reserve(n as usize * weir_sandbox::events::EVENT_STRIDE);
        for k in i..i + n {
            let start = (k % 26) as usize;
            events.push_value(&pattern[start..start + size]);
        }
        parts.outputs.send_blocking(parts.emit(events));
        i += n;
        parts
            .metrics
            .position
            .store(i.saturating_mul(size as u64), Ordering::Relaxed);
    }
    false
}

/// The task of the stdin source: groups chunks into batches by size and linger.
async fn batch_stdin(
    source: Source,
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
            Some(FromReader::Failed(message)) => {
                parts
                    .ctx
                    .fail(format!("source `{}`: {message}", source.name));
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
