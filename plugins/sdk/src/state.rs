//! Keyed state kept by the host: a safe API over the contract's `state` import.
//!
//! A stage's store belongs to its pipeline and stage and lives in the host, not in the
//! guest's memory, so it survives the instance being replaced and the plugin being upgraded.
//! Keys and values are bytes. Each function here is one host call: arguments are lent to the
//! bindings as they are (a `set` copies its key and value into an [`Entry`] only when given
//! borrowed bytes), results come back owned. [`scan`] pages through a prefix with the host's
//! cursor, [`SCAN_PAGE`] entries at a time.
//!
//! The writes a `process` call makes take effect only if the call completes, and a stage that
//! fails an event must have made no write for it (the host cannot tell which event a write was
//! for, and a retried event runs again): check an event before writing for it. A write the
//! host refuses fails with a [`StateError`]; [`Failure::from_state`] (or `?`, through
//! `From<StateError> for Failure`) fails the event with a reason the host recognises.
//!
//! A component imports `state` only if it calls one of these functions: a stage that does not
//! gets no store from the host.
//!
//! On targets other than `wasm32` there is no host: the same functions work on an in-memory
//! store, one per thread, so a stage's logic runs unchanged under
//! [`native`](crate::native) in tests and benchmarks. That store keeps TTLs (an expired key
//! reads as absent) but enforces none of the host's limits, prices nothing in fuel, and keeps
//! the writes of a call that fails; [`native::reset_state`](crate::native::reset_state)
//! empties it.

use std::fmt;
use std::time::Duration;

use crate::Failure;
use crate::bindings::weir::stage::state as wit;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod memory;

#[cfg(not(target_arch = "wasm32"))]
use memory as backend;
#[cfg(target_arch = "wasm32")]
use wit as backend;

/// A value to write and how long it lives, for [`set_many`]: the contract's own record, lent
/// to the host without a copy.
pub use wit::Entry;

/// Entries [`scan`] asks the host for per call. The contract allows up to 1,024; a smaller
/// page bounds the memory a scan holds at once and the fuel of each host call, while keeping
/// the number of calls low.
pub const SCAN_PAGE: u32 = 256;

/// Why the host refused a state operation. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StateError {
    /// A limit of the stage's store (key size, value size, number of keys, bytes in all); the
    /// text, the host's, names it. The event that caused it should fail:
    /// [`Failure::from_state`] does that.
    Limit(String),
    /// `increment` of a value that is not 8 bytes.
    NotACounter,
    /// `increment` past the range of a signed 64-bit integer.
    Overflow,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Limit(what) => write!(f, "state limit reached: {what}"),
            StateError::NotACounter => {
                f.write_str("the value under the key is not a counter (8 bytes)")
            }
            StateError::Overflow => {
                f.write_str("the counter would leave the range of a signed 64-bit integer")
            }
        }
    }
}

impl std::error::Error for StateError {}

impl From<wit::StateError> for StateError {
    fn from(error: wit::StateError) -> Self {
        match error {
            wit::StateError::Limit(what) => StateError::Limit(what),
            wit::StateError::NotACounter => StateError::NotACounter,
            wit::StateError::Overflow => StateError::Overflow,
        }
    }
}

impl Failure {
    /// Fails the current event because of a state error, as a reject. For a limit the reason
    /// is `state-limit: ` and the host's text, which the host dead-letters with the kind
    /// `state-limit`; for the others it is `state: ` and the error. `?` on a [`StateError`]
    /// inside `process` does the same.
    ///
    /// The event must have made no write that succeeded before the one refused: a failed
    /// event's writes still land.
    pub fn from_state(error: StateError) -> Failure {
        match error {
            StateError::Limit(what) => Failure::reject(format!("state-limit: {what}")),
            other => Failure::reject(format!("state: {other}")),
        }
    }
}

impl From<StateError> for Failure {
    fn from(error: StateError) -> Self {
        Failure::from_state(error)
    }
}

