//! A redrive's progress: which letters of a letter file were sent again and acknowledged, so
//! that a redrive killed and run again, or run a second time, sends none of them twice.
//!
//! The progress file (JSON, written atomically) names the letter file by device and inode and
//! holds one entry per selection a redrive ran with (its kinds, nodes and time; `limit` aside):
//! `through`, the byte offset in the letter file before which every letter that selection
//! takes was sent and acknowledged, and `lines`, the lines before it. A letter is done when an
//! entry whose selection takes it has passed it; so a redrive of only the `reject` letters,
//! then one of all of them, sends each letter once. A redrive resumes its own selection's
//! entry from `through`.
//!
//! [`Ledger`] is the source's ledger: each batch is registered with the offset past its last
//! line read; batches finish in any order, and `through` moves only over the contiguous
//! prefix of finished ones, as a file source's checkpoint does. A [`Progress`] writes it every
//! `checkpoint_interval` and once more when the run ends. A lock file beside it keeps two
//! redrives of one letter file from running at once.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::config::Selection;
use crate::pipeline::connectors::redrive::letter::Letter;
use crate::pipeline::data_dir::{lock_file, write_atomic};

/// Why the progress could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error("progress file {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "progress file {path} is not valid ({cause}): move it away to redrive every letter again"
    )]
    Invalid {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error(
        "{path} is in use by another redrive ({holder}); two redrives of one letter file must not run at once"
    )]
    Busy { path: PathBuf, holder: String },
}

/// One selection's progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub kinds: Vec<String>,
    pub nodes: Vec<String>,
    pub since: Option<u64>,
    /// Every letter before this byte offset that the selection takes is done.
    pub through: u64,
    /// Lines before `through`.
    pub lines: u64,
}

impl Entry {
    fn takes(&self, letter: &Letter) -> bool {
        letter.selected(&Selection {
            kinds: self.kinds.clone(),
            nodes: self.nodes.clone(),
            since: self.since,
            limit: None,
        })
    }

    fn of(&self, select: &Selection) -> bool {
        self.kinds == select.kinds && self.nodes == select.nodes && self.since == select.since
    }
}

/// The progress file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Saved {
    pub dev: u64,
    pub ino: u64,
    pub entries: Vec<Entry>,
}

impl Saved {
    /// Whether a letter at byte offset `start` is done.
    pub fn done(&self, start: u64, letter: &Letter) -> bool {
        self.entries
            .iter()
            .any(|e| start < e.through && e.takes(letter))
    }

    /// Where a redrive with `select` resumes: its entry's offset and line.
    pub fn resume(&self, select: &Selection) -> (u64, u64) {
        self.entries
            .iter()
            .find(|e| e.of(select))
            .map_or((0, 0), |e| (e.through, e.lines))
    }
}

/// Reads the progress of `letters` (the letter file) from `path`: none yet, or one of another
/// file (the letter file was replaced) gives an empty progress.
pub fn load(path: &Path, letters: &Path) -> Result<Saved, ProgressError> {
    let io = |cause| ProgressError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let meta = std::fs::metadata(letters).map_err(|cause| ProgressError::Io {
        path: letters.to_path_buf(),
        cause,
    })?;
    let fresh = Saved {
        dev: meta.dev(),
        ino: meta.ino(),
        entries: Vec::new(),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(fresh),
        Err(e) => return Err(io(e)),
    };
    let saved: Saved = serde_json::from_str(&text).map_err(|cause| ProgressError::Invalid {
        path: path.to_path_buf(),
        cause,
    })?;
    if (saved.dev, saved.ino) != (fresh.dev, fresh.ino) {
        crate::notice::warn(&format!(
            "{} is the progress of another file than {} (replaced since?): its letters are all sent",
            path.display(),
            letters.display()
        ));
        return Ok(fresh);
    }
    Ok(saved)
}

/// Locks the progress of one letter file for this process (`PROGRESS.lock`, naming its
/// holder); released when the file is dropped, and by the kernel if the process dies.
pub fn lock(path: &Path) -> Result<File, ProgressError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let io = |cause| ProgressError::Io {
        path: lock_path.clone(),
        cause,
    };
    lock_file(&lock_path)
        .map_err(io)?
        .map_err(|holder| ProgressError::Busy {
            path: path.to_path_buf(),
            holder,
        })
}

