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

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_sandbox::keyed::{MAX_KEY, MAX_VALUE, RESERVED, WATERMARK_KEY};
use weir_sandbox::{KeyedState, Page, Refusal};

use super::plan::Tag;
use super::store::{Row, Writes};

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

/// The committed entries: a hash map for point operations, and the keys in order for scans.
/// An update of an existing key (a counter, the common write) touches the map only.
///
/// The order holds the host's keys (timers, scanned after every batch) always, and the
/// plugin's keys only once something scans them: a plugin that never scans (the SDK's
/// windows) pays no ordered insert and remove for each key it makes and drops, which were
/// the largest cost of a window stage. The first scan of the plugin's keys sorts them in,
/// and from then on they are kept in order.
#[derive(Default)]
struct Committed {
    map: HashMap<Vec<u8>, Stored>,
    order: BTreeSet<Vec<u8>>,
    /// Whether the plugin's keys are in `order` too.
    all_ordered: bool,
}

impl Committed {
    fn get(&self, key: &[u8]) -> Option<&Stored> {
        self.map.get(key)
    }

    /// Only a new key is copied (into the map and the order).
    fn insert(&mut self, key: &[u8], stored: Stored) -> Option<Stored> {
        match self.map.get_mut(key) {
            Some(slot) => Some(std::mem::replace(slot, stored)),
            None => {
                if self.ordered(key) {
                    self.order.insert(key.to_vec());
                }
                self.map.insert(key.to_vec(), stored)
            }
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Stored> {
        let old = self.map.remove(key)?;
        if self.ordered(key) {
            self.order.remove(key);
        }
        Some(old)
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

    /// The entries from `start` on, by key.
    fn range(&self, start: Bound<Vec<u8>>) -> impl Iterator<Item = (&Vec<u8>, &Stored)> {
        self.order
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .filter_map(|k| self.map.get_key_value(k))
    }
}

/// A completed call's writes, kept until a commit round writes them to the store, with the
/// source batch the call ran on.
type Delta = (Option<Tag>, BTreeMap<Vec<u8>, Option<Stored>>);

#[derive(Default)]
struct Inner {
    committed: Committed,
    /// With a store: the completed calls' writes not yet in it, oldest first.
    log: VecDeque<Delta>,
    /// With a store: whether completed calls' writes are logged for it.
    durable: bool,
    /// The calls in progress, one per thread that has one.
    overlays: Vec<Overlay>,
    /// Committed keys and bytes.
    keys: u64,
    bytes: u64,
    /// Committed timers (entries under the host's timer keys), for `weir_timers_pending`.
    timers: u64,
    /// The stage's watermark as the store held it when the run began.
    loaded_watermark: Option<u64>,
    /// Committed entries with an expiry, by expiry.
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
    inner: Mutex<Inner>,
    /// Operations by kind, in the order of [`OPERATIONS`].
    operations: [AtomicU64; 5],
    /// Whether a plugin version of the stage keeps state (the metrics show only those).
    attached: AtomicBool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl StageState {
    /// An empty state held to `max_keys` keys and `max_bytes` bytes of keys and values.
    pub fn new(max_keys: usize, max_bytes: u64) -> StageState {
        StageState {
            max_keys: max_keys as u64,
            max_bytes,
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
        let now = now_ms();
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let mut page = Page::default();
        for (key, stored) in inner.committed.range(start) {
            if !key.starts_with(prefix) {
                break;
            }
            if !stored.live(now) {
                continue;
            }
            if page.entries.len() == limit {
                page.more = true;
                break;
            }
            page.entries.push((key.clone(), stored.value.clone()));
        }
        page
    }

    /// The committed value under `key`, for the admin API.
    pub fn committed(&self, key: &[u8]) -> Option<Vec<u8>> {
        let inner = self.lock();
        let now = now_ms();
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
        for (i, (key, value)) in entries.iter().enumerate() {
            if let Err(refusal) = self.import_one(&mut inner, key, value) {
                result = Err((i, refusal));
                break;
            }
            written.insert(key.clone(), inner.committed.get(key).cloned());
        }
        // With a store, what was imported reaches it with the next round.
        if inner.durable && !written.is_empty() {
            inner.log.push_back((None, written));
        }
        result
    }

    fn import_one(&self, inner: &mut Inner, key: &[u8], value: &[u8]) -> Result<(), Refusal> {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(Refusal::Limit(
                "a key over 1 KiB or a value over 1 MiB".into(),
            ));
        }
        let stored = Stored {
            value: value.to_vec(),
            expires: None,
        };
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
        inner.keys = (inner.keys as i64 + new_keys - old_keys) as u64;
        inner.bytes = (inner.bytes as i64 + new_bytes - old_bytes) as u64;
        if is_timer(key) {
            inner.timers = (inner.timers as i64 + new_keys - old_keys) as u64;
        }
        if let Some(Stored {
            expires: Some(t), ..
        }) = inner.committed.insert(key, stored)
        {
            inner.expiry.remove(&(t, key.to_vec()));
        }
        Ok(())
    }

    /// Loads the state a store holds (before any call), and logs every completed call's
    /// writes for it from now on.
    pub fn load(&self, rows: Vec<Row>) {
        let mut inner = self.lock();
        let now = now_ms();
        for (key, expires, value) in rows {
            let stored = Stored { value, expires };
            if !stored.live(now) {
                continue;
            }
            let (k, b) = weight(&key, Some(&stored));
            inner.keys += k as u64;
            inner.bytes += b as u64;
            inner.timers += u64::from(is_timer(&key));
            if key == WATERMARK_KEY
                && let Ok(bytes) = <[u8; 8]>::try_from(stored.value.as_slice())
            {
                inner.loaded_watermark = Some(u64::from_le_bytes(bytes));
            }
            if let Some(t) = expires {
                inner.expiry.insert((t, key.clone()));
            }
            inner.committed.insert(&key, stored);
        }
        inner.durable = true;
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
        self.lock().log.iter().map(|(tag, _)| *tag).collect()
    }

    /// Takes the `n` oldest logged deltas, merged: each key's last write.
    pub fn take_logged(&self, n: usize) -> Writes {
        let mut inner = self.lock();
        let mut merged: BTreeMap<Vec<u8>, Option<Stored>> = BTreeMap::new();
        for (_, writes) in inner.log.drain(..n) {
            merged.extend(writes);
        }
        merged
            .into_iter()
            .map(|(k, v)| (k, v.map(|s| (s.expires, s.value))))
            .collect()
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

    /// The entry a read sees, expired or not.
    fn visible(&self, key: &[u8]) -> Option<&Stored> {
        match self.writes().and_then(|w| w.get(key)) {
            Some(written) => written.as_ref(),
            None => self.committed.get(key),
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
    fn take_overlay(&mut self) -> Option<Delta> {
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

    fn commit(&mut self, now: u64) {
        let Some((tag, writes)) = self.take_overlay() else {
            self.expire(now);
            return;
        };
        // The committed counts move by what each write changes now: another worker's commit
        // since this call wrote may have changed a key both touched (the kept watermark).
        if self.durable && !writes.is_empty() {
            // The store needs the writes too: applied from the overlay, which the log keeps.
            for (key, written) in &writes {
                self.apply(key, written.clone());
            }
            self.log.push_back((tag, writes));
        } else {
            for (key, written) in writes {
                self.apply(&key, written);
            }
        }
        self.expire(now);
    }

    /// One write of a completed call into the committed entries and the expiry index.
    fn apply(&mut self, key: &[u8], written: Option<Stored>) {
        let expires = written.as_ref().and_then(|s| s.expires);
        let (new_keys, new_bytes) = weight(key, written.as_ref());
        let old = match written {
            Some(stored) => self.committed.insert(key, stored),
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

    /// Drops the committed entries whose time has come.
    fn expire(&mut self, now: u64) {
        while let Some((t, _)) = self.expiry.first() {
            if *t > now {
                break;
            }
            let Some((t, key)) = self.expiry.pop_first() else {
                break;
            };
            if self.committed.get(&key).and_then(|s| s.expires) == Some(t)
                && let Some(old) = self.committed.remove(&key)
            {
                let (k, b) = weight(&key, Some(&old));
                self.keys -= k as u64;
                self.bytes -= b as u64;
            }
        }
    }
}

impl KeyedState for StageState {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.count(0);
        let inner = self.lock();
        let now = now_ms();
        inner
            .visible(key)
            .filter(|s| s.live(now))
            .map(|s| s.value.clone())
    }

    fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), Refusal> {
        self.count(1);
        let expires = ttl.map(|t| now_ms().saturating_add(t.as_millis() as u64));
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
        let now = now_ms();
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
        let inner = inner;
        let now = now_ms();
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let range = || (start.clone(), Bound::Unbounded);
        let mut committed = inner.committed.range(start.clone()).peekable();
        let none = BTreeMap::new();
        let writes = inner.writes().unwrap_or(&none);
        let mut overlay = writes.range::<Vec<u8>, _>(range()).peekable();
        let mut page = Page::default();
        let mut bytes = 0usize;
        loop {
            // The next key of the two, the overlay's entry winning a tie.
            let next = match (committed.peek(), overlay.peek()) {
                (None, None) => break,
                (Some((c, _)), Some((o, _))) if c < o => {
                    committed.next().map(|(k, v)| (k, Some(v)))
                }
                (Some((c, _)), Some((o, _))) if c == o => {
                    committed.next();
                    overlay.next().map(|(k, v)| (k, v.as_ref()))
                }
                (_, Some(_)) => overlay.next().map(|(k, v)| (k, v.as_ref())),
                (Some(_), None) => committed.next().map(|(k, v)| (k, Some(v))),
            };
            let Some((key, stored)) = next else { break };
            if !key.starts_with(prefix) {
                break;
            }
            let Some(stored) = stored.filter(|s| s.live(now)) else {
                continue;
            };
            let size = key.len() + stored.value.len();
            if page.entries.len() == limit || (!page.entries.is_empty() && bytes + size > max_bytes)
            {
                page.more = true;
                break;
            }
            bytes += size;
            page.entries.push((key.clone(), stored.value.clone()));
        }
        page
    }

    fn commit(&self) {
        self.lock().commit(now_ms());
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
        let s = StageState::new(10, 1 << 20);
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
        let s = StageState::new(2, 100);
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
        let s = StageState::new(10, 1000);
        s.set(b"t", b"text", None).unwrap();
        assert_eq!(s.increment(b"t", 1), Err(Refusal::NotACounter));
        s.increment(b"n", i64::MAX).unwrap();
        assert_eq!(s.increment(b"n", 1), Err(Refusal::Overflow));
    }

    #[test]
    fn a_scan_merges_the_call_s_writes_pages_and_skips_deletes() {
        let s = StageState::new(100, 1 << 20);
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
        let s = StageState::new(100, 1 << 20);
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
        let s = StageState::new(10, 1000);
        s.set(b"gone", b"v", Some(Duration::ZERO)).unwrap();
        s.set(b"kept", b"v", Some(Duration::from_secs(3600)))
            .unwrap();
        s.commit();
        assert_eq!(s.get(b"gone"), None);
        assert_eq!(s.get(b"kept"), Some(b"v".to_vec()));
        assert_eq!(s.size(), (1, 5));
    }
}
