//! Event-time windows per key: tumbling, hopping and session windows with an aggregator,
//! kept in host state and closed by event-time timers.
//!
//! A stage holds a [`Windowed`]: which [`Windows`], and an [`Aggregate`] (`init`, `add`,
//! `merge`, `finish`). Its `process_batch` hands each batch to [`Windowed::process_batch`],
//! its `on_timer` to [`Windowed::on_timer`]. Data moves like this:
//!
//! 1. Each event goes to the windows of its timestamp. Windows are aligned to the Unix epoch
//!    (a tumbling window of size `s` starts at a multiple of `s`; a hopping window of size `s`
//!    and slide `d` at a multiple of `d`), so a restart, another process or another run gives
//!    the same windows. A session window per key spans its events' times plus the gap, and
//!    sessions that come to overlap are merged with [`Aggregate::merge`].
//! 2. A window whose end is at or before the watermark the event saw is closed: an event
//!    with no open window left is failed as late ([`Failure::late`]), and the host
//!    dead-letters (or drops) it as `late`. An event without a timestamp is rejected.
//! 3. Accumulators live in host state, one entry per key and window (per key for sessions),
//!    read and written a batch at a time (`get_many`, `set_many`), so a batch costs a few host
//!    calls, not a few per event. A window's first event sets an event-time timer at its end.
//! 4. When the watermark reaches a window's end its timer fires: [`Windowed::on_timer`]
//!    finishes the window into one event (key: the key; value: what `finish` returns;
//!    timestamp: the window's end minus 1 ms, so later stages can window it again) and deletes
//!    its state.
//!
//! Because state and timers are the host's, a window survives an instance being replaced, the
//! plugin being upgraded and, with a data folder, a restart or a `kill -9`: each event's
//! effect lands once.
//!
//! State keys: `w` + window start (8 bytes, big-endian) + the event's key for tumbling and
//! hopping windows; `s` + the key for a key's sessions (their starts, ends and accumulators).

use std::collections::HashMap;

use crate::state::{self, Entry};
use crate::time::{self, Timer};
use crate::{Batch, Event, EventView, Failure, Outputs};

/// A window: events with `start <= time < end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub start: u64,
    pub end: u64,
}

/// Which windows an event belongs to. Sizes and gaps are in milliseconds, at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Windows {
    /// Back-to-back windows of `size`.
    Tumbling { size: u64 },
    /// Windows of `size` starting every `slide`: an event is in `size / slide` of them.
    Hopping { size: u64, slide: u64 },
    /// Per key, events less than `gap` apart share a window.
    Session { gap: u64 },
}

impl Windows {
    /// The fixed windows (tumbling, hopping) holding time `t`, oldest first.
    pub fn of(&self, t: u64) -> Vec<Window> {
        match *self {
            Windows::Tumbling { size } => {
                let size = size.max(1);
                let start = t - t % size;
                vec![Window {
                    start,
                    end: start.saturating_add(size),
                }]
            }
            Windows::Hopping { size, slide } => {
                let (size, slide) = (size.max(1), slide.max(1));
                let last = t - t % slide;
                let mut out = Vec::new();
                let mut start = last;
                loop {
                    if start.saturating_add(size) <= t {
                        break;
                    }
                    out.push(Window {
                        start,
                        end: start.saturating_add(size),
                    });
                    if start < slide {
                        break;
                    }
                    start -= slide;
                }
                out.reverse();
                out
            }
            Windows::Session { gap } => vec![Window {
                start: t,
                end: t.saturating_add(gap.max(1)),
            }],
        }
    }
}

