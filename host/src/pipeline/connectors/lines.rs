//! Splitting a byte stream into line events, straight into packed batches.
//!
//! [`Lines`] scans each buffer the reader fills for line endings (`memchr`) and copies every
//! complete line into the batch being built: one copy per line, no allocation per line. A
//! line that spans two buffer fills is gathered in a side buffer first. A line longer than
//! [`MAX_LINE`] is not kept: its first [`OVERSIZED_KEPT`] bytes go to a dead letter with its
//! length, and the rest is skipped up to its end. A value is the line without `\n` or `\r\n`,
//! as Rust's `BufRead::lines` gives it; the last line of the input needs no line ending.
//!
//! A source that reads its input elsewhere (the TCP source's sockets, read by async tasks)
//! hands each buffer it read to [`Lines::push`]; [`Lines::max_line`] sets a limit of its own.
//!
//! A source that cannot read its input again (stdin) must not drop what it has read when the
//! run stops: [`Lines::read_to_line_end`] turns every complete line left in the read buffer
//! into events, then reads the line the buffer ends in to its end, and no further, from an
//! input that can stop at a line's end ([`ToLineEnd`]).

use std::io::{self, BufRead, BufReader};

use weir_sandbox::Events;

use crate::pipeline::pool;

/// Longest line a line source accepts as one event. Blocks a file without line endings from
/// making the host buffer all of it; a longer line is dead-lettered (its first bytes kept).
pub const MAX_LINE: usize = 16 << 20;
/// Bytes of an over-long line kept in its dead letter.
pub const OVERSIZED_KEPT: usize = 1024;

/// What the splitter hands over.
pub enum Chunk {
    /// A batch of line events (full, or partial at the end of input or when idle), the byte
    /// position just past its last line, and, when the splitter tracks them, the position just
    /// past each line.
    Events(Events, u64, Option<Vec<u64>>),
    /// A line over [`MAX_LINE`]: its number, its first bytes, its length, and the position
    /// just past it.
    Oversized {
        line: u64,
        kept: Vec<u8>,
        len: usize,
        end: u64,
    },
}

/// Whether the splitter should go on.
pub enum Flow {
    Continue,
    Stop,
}

