//! The contract's check of an output's outcomes: its counts and failures against the inputs.

/// Checks the outcomes of a call with `inputs` events that returned `outputs` events: one
/// count per input (or none, meaning one output each and no failures), counts that add up to
/// the outputs, and failures (their input indices, as given) in increasing order, in range,
/// each with a count of 0. Work in the inputs and failures, bounded by the batch sent.
pub fn check_outcomes(
    inputs: usize,
    outputs: usize,
    counts: &[u32],
    failures: impl ExactSizeIterator<Item = u32>,
) -> Result<(), String> {
    if counts.is_empty() {
        if outputs != inputs || failures.len() != 0 {
            return Err(format!(
                "no counts (one output per input) but {outputs} outputs and {} failures for {inputs} inputs",
                failures.len()
            ));
        }
        return Ok(());
    }
    if counts.len() != inputs {
        return Err(format!("{} counts for {inputs} input events", counts.len()));
    }
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    if total != outputs as u64 {
        return Err(format!(
            "the counts add up to {total} but there are {outputs} output events"
        ));
    }
    let mut previous: Option<u32> = None;
    for i in failures {
        if previous.is_some_and(|p| p >= i) || i as usize >= inputs {
            return Err(format!(
                "failure index {i} is out of order or not below {inputs}"
            ));
        }
        if counts[i as usize] != 0 {
            return Err(format!(
                "input {i} failed but has {} outputs",
                counts[i as usize]
            ));
        }
        previous = Some(i);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_outcomes;

    fn check(
        inputs: usize,
        outputs: usize,
        counts: &[u32],
        failures: &[u32],
    ) -> Result<(), String> {
        check_outcomes(inputs, outputs, counts, failures.iter().copied())
    }

    #[test]
    fn empty_counts_mean_one_output_per_input() {
        check(2, 2, &[], &[]).unwrap();
        assert!(check(3, 2, &[], &[]).unwrap_err().contains("no counts"));
        assert!(check(1, 1, &[], &[0]).unwrap_err().contains("1 failures"));
    }

    #[test]
    fn breaches_are_named() {
        check(4, 3, &[2, 0, 0, 1], &[2]).unwrap();
        // (inputs, outputs, counts, failures, what the refusal says)
        type Case = (usize, usize, &'static [u32], &'static [u32], &'static str);
        let cases: [Case; 5] = [
            (1, 1, &[1, 0], &[], "2 counts for 1"),
            (1, 1, &[2], &[], "add up to 2"),
            (2, 1, &[1, 0], &[0], "input 0 failed but has 1 outputs"),
            (2, 0, &[0, 0], &[1, 0], "out of order"),
            (1, 0, &[0], &[1], "not below 1"),
        ];
        for (inputs, outputs, counts, failures, expected) in cases {
            let err = check(inputs, outputs, counts, failures).unwrap_err();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
    }
}
