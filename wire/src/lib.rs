//! weir-wire: the packed batch of `weir:stage@0.2.0`, as plain slices and vectors, with
//! nothing of wasmtime, wit-bindgen or an async runtime, so that the host (`weir-sandbox`)
//! and the Rust SDK (`weir-plugin`) read, write and check batches with the same code.
//!
//! A batch is one byte buffer (`data`) and three columns of numbers that point into it
//! (`events`, `headers`, `timestamps`); see `docs/contract.md`. Event `i` is
//! `events[6i .. 6i+6]` (value start, value length, key start, key length, first header,
//! header count); header `h` is `headers[4h .. 4h+4]` (name start, name length, value start,
//! value length); starts are byte offsets into `data`. `timestamps` is empty (no event has
//! one) or has one entry per event, [`NO_TIMESTAMP`] for none.
//!
//! Each side keeps its own batch type (the host's is the wasmtime-bindgen'd record, the SDK's
//! its own struct, moved in and out of the wit-bindgen'd one), and lends its four vectors to
//! this crate:
//! - [`BatchRef`] borrows them for reading: [`EventRef`] views and the checks
//!   ([`BatchRef::check`], [`cost::charge`]);
//! - [`BatchMut`] borrows them mutably for writing: the encoder (`push_*`);
//! - [`Batch`] owns them, for code that has neither side's type; both sides convert from and
//!   into it by moving the vectors.
//!
//! [`check_outcomes`] is the contract's check of an output's counts and failures.

pub mod cost;
mod outcomes;

use std::slice::ChunksExact;

pub use cost::{Breach, Charge};
pub use outcomes::check_outcomes;

/// Numbers per event in the events column: value start, value length, key start, key length,
/// first header, header count.
pub const EVENT_STRIDE: usize = 6;
/// Numbers per header in the headers column: name start, name length, value start, value
/// length.
pub const HEADER_STRIDE: usize = 4;
/// The key length of an event without a key (its key start is then 0).
pub const NO_KEY: u32 = u32::MAX;
/// The timestamp of an event without one, in a batch where others have one.
pub const NO_TIMESTAMP: u64 = u64::MAX;

/// A batch's four vectors, borrowed for reading.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchRef<'a> {
    pub data: &'a [u8],
    pub events: &'a [u32],
    pub headers: &'a [u32],
    pub timestamps: &'a [u64],
}

impl<'a> BatchRef<'a> {
    /// The number of events.
    #[inline]
    pub fn len(&self) -> usize {
        self.events.len() / EVENT_STRIDE
    }

    /// Whether the batch holds no event.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.events.len() < EVENT_STRIDE
    }

    /// Event `index`, or `None` past the end. Panics later, on access, if the batch is
    /// malformed: [`BatchRef::check`] it first.
    #[inline]
    pub fn get(&self, index: usize) -> Option<EventRef<'a>> {
        let fields = self
            .events
            .get(index * EVENT_STRIDE..(index + 1) * EVENT_STRIDE)?;
        Some(self.view(index, fields))
    }

    /// Every event, in order.
    #[inline]
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EventRef<'a>> + use<'a> {
        let batch = *self;
        self.events
            .chunks_exact(EVENT_STRIDE)
            .enumerate()
            .map(move |(index, fields)| batch.view(index, fields))
    }

    #[inline]
    fn view(&self, index: usize, fields: &'a [u32]) -> EventRef<'a> {
        EventRef {
            data: self.data,
            headers: self.headers,
            timestamps: self.timestamps,
            fields: fields.try_into().expect("an event's numbers"),
            index,
        }
    }

    /// Where the batch ends now: what [`BatchMut::truncate`] cuts back to.
    #[inline]
    pub fn mark(&self) -> Mark {
        Mark {
            data: self.data.len(),
            events: self.events.len(),
            headers: self.headers.len(),
            timestamps: self.timestamps.len(),
        }
    }

    /// Bytes of every value.
    pub fn value_bytes(&self) -> u64 {
        self.events
            .chunks_exact(EVENT_STRIDE)
            .map(|e| u64::from(e[1]))
            .sum()
    }

    /// Checks the contract's invariants: whole records in both columns, none or one timestamp
    /// per event, every span inside `data`, every header range inside the header column,
    /// every header name UTF-8, and the hard limits of [`cost`]. Says which event or header
    /// breaks them. [`cost::charge`] is the same check against a cap.
    pub fn check(&self) -> Result<(), Breach> {
        cost::check(*self)
    }
}