/// An input that can be read up to the end of a line and not a byte further.
pub trait ToLineEnd: io::Read {
    /// Reads into `buf` the input's next bytes, up to and including its next `\n` and never
    /// past it; 0 at the end of the input.
    fn read_to_newline(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// Bytes asked for at a time by [`Lines::read_to_line_end`].
const LINE_END_CHUNK: usize = 64 << 10;

/// The state of a line splitter across buffer fills (and across repeats of a file).
pub struct Lines {
    batch_size: usize,
    /// Longest line kept as an event: [`MAX_LINE`] unless the source sets its own.
    max_line: usize,
    events: Events,
    /// A line begun in an earlier buffer fill.
    partial: Vec<u8>,
    /// Set while skipping the rest of an over-long line: its length so far.
    skipping: Option<usize>,
    /// Lines seen so far, over-long ones included.
    pub line_no: u64,
    /// Bytes read so far.
    pub bytes: u64,
    /// The position just past the last complete line.
    pub offset: u64,
    /// When tracked ([`Lines::track_ends`]): the position just past each line of the batch
    /// being built. Only pipelines whose events need a source position pay for it.
    ends: Option<Vec<u64>>,
}

impl Lines {
    pub fn new(batch_size: usize) -> Lines {
        Lines {
            batch_size,
            max_line: MAX_LINE,
            events: Lines::batch(batch_size),
            partial: Vec::new(),
            skipping: None,
            line_no: 0,
            bytes: 0,
            offset: 0,
            ends: None,
        }
    }

    /// Lines longer than `max_line` bytes are dead-lettered rather than [`MAX_LINE`].
    pub fn max_line(mut self, max_line: usize) -> Lines {
        self.max_line = max_line;
        self
    }

    /// Records where each line ends, for events that need their source position.
    pub fn track_ends(&mut self) {
        self.ends = Some(Vec::with_capacity(self.batch_size));
    }

    /// Positions are counted from `offset`: the reader starts there (a resumed file, or a
    /// new round of a repeated one).
    pub fn start_at(&mut self, offset: u64) {
        self.bytes = offset;
        self.offset = offset;
    }

    fn batch(batch_size: usize) -> Events {
        // Room for lines of about 128 bytes without growing (typical of logs), in recycled
        // buffers when there are some.
        let mut events = pool::take();
        events.data.reserve(batch_size * 128);
        events
            .events
            .reserve(batch_size * weir_sandbox::events::EVENT_STRIDE);
        events
    }

    /// Reads `reader` to its end, handing over every full batch. With `hand_over_when_idle`,
    /// a partial batch is handed over whenever the reader's buffer is drained (the next read
    /// may wait: a terminal or a trickling pipe). The last partial batch stays in the
    /// splitter: [`Lines::finish`] hands it over.
    pub fn read<R: BufRead>(
        &mut self,
        reader: &mut R,
        hand_over_when_idle: bool,
        hand: &mut dyn FnMut(Chunk) -> Flow,
    ) -> io::Result<Flow> {
        loop {
            let buf = match reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                // The input ended: its last line needs no line ending.
                return Ok(self.end_line(hand));
            }
            let len = buf.len();
            let base = self.bytes;
            self.bytes += len as u64;
            if let Some(used) = self.scan(buf, base, true, hand) {
                // The rest of the buffer is read but not yet accepted: it stays in `reader`
                // ([`Lines::read_to_line_end`] takes it from there).
                reader.consume(used);
                return Ok(Flow::Stop);
            }
            reader.consume(len);
            if hand_over_when_idle && !self.events.is_empty() {
                let flow = self.hand_over(hand);
                if let Flow::Stop = flow {
                    return Ok(flow);
                }
            }
        }
    }

    /// Splits `buf`, whose first byte is at position `base` (already counted in `bytes`),
    /// handing on each complete line and gathering the rest. With `obey`, stops after the
    /// line `hand` says `Stop` to, and returns how many bytes of `buf` it used.
    fn scan(
        &mut self,
        buf: &[u8],
        base: u64,
        obey: bool,
        hand: &mut dyn FnMut(Chunk) -> Flow,
    ) -> Option<usize> {
        let len = buf.len();
        let mut rest = buf;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            let (line, tail) = (&rest[..pos], &rest[pos + 1..]);
            rest = tail;
            self.offset = base + (len - rest.len()) as u64;
            if let (Flow::Stop, true) = (self.line(line, hand), obey) {
                return Some(len - rest.len());
            }
        }
        self.gather(rest);
        None
    }

    /// Splits `buf`, the input's next bytes read by the caller, handing on every complete
    /// line; the line it ends in is gathered for the next call.
    pub fn push(&mut self, buf: &[u8], hand: &mut dyn FnMut(Chunk) -> Flow) {
        let base = self.bytes;
        self.bytes += buf.len() as u64;
        self.scan(buf, base, false, hand);
    }

    /// Whether a line has begun and not yet ended.
    pub fn in_line(&self) -> bool {
        !self.partial.is_empty() || self.skipping.is_some()
    }

