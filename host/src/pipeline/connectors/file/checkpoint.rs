//! A file source's checkpoint: where it resumes after a restart.
//!
//! A file source registers each batch it emits with its [`Positions`] ledger, with the byte
//! position just past the batch's last line. Batches finish in any order (fan-out, retries,
//! slow sinks); the ledger advances its committed position only over the contiguous prefix of
//! finished batches, so a committed position never passes an event that is not yet written
//! or dead-lettered. A [`Checkpointer`] writes that position at most every
//! `checkpoint_interval`, and once more when the run ends, atomically: a temporary file,
//! `fsync`, a rename over the old checkpoint, and an `fsync` of the folder.
//!
//! A position names the file it belongs to by device, inode and a fingerprint of its first
//! bytes. On a restart a checkpoint whose file no longer matches (rotated, replaced) or is
//! shorter than the position (truncated) is not used: the file is read from its start.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pipeline::ack::Ledger;
use crate::pipeline::data_dir::write_atomic;
use crate::pipeline::state::Positioned;

/// Bytes of a file's start that identify it beside its device and inode (which a rotation
/// tool may reuse).
const FINGERPRINT_BYTES: u64 = 1024;

/// A file source's position: which file, which round of `repeat`, which byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    pub dev: u64,
    pub ino: u64,
    /// Hex sha256 of the file's first `fingerprint_len` bytes.
    pub fingerprint: String,
    pub fingerprint_len: u64,
    pub round: u64,
    pub offset: u64,
}

/// A file's identity, as a position records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub fingerprint: String,
    pub fingerprint_len: u64,
    pub len: u64,
}

impl FileIdentity {
    /// The identity of an open file.
    pub fn of(file: &mut File) -> std::io::Result<FileIdentity> {
        let meta = file.metadata()?;
        let fingerprint_len = meta.len().min(FINGERPRINT_BYTES);
        let (fingerprint, _) = fingerprint(file, fingerprint_len)?;
        Ok(FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint,
            fingerprint_len,
            len: meta.len(),
        })
    }

    /// The position at `offset` of round `round` in this file.
    pub fn at(&self, round: u64, offset: u64) -> FilePosition {
        FilePosition {
            dev: self.dev,
            ino: self.ino,
            fingerprint: self.fingerprint.clone(),
            fingerprint_len: self.fingerprint_len,
            round,
            offset,
        }
    }

    /// Whether `position` was taken in this file, and the file still holds it.
    pub fn holds(&self, file: &mut File, position: &FilePosition) -> bool {
        if self.dev != position.dev || self.ino != position.ino || self.len < position.offset {
            return false;
        }
        if position.fingerprint_len > self.len {
            return false;
        }
        matches!(fingerprint(file, position.fingerprint_len), Ok((f, _)) if f == position.fingerprint)
    }
}

/// The hex sha256 of a file's first `len` bytes (read from the start, position restored).
fn fingerprint(file: &mut File, len: u64) -> std::io::Result<(String, u64)> {
    use std::io::Seek;
    let back = file.stream_position()?;
    file.rewind()?;
    let mut start = Vec::with_capacity(len as usize);
    Read::by_ref(file).take(len).read_to_end(&mut start)?;
    file.seek(std::io::SeekFrom::Start(back))?;
    Ok((format!("{:x}", Sha256::digest(&start)), start.len() as u64))
}

/// Reads a checkpoint; `None` when there is none or it cannot be read (with a warning).
pub fn load(path: &Path) -> Option<FilePosition> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(checkpoint = %path.display(), "cannot read the checkpoint ({e}); reading from the start");
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(checkpoint = %path.display(), "the checkpoint is not valid ({e}); reading from the start");
            None
        }
    }
}

/// A checkpoint file's bytes: the position as one JSON line.
fn bytes(position: &FilePosition) -> std::io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec(position).map_err(std::io::Error::from)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes a checkpoint atomically and durably.
pub fn store(path: &Path, position: &FilePosition) -> std::io::Result<()> {
    write_atomic(path, &bytes(position)?)
}

/// A file source's ledger: its batches' positions, and the committed one.
#[derive(Default)]
pub struct Positions {
    inner: Mutex<Ledgered>,
}

#[derive(Default)]
struct Ledgered {
    /// Batches emitted and not yet passed by the committed position, oldest first: their seq,
    /// the position past them, whether they are done.
    pending: VecDeque<(u64, FilePosition, bool)>,
    committed: Option<FilePosition>,
    /// Whether `committed` moved since it was last written.
    dirty: bool,
    /// With state in the data folder: the finished batches whose positions a commit round
    /// may still ask for, oldest first.
    finished: Option<VecDeque<(u64, FilePosition)>>,
}

impl Positions {
    /// A ledger whose committed position starts at `start` (where the run began reading).
    #[cfg(test)]
    pub fn starting_at(start: FilePosition) -> Arc<Positions> {
        let positions = Arc::new(Positions::default());
        positions.start(start);
        positions
    }

