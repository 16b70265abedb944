//! Reading a file source: one event per line, the file read `repeat` times in a row, resumed
//! from its checkpoint when the run has a data folder.
//!
//! Each batch is registered with the source's [`Positions`] ledger with the position just
//! past its last line (round of `repeat`, byte offset), so the checkpoint only ever passes
//! events that are written or dead-lettered. On start, a checkpoint taken in this very file
//! (same device, inode and first bytes, and a file at least that long) is resumed from; any
//! other (a rotated or truncated file) is set aside and the file is read from its start.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::checkpoint::{self, FileIdentity, FilePosition, Positions};
use crate::config::Source;
use crate::pipeline::ack::{BatchPlace, Ledger};
use crate::pipeline::connectors::lines::{Chunk, Flow, Lines};
use crate::pipeline::connectors::parts::SourceParts;
use crate::pipeline::failure::NodeFailure;
use crate::pipeline::origin::{Place, SourceBatch};
use crate::pipeline::report::ByteInput;

/// Read buffer of the file source.
const READ_BUFFER: usize = 64 << 10;

/// Reads one round of the file from `offset` and hands on its lines; the last line of a
/// round needs no line ending: it is complete when the round ends.
fn read_round(
    file: &mut File,
    offset: u64,
    lines: &mut Lines,
    reader: &mut Reader,
) -> std::io::Result<Flow> {
    file.seek(SeekFrom::Start(offset))?;
    lines.start_at(offset);
    let mut buffered = BufReader::with_capacity(READ_BUFFER, file);
    let flow = lines.read(&mut buffered, false, &mut |chunk| reader.hand(chunk))?;
    if matches!(flow, Flow::Continue) {
        lines.finish(&mut |chunk| {
            reader.hand(chunk);
            Flow::Continue
        });
    }
    Ok(flow)
}

/// Where reading starts: a round of `repeat` and an offset in it.
struct Start {
    round: u64,
    offset: u64,
}

/// Where a file source with a data folder commits, and the ledger it commits from.
pub(super) struct Checkpoint {
    pub path: std::path::PathBuf,
    pub positions: Arc<Positions>,
    /// `weir run --from-start`: read from the start, whatever the checkpoint says.
    pub from_start: bool,
}

/// What a file source reads: the file, how many times, and where it commits.
pub(super) struct Input<'a> {
    pub path: &'a std::path::Path,
    pub repeat: u64,
    pub checkpoint: Option<&'a Checkpoint>,
}

/// Reads the file; returns whether the run stopped it before its input ended.
pub(super) fn read(source: &Source, input: &Input, parts: &SourceParts) -> bool {
    let Input {
        path,
        repeat,
        checkpoint: cp,
    } = *input;
    let fail = |what: &str, e: std::io::Error| {
        let doing = format!("{what} {}", path.display());
        parts.ctx.fail(NodeFailure::read(&source.name, doing, e));
        false
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return fail("open", e),
    };
    let identity = match FileIdentity::of(&mut file) {
        Ok(id) => id,
        Err(e) => return fail("read", e),
    };
    let start = resume(source, cp, &mut file, &identity);
    // Its position is in bytes of the file, over every round of `repeat`.
    let file_size = file.metadata().map(|m| m.len()).unwrap_or(0);
    parts
        .metrics
        .size
        .store(file_size.saturating_mul(repeat), Ordering::Relaxed);
    let mut reader = Reader::new(source, parts, cp, identity, start.round, file_size);
    if let Some(cp) = cp {
        cp.positions
            .start(reader.identity.at(start.round, start.offset));
    }
    let mut lines = Lines::new(source.batch_size);
    if parts.tracked {
        lines.track_ends();
    }
    let mut interrupted = false;
    // Bytes of the file taken as lines, over every round read: the report's bytes read.
    let mut taken = 0u64;
    parts.metrics.read_bytes(ByteInput::File, taken);
    for round in start.round..repeat {
        if parts.ctx.stop.is_cancelled() {
            interrupted = true;
            break;
        }
        reader.round = round;
        let offset = if round == start.round {
            start.offset
        } else {
            0
        };
        if round != start.round {
            file = match File::open(path) {
                Ok(f) => f,
                Err(e) => return fail("open", e),
            };
        }
        let flow = read_round(&mut file, offset, &mut lines, &mut reader);
        taken += lines.offset.saturating_sub(offset);
        parts.metrics.read_bytes(ByteInput::File, taken);
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::Stop) => {
                interrupted = true;
                break;
            }
            Err(e) => return fail("read", e),
        }
    }
    // What was read is accepted: it goes on even when the run is stopping.
    lines.finish(&mut |chunk| {
        reader.hand(chunk);
        Flow::Continue
    });
    interrupted
}