    /// After a stop: hands over every complete line left in `reader`'s buffer, whatever
    /// `hand` says, then reads the line the buffer ends in to its end (and not a byte
    /// further) and hands it over too. A line that grows past [`MAX_LINE`] is handed over as
    /// oversized (with its length so far) and the rest of it left unread; one that ends the
    /// input needs no line ending. An error of `reader` (such as waiting too long for the
    /// rest of the line) is returned with that line kept: [`Lines::end_input`] can hand it
    /// over as it is. The partial batch stays in the splitter, as after [`Lines::read`].
    pub fn read_to_line_end<R: ToLineEnd>(
        &mut self,
        reader: &mut BufReader<R>,
        hand: &mut dyn FnMut(Chunk) -> Flow,
    ) -> io::Result<()> {
        let buffered = reader.buffer();
        let len = buffered.len();
        // Counted in `bytes` when it was read: it starts where the last line handed on ended.
        let base = self.bytes - len as u64;
        self.scan(buffered, base, false, hand);
        reader.consume(len);
        let mut chunk = Vec::new();
        while !self.partial.is_empty() || self.skipping.is_some() {
            if self.skipping.is_some() {
                // Over the limit: the line is dead-lettered, its rest left unread.
                self.offset = self.bytes;
                self.line(&[], hand);
                break;
            }
            chunk.resize(LINE_END_CHUNK, 0);
            let n = match reader.get_mut().read_to_newline(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.end_line(hand);
                break;
            }
            let base = self.bytes;
            self.bytes += n as u64;
            self.scan(&chunk[..n], base, false, hand);
        }
        Ok(())
    }

    /// The input ends here: a line begun without its line ending is handed over as it is
    /// (as the last line of an input needs none).
    pub fn end_input(&mut self, hand: &mut dyn FnMut(Chunk) -> Flow) {
        self.end_line(hand);
    }

    /// Hands over the partial batch, if any.
    pub fn finish(&mut self, hand: &mut dyn FnMut(Chunk) -> Flow) -> Flow {
        if self.events.is_empty() {
            return Flow::Continue;
        }
        self.hand_over(hand)
    }

    fn hand_over(&mut self, hand: &mut dyn FnMut(Chunk) -> Flow) -> Flow {
        let full = std::mem::replace(&mut self.events, Lines::batch(self.batch_size));
        let ends = self
            .ends
            .as_mut()
            .map(|e| std::mem::replace(e, Vec::with_capacity(self.batch_size)));
        hand(Chunk::Events(full, self.offset, ends))
    }

    /// The end of a line whose last bytes are `tail` (after any gathered part).
    fn line(&mut self, tail: &[u8], hand: &mut dyn FnMut(Chunk) -> Flow) -> Flow {
        self.line_no += 1;
        if let Some(len) = self.skipping.take() {
            return self.oversized(len + tail.len(), hand);
        }
        let len = self.partial.len() + tail.len();
        if len > self.max_line {
            self.partial
                .extend_from_slice(&tail[..tail.len().min(OVERSIZED_KEPT)]);
            return self.oversized(len, hand);
        }
        if self.partial.is_empty() {
            self.events.push_value(strip_cr(tail));
        } else {
            self.partial.extend_from_slice(tail);
            self.events.push_value(strip_cr(&self.partial));
            self.partial.clear();
        }
        if let Some(ends) = &mut self.ends {
            ends.push(self.offset);
        }
        if self.events.len() >= self.batch_size {
            return self.hand_over(hand);
        }
        Flow::Continue
    }

    /// Keeps the bytes of a line that goes on past this buffer fill.
    fn gather(&mut self, bytes: &[u8]) {
        if let Some(len) = &mut self.skipping {
            *len += bytes.len();
            return;
        }
        self.partial.extend_from_slice(bytes);
        if self.partial.len() > self.max_line {
            // Too long to be an event: remember its start and length, drop the rest.
            self.skipping = Some(self.partial.len());
            self.partial.truncate(OVERSIZED_KEPT);
        }
    }

    /// The input ended in the middle of a line (one without a line ending).
    fn end_line(&mut self, hand: &mut dyn FnMut(Chunk) -> Flow) -> Flow {
        if self.partial.is_empty() && self.skipping.is_none() {
            return Flow::Continue;
        }
        self.offset = self.bytes;
        self.line(&[], hand)
    }

