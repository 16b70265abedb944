//! The owned shapes of the simple API: [`Event`], [`Failure`] and [`Outcome`].
//!
//! A [`Stage`](crate::Stage) receives each input as an owned [`Event`], copied out of the
//! packed batch, and returns owned events; the SDK copies them back into the packed output.
//! That costs allocations per event, which is what the [`Transform`](crate::Transform) shape
//! avoids.

use std::fmt;

/// One event as it flows through a pipeline, owned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Event {
    /// Optional partitioning or identity key.
    pub key: Option<Vec<u8>>,
    /// The payload: for line-oriented sources, one line without its line ending.
    pub value: Vec<u8>,
    /// Named metadata, in order. Names starting with `weir.` belong to the host.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Milliseconds since the Unix epoch, when known. `Some(u64::MAX)` cannot cross the
    /// boundary: the contract spells "none" that way.
    pub timestamp: Option<u64>,
}

impl Event {
    /// An event with this value and no key, headers or timestamp.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Event {
            key: None,
            value: value.into(),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// The value of the first header called `name`, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Why an input event could not be processed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The event is bad: the host dead-letters it with this reason.
    Reject(String),
    /// A transient failure: the host retries the event with backoff, then dead-letters it.
    Retry(String),
}

impl Failure {
    /// A permanent failure: the host dead-letters the event with `reason`.
    pub fn reject(reason: impl Into<String>) -> Self {
        Failure::Reject(reason.into())
    }

    /// A transient failure: the host retries the event, then dead-letters it with `reason`.
    pub fn retry(reason: impl Into<String>) -> Self {
        Failure::Retry(reason.into())
    }

    /// A late event: its time, or its window's end, is at or before the watermark it saw
    /// ([`crate::time::watermarks`]). The host dead-letters it with the kind `late` (or drops
    /// it, where the stage says `late = "drop"`); the reason starts `late:`.
    pub fn late(reason: impl fmt::Display) -> Self {
        Failure::Reject(format!("late: {reason}"))
    }

    /// The reason given, whichever the kind.
    pub fn reason(&self) -> &str {
        match self {
            Failure::Reject(reason) | Failure::Retry(reason) => reason,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Reject(reason) => write!(f, "rejected: {reason}"),
            Failure::Retry(reason) => write!(f, "retry: {reason}"),
        }
    }
}

impl std::error::Error for Failure {}

/// What became of one input event: zero or more output events, or a failure.
pub type Outcome = Result<Vec<Event>, Failure>;
