//! The dead-letter writer: every failed event as one JSON line (the event, the stage and
//! version that failed it, the kind and reason), written by one thread through the same
//! [`Writer`] as the line sinks, so a letter's acknowledgement is released only once flushed.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::writer::{Out, Writer};
use crate::config::DeadLetterConfig;
use crate::pipeline::edge::{DeadLetterRx, RunContext};
use crate::pipeline::encode;
use crate::pipeline::failure::NodeFailure;

/// Dead-letter batches that may wait for the writer. Each is one stage call's failures; when
/// a plugin fails every event, this bound makes the stage wait for the writer instead of
/// piling letters in memory.
pub const DEAD_LETTER_BUFFER: usize = 4;

/// The file dead letters go to, if they go to one: it must never be a source's.
pub(crate) fn writes_file(config: &DeadLetterConfig) -> Option<&Path> {
    match config {
        DeadLetterConfig::File { path, .. } => Some(path),
        DeadLetterConfig::Stderr => None,
    }
}

/// Starts the dead-letter writer; its thread returns how many letters it wrote.
pub(crate) fn spawn(
    config: &DeadLetterConfig,
    mut rx: DeadLetterRx,
    ctx: Arc<RunContext>,
) -> std::io::Result<JoinHandle<Result<u64, NodeFailure>>> {
    let (out, place) = match config {
        DeadLetterConfig::Stderr => (Out::stderr(), "stderr".to_string()),
        DeadLetterConfig::File { path, mode, sync } => {
            (Out::open(path, *mode, *sync)?, path.display().to_string())
        }
    };
    std::thread::Builder::new()
        .name("weir-dead-letters".into())
        .spawn(move || {
            let mut writer = Writer {
                out: Some(out),
                held: Vec::new(),
                buffer: DEAD_LETTER_BUFFER,
                failure: None,
                closed: false,
            };
            let mut written = 0u64;
            while let Some(letters) = rx.blocking_recv() {
                if writer.failure.is_some() {
                    letters.ack.forget();
                    continue;
                }
                let w = writer
                    .out
                    .as_mut()
                    .expect("the dead-letter writer has an output")
                    .writer();
                // One clock read per letter batch: letters of one call share their time.
                let at = encode::now_ms();
                let result = (0..letters.len()).try_for_each(|i| {
                    encode::dead_letter(w, &letters, i, at)?;
                    w.write_all(b"\n")
                });
                let count = letters.len() as u64;
                if result.is_ok() && !letters.origins.is_empty() {
                    // Heard before the acknowledgement is released (after the flush below),
                    // so a NATS source ends these messages with `Term`, not an ack.
                    letters.ack.dead_lettered(&letters.origins);
                }
                let result = match result {
                    Ok(()) => writer.hold(letters.ack, rx.is_empty()),
                    Err(e) => {
                        letters.ack.forget();
                        Err(e)
                    }
                };
                match result {
                    Ok(()) => written += count,
                    Err(e) => writer.fail(
                        NodeFailure::write(format!("dead-letter sink {place}"), e),
                        &ctx,
                    ),
                }
            }
            writer
                .close(&format!("dead-letter sink {place}"), &ctx)
                .map(|()| written)
        })
}
