//! Delivery: batches, the acknowledgements that follow them, and dead letters.
//!
//! A source wraps the events it emits in a [`Batch`] holding one [`Ack`] for them. Every batch
//! derived from it (a stage's output, each copy on a fan-out, each dead letter) carries a clone
//! of that `Ack`; a sink drops its clones only once the events are flushed, the dead-letter
//! writer once the letter is written. When the last clone drops, every event the source emitted
//! in that batch has been written or dead-lettered, and the [`Tracker`] counts them done. That
//! is the point where a source may commit its position; it also yields the in-flight count that
//! shows backpressure holding.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use serde::Serialize;

pub use crate::sandbox::Event;

/// Events moving together between two nodes of a pipeline.
#[derive(Debug, Clone)]
pub struct Batch {
    pub events: Vec<Event>,
    /// The acknowledgements of the source batches these events came from.
    pub acks: Vec<Ack>,
}

/// Shared bookkeeping of the events in flight.
#[derive(Debug, Default)]
pub struct Tracker {
    emitted: AtomicU64,
    done: AtomicU64,
    high_water: AtomicU64,
}

impl Tracker {
    /// Registers `count` events a source is about to send, and returns their acknowledgement.
    pub fn emit(self: &Arc<Self>, count: u64) -> Ack {
        let emitted = self.emitted.fetch_add(count, Ordering::AcqRel) + count;
        let in_flight = emitted.saturating_sub(self.done.load(Ordering::Acquire));
        self.high_water.fetch_max(in_flight, Ordering::AcqRel);
        Ack(Arc::new(AckInner {
            count,
            tracker: Arc::clone(self),
        }))
    }

    /// Events emitted by sources so far.
    pub fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::Acquire)
    }

    /// Events all of whose results were written or dead-lettered.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
    }

    /// The most events that were in flight at once.
    pub fn high_water(&self) -> u64 {
        self.high_water.load(Ordering::Acquire)
    }
}

/// The acknowledgement of one source batch. Clone it to every batch derived from it; when the
/// last clone drops, the source batch is done.
#[derive(Debug, Clone)]
pub struct Ack(
    #[expect(
        dead_code,
        reason = "held only for its Drop, which counts the events done"
    )]
    Arc<AckInner>,
);

#[derive(Debug)]
struct AckInner {
    count: u64,
    tracker: Arc<Tracker>,
}

impl Drop for AckInner {
    fn drop(&mut self) {
        self.tracker.done.fetch_add(self.count, Ordering::AcqRel);
    }
}

/// Why an event went to the dead-letter sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The plugin rejected the event.
    Reject,
    /// The plugin asked for retries and the last one failed too.
    RetriesExhausted,
    /// The call ran out of fuel.
    OutOfFuel,
    /// The call ran past its wall-clock deadline.
    Deadline,
    /// The instance tried to grow its memory past the stage's cap.
    MemoryLimit,
    /// The guest overflowed its stack.
    StackOverflow,
    /// The guest panicked or reached `unreachable`.
    Panic,
    /// Any other trap (out-of-bounds access, bad cast, …).
    Trap,
    /// The plugin returned a different number of outcomes than events it was given.
    WrongOutcomeCount,
    /// A fresh instance could not be initialised to process the event.
    InitFailed,
    /// A source read an input line longer than it accepts.
    Oversized,
    /// The plugin's outputs for the event broke one of the stage's output caps.
    OutputCap,
    /// The stage's circuit breaker was open: the event was not sent to the plugin.
    BreakerOpen,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Reject => "reject",
            FailureKind::RetriesExhausted => "retries-exhausted",
            FailureKind::OutOfFuel => "out-of-fuel",
            FailureKind::Deadline => "deadline",
            FailureKind::MemoryLimit => "memory-limit",
            FailureKind::StackOverflow => "stack-overflow",
            FailureKind::Panic => "panic",
            FailureKind::Trap => "trap",
            FailureKind::WrongOutcomeCount => "wrong-outcome-count",
            FailureKind::InitFailed => "init-failed",
            FailureKind::Oversized => "oversized",
            FailureKind::OutputCap => "output-cap",
            FailureKind::BreakerOpen => "breaker-open",
        }
    }
}

/// An event a stage could not process, with everything needed to understand and replay it.
#[derive(Debug)]
pub struct DeadLetter {
    pub stage: Arc<str>,
    pub plugin_digest: Arc<str>,
    pub kind: FailureKind,
    pub message: String,
    pub attempts: u32,
    pub event: Event,
    /// Keeps the source batch open until the letter is written.
    pub ack: Vec<Ack>,
}

/// Bytes as JSON: a string when they are UTF-8, otherwise base64 under a `_base64` name.
fn put_bytes(out: &mut serde_json::Map<String, serde_json::Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            out.insert(name.to_string(), text.into());
        }
        Err(_) => {
            out.insert(
                format!("{name}_base64"),
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into(),
            );
        }
    }
}

/// The JSON form of an event: `key`, `value`, `headers` (a list of `[name, value]`) and
/// `timestamp`; bytes that are not UTF-8 appear base64-encoded as `key_base64`/`value_base64`.
pub fn event_json(event: &Event) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if let Some(key) = &event.key {
        put_bytes(&mut out, "key", key);
    }
    put_bytes(&mut out, "value", &event.value);
    if !event.headers.is_empty() {
        let headers = event
            .headers
            .iter()
            .map(|(name, value)| match std::str::from_utf8(value) {
                Ok(text) => serde_json::json!([name, text]),
                Err(_) => serde_json::json!([
                    name,
                    { "base64": base64::engine::general_purpose::STANDARD.encode(value) }
                ]),
            })
            .collect::<Vec<_>>();
        out.insert("headers".into(), headers.into());
    }
    if let Some(ts) = event.timestamp {
        out.insert("timestamp".into(), ts.into());
    }
    serde_json::Value::Object(out)
}

/// One line of the dead-letter file.
pub fn dead_letter_json(letter: &DeadLetter) -> serde_json::Value {
    serde_json::json!({
        "stage": &*letter.stage,
        "plugin_digest": &*letter.plugin_digest,
        "kind": letter.kind.as_str(),
        "message": letter.message,
        "attempts": letter.attempts,
        "event": event_json(&letter.event),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_counts_its_events_done_when_its_last_clone_drops() {
        let tracker = Arc::new(Tracker::default());
        let ack = tracker.emit(10);
        let copy = ack.clone();
        assert_eq!(tracker.high_water(), 10);
        drop(ack);
        assert_eq!(tracker.done(), 0);
        drop(copy);
        assert_eq!(tracker.done(), 10);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_base64_in_json() {
        let event = Event {
            key: None,
            value: vec![0xff, 0x00],
            headers: vec![],
            timestamp: Some(7),
        };
        let json = event_json(&event);
        assert_eq!(json["value_base64"], "/wA=");
        assert_eq!(json["timestamp"], 7);
    }
}
