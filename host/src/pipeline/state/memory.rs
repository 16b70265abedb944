//! A stage's state in memory: committed entries in a hash map with an ordered index of their
//! keys (point operations, the common case, cost a hash; only scans walk the order), the
//! current call's writes in an overlay above them, and an index of expiry times.
//!
//! A read looks in the overlay, then in the committed map, and treats an entry past its expiry
//! as absent. A write goes to the overlay after the stage's limits are checked against what
//! the state would hold with it (committed, plus every overlay's difference). `commit` applies
//! the overlay and drops the entries that have expired since; `discard` forgets it.
//!
//! A stage with several workers routes events by key, and its workers call at once: each call
//! has an overlay of its own, found by the thread that makes it (a plugin call runs on its
//! worker's thread from start to end, and a thread makes one call at a time). Workers own
//! disjoint keys, so the order in which their calls commit changes no key's value.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::Duration;

use indexmap::IndexMap;
use weir_sandbox::keyed::{MAX_KEY, MAX_VALUE, RESERVED, WATERMARK_KEY};
use weir_sandbox::{KeyedState, Page, Refusal, wall_ms};

use super::plan::Tag;
use super::store::{Backing, StoreError, Writes};

/// A value and when it expires (milliseconds since the epoch), if ever.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    value: Vec<u8>,
    expires: Option<u64>,
}

impl Stored {
    fn live(&self, now: u64) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

/// Whether `key` holds one of the stage's timers.
fn is_timer(key: &[u8]) -> bool {
    key.strip_prefix(RESERVED)
        .is_some_and(|rest| rest.starts_with(b"timer."))
}

/// Keys and bytes (keys and values) an entry counts for.
fn weight(key: &[u8], stored: Option<&Stored>) -> (i64, i64) {
    match stored {
        Some(s) => (1, (key.len() + s.value.len()) as i64),
        None => (0, 0),
    }
}

/// What an entry in memory costs beyond its key and value (the map's slot, the vectors'
/// headers, the allocator's rounding), for the cache's bound: an estimate, on the high side.
const SLOT_OVERHEAD: u64 = 128;

/// The first key past every key of the host's own ([`RESERVED`] with its last byte raised).
const RESERVED_END: &[u8] = b"\xff\xffweir/";

/// At most this many entries looked at per eviction pass. Blocks a cache whose entries all
/// wait for the store (written since the last round) from costing a walk over the whole map
/// at every commit; the next pass goes on where this one stopped.
const EVICT_STEPS: usize = 4096;

/// An entry in memory. Without a store it is the entry; with one it is authoritative for its
/// key, a tombstone (`stored: None`) included: a key not in memory is read from the store.
struct Slot {
    stored: Option<Stored>,
    /// The last logged delta that wrote it (0: none since the run began). While the store has
    /// not written that delta the slot is the only copy of the key's value, and stays.
    seq: u64,
    /// Read or written since the eviction hand last passed (the clock's second chance).
    used: Cell<bool>,
}

impl Slot {
    fn cost(key: &[u8], stored: Option<&Stored>) -> u64 {
        key.len() as u64 + stored.map_or(0, |s| s.value.len() as u64) + SLOT_OVERHEAD
    }
}

/// The committed entries in memory: a hash map for point operations, and the keys in order for
/// scans. An update of an existing key (a counter, the common write) touches the map only.
///
/// The order holds the host's keys (timers, scanned after every batch) always, and the
/// plugin's keys only once something scans them: a plugin that never scans (the SDK's
/// windows) pays no ordered insert and remove for each key it makes and drops, which were
/// the largest cost of a window stage. The first scan of the plugin's keys sorts them in,
/// and from then on they are kept in order.
///
/// With a store behind it, this is a cache: entries the store already holds as they are here
/// leave it, by a clock (an entry used since the hand last passed gets a second chance), once
/// the entries' cost goes over the stage's `state_cache_bytes`. The host's own entries (timers,
/// the watermark) never leave: they are read after every batch, and their scans then need no
/// disk.
#[derive(Default)]
struct Committed {
    map: IndexMap<Vec<u8>, Slot>,
    order: BTreeSet<Vec<u8>>,
    /// Whether the plugin's keys are in `order` too.
    all_ordered: bool,
    /// What the entries in memory cost, by [`Slot::cost`].
    cost: u64,
    /// The eviction clock's hand, an index into `map`.
    hand: usize,
}

impl Committed {
    /// The live or expired entry under `key`, if memory holds one.
    fn get(&self, key: &[u8]) -> Option<&Stored> {
        let slot = self.map.get(key)?;
        slot.used.set(true);
        slot.stored.as_ref()
    }

    fn holds(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }

    /// Puts `stored` (a tombstone when `None`) under `key`, written by delta `seq`, and gives
    /// back what was there. Only a new key is copied (into the map and the order).
    fn put(&mut self, key: &[u8], stored: Option<Stored>, seq: u64) -> Option<Stored> {
        self.cost += Slot::cost(key, stored.as_ref());
        match self.map.get_mut(key) {
            Some(slot) => {
                slot.seq = slot.seq.max(seq);
                slot.used.set(true);
                let old = std::mem::replace(&mut slot.stored, stored);
                self.cost -= Slot::cost(key, old.as_ref());
                old
            }
            None => {
                if self.ordered(key) {
                    self.order.insert(key.to_vec());
                }
                let slot = Slot {
                    stored,
                    seq,
                    used: Cell::new(true),
                };
                self.map.insert(key.to_vec(), slot);
                None
            }
        }
    }

