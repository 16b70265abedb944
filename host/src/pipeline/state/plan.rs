//! Which state deltas a commit round may write, and which source positions go with them: a
//! pure function of the tags of each stage's delta log and of each source's finished prefix,
//! so that what is persisted is exactly the effect of the events up to those positions.
//!
//! A delta is tagged with the source batch its call ran on (`(source, seq)`), or untagged for a
//! source without positions. A stage's log can only be flushed as a prefix (a later delta's
//! values include the earlier ones'), and only over deltas whose batches are within their
//! source's finished prefix. When a delta of source `s` within that prefix must stay behind
//! (it sits after another source's unfinished one), `s`'s position is lowered below it, which
//! can shorten other prefixes in turn; the rounds of lowering end, since each only lowers.

use std::collections::HashMap;

/// A source, by its ledger's identity, and a batch's sequence number in it.
pub type Tag = (usize, u64);

/// The plan of one round: how many deltas of each log to flush, and through which batch each
/// source's position goes (`None`: no batch of this run; the position stays where it was).
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub prefixes: Vec<usize>,
    pub through: HashMap<usize, Option<u64>>,
}

/// `logs`: each stage's delta tags, oldest first. `done`: each source's last batch of its
/// finished prefix (`None` when none of this run is finished).
pub fn plan(logs: &[Vec<Option<Tag>>], done: &HashMap<usize, Option<u64>>) -> Plan {
    let mut through = done.clone();
    let within = |through: &HashMap<usize, Option<u64>>, tag: &Option<Tag>| match tag {
        None => true,
        Some((source, seq)) => through
            .get(source)
            .copied()
            .flatten()
            .is_some_and(|b| *seq <= b),
    };
    loop {
        let prefixes: Vec<usize> = logs
            .iter()
            .map(|log| log.iter().take_while(|t| within(&through, t)).count())
            .collect();
        let mut lowered = false;
        for (log, &p) in logs.iter().zip(&prefixes) {
            for tag in &log[p..] {
                if let Some((source, seq)) = tag
                    && within(&through, tag)
                {
                    through.insert(*source, seq.checked_sub(1));
                    lowered = true;
                }
            }
        }
        if !lowered {
            return Plan { prefixes, through };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(pairs: &[(usize, Option<u64>)]) -> HashMap<usize, Option<u64>> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn one_source_flushes_the_log_up_to_its_finished_prefix() {
        let logs = vec![vec![Some((1, 0)), Some((1, 1)), Some((1, 2)), Some((1, 3))]];
        let p = plan(&logs, &done(&[(1, Some(1))]));
        assert_eq!(p.prefixes, vec![2]);
        assert_eq!(p.through[&1], Some(1));
    }

    #[test]
    fn a_retried_batch_late_in_the_log_is_flushed_with_the_rest() {
        // Batch 1's retry ran after batch 3.
        let logs = vec![vec![Some((1, 0)), Some((1, 2)), Some((1, 3)), Some((1, 1))]];
        let p = plan(&logs, &done(&[(1, Some(3))]));
        assert_eq!(p.prefixes, vec![4]);
        assert_eq!(p.through[&1], Some(3));
    }

    #[test]
    fn a_finished_batch_behind_another_source_s_unfinished_one_lowers_its_position() {
        // Source 1's batch 5 is done but sits behind source 2's batch 0, which is not.
        let logs = vec![vec![Some((1, 4)), Some((2, 0)), Some((1, 5))]];
        let p = plan(&logs, &done(&[(1, Some(5)), (2, None)]));
        assert_eq!(p.prefixes, vec![1]);
        assert_eq!(p.through[&1], Some(4));
        assert_eq!(p.through[&2], None);
    }

    #[test]
    fn lowering_in_one_stage_shortens_another_stage_s_prefix() {
        let logs = vec![
            vec![Some((2, 0)), Some((1, 7))],
            vec![Some((1, 6)), Some((1, 7)), Some((1, 8))],
        ];
        let p = plan(&logs, &done(&[(1, Some(8)), (2, None)]));
        // Stage 0 cannot pass source 2's batch: source 1 stops before 7 everywhere.
        assert_eq!(p.prefixes, vec![0, 1]);
        assert_eq!(p.through[&1], Some(6));
    }

    #[test]
    fn untagged_deltas_flush_at_once() {
        let logs = vec![vec![None, None, Some((1, 0)), None]];
        let p = plan(&logs, &done(&[(1, None)]));
        assert_eq!(p.prefixes, vec![2]);
    }
}
