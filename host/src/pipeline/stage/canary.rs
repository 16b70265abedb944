//! The canary guard's verdict: a pure function of a new version's counts and the stage's
//! `canary` settings. The control plane acts on it (a rollback); the data plane uses it too,
//! to stop feeding a version already condemned while the rollback is on its way.
//!
//! Over its first `events` events, a version that fails more than `max_failure_rate` of them
//! is rolled back. Every failure counts, whatever its kind: a version whose failures trip the
//! circuit breaker keeps failing its events as `breaker-open`, and those count too, so a
//! version that fails everything is rolled back within its first `events` whether or not the
//! breaker is open. Once the failures alone pass the allowed number the verdict cannot
//! change, so the guard does not wait for the rest.
//!
//! The counts it judges, [`GenerationCounts`], live here too: a version's workers keep them
//! (in `version`), and both the guard and the control plane read them.

use std::time::Instant;

use crate::config::Canary;

/// Batches, events and failures of one generation, as its workers report them.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenerationCounts {
    pub generation: u64,
    pub batches: u64,
    pub events: u64,
    /// Events that failed (dead-lettered or dropped by policy), breaker-open ones included.
    pub failed: u64,
    /// When the first batch of this generation finished: the moment it was serving.
    pub first_batch: Option<Instant>,
    /// Events of every generation so far: the stage's throughput across swaps.
    pub total_events: u64,
    /// Whether the canary guards this generation (a swap, not a rollback, with a guard on).
    pub guarded: bool,
}

/// What the guard makes of a version so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Watching,
    Passed,
    RollBack,
}

pub fn judge(counts: &GenerationCounts, canary: &Canary) -> Verdict {
    let allowed = canary.events as f64 * canary.max_failure_rate;
    let over = counts.failed as f64 > allowed
        || (counts.events >= canary.events
            && counts.failed as f64 > counts.events as f64 * canary.max_failure_rate);
    if over {
        Verdict::RollBack
    } else if counts.events >= canary.events {
        Verdict::Passed
    } else {
        Verdict::Watching
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(events: u64, failed: u64) -> GenerationCounts {
        GenerationCounts {
            events,
            failed,
            ..GenerationCounts::default()
        }
    }

    const CANARY: Canary = Canary {
        events: 1000,
        max_failure_rate: 0.5,
    };

    #[test]
    fn a_version_is_judged_over_its_first_events() {
        assert_eq!(judge(&counts(256, 0), &CANARY), Verdict::Watching);
        assert_eq!(judge(&counts(1024, 100), &CANARY), Verdict::Passed);
        assert_eq!(judge(&counts(1024, 600), &CANARY), Verdict::RollBack);
    }

    #[test]
    fn failures_past_the_allowed_count_decide_at_once() {
        assert_eq!(judge(&counts(512, 501), &CANARY), Verdict::RollBack);
        assert_eq!(judge(&counts(512, 500), &CANARY), Verdict::Watching);
    }
}
