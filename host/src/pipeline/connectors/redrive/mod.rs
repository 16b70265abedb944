//! `type = "dead_letters"`: a dead-letter file read back, each letter's event sent again into
//! the stage that failed it (or into `into`), through that stage's live version and on to the
//! sinks; what `weir redrive` runs.
//!
//! The source reads the letter file on a blocking thread from where its selection's progress
//! left it (`progress`), parses each line (`letter`), skips the letters a redrive already sent
//! (by any selection that takes them) and those its filters leave, and gathers the rest in
//! one batch per stage it feeds. A stage gets only the letters meant for it: the source holds
//! an output per consumer, not a fan-out. Once the letters read make a batch's worth, every
//! stage's batch goes out under one acknowledgement, registered with the progress ledger with
//! the offset past the last line read; the progress moves there once that acknowledgement is
//! released (every event written by the sinks or dead-lettered again), and is written every
//! `checkpoint_interval` and at the end. A letter whose stage this source does not feed, or a
//! line that is not a letter, stops the run with the file and line; what was sent before is
//! acknowledged and kept in the progress as usual.
//!
//! Delivery: a letter is sent again at least once; after a crash, the letters whose results
//! were written after the last progress write are sent once more (at most one
//! `checkpoint_interval` of them, and what was in flight). In a tracked pipeline each event's
//! position is the letter file's identity and the offset past its line, the same in every
//! redrive, so a NATS sink's message ids drop those copies: exactly once there.

pub(crate) mod letter;
pub(crate) mod progress;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use weir_sandbox::Events;

use super::parts::SourceParts;
use super::seam::{BoxFuture, ConnectorError, RunningSource};
use crate::config::{self, DeadLettersSource, SourceKind};
use crate::pipeline::ack::Ledger;
use crate::pipeline::batch::Batch;
use crate::pipeline::edge::Outputs;
use crate::pipeline::failure::NodeFailure;
use crate::pipeline::origin::{Origin, Place, SourceBatch};
use crate::pipeline::report::NodeMetrics;
use letter::{Letter, LetterError, MAX_LETTER_LINE};
use progress::{Progress, ProgressError, Saved};

/// Why a letter file cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}:{line}: {cause}")]
    Letter {
        path: PathBuf,
        line: u64,
        cause: LetterError,
    },
    #[error("{path}:{line}: the line is over {MAX_LETTER_LINE} bytes: not a letter weir wrote")]
    TooLong { path: PathBuf, line: u64 },
    #[error(transparent)]
    Progress(#[from] ProgressError),
    /// A letter the caller of [`plan`] refused, and why.
    #[error("{0}")]
    Refused(String),
}

/// A letter file read line by line from an offset: each letter with its line number and the
/// offsets where its line starts and ends.
pub struct Letters {
    path: PathBuf,
    reader: BufReader<File>,
    /// The offset and number of the next line.
    offset: u64,
    line: u64,
    buf: Vec<u8>,
}

/// One letter read, and where.
pub struct Read1 {
    pub line: u64,
    pub start: u64,
    pub end: u64,
    pub letter: Letter,
}

impl Letters {
    /// Opens `path` at `offset`, which is the start of line `line + 1`.
    pub fn open(path: &Path, offset: u64, line: u64) -> Result<Letters, ReadError> {
        let io = |cause| ReadError::Io {
            path: path.to_path_buf(),
            cause,
        };
        let mut file = File::open(path).map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        Ok(Letters {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(64 << 10, file),
            offset,
            line,
            buf: Vec::new(),
        })
    }

    /// The offset past the last line read, and the lines read before it.
    pub fn position(&self) -> (u64, u64) {
        (self.offset, self.line)
    }

    /// The next letter; `None` at the end of the file. An empty line is passed over. A last
    /// line without its line ending is read only if it is a whole letter (a writer may be in
    /// the middle of it).
    pub fn next_letter(&mut self) -> Option<Result<Read1, ReadError>> {
        loop {
            self.buf.clear();
            let n = match (&mut self.reader)
                .take(MAX_LETTER_LINE + 1)
                .read_until(b'\n', &mut self.buf)
            {
                Ok(0) => return None,
                Ok(n) => n as u64,
                Err(cause) => {
                    return Some(Err(ReadError::Io {
                        path: self.path.clone(),
                        cause,
                    }));
                }
            };
            let line = self.line + 1;
            let complete = self.buf.last() == Some(&b'\n');
            if !complete && n > MAX_LETTER_LINE {
                return Some(Err(ReadError::TooLong {
                    path: self.path.clone(),
                    line,
                }));
            }
            let text = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.iter().all(u8::is_ascii_whitespace) {
                if !complete {
                    return None;
                }
                self.offset += n;
                self.line = line;
                continue;
            }
            let parsed = Letter::parse(text);
            if !complete && parsed.is_err() {
                // Being written: it is read by the next redrive.
                return None;
            }
            let start = self.offset;
            self.offset += n;
            self.line = line;
            return Some(match parsed {
                Ok(letter) => Ok(Read1 {
                    line,
                    start,
                    end: self.offset,
                    letter,
                }),
                Err(cause) => Err(ReadError::Letter {
                    path: self.path.clone(),
                    line,
                    cause,
                }),
            });
        }
    }
}

