//! W5's count (WORKLOADS.md): generated events in batches of 1,024, a count per key in
//! tumbling 60 s event-time windows, each window emitted and its keys deleted once the
//! watermark (the highest event time, lateness 0) reaches its end.
//!
//! Two runners share the generator and the check. The ceiling counts in a plain `HashMap`. The
//! host runner keeps the state as weir will: a read goes to the delta of the writes not yet
//! committed, then a bounded cache of committed values, then the store (the first event of a
//! key in a window misses); a write goes to the delta; the delta is committed to the store in
//! one transaction with the source position, every second of wall time or after every batch.
//! Which keys a window holds is kept in memory (weir's timers; not measured here). The emitted
//! counts are checked against the events of each window, so a store that loses a write fails.

use crate::store::{Result, Store, Write};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

pub const BATCH: u64 = 1024;
const T0: u64 = 1_700_000_000_000;
const WINDOW_MS: u64 = 60_000;
const KEYS: u64 = 100_000;

/// Committed values kept in memory, in entries; past it the cache is emptied after a commit.
/// Smaller than a window's 60,000 keys, so that emitting reads committed counts from the store.
pub const CACHE_ENTRIES: usize = 32_768;

/// A state key: the window start (8 bytes, big-endian), then the event's key (`k` and up to 5
/// digits), kept inline so that the maps hold no heap pointers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateKey {
    bytes: [u8; 16],
    len: u8,
}

impl StateKey {
    fn new(window: u64, key: &[u8]) -> StateKey {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&window.to_be_bytes());
        bytes[8..8 + key.len()].copy_from_slice(key);
        StateKey {
            bytes,
            len: (8 + key.len()) as u8,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// One batch of events: `(key, event time)`, the key as `k{(i * 7919) % 100000}`.
fn batch(first: u64, end: u64, out: &mut Vec<([u8; 6], u8, u64)>) {
    out.clear();
    for i in first..end.min(first + BATCH) {
        let mut digits = [0u8; 6];
        digits[0] = b'k';
        let text = ((i * 7919) % KEYS).to_string();
        digits[1..1 + text.len()].copy_from_slice(text.as_bytes());
        out.push((digits, 1 + text.len() as u8, T0 + i));
    }
}

fn window_of(time: u64) -> u64 {
    time - time % WINDOW_MS
}

/// What the emitted counts must add up to, and a digest of the emitted lines as a set.
#[derive(Default)]
pub struct Emitted {
    per_window: BTreeMap<u64, u64>,
    digest: u64,
    lines: u64,
}

impl Emitted {
    fn emit(&mut self, key: &StateKey, count: u64) {
        *self
            .per_window
            .entry(u64::from_be_bytes(key.bytes[..8].try_into().unwrap()))
            .or_default() += count;
        // A sum of mixed hashes: the same for the same set of lines in any order.
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in key.as_bytes().iter().chain(&count.to_le_bytes()) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        self.digest = self.digest.wrapping_add(h ^ (h >> 29));
        self.lines += 1;
    }

    /// Checks every window's counts against the events generated in it.
    pub fn check(&self, events: u64) -> std::result::Result<(), String> {
        let mut want: BTreeMap<u64, u64> = BTreeMap::new();
        for i in 0..events {
            *want.entry(window_of(T0 + i)).or_default() += 1;
        }
        if want == self.per_window {
            return Ok(());
        }
        let bad = want.iter().find(|(w, n)| self.per_window.get(w) != Some(n));
        Err(format!(
            "window counts differ from the events: first at {bad:?}"
        ))
    }

    pub fn digest(&self) -> u64 {
        self.digest
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }
}

/// The ceiling: the same count in a `HashMap<(window, key), u64>`, no cache, no store.
pub fn ceiling(events: u64) -> Emitted {
    let mut counts: HashMap<StateKey, u64> = HashMap::new();
    let mut emitted = Emitted::default();
    let mut open_end = u64::MAX;
    let mut events_buf = Vec::with_capacity(BATCH as usize);
    let mut first = 0;
    while first < events {
        batch(first, events, &mut events_buf);
        for (key, len, time) in &events_buf {
            if *time >= open_end {
                counts.retain(|k, n| {
                    let w = u64::from_be_bytes(k.bytes[..8].try_into().unwrap());
                    let keep = w + WINDOW_MS > *time;
                    if !keep {
                        emitted.emit(k, *n);
                    }
                    keep
                });
                open_end = u64::MAX;
            }
            let window = window_of(*time);
            open_end = open_end.min(window + WINDOW_MS);
            *counts
                .entry(StateKey::new(window, &key[..*len as usize]))
                .or_default() += 1;
        }
        first += BATCH;
    }
    for (k, n) in &counts {
        emitted.emit(k, *n);
    }
    emitted
}

/// When the host commits its delta.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CommitEvery {
    Interval(Duration),
    Batch,
}

/// The host's state in front of a store: the uncommitted delta, the cache, the open windows.
pub struct Host<'s> {
    store: &'s mut dyn Store,
    delta: HashMap<StateKey, Option<u64>>,
    cache: HashMap<StateKey, u64>,
    windows: BTreeMap<u64, Vec<StateKey>>,
    value: Vec<u8>,
    pub commit_latencies: Vec<Duration>,
    pub store_reads: u64,
    pub emitted: Emitted,
}

