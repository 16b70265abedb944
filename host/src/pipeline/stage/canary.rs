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

use crate::config::Canary;
use crate::pipeline::stage::version::GenerationCounts;

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
