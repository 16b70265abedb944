//! The seam of keyed state: the [`KeyedState`] trait the pipeline implements for each stage
//! that keeps state, what it answers ([`Refusal`], [`Page`]), and the contract's hard limits
//! on what crosses it. `state` links the guest's calls to it; `host` holds one per store.

use std::time::Duration;

/// The wall clock in milliseconds since the epoch, as TTLs, processing-time timers and `now`
/// read it (0 before 1970).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

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

/// Keys that start with this are the host's: its timers and a stage's watermark live in the
/// stage's state under it, so that they are committed, persisted, exported and limited with
/// the rest. A plugin cannot write, read or scan them (`state` refuses and skips them), so it
/// cannot forge a timer or move its own watermark.
pub const RESERVED: &[u8] = b"\xff\xffweir.";

/// Whether `key` is one of the host's.
pub fn reserved(key: &[u8]) -> bool {
    key.starts_with(RESERVED)
}

/// Where a stage's watermark is kept, so that a restart resumes it with the state.
pub const WATERMARK_KEY: &[u8] = b"\xff\xffweir.watermark";

/// The clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerClock {
    /// Fires once the stage's watermark reaches the timer.
    Event,
    /// Fires once the wall clock reaches it.
    Processing,
}

/// A timer as the host keeps it: the plugin's key, its time, its clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerEntry {
    pub clock: TimerClock,
    pub at: u64,
    pub key: Vec<u8>,
}

impl TimerClock {
    fn tag(self) -> u8 {
        match self {
            TimerClock::Event => b'e',
            TimerClock::Processing => b'p',
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TimerClock::Event => "event",
            TimerClock::Processing => "processing",
        }
    }
}

/// The prefix of every timer of `clock`; keys under it sort by time (big-endian), then by the
/// plugin's key, which is the order timers fire in.
pub fn timer_prefix(clock: TimerClock) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(RESERVED.len() + 7);
    prefix.extend_from_slice(RESERVED);
    prefix.extend_from_slice(b"timer.");
    prefix.push(clock.tag());
    prefix
}

impl TimerEntry {
    /// The state key the timer is kept under.
    pub fn state_key(&self) -> Vec<u8> {
        let mut key = timer_prefix(self.clock);
        key.extend_from_slice(&self.at.to_be_bytes());
        key.extend_from_slice(&self.key);
        key
    }

    /// The timer kept under `key`, if it is one of `clock`'s.
    pub fn parse(clock: TimerClock, key: &[u8]) -> Option<TimerEntry> {
        let rest = key.strip_prefix(timer_prefix(clock).as_slice())?;
        let (at, user) = rest.split_first_chunk::<8>()?;
        Some(TimerEntry {
            clock,
            at: u64::from_be_bytes(*at),
            key: user.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_sort_by_time_then_key_and_parse_back() {
        let t = |at, key: &[u8]| TimerEntry {
            clock: TimerClock::Event,
            at,
            key: key.to_vec(),
        };
        let (a, b, c) = (t(5, b"zz"), t(256, b"a"), t(256, b"b"));
        assert!(a.state_key() < b.state_key() && b.state_key() < c.state_key());
        assert!(reserved(&a.state_key()));
        assert_eq!(
            TimerEntry::parse(TimerClock::Event, &b.state_key()),
            Some(b)
        );
        assert_eq!(
            TimerEntry::parse(TimerClock::Processing, &a.state_key()),
            None
        );
    }
}
