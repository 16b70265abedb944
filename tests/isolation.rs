//! Isolation between the branches of one pipeline: a plugin that traps on every call, in a
//! branch of its own with `on_error = "drop"` and a circuit breaker, must not slow the healthy
//! branch fed by the same source. This is a timing test, so it lives in a test binary of its
//! own: cargo runs test binaries one after another, so no other test's CPU load overlaps it.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use support::{Dir, plugin, weir};

/// Held by every timing measurement in this binary, so that should another test be added
/// here, two measurements still never share the cores.
static TIMING: Mutex<()> = Mutex::new(());

/// Events the source generates: enough that a run takes a few tenths of a second, so that
/// start-up noise is small against it.
const EVENTS: u64 = 500_000;

/// Runs of each pipeline; the best of each is compared, which discards runs slowed by
/// whatever else the machine was doing.
const RUNS: usize = 5;

/// The healthy branch must keep at least this share of its throughput alone.
const KEPT: f64 = 0.8;

fn pipeline(dir: &Dir, name: &str, with_hostile: bool) -> Result<PathBuf> {
    let mut text = format!(
        r#"
[sources.gen]
type = "generate"
count = {EVENTS}
size = 100

[stages.healthy]
inputs = ["gen"]
plugin = "{pass}"

[sinks.healthy_out]
inputs = ["healthy"]
type = "null"
"#,
        pass = plugin("passthrough").display()
    );
    if with_hostile {
        text.push_str(&format!(
            r#"
[stages.hostile]
inputs = ["gen"]
plugin = "{trap}"
on_error = "drop"
breaker = {{ window = 100, threshold = 0.5, cooldown = "5s" }}

[sinks.hostile_out]
inputs = ["hostile"]
type = "null"
"#,
            trap = plugin("fixture-evil-trap-every").display()
        ));
    }
    dir.write(name, &text)
}

/// Runs a pipeline and returns the seconds its summary line reports (the run itself, without
/// process start-up and plugin compilation), checking that the healthy branch got every event.
fn seconds(pipeline: &Path) -> Result<f64> {
    let out = weir().arg("run").arg(pipeline).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("weir: "))
        .context("no summary line")?;
    assert!(
        summary.contains(&format!("healthy: {EVENTS} -> {EVENTS}")),
        "{summary}"
    );
    let start = summary.find("dead-lettered in ").context("no time")? + "dead-lettered in ".len();
    let end = start + summary[start..].find("s (").context("no time")?;
    Ok(summary[start..end].parse()?)
}

#[test]
fn a_hostile_branch_keeps_the_healthy_branch_at_four_fifths_of_its_throughput_alone() -> Result<()>
{
    let _cores = TIMING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Dir::new()?;
    let alone = pipeline(&dir, "alone.toml", false)?;
    let beside = pipeline(&dir, "beside.toml", true)?;
    // Alternate the two, so that a slow spell of the machine hits both alike.
    let mut best_alone = f64::INFINITY;
    let mut best_beside = f64::INFINITY;
    for _ in 0..RUNS {
        best_alone = best_alone.min(seconds(&alone)?);
        best_beside = best_beside.min(seconds(&beside)?);
    }
    let kept = best_alone / best_beside;
    assert!(
        kept >= KEPT,
        "with a hostile branch beside it the healthy branch kept {:.0} % of its throughput \
         ({best_beside:.3} s against {best_alone:.3} s alone); at least {:.0} % is required",
        kept * 100.0,
        KEPT * 100.0
    );
    Ok(())
}
