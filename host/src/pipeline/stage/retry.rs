//! Retries: events that asked for another attempt wait out a backoff, then go back to the
//! stage that asked, on the version that started them.
//!
//! The delay doubles per attempt from [`RETRY_BASE`] up to [`RETRY_MAX`], with ±50 % jitter so
//! that many events retried at once do not hit a struggling dependency in lockstep. A waiting
//! retry is a timer on the runtime, not a thread; the chain bounds how many may wait
//! ([`MAX_WAITING_RETRIES`]) by taking no new input while that many are out.

use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::batch::Batch;
use crate::pipeline::stage::version::StageVersion;

/// First retry delay; doubles per attempt.
const RETRY_BASE: Duration = Duration::from_millis(10);
/// Longest delay between two retries of an event.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Retry batches a chain's workers may have waiting, per worker. Each holds events (and their
/// source batch open) for up to a second: without a bound, a plugin that asks every event for
/// a retry would make the host hold everything a fast source reads meanwhile.
pub const MAX_WAITING_RETRIES: usize = 4;

/// A batch of events going back to a stage of a chain.
pub(crate) struct RetryJob {
    /// The worker that scheduled it: in a chain routed by key, the one that owns its keys.
    pub worker: usize,
    /// The stage's position in its chain.
    pub stage: usize,
    pub batch: Batch,
    pub attempt: u32,
    pub version: Arc<StageVersion>,
}

/// The delay before attempt `attempt` (1 for the first retry): exponential, with jitter.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = RETRY_BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(RETRY_MAX);
    base.mul_f64(0.5 + fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_within_its_jitter_and_stops_at_the_cap() {
        for attempt in 1..=3u32 {
            let nominal = RETRY_BASE * (1 << (attempt - 1));
            let d = backoff(attempt);
            assert!(d >= nominal / 2 && d <= nominal * 3 / 2, "{attempt}: {d:?}");
        }
        assert!(backoff(30) <= RETRY_MAX * 3 / 2);
    }
}