    /// Forgets `key`, and gives back what memory held for it.
    fn remove(&mut self, key: &[u8]) -> Option<Stored> {
        let (_, _, slot) = self.map.swap_remove_full(key)?;
        self.forgotten(key, &slot);
        slot.stored
    }

    /// Keeps the order and the cost right after `key`'s slot left the map. (The map's last slot
    /// took its place; the clock's hand looks at it next, or wraps when past the end.)
    fn forgotten(&mut self, key: &[u8], slot: &Slot) {
        if self.ordered(key) {
            self.order.remove(key);
        }
        self.cost -= Slot::cost(key, slot.stored.as_ref());
    }

    /// Lets entries the store holds as they are (written by a delta at or before `flushed`)
    /// leave, until the cost is within `budget` or [`EVICT_STEPS`] entries have been looked at.
    fn evict(&mut self, budget: u64, flushed: u64) {
        let mut steps = 0;
        while self.cost > budget && steps < EVICT_STEPS && !self.map.is_empty() {
            steps += 1;
            if self.hand >= self.map.len() {
                self.hand = 0;
            }
            let Some((key, slot)) = self.map.get_index(self.hand) else {
                break;
            };
            if slot.seq > flushed || (key.starts_with(RESERVED) && slot.stored.is_some()) {
                self.hand += 1;
                continue;
            }
            if slot.used.replace(false) {
                self.hand += 1;
                continue;
            }
            let Some((key, slot)) = self.map.swap_remove_index(self.hand) else {
                break;
            };
            self.forgotten(&key, &slot);
        }
    }

    /// Whether `key` is kept in the order.
    fn ordered(&self, key: &[u8]) -> bool {
        self.all_ordered || key.starts_with(RESERVED)
    }

    /// Makes the order ready for a scan from `prefix`: the plugin's keys go in on the first
    /// scan that can reach them.
    fn order_for(&mut self, prefix: &[u8]) {
        if self.all_ordered || prefix.starts_with(RESERVED) {
            return;
        }
        self.order.extend(self.map.keys().cloned());
        self.all_ordered = true;
    }

    /// The entries in memory from `start` on, by key, tombstones as `None`.
    fn range(&self, start: Bound<Vec<u8>>) -> impl Iterator<Item = (&Vec<u8>, Option<&Stored>)> {
        self.order
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .filter_map(|k| self.map.get_key_value(k))
            .map(|(k, slot)| (k, slot.stored.as_ref()))
    }
}

/// One call's writes: `None` is a delete.
type Writing = BTreeMap<Vec<u8>, Option<Stored>>;

/// A completed call's writes, kept until a commit round writes them to the store, with the
/// source batch the call ran on and the delta's number.
struct Delta {
    seq: u64,
    tag: Option<Tag>,
    writes: BTreeMap<Vec<u8>, Option<Stored>>,
}

#[derive(Default)]
struct Inner {
    committed: Committed,
    /// With a store: the completed calls' writes not yet in it, oldest first.
    log: VecDeque<Delta>,
    /// With a store: where an entry not in memory is read from (once the state is loaded).
    backing: Option<Backing>,
    /// With a store: whether memory holds the whole state (everything loaded fitted, and
    /// nothing has left since). Then a key not in memory is absent, and the store is not read:
    /// a state that fits its cache costs no disk read.
    complete: bool,
    /// The last delta logged, and the last the store has written.
    logged: u64,
    flushed: u64,
    /// With a store: the deletes the store does not hold yet, oldest first, by the delta
    /// that made them; their tombstones leave memory once it does.
    tombstones: VecDeque<(u64, Vec<u8>)>,
    /// A read of the store that failed: the next commit round stops the run with it.
    fault: Option<StoreError>,
    /// The calls in progress, one per thread that has one.
    overlays: Vec<Overlay>,
    /// Committed keys and bytes, in memory or not.
    keys: u64,
    bytes: u64,
    /// Committed timers (entries under the host's timer keys), for `weir_timers_pending`.
    timers: u64,
    /// The stage's watermark as the store held it when the run began.
    loaded_watermark: Option<u64>,
    /// Committed entries with an expiry, by expiry, in memory or not.
    expiry: BTreeSet<(u64, Vec<u8>)>,
}

/// One call's writes, kept apart from the committed entries until the call completes.
struct Overlay {
    /// The thread making the call.
    thread: ThreadId,
    /// The source batch the call runs on.
    tag: Option<Tag>,
    /// The call's writes: `None` is a delete.
    writes: BTreeMap<Vec<u8>, Option<Stored>>,
    /// What the writes add to the committed keys and bytes (negative when they delete).
    keys: i64,
    bytes: i64,
}

thread_local! {
    /// The thread's identity, read once: every state operation looks it up.
    static THREAD: ThreadId = std::thread::current().id();
}

fn this_thread() -> ThreadId {
    THREAD.with(|t| *t)
}

/// The operations a plugin can make, as metrics name them.
pub const OPERATIONS: [&str; 5] = ["get", "set", "delete", "increment", "scan"];

/// One stage's state, in memory.
pub struct StageState {
    max_keys: u64,
    max_bytes: u64,
    /// With a store: what the entries kept in memory may cost.
    cache_bytes: u64,
    inner: Mutex<Inner>,
    /// Operations by kind, in the order of [`OPERATIONS`].
    operations: [AtomicU64; 5],
    /// Whether a plugin version of the stage keeps state (the metrics show only those).
    attached: AtomicBool,
}

/// Where a page of entries starts: just after `after` when it is within `prefix`'s range.
fn start_of(prefix: &[u8], after: Option<&[u8]>) -> Bound<Vec<u8>> {
    match after {
        Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
        _ => Bound::Included(prefix.to_vec()),
    }
}

impl StageState {
    /// An empty state held to `max_keys` keys and `max_bytes` bytes of keys and values, whose
    /// entries in memory cost at most `cache_bytes` once a store is behind it.
    pub fn new(max_keys: usize, max_bytes: u64, cache_bytes: u64) -> StageState {
        StageState {
            max_keys: max_keys as u64,
            max_bytes,
            cache_bytes,
            inner: Mutex::new(Inner::default()),
            operations: Default::default(),
            attached: AtomicBool::new(false),
        }
    }