/// What a redrive of a letter file would send: `each` is given each letter it would send, in
/// file order, `limit` applied, and the stage it goes to, and may refuse it (its message is
/// the error). Reads the whole file from the selection's progress, one line at a time; a line
/// that is not a letter is an error naming it. Returns how many letters it would send.
pub fn plan(
    source: &DeadLettersSource,
    each: &mut dyn FnMut(&Read1, &str) -> Result<(), String>,
) -> Result<u64, ReadError> {
    let saved = progress::load(&source.progress, &source.path)?;
    let (offset, line) = saved.resume(&source.select);
    let mut letters = Letters::open(&source.path, offset, line)?;
    let mut count = 0u64;
    while let Some(read) = letters.next_letter() {
        if source.select.limit.is_some_and(|l| count >= l) {
            break;
        }
        let read = read?;
        if !read.letter.selected(&source.select) || saved.done(read.start, &read.letter) {
            continue;
        }
        let into = source.into.as_deref().unwrap_or(&read.letter.stage);
        each(&read, into).map_err(ReadError::Refused)?;
        count += 1;
    }
    Ok(count)
}

/// `type = "dead_letters"` as a source.
pub(crate) struct DeadLettersSourceKind {
    name: String,
    config: DeadLettersSource,
    batch_size: usize,
    /// Held from `connect` to the end of the run: one redrive of a letter file at a time.
    lock: Option<File>,
    saved: Option<Saved>,
}

impl DeadLettersSourceKind {
    pub(crate) fn new(config: &config::Source) -> DeadLettersSourceKind {
        let SourceKind::DeadLetters(d) = &config.kind else {
            unreachable!("the registry makes a dead-letter source of its configuration")
        };
        DeadLettersSourceKind {
            name: config.name.clone(),
            config: (**d).clone(),
            batch_size: config.batch_size,
            lock: None,
            saved: None,
        }
    }
}

impl super::seam::Source for DeadLettersSourceKind {
    fn ends(&self) -> bool {
        true
    }

    fn reads_file(&self) -> Option<&Path> {
        Some(&self.config.path)
    }

    fn commits_with_state(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        let into = match &self.config.into {
            Some(into) => format!("into `{into}`"),
            None => "each into the stage that failed it".to_string(),
        };
        format!(
            "dead letters of {}, {into}, progress in {}",
            self.config.path.display(),
            self.config.progress.display()
        )
    }

    fn connect(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async move {
            let what = format!("redrive of {}", self.config.path.display());
            let to_io = |e: ProgressError| ConnectorError::Io {
                what: what.clone(),
                source: std::io::Error::other(e.to_string()),
            };
            self.lock = Some(progress::lock(&self.config.progress).map_err(to_io)?);
            self.saved =
                Some(progress::load(&self.config.progress, &self.config.path).map_err(to_io)?);
            Ok(())
        })
    }

    fn start(self: Box<Self>, parts: SourceParts) -> Result<RunningSource, ConnectorError> {
        let this = *self;
        let saved = this.saved.clone().unwrap_or_default();
        let progress = Progress::new(
            this.config.progress.clone(),
            saved.clone(),
            &this.config.select,
        );
        let stop = CancellationToken::new();
        let interval = this.config.interval;
        tokio::spawn(Arc::clone(&progress).run(interval, stop.clone()));
        let ledger = Arc::clone(&progress);
        let task = tokio::task::spawn_blocking(move || {
            let interrupted = read(&this, &saved, &ledger, &parts);
            drop(this.lock);
            interrupted
        });
        let finish: BoxFuture<'static, ()> = Box::pin(async move {
            stop.cancel();
            let _ = tokio::task::spawn_blocking(move || progress.commit_logged()).await;
        });
        Ok(RunningSource {
            task,
            finish: Some(finish),
        })
    }
}

