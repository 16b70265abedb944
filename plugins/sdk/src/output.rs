//! [`Output`]: what a call returns, as the contract's `output` record, and its reading back
//! into owned [`Outcome`]s for tests.
//!
//! The output events are one packed [`Batch`]: those of input 0, then those of input 1, and
//! so on. `counts` says how many consecutive outputs each input became, and is left empty
//! when every input became exactly one output and none failed, which is the common case and
//! costs nothing. `failures` names the inputs that failed, by increasing index. The SDK builds
//! outputs through [`Outputs`](crate::Outputs); [`Output::check`] is the host's check (the
//! same `weir-wire` code), here so that native tests prove an output would be accepted.

use crate::{Batch, Event, Failure, Outcome};

/// What a call made of its input batch, as the contract's `output` record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// The output events, in input order.
    pub events: Batch,
    /// One entry per input: how many consecutive outputs it became (0 for a filtered or failed
    /// input); empty when every input became exactly one output and none failed.
    pub counts: Vec<u32>,
    /// The inputs that failed, by increasing index.
    pub failures: Vec<FailedEvent>,
}

/// An input event that failed, by its index in the input batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedEvent {
    pub index: u32,
    pub failure: Failure,
}

impl Output {
    /// The number of outcomes the output describes: one per count, or one per output event
    /// when there are no counts.
    pub fn outcome_count(&self) -> usize {
        if self.counts.is_empty() {
            self.events.len()
        } else {
            self.counts.len()
        }
    }

    /// Checks the output of a call with `inputs` events as the host does: a well-formed batch,
    /// one count per input (or none, meaning one output each and no failures), counts that add
    /// up to the outputs, failures in increasing order, in range, each with a count of 0.
    pub fn check(&self, inputs: usize) -> Result<(), String> {
        self.events.check()?;
        weir_wire::check_outcomes(
            inputs,
            self.events.len(),
            &self.counts,
            self.failures.iter().map(|f| f.index),
        )
    }

    /// Reads the output back as one owned [`Outcome`] per outcome it describes (see
    /// [`Output::outcome_count`]). Expects a well-formed batch and counts that add up; a
    /// failure's outputs are ignored.
    pub fn outcomes(&self) -> Vec<Outcome> {
        let mut failures = self.failures.iter().peekable();
        let mut next = 0usize;
        (0..self.outcome_count())
            .map(|i| {
                let count = self.counts.get(i).map_or(1, |&c| c as usize);
                let range = next..next + count;
                next += count;
                if let Some(failed) = failures.next_if(|f| f.index as usize == i) {
                    return Err(failed.failure.clone());
                }
                Ok(range
                    .filter_map(|o| self.events.get(o))
                    .map(|e| e.to_owned())
                    .collect::<Vec<Event>>())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(values: &[&str], counts: &[u32], failures: &[(u32, Failure)]) -> Output {
        let events: Vec<Event> = values.iter().map(|v| Event::new(*v)).collect();
        Output {
            events: Batch::from_events(&events),
            counts: counts.to_vec(),
            failures: failures
                .iter()
                .map(|(index, failure)| FailedEvent {
                    index: *index,
                    failure: failure.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn empty_counts_mean_one_output_per_input() {
        let out = output(&["a", "b"], &[], &[]);
        out.check(2).unwrap();
        assert!(out.check(3).unwrap_err().contains("no counts"));
        assert_eq!(
            out.outcomes(),
            vec![Ok(vec![Event::new("a")]), Ok(vec![Event::new("b")])]
        );
    }

    #[test]
    fn counts_spread_outputs_over_inputs_and_failures_take_none() {
        let retry = Failure::retry("later");
        let out = output(&["a1", "a2", "c"], &[2, 0, 0, 1], &[(2, retry.clone())]);
        out.check(4).unwrap();
        assert_eq!(
            out.outcomes(),
            vec![
                Ok(vec![Event::new("a1"), Event::new("a2")]),
                Ok(vec![]),
                Err(retry),
                Ok(vec![Event::new("c")]),
            ]
        );
    }

    #[test]
    fn breaches_are_named() {
        let reject = Failure::reject("bad");
        let cases = [
            (output(&["a"], &[1, 0], &[]), 1, "2 counts for 1"),
            (output(&["a"], &[2], &[]), 1, "add up to 2"),
            (
                output(&["a"], &[1, 0], &[(0, reject.clone())]),
                2,
                "input 0 failed but has 1 outputs",
            ),
            (
                output(&[], &[0, 0], &[(1, reject.clone()), (0, reject.clone())]),
                2,
                "out of order",
            ),
            (output(&[], &[0], &[(1, reject)]), 1, "not below 1"),
        ];
        for (out, inputs, expected) in cases {
            let err = out.check(inputs).unwrap_err();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
    }
}
