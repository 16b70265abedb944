//! Writing a call's output: [`Outputs`], the output under construction, and [`Emitter`], the
//! handle a [`Transform`](crate::Transform) writes one input's outputs through.
//!
//! Data moves straight from the stage into the call's output buffers: every emitted byte is
//! appended once to the one output `data` buffer, every event is six numbers appended to the
//! `events` column. The buffers are reserved from the input's sizes when the call starts, so a
//! call whose outputs are no larger than half again its input makes the same few allocations
//! whatever its number of events; larger outputs grow the buffers by doubling. Outcomes are
//! recorded in input order: while every input becomes exactly one output, no `counts` are
//! written at all (the contract's fast path); the first input that does otherwise starts them.
//! A failed input's outputs, if it emitted any before failing, are cut away.

use crate::batch::offset;
use crate::{Batch, Event, EventView, FailedEvent, Failure, Outcome, Output};

/// The output of a call under construction: one outcome per input event, in input order.
///
/// [`Transform::process_batch`](crate::Transform::process_batch) receives it; the default
/// implementation records one outcome per input with [`Outputs::emit_for`].
#[derive(Debug)]
pub struct Outputs {
    output: Output,
    /// Input events in the call.
    inputs: usize,
    /// Outcomes recorded so far.
    recorded: usize,
    /// Whether `counts` is being written: false while every outcome so far was one output.
    counting: bool,
}

impl Outputs {
    /// Empty output buffers for a call on `input`, reserved from its sizes: half again its
    /// bytes, as many events, as many headers and timestamps.
    pub(crate) fn for_input(input: &Batch) -> Outputs {
        let bytes = input.data.len();
        Outputs {
            output: Output {
                events: Batch {
                    data: Vec::with_capacity(bytes + bytes / 2),
                    events: Vec::with_capacity(input.events.len()),
                    headers: Vec::with_capacity(input.headers.len()),
                    timestamps: Vec::with_capacity(input.timestamps.len()),
                },
                counts: Vec::new(),
                failures: Vec::new(),
            },
            inputs: input.len(),
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
        let mark = self.output.events.mark();
        let mut emitter = Emitter {
            out: &mut self.output.events,
            input: *input,
            count: 0,
        };
        match write(&mut emitter) {
            Ok(()) => {
                let count = emitter.count;
                self.record(count, None);
            }
            Err(failure) => {
                self.output.events.truncate(mark);
                self.record(0, Some(failure));
            }
        }
    }

    /// Records the outcome of the next input as an owned [`Outcome`]: what a
    /// [`Stage`](crate::Stage) returns.
    pub fn push_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Ok(events) => {
                for event in &events {
                    self.output.events.push(event);
                }
                self.record(events.len(), None);
            }
            Err(failure) => self.record(0, Some(failure)),
        }
    }

    /// Outcomes recorded so far.
    pub fn recorded(&self) -> usize {
        self.recorded
    }

    fn record(&mut self, count: usize, failure: Option<Failure>) {
        let index = self.recorded;
        self.recorded += 1;
        if count == 1 && failure.is_none() && !self.counting {
            return;
        }
        self.start_counting(index);
        self.output.counts.push(offset(count));
        if let Some(failure) = failure {
            if self.output.failures.capacity() == 0 {
                // One allocation for the call's failures, however many there are.
                self.output.failures.reserve_exact(self.inputs - index);
            }
            self.output.failures.push(FailedEvent {
                index: offset(index),
                failure,
            });
        }
    }

    /// Starts writing `counts`: the `before` outcomes recorded so far were one output each.
    fn start_counting(&mut self, before: usize) {
        if !self.counting {
            self.counting = true;
            self.output
                .counts
                .reserve_exact(self.inputs.max(before + 1));
            self.output.counts.resize(before, 1);
        }
    }

    /// The finished output. A stage that recorded a number of outcomes other than its inputs
    /// gets counts of that length, which the host reports as `wrong-outcome-count`.
    pub(crate) fn finish(mut self) -> Output {
        if self.recorded != self.inputs {
            self.start_counting(self.recorded);
        }
        self.output
    }
}

/// Writes the outputs of one input event straight into the call's output buffers.
///
/// Each `emit*` call, or [`Emitter::pass`], adds one output event; none means the input is
/// filtered out. Outputs keep the input's key, headers and timestamp unless
/// [`Emitter::emit`] gives others.
pub struct Emitter<'a> {
    out: &'a mut Batch,
    input: EventView<'a>,
    count: usize,
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

    /// Emits the input unchanged.
    pub fn pass(&mut self) {
        let value = self.out.put(self.input.value());
        self.finish_with_input_metadata(value);
    }

    /// Emits the input with a new value; key, headers and timestamp are the input's.
    pub fn emit_value(&mut self, value: &[u8]) {
        let value = self.out.put(value);
        self.finish_with_input_metadata(value);
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
        let start = self.out.data.len();
        let result = write(&mut self.out.data);
        assert!(
            self.out.data.len() >= start,
            "an emit_with writer removed bytes it did not write"
        );
        if let Err(e) = result {
            self.out.data.truncate(start);
            return Err(e);
        }
        let value = (offset(start), offset(self.out.data.len() - start));
        self.finish_with_input_metadata(value);
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
        self.out.push_parts(key, value, headers, timestamp);
        self.count += 1;
    }

    /// Emits an owned event.
    pub fn emit_event(&mut self, event: &Event) {
        self.out.push(event);
        self.count += 1;
    }

    fn finish_with_input_metadata(&mut self, value: (u32, u32)) {
        let input = self.input;
        self.out
            .push_record(value, input.key(), input.raw_headers(), input.timestamp());
        self.count += 1;
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

    /// Runs `write` for every input event and returns the checked output.
    fn run(
        input: &Batch,
        mut write: impl FnMut(&mut Emitter<'_>) -> Result<(), Failure>,
    ) -> Output {
        let mut outputs = Outputs::for_input(input);
        for event in input.iter() {
            outputs.emit_for(&event, &mut write);
        }
        let output = outputs.finish();
        output.check(input.len()).unwrap();
        output
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

        let out = run(&input, |e| {
            e.pass();
            Ok(())
        });
        assert_eq!(out.events, input, "pass copies the input exactly");
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
        let out = outputs.finish();
        assert_eq!(out.counts, [1], "one count for two inputs");
        assert!(out.check(2).unwrap_err().contains("1 counts for 2"));
    }

    #[test]
    fn a_call_reserves_its_buffers_once() {
        let input = Batch::from_events(&vec![Event::new(vec![b'a'; 100]); 256]);
        let out = run(&input, |e| {
            e.pass();
            Ok(())
        });
        assert_eq!(out.events.data.capacity(), 256 * 150, "no growth");
        assert_eq!(out.events.events.capacity(), 256 * 6);
        assert_eq!(out.counts.capacity(), 0);
        assert_eq!(out.events.headers.capacity(), 0);
    }
}
