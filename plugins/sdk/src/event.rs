//! Constructors and accessors on the generated [`Event`] and [`Failure`] types.

use crate::{Event, Failure};

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

impl Failure {
    /// A permanent failure: the host dead-letters the event with `reason`.
    pub fn reject(reason: impl Into<String>) -> Self {
        Failure::Reject(reason.into())
    }

    /// A transient failure: the host retries the event, then dead-letters it with `reason`.
    pub fn retry(reason: impl Into<String>) -> Self {
        Failure::Retry(reason.into())
    }

    /// The reason given, whichever the kind.
    pub fn reason(&self) -> &str {
        match self {
            Failure::Reject(reason) | Failure::Retry(reason) => reason,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Reject(reason) => write!(f, "rejected: {reason}"),
            Failure::Retry(reason) => write!(f, "retry: {reason}"),
        }
    }
}