impl Entry {
    /// An entry that lives for ever.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Entry {
        Entry {
            key: key.into(),
            value: value.into(),
            ttl_ms: None,
        }
    }

    /// The entry, living `ttl` of processing time from its write (see [`set_with_ttl`]).
    pub fn with_ttl(mut self, ttl: Duration) -> Entry {
        self.ttl_ms = Some(millis(ttl));
        self
    }
}

/// `ttl` in whole milliseconds, rounded up so that a non-zero TTL never becomes 0.
fn millis(ttl: Duration) -> u64 {
    let whole = ttl.as_millis() + u128::from(!ttl.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(whole).unwrap_or(u64::MAX)
}

/// The value under `key`, as this call's earlier writes left it; `None` if absent or expired.
pub fn get(key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    backend::get(key.as_ref())
}

/// [`get`] of each key, in one host call: one answer per key, in order.
pub fn get_many(keys: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
    backend::get_many(keys)
}

/// Writes `value` under `key`, for ever.
pub fn set(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<(), StateError> {
    write(&Entry::new(key, value))
}

/// Writes `value` under `key`, to live `ttl` of processing time from now (rounded up to whole
/// milliseconds); then the key reads as absent.
pub fn set_with_ttl(
    key: impl Into<Vec<u8>>,
    value: impl Into<Vec<u8>>,
    ttl: Duration,
) -> Result<(), StateError> {
    write(&Entry::new(key, value).with_ttl(ttl))
}

fn write(entry: &Entry) -> Result<(), StateError> {
    backend::set(entry).map_err(StateError::from)
}

/// Writes each entry in order, in one host call: one result per entry. An entry refused does
/// not stop the ones after it.
pub fn set_many(entries: &[Entry]) -> Vec<Result<(), StateError>> {
    (backend::set_many(entries).into_iter())
        .map(|result| result.map_err(StateError::from))
        .collect()
}

/// Removes `key`; removing an absent key does nothing.
pub fn delete(key: impl AsRef<[u8]>) {
    backend::delete(key.as_ref())
}

/// Removes each key, in one host call.
pub fn delete_many(keys: &[Vec<u8>]) {
    backend::delete_many(keys)
}

/// Adds `by` to the counter under `key` (8 bytes, little-endian; an absent key counts as 0)
/// and returns the new count. The key keeps its TTL, if any.
pub fn increment(key: impl AsRef<[u8]>, by: i64) -> Result<i64, StateError> {
    backend::increment(key.as_ref(), by).map_err(StateError::from)
}

/// [`increment`] of each key in order, in one host call: one result per key.
pub fn increment_many(counts: &[(Vec<u8>, i64)]) -> Vec<Result<i64, StateError>> {
    (backend::increment_many(counts).into_iter())
        .map(|result| result.map_err(StateError::from))
        .collect()
}

/// Every entry whose key starts with `prefix`, by increasing key, as `(key, value)`. The
/// iterator asks the host for [`SCAN_PAGE`] entries at a time, resuming after the last key
/// it was given, so entries written or removed during the scan may or may not be seen.
pub fn scan(prefix: impl Into<Vec<u8>>) -> Scan {
    Scan {
        prefix: prefix.into(),
        after: None,
        page: Vec::new().into_iter(),
        done: false,
    }
}

/// The iterator of [`scan`].
#[derive(Debug)]
pub struct Scan {
    prefix: Vec<u8>,
    /// The host's cursor: where the next page starts.
    after: Option<Vec<u8>>,
    page: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    /// Whether the host said the last page fetched was the last.
    done: bool,
}

impl Iterator for Scan {
    type Item = (Vec<u8>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.page.next() {
                return Some(entry);
            }
            if self.done {
                return None;
            }
            let page = backend::scan(&self.prefix, self.after.as_deref(), SCAN_PAGE);
            self.done = page.next.is_none();
            self.after = page.next;
            self.page = page.entries.into_iter();
        }
    }
}
