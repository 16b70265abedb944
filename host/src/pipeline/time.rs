//! Event time on the edges: watermarks, kept event by event in input order.
//!
//! An event's time is its timestamp. Where events carry timestamps, every edge carries a
//! watermark with them: [`Marks`], the edge's watermark before each event of a batch and after
//! the batch. A batch that arrives at a chain without marks but with timestamps (from a source,
//! or a stage of a chain with several workers) gets them here, as its producer's running highest
//! timestamp. Data moves like this:
//!
//! 1. At a chain's head, [`Inputs`] turns each batch from one producer into the node's input
//!    watermark per event: the lowest over the producers that hold it back. A producer that has
//!    sent nothing for the stage's `idle_timeout` stops holding it back, and so does one whose
//!    batches carry no event time; one not yet heard from holds it back until `idle_timeout`
//!    after the start.
//! 2. Each stage's [`Clock`] keeps its input watermark (never moving back) and, per event, the
//!    watermark the stage *saw*: the input watermark minus the stage's `allowed_lateness`. That
//!    is what the plugin reads (`time.watermarks`), what decides whether an event it calls late
//!    is believed, and what fires its event-time timers.
//! 3. The stage's outputs carry marks on. A stage that passes its inputs' timestamps on (or
//!    drops them) forwards its input watermark: before each output, the input watermark at the
//!    input it came from. A stage that *sets* timestamps (an output's differs from its
//!    input's, or a timer made it) starts a watermark of its own from then on: the highest
//!    timestamp among its outputs so far, since the times it sets are what later stages judge
//!    lateness by.
//! 4. A batch with no events can still carry marks: the watermark moves on when a stage filters
//!    a whole batch out, and at the end of the input it jumps to [`END`].
//!
//! Pipelines without timestamps never build marks: every step checks for `None` first.

use std::time::{Duration, Instant};

use weir_sandbox::Events;

/// No watermark (yet): nothing is late, no event-time timer fires.
pub const NONE: u64 = 0;
/// The end of time: the watermark of an input that has ended.
pub const END: u64 = u64::MAX;

/// An edge's watermark alongside a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marks {
    /// The watermark before each event, one per event ([`NONE`] before there is one).
    pub before: Vec<u64>,
    /// The watermark after the batch.
    pub after: u64,
}

/// The lower of two watermarks, where [`NONE`] does not hold the other back.
pub fn lower(a: u64, b: u64) -> u64 {
    match (a, b) {
        (NONE, x) | (x, NONE) => x,
        (a, b) => a.min(b),
    }
}

/// Marks from the events' own timestamps, continuing from `highest` (a producer's highest
/// timestamp so far), which it advances; `None` when no event has a timestamp.
pub fn derive(events: &Events, highest: &mut u64) -> Option<Marks> {
    if events.timestamps.is_empty() {
        return None;
    }
    let mut before = Vec::with_capacity(events.len());
    for event in events.iter() {
        before.push(*highest);
        if let Some(t) = event.timestamp() {
            *highest = (*highest).max(t);
        }
    }
    Some(Marks {
        before,
        after: *highest,
    })
}

/// What one producer of a chain's input holds the watermark at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Nothing: it is idle, or carries no event time.
    Free,
    /// It has not been heard from: the watermark may not move.
    Back,
    At(u64),
}

struct Producer {
    id: u32,
    /// Its watermark so far.
    mark: u64,
    /// Its highest timestamp, for its batches that come without marks.
    highest: u64,
    heard: Option<Instant>,
    timed: bool,
}

impl Producer {
    fn hold(&self, now: Instant, started: Instant, idle: Duration) -> Hold {
        match self.heard {
            None if now.duration_since(started) < idle => Hold::Back,
            None => Hold::Free,
            Some(_) if !self.timed => Hold::Free,
            Some(at) if now.duration_since(at) >= idle => Hold::Free,
            Some(_) => Hold::At(self.mark),
        }
    }
}

/// The lowest of the holds: `None` when one holds the watermark back, [`NONE`] when none holds
/// it anywhere.
fn lowest(holds: impl Iterator<Item = Hold>) -> Option<u64> {
    let mut low = NONE;
    for hold in holds {
        match hold {
            Hold::Back => return None,
            Hold::Free => {}
            Hold::At(m) => low = lower(low, m.max(1)),
        }
    }
    Some(low)
}

/// The input watermark of a chain's head, from what each of its producers sends.
pub struct Inputs {
    producers: Vec<Producer>,
    idle: Duration,
    started: Instant,
}

impl Inputs {
    /// A head fed by the producers `ids` (the `from` of their batches).
    pub fn new(ids: &[u32], idle: Duration) -> Inputs {
        Inputs {
            producers: ids
                .iter()
                .map(|&id| Producer {
                    id,
                    mark: NONE,
                    highest: NONE,
                    heard: None,
                    timed: false,
                })
                .collect(),
            idle,
            started: Instant::now(),
        }
    }

