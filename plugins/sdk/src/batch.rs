//! Packed batches: the `batch` record of `weir:stage@0.2.0` as the SDK's own [`Batch`], and
//! [`EventView`], one event of it, borrowed.
//!
//! A batch is one byte buffer (`data`) and three columns of numbers that point into it
//! (`events`, `headers`, `timestamps`), laid out exactly as the contract's record, so the
//! guest bindings move the vectors in and out without copying them. Data moves one way through
//! this module: inputs are read through [`EventView`]s (no allocation), outputs are appended
//! with the `push_*` methods, whose bytes land in `data` once. A batch is checked with
//! [`Batch::check`] before any view is taken, so a malformed input is named, not a panic deep
//! in a stage.

use std::slice::ChunksExact;

use crate::Event;

/// Numbers per event in [`Batch::events`]: value start, value length, key start, key length,
/// first header, header count.
pub const EVENT_STRIDE: usize = 6;
/// Numbers per header in [`Batch::headers`]: name start, name length, value start, value
/// length.
pub const HEADER_STRIDE: usize = 4;
/// The key length of an event without a key (its key start is then 0).
pub const NO_KEY: u32 = u32::MAX;
/// The timestamp of an event without one, in a batch where others have one.
pub const NO_TIMESTAMP: u64 = u64::MAX;

/// Events packed into columns, as the contract's `batch` record; see `docs/contract.md`.
///
/// Event `i` is `events[6i .. 6i+6]`; its header `h` is `headers[4h .. 4h+4]`; starts are byte
/// offsets into `data`. `timestamps` is empty (no event has one) or has one entry per event,
/// [`NO_TIMESTAMP`] for none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub data: Vec<u8>,
    pub events: Vec<u32>,
    pub headers: Vec<u32>,
    pub timestamps: Vec<u64>,
}

