//! The store behind [`crate::state`] off `wasm32`: an ordered map per thread, with the same
//! functions, signatures and records as the contract's `state` import, so that the public
//! API is the same code on both sides.
//!
//! It keeps what a stage's logic can observe: values, counters as 8 little-endian bytes,
//! TTLs (an expired key reads as absent, measured on the monotonic clock), prefix scans with
//! the contract's cursor and page cap. It enforces none of the host's limits, prices nothing,
//! and keeps the writes of a call that fails. One store per thread keeps tests that run in
//! parallel apart.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::{Duration, Instant};

use crate::bindings::weir::stage::state::{Entry, Page, StateError};

/// The contract's cap on one scan page.
const MAX_PAGE: u32 = 1024;

/// A value, the TTL it was written with, and when it expires.
struct Stored {
    value: Vec<u8>,
    ttl_ms: Option<u64>,
    expires: Option<Instant>,
}

impl Stored {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| now < at)
    }
}

thread_local! {
    static STORE: RefCell<BTreeMap<Vec<u8>, Stored>> = const { RefCell::new(BTreeMap::new()) };
}

fn with<R>(f: impl FnOnce(&mut BTreeMap<Vec<u8>, Stored>) -> R) -> R {
    STORE.with(|store| f(&mut store.borrow_mut()))
}

/// Empties this thread's store.
pub(crate) fn reset() {
    with(BTreeMap::clear);
}

/// The TTL `key` was last written with, if it is live and has one.
pub(crate) fn ttl(key: &[u8]) -> Option<Duration> {
    let now = Instant::now();
    with(|store| {
        (store.get(key))
            .filter(|s| s.live(now))
            .and_then(|s| s.ttl_ms)
            .map(Duration::from_millis)
    })
}

pub(crate) fn get(key: &[u8]) -> Option<Vec<u8>> {
    let now = Instant::now();
    with(|store| {
        (store.get(key))
            .filter(|s| s.live(now))
            .map(|s| s.value.clone())
    })
}

pub(crate) fn get_many(keys: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
    keys.iter().map(|key| get(key)).collect()
}

pub(crate) fn set(entry: &Entry) -> Result<(), StateError> {
    let stored = Stored {
        value: entry.value.clone(),
        ttl_ms: entry.ttl_ms,
        expires: (entry.ttl_ms).map(|ms| Instant::now() + Duration::from_millis(ms)),
    };
    with(|store| store.insert(entry.key.clone(), stored));
    Ok(())
}

pub(crate) fn set_many(entries: &[Entry]) -> Vec<Result<(), StateError>> {
    entries.iter().map(set).collect()
}

pub(crate) fn delete(key: &[u8]) {
    with(|store| store.remove(key));
}

pub(crate) fn delete_many(keys: &[Vec<u8>]) {
    with(|store| {
        for key in keys {
            store.remove(key.as_slice());
        }
    });
}

pub(crate) fn increment(key: &[u8], by: i64) -> Result<i64, StateError> {
    let now = Instant::now();
    with(|store| {
        let live = store.get_mut(key).filter(|s| s.live(now));
        let Some(stored) = live else {
            let fresh = Stored {
                value: by.to_le_bytes().to_vec(),
                ttl_ms: None,
                expires: None,
            };
            store.insert(key.to_vec(), fresh);
            return Ok(by);
        };
        let bytes =
            <[u8; 8]>::try_from(stored.value.as_slice()).map_err(|_| StateError::NotACounter)?;
        let count = (i64::from_le_bytes(bytes).checked_add(by)).ok_or(StateError::Overflow)?;
        stored.value = count.to_le_bytes().to_vec();
        Ok(count)
    })
}

pub(crate) fn increment_many(counts: &[(Vec<u8>, i64)]) -> Vec<Result<i64, StateError>> {
    (counts.iter())
        .map(|(key, by)| increment(key, *by))
        .collect()
}

pub(crate) fn scan(prefix: &[u8], after: Option<&[u8]>, limit: u32) -> Page {
    let now = Instant::now();
    let limit = limit.min(MAX_PAGE) as usize;
    // A cursor before the prefix would walk keys that cannot match.
    let from = match after {
        Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
        _ => Bound::Included(prefix.to_vec()),
    };
    with(|store| {
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = (store.range((from, Bound::Unbounded)))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(_, stored)| stored.live(now))
            .take(limit + 1)
            .map(|(key, stored)| (key.clone(), stored.value.clone()))
            .collect();
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next = if more {
            entries.last().map(|(key, _)| key.clone())
        } else {
            None
        };
        Page { entries, next }
    })
}
