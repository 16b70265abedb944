//! Poison isolation: a batch whose call trapped is split in halves and re-run until the event
//! that causes the trap is alone, so one poison event costs one dead letter, not a batch.
//!
//! [`isolate`] is the search alone, over a `call` function: it writes the batch's results as
//! [`Piece`]s, ranges of input events in order with the output of the call that covered them
//! or the trap that failed them. The work is bounded: a batch may cost at most
//! [`MAX_TRAPS_PER_BATCH`] traps, after which the events not yet isolated fail together. A
//! wrong number of outcomes is not a trap (the instance is fine): it fails the call's events
//! without a search.

use std::ops::Range;

use weir_sandbox::{Events, Output, TrapKind, Trapped};

/// Traps one batch may cost while its poison events are isolated. One poison event in a
/// batch of 256 needs 9 (one per halving); this allows a second one, and bounds the re-run
/// work when every event traps (each trap may cost a full deadline).
pub const MAX_TRAPS_PER_BATCH: u32 = 20;

/// The result of one call over a range of a batch's events.
pub(crate) struct Piece {
    pub range: Range<usize>,
    pub result: Result<Output, Trapped>,
}

/// Runs `events` through `call`, bisecting on traps; appends the pieces in input order and
/// returns the traps it cost.
pub(crate) fn isolate(
    events: &Events,
    call: &mut dyn FnMut(&Events) -> Result<Output, Trapped>,
    pieces: &mut Vec<Piece>,
) -> u32 {
    let mut traps = 0;
    search(events, 0..events.len(), call, pieces, &mut traps);
    traps
}

fn search(
    all: &Events,
    range: Range<usize>,
    call: &mut dyn FnMut(&Events) -> Result<Output, Trapped>,
    pieces: &mut Vec<Piece>,
    traps: &mut u32,
) {
    let result = if range.len() == all.len() {
        call(all)
    } else {
        call(&all.slice(range.clone()))
    };
    let trapped = match result {
        Err(t) if t.kind != TrapKind::WrongOutcomeCount => t,
        result => {
            pieces.push(Piece { range, result });
            return;
        }
    };
    *traps += 1;
    if range.len() == 1 || trapped.kind == TrapKind::InitFailed || *traps >= MAX_TRAPS_PER_BATCH {
        // A single event that trapped alone is isolated; any other range failing here is not.
        let isolated = range.len() == 1;
        pieces.push(Piece {
            result: Err(not_isolated(trapped, isolated, *traps)),
            range,
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
            "{} (not isolated: the batch trapped {traps} times)",
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
        let traps = isolate(&events, &mut poisoned, &mut pieces);
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
        let traps = isolate(&events, &mut poisoned, &mut pieces);
        assert_eq!(traps, MAX_TRAPS_PER_BATCH);
        let covered: usize = pieces.iter().map(|p| p.range.len()).sum();
        assert_eq!(covered, 256);
        let last = pieces.last().unwrap();
        let message = &last.result.as_ref().err().unwrap().message;
        assert!(message.contains("not isolated"), "{message}");
    }

    #[test]
    fn a_wrong_count_fails_the_call_without_a_search() {
        let events = batch(&["a", "b"]);
        let mut calls = 0;
        let mut wrong = |_: &Events| {
            calls += 1;
            Err(Trapped {
                kind: TrapKind::WrongOutcomeCount,
                message: "1 outcome for 2 events".into(),
            })
        };
        let mut pieces = Vec::new();
        assert_eq!(isolate(&events, &mut wrong, &mut pieces), 0);
        assert_eq!(calls, 1);
        assert_eq!(pieces.len(), 1);
    }
}