    /// Marks the state as used by a version of the stage, and hands it out.
    pub fn attach(self: &Arc<Self>) -> Arc<dyn KeyedState> {
        self.attached.store(true, Ordering::Relaxed);
        Arc::clone(self) as Arc<dyn KeyedState>
    }

    /// Whether a version of the stage has kept state.
    pub fn attached(&self) -> bool {
        self.attached.load(Ordering::Relaxed)
    }

    /// Operations so far, by kind, as [`OPERATIONS`] names them.
    pub fn operations(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.operations[i].load(Ordering::Relaxed))
    }

    /// Up to `limit` committed entries with keys starting with `prefix`, after `after`, for the
    /// admin API: what the last completed call left, never a call in progress.
    pub fn listing(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Page {
        let mut inner = self.lock();
        inner.committed.order_for(prefix);
        let mut page = Page::default();
        inner.walk(
            prefix,
            start_of(prefix, after),
            false,
            wall_ms(),
            |key, stored| {
                if !key.starts_with(prefix) {
                    return false;
                }
                if page.entries.len() == limit {
                    page.more = true;
                    return false;
                }
                page.entries.push((key.to_vec(), stored.value.clone()));
                true
            },
        );
        page
    }

    /// The committed value under `key`, for the admin API.
    pub fn committed(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut inner = self.lock();
        let now = wall_ms();
        inner.fault_in(key);
        (inner.committed.get(key))
            .filter(|s| s.live(now))
            .map(|s| s.value.clone())
    }

    /// Writes `entries` as committed, in order, within the stage's limits and the contract's
    /// key and value sizes; stops at the first refused and says which. A call in progress
    /// keeps its own writes: where it wrote a key too, its value wins when it completes.
    pub fn import(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), (usize, Refusal)> {
        let mut inner = self.lock();
        let mut written = BTreeMap::new();
        let mut result = Ok(());
        // With a store, what is imported is logged as a delta of its own, and reaches the
        // store with the next round.
        let seq = if inner.backing.is_some() {
            inner.logged + 1
        } else {
            0
        };
        for (i, (key, value)) in entries.iter().enumerate() {
            if let Err(refusal) = self.import_one(&mut inner, key, value, seq) {
                result = Err((i, refusal));
                break;
            }
            written.insert(key.clone(), inner.committed.get(key).cloned());
        }
        if inner.backing.is_some() && !written.is_empty() {
            inner.logged = seq;
            inner.log.push_back(Delta {
                seq,
                tag: None,
                writes: written,
            });
        }
        inner.evict(self.cache_bytes);
        result
    }

    fn import_one(
        &self,
        inner: &mut Inner,
        key: &[u8],
        value: &[u8],
        seq: u64,
    ) -> Result<(), Refusal> {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(Refusal::Limit(
                "a key over 1 KiB or a value over 1 MiB".into(),
            ));
        }
        let stored = Stored {
            value: value.to_vec(),
            expires: None,
        };
        inner.fault_in(key);
        let (old_keys, old_bytes) = weight(key, inner.committed.get(key));
        let (new_keys, new_bytes) = weight(key, Some(&stored));
        let (pending_keys, pending_bytes) = inner.pending();
        let keys = inner.keys as i64 + pending_keys.max(0) + new_keys - old_keys;
        let bytes = inner.bytes as i64 + pending_bytes.max(0) + new_bytes - old_bytes;
        if keys > self.max_keys as i64 || bytes > self.max_bytes as i64 {
            return Err(Refusal::Limit(format!(
                "the stage's state would go over its `state_max_keys` of {} or its \
                 `state_max_bytes` of {}",
                self.max_keys, self.max_bytes
            )));
        }
        inner.apply(key, Some(stored), seq);
        Ok(())
    }