/// Lengths of a batch's four vectors: where to cut it back to when an input's outputs are
/// discarded because it failed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    data: usize,
    events: usize,
    headers: usize,
    timestamps: usize,
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

    /// An empty batch with room for `events` events of `bytes` bytes in all.
    pub fn with_capacity(events: usize, bytes: usize) -> Batch {
        Batch {
            data: Vec::with_capacity(bytes),
            events: Vec::with_capacity(events * EVENT_STRIDE),
            headers: Vec::new(),
            timestamps: Vec::new(),
        }
    }

    /// Packs owned events.
    pub fn from_events<'e>(events: impl IntoIterator<Item = &'e Event>) -> Batch {
        let mut batch = Batch::new();
        for event in events {
            batch.push(event);
        }
        batch
    }

    /// The number of events.
    pub fn len(&self) -> usize {
        self.events.len() / EVENT_STRIDE
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.len() < EVENT_STRIDE
    }

    /// Event `index`, or `None` past the end. Panics later, on access, if the batch is
    /// malformed: [`Batch::check`] it first.
    pub fn get(&self, index: usize) -> Option<EventView<'_>> {
        let fields = self
            .events
            .get(index * EVENT_STRIDE..(index + 1) * EVENT_STRIDE)?;
        Some(EventView {
            batch: self,
            index,
            fields,
        })
    }

    /// Every event, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EventView<'_>> + '_ {
        self.events
            .chunks_exact(EVENT_STRIDE)
            .enumerate()
            .map(move |(index, fields)| EventView {
                batch: self,
                index,
                fields,
            })
    }

    /// Copies every event out as an owned [`Event`].
    pub fn to_events(&self) -> Vec<Event> {
        self.iter().map(|e| e.to_owned()).collect()
    }

    /// Removes every event, keeping the allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.events.clear();
        self.headers.clear();
        self.timestamps.clear();
    }

    /// Checks the contract's invariants: whole records in both columns, none or one timestamp
    /// per event, every span inside `data`, every header range inside the header column,
    /// every header name UTF-8. Says which event or header breaks them.
    pub fn check(&self) -> Result<(), String> {
        if !self.events.len().is_multiple_of(EVENT_STRIDE) {
            return Err(format!(
                "the events column has {} numbers, not a multiple of {EVENT_STRIDE}",
                self.events.len()
            ));
        }
        if !self.headers.len().is_multiple_of(HEADER_STRIDE) {
            return Err(format!(
                "the headers column has {} numbers, not a multiple of {HEADER_STRIDE}",
                self.headers.len()
            ));
        }
        let n = self.len();
        if !self.timestamps.is_empty() && self.timestamps.len() != n {
            return Err(format!(
                "{} timestamps for {n} events (there must be none or one per event)",
                self.timestamps.len()
            ));
        }
        let size = self.data.len() as u64;
        let inside = |start: u32, len: u32| u64::from(start) + u64::from(len) <= size;
        let header_count = (self.headers.len() / HEADER_STRIDE) as u64;
        for (i, e) in self.events.chunks_exact(EVENT_STRIDE).enumerate() {
            if !inside(e[0], e[1]) {
                return Err(format!(
                    "event {i}: its value is outside the {size}-byte buffer"
                ));
            }
            if e[3] != NO_KEY && !inside(e[2], e[3]) {
                return Err(format!(
                    "event {i}: its key is outside the {size}-byte buffer"
                ));
            }
            if u64::from(e[4]) + u64::from(e[5]) > header_count && e[5] > 0 {
                return Err(format!(
                    "event {i}: its headers are outside the {header_count} headers"
                ));
            }
        }
        for (h, f) in self.headers.chunks_exact(HEADER_STRIDE).enumerate() {
            if !inside(f[0], f[1]) || !inside(f[2], f[3]) {
                return Err(format!(
                    "header {h}: its name or value is outside the {size}-byte buffer"
                ));
            }
            if std::str::from_utf8(span(&self.data, f[0], f[1])).is_err() {
                return Err(format!("header {h}: its name is not UTF-8"));
            }
        }
        Ok(())
    }

    /// Appends an owned event.
    pub fn push(&mut self, event: &Event) {
        self.push_parts(
            event.key.as_deref(),
            &event.value,
            event
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice())),
            event.timestamp,
        );
    }

    /// Appends an event made of these parts: each byte is copied into `data` once, in the
    /// order the host writes them (key, value, then each header's name and value).
    pub fn push_parts<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        timestamp: Option<u64>,
    ) {
        let key = self.put_key(key);
        let value = self.put(value);
        let headers = headers.into_iter().map(|(n, v)| (n.as_bytes(), v));
        self.push_record(key, value, headers, timestamp);
    }

    /// Appends a copy of an event of another batch.
    pub(crate) fn push_view(&mut self, event: &EventView<'_>) {
        let key = self.put_key(event.key());
        let value = self.put(event.value());
        self.push_record(key, value, event.raw_headers(), event.timestamp());
    }

    /// Appends `bytes` to `data`; returns their span.
    pub(crate) fn put(&mut self, bytes: &[u8]) -> (u32, u32) {
        let start = offset(self.data.len());
        self.data.extend_from_slice(bytes);
        (start, offset(bytes.len()))
    }

    /// Appends a key to `data`; returns its span, or the contract's "no key".
    pub(crate) fn put_key(&mut self, key: Option<&[u8]>) -> (u32, u32) {
        match key {
            Some(key) => self.put(key),
            None => (0, NO_KEY),
        }
    }

    /// Appends the record of an event whose key and value are already in `data`, copying its
    /// headers after them.
    pub(crate) fn push_record<'h>(
        &mut self,
        key: (u32, u32),
        value: (u32, u32),
        headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
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

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            data: self.data.len(),
            events: self.events.len(),
            headers: self.headers.len(),
            timestamps: self.timestamps.len(),
        }
    }

    /// Cuts the batch back to `mark`, dropping what was appended since.
    pub(crate) fn truncate(&mut self, mark: Mark) {
        self.data.truncate(mark.data);
        self.events.truncate(mark.events);
        self.headers.truncate(mark.headers);
        self.timestamps.truncate(mark.timestamps);
    }
}

/// A length or offset as the contract's `u32`. A guest's memory, and so any batch it holds, is
/// under 4 GiB; natively, a batch that large is a bug worth stopping at.
pub(crate) fn offset(n: usize) -> u32 {
    u32::try_from(n).expect("a batch's buffer stays under 4 GiB")
}

fn span(data: &[u8], start: u32, len: u32) -> &[u8] {
    &data[start as usize..start as usize + len as usize]
}

/// One event of a [`Batch`], borrowed: every accessor is a slice of the batch, never a copy.
#[derive(Clone, Copy)]
pub struct EventView<'a> {
    batch: &'a Batch,
    index: usize,
    fields: &'a [u32],
}

