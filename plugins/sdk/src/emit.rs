//! Writing a call's output: [`Outputs`], the output under construction, and [`Emitter`], the
//! handle a [`Transform`](crate::Transform) writes one input's outputs through.
//!
//! Data moves straight from the stage into the call's output buffers: every emitted byte is
//! appended once to the one output `data` buffer, every event is six numbers appended to the
//! `events` column. Three shortcuts keep a call's cost down:
//!
//! - While every input so far was passed unchanged ([`Emitter::pass`]) and nothing else was
//!   emitted, nothing is written at all: the output so far *is* the input. A call that stays
//!   that way returns the input batch itself, and a pass-through stage copies no byte.
//! - The first time that stops being true, the buffers are reserved from the input's sizes
//!   (half again its bytes, as many events, headers and timestamps) and the inputs passed so
//!   far are copied in. A call whose outputs fit makes that one set of allocations whatever
//!   its number of events; larger outputs grow the buffers by doubling.
//! - While every input becomes exactly one output, no `counts` are written (the contract's
//!   fast path); the first input that does otherwise starts them.
//!
//! Outcomes are recorded in input order. A failed input's outputs, if it emitted any before
//! failing, are cut away.

use crate::batch::{Mark, offset};
use crate::{Batch, Event, EventView, FailedEvent, Failure, Outcome, Output};

/// The output events of a call, or the promise that they are the input's first events.
#[derive(Debug)]
struct Buffers {
    events: Batch,
    /// Whether the output so far is the input's first events, passed unchanged and not yet
    /// written to `events` (which is then empty).
    identity: bool,
}

impl Buffers {
    /// Leaves identity mode, if still in it: reserves the buffers from `input`'s sizes and
    /// writes its first `upto` events, which were passed unchanged.
    #[inline]
    fn materialize(&mut self, input: &Batch, upto: usize) {
        if self.identity {
            self.write_passed(input, upto);
        }
    }

    // Kept out of line: it runs once per call at most, `materialize` runs per event.
    #[inline(never)]
    fn write_passed(&mut self, input: &Batch, upto: usize) {
        self.identity = false;
        let bytes = input.data.len();
        let events = &mut self.events;
        events.data.reserve_exact(bytes + bytes / 2);
        events.events.reserve_exact(input.events.len());
        events.headers.reserve_exact(input.headers.len());
        events.timestamps.reserve_exact(input.timestamps.len());
        for event in input.iter().take(upto) {
            events.push_view(&event);
        }
    }
}

/// What a call made: its input unchanged, or an output written into buffers of its own.
pub(crate) enum Finished {
    Input,
    Written(Output),
}

/// The output of a call under construction: one outcome per input event, in input order.
///
/// [`Transform::process_batch`](crate::Transform::process_batch) receives it; the default
/// implementation records one outcome per input with [`Outputs::emit_for`].
#[derive(Debug)]
pub struct Outputs<'i> {
    input: &'i Batch,
    buffers: Buffers,
    counts: Vec<u32>,
    failures: Vec<FailedEvent>,
    /// Outcomes recorded so far.
    recorded: usize,
    /// Whether `counts` is being written: false while every outcome so far was one output.
    counting: bool,
}

