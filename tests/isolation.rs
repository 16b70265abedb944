//! Isolation between the branches of one pipeline: a plugin that spends its whole deadline on
//! every call, in a branch of its own with a circuit breaker, beside a healthy branch fed by
//! the same source. The claims are facts that hold on any machine, however fast or busy: the
//! healthy branch gets every event, in order; the hostile branch's plugin is called no more
//! than its breaker allows over the run's duration.

mod support;

use std::time::{Duration, Instant};

use anyhow::Result;
use support::{Dir, PipelineFile, Sink, Source, Stage, assert_same_lines, plugin, read_lines};
use weir::pipeline::stage::MAX_TRAPS_PER_BATCH;

/// The hostile stage's deadline per call, and its breaker's cooldown.
const TIMEOUT: Duration = Duration::from_millis(20);
const COOLDOWN: Duration = Duration::from_millis(200);

/// Events the source reads, in batches of 256.
const EVENTS: usize = 20_000;

/// The hostile plugin is called for the batch that trips its breaker (256 failures fill the
/// window of 100), then for at most one trial batch per cooldown while the run lasts; each
/// batch costs at most `MAX_TRAPS_PER_BATCH` traps, and every call of this plugin traps.
#[test]
fn a_hostile_branch_costs_no_more_than_its_breaker_allows_and_the_healthy_one_gets_everything()
-> Result<()> {
    let dir = Dir::new()?;
    let lines: Vec<String> = (0..EVENTS).map(|i| format!("event {i}")).collect();
    dir.write_lines("in.txt", &lines)?;
    let file = PipelineFile::new()
        .source("in", Source::file("in.txt"))
        .stage(
            "healthy",
            Stage::plugin(plugin("passthrough")).inputs(&["in"]),
        )
        .sink(
            "healthy_out",
            Sink::file("healthy.txt").inputs(&["healthy"]),
        )
        .stage(
            "hostile",
            Stage::plugin(plugin("fixture-evil-loop-every"))
                .inputs(&["in"])
                .timeout(&format!("{}ms", TIMEOUT.as_millis()))
                .unlimited_fuel()
                .on_error("drop")
                .breaker(100, 0.5, &format!("{}ms", COOLDOWN.as_millis())),
        )
        .sink("hostile_out", Sink::null().inputs(&["hostile"]))
        .write(&dir)?;
    let started = Instant::now();
    let ran = dir.run(&file)?;
    // Measured from outside, so at least as long as the run the breaker's clock saw.
    let lasted = started.elapsed();
    let report = ran.report();

    assert_same_lines(&read_lines(&dir.path("healthy.txt"))?, &lines);
    let healthy = report.node("healthy");
    assert_eq!((healthy.events_out, healthy.failed), (EVENTS as u64, 0));

    let hostile = report.node("hostile");
    assert_eq!((hostile.events_out, hostile.failed), (0, EVENTS as u64));
    assert_eq!(
        hostile.calls, hostile.traps,
        "every call of this plugin traps"
    );
    let trials = lasted.as_secs_f64() / COOLDOWN.as_secs_f64();
    let batches = 1 + trials.ceil() as u64;
    let allowed = u64::from(MAX_TRAPS_PER_BATCH) * batches;
    eprintln!(
        "{} traps in {lasted:?}; {allowed} allowed; failures {:?}",
        hostile.traps, hostile.failures
    );
    assert!(
        hostile.traps <= allowed,
        "the hostile plugin trapped {} times in {lasted:?}; its breaker allows {allowed} \
         ({batches} batches of at most {MAX_TRAPS_PER_BATCH} traps)",
        hostile.traps
    );
    assert!(
        hostile.failures_of("deadline") <= 256 * batches,
        "{:?}",
        hostile.failures
    );
    assert_eq!(
        hostile.failures_of("deadline") + hostile.failures_of("breaker-open"),
        EVENTS as u64
    );
    assert!(
        hostile.failures_of("breaker-open") > 0,
        "the breaker never opened"
    );
    Ok(())
}