/// What a window computes: an accumulator per key and window.
pub trait Aggregate {
    type Acc;
    /// An empty accumulator.
    fn init(&self) -> Self::Acc;
    /// Adds an event.
    fn add(&self, acc: &mut Self::Acc, event: &EventView<'_>);
    /// Adds another accumulator (two sessions became one).
    fn merge(&self, into: &mut Self::Acc, other: Self::Acc);
    /// The value of the event a closed window becomes.
    fn finish(&self, key: &[u8], window: Window, acc: Self::Acc) -> Vec<u8>;
    /// The accumulator as bytes, for the host's state.
    fn encode(&self, acc: &Self::Acc) -> Vec<u8>;
    /// An accumulator back from [`Aggregate::encode`]'s bytes.
    fn decode(&self, bytes: &[u8]) -> Self::Acc;
}

/// Where an event's key and time come from.
pub type Extract = Box<dyn Fn(&EventView<'_>) -> Result<(Vec<u8>, u64), Failure>>;

/// The default [`Extract`]: the event's key (none counts as the empty key) and timestamp (an
/// event without one is rejected).
pub fn key_and_timestamp(event: &EventView<'_>) -> Result<(Vec<u8>, u64), Failure> {
    let Some(t) = event.timestamp() else {
        return Err(Failure::reject(
            "the event has no timestamp: windows need event time",
        ));
    };
    Ok((event.key().unwrap_or_default().to_vec(), t))
}

/// Windows over a stage's events, with their aggregate.
pub struct Windowed<A: Aggregate> {
    pub windows: Windows,
    pub aggregate: A,
    /// Where each event's key and time come from ([`key_and_timestamp`] unless set).
    pub extract: Extract,
}

/// An event's key and time, or why it has none.
type Extracted = Result<(Vec<u8>, u64), Failure>;

/// What became of one event.
enum Fate {
    Added,
    Failed(Failure),
}

fn window_key(start: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.push(b'w');
    k.extend_from_slice(&start.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn session_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(b's');
    k.extend_from_slice(key);
    k
}

/// A key's open sessions.
struct Session<T> {
    window: Window,
    acc: T,
}

impl<A: Aggregate> Windowed<A> {
    pub fn new(windows: Windows, aggregate: A) -> Self {
        Windowed {
            windows,
            aggregate,
            extract: Box::new(key_and_timestamp),
        }
    }

    /// Takes each event's key and time from `extract` (fields of the payload, say) rather
    /// than from the event's key and timestamp.
    pub fn with_extract(
        mut self,
        extract: impl Fn(&EventView<'_>) -> Result<(Vec<u8>, u64), Failure> + 'static,
    ) -> Self {
        self.extract = Box::new(extract);
        self
    }

    /// Adds a batch's events to their windows: one outcome per event, no outputs (windows
    /// emit when they close).
    pub fn process_batch(&mut self, batch: &Batch, out: &mut Outputs<'_>) {
        let marks = time::watermarks();
        let found: Vec<_> = batch.iter().map(|e| (self.extract)(&e)).collect();
        let fates = match self.windows {
            Windows::Session { gap } => self.add_sessions(batch, &found, &marks, gap),
            _ => self.add_fixed(batch, &found, &marks),
        };
        for (event, fate) in batch.iter().zip(fates) {
            out.emit_for(&event, |_| match fate {
                Fate::Added => Ok(()),
                Fate::Failed(f) => Err(f),
            });
        }
    }

    /// Which windows of an event at time `t` are still open, or why it cannot go in any.
    fn open(&self, t: u64, mark: u64) -> Result<Vec<Window>, Failure> {
        let all = self.windows.of(t);
        let open: Vec<Window> = all.iter().copied().filter(|w| w.end > mark).collect();
        if open.is_empty() {
            let last = all.last().map_or(t, |w| w.end);
            return Err(Failure::late(format_args!(
                "its window ended at {last}, at or before the watermark {mark}"
            )));
        }
        Ok(open)
    }

    fn add_fixed(&mut self, batch: &Batch, found: &[Extracted], marks: &[u64]) -> Vec<Fate> {
        let mut opened: Vec<Result<Vec<Window>, Failure>> = Vec::with_capacity(batch.len());
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut slot: HashMap<Vec<u8>, usize> = HashMap::new();
        for (i, kt) in found.iter().enumerate() {
            let mark = marks.get(i).copied().unwrap_or(0);
            let open = match kt {
                Ok((_, t)) => self.open(*t, mark),
                Err(f) => Err(f.clone()),
            };
            if let (Ok(windows), Ok((key, _))) = (&open, kt) {
                for w in windows {
                    let k = window_key(w.start, key);
                    if !slot.contains_key(&k) {
                        slot.insert(k.clone(), keys.len());
                        keys.push(k);
                    }
                }
            }
            opened.push(open);
        }
        let stored = state::get_many(&keys);
        let mut accs: Vec<A::Acc> = Vec::with_capacity(keys.len());
        let mut timers = Vec::new();
        for (k, value) in keys.iter().zip(&stored) {
            match value {
                Some(bytes) => accs.push(self.aggregate.decode(bytes)),
                None => {
                    accs.push(self.aggregate.init());
                    let start = u64::from_be_bytes(k[1..9].try_into().expect("8 bytes"));
                    let end = start.saturating_add(self.window_size());
                    timers.push(Timer::event(k[9..].to_vec(), end));
                }
            }
        }
        // A window whose timer the host refused is never written: its events fail.
        let mut refused: HashMap<Vec<u8>, Failure> = HashMap::new();
        for (timer, result) in timers.iter().zip(time::set_timers(&timers)) {
            if let Err(e) = result {
                let start = timer.at - self.window_size();
                refused.insert(window_key(start, &timer.key), Failure::from_state(e));
            }
        }
        let mut fates = Vec::with_capacity(batch.len());
        for ((event, open), kt) in batch.iter().zip(opened).zip(found) {
            let windows = match open {
                Ok(w) => w,
                Err(f) => {
                    fates.push(Fate::Failed(f));
                    continue;
                }
            };
            let key: &[u8] = kt.as_ref().map_or(&[], |(k, _)| k.as_slice());
            let ks: Vec<Vec<u8>> = windows.iter().map(|w| window_key(w.start, key)).collect();
            if let Some(f) = ks.iter().find_map(|k| refused.get(k)) {
                fates.push(Fate::Failed(f.clone()));
                continue;
            }
            for k in &ks {
                self.aggregate.add(&mut accs[slot[k]], &event);
            }
            fates.push(Fate::Added);
        }
        let entries: Vec<Entry> = (keys.iter().zip(&accs))
            .filter(|(k, _)| !refused.contains_key(*k))
            .map(|(k, acc)| Entry::new(k.clone(), self.aggregate.encode(acc)))
            .collect();
        let written = state::set_many(&entries);
        let over: Vec<(Vec<u8>, Failure)> = (entries.iter().zip(written))
            .filter_map(|(e, r)| r.err().map(|err| (e.key.clone(), Failure::from_state(err))))
            .collect();
        if !over.is_empty() {
            // The events of a window the host refused to write fail with its reason.
            let over: HashMap<Vec<u8>, Failure> = over.into_iter().collect();
            for (kt, fate) in found.iter().zip(fates.iter_mut()) {
                let (Fate::Added, Ok((key, t))) = (&fate, kt) else {
                    continue;
                };
                let (key, t) = (key.as_slice(), *t);
                if let Some(f) =
                    (self.windows.of(t).iter()).find_map(|w| over.get(&window_key(w.start, key)))
                {
                    *fate = Fate::Failed(f.clone());
                }
            }
        }
        fates
    }

    fn window_size(&self) -> u64 {
        match self.windows {
            Windows::Tumbling { size } | Windows::Hopping { size, .. } => size.max(1),
            Windows::Session { gap } => gap.max(1),
        }
    }

    fn add_sessions(
        &mut self,
        batch: &Batch,
        found: &[Extracted],
        marks: &[u64],
        gap: u64,
    ) -> Vec<Fate> {
        let gap = gap.max(1);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut slot: HashMap<Vec<u8>, usize> = HashMap::new();
        for (key, _) in found.iter().flatten() {
            let k = session_key(key);
            if !slot.contains_key(&k) {
                slot.insert(k.clone(), keys.len());
                keys.push(k);
            }
        }
        let stored = state::get_many(&keys);
        let mut sessions: Vec<Vec<Session<A::Acc>>> = (stored.iter())
            .map(|v| self.decode_sessions(v.as_deref()))
            .collect();
        let ends_before: Vec<Vec<u64>> = sessions
            .iter()
            .map(|s| s.iter().map(|x| x.window.end).collect())
            .collect();
        let mut fates = Vec::with_capacity(batch.len());
        for (event, kt) in batch.iter().zip(found) {
            let mark = marks.get(event.index()).copied().unwrap_or(0);
            let (key, t) = match kt {
                Ok((key, t)) => (key, *t),
                Err(f) => {
                    fates.push(Fate::Failed(f.clone()));
                    continue;
                }
            };
            let end = t.saturating_add(gap);
            if end <= mark {
                fates.push(Fate::Failed(Failure::late(format_args!(
                    "its session would end at {end}, at or before the watermark {mark}"
                ))));
                continue;
            }
            let open = &mut sessions[slot[&session_key(key)]];
            let mut acc = self.aggregate.init();
            self.aggregate.add(&mut acc, &event);
            let mut window = Window { start: t, end };
            let mut i = 0;
            while i < open.len() {
                let s = &open[i];
                if s.window.start < window.end && window.start < s.window.end {
                    let s = open.remove(i);
                    window.start = window.start.min(s.window.start);
                    window.end = window.end.max(s.window.end);
                    self.aggregate.merge(&mut acc, s.acc);
                } else {
                    i += 1;
                }
            }
            open.push(Session { window, acc });
            fates.push(Fate::Added);
        }
        let mut entries = Vec::new();
        let mut set = Vec::new();
        for ((k, open), before) in keys.iter().zip(&sessions).zip(&ends_before) {
            let key = &k[1..];
            for s in open {
                if !before.contains(&s.window.end) {
                    set.push(Timer::event(key.to_vec(), s.window.end));
                }
            }
            for end in before {
                if !open.iter().any(|s| s.window.end == *end) {
                    time::cancel_timer(&Timer::event(key.to_vec(), *end));
                }
            }
            entries.push(Entry::new(k.clone(), self.encode_sessions(open)));
        }
        let timers = time::set_timers(&set);
        let written = state::set_many(&entries);
        if let Some(e) = timers.into_iter().chain(written).find_map(Result::err) {
            // A session store or timer refused: the batch's events fail with the reason (a
            // refused write wrote nothing; the others may have, and fire on their own).
            let f = Failure::from_state(e);
            for fate in &mut fates {
                if matches!(fate, Fate::Added) {
                    *fate = Fate::Failed(f.clone());
                }
            }
        }
        fates
    }

    fn decode_sessions(&self, bytes: Option<&[u8]>) -> Vec<Session<A::Acc>> {
        let mut out = Vec::new();
        let mut rest = bytes.unwrap_or_default();
        while rest.len() >= 20 {
            let start = u64::from_le_bytes(rest[0..8].try_into().expect("8 bytes"));
            let end = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
            let len = u32::from_le_bytes(rest[16..20].try_into().expect("4 bytes")) as usize;
            let Some(acc) = rest.get(20..20 + len) else {
                break;
            };
            out.push(Session {
                window: Window { start, end },
                acc: self.aggregate.decode(acc),
            });
            rest = &rest[20 + len..];
        }
        out
    }

    fn encode_sessions(&self, sessions: &[Session<A::Acc>]) -> Vec<u8> {
        let mut out = Vec::new();
        for s in sessions {
            let acc = self.aggregate.encode(&s.acc);
            out.extend_from_slice(&s.window.start.to_le_bytes());
            out.extend_from_slice(&s.window.end.to_le_bytes());
            out.extend_from_slice(&(acc.len() as u32).to_le_bytes());
            out.extend_from_slice(&acc);
        }
        out
    }

    /// Closes the windows whose timers fired: one event each, in the order of the timers.
    pub fn on_timer(&mut self, fired: Vec<Timer>) -> Vec<Event> {
        match self.windows {
            Windows::Session { .. } => self.close_sessions(fired),
            _ => self.close_fixed(fired),
        }
    }

    fn close_fixed(&mut self, fired: Vec<Timer>) -> Vec<Event> {
        let size = self.window_size();
        let keys: Vec<Vec<u8>> = fired
            .iter()
            .map(|t| window_key(t.at.saturating_sub(size), &t.key))
            .collect();
        let found = state::get_many(&keys);
        state::delete_many(&keys);
        let mut out = Vec::with_capacity(fired.len());
        for (timer, value) in fired.iter().zip(found) {
            let Some(bytes) = value else { continue };
            let window = Window {
                start: timer.at.saturating_sub(size),
                end: timer.at,
            };
            let acc = self.aggregate.decode(&bytes);
            out.push(self.finished(&timer.key, window, acc));
        }
        out
    }

    fn close_sessions(&mut self, fired: Vec<Timer>) -> Vec<Event> {
        let mut out = Vec::new();
        for timer in fired {
            let k = session_key(&timer.key);
            let mut open = self.decode_sessions(state::get(&k).as_deref());
            let mut i = 0;
            while i < open.len() {
                if open[i].window.end <= timer.at {
                    let s = open.remove(i);
                    out.push(self.finished(&timer.key, s.window, s.acc));
                } else {
                    i += 1;
                }
            }
            if open.is_empty() {
                state::delete(&k);
            } else {
                let _ = state::set(k, self.encode_sessions(&open));
            }
        }
        out
    }

    fn finished(&self, key: &[u8], window: Window, acc: A::Acc) -> Event {
        Event {
            key: Some(key.to_vec()),
            value: self.aggregate.finish(key, window, acc),
            headers: Vec::new(),
            timestamp: Some(window.end.saturating_sub(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let t = Windows::Tumbling { size: 60_000 };
        assert_eq!(
            t.of(125_000),
            [Window {
                start: 120_000,
                end: 180_000
            }]
        );
        let h = Windows::Hopping {
            size: 60_000,
            slide: 20_000,
        };
        let starts: Vec<u64> = h.of(125_000).iter().map(|w| w.start).collect();
        assert_eq!(starts, [80_000, 100_000, 120_000]);
        assert_eq!(Windows::Tumbling { size: 10 }.of(0)[0].start, 0);
    }
}