/// One stage's share of the letters being gathered.
struct Route {
    name: String,
    outputs: Outputs,
    events: Events,
    /// The offset past each letter's line (tracked pipelines).
    ends: Vec<u64>,
}

/// Reads the letters and sends them on; returns whether the run stopped it first.
fn read(
    source: &DeadLettersSourceKind,
    saved: &Saved,
    progress: &Arc<Progress>,
    parts: &SourceParts,
) -> bool {
    let config = &source.config;
    let fail = |message: String| {
        parts.ctx.fail(NodeFailure::read(
            &source.name,
            format!("redrive {}", config.path.display()),
            std::io::Error::other(message),
        ));
        false
    };
    let (offset, line) = saved.resume(&config.select);
    let mut letters = match Letters::open(&config.path, offset, line) {
        Ok(l) => l,
        Err(e) => return fail(e.to_string()),
    };
    let identity = std::fs::metadata(&config.path)
        .map(|m| format!("{}-{}-letters", m.dev(), m.ino()))
        .unwrap_or_default();
    let file: Arc<str> = Arc::from(identity);
    let mut routes: Vec<Route> = parts
        .routes
        .iter()
        .map(|(name, outputs)| Route {
            name: name.clone(),
            outputs: outputs.clone(),
            events: Events::new(),
            ends: Vec::new(),
        })
        .collect();
    let mut gathered = 0usize;
    let mut sent = 0u64;
    let mut seq = 0u64;
    let mut flush =
        |routes: &mut Vec<Route>, gathered: &mut usize, (through, lines): (u64, u64)| {
            progress.emitted(seq, through, lines);
            let ledger = Some((Arc::clone(progress) as Arc<dyn Ledger>, seq));
            seq += 1;
            let ack = parts.ctx.tracker.emit_to(*gathered as u64, ledger);
            *gathered = 0;
            for route in routes.iter_mut() {
                if route.events.is_empty() {
                    continue;
                }
                let events = std::mem::take(&mut route.events);
                let ends = std::mem::take(&mut route.ends);
                let n = events.len() as u64;
                let bytes = events.value_bytes();
                NodeMetrics::add(&parts.metrics.events_in, n);
                NodeMetrics::add(&parts.metrics.events_out, n);
                NodeMetrics::add(&parts.metrics.bytes_in, bytes);
                NodeMetrics::add(&parts.metrics.bytes_out, bytes);
                let origin = parts.tracked.then(|| {
                    let len = events.len();
                    Origin::fresh(
                        Arc::new(SourceBatch {
                            source: Arc::from(source.name.as_str()),
                            place: Place::File {
                                file: Arc::clone(&file),
                                round: 0,
                                ends,
                            },
                        }),
                        len,
                    )
                });
                let batch = Batch::new(events, ack.clone(), origin);
                parts.metrics.tap.offer(&batch.events, &batch.provenance);
                route.outputs.send_blocking(batch);
            }
            // Dropped here when no route had a letter: the progress still moves past the lines.
            drop(ack);
        };
    let mut interrupted = false;
    loop {
        if parts.ctx.stop.is_cancelled() {
            interrupted = true;
            break;
        }
        if config.select.limit.is_some_and(|l| sent >= l) {
            break;
        }
        // Where the progress stops if this line is refused: the letters before it go on.
        let before = letters.position();
        let Some(read) = letters.next_letter() else {
            break;
        };
        let read = match read {
            Ok(r) => r,
            Err(e) => {
                flush(&mut routes, &mut gathered, before);
                return fail(e.to_string());
            }
        };
        if !read.letter.selected(&config.select) || saved.done(read.start, &read.letter) {
            continue;
        }
        let into = config.into.as_deref().unwrap_or(&read.letter.stage);
        let Some(route) = routes.iter_mut().find(|r| r.name == into) else {
            let mut message = format!(
                "{}:{}: the letter of {} has no stage {} to go to in this pipeline",
                config.path.display(),
                read.line,
                crate::config::shown(&read.letter.stage),
                crate::config::shown(into)
            );
            message.push_str(": name another with `into` (--into), or leave it out with `node` (--node) or `kind` (--kind)");
            flush(&mut routes, &mut gathered, before);
            return fail(message);
        };
        read.letter.push_to(&mut route.events);
        route.ends.push(read.end);
        gathered += 1;
        sent += 1;
        if gathered >= source.batch_size {
            flush(&mut routes, &mut gathered, letters.position());
        }
    }
    flush(&mut routes, &mut gathered, letters.position());
    interrupted
}
