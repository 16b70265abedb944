//! Packed batches: the `batch` record of `weir:stage@0.2.0`, as the host holds every batch.
//!
//! [`Events`] is one byte buffer (`data`) and three columns of numbers that point into it
//! (`events`, `headers`, `timestamps`), laid out exactly as the contract's record, so handing
//! a batch to a plugin is a handful of memory copies and taking one back is as many. An event
//! is an [`EventRef`]: a view into the buffer, never an allocation. Sources build batches with
//! the `push_*` methods; every later step reads views or copies whole events between batches.
//!
//! A batch built by the host is well formed by construction. One that comes back from a plugin
//! is checked by [`Events::check`] before any view is taken: a span out of range or a header
//! name that is not UTF-8 is a broken contract, reported, never a panic.

use std::ops::Range;

pub use crate::contract::v02::weir::stage::types::Batch as Events;

/// Numbers per event in [`Events::events`]: value start, value length, key start, key length,
/// first header, header count.
pub const EVENT_STRIDE: usize = 6;
/// Numbers per header in [`Events::headers`]: name start, name length, value start, value length.
pub const HEADER_STRIDE: usize = 4;
/// The key length of an event without a key.
pub const NO_KEY: u32 = u32::MAX;
/// The timestamp of an event without one, in a batch where others have one.
pub const NO_TIMESTAMP: u64 = u64::MAX;

/// One event of a batch, borrowed.
#[derive(Clone, Copy)]
pub struct EventRef<'a> {
    batch: &'a Events,
    index: usize,
}

impl std::fmt::Debug for EventRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRef")
            .field("key", &self.key().map(String::from_utf8_lossy))
            .field("value", &String::from_utf8_lossy(self.value()))
            .field("headers", &self.headers().count())
            .field("timestamp", &self.timestamp())
            .finish()
    }
}

impl<'a> EventRef<'a> {
    fn field(&self, n: usize) -> u32 {
        self.batch.events[self.index * EVENT_STRIDE + n]
    }

    fn span(&self, start: u32, len: u32) -> &'a [u8] {
        &self.batch.data[start as usize..start as usize + len as usize]
    }

    /// The event's position in its batch.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn value(&self) -> &'a [u8] {
        self.span(self.field(0), self.field(1))
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        let len = self.field(3);
        (len != NO_KEY).then(|| self.span(self.field(2), len))
    }

    pub fn timestamp(&self) -> Option<u64> {
        self.batch
            .timestamps
            .get(self.index)
            .copied()
            .filter(|&t| t != NO_TIMESTAMP)
    }

    /// The event's headers as (name, value); names are UTF-8 in a checked batch.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let batch = self.batch;
        let first = self.field(4) as usize;
        let count = self.field(5) as usize;
        (first..first + count).map(move |h| {
            let f = &batch.headers[h * HEADER_STRIDE..h * HEADER_STRIDE + HEADER_STRIDE];
            (
                &batch.data[f[0] as usize..(f[0] + f[1]) as usize],
                &batch.data[f[2] as usize..(f[2] + f[3]) as usize],
            )
        })
    }

    pub fn header_count(&self) -> usize {
        self.field(5) as usize
    }

    /// Bytes of key, value and headers: what the event weighs in a sink or an output cap.
    pub fn size(&self) -> usize {
        let key = self.key().map_or(0, <[u8]>::len);
        let headers: usize = self.headers().map(|(n, v)| n.len() + v.len()).sum();
        key + self.value().len() + headers
    }
}

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

    pub fn len(&self) -> usize {
        self.events.len() / EVENT_STRIDE
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Event `index`; panics when out of range, like slice indexing.
    pub fn get(&self, index: usize) -> EventRef<'_> {
        assert!(
            index < self.len(),
            "event {index} of a batch of {}",
            self.len()
        );
        EventRef { batch: self, index }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = EventRef<'_>> + '_ {
        (0..self.len()).map(move |index| EventRef { batch: self, index })
    }

    /// Bytes of every value: what a sink's byte counter adds.
    pub fn value_bytes(&self) -> u64 {
        self.events
            .chunks_exact(EVENT_STRIDE)
            .map(|e| u64::from(e[1]))
            .sum()
    }

    /// Removes every event, keeping the allocations for reuse.
    pub fn clear(&mut self) {
        self.data.clear();
        self.events.clear();
        self.headers.clear();
        self.timestamps.clear();
    }

    /// Appends `bytes` to the buffer and returns their start.
    fn put(&mut self, bytes: &[u8]) -> u32 {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        offset(start)
    }

    /// Appends an event with this value and nothing else: the line sources' and generator's
    /// event. No allocation once the batch has room.
    pub fn push_value(&mut self, value: &[u8]) {
        let start = self.put(value);
        self.events
            .extend_from_slice(&[start, offset(value.len()), 0, NO_KEY, 0, 0]);
        if !self.timestamps.is_empty() {
            self.timestamps.push(NO_TIMESTAMP);
        }
    }

    /// Appends an event made of these parts.
    pub fn push_parts<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        timestamp: Option<u64>,
    ) {
        let index = self.len();
        let (key_start, key_len) = match key {
            Some(key) => (self.put(key), offset(key.len())),
            None => (0, NO_KEY),
        };
        let value_start = self.put(value);
        let first = offset(self.headers.len() / HEADER_STRIDE);
        let mut count = 0u32;
        for (name, value) in headers {
            let name_start = self.put(name);
            let value_start = self.put(value);
            self.headers.extend_from_slice(&[
                name_start,
                offset(name.len()),
                value_start,
                offset(value.len()),
            ]);
            count += 1;
        }
        self.events.extend_from_slice(&[
            value_start,
            offset(value.len()),
            key_start,
            key_len,
            if count == 0 { 0 } else { first },
            count,
        ]);
        self.set_timestamp(index, timestamp);
    }

    /// Appends a copy of an event from another batch (or this one).
    pub fn push_event(&mut self, event: EventRef<'_>) {
        if std::ptr::eq(event.batch, self) {
            // Copying within one batch: the view would alias the buffer being grown.
            let copy = self.select(std::iter::once(event.index));
            self.push_event(copy.get(0));
            return;
        }
        self.push_parts(
            event.key(),
            event.value(),
            event.headers(),
            event.timestamp(),
        );
    }

    fn set_timestamp(&mut self, index: usize, timestamp: Option<u64>) {
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
        crate::cost::charge(self, u64::MAX)
            .map(|_| ())
            .map_err(|breach| breach.to_string())
    }
}

/// A buffer offset as the contract's `u32`. Batches are capped far below 4 GiB (a plugin's
/// memory, and so its output, is at most 4 GiB; sources cap lines at 16 MiB), so this holds.
fn offset(n: usize) -> u32 {
    u32::try_from(n).expect("a batch buffer stays under 4 GiB")
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
