//! Packed batches: the `batch` record of `weir:stage@0.3.0` as the SDK's own [`Batch`], and
//! [`EventView`], one event of it, borrowed.
//!
//! A batch is one byte buffer (`data`) and three columns of numbers that point into it
//! (`events`, `headers`, `timestamps`), laid out exactly as the contract's record, so the
//! guest bindings move the vectors in and out without copying them. Data moves one way through
//! this module: inputs are read through [`EventView`]s (no allocation), outputs are appended
//! with the `push_*` methods, whose bytes land in `data` once. A batch is checked with
//! [`Batch::check`] before any view is taken, so a malformed input is named, not a panic deep
//! in a stage. The layout, views, encoder and checks are `weir-wire`'s, the host's own: the
//! batch lends its vectors to it ([`Batch::columns`]).

use weir_wire::{BatchMut, BatchRef, RawHeaders};
pub(crate) use weir_wire::{Mark, offset};

use crate::Event;

pub use weir_wire::{EVENT_STRIDE, HEADER_STRIDE, NO_KEY, NO_TIMESTAMP};

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
    pub(crate) fn writer(&mut self) -> BatchMut<'_> {
        BatchMut {
            data: &mut self.data,
            events: &mut self.events,
            headers: &mut self.headers,
            timestamps: &mut self.timestamps,
        }
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
    #[inline]
    pub fn get(&self, index: usize) -> Option<EventView<'_>> {
        let event = self.columns().get(index)?;
        Some(EventView { batch: self, event })
    }

    /// Every event, in order.
    #[inline]
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EventView<'_>> + '_ {
        self.columns()
            .iter()
            .map(move |event| EventView { batch: self, event })
    }

    /// Copies every event out as an owned [`Event`].
    pub fn to_events(&self) -> Vec<Event> {
        self.iter().map(|e| e.to_owned()).collect()
    }

    /// Removes every event, keeping the allocations.
    pub fn clear(&mut self) {
        self.writer().clear();
    }

    /// Checks the contract's invariants as the host does: whole records in both columns, none
    /// or one timestamp per event, every span inside `data`, every header range inside the
    /// header column, every header name UTF-8, and the host's hard limits on a call's events
    /// and headers. Says which event or header breaks them.
    pub fn check(&self) -> Result<(), String> {
        self.columns().check().map_err(|breach| breach.to_string())
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
    #[inline]
    pub fn push_parts<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        timestamp: Option<u64>,
    ) {
        let headers = headers.into_iter().map(|(n, v)| (n.as_bytes(), v));
        self.writer().push_parts(key, value, headers, timestamp);
    }

    /// Appends a copy of an event of another batch.
    #[inline]
    pub(crate) fn push_view(&mut self, event: &EventView<'_>) {
        self.writer().push_event(event.event);
    }

    /// Appends a key to `data`; returns its span, or the contract's "no key".
    #[inline]
    pub(crate) fn put_key(&mut self, key: Option<&[u8]>) -> (u32, u32) {
        self.writer().put_key(key)
    }

    /// Appends the record of an event whose key and value are already in `data`, copying its
    /// headers after them.
    #[inline]
    pub(crate) fn push_record<'h>(
        &mut self,
        key: (u32, u32),
        value: (u32, u32),
        headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
        timestamp: Option<u64>,
    ) {
        self.writer().push_record(key, value, headers, timestamp);
    }

    /// Where the batch ends now: where to cut it back to when an input's outputs are
    /// discarded because it failed.
    #[inline]
    pub(crate) fn mark(&self) -> Mark {
        self.columns().mark()
    }

    /// Cuts the batch back to `mark`, dropping what was appended since.
    pub(crate) fn truncate(&mut self, mark: Mark) {
        self.writer().truncate(mark);
    }
}

/// One event of a [`Batch`], borrowed: every accessor is a slice of the batch, never a copy.
#[derive(Clone, Copy)]
pub struct EventView<'a> {
    batch: &'a Batch,
    event: weir_wire::EventRef<'a>,
}

impl<'a> EventView<'a> {
    /// The event's position in its batch.
    #[inline]
    pub fn index(&self) -> usize {
        self.event.index()
    }

    /// The batch the event belongs to.
    #[inline]
    pub(crate) fn batch(&self) -> &'a Batch {
        self.batch
    }

    /// The payload.
    #[inline]
    pub fn value(&self) -> &'a [u8] {
        self.event.value()
    }

    /// The key, if the event has one.
    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        self.event.key()
    }

    /// Milliseconds since the Unix epoch, when known.
    #[inline]
    pub fn timestamp(&self) -> Option<u64> {
        self.event.timestamp()
    }

    /// The headers as (name, value), in order.
    #[inline]
    pub fn headers(&self) -> Headers<'a> {
        Headers {
            raw: self.event.headers(),
        }
    }

    /// The value of the first header called `name`, if any.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.raw_headers()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// Whether the event has any header.
    #[inline]
    pub(crate) fn has_headers(&self) -> bool {
        self.event.has_headers()
    }

    /// The headers with their names as bytes: what copying them needs, without a UTF-8 check.
    #[inline]
    pub(crate) fn raw_headers(&self) -> RawHeaders<'a> {
        self.event.headers()
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
            .field("index", &self.index())
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
    raw: RawHeaders<'a>,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (name, value) = self.raw.next()?;
        // Names were checked when the batch arrived (`Batch::check`); one that is not UTF-8
        // here is a batch that skipped the check, which is a bug in the caller.
        let name = std::str::from_utf8(name).expect("header names are UTF-8 in a checked batch");
        Some((name, value))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.raw.size_hint()
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
