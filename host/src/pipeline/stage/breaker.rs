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
    /// The last `window` events, oldest first, as runs of (failed, how many): a batch adds at
    /// most two runs, so recording it costs the same whatever its number of events.
    recent: VecDeque<(bool, usize)>,
    /// Events in `recent`, and how many of them failed.
    len: usize,
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
            recent: VecDeque::new(),
            len: 0,
            failed: 0,
            open_until: None,
            trial: false,
            generation: 0,
        }
    }

    /// Whether batches fail at once without a call, at `now`.
    pub(crate) fn is_open(&self, now: Instant) -> bool {
        self.open_until.is_some_and(|until| now < until)
    }

    /// `None` when a batch of `generation` may go to the plugin; otherwise why it may not.
    pub(crate) fn admit(&mut self, generation: u64, now: Instant) -> Option<String> {
        if generation != self.generation {
            self.generation = generation;
            self.clear();
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
            self.len,
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
                self.clear();
                tracing::info!("circuit breaker closed after a healthy trial batch");
            } else {
                self.open_until = Some(now + self.config.cooldown);
            }
            return None;
        }
        // A batch's failed events are counted first: the window keeps its last `window`.
        self.push(true, failed.min(processed));
        self.push(false, processed.saturating_sub(failed));
        let full = self.len == self.config.window;
        if self.open_until.is_none()
            && full
            && self.failed as f64 >= self.config.threshold * self.config.window as f64
        {
            self.open_until = Some(now + self.config.cooldown);
            return Some(format!(
                "circuit breaker tripped: {} of the last {} events failed (last: {})",
                self.failed,
                self.len,
                last.unwrap_or("none")
            ));
        }
        None
    }

    fn clear(&mut self) {
        self.recent.clear();
        self.len = 0;
        self.failed = 0;
    }

    /// Appends `n` events that failed (or not), then drops the oldest past the window.
    fn push(&mut self, bad: bool, n: usize) {
        if n == 0 {
            return;
        }
        match self.recent.back_mut() {
            Some((b, count)) if *b == bad => *count += n,
            _ => self.recent.push_back((bad, n)),
        }
        self.len += n;
        self.failed += if bad { n } else { 0 };
        while self.len > self.config.window {
            let Some((b, count)) = self.recent.front_mut() else {
                break;
            };
            let drop = (*count).min(self.len - self.config.window);
            *count -= drop;
            self.len -= drop;
            self.failed -= if *b { drop } else { 0 };
            if *count == 0 {
                self.recent.pop_front();
            }
        }
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

    /// The runs hold exactly what one entry per event held: the last `window` events.
    #[test]
    fn the_window_keeps_the_last_events_whatever_the_batch_sizes() {
        let mut b = breaker(100);
        let mut model: VecDeque<bool> = VecDeque::new();
        let t0 = Instant::now();
        let mut x = 7u64;
        for _ in 0..2_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let processed = (x >> 33) as usize % 300;
            let failed = (x >> 13) as usize % (processed + 2);
            b.record(0, failed, processed, None, t0);
            for i in 0..processed {
                model.push_back(i < failed);
                if model.len() > 100 {
                    model.pop_front();
                }
            }
            assert_eq!(b.len, model.len());
            assert_eq!(b.failed, model.iter().filter(|&&f| f).count());
        }
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