/// One event of a batch, borrowed: every accessor is a slice of the batch, never a copy.
#[derive(Clone, Copy)]
pub struct EventRef<'a> {
    data: &'a [u8],
    headers: &'a [u32],
    timestamps: &'a [u64],
    fields: &'a [u32; EVENT_STRIDE],
    index: usize,
}

#[inline]
fn span(data: &[u8], start: u32, len: u32) -> &[u8] {
    &data[start as usize..start as usize + len as usize]
}

impl<'a> EventRef<'a> {
    /// The event's position in its batch.
    #[inline]
    pub fn index(&self) -> usize {
        self.index
    }

    /// The payload.
    #[inline]
    pub fn value(&self) -> &'a [u8] {
        span(self.data, self.fields[0], self.fields[1])
    }

    /// The key, if the event has one.
    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        let len = self.fields[3];
        (len != NO_KEY).then(|| span(self.data, self.fields[2], len))
    }

    /// Milliseconds since the Unix epoch, when known.
    #[inline]
    pub fn timestamp(&self) -> Option<u64> {
        self.timestamps
            .get(self.index)
            .copied()
            .filter(|&t| t != NO_TIMESTAMP)
    }

    /// The headers as (name, value), in order; names are UTF-8 in a checked batch.
    #[inline]
    pub fn headers(&self) -> RawHeaders<'a> {
        let first = self.fields[4] as usize * HEADER_STRIDE;
        let count = self.fields[5] as usize * HEADER_STRIDE;
        let columns = if count == 0 {
            &[][..]
        } else {
            &self.headers[first..first + count]
        };
        RawHeaders {
            data: self.data,
            columns: columns.chunks_exact(HEADER_STRIDE),
        }
    }

    /// The number of headers.
    #[inline]
    pub fn header_count(&self) -> usize {
        self.fields[5] as usize
    }

    /// Whether the event has any header.
    #[inline]
    pub fn has_headers(&self) -> bool {
        self.fields[5] != 0
    }

    /// Bytes of key, value and headers: what the event weighs in a sink or an output cap.
    pub fn size(&self) -> usize {
        let key = self.key().map_or(0, <[u8]>::len);
        let headers: usize = self.headers().map(|(n, v)| n.len() + v.len()).sum();
        key + self.value().len() + headers
    }

    /// Whether the event is one of `batch`'s (its numbers lie in that events column).
    #[inline]
    pub fn is_in(&self, batch: BatchRef<'_>) -> bool {
        batch.events.as_ptr_range().contains(&self.fields.as_ptr())
    }
}

impl std::fmt::Debug for EventRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRef")
            .field("index", &self.index)
            .field("key", &self.key().map(String::from_utf8_lossy))
            .field("value", &String::from_utf8_lossy(self.value()))
            .field("headers", &self.header_count())
            .field("timestamp", &self.timestamp())
            .finish()
    }
}

/// The headers of an [`EventRef`], as (name, value) bytes.
#[derive(Clone)]
pub struct RawHeaders<'a> {
    data: &'a [u8],
    columns: ChunksExact<'a, u32>,
}

impl<'a> Iterator for RawHeaders<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let f = self.columns.next()?;
        Some((span(self.data, f[0], f[1]), span(self.data, f[2], f[3])))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.columns.size_hint()
    }
}

impl ExactSizeIterator for RawHeaders<'_> {}

/// A batch's four vectors, borrowed for writing: the encoder. Each byte of an appended event
/// is copied into `data` once, in the order key, value, then each header's name and value.
#[derive(Debug)]
pub struct BatchMut<'a> {
    pub data: &'a mut Vec<u8>,
    pub events: &'a mut Vec<u32>,
    pub headers: &'a mut Vec<u32>,
    pub timestamps: &'a mut Vec<u64>,
}

/// Lengths of a batch's four vectors: where to cut it back to with [`BatchMut::truncate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    data: usize,
    events: usize,
    headers: usize,
    timestamps: usize,
}

