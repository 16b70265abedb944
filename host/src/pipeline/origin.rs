//! Origins: which source event each event of a batch came from, for the pipelines that need
//! to know.
//!
//! Two things need it, and only they pay for it. A NATS source must end each message with
//! `Term` instead of an ack when the event (or anything it became) was dead-lettered, so the
//! ledger must hear *which* source events the dead letters came from. A NATS sink publishes
//! each event with a message id made of the position of its source event (a stream sequence,
//! or a file, round and offset) and the path it took, so that a replayed or redelivered event
//! is published under the same id and the server drops the copy.
//!
//! A tracked batch carries an [`Origin`]: two columns kept 1:1 with its events (the index of
//! each event's source event in its source batch, and a digest of its path) and the source
//! batch's [`SourceBatch`], shared by every batch derived from it. A stage's output extends
//! the columns through the output's counts (input `i` with `c` outputs gives `c` entries of
//! `i`'s index, each path extended with the stage and the output's place `j`); a retry keeps
//! its events' entries; a dead letter keeps its event's index. Untracked batches (the file and
//! generate sources of a pipeline without a NATS sink or source) carry `None`: no column, no
//! per-event cost.

use std::fmt;
use std::sync::Arc;

/// Where a source batch's events are in their source.
#[derive(Debug)]
pub struct SourceBatch {
    /// The source's name.
    pub source: Arc<str>,
    pub place: Place,
}

/// The positions of a source batch's events.
#[derive(Debug)]
pub enum Place {
    /// JetStream messages: the stream and each message's stream sequence.
    Stream {
        stream: Arc<str>,
        sequences: Vec<u64>,
    },
    /// Lines of a file: the file's identity (device, inode, fingerprint), the round of
    /// `repeat`, and the byte position just past each line.
    File {
        file: Arc<str>,
        round: u64,
        ends: Vec<u64>,
    },
}

impl SourceBatch {
    /// The position of event `index`, as text that is the same in every run and every process
    /// reading the same input: what a message id is made of.
    pub fn position(&self, index: u32) -> Position<'_> {
        Position { batch: self, index }
    }
}

/// One source event's position; see [`SourceBatch::position`].
pub struct Position<'a> {
    batch: &'a SourceBatch,
    index: u32,
}

impl fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.index as usize;
        match &self.batch.place {
            Place::Stream { stream, sequences } => {
                write!(f, "{stream}:{}", sequences.get(i).copied().unwrap_or(0))
            }
            Place::File { file, round, ends } => {
                write!(f, "{file}:{round}:{}", ends.get(i).copied().unwrap_or(0))
            }
        }
    }
}

/// The origins of a tracked batch's events.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Per event: the index of its source event in the source batch.
    pub index: Vec<u32>,
    /// Per event: a digest of its path from the source event (see [`step`]).
    pub path: Vec<u64>,
    pub source: Arc<SourceBatch>,
}

impl Origin {
    /// A source batch of `len` events: event `i` is source event `i`, on an empty path.
    pub fn fresh(source: Arc<SourceBatch>, len: usize) -> Origin {
        Origin {
            index: (0..len as u32).collect(),
            path: vec![0; len],
            source,
        }
    }

    /// Empty columns for a batch derived from this one.
    pub fn empty(&self) -> Origin {
        Origin {
            index: Vec::new(),
            path: Vec::new(),
            source: Arc::clone(&self.source),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Appends entry `i` of `from`, unchanged (a retried event).
    pub fn push_same(&mut self, from: &Origin, i: usize) {
        self.index.push(from.index[i]);
        self.path.push(from.path[i]);
    }

    /// Appends the `j`-th output of entry `i` of `from` at the stage whose id is `stage`.
    pub fn push_output(&mut self, from: &Origin, i: usize, stage: u64, j: usize) {
        self.index.push(from.index[i]);
        self.path.push(step(from.path[i], stage, j));
    }

    /// The origin of a batch of fired timers with no source batch (a tick, the end of the
    /// input): empty, and [`Origin::push_timer`] gives each event it gets an id.
    pub fn timers() -> Origin {
        Origin {
            index: Vec::new(),
            path: Vec::new(),
            source: Arc::new(SourceBatch {
                source: Arc::from("timers"),
                place: Place::Stream {
                    stream: Arc::from("timers"),
                    sequences: Vec::new(),
                },
            }),
        }
    }

    /// Appends an event a timer made: it has no source event ([`TIMER`] stands in for one),
    /// and its path is a digest of the stage and of the event (time, key, value), so that it
    /// is the same whenever the timer fires again, after a restart, whatever batch set it
    /// off. Two events alike in all three from one stage share an id, and a deduplicating sink
    /// keeps one of them.
    pub fn push_timer(&mut self, stage: u64, event: weir_sandbox::EventRef<'_>) {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(event.timestamp().unwrap_or(u64::MAX).to_le_bytes());
        let key = event.key().unwrap_or_default();
        h.update((key.len() as u64).to_le_bytes());
        h.update(key);
        h.update(event.value());
        let digest = h.finalize();
        let made = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
        self.index.push(TIMER);
        self.path.push(step(made, stage, 0));
    }

    /// The origins of a stage's whole output: `counts[i]` outputs for input `i` (one each
    /// when `counts` is empty, as the contract says).
    pub fn outputs(&self, counts: &[u32], stage: u64) -> Origin {
        let mut out = self.empty();
        if counts.is_empty() {
            out.index.clone_from(&self.index);
            out.path = self.path.iter().map(|&p| step(p, stage, 0)).collect();
            return out;
        }
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        out.index.reserve(total);
        out.path.reserve(total);
        for (i, &c) in counts.iter().enumerate() {
            for j in 0..c as usize {
                out.push_output(self, i, stage, j);
            }
        }
        out
    }
}

/// The source index of an event a timer made: no source event. Its position reads as the
/// source's first, the same every time; its path tells it apart.
pub const TIMER: u32 = u32::MAX;

/// A stage's id in paths: a digest of its name, the same in every process.
pub fn stage_id(name: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The path of the `j`-th output, at stage `stage`, of an event whose path is `path`. A mix
/// (splitmix64's finaliser), so that two branches of a fan-out, or two outputs of one event,
/// never share a path by accident of arithmetic.
pub fn step(path: u64, stage: u64, j: usize) -> u64 {
    let mut z = path
        .rotate_left(17)
        .wrapping_add(stage)
        .wrapping_add((j as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(len: usize) -> Origin {
        Origin::fresh(
            Arc::new(SourceBatch {
                source: Arc::from("in"),
                place: Place::Stream {
                    stream: Arc::from("IN"),
                    sequences: (10..10 + len as u64).collect(),
                },
            }),
            len,
        )
    }

    #[test]
    fn outputs_follow_their_inputs_through_the_counts() {
        let o = origin(3);
        let out = o.outputs(&[2, 0, 1], stage_id("parse"));
        assert_eq!(out.index, [0, 0, 2]);
        assert_ne!(out.path[0], out.path[1], "two outputs of one event differ");
        assert_eq!(out.source.position(out.index[2]).to_string(), "IN:12");
        let same = o.outputs(&[], stage_id("parse"));
        assert_eq!(same.index, [0, 1, 2]);
        assert_eq!(
            same.path[0], out.path[0],
            "the first output's path is the same"
        );
    }

    #[test]
    fn two_branches_give_one_event_two_paths() {
        let o = origin(1);
        let a = o.outputs(&[], stage_id("a"));
        let b = o.outputs(&[], stage_id("b"));
        assert_ne!(a.path, b.path);
    }
}
