//! Poison isolation: a batch whose call failed is split in halves and re-run until the event
//! that causes the failure is alone, so one poison event costs one dead letter, not a batch.
//!
//! A call fails when it traps, and also when the sandbox refuses its output: a wrong number
//! of outcomes, an output that breaks the contract's encoding, or one that costs more than
//! the stage's `max_output_bytes`. Each is searched the same way, because each may be caused
//! by one event among many; the events whose calls then succeed go on.
//!
//! [`isolate`] is the search alone, over a `call` function: it writes the batch's results as
//! [`Piece`]s, ranges of input events in order with the output of the call that covered them
//! or the failure that failed them. The work is bounded: a batch may cost at most
//! [`MAX_TRAPS_PER_BATCH`] failed calls, after which the events not yet isolated fail
//! together; an output refused only for its size (`output-cap`) is split without counting
//! against that budget, at most 2n - 1 calls for a batch of n.

use std::ops::Range;

use weir_sandbox::{Events, Output, TrapKind, Trapped};

/// Failed calls (traps, refused outputs) one batch may cost while its poison events are
/// isolated. One poison event in a
/// batch of 256 needs 9 (one per halving); this allows a second one, and bounds the re-run
/// work when every event traps (each trap may cost a full deadline).
pub const MAX_TRAPS_PER_BATCH: u32 = 20;

/// The result of one call over a range of a batch's events.
pub(crate) struct Piece {
    pub range: Range<usize>,
    pub result: Result<Output, Trapped>,
    /// Whether a limit refused one of the call's state writes: only then is a failure the
    /// plugin reports as `state-limit:` believed.
    pub state_limited: bool,
}

/// One call on the events of a range of the batch: its result, and whether a limit refused one
/// of its state writes.
pub(crate) type Call<'a> = dyn FnMut(&Events, Range<usize>) -> (Result<Output, Trapped>, bool) + 'a;

/// Runs `events` through `call`, bisecting on traps; appends the pieces in input order and
/// returns the traps it cost.
pub(crate) fn isolate(events: &Events, call: &mut Call<'_>, pieces: &mut Vec<Piece>) -> u32 {
    let mut traps = 0;
    search(events, 0..events.len(), call, pieces, &mut traps);
    traps
}

fn search(
    all: &Events,
    range: Range<usize>,
    call: &mut Call<'_>,
    pieces: &mut Vec<Piece>,
    traps: &mut u32,
) {
    let (result, state_limited) = if range.len() == all.len() {
        call(all, range.clone())
    } else {
        call(&all.slice(range.clone()), range.clone())
    };
    let trapped = match result {
        Err(t) => t,
        result => {
            pieces.push(Piece {
                range,
                result,
                state_limited,
            });
            return;
        }
    };
    // An output refused only for its size is no sign of a poison event: the halves may each
    // fit. Such refusals are not counted against the budget, so a batch that is merely too
    // big is split until every piece fits, and loses no event that fits alone. The search
    // then makes at most 2n - 1 calls for n events, each under the call's fuel and deadline,
    // and the host's work on each refused one is bounded by the cap it passed.
    if trapped.kind != TrapKind::OutputCap {
        *traps += 1;
    }
    if range.len() == 1 || trapped.kind == TrapKind::InitFailed || *traps >= MAX_TRAPS_PER_BATCH {
        // A single event that trapped alone is isolated; any other range failing here is not.
        let isolated = range.len() == 1;
        pieces.push(Piece {
            result: Err(not_isolated(trapped, isolated, *traps)),
            range,
            state_limited: false,
        });
        return;
    }
    let middle = range.start + range.len() / 2;
    search(all, range.start..middle, call, pieces, traps);
    let right = middle..range.end;
    if *traps >= MAX_TRAPS_PER_BATCH {
        // The budget ran out in the left half: the right half is not tried.
        pieces.push(Piece {
            result: Err(not_isolated(trapped, false, *traps)),
            range: right,
            state_limited: false,
        });
    } else {
        search(all, right, call, pieces, traps);
    }
}