    fn index(&mut self, id: u32) -> usize {
        if let Some(i) = self.producers.iter().position(|p| p.id == id) {
            return i;
        }
        self.producers.push(Producer {
            id,
            mark: NONE,
            highest: NONE,
            heard: None,
            timed: false,
        });
        self.producers.len() - 1
    }

    /// The node's input marks for `events` (with the producer's `marks`, if it sent any) from
    /// producer `from`; `None` when no producer carries event time. [`NONE`] entries do not
    /// move the watermark.
    pub fn take(
        &mut self,
        from: u32,
        events: &Events,
        marks: Option<&Marks>,
        now: Instant,
    ) -> Option<Marks> {
        let (started, idle) = (self.started, self.idle);
        let i = self.index(from);
        let own = {
            let p = &mut self.producers[i];
            p.heard = Some(now);
            let own = match marks {
                Some(m) => Some(m.clone()),
                None => derive(events, &mut p.highest),
            };
            if let Some(m) = &own {
                p.timed = true;
                p.mark = p.mark.max(m.after);
            }
            own
        };
        if !self.producers.iter().any(|p| p.timed) {
            return None;
        }
        let others = lowest(
            (self.producers.iter().enumerate())
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| p.hold(now, started, idle)),
        );
        // This producer carries event time: before its own first time it holds the watermark
        // back like one not yet heard from.
        let combine = |mine: u64| match others {
            None => NONE,
            Some(_) if mine == NONE => NONE,
            Some(o) => lower(o, mine),
        };
        let (timed, mark) = (self.producers[i].timed, self.producers[i].mark);
        Some(match own {
            Some(m) => Marks {
                before: m.before.iter().map(|&b| combine(b)).collect(),
                after: combine(m.after),
            },
            None => {
                let at = if timed {
                    combine(mark)
                } else {
                    others.unwrap_or(NONE)
                };
                Marks {
                    before: vec![at; events.len()],
                    after: at,
                }
            }
        })
    }

    /// The input watermark now, with no batch: what an idle producer no longer holds back.
    /// `None` when no producer carries event time.
    pub fn now(&self, now: Instant) -> Option<u64> {
        if !self.producers.iter().any(|p| p.timed) {
            return None;
        }
        let holds = self
            .producers
            .iter()
            .map(|p| p.hold(now, self.started, self.idle));
        Some(lowest(holds).unwrap_or(NONE))
    }
}

/// One stage's watermark.
#[derive(Debug, Default)]
pub struct Clock {
    /// The input watermark, never moving back.
    node: u64,
    /// The highest timestamp of the stage's outputs.
    highest: u64,
    lateness: u64,
    /// Whether the stage has seen event time (on its input or its outputs): from then on its
    /// outputs carry marks.
    timed: bool,
    /// Whether the stage sets timestamps: then its outputs' times make its watermark.
    sets: bool,
    /// Per input event of the batch in progress: the input watermark before it.
    node_at: Vec<u64>,
    /// Per input event: the watermark it saw (the plugin's `time.watermarks`).
    pub seen: Vec<u64>,
}

impl Clock {
    pub fn new(allowed_lateness: Duration) -> Clock {
        Clock {
            lateness: u64::try_from(allowed_lateness.as_millis()).unwrap_or(u64::MAX),
            ..Clock::default()
        }
    }

    pub fn timed(&self) -> bool {
        self.timed
    }

    /// The input watermark.
    pub fn input(&self) -> u64 {
        self.node
    }

    /// Resumes the input watermark kept with the stage's state.
    pub fn resume(&mut self, node: u64) {
        if node > self.node {
            self.node = node;
            self.timed = true;
        }
    }

    /// What the stage sees of watermark `node`: it minus the stage's lateness.
    pub fn sees(&self, node: u64) -> u64 {
        if node == NONE || node == END {
            node
        } else {
            node.saturating_sub(self.lateness).max(1)
        }
    }

    /// The watermark the stage sees now.
    pub fn seen_now(&self) -> u64 {
        self.sees(self.node)
    }

    /// Takes a batch of `n` input events with `marks`: fills [`Clock::seen`] (empty without
    /// event time) and moves the input watermark through the batch.
    pub fn take(&mut self, n: usize, marks: Option<&Marks>) {
        self.node_at.clear();
        self.seen.clear();
        let Some(marks) = marks else {
            return;
        };
        self.timed = true;
        for &b in marks.before.iter().take(n) {
            self.node = self.node.max(b);
            self.node_at.push(self.node);
        }
        self.node_at.resize(n, self.node);
        self.node = self.node.max(marks.after);
        let seen: Vec<u64> = self.node_at.iter().map(|&w| self.sees(w)).collect();
        self.seen = seen;
    }

