//! The progress line of `weir run` on a terminal: bytes read of the total, events per second,
//! failures and the time left, for pipelines whose sources all have an end (files and
//! generators). It reads the sources' positions and the nodes' counters a few times a
//! second, off the data path, and clears itself when the run ends. `weir run` shows it only
//! when stderr is a terminal and `--quiet` is not given.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::Observer;
use crate::pipeline::report::NodeKind;

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(200);

/// A progress line being drawn; [`Progress::finish`] clears it.
pub struct Progress {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// What one tick reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub position: u64,
    pub size: u64,
    pub events: u64,
    pub failed: u64,
}

/// Reads the sources' positions and every node's failures.
fn read(observer: &Observer) -> Reading {
    let mut r = Reading {
        position: 0,
        size: 0,
        events: 0,
        failed: 0,
    };
    for node in observer.nodes() {
        if node.kind == NodeKind::Source {
            r.position += node.position.load(Ordering::Relaxed);
            r.size += node.size.load(Ordering::Relaxed);
            r.events += node.events_out.load(Ordering::Relaxed);
        }
        r.failed += node.snapshot().failed;
    }
    r
}

/// The text after the bar: the rate and the failures.
pub fn message(rate: f64, failed: u64) -> String {
    format!("{rate:.0} events/s, {failed} failed")
}

/// Starts drawing on stderr.
pub fn start(observer: &Arc<Observer>) -> Progress {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "weir: {binary_bytes}/{binary_total_bytes} read [{wide_bar}] {msg}, ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    let stop = CancellationToken::new();
    let observer = Arc::clone(observer);
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                () = stopped.cancelled() => break,
                _ = tick.tick() => {}
            }
            let r = read(&observer);
            let secs = started.elapsed().as_secs_f64();
            let rate = if secs > 0.0 {
                r.events as f64 / secs
            } else {
                0.0
            };
            bar.set_length(r.size);
            bar.set_position(r.position.min(r.size));
            bar.set_message(message(rate, r.failed));
        }
        bar.finish_and_clear();
    });
    Progress { stop, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_gives_the_rate_and_the_failures() {
        assert_eq!(message(1234.4, 3), "1234 events/s, 3 failed");
    }
}