impl<'i> Outputs<'i> {
    /// The output of a call on `input`, still identical to it; allocates nothing.
    pub(crate) fn for_input(input: &'i Batch) -> Outputs<'i> {
        Outputs {
            input,
            buffers: Buffers {
                events: Batch::new(),
                identity: true,
            },
            counts: Vec::new(),
            failures: Vec::new(),
            recorded: 0,
            counting: false,
        }
    }

    /// Records the outcome of the next input, `input`: `write` emits its outputs through the
    /// [`Emitter`]; if it returns a failure, whatever it emitted is discarded.
    pub fn emit_for(
        &mut self,
        input: &EventView<'_>,
        write: impl FnOnce(&mut Emitter<'_>) -> Result<(), Failure>,
    ) {
        let before = self.recorded;
        // Passing an input lazily is only right for the call's own next input.
        let next = input.index() == before && std::ptr::eq(input.batch(), self.input);
        if !next {
            self.buffers.materialize(self.input, before);
        }
        let mark = self.buffers.events.mark();
        let mut emitter = Emitter {
            buffers: &mut self.buffers,
            call_input: self.input,
            before,
            input: *input,
            count: 0,
            lazy: false,
            mark: None,
        };
        let result = write(&mut emitter);
        let (count, lazy) = (emitter.count, emitter.lazy);
        let mark = emitter.mark.unwrap_or(mark);
        match result {
            Ok(()) => {
                // Only a lazy pass keeps the output identical to the input.
                if !lazy {
                    self.buffers.materialize(self.input, before);
                }
                self.record(count);
            }
            Err(failure) if self.buffers.identity => {
                // Nothing was written for this input; the ones before it were passed.
                self.buffers.materialize(self.input, before);
                self.record_failure(failure);
            }
            Err(failure) => {
                self.buffers.events.truncate(mark);
                self.record_failure(failure);
            }
        }
    }

    /// Records the outcome of the next input as an owned [`Outcome`]: what a
    /// [`Stage`](crate::Stage) returns.
    pub fn push_outcome(&mut self, outcome: Outcome) {
        self.buffers.materialize(self.input, self.recorded);
        match outcome {
            Ok(events) => {
                for event in &events {
                    self.buffers.events.push(event);
                }
                self.record(events.len());
            }
            Err(failure) => self.record_failure(failure),
        }
    }

    /// Outcomes recorded so far.
    pub fn recorded(&self) -> usize {
        self.recorded
    }

    /// Records an outcome of `count` outputs. Per event, so the common case (one output, no
    /// counts yet) is a compare and an increment.
    #[inline]
    fn record(&mut self, count: usize) {
        let index = self.recorded;
        self.recorded += 1;
        if count != 1 || self.counting {
            self.start_counting(index);
            self.counts.push(offset(count));
        }
    }

    fn record_failure(&mut self, failure: Failure) {
        let index = self.recorded;
        self.record(0);
        if self.failures.capacity() == 0 {
            // One allocation for the call's failures, however many there are.
            self.failures
                .reserve_exact(self.input.len().saturating_sub(index).max(1));
        }
        self.failures.push(FailedEvent {
            index: offset(index),
            failure,
        });
    }

    /// Starts writing `counts`: the `before` outcomes recorded so far were one output each.
    fn start_counting(&mut self, before: usize) {
        if !self.counting {
            self.counting = true;
            self.counts.reserve_exact(self.input.len().max(before + 1));
            self.counts.resize(before, 1);
        }
    }

    /// The finished output. A stage that recorded a number of outcomes other than its inputs
    /// gets counts of that length, which the host reports as `wrong-outcome-count`.
    pub(crate) fn finish(mut self) -> Finished {
        let inputs = self.input.len();
        if self.buffers.identity && self.recorded == inputs {
            return Finished::Input;
        }
        self.buffers.materialize(self.input, self.recorded);
        if self.recorded != inputs {
            self.start_counting(self.recorded);
        }
        Finished::Written(Output {
            events: self.buffers.events,
            counts: self.counts,
            failures: self.failures,
        })
    }
}

/// Writes the outputs of one input event straight into the call's output buffers.
///
/// Each `emit*` call, or [`Emitter::pass`], adds one output event; none means the input is
/// filtered out. Outputs keep the input's key, headers and timestamp unless
/// [`Emitter::emit`] gives others.
pub struct Emitter<'a> {
    buffers: &'a mut Buffers,
    call_input: &'a Batch,
    /// Outcomes recorded before this input's.
    before: usize,
    input: EventView<'a>,
    count: usize,
    /// Whether this input was passed without being written (identity mode).
    lazy: bool,
    /// Where this input's outputs start, when the buffers were written during this input.
    mark: Option<Mark>,
}

impl<'a> Emitter<'a> {
    /// The input event these outputs are for.
    pub fn input(&self) -> EventView<'a> {
        self.input
    }

    /// Outputs emitted for this input so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Emits the input unchanged. While every input of the call is passed, this writes
    /// nothing: the call's output is its input.
    pub fn pass(&mut self) {
        if self.buffers.identity && self.count == 0 {
            self.count = 1;
            self.lazy = true;
            return;
        }
        self.emit_value(self.input.value());
    }

    /// Emits the input with a new value; key, headers and timestamp are the input's.
    pub fn emit_value(&mut self, value: &[u8]) {
        self.emit_with(|buf| buf.extend_from_slice(value));
    }