/// Where to start: the checkpoint's position when it was taken in this file, else the start.
fn resume(
    source: &Source,
    cp: Option<&Checkpoint>,
    file: &mut File,
    identity: &FileIdentity,
) -> Start {
    let from_start = Start {
        round: 0,
        offset: 0,
    };
    let Some(cp) = cp else {
        return from_start;
    };
    if cp.from_start {
        return from_start;
    }
    let Some(position) = checkpoint::load(&cp.path) else {
        return from_start;
    };
    if identity.holds(file, &position) {
        tracing::info!(source = %source.name, round = position.round, offset = position.offset,
            "resuming after the last checkpoint");
        return Start {
            round: position.round,
            offset: position.offset,
        };
    }
    crate::notice::warn(&format!(
        "source `{}`: the file is not the one checkpointed (rotated, replaced or truncated): reading it from its start",
        source.name
    ));
    from_start
}

/// Hands the splitter's chunks on, registering each with the ledger.
struct Reader<'a> {
    parts: &'a SourceParts,
    checkpoint: Option<&'a Checkpoint>,
    name: &'a str,
    /// The file's identity as a position names it, and the source's name.
    file: Arc<str>,
    source: Arc<str>,
    identity: FileIdentity,
    round: u64,
    seq: u64,
    /// The file's size when it was opened: a round's length, for the source's position.
    file_size: u64,
}

impl<'a> Reader<'a> {
    fn new(
        source: &'a Source,
        parts: &'a SourceParts,
        checkpoint: Option<&'a Checkpoint>,
        identity: FileIdentity,
        round: u64,
        file_size: u64,
    ) -> Self {
        Reader {
            parts,
            checkpoint,
            name: &source.name,
            file: Arc::from(format!(
                "{}-{}-{}",
                identity.dev,
                identity.ino,
                &identity.fingerprint[..16]
            )),
            source: Arc::from(source.name.as_str()),
            identity,
            round,
            seq: 0,
            file_size,
        }
    }

    /// The ledger entry of the next batch, ending at `end`.
    fn ledger(&mut self, end: u64) -> Option<(Arc<dyn Ledger>, u64)> {
        let cp = self.checkpoint?;
        let seq = self.seq;
        self.seq += 1;
        cp.positions.emitted(seq, self.position(end));
        Some((Arc::clone(&cp.positions) as Arc<dyn Ledger>, seq))
    }

    fn position(&self, end: u64) -> FilePosition {
        self.identity.at(self.round, end)
    }

    fn hand(&mut self, chunk: Chunk) -> Flow {
        match chunk {
            Chunk::Events(events, end, ends) => {
                let position = self
                    .round
                    .saturating_mul(self.file_size)
                    .saturating_add(end);
                self.parts
                    .metrics
                    .position
                    .store(position, Ordering::Relaxed);
                let ledger = self.ledger(end);
                let place = BatchPlace {
                    source: Arc::clone(&self.source),
                    file: Arc::clone(&self.file),
                    round: self.round,
                    end,
                };
                let source = ends.map(|ends| SourceBatch {
                    source: Arc::clone(&self.source),
                    place: Place::File {
                        file: Arc::clone(&self.file),
                        round: self.round,
                        ends,
                    },
                });
                let batch = self.parts.emit_placed(events, ledger, source, place);
                self.parts.outputs.send_blocking(batch);
            }
            Chunk::Oversized {
                line,
                kept,
                len,
                end,
            } => {
                let ledger = self.ledger(end);
                let letters = self.parts.oversized(self.name, line, kept, len, ledger);
                self.parts.dead_letter_blocking(letters);
            }
        }
        self.parts.flow()
    }
}