/// The trap as the events it fails see it: events that were not called alone (the budget ran
/// out first) are told so.
fn not_isolated(trapped: Trapped, isolated: bool, traps: u32) -> Trapped {
    if isolated || trapped.kind == TrapKind::InitFailed {
        return trapped;
    }
    Trapped {
        message: format!(
            "{} (not isolated: the batch failed {traps} times)",
            trapped.message
        ),
        ..trapped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(values: &[&str]) -> Events {
        let mut b = Events::new();
        for v in values {
            b.push_value(v.as_bytes());
        }
        b
    }

    /// Passes every event through, trapping when any value is "poison".
    fn poisoned(events: &Events) -> Result<Output, Trapped> {
        if events.iter().any(|e| e.value() == b"poison") {
            return Err(Trapped {
                kind: TrapKind::Panic,
                message: "poison".into(),
            });
        }
        Ok(Output {
            events: events.clone(),
            counts: Vec::new(),
            failures: Vec::new(),
        })
    }

    #[test]
    fn one_poison_event_in_256_costs_nine_traps_and_fails_alone() {
        let mut values = vec!["ok"; 256];
        values[77] = "poison";
        let events = batch(&values);
        let mut pieces = Vec::new();
        let traps = isolate(&events, &mut |e, _| (poisoned(e), false), &mut pieces);
        assert_eq!(traps, 9);
        let failed: Vec<_> = pieces
            .iter()
            .filter(|p| p.result.is_err())
            .map(|p| (p.range.start, p.range.end))
            .collect();
        assert_eq!(failed, vec![(77, 78)]);
        let covered: usize = pieces.iter().map(|p| p.range.len()).sum();
        assert_eq!(covered, 256, "every event has exactly one result");
        assert!(
            pieces
                .windows(2)
                .all(|w| w[0].range.end == w[1].range.start)
        );
    }

    #[test]
    fn a_batch_that_always_traps_stops_at_the_budget() {
        let events = batch(&["poison"; 256]);
        let mut pieces = Vec::new();
        let traps = isolate(&events, &mut |e, _| (poisoned(e), false), &mut pieces);
        assert_eq!(traps, MAX_TRAPS_PER_BATCH);
        let covered: usize = pieces.iter().map(|p| p.range.len()).sum();
        assert_eq!(covered, 256);
        let last = pieces.last().unwrap();
        let message = &last.result.as_ref().err().unwrap().message;
        assert!(message.contains("not isolated"), "{message}");
    }

    #[test]
    fn a_refused_output_is_searched_like_a_trap() {
        let mut values = vec!["ok"; 16];
        values[5] = "poison";
        let events = batch(&values);
        let mut calls = 0;
        let mut wrong = |events: &Events| {
            calls += 1;
            if events.iter().any(|e| e.value() == b"poison") {
                return Err(Trapped {
                    kind: TrapKind::WrongOutcomeCount,
                    message: "one outcome too many".into(),
                });
            }
            poisoned(events)
        };
        let mut pieces = Vec::new();
        assert_eq!(
            isolate(&events, &mut |e, _| (wrong(e), false), &mut pieces),
            5
        );
        assert_eq!(
            calls, 9,
            "four halvings, each a failed and a good call, and the first"
        );
        let failed: Vec<_> = pieces
            .iter()
            .filter(|p| p.result.is_err())
            .map(|p| (p.range.start, p.range.end))
            .collect();
        assert_eq!(failed, [(5, 6)]);
    }

    #[test]
    fn a_batch_only_too_big_is_split_until_every_piece_fits() {
        let events = batch(&["x"; 256]);
        let mut calls = 0;
        let mut capped = |events: &Events| {
            calls += 1;
            if events.len() > 3 {
                return Err(Trapped {
                    kind: TrapKind::OutputCap,
                    message: "over max_output_bytes".into(),
                });
            }
            poisoned(events)
        };
        let mut pieces = Vec::new();
        assert_eq!(
            isolate(&events, &mut |e, _| (capped(e), false), &mut pieces),
            0
        );
        assert!(pieces.iter().all(|p| p.result.is_ok()), "nothing lost");
        assert_eq!(pieces.iter().map(|p| p.range.len()).sum::<usize>(), 256);
        assert!(calls < 2 * 256, "{calls}");
    }
}
