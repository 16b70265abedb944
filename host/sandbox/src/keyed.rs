//! The seam of keyed state: the [`KeyedState`] trait the pipeline implements for each stage
//! that keeps state, what it answers ([`Refusal`], [`Page`]), and the contract's hard limits
//! on what crosses it. `state` links the guest's calls to it; `host` holds one per store.

use std::time::Duration;

/// Longest key. Blocks a plugin from making the host hash, compare and store huge keys.
pub const MAX_KEY: usize = 1024;
/// Longest value. Blocks a plugin from parking its memory's worth in one entry.
pub const MAX_VALUE: usize = 1 << 20;
/// Most entries a scan returns at once, whatever the guest asks. Blocks one call from making
/// the host walk and copy a whole store.
pub const MAX_SCAN_ENTRIES: usize = 1024;
/// Most bytes of keys and values one reply (`get-many`, `scan`) carries; a scan stops early
/// and gives a cursor. Blocks one call from making the host gather gigabytes before lowering
/// them into the guest (which would then fail at its memory cap).
pub const MAX_REPLY_BYTES: usize = 16 << 20;

/// Why a state write was refused; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A limit; the text names it.
    #[error("{0}")]
    Limit(String),
    /// `increment` of a value that is not 8 bytes.
    #[error("the value is not a counter (8 bytes)")]
    NotACounter,
    /// `increment` past the range of an `i64`.
    #[error("the counter would overflow")]
    Overflow,
}

/// A page of a prefix scan.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Page {
    /// Entries by increasing key.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether entries with the prefix remain after the last one.
    pub more: bool,
}

/// A stage's state, as the pipeline keeps it. Reads see the current call's own writes.
/// Writes made since the last [`commit`](KeyedState::commit) or
/// [`discard`](KeyedState::discard) belong to the call in progress.
pub trait KeyedState: Send + Sync {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Refuses with [`Refusal::Limit`] when the stage's key or byte budget would be exceeded.
    fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), Refusal>;
    fn delete(&self, key: &[u8]);
    /// Adds `by` to the 8-byte little-endian counter under `key` (absent counts as 0).
    fn increment(&self, key: &[u8], by: i64) -> Result<i64, Refusal>;
    /// Up to `limit` entries with keys starting with `prefix` and greater than `after`, whose
    /// keys and values come to at most `max_bytes` (at least one entry, if any remains).
    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize, max_bytes: usize) -> Page;
    /// The call completed: its writes take effect.
    fn commit(&self);
    /// The call did not complete: its writes are dropped.
    fn discard(&self);
}