    /// The run begins reading at `start`: nothing is committed before it.
    pub fn start(&self, start: FilePosition) {
        let mut l = self.lock();
        l.committed = Some(start);
        l.dirty = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledgered> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps each finished batch's position until a commit round of the state is done with
    /// it ([`Positioned`]).
    pub fn for_state() -> Arc<Positions> {
        let positions = Positions::default();
        positions.lock().finished = Some(VecDeque::new());
        Arc::new(positions)
    }

    /// Registers batch `seq` (emitted in order), ending at `position`.
    pub fn emitted(&self, seq: u64, position: FilePosition) {
        self.lock().pending.push_back((seq, position, false));
    }

    /// The committed position, if it moved since the last call.
    pub fn take_changed(&self) -> Option<FilePosition> {
        let mut l = self.lock();
        if !std::mem::take(&mut l.dirty) {
            return None;
        }
        l.committed.clone()
    }

    /// The committed position.
    #[cfg(test)]
    pub fn committed(&self) -> Option<FilePosition> {
        self.lock().committed.clone()
    }
}

impl Ledger for Positions {
    fn done(&self, seq: u64) {
        let mut l = self.lock();
        let Some(front) = l.pending.front().map(|p| p.0) else {
            return;
        };
        if let Some(entry) = seq
            .checked_sub(front)
            .and_then(|i| l.pending.get_mut(i as usize))
        {
            entry.2 = true;
        }
        while let Some((_, _, true)) = l.pending.front() {
            let (seq, position, _) = l.pending.pop_front().expect("just seen");
            if let Some(finished) = &mut l.finished {
                finished.push_back((seq, position.clone()));
            }
            l.committed = Some(position);
            l.dirty = true;
        }
    }
}

impl Positioned for Positions {
    fn done_through(&self) -> Option<u64> {
        let l = self.lock();
        l.finished.as_ref()?.back().map(|(seq, _)| *seq)
    }

    fn checkpoint_through(&self, seq: u64) -> Option<Vec<u8>> {
        let l = self.lock();
        let (_, position) = l.finished.as_ref()?.iter().find(|(s, _)| *s == seq)?;
        bytes(position).ok()
    }

    fn forget_through(&self, seq: u64) {
        let mut l = self.lock();
        if let Some(finished) = &mut l.finished {
            while finished.front().is_some_and(|(s, _)| *s <= seq) {
                finished.pop_front();
            }
        }
    }
}

/// Writes a source's committed position to its checkpoint file, periodically and at the end.
pub struct Checkpointer {
    pub path: PathBuf,
    pub positions: Arc<Positions>,
    /// One write at a time, each of the position it took: the last commit at the end of a run
    /// must not be overwritten by a periodic one still writing an older position.
    pub writing: Mutex<()>,
}

impl Checkpointer {
    /// Writes the committed position if it moved.
    pub fn commit(&self) {
        let _one = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(position) = self.positions.take_changed()
            && let Err(e) = store(&self.path, &position)
        {
            tracing::error!(checkpoint = %self.path.display(), "cannot write the checkpoint: {e}");
        }
    }

    /// Commits every `interval` until `stop` is cancelled.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let me = Arc::clone(&self);
            let _ = tokio::task::spawn_blocking(move || me.commit()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64) -> FilePosition {
        FilePosition {
            dev: 1,
            ino: 2,
            fingerprint: "f".into(),
            fingerprint_len: 1,
            round: 0,
            offset,
        }
    }

    #[test]
    fn the_committed_position_only_passes_a_contiguous_prefix() {
        let positions = Positions::starting_at(at(0));
        for (seq, end) in [(0, 10), (1, 20), (2, 30)] {
            positions.emitted(seq, at(end));
        }
        positions.done(1);
        assert_eq!(positions.committed(), Some(at(0)), "batch 0 is not done");
        positions.done(0);
        assert_eq!(positions.committed(), Some(at(20)));
        assert_eq!(positions.take_changed(), Some(at(20)));
        assert_eq!(positions.take_changed(), None);
        positions.done(2);
        assert_eq!(positions.committed(), Some(at(30)));
    }

    #[test]
    fn a_checkpoint_round_trips_and_a_rewritten_file_is_not_held() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, b"one\ntwo\n").unwrap();
        let mut file = File::open(&log).unwrap();
        let id = FileIdentity::of(&mut file).unwrap();
        let position = id.at(0, 4);
        let path = dir.path().join("cp.json");
        store(&path, &position).unwrap();
        assert_eq!(load(&path), Some(position.clone()));
        assert!(id.holds(&mut file, &position));
        std::fs::write(&log, b"ONE\ntwo\n").unwrap();
        let mut file = File::open(&log).unwrap();
        let id = FileIdentity::of(&mut file).unwrap();
        assert!(
            !id.holds(&mut file, &position),
            "same inode, other contents"
        );
    }
}