/// The source's ledger of batches, and the progress it writes.
pub struct Progress {
    path: PathBuf,
    inner: Mutex<Ledgered>,
    /// One write at a time, so that the last one at the end of a run is never overwritten by
    /// an older periodic one still writing.
    writing: Mutex<()>,
}

struct Ledgered {
    saved: Saved,
    /// The entry of this redrive's selection in `saved.entries`.
    entry: usize,
    /// Batches emitted and not yet passed, oldest first: seq, offset and lines past them,
    /// whether done.
    pending: VecDeque<(u64, u64, u64, bool)>,
    dirty: bool,
}

impl Progress {
    /// The progress of a redrive with `select`, from what was saved.
    pub fn new(path: PathBuf, mut saved: Saved, select: &Selection) -> Arc<Progress> {
        let entry = match saved.entries.iter().position(|e| e.of(select)) {
            Some(i) => i,
            None => {
                saved.entries.push(Entry {
                    kinds: select.kinds.clone(),
                    nodes: select.nodes.clone(),
                    since: select.since,
                    through: 0,
                    lines: 0,
                });
                saved.entries.len() - 1
            }
        };
        Arc::new(Progress {
            path,
            inner: Mutex::new(Ledgered {
                saved,
                entry,
                pending: VecDeque::new(),
                dirty: false,
            }),
            writing: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledgered> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers batch `seq` (emitted in order): done, it moves the progress to `through`,
    /// `lines` lines into the file.
    pub fn emitted(&self, seq: u64, through: u64, lines: u64) {
        self.lock().pending.push_back((seq, through, lines, false));
    }

    /// Writes the progress if it moved.
    pub fn commit(&self) -> std::io::Result<()> {
        let _one = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = {
            let mut l = self.lock();
            if !std::mem::take(&mut l.dirty) {
                return Ok(());
            }
            serde_json::to_vec(&l.saved).map_err(std::io::Error::from)?
        };
        write_atomic(&self.path, &bytes)
    }

    /// Commits every `interval` until `stop` is cancelled.
    pub async fn run(
        self: Arc<Self>,
        interval: std::time::Duration,
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
            let _ = tokio::task::spawn_blocking(move || me.commit_logged()).await;
        }
    }

    /// [`Progress::commit`], an error logged: the next commit tries again.
    pub fn commit_logged(&self) {
        if let Err(e) = self.commit() {
            tracing::error!(progress = %self.path.display(), "cannot write the redrive's progress: {e}");
        }
    }
}

impl crate::pipeline::ack::Ledger for Progress {
    fn done(&self, seq: u64) {
        let mut l = self.lock();
        let Some(front) = l.pending.front().map(|p| p.0) else {
            return;
        };
        if let Some(entry) = seq
            .checked_sub(front)
            .and_then(|i| l.pending.get_mut(i as usize))
        {
            entry.3 = true;
        }
        while let Some((_, _, _, true)) = l.pending.front() {
            let (_, through, lines, _) = l.pending.pop_front().expect("just seen");
            let i = l.entry;
            let e = &mut l.saved.entries[i];
            e.through = e.through.max(through);
            e.lines = e.lines.max(lines);
            l.dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ack::Ledger as _;

    fn letter(kind: &str) -> Letter {
        Letter::parse(
            format!(r#"{{"stage":"s","kind":"{kind}","event":{{"value":"v"}}}}"#).as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn progress_passes_only_finished_batches_and_belongs_to_its_selection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let rejects = Selection {
            kinds: vec!["reject".into()],
            ..Selection::default()
        };
        let p = Progress::new(path.clone(), Saved::default(), &rejects);
        p.emitted(0, 10, 1);
        p.emitted(1, 20, 2);
        p.done(1);
        p.commit().unwrap();
        assert!(!path.exists(), "nothing passed yet");
        p.done(0);
        p.commit().unwrap();
        let saved: Saved = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(saved.resume(&rejects), (20, 2));
        assert_eq!(saved.resume(&Selection::default()), (0, 0));
        assert!(saved.done(15, &letter("reject")));
        assert!(
            !saved.done(15, &letter("panic")),
            "another selection's letter"
        );
        assert!(!saved.done(20, &letter("reject")), "past the progress");
    }
}