impl BatchMut<'_> {
    /// The number of events.
    #[inline]
    pub fn len(&self) -> usize {
        self.events.len() / EVENT_STRIDE
    }

    /// Whether the batch holds no event.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.events.len() < EVENT_STRIDE
    }

    /// Removes every event, keeping the allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.events.clear();
        self.headers.clear();
        self.timestamps.clear();
    }

    /// Appends `bytes` to `data`; returns their span.
    #[inline]
    pub fn put(&mut self, bytes: &[u8]) -> (u32, u32) {
        let start = offset(self.data.len());
        self.data.extend_from_slice(bytes);
        (start, offset(bytes.len()))
    }

    /// Appends a key to `data`; returns its span, or the contract's "no key".
    #[inline]
    pub fn put_key(&mut self, key: Option<&[u8]>) -> (u32, u32) {
        match key {
            Some(key) => self.put(key),
            None => (0, NO_KEY),
        }
    }

    /// Appends an event with this value and nothing else. No allocation once the batch has
    /// room.
    #[inline]
    pub fn push_value(&mut self, value: &[u8]) {
        let (start, len) = self.put(value);
        self.events
            .extend_from_slice(&[start, len, 0, NO_KEY, 0, 0]);
        if !self.timestamps.is_empty() {
            self.timestamps.push(NO_TIMESTAMP);
        }
    }

    /// Appends an event made of these parts.
    #[inline]
    pub fn push_parts<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        timestamp: Option<u64>,
    ) {
        let key = self.put_key(key);
        let value = self.put(value);
        self.push_record(key, value, headers, timestamp);
    }

    /// Appends a copy of an event of another batch.
    #[inline]
    pub fn push_event(&mut self, event: EventRef<'_>) {
        self.push_parts(
            event.key(),
            event.value(),
            event.headers(),
            event.timestamp(),
        );
    }

    /// Appends the record of an event whose key and value are already in `data` (spans from
    /// [`BatchMut::put`] and [`BatchMut::put_key`]), copying its headers after them.
    #[inline]
    pub fn push_record<'h>(
        &mut self,
        key: (u32, u32),
        value: (u32, u32),
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        timestamp: Option<u64>,
    ) {
        let index = self.len();
        let first = offset(self.headers.len() / HEADER_STRIDE);
        let mut count = 0u32;
        for (name, value) in headers {
            let (name_start, name_len) = self.put(name);
            let (value_start, value_len) = self.put(value);
            self.headers
                .extend_from_slice(&[name_start, name_len, value_start, value_len]);
            count += 1;
        }
        let first = if count == 0 { 0 } else { first };
        self.events
            .extend_from_slice(&[value.0, value.1, key.0, key.1, first, count]);
        self.set_timestamp(index, timestamp);
    }

    /// Records event `index`'s timestamp, keeping the column empty while no event has one.
    #[inline]
    pub fn set_timestamp(&mut self, index: usize, timestamp: Option<u64>) {
        match timestamp {
            None if self.timestamps.is_empty() => {}
            None => self.timestamps.push(NO_TIMESTAMP),
            Some(ts) => {
                // The first timestamp of the batch: the events before it had none.
                self.timestamps.resize(index, NO_TIMESTAMP);
                self.timestamps.push(ts);
            }
        }
    }

    /// Where the batch ends now.
    #[inline]
    pub fn mark(&self) -> Mark {
        BatchRef {
            data: self.data,
            events: self.events,
            headers: self.headers,
            timestamps: self.timestamps,
        }
        .mark()
    }

    /// Cuts the batch back to `mark`, dropping what was appended since.
    pub fn truncate(&mut self, mark: Mark) {
        self.data.truncate(mark.data);
        self.events.truncate(mark.events);
        self.headers.truncate(mark.headers);
        self.timestamps.truncate(mark.timestamps);
    }
}

/// A length or offset as the contract's `u32`. A guest's memory, and so any batch it holds or
/// returns, is under 4 GiB, and the host's sources cap lines far below that: a batch that
/// large is a bug worth stopping at.
#[inline]
pub fn offset(n: usize) -> u32 {
    u32::try_from(n).expect("a batch's buffer stays under 4 GiB")
}

/// A batch that owns its four vectors: what code holding neither the host's nor the SDK's
/// batch type (this crate's own tests) builds and reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub data: Vec<u8>,
    pub events: Vec<u32>,
    pub headers: Vec<u32>,
    pub timestamps: Vec<u64>,
}