impl<'s> Host<'s> {
    pub fn new(store: &'s mut dyn Store) -> Host<'s> {
        Host {
            store,
            delta: HashMap::new(),
            cache: HashMap::new(),
            windows: BTreeMap::new(),
            value: Vec::new(),
            commit_latencies: Vec::new(),
            store_reads: 0,
            emitted: Emitted::default(),
        }
    }

    fn get(&mut self, key: &StateKey) -> Result<Option<u64>> {
        if let Some(v) = self.delta.get(key) {
            return Ok(*v);
        }
        if let Some(v) = self.cache.get(key) {
            return Ok(Some(*v));
        }
        self.store_reads += 1;
        if !self.store.get(key.as_bytes(), &mut self.value)? {
            return Ok(None);
        }
        let v = u64::from_be_bytes(self.value[..8].try_into().expect("a count is 8 bytes"));
        self.cache.insert(*key, v);
        Ok(Some(v))
    }

    fn count(&mut self, key: &[u8], time: u64) -> Result<()> {
        let window = window_of(time);
        let state_key = StateKey::new(window, key);
        let n = match self.get(&state_key)? {
            Some(n) => n,
            None => {
                self.windows.entry(window).or_default().push(state_key);
                0
            }
        };
        self.delta.insert(state_key, Some(n + 1));
        Ok(())
    }

    /// Emits every window that ends at or before `watermark`, deleting its keys.
    fn fire(&mut self, watermark: u64) -> Result<()> {
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() + WINDOW_MS > watermark {
                break;
            }
            for key in entry.remove() {
                let n = self
                    .get(&key)?
                    .expect("a key of an open window has a count");
                self.emitted.emit(&key, n);
                self.delta.insert(key, None);
                self.cache.remove(&key);
            }
        }
        Ok(())
    }

    /// Commits the delta, sorted by key, with the position, and moves its values to the cache.
    fn commit(&mut self, position: u64) -> Result<()> {
        let mut writes: Vec<(StateKey, Option<[u8; 8]>)> = self
            .delta
            .drain()
            .map(|(k, v)| (k, v.map(u64::to_be_bytes)))
            .collect();
        writes.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let start = Instant::now();
        let mut iter = writes
            .iter()
            .map(|(k, v)| -> Write<'_> { (k.as_bytes(), v.as_ref().map(|b| &b[..])) });
        self.store.commit(&mut iter, position)?;
        self.commit_latencies.push(start.elapsed());
        for (k, v) in writes {
            if let Some(v) = v {
                self.cache.insert(k, u64::from_be_bytes(v));
            }
        }
        if self.cache.len() > CACHE_ENTRIES {
            self.cache.clear();
        }
        Ok(())
    }

    /// Runs `events` through the count, committing as `every` says, then emits what is open
    /// and commits the rest durably.
    pub fn run(&mut self, events: u64, every: CommitEvery) -> Result<()> {
        let mut events_buf = Vec::with_capacity(BATCH as usize);
        let mut last_commit = Instant::now();
        let mut first = 0;
        while first < events {
            batch(first, events, &mut events_buf);
            for (key, len, time) in &events_buf {
                self.fire(*time)?;
                self.count(&key[..*len as usize], *time)?;
            }
            first += events_buf.len() as u64;
            let due = match every {
                CommitEvery::Batch => true,
                CommitEvery::Interval(d) => last_commit.elapsed() >= d,
            };
            if due {
                self.commit(first)?;
                last_commit = Instant::now();
            }
        }
        self.fire(u64::MAX)?;
        self.commit(events)?;
        self.store.sync()
    }
}