    /// Puts the state the store holds behind this one (before any call): counts its entries,
    /// keeps the host's own entries and, while the cache has room, the plugin's in memory, and
    /// logs every completed call's writes for the store from now on.
    pub fn load(&self, backing: Backing) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let now = wall_ms();
        let budget = self.cache_bytes;
        let inner = &mut *inner;
        let mut complete = true;
        backing.walk(Bound::Unbounded, |key, expires, value| {
            if expires.is_some_and(|t| t <= now) {
                // Gone before this run: not counted, and read as absent.
                return true;
            }
            let size = (key.len() + value.len()) as u64;
            inner.keys += 1;
            inner.bytes += size;
            inner.timers += u64::from(is_timer(key));
            if key == WATERMARK_KEY
                && let Ok(bytes) = <[u8; 8]>::try_from(value)
            {
                inner.loaded_watermark = Some(u64::from_le_bytes(bytes));
            }
            if let Some(t) = expires {
                inner.expiry.insert((t, key.to_vec()));
            }
            if key.starts_with(RESERVED) || inner.committed.cost + size + SLOT_OVERHEAD <= budget {
                let stored = Stored {
                    value: value.to_vec(),
                    expires,
                };
                inner.committed.put(key, Some(stored), 0);
            } else {
                complete = false;
            }
            true
        })?;
        inner.complete = complete;
        inner.backing = Some(backing);
        Ok(())
    }

    /// The stage's watermark as the store held it when the run began: where a restarted
    /// stage's clock resumes. Not the entry as it is now, which the stage's other workers may
    /// already have moved on in this run.
    pub fn loaded_watermark(&self) -> Option<u64> {
        self.lock().loaded_watermark
    }

    /// The source batch the next calls run on.
    pub fn set_tag(&self, tag: Option<Tag>) {
        self.lock().overlay().tag = tag;
    }

    /// The tags of the logged deltas, oldest first.
    pub fn log_tags(&self) -> Vec<Option<Tag>> {
        self.lock().log.iter().map(|d| d.tag).collect()
    }

    /// Takes the `n` oldest logged deltas, merged (each key's last write), with the number of
    /// the last of them, for [`StageState::flushed`] once the store holds them.
    pub fn take_logged(&self, n: usize) -> (Writes, u64) {
        let mut inner = self.lock();
        let mut merged: BTreeMap<Vec<u8>, Option<Stored>> = BTreeMap::new();
        let mut last = inner.flushed;
        for delta in inner.log.drain(..n) {
            last = delta.seq;
            merged.extend(delta.writes);
        }
        let writes = merged
            .into_iter()
            .map(|(k, v)| (k, v.map(|s| (s.expires, s.value))))
            .collect();
        (writes, last)
    }

    /// The store holds the deltas through `seq`: the entries they wrote may leave memory.
    pub fn flushed(&self, seq: u64) {
        let mut inner = self.lock();
        inner.flushed = inner.flushed.max(seq);
        let flushed = inner.flushed;
        while inner.tombstones.front().is_some_and(|(s, _)| *s <= flushed) {
            let Some((_, key)) = inner.tombstones.pop_front() else {
                break;
            };
            if (inner.committed.map.get(&key))
                .is_some_and(|s| s.stored.is_none() && s.seq <= flushed)
            {
                inner.committed.remove(&key);
            }
        }
        inner.evict(self.cache_bytes);
    }

    /// A read of the store that failed since the last round, if one did.
    pub fn fault(&self) -> Option<StoreError> {
        self.lock().fault.take()
    }

    fn count(&self, op: usize) {
        self.operations[op].fetch_add(1, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the maps whole (each change is one insert or
        // remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Committed timers, for metrics.
    pub fn timers(&self) -> u64 {
        self.lock().timers
    }

    /// Committed keys and bytes, for metrics and `weir check`.
    pub fn size(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.keys, inner.bytes)
    }

    /// What the entries in memory cost, by the cache's estimate, and how many there are.
    pub fn cached(&self) -> (u64, usize) {
        let inner = self.lock();
        (inner.committed.cost, inner.committed.map.len())
    }
}

impl Inner {
    /// The overlay of the calling thread, made on its first write.
    fn overlay(&mut self) -> &mut Overlay {
        let thread = this_thread();
        let i = match self.overlays.iter().position(|o| o.thread == thread) {
            Some(i) => i,
            None => {
                self.overlays.push(Overlay {
                    thread,
                    tag: None,
                    writes: BTreeMap::new(),
                    keys: 0,
                    bytes: 0,
                });
                self.overlays.len() - 1
            }
        };
        &mut self.overlays[i]
    }

    /// The calling thread's writes, if it has an overlay.
    fn writes(&self) -> Option<&BTreeMap<Vec<u8>, Option<Stored>>> {
        let thread = this_thread();
        (self.overlays.iter())
            .find(|o| o.thread == thread)
            .map(|o| &o.writes)
    }

    /// What every call in progress adds to the committed keys and bytes.
    fn pending(&self) -> (i64, i64) {
        (self.overlays.iter()).fold((0, 0), |(k, b), o| (k + o.keys, b + o.bytes))
    }

    /// Lets entries the store holds leave memory while they cost more than `budget`. The first
    /// time, memory stops being the whole state: each delete the store does not hold yet
    /// becomes a tombstone first (while memory was whole, a delete just removed the entry), so
    /// that the store's older row cannot be read back.
    fn evict(&mut self, budget: u64) {
        if self.committed.cost <= budget {
            return;
        }
        if self.complete {
            self.complete = false;
            let flushed = self.flushed;
            let pending: Vec<(u64, Vec<u8>)> = (self.tombstones.iter())
                .filter(|(seq, key)| *seq > flushed && !self.committed.holds(key))
                .cloned()
                .collect();
            for (seq, key) in pending {
                self.committed.put(&key, None, seq);
            }
        }
        self.committed.evict(budget, self.flushed);
    }

    /// Brings `key`'s entry into memory from the store, when a store is behind the state and
    /// memory holds nothing for the key: its row, expired or not, when the row still counts
    /// (live, or expired in this run and not yet dropped by [`Inner::expire`]); otherwise a
    /// tombstone, so the next read of an absent key costs no disk either. The host's own keys
    /// never leave memory, so they are never read.
    fn fault_in(&mut self, key: &[u8]) {
        let Some(backing) = &self.backing else { return };
        if self.complete || self.committed.holds(key) || key.starts_with(RESERVED) {
            return;
        }
        let stored = match backing.get(key) {
            Ok(row) => row.and_then(|(expires, value)| {
                let counted = match expires {
                    None => true,
                    Some(t) => self.expiry.contains(&(t, key.to_vec())),
                };
                counted.then_some(Stored { value, expires })
            }),
            Err(e) => {
                // The call reads the key as absent; the next round stops the run before
                // anything that depends on it is acknowledged.
                self.fault.get_or_insert(e);
                None
            }
        };
        self.committed.put(key, stored, 0);
    }

    /// The entry a read sees, expired or not. The committed entry is brought in first even
    /// when the call wrote the key: the call's commit needs it then anyway.
    fn visible(&mut self, key: &[u8]) -> Option<&Stored> {
        self.fault_in(key);
        match self.writes().and_then(|w| w.get(key)) {
            Some(written) => written.as_ref(),
            None => self.committed.get(key),
        }
    }

    /// Calls `f` with each live entry under `prefix` from `start` on, in key order, as a read
    /// sees it: the calling thread's writes (when `own` says so) over the entries in memory
    /// over the store's rows, until `f` returns `false` (it is also handed the first entry past
    /// the prefix, to stop). The store is not read for the host's own keys, which memory holds
    /// every one of: a scan of the timers (after every batch) costs no disk, and a scan of the
    /// plugin's keys steps over the timers' rows.
    fn walk(
        &mut self,
        prefix: &[u8],
        start: Bound<Vec<u8>>,
        own: bool,
        now: u64,
        mut f: impl FnMut(&[u8], &Stored) -> bool,
    ) {
        let none = BTreeMap::new();
        let writes = if own { self.writes() } else { None };
        let writes = writes.unwrap_or(&none);
        let mut memory = merged(
            self.committed.range(start.clone()),
            writes.range::<Vec<u8>, _>((start.clone(), Bound::Unbounded)),
        )
        .peekable();
        let mut going = true;
        let mut walked = Ok(());
        // Hands an entry to `f`; false once `f` has had enough.
        let mut give = |key: &[u8], stored: Option<&Stored>| -> bool {
            match stored.filter(|s| s.live(now)) {
                Some(s) => f(key, s),
                None => true,
            }
        };
        if let Some(backing) = self
            .backing
            .as_ref()
            .filter(|_| !prefix.starts_with(RESERVED))
        {
            let bound = match &start {
                Bound::Included(k) => Bound::Included(k.as_slice()),
                Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
                Bound::Unbounded => Bound::Unbounded,
            };
            // The store's rows in two runs: up to the host's keys, then past them.
            let mut ranges = [bound, Bound::Included(RESERVED_END)].into_iter();
            let mut past_prefix = false;
            while going && !past_prefix && walked.is_ok() {
                let Some(from) = ranges.next() else { break };
                let mut reached_reserved = false;
                walked = backing.walk(from, |key, expires, value| {
                    while let Some((k, _)) = memory.peek() {
                        if k.as_slice() >= key {
                            break;
                        }
                        let (k, stored) = memory.next().expect("peeked");
                        if !give(k, stored) {
                            going = false;
                            return false;
                        }
                    }
                    if !key.starts_with(prefix) {
                        past_prefix = true;
                        return false;
                    }
                    if key.starts_with(RESERVED) {
                        reached_reserved = true;
                        return false;
                    }
                    if memory.peek().is_some_and(|(k, _)| k.as_slice() == key)
                        || self.committed.holds(key)
                    {
                        // Memory's entry wins (handed over in its turn).
                        return true;
                    }
                    let stored = Stored {
                        value: value.to_vec(),
                        expires,
                    };
                    going = give(key, Some(&stored));
                    going
                });
                if !reached_reserved {
                    break;
                }
            }
        }
        if going {
            for (k, stored) in memory {
                if !give(k, stored) {
                    break;
                }
            }
        } else {
            drop(memory);
        }
        if let Err(e) = walked {
            self.fault.get_or_insert(e);
        }
    }

    /// Writes `new` under `key` in the overlay if the state stays within its limits: what is
    /// committed plus what every call in progress adds, so that workers calling at once
    /// cannot together go over.
    fn write(
        &mut self,
        key: &[u8],
        new: Option<Stored>,
        max_keys: u64,
        max_bytes: u64,
    ) -> Result<(), Refusal> {
        let (old_keys, old_bytes) = weight(key, self.visible(key));
        let (new_keys, new_bytes) = weight(key, new.as_ref());
        let (pending_keys, pending_bytes) = self.pending();
        let keys = self.keys as i64 + pending_keys + new_keys - old_keys;
        let bytes = self.bytes as i64 + pending_bytes + new_bytes - old_bytes;
        if new_keys > old_keys && keys > max_keys as i64 {
            return Err(Refusal::Limit(format!(
                "the stage's state would hold {keys} keys, over its `state_max_keys` of {max_keys}"
            )));
        }
        if new_bytes > old_bytes && bytes > max_bytes as i64 {
            return Err(Refusal::Limit(format!(
                "the stage's state would hold {bytes} bytes, over its `state_max_bytes` of {max_bytes}"
            )));
        }
        let overlay = self.overlay();
        overlay.keys += new_keys - old_keys;
        overlay.bytes += new_bytes - old_bytes;
        overlay.writes.insert(key.to_vec(), new);
        Ok(())
    }

    /// Takes the calling thread's writes away, if it has any. Its overlay stays while it
    /// carries a tag (the next calls of the batch run on the same source batch); otherwise it
    /// goes, so that threads which made a call once (an `init` on a reload) leave nothing.
    fn take_overlay(&mut self) -> Option<(Option<Tag>, Writing)> {
        let thread = this_thread();
        let i = self.overlays.iter().position(|o| o.thread == thread)?;
        let overlay = &mut self.overlays[i];
        let taken = (overlay.tag, std::mem::take(&mut overlay.writes));
        overlay.keys = 0;
        overlay.bytes = 0;
        if overlay.tag.is_none() {
            self.overlays.swap_remove(i);
        }
        Some(taken)
    }

    fn commit(&mut self, now: u64, cache_bytes: u64) {
        let Some((tag, writes)) = self.take_overlay() else {
            self.expire(now);
            return;
        };
        // The committed counts move by what each write changes now: another worker's commit
        // since this call wrote may have changed a key both touched (the kept watermark).
        if self.backing.is_some() && !writes.is_empty() {
            // The store needs the writes too: applied from the overlay, which the log keeps.
            let seq = self.logged + 1;
            for (key, written) in &writes {
                self.apply(key, written.clone(), seq);
            }
            self.logged = seq;
            self.log.push_back(Delta { seq, tag, writes });
            self.evict(cache_bytes);
        } else {
            for (key, written) in writes {
                self.apply(&key, written, 0);
            }
        }
        self.expire(now);
    }

    /// One write of a completed call (logged as delta `seq` when a store is behind the state)
    /// into the committed entries and the expiry index.
    fn apply(&mut self, key: &[u8], written: Option<Stored>, seq: u64) {
        // The entry may have left memory since the call read it (another worker's commit ran
        // the clock): its old weight is the store's.
        self.fault_in(key);
        let expires = written.as_ref().and_then(|s| s.expires);
        let (new_keys, new_bytes) = weight(key, written.as_ref());
        let old = match written {
            Some(stored) => self.committed.put(key, Some(stored), seq),
            // With a store, a delete leaves a tombstone until the store has it too (the
            // store's row must not be read back meanwhile). Not for the host's own keys, which
            // are never read from the store.
            None if self.backing.is_some() && !key.starts_with(RESERVED) => {
                self.tombstones.push_back((seq, key.to_vec()));
                if self.complete {
                    self.committed.remove(key)
                } else {
                    self.committed.put(key, None, seq)
                }
            }
            None => self.committed.remove(key),
        };
        let (old_keys, old_bytes) = weight(key, old.as_ref());
        if is_timer(key) {
            self.timers = (self.timers as i64 + new_keys - old_keys) as u64;
        }
        self.keys = (self.keys as i64 + new_keys - old_keys) as u64;
        self.bytes = (self.bytes as i64 + new_bytes - old_bytes) as u64;
        let old_expires = old.and_then(|s| s.expires);
        if old_expires != expires {
            if let Some(t) = old_expires {
                self.expiry.remove(&(t, key.to_vec()));
            }
            if let Some(t) = expires {
                self.expiry.insert((t, key.to_vec()));
            }
        }
    }

    /// Drops the committed entries whose time has come. With a store, one the store does not
    /// hold yet leaves a tombstone (the store's older row must not come back), and one the
    /// store holds, in memory or not, needs nothing more: its row reads as absent from now on,
    /// since the expiry index no longer holds it.
    fn expire(&mut self, now: u64) {
        while let Some((t, _)) = self.expiry.first() {
            if *t > now {
                break;
            }
            let Some((t, key)) = self.expiry.pop_first() else {
                break;
            };
            let weight = match self.committed.get(&key) {
                Some(s) if s.expires == Some(t) => {
                    let w = weight(&key, Some(s));
                    let seq = self.committed.map.get(&key[..]).map_or(0, |s| s.seq);
                    if self.backing.is_some() && seq > self.flushed && !key.starts_with(RESERVED) {
                        if !self.complete {
                            self.committed.put(&key, None, seq);
                        }
                        self.tombstones.push_back((seq, key.clone()));
                    } else {
                        self.committed.remove(&key);
                    }
                    Some(w)
                }
                Some(_) => None,
                None if self.committed.holds(&key) => None,
                None => match self.backing.as_ref().map(|b| b.get(&key)) {
                    Some(Ok(Some((expires, value)))) if expires == Some(t) => {
                        Some(weight(&key, Some(&Stored { value, expires })))
                    }
                    Some(Err(e)) => {
                        self.fault.get_or_insert(e);
                        None
                    }
                    _ => None,
                },
            };
            if let Some((k, b)) = weight {
                self.keys -= k as u64;
                self.bytes -= b as u64;
                self.timers -= u64::from(is_timer(&key));
            }
        }
    }
}

/// The entries in memory merged with a call's writes, by key, the write winning a tie.
fn merged<'a>(
    committed: impl Iterator<Item = (&'a Vec<u8>, Option<&'a Stored>)>,
    writes: impl Iterator<Item = (&'a Vec<u8>, &'a Option<Stored>)>,
) -> impl Iterator<Item = (&'a Vec<u8>, Option<&'a Stored>)> {
    let mut committed = committed.peekable();
    let mut writes = writes.peekable();
    std::iter::from_fn(move || match (committed.peek(), writes.peek()) {
        (None, None) => None,
        (Some((c, _)), Some((w, _))) if c < w => committed.next(),
        (Some((c, _)), Some((w, _))) if c == w => {
            committed.next();
            writes.next().map(|(k, v)| (k, v.as_ref()))
        }
        (_, Some(_)) => writes.next().map(|(k, v)| (k, v.as_ref())),
        (Some(_), None) => committed.next(),
    })
}

