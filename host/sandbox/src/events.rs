//! Packed batches: the `batch` record of `weir:stage@0.2.0`, as the host holds every batch.
//!
//! [`Events`] is one byte buffer (`data`) and three columns of numbers that point into it
//! (`events`, `headers`, `timestamps`), laid out exactly as the contract's record, so handing
//! a batch to a plugin is a handful of memory copies and taking one back is as many. An event
//! is an [`EventRef`]: a view into the buffer, never an allocation. Sources build batches with
//! the `push_*` methods; every later step reads views or copies whole events between batches.
//! The layout, the views, the encoder and the checks are `weir-wire`'s, which the Rust SDK
//! uses too: [`Events`] lends its vectors to it ([`Events::columns`], [`Events::writer`]).
//!
//! A batch built by the host is well formed by construction. One that comes back from a plugin
//! is checked by [`Events::check`] before any view is taken: a span out of range or a header
//! name that is not UTF-8 is a broken contract, reported, never a panic.

use std::ops::Range;

pub use crate::contract::v02::weir::stage::types::Batch as Events;
use weir_wire::{BatchMut, BatchRef};
pub use weir_wire::{EVENT_STRIDE, EventRef, HEADER_STRIDE, NO_KEY, NO_TIMESTAMP, RawHeaders};

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    /// An empty batch; allocates nothing.
    pub const fn new() -> Events {
        Events {
            data: Vec::new(),
            events: Vec::new(),
            headers: Vec::new(),
            timestamps: Vec::new(),
        }
    }

    /// An empty batch with room for `events` events of `bytes` bytes in all.
    pub fn with_capacity(events: usize, bytes: usize) -> Events {
        Events {
            data: Vec::with_capacity(bytes),
            events: Vec::with_capacity(events * EVENT_STRIDE),
            headers: Vec::new(),
            timestamps: Vec::new(),
        }
    }

    /// The batch's vectors, borrowed for reading with `weir-wire`.
    #[inline]
    pub fn columns(&self) -> BatchRef<'_> {
        BatchRef {
            data: &self.data,
            events: &self.events,
            headers: &self.headers,
            timestamps: &self.timestamps,
        }
    }

    /// The batch's vectors, borrowed for writing with `weir-wire`'s encoder.
    #[inline]
    pub fn writer(&mut self) -> BatchMut<'_> {
        BatchMut {
            data: &mut self.data,
            events: &mut self.events,
            headers: &mut self.headers,
            timestamps: &mut self.timestamps,
        }
    }

    pub fn len(&self) -> usize {
        self.events.len() / EVENT_STRIDE
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Event `index`; panics when out of range, like slice indexing.
    #[inline]
    pub fn get(&self, index: usize) -> EventRef<'_> {
        match self.columns().get(index) {
            Some(event) => event,
            None => panic!("event {index} of a batch of {}", self.len()),
        }
    }

    #[inline]
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EventRef<'_>> + '_ {
        self.columns().iter()
    }

    /// Bytes of every value: what a sink's byte counter adds.
    pub fn value_bytes(&self) -> u64 {
        self.columns().value_bytes()
    }

    /// Removes every event, keeping the allocations for reuse.
    pub fn clear(&mut self) {
        self.writer().clear();
    }

    /// Appends an event with this value and nothing else: the line sources' and generator's
    /// event. No allocation once the batch has room.
    #[inline]
    pub fn push_value(&mut self, value: &[u8]) {
        self.writer().push_value(value);
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
        self.writer().push_parts(key, value, headers, timestamp);
    }

    /// Appends a copy of an event from another batch (or this one).
    pub fn push_event(&mut self, event: EventRef<'_>) {
        if event.is_in(self.columns()) {
            // Copying within one batch: the view would alias the buffer being grown.
            let copy = self.select(std::iter::once(event.index()));
            self.push_event(copy.get(0));
            return;
        }
        self.writer().push_event(event);
    }

    /// A new batch holding copies of the events at `indices`, in that order.
    pub fn select(&self, indices: impl IntoIterator<Item = usize>) -> Events {
        let mut out = Events::new();
        for i in indices {
            out.push_event(self.get(i));
        }
        out
    }

    /// A copy holding only what the events reference, the buffer and each column allocated
    /// once at its size: for a batch whose buffer holds much that no event references.
    pub fn compact(&self) -> Events {
        let bytes = self.iter().map(|e| e.size()).sum();
        let headers: usize = self.iter().map(|e| e.header_count()).sum();
        let mut out = Events {
            data: Vec::with_capacity(bytes),
            events: Vec::with_capacity(self.events.len()),
            headers: Vec::with_capacity(headers * HEADER_STRIDE),
            timestamps: Vec::with_capacity(self.timestamps.len()),
        };
        for event in self.iter() {
            out.push_event(event);
        }
        out
    }

    /// A new batch holding copies of the events in `range`.
    pub fn slice(&self, range: Range<usize>) -> Events {
        if range == (0..self.len()) {
            return self.clone();
        }
        self.select(range)
    }

    /// Checks a batch a plugin returned: the columns' shapes, every span inside the buffer,
    /// every header range inside the header column, every header name UTF-8, and the hard
    /// limits of [`crate::cost`]. [`crate::cost::charge`] is the same check against a cap.
    pub fn check(&self) -> Result<(), String> {
        self.columns().check().map_err(|breach| breach.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_only_batch_has_no_header_or_timestamp_column() {
        let mut batch = Events::new();
        batch.push_value(b"one");
        batch.push_value(b"two");
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.get(1).value(), b"two");
        assert_eq!(batch.get(0).key(), None);
        assert!(batch.headers.is_empty() && batch.timestamps.is_empty());
        assert_eq!(batch.value_bytes(), 6);
        batch.check().unwrap();
    }

    #[test]
    fn parts_round_trip_through_views() {
        let mut batch = Events::new();
        batch.push_value(b"plain");
        batch.push_parts(
            Some(b"k"),
            b"v",
            [(b"a".as_slice(), b"1".as_slice()), (b"b", b"2")],
            Some(7),
        );
        batch.check().unwrap();
        let e = batch.get(1);
        assert_eq!(e.key(), Some(b"k".as_slice()));
        assert_eq!(e.timestamp(), Some(7));
        assert_eq!(batch.get(0).timestamp(), None, "backfilled as none");
        let headers: Vec<_> = e.headers().collect();
        assert_eq!(headers, [(b"a".as_slice(), b"1".as_slice()), (b"b", b"2")]);
        let copy = batch.select([1, 0]);
        assert_eq!(copy.get(0).headers().count(), 2);
        assert_eq!(copy.get(1).value(), b"plain");
        assert_eq!(copy.get(0).size(), 1 + 1 + 4);
    }

    #[test]
    fn a_compact_copy_holds_only_what_the_events_reference() {
        let mut batch = Events::new();
        batch.data = vec![b'x'; 1 << 16];
        batch.push_parts(
            Some(b"k"),
            b"v",
            [(b"n".as_slice(), b"1".as_slice())],
            Some(3),
        );
        batch.push_value(b"w");
        let copy = batch.compact();
        assert_eq!(copy.data, b"kvn1w");
        assert_eq!(copy.data.capacity(), 5);
        assert_eq!(copy.events.capacity(), 2 * EVENT_STRIDE);
        assert_eq!(copy.headers.capacity(), HEADER_STRIDE);
        assert!(batch.iter().zip(copy.iter()).all(|(a, b)| {
            a.key() == b.key()
                && a.value() == b.value()
                && a.timestamp() == b.timestamp()
                && a.headers().eq(b.headers())
        }));
    }

    #[test]
    fn spans_outside_the_buffer_are_refused() {
        let mut batch = Events::new();
        batch.push_value(b"abc");
        batch.events[1] = 4;
        let err = batch.check().unwrap_err();
        assert!(err.contains("event 0") && err.contains("outside"), "{err}");
        batch.events[1] = 3;
        batch.events[0] = u32::MAX;
        assert!(batch.check().is_err(), "no overflow in start + length");
        let mut batch = Events::new();
        batch.push_parts(None, b"v", [(b"n".as_slice(), b"x".as_slice())], None);
        batch.data[1] = 0xff;
        assert!(batch.check().unwrap_err().contains("not UTF-8"));
        batch.events[5] = 2;
        assert!(batch.check().unwrap_err().contains("headers"));
    }
}