    /// Moves the input watermark to `to` (a tick that found an idle input, or the end).
    pub fn advance(&mut self, to: u64) {
        if to > self.node {
            self.node = to;
            self.timed = true;
        }
        self.node_at.clear();
        self.seen.clear();
    }

    /// The marks of the stage's outputs: output `k` came from input `sources[k]` of `input`
    /// (past the sources, from a timer after the batch); `None` while the stage has no event
    /// time.
    pub fn outputs(&mut self, events: &Events, input: &Events, sources: &[u32]) -> Option<Marks> {
        if !self.timed && events.timestamps.is_empty() {
            return None;
        }
        self.timed = true;
        if !self.sets && !events.timestamps.is_empty() {
            self.sets = events.iter().enumerate().any(|(k, e)| {
                let Some(t) = e.timestamp() else {
                    return false;
                };
                match sources.get(k) {
                    Some(&i) if (i as usize) < input.len() => {
                        input.get(i as usize).timestamp() != Some(t)
                    }
                    _ => true,
                }
            });
        }
        let mut before = Vec::with_capacity(events.len());
        for (k, event) in events.iter().enumerate() {
            if self.sets {
                before.push(self.highest);
            } else {
                let at = sources
                    .get(k)
                    .and_then(|&i| self.node_at.get(i as usize))
                    .copied()
                    .unwrap_or(self.node);
                before.push(at);
            }
            if let Some(t) = event.timestamp() {
                self.highest = self.highest.max(t);
            }
        }
        let after = if self.sets { self.highest } else { self.node };
        Some(Marks { before, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(times: &[u64]) -> Events {
        let mut e = Events::new();
        for &t in times {
            e.push_parts(None, b"x", std::iter::empty(), Some(t));
        }
        e
    }

    #[test]
    fn derived_marks_are_the_highest_time_before_each_event() {
        let mut highest = NONE;
        let m = derive(&stamped(&[5, 3, 9, 7]), &mut highest).unwrap();
        assert_eq!(m.before, [0, 5, 5, 9]);
        assert_eq!(m.after, 9);
        assert!(derive(&Events::new(), &mut highest).is_none());
    }

    #[test]
    fn a_stage_sees_its_input_less_its_lateness_and_never_moves_back() {
        let mut c = Clock::new(Duration::from_millis(10));
        c.take(
            3,
            Some(&Marks {
                before: vec![100, 50, 120],
                after: 130,
            }),
        );
        assert_eq!(c.seen, [90, 90, 110]);
        assert_eq!(c.input(), 130);
    }

    #[test]
    fn the_lowest_input_holds_the_watermark_until_it_goes_idle() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(10);
        let mut inputs = Inputs::new(&[1, 2], idle);
        let a = stamped(&[100, 200]);
        // Producer 2 has not been heard from: nothing moves.
        let m = inputs.take(1, &a, None, t0).unwrap();
        assert_eq!(m.after, NONE);
        let b = stamped(&[150]);
        let m = inputs.take(2, &b, None, t0).unwrap();
        assert_eq!((m.before[0], m.after), (NONE, 150));
        let m = inputs.take(1, &stamped(&[300]), None, t0).unwrap();
        assert_eq!(m.after, 150, "producer 2 holds it at 150");
        // Producer 2 goes quiet for the idle timeout: producer 1 alone sets it.
        let later = t0 + idle;
        let m = inputs.take(1, &stamped(&[400]), None, later).unwrap();
        assert_eq!(m.after, 400);
        assert_eq!(inputs.now(later), Some(400));
    }

    #[test]
    fn a_stage_that_passes_times_on_forwards_its_input_watermark() {
        let mut c = Clock::new(Duration::ZERO);
        let input = stamped(&[100, 200, 300]);
        let marks = Marks {
            before: vec![50, 100, 200],
            after: 300,
        };
        c.take(3, Some(&marks));
        // A filter keeps the first event only: the watermark still reaches 300.
        let m = c.outputs(&stamped(&[100]), &input, &[0]).unwrap();
        assert_eq!((m.before, m.after), (vec![50], 300));
    }

    #[test]
    fn a_stage_that_sets_times_starts_a_watermark_of_its_own() {
        let mut c = Clock::new(Duration::ZERO);
        let input = stamped(&[100, 200]);
        c.take(
            2,
            Some(&Marks {
                before: vec![0, 100],
                after: 200,
            }),
        );
        let m = c.outputs(&stamped(&[7, 9, 8]), &input, &[0, 1, 1]).unwrap();
        assert_eq!((m.before, m.after), (vec![0, 7, 9], 9));
    }
}