impl KeyedState for StageState {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.count(0);
        let mut inner = self.lock();
        let now = wall_ms();
        inner
            .visible(key)
            .filter(|s| s.live(now))
            .map(|s| s.value.clone())
    }

    fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), Refusal> {
        self.count(1);
        let expires = ttl.map(|t| wall_ms().saturating_add(t.as_millis() as u64));
        let stored = Stored {
            value: value.to_vec(),
            expires,
        };
        self.lock()
            .write(key, Some(stored), self.max_keys, self.max_bytes)
    }

    fn delete(&self, key: &[u8]) {
        self.count(2);
        let mut inner = self.lock();
        if inner.visible(key).is_some() {
            // A delete never grows the state, so the limits cannot refuse it.
            let _ = inner.write(key, None, u64::MAX, u64::MAX);
        }
    }

    fn increment(&self, key: &[u8], by: i64) -> Result<i64, Refusal> {
        self.count(3);
        let mut inner = self.lock();
        let now = wall_ms();
        let (count, expires) = match inner.visible(key).filter(|s| s.live(now)) {
            None => (0, None),
            Some(s) => {
                let bytes: [u8; 8] = s
                    .value
                    .as_slice()
                    .try_into()
                    .map_err(|_| Refusal::NotACounter)?;
                (i64::from_le_bytes(bytes), s.expires)
            }
        };
        let count = count.checked_add(by).ok_or(Refusal::Overflow)?;
        let stored = Stored {
            value: count.to_le_bytes().to_vec(),
            expires,
        };
        inner.write(key, Some(stored), self.max_keys, self.max_bytes)?;
        Ok(count)
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize, max_bytes: usize) -> Page {
        self.count(4);
        let mut inner = self.lock();
        inner.committed.order_for(prefix);
        let mut page = Page::default();
        let mut bytes = 0usize;
        inner.walk(
            prefix,
            start_of(prefix, after),
            true,
            wall_ms(),
            |key, stored| {
                if !key.starts_with(prefix) {
                    return false;
                }
                let size = key.len() + stored.value.len();
                if page.entries.len() == limit
                    || (!page.entries.is_empty() && bytes + size > max_bytes)
                {
                    page.more = true;
                    return false;
                }
                bytes += size;
                page.entries.push((key.to_vec(), stored.value.clone()));
                true
            },
        );
        page
    }

    fn commit(&self) {
        self.lock().commit(wall_ms(), self.cache_bytes);
    }

    fn discard(&self) {
        self.lock().take_overlay();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_s_writes_land_on_commit_and_vanish_on_discard() {
        let s = StageState::new(10, 1 << 20, 1 << 20);
        s.set(b"a", b"1", None).unwrap();
        assert_eq!(
            s.get(b"a"),
            Some(b"1".to_vec()),
            "a call reads its own writes"
        );
        s.discard();
        assert_eq!(s.get(b"a"), None);
        assert_eq!(s.increment(b"n", 2), Ok(2));
        s.commit();
        assert_eq!(s.increment(b"n", 3), Ok(5));
        s.discard();
        assert_eq!(s.increment(b"n", 0), Ok(2));
        assert_eq!(s.size(), (1, 9));
    }

    #[test]
    fn limits_count_what_the_state_would_hold_with_the_write() {
        let s = StageState::new(2, 100, 1 << 20);
        s.set(b"a", b"x", None).unwrap();
        s.set(b"b", b"x", None).unwrap();
        assert!(
            matches!(s.set(b"c", b"x", None), Err(Refusal::Limit(m)) if m.contains("state_max_keys"))
        );
        s.set(b"a", b"y", None)
            .expect("overwriting a key adds none");
        s.delete(b"b");
        s.set(b"c", b"x", None).expect("a delete makes room");
        assert!(
            matches!(s.set(b"c", &[0; 200], None), Err(Refusal::Limit(m)) if m.contains("state_max_bytes"))
        );
        s.commit();
        assert_eq!(s.size(), (2, 4));
    }

    #[test]
    fn increment_refuses_what_is_not_a_counter_and_overflow() {
        let s = StageState::new(10, 1000, 1 << 20);
        s.set(b"t", b"text", None).unwrap();
        assert_eq!(s.increment(b"t", 1), Err(Refusal::NotACounter));
        s.increment(b"n", i64::MAX).unwrap();
        assert_eq!(s.increment(b"n", 1), Err(Refusal::Overflow));
    }

    #[test]
    fn a_scan_merges_the_call_s_writes_pages_and_skips_deletes() {
        let s = StageState::new(100, 1 << 20, 1 << 20);
        for k in ["p1", "p2", "p3", "q1"] {
            s.set(k.as_bytes(), b"v", None).unwrap();
        }
        s.commit();
        s.delete(b"p2");
        s.set(b"p25", b"w", None).unwrap();
        let first = s.scan(b"p", None, 2, usize::MAX);
        let keys: Vec<_> = first.entries.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![b"p1".to_vec(), b"p25".to_vec()]);
        assert!(first.more);
        let rest = s.scan(b"p", Some(b"p25"), 2, usize::MAX);
        assert_eq!(rest.entries, vec![(b"p3".to_vec(), b"v".to_vec())]);
        assert!(!rest.more);
    }

    #[test]
    fn the_plugin_s_keys_join_the_order_at_the_first_scan_and_stay_in_it() {
        let s = StageState::new(100, 1 << 20, 1 << 20);
        for k in ["b", "a", "c"] {
            s.set(k.as_bytes(), b"v", None).unwrap();
        }
        s.commit();
        let keys = |s: &StageState| -> Vec<Vec<u8>> {
            let page = s.scan(b"", None, 10, usize::MAX);
            page.entries.into_iter().map(|(k, _)| k).collect()
        };
        assert_eq!(keys(&s), [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        s.delete(b"b");
        s.set(b"aa", b"v", None).unwrap();
        s.commit();
        assert_eq!(keys(&s), [b"a".to_vec(), b"aa".to_vec(), b"c".to_vec()]);
        assert_eq!(s.listing(b"a", None, 10).entries.len(), 2);
    }

    #[test]
    fn an_expired_entry_reads_as_absent_and_leaves_the_count_at_the_next_commit() {
        let s = StageState::new(10, 1000, 1 << 20);
        s.set(b"gone", b"v", Some(Duration::ZERO)).unwrap();
        s.set(b"kept", b"v", Some(Duration::from_secs(3600)))
            .unwrap();
        s.commit();
        assert_eq!(s.get(b"gone"), None);
        assert_eq!(s.get(b"kept"), Some(b"v".to_vec()));
        assert_eq!(s.size(), (1, 5));
    }

    #[test]
    fn reserved_end_is_the_first_key_past_the_host_s_own() {
        let mut end = RESERVED.to_vec();
        *end.last_mut().unwrap() += 1;
        assert_eq!(end, RESERVED_END);
    }

    /// A state on a store in a new folder, with a cache of `cache` bytes.
    fn on_disk(cache: u64) -> (tempfile::TempDir, Arc<super::super::Store>, StageState) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(super::super::Store::open(dir.path()).unwrap());
        let s = StageState::new(1_000_000, 1 << 30, cache);
        s.load(Backing::new(Arc::clone(&store), "s")).unwrap();
        (dir, store, s)
    }

    /// One commit round: every logged delta to the store, then out of memory's care.
    fn round(store: &super::super::Store, s: &StageState) {
        let n = s.log_tags().len();
        let (writes, last) = s.take_logged(n);
        store.commit(&[("s", writes)], &[]).unwrap();
        s.flushed(last);
    }

    /// Every entry leaves memory, as the clock would let them once the store holds them.
    fn forget_all(s: &StageState) {
        let mut inner = s.lock();
        inner.committed = Committed::default();
        inner.complete = false;
    }

    fn key(i: u32) -> Vec<u8> {
        format!("k{i:05}").into_bytes()
    }

    #[test]
    fn a_state_on_disk_keeps_its_cache_within_budget_and_reads_back_what_left_it() {
        let budget = 64 * 1024;
        let (_dir, store, s) = on_disk(budget);
        for i in 0..5_000 {
            s.set(&key(i), &[i as u8; 100], None).unwrap();
            s.commit();
            if i % 500 == 499 {
                round(&store, &s);
            }
        }
        round(&store, &s);
        for _ in 0..20 {
            s.commit();
        }
        let (cost, held) = s.cached();
        assert!(
            cost <= budget,
            "the cache costs {cost} bytes, over {budget}"
        );
        assert!(held < 5_000, "every entry stayed in memory");
        assert_eq!(s.size(), (5_000, 5_000 * 106));
        for i in (0..5_000).step_by(7) {
            assert_eq!(s.get(&key(i)), Some(vec![i as u8; 100]), "key {i}");
        }
        assert_eq!(s.get(b"never"), None);
    }

    #[test]
    fn a_delete_of_an_entry_that_left_memory_holds_until_the_store_has_it_and_after() {
        let (_dir, store, s) = on_disk(1 << 20);
        for i in 0..3 {
            s.set(&key(i), b"v", None).unwrap();
        }
        s.commit();
        round(&store, &s);
        // Everything the store holds may leave memory, as the clock would let it.
        forget_all(&s);
        s.delete(&key(1));
        s.commit();
        assert_eq!(s.get(&key(1)), None, "the store's row must not come back");
        round(&store, &s);
        forget_all(&s);
        assert_eq!(s.get(&key(1)), None);
        assert_eq!(s.get(&key(2)), Some(b"v".to_vec()));
        assert_eq!(s.size(), (2, 14));
    }

    #[test]
    fn a_scan_on_disk_merges_the_store_memory_and_the_call_s_writes() {
        let (_dir, store, s) = on_disk(1 << 20);
        for i in 0..10 {
            s.set(&key(i), b"old", None).unwrap();
        }
        s.commit();
        round(&store, &s);
        // Half the entries leave memory; of the rest, one changes and one goes, not yet
        // written to the store.
        for i in (0..10).step_by(2) {
            let mut inner = s.lock();
            inner.committed.remove(&key(i));
            inner.complete = false;
        }
        s.set(&key(3), b"new", None).unwrap();
        s.delete(&key(5));
        s.commit();
        s.delete(&key(6));
        s.set(&key(7), b"mine", None).unwrap();
        let page = s.scan(b"k", None, 100, usize::MAX);
        let got: Vec<(String, String)> = page
            .entries
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = [
            (0, "old"),
            (1, "old"),
            (2, "old"),
            (3, "new"),
            (4, "old"),
            (7, "mine"),
            (8, "old"),
            (9, "old"),
        ]
        .iter()
        .map(|(i, v)| (format!("k{i:05}"), v.to_string()))
        .collect();
        assert_eq!(got, want);
        let page = s.scan(b"k", Some(&key(3)), 2, usize::MAX);
        assert_eq!(page.entries.len(), 2);
        assert_eq!(page.entries[0].0, key(4));
        assert_eq!(page.entries[1].0, key(7));
        assert!(page.more);
    }
}
