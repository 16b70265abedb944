//! The reader thread of the stdin source, and what it reads: standard input, unbuffered.
//!
//! Standard input cannot be read again, so a stop must not drop what was read from it. The
//! reader reads its own duplicate of descriptor 0 (one open file, so one offset with it, and
//! no buffer of the standard library's in between) into a buffer of [`READ_BUFFER`] bytes,
//! and [`Lines`] splits that. When the run stops, it reads no new buffer: every complete line
//! left in its buffer becomes an event, the line the buffer ends in is read to its end (and
//! no further; [`MAX_LINE`](super::lines::MAX_LINE) bounds it, a longer line is dead-lettered as `oversized` with the
//! rest of it left unread), and the reader ends. So every byte read is delivered, and the
//! input is left just past the last line delivered: when standard input is a regular file,
//! its offset after the run is exactly the bytes read, which the report gives
//! (`bytes_read`).
//!
//! How the rest of a line is read without reading past it depends on the input. A regular
//! file is read in chunks and its offset set back to just past the line's end. A pipe, a
//! socket or a terminal cannot be set back, so it is read a byte at a time, and it may have
//! nothing more to give: the reader waits at most [`LINE_END_GRACE`] in all for the rest of
//! the line; when the rest does not come, the bytes it has go on as a line of their own (as the
//! last line of an input needs no line ending) and a notice says so. A terminal gives whole
//! lines only, so it never waits there.
//!
//! Reads from a pipe or a terminal may wait for ever, so the reader polls the input before
//! each read and looks at the stop token every [`POLL_EVERY`] while it waits; a regular
//! file's reads never wait, and it looks at the token before each.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pipeline::connectors::lines::{Chunk, Flow, Lines, ToLineEnd};
use crate::pipeline::report::{ByteInput, NodeMetrics};

/// Read buffer of the stdin source.
const READ_BUFFER: usize = 64 << 10;

/// After a stop, how long a pipe's reader waits for the rest of the line it has begun. Blocks
/// a writer that never ends its line from holding the shutdown for ever.
pub const LINE_END_GRACE: Duration = Duration::from_secs(1);

/// How often a reader waiting on a pipe or a terminal looks at the stop token.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// What the stdin reader thread sends its task.
pub(crate) enum FromReader {
    Chunk(Chunk),
    /// It could not read: what it was doing, and why.
    Failed(&'static str, io::Error),
    /// The input ended (or the run stopped the reader, which read on to a line's end).
    Ended {
        interrupted: bool,
    },
}

/// The reader thread of the stdin source `name`.
pub(crate) fn read(
    name: &str,
    batch_size: usize,
    tx: &mpsc::Sender<FromReader>,
    stop: &CancellationToken,
    metrics: &NodeMetrics,
) {
    metrics.read_bytes(ByteInput::Stdin, 0);
    let input = match Input::open(stop.clone()) {
        Ok(input) => input,
        Err(e) => {
            let _ = tx.blocking_send(FromReader::Failed("read standard input", e));
            return;
        }
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, input);
    let mut lines = Lines::new(batch_size);
    let mut hand = |chunk| {
        if tx.blocking_send(FromReader::Chunk(chunk)).is_err() || stop.is_cancelled() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    };
    // On an interactive or trickling input, hand over what was read as soon as the next read
    // would wait; the task's linger then groups it.
    let mut end = match lines.read(&mut reader, true, &mut hand) {
        Ok(Flow::Continue) => FromReader::Ended { interrupted: false },
        Ok(Flow::Stop) => FromReader::Ended { interrupted: true },
        Err(e) if is_stop(&e) => FromReader::Ended { interrupted: true },
        Err(e) => FromReader::Failed("read standard input", e),
    };
    // From here on, every chunk goes to the task, stopping or not: it was read.
    let mut keep = |chunk| {
        let _ = tx.blocking_send(FromReader::Chunk(chunk));
        Flow::Continue
    };
    if let FromReader::Ended { interrupted: true } = end {
        match lines.read_to_line_end(&mut reader, &mut keep) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                crate::notice::warn(&format!(
                    "source `{name}`: the rest of the last line read did not come within {LINE_END_GRACE:?} of the stop; what came of it goes on as a line"
                ));
                lines.end_input(&mut keep);
            }
            Err(e) => {
                end = FromReader::Failed("read standard input to the end of its line", e);
            }
        }
    }
    lines.finish(&mut keep);
    metrics.read_bytes(ByteInput::Stdin, lines.bytes);
    let _ = tx.blocking_send(end);
}

/// The error an [`Input`] returns once the run stops: read no new buffer.
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the run is stopping")
    }
}

impl std::error::Error for Stopped {}

fn is_stop(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Stopped>())
}

/// Standard input, unbuffered: a duplicate of descriptor 0.
struct Input {
    file: File,
    /// A regular file: reads never wait, and its offset can be set back.
    regular: bool,
    stop: CancellationToken,
    /// After a stop, when a pipe's reader gives up waiting for the rest of a line.
    give_up: Option<Instant>,
}

impl Input {
    fn open(stop: CancellationToken) -> io::Result<Input> {
        let file = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        let regular = file.metadata()?.file_type().is_file();
        Ok(Input {
            file,
            regular,
            stop,
            give_up: None,
        })
    }

    /// Waits until the input has something to read (or has ended), for at most `limit`;
    /// whether it has.
    fn ready(&self, limit: Duration) -> io::Result<bool> {
        let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
        let timeout = Timespec::try_from(limit).map_err(|_| io::ErrorKind::InvalidInput)?;
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(n) => Ok(n > 0),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.stop.is_cancelled() {
                return Err(io::Error::other(Stopped));
            }
            if self.regular || self.ready(POLL_EVERY)? {
                return self.file.read(buf);
            }
        }
    }
}

impl ToLineEnd for Input {
    fn read_to_newline(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.regular {
            let n = self.file.read(buf)?;
            if let Some(at) = memchr::memchr(b'\n', &buf[..n]) {
                // Set the offset back to just past the line: the rest stays unread.
                let past = (n - at - 1) as i64;
                if past > 0 {
                    self.file.seek(SeekFrom::Current(-past))?;
                }
                return Ok(at + 1);
            }
            return Ok(n);
        }
        let give_up = *self
            .give_up
            .get_or_insert_with(|| Instant::now() + LINE_END_GRACE);
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if self.ready(left.min(POLL_EVERY))? {
                break;
            }
        }
        // A byte at a time: a byte read from a pipe cannot be given back. Lines are short,
        // and the wait for all of it is bounded by the grace.
        match buf.first_mut() {
            Some(byte) => self.file.read(std::slice::from_mut(byte)),
            None => Ok(0),
        }
    }
}