    /// Emits the input with a value that `write` appends to the buffer it is given (the call's
    /// output buffer itself, so there is no intermediate copy); key, headers and timestamp are
    /// the input's.
    ///
    /// `write` must only append: the bytes before the end of the buffer belong to earlier
    /// outputs. Removing any of them panics.
    pub fn emit_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let result: Result<(), std::convert::Infallible> = self.try_emit_with(|buf| {
            write(buf);
            Ok(())
        });
        let Ok(()) = result;
    }

    /// Like [`Emitter::emit_with`] for a `write` that may fail: on `Err`, what it appended is
    /// removed, nothing is emitted, and the error is returned.
    pub fn try_emit_with<E>(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.write_out();
        let input = self.input;
        let out = &mut self.buffers.events;
        let mark = out.data.len();
        // The key goes first, as the host lays events out: a passed event is then a copy of
        // the input's bytes in the input's order.
        let key = out.put_key(input.key());
        let start = out.data.len();
        let result = write(&mut out.data);
        assert!(
            out.data.len() >= start,
            "an emit_with writer removed bytes it did not write"
        );
        if let Err(e) = result {
            out.data.truncate(mark);
            return Err(e);
        }
        let value = (offset(start), offset(out.data.len() - start));
        let timestamp = input.timestamp();
        if input.has_headers() {
            out.push_record(key, value, input.raw_headers(), timestamp);
        } else {
            // Most events have no headers: no iterator to set up.
            out.push_record(key, value, std::iter::empty(), timestamp);
        }
        self.count += 1;
        Ok(())
    }

    /// Emits an event made of these parts.
    pub fn emit<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        timestamp: Option<u64>,
    ) {
        self.write_out();
        self.buffers
            .events
            .push_parts(key, value, headers, timestamp);
        self.count += 1;
    }

    /// Emits an owned event.
    pub fn emit_event(&mut self, event: &Event) {
        self.write_out();
        self.buffers.events.push(event);
        self.count += 1;
    }

    /// Makes the buffers hold everything emitted so far, before something else is written:
    /// the inputs passed lazily, this one included.
    fn write_out(&mut self) {
        if !self.buffers.identity {
            return;
        }
        self.buffers.materialize(self.call_input, self.before);
        self.mark = Some(self.buffers.events.mark());
        if self.lazy {
            self.buffers.events.push_view(&self.input);
            self.lazy = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Batch {
        Batch::from_events(&[
            Event {
                key: Some(b"k".to_vec()),
                value: b"abc".to_vec(),
                headers: vec![("h".into(), b"v".to_vec())],
                timestamp: Some(5),
            },
            Event::new("xyz"),
        ])
    }

    /// Runs `write` for every input event and returns the checked output, with whether the
    /// call gave its input back.
    fn finish(
        input: &Batch,
        mut write: impl FnMut(&mut Emitter<'_>) -> Result<(), Failure>,
    ) -> (Output, bool) {
        let mut outputs = Outputs::for_input(input);
        for event in input.iter() {
            outputs.emit_for(&event, &mut write);
        }
        let (output, identity) = match outputs.finish() {
            Finished::Input => (
                Output {
                    events: input.clone(),
                    ..Output::default()
                },
                true,
            ),
            Finished::Written(output) => (output, false),
        };
        output.check(input.len()).unwrap();
        (output, identity)
    }

    fn run(input: &Batch, write: impl FnMut(&mut Emitter<'_>) -> Result<(), Failure>) -> Output {
        finish(input, write).0
    }

    #[test]
    fn one_output_each_writes_no_counts_and_keeps_metadata() {
        let input = input();
        let out = run(&input, |e| {
            let value = e.input().value();
            e.emit_with(|buf| buf.extend(value.iter().map(u8::to_ascii_uppercase)));
            Ok(())
        });
        assert!(out.counts.is_empty());
        let events = out.events.to_events();
        assert_eq!(events[0].value, b"ABC");
        assert_eq!(events[1].value, b"XYZ");
        assert_eq!(events[0].key.as_deref(), Some(b"k".as_slice()));
        assert_eq!(events[0].header("h"), Some(b"v".as_slice()));
        assert_eq!(events[0].timestamp, Some(5));
        assert_eq!(events[1].timestamp, None);

        let (out, identity) = finish(&input, |e| {
            e.pass();
            Ok(())
        });
        assert!(identity, "passing every input gives the input back");
        assert_eq!(out.events, input);
    }

    #[test]
    fn filters_fan_outs_and_failures_write_counts() {
        let input = Batch::from_events(&[
            Event::new("drop"),
            Event::new("two"),
            Event::new("fail"),
            Event::new("one"),
        ]);
        let out = run(&input, |e| match e.input().value() {
            b"drop" => Ok(()),
            b"two" => {
                e.emit_value(b"2a");
                e.emit(None, b"2b", [("n", b"1".as_slice())], Some(1));
                Ok(())
            }
            b"fail" => {
                e.pass();
                Err(Failure::retry("later"))
            }
            _ => {
                e.pass();
                Ok(())
            }
        });
        assert_eq!(out.counts, [0, 2, 0, 1]);
        assert_eq!(out.events.len(), 3);
        assert_eq!(out.events.timestamps, [u64::MAX, 1, u64::MAX]);
        assert_eq!(
            out.failures,
            [FailedEvent {
                index: 2,
                failure: Failure::retry("later")
            }]
        );
        assert_eq!(out.outcomes()[2], Err(Failure::retry("later")));
    }

    #[test]
    fn a_failed_writer_leaves_nothing_behind() {
        let input = input();
        let out = run(&input, |e| {
            e.try_emit_with(|buf| {
                buf.extend_from_slice(b"partial");
                Err(Failure::reject("no"))
            })
        });
        assert!(out.events.data.is_empty() && out.events.is_empty());
        assert_eq!(out.counts, [0, 0]);
    }

    #[test]
    #[should_panic(expected = "removed bytes")]
    fn a_writer_that_truncates_earlier_outputs_panics() {
        let input = input();
        run(&input, |e| {
            e.emit_with(|buf| buf.clear());
            Ok(())
        });
    }

    #[test]
    fn a_wrong_number_of_outcomes_shows_in_the_counts() {
        let input = input();
        let mut outputs = Outputs::for_input(&input);
        outputs.push_outcome(Ok(vec![Event::new("only one")]));
        let Finished::Written(out) = outputs.finish() else {
            panic!("one outcome for two inputs is not the input")
        };
        assert_eq!(out.counts, [1], "one count for two inputs");
        assert!(out.check(2).unwrap_err().contains("1 counts for 2"));
    }

    #[test]
    fn a_call_reserves_its_buffers_once() {
        let input = Batch::from_events(&vec![Event::new(vec![b'a'; 100]); 256]);
        let out = run(&input, |e| {
            e.emit_value(&[b'b'; 100]);
            Ok(())
        });
        assert_eq!(out.events.data.capacity(), 256 * 150, "no growth");
        assert_eq!(out.events.events.capacity(), 256 * 6);
        assert_eq!(out.counts.capacity(), 0);
        assert_eq!(out.events.headers.capacity(), 0);
    }

    /// Whatever breaks identity, and wherever, the output is what was emitted: the inputs
    /// passed lazily before are written out first, in order.
    #[test]
    fn leaving_identity_writes_the_inputs_passed_so_far() {
        let input = Batch::from_events(&[
            Event {
                key: Some(b"k".to_vec()),
                headers: vec![("h".into(), b"v".to_vec())],
                timestamp: Some(1),
                ..Event::new("a")
            },
            Event::new("b"),
            Event::new("c"),
        ]);
        let cases: [(&str, Vec<Outcome>); 5] = [
            ("c", vec![Ok(vec![Event::new("b")])]),
            ("drop", vec![Ok(vec![])]),
            ("fail", vec![Err(Failure::reject("no"))]),
            ("twice", vec![Ok(vec![Event::new("b"), Event::new("b")])]),
            ("pass then fail", vec![Err(Failure::reject("late"))]),
        ];
        for (what, expected) in cases {
            let (out, identity) = finish(&input, |e| {
                if e.input().value() != b"b" {
                    e.pass();
                    return Ok(());
                }
                match what {
                    "c" => e.emit_value(b"b"),
                    "drop" => {}
                    "fail" => return Err(Failure::reject("no")),
                    "twice" => {
                        e.pass();
                        e.pass();
                    }
                    _ => {
                        e.pass();
                        return Err(Failure::reject("late"));
                    }
                }
                Ok(())
            });
            assert!(!identity, "{what}");
            let outcomes = out.outcomes();
            assert_eq!(
                outcomes[0],
                Ok(vec![input.get(0).unwrap().to_owned()]),
                "{what}"
            );
            assert_eq!(outcomes[1..2], expected[..], "{what}");
            assert_eq!(outcomes[2], Ok(vec![Event::new("c")]), "{what}");
        }
    }

    #[test]
    fn a_view_of_another_batch_is_copied_not_passed_lazily() {
        let input = Batch::from_events(&[Event::new("a")]);
        let other = Batch::from_events(&[Event::new("z")]);
        let mut outputs = Outputs::for_input(&input);
        outputs.emit_for(&other.get(0).unwrap(), |e| {
            e.pass();
            Ok(())
        });
        let Finished::Written(out) = outputs.finish() else {
            panic!("the output is not the input")
        };
        assert_eq!(out.outcomes(), vec![Ok(vec![Event::new("z")])]);
    }
}
