//! A stage's circuit breaker: the failures among the last `window` events sent to its plugin
//! decide whether the next batch is sent at all.
//!
//! Once the window is full and the failed fraction reaches the threshold, the breaker trips
//! and stays open for the cooldown: batches fail at once as `breaker-open` without a call.
//! After the cooldown the next batch is a trial: a healthy one closes the breaker on a clean
//! window, a failing one reopens it. A new version starts with a clean window: the failures of
//! one version say nothing of the next. The verdicts are pure functions of the recorded
//! counts and the clock, tested below.

use std::collections::VecDeque;
use std::time::Instant;

use crate::config;

pub(crate) struct Breaker {
    config: config::Breaker,
    /// One entry per recent event: whether it failed.
    recent: VecDeque<bool>,
    failed: usize,
    open_until: Option<Instant>,
    trial: bool,
    /// The stage generation the window describes.
    generation: u64,
}

impl Breaker {
    pub(crate) fn new(config: config::Breaker) -> Breaker {
        Breaker {
            config,
            recent: VecDeque::with_capacity(config.window),
            failed: 0,
            open_until: None,
            trial: false,
            generation: 0,
        }
    }

    /// `None` when a batch of `generation` may go to the plugin; otherwise why it may not.
    pub(crate) fn admit(&mut self, generation: u64, now: Instant) -> Option<String> {
        if generation != self.generation {
            self.generation = generation;
            self.recent.clear();
            self.failed = 0;
            self.open_until = None;
            self.trial = false;
        }
        let until = self.open_until?;
        if now >= until {
            self.open_until = None;
            self.trial = true;
            return None;
        }
        Some(format!(
            "the circuit breaker is open: {} of the last {} events failed; the plugin is tried again in {:.1}s",
            self.failed,
            self.recent.len(),
            (until - now).as_secs_f64()
        ))
    }

    /// Records a batch's results (of `generation`); returns a description when this batch
    /// trips the breaker.
    pub(crate) fn record(
        &mut self,
        generation: u64,
        failed: usize,
        processed: usize,
        last: Option<&str>,
        now: Instant,
    ) -> Option<String> {
        if generation != self.generation {
            // A batch of an older version (a retry finishing there): not this window's business.
            return None;
        }
        if std::mem::take(&mut self.trial) {
            if processed > 0 && (failed as f64) < self.config.threshold * processed as f64 {
                self.recent.clear();
                self.failed = 0;
                tracing::info!("circuit breaker closed after a healthy trial batch");
            } else {
                self.open_until = Some(now + self.config.cooldown);
            }
            return None;
        }
        for i in 0..processed {
            let bad = i < failed;
            if self.recent.len() == self.config.window && self.recent.pop_front() == Some(true) {
                self.failed -= 1;
            }
            self.recent.push_back(bad);
            self.failed += usize::from(bad);
        }
        let full = self.recent.len() == self.config.window;
        if self.open_until.is_none()
            && full
            && self.failed as f64 >= self.config.threshold * self.config.window as f64
        {
            self.open_until = Some(now + self.config.cooldown);
            return Some(format!(
                "circuit breaker tripped: {} of the last {} events failed (last: {})",
                self.failed,
                self.recent.len(),
                last.unwrap_or("none")
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn breaker(window: usize) -> Breaker {
        Breaker::new(config::Breaker {
            window,
            threshold: 0.5,
            cooldown: Duration::from_secs(30),
        })
    }

    #[test]
    fn the_breaker_trips_once_the_window_is_full_of_failures_and_closes_after_a_good_trial() {
        let mut b = breaker(10);
        let t0 = Instant::now();
        assert!(
            b.record(0, 4, 8, None, t0).is_none(),
            "the window is not full yet"
        );
        assert!(b.admit(0, t0).is_none());
        let tripped = b
            .record(0, 2, 2, Some("panic: boom"), t0)
            .expect("6 of 10 failed");
        assert!(
            tripped.contains("6 of the last 10") && tripped.contains("panic: boom"),
            "{tripped}"
        );
        assert!(
            b.admit(0, t0 + Duration::from_secs(29)).is_some(),
            "open during the cooldown"
        );
        let later = t0 + Duration::from_secs(31);
        assert!(
            b.admit(0, later).is_none(),
            "a trial batch after the cooldown"
        );
        assert!(b.record(0, 0, 5, None, later).is_none());
        assert!(b.admit(0, later).is_none(), "closed after a good trial");
        assert!(
            b.record(0, 5, 5, None, later).is_none(),
            "a clean window must fill again before tripping"
        );
    }

    #[test]
    fn a_failing_trial_reopens_the_breaker() {
        let mut b = breaker(4);
        let t0 = Instant::now();
        assert!(b.record(0, 4, 4, None, t0).is_some());
        let later = t0 + Duration::from_secs(31);
        assert!(b.admit(0, later).is_none());
        assert!(b.record(0, 3, 3, None, later).is_none());
        assert!(b.admit(0, later).is_some(), "reopened");
    }

    #[test]
    fn a_new_version_starts_with_a_closed_breaker() {
        let mut b = breaker(4);
        let t0 = Instant::now();
        assert!(b.record(0, 4, 4, None, t0).is_some());
        assert!(b.admit(0, t0).is_some());
        assert!(b.admit(1, t0).is_none(), "generation 1 starts clean");
        assert!(
            b.record(0, 4, 4, None, t0).is_none(),
            "old generation ignored"
        );
    }
}