    fn oversized(&mut self, len: usize, hand: &mut dyn FnMut(Chunk) -> Flow) -> Flow {
        let mut kept = std::mem::take(&mut self.partial);
        kept.truncate(OVERSIZED_KEPT);
        hand(Chunk::Oversized {
            line: self.line_no,
            kept,
            len,
            end: self.offset,
        })
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8], buffer: usize, batch_size: usize) -> (Vec<Vec<u8>>, Vec<(u64, usize)>) {
        let mut reader = io::BufReader::with_capacity(buffer, input);
        let mut lines = Lines::new(batch_size);
        let mut values = Vec::new();
        let mut oversized = Vec::new();
        let mut hand = |chunk: Chunk| {
            match chunk {
                Chunk::Events(events, _, _) => {
                    assert!(events.len() <= batch_size);
                    values.extend(events.iter().map(|e| e.value().to_vec()));
                }
                Chunk::Oversized { line, len, .. } => oversized.push((line, len)),
            }
            Flow::Continue
        };
        lines.read(&mut reader, false, &mut hand).unwrap();
        lines.finish(&mut hand);
        (values, oversized)
    }

    #[test]
    fn lines_split_as_bufread_lines_does_whatever_the_buffer_size() {
        let input = b"one\r\ntwo\n\nthree\r\nlast without ending";
        let expected: Vec<Vec<u8>> = input.lines().map(|l| l.unwrap().into_bytes()).collect();
        for buffer in [1, 2, 3, 7, 64] {
            let (values, oversized) = split(input, buffer, 2);
            assert_eq!(values, expected, "buffer {buffer}");
            assert!(oversized.is_empty());
        }
    }

    /// An input read `step` bytes at a time that can stop at a line's end; `at` is its offset.
    struct Input<'a> {
        bytes: &'a [u8],
        at: usize,
        step: usize,
    }

    impl io::Read for Input<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.bytes.len() - self.at);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl ToLineEnd for Input<'_> {
        fn read_to_newline(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let rest = &self.bytes[self.at..];
            let n = match memchr::memchr(b'\n', rest) {
                Some(at) => at + 1,
                None => rest.len(),
            }
            .min(buf.len())
            .min(self.step);
            buf[..n].copy_from_slice(&rest[..n]);
            self.at += n;
            Ok(n)
        }
    }

    /// What a stopped read handed over and left: the values, the oversized lines (number and
    /// length), the input's offset after, and the bytes the splitter counted.
    type Stopped = (Vec<Vec<u8>>, Vec<(u64, usize)>, usize, u64);

    /// Reads `input` until the first batch is handed over, stops there, and reads to the
    /// line's end.
    fn stop_after_first_batch(
        input: &[u8],
        buffer: usize,
        step: usize,
        batch_size: usize,
    ) -> Stopped {
        let mut reader = io::BufReader::with_capacity(
            buffer,
            Input {
                bytes: input,
                at: 0,
                step,
            },
        );
        let mut lines = Lines::new(batch_size);
        let mut values = Vec::new();
        let mut oversized = Vec::new();
        let mut hand = |chunk: Chunk| {
            match chunk {
                Chunk::Events(events, _, _) => {
                    values.extend(events.iter().map(|e| e.value().to_vec()))
                }
                Chunk::Oversized { line, len, .. } => oversized.push((line, len)),
            }
            Flow::Stop
        };
        let flow = lines.read(&mut reader, true, &mut hand).unwrap();
        assert!(matches!(flow, Flow::Stop));
        lines.read_to_line_end(&mut reader, &mut hand).unwrap();
        lines.finish(&mut hand);
        (values, oversized, reader.get_ref().at, lines.bytes)
    }

    #[test]
    fn after_a_stop_every_line_read_is_handed_over_and_the_input_left_just_past_the_last() {
        let input: Vec<u8> = (0..5000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let expected: Vec<Vec<u8>> = input.lines().map(|l| l.unwrap().into_bytes()).collect();
        for (buffer, step, batch_size) in [(64, 64, 3), (100, 7, 5), (4096, 4096, 1000), (1, 1, 2)]
        {
            let (values, oversized, at, bytes) =
                stop_after_first_batch(&input, buffer, step, batch_size);
            let what = format!("buffer {buffer}, step {step}, batch {batch_size}");
            assert!(oversized.is_empty(), "{what}");
            assert!(
                !values.is_empty() && values.len() < expected.len(),
                "{what}"
            );
            assert_eq!(values, expected[..values.len()], "{what}");
            let delivered: usize = values.iter().map(|v| v.len() + 1).sum();
            assert_eq!(at, delivered, "{what}: the input's offset");
            assert_eq!(bytes, at as u64, "{what}: the bytes counted");
        }
    }

    #[test]
    fn after_a_stop_the_line_begun_is_read_to_its_end_and_not_the_next() {
        // Stopped after `one` with `tw` read: `two` is read to its end, `three` is left.
        let input = b"one\ntwo\nthree\n";
        let (values, _, at, bytes) = stop_after_first_batch(input, 6, 6, 1);
        assert_eq!(values, [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!((at, bytes), (8, 8));
    }

    #[test]
    fn after_a_stop_the_last_line_of_the_input_needs_no_line_ending() {
        // Stopped after `one` with `tw` read: `two` is read to the input's end.
        let input = b"one\ntwo";
        let (values, _, at, bytes) = stop_after_first_batch(input, 6, 6, 1);
        assert_eq!(values, [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!((at, bytes), (input.len(), input.len() as u64));
    }

    #[test]
    fn after_a_stop_an_over_long_line_is_reported_and_the_rest_of_it_left_unread() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + (256 << 10)));
        input.extend_from_slice(b"\nafter\n");
        let (values, oversized, at, bytes) = stop_after_first_batch(&input, 64 << 10, 64 << 10, 1);
        assert_eq!(values, [b"short".to_vec()]);
        assert_eq!(oversized.len(), 1);
        let (line, len) = oversized[0];
        assert_eq!(line, 2);
        // Read a little past the limit, and not to the line's end.
        assert!(
            len > MAX_LINE && at < input.len() - b"\nafter\n".len(),
            "{len} {at}"
        );
        assert_eq!((at - len) as u64, b"short\n".len() as u64);
        assert_eq!(bytes, at as u64);
    }

    #[test]
    fn an_over_long_line_is_reported_and_skipped() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend_from_slice(b"\nafter\n");
        let (values, oversized) = split(&input, 64 << 10, 256);
        assert_eq!(values, [b"short".to_vec(), b"after".to_vec()]);
        assert_eq!(oversized, [(2, MAX_LINE + 10)]);
    }

    #[test]
    fn lines_pushed_by_the_caller_split_alike_and_keep_their_own_limit() {
        let input = b"one\r\ntwo\n0123456789abc\nafter\nlast";
        for piece in [1, 3, 64] {
            let mut lines = Lines::new(2).max_line(10);
            let (mut values, mut oversized) = (Vec::new(), Vec::new());
            let mut hand = |chunk: Chunk| {
                match chunk {
                    Chunk::Events(events, _, _) => {
                        values.extend(events.iter().map(|e| e.value().to_vec()))
                    }
                    Chunk::Oversized {
                        line, kept, len, ..
                    } => oversized.push((line, kept, len)),
                }
                Flow::Continue
            };
            for bytes in input.chunks(piece) {
                lines.push(bytes, &mut hand);
            }
            assert!(lines.in_line(), "piece {piece}: `last` is begun");
            lines.end_input(&mut hand);
            lines.finish(&mut hand);
            assert!(!lines.in_line());
            let expected: Vec<&[u8]> = vec![b"one", b"two", b"after", b"last"];
            assert_eq!(values, expected, "piece {piece}");
            assert_eq!(oversized.len(), 1, "piece {piece}");
            let (line, kept, len) = &oversized[0];
            assert_eq!((*line, *len), (3, 13), "piece {piece}");
            assert!(
                b"0123456789abc".starts_with(kept) && kept.len() >= 10,
                "piece {piece}"
            );
            assert_eq!(lines.bytes, input.len() as u64);
        }
    }
}