impl Batch {
    /// An empty batch; allocates nothing.
    pub const fn new() -> Batch {
        Batch {
            data: Vec::new(),
            events: Vec::new(),
            headers: Vec::new(),
            timestamps: Vec::new(),
        }
    }

    /// The batch, for reading.
    #[inline]
    pub fn columns(&self) -> BatchRef<'_> {
        BatchRef {
            data: &self.data,
            events: &self.events,
            headers: &self.headers,
            timestamps: &self.timestamps,
        }
    }

    /// The batch, for writing.
    #[inline]
    pub fn writer(&mut self) -> BatchMut<'_> {
        BatchMut {
            data: &mut self.data,
            events: &mut self.events,
            headers: &mut self.headers,
            timestamps: &mut self.timestamps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        let mut batch = Batch::new();
        let mut w = batch.writer();
        w.push_value(b"plain");
        w.push_parts(
            Some(b"k"),
            b"v",
            [(b"a".as_slice(), b"1".as_slice()), (b"b", b"22")],
            Some(7),
        );
        w.push_value(b"");
        batch
    }

    #[test]
    fn a_value_only_batch_has_no_header_or_timestamp_column() {
        let mut batch = Batch::new();
        batch.writer().push_value(b"one");
        batch.writer().push_value(b"two");
        assert_eq!(batch.data, b"onetwo");
        assert_eq!(batch.events, [0, 3, 0, NO_KEY, 0, 0, 3, 3, 0, NO_KEY, 0, 0]);
        assert!(batch.headers.is_empty() && batch.timestamps.is_empty());
        assert_eq!(batch.columns().value_bytes(), 6);
        batch.columns().check().unwrap();
    }

    #[test]
    fn parts_round_trip_through_views() {
        let batch = sample();
        let view = batch.columns();
        view.check().unwrap();
        assert_eq!(
            batch.timestamps,
            [NO_TIMESTAMP, 7, NO_TIMESTAMP],
            "backfilled"
        );
        let e = view.get(1).unwrap();
        assert_eq!(e.key(), Some(b"k".as_slice()));
        assert_eq!(e.timestamp(), Some(7));
        assert_eq!(view.get(0).unwrap().timestamp(), None);
        let headers: Vec<_> = e.headers().collect();
        assert_eq!(headers, [(b"a".as_slice(), b"1".as_slice()), (b"b", b"22")]);
        assert_eq!(e.headers().len(), 2);
        assert_eq!(e.size(), 1 + 1 + 5);
        assert!(view.get(3).is_none());
        assert!(e.is_in(view) && !e.is_in(Batch::new().columns()));
        let mut copy = Batch::new();
        for i in (0..view.len()).rev() {
            copy.writer().push_event(view.get(i).unwrap());
        }
        assert_eq!(copy.columns().get(1).unwrap().headers().len(), 2);
        assert_eq!(copy.columns().get(2).unwrap().value(), b"plain");
    }

    #[test]
    fn malformed_batches_are_named() {
        let good = sample();
        type Break = fn(&mut Batch);
        let cases: [(Break, &str); 8] = [
            (|b| b.events.push(0), "not a multiple of 6"),
            (|b| b.headers.push(0), "not a multiple of 4"),
            (|b| b.timestamps.push(1), "4 timestamps for 3 events"),
            (|b| b.events[1] = 100, "event 0: its value"),
            (|b| b.events[0] = u32::MAX, "event 0: its value"),
            (|b| b.events[8] = u32::MAX, "event 1: its key"),
            (|b| b.events[11] = 3, "event 1: its headers"),
            (|b| b.data[7] = 0xff, "header 0: its name is not UTF-8"),
        ];
        for (breach, expected) in cases {
            let mut batch = good.clone();
            breach(&mut batch);
            let err = batch.columns().check().unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
    }

    #[test]
    fn a_batch_is_cut_back_to_its_mark() {
        let mut batch = sample();
        let before = batch.clone();
        let mark = batch.writer().mark();
        batch
            .writer()
            .push_parts(None, b"x", [(b"n".as_slice(), b"v".as_slice())], Some(1));
        batch.writer().truncate(mark);
        assert_eq!(batch, before);
    }
}