impl<'a> EventView<'a> {
    /// The event's position in its batch.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The batch the event belongs to.
    pub(crate) fn batch(&self) -> &'a Batch {
        self.batch
    }

    /// The payload.
    pub fn value(&self) -> &'a [u8] {
        span(&self.batch.data, self.fields[0], self.fields[1])
    }

    /// The key, if the event has one.
    pub fn key(&self) -> Option<&'a [u8]> {
        let len = self.fields[3];
        (len != NO_KEY).then(|| span(&self.batch.data, self.fields[2], len))
    }

    /// Milliseconds since the Unix epoch, when known.
    pub fn timestamp(&self) -> Option<u64> {
        self.batch
            .timestamps
            .get(self.index)
            .copied()
            .filter(|&t| t != NO_TIMESTAMP)
    }

    /// The headers as (name, value), in order.
    pub fn headers(&self) -> Headers<'a> {
        let first = self.fields[4] as usize * HEADER_STRIDE;
        let count = self.fields[5] as usize * HEADER_STRIDE;
        let columns = if count == 0 {
            &[][..]
        } else {
            &self.batch.headers[first..first + count]
        };
        Headers {
            data: &self.batch.data,
            columns: columns.chunks_exact(HEADER_STRIDE),
        }
    }

    /// The value of the first header called `name`, if any.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.raw_headers()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// Whether the event has any header.
    pub(crate) fn has_headers(&self) -> bool {
        self.fields[5] != 0
    }

    /// The headers with their names as bytes: what copying them needs, without a UTF-8 check.
    pub(crate) fn raw_headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let headers = self.headers();
        let data = headers.data;
        headers
            .columns
            .map(move |f| (span(data, f[0], f[1]), span(data, f[2], f[3])))
    }

    /// Copies the event out as an owned [`Event`]: what the [`Stage`](crate::Stage) shape
    /// hands a stage.
    pub fn to_owned(&self) -> Event {
        Event {
            key: self.key().map(<[u8]>::to_vec),
            value: self.value().to_vec(),
            headers: self
                .headers()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
            timestamp: self.timestamp(),
        }
    }
}

impl std::fmt::Debug for EventView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventView")
            .field("index", &self.index)
            .field("key", &self.key().map(String::from_utf8_lossy))
            .field("value", &String::from_utf8_lossy(self.value()))
            .field("headers", &self.headers().len())
            .field("timestamp", &self.timestamp())
            .finish()
    }
}

/// The headers of an [`EventView`], as (name, value).
#[derive(Clone)]
pub struct Headers<'a> {
    data: &'a [u8],
    columns: ChunksExact<'a, u32>,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let f = self.columns.next()?;
        // Names were checked when the batch arrived (`Batch::check`); one that is not UTF-8
        // here is a batch that skipped the check, which is a bug in the caller.
        let name = std::str::from_utf8(span(self.data, f[0], f[1]))
            .expect("header names are UTF-8 in a checked batch");
        Some((name, span(self.data, f[2], f[3])))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.columns.size_hint()
    }
}

impl ExactSizeIterator for Headers<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Event {
        Event {
            key: Some(b"k".to_vec()),
            value: b"v".to_vec(),
            headers: vec![("a".into(), b"1".to_vec()), ("b".into(), b"22".to_vec())],
            timestamp: Some(7),
        }
    }

    #[test]
    fn a_value_only_batch_has_no_header_or_timestamp_column() {
        let batch = Batch::from_events(&[Event::new("one"), Event::new("two")]);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.data, b"onetwo");
        assert_eq!(batch.events, [0, 3, 0, NO_KEY, 0, 0, 3, 3, 0, NO_KEY, 0, 0]);
        assert!(batch.headers.is_empty() && batch.timestamps.is_empty());
        batch.check().unwrap();
    }

    #[test]
    fn events_round_trip_through_views() {
        let events = vec![Event::new("plain"), full(), Event::new("")];
        let batch = Batch::from_events(&events);
        batch.check().unwrap();
        assert_eq!(
            batch.timestamps,
            [NO_TIMESTAMP, 7, NO_TIMESTAMP],
            "backfilled"
        );
        assert_eq!(batch.to_events(), events);
        let e = batch.get(1).unwrap();
        assert_eq!(e.header("b"), Some(b"22".as_slice()));
        assert_eq!(e.header("c"), None);
        assert_eq!(e.headers().len(), 2);
        assert!(batch.get(3).is_none());
    }

    #[test]
    fn malformed_batches_are_named() {
        let good = Batch::from_events(&[full()]);
        type Breach = fn(&mut Batch);
        let cases: [(Breach, &str); 7] = [
            (|b| b.events.push(0), "not a multiple of 6"),
            (|b| b.headers.push(0), "not a multiple of 4"),
            (|b| b.timestamps.push(1), "2 timestamps for 1 events"),
            (|b| b.events[1] = 100, "event 0: its value"),
            (|b| b.events[2] = u32::MAX, "event 0: its key"),
            (|b| b.events[5] = 3, "event 0: its headers"),
            (|b| b.data[2] = 0xff, "header 0: its name is not UTF-8"),
        ];
        for (breach, expected) in cases {
            let mut batch = good.clone();
            breach(&mut batch);
            let err = batch.check().unwrap_err();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
    }

    #[test]
    fn a_failed_event_is_cut_back_to_its_mark() {
        let mut batch = Batch::from_events(&[Event::new("keep")]);
        let mark = batch.mark();
        batch.push(&full());
        batch.truncate(mark);
        assert_eq!(batch, Batch::from_events(&[Event::new("keep")]));
    }
}
