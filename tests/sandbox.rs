//! The evil-plugin suite: hostile plugins, built from source like every fixture, run through
//! the real `weir` binary. For each one the host must stay up with the exit status the sandbox
//! promises, deliver the good events in order, dead-letter the poison event with the right
//! kind, cost exactly the traps the docs promise, and keep its resident memory near the limit
//! that stops the plugin.

mod support;

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use support::{
    DeadLetter, Dir, NodeReport, PATIENCE, PipelineFile, Ran, Report, Running, Sink, Source, Stage,
    Stdin, assert_same_lines, dead_letters, events_with, plugin, read_lines, wait_until,
};
use weir::pipeline::stage::MAX_TRAPS_PER_BATCH;

/// Peak resident memory of a `weir` run besides what its plugins' instances take: the binary,
/// the engine, the runtime's threads and a few small instances (13 to 17 MiB when measured),
/// with room to spare.
const HOST_BASELINE_MIB: u64 = 40;

/// The traps that isolate one poison event in a full batch of 256: one per halving.
const TRAPS_FOR_ONE_IN_256: u64 = 9;

/// One run of a pipeline `file source -> hostile stage -> file sink`, with dead letters in a
/// file. The stage is called `hostile`.
struct Case {
    stage: Stage,
    lines: Vec<String>,
    batch_size: Option<i64>,
    /// Arguments before `run`, such as `--log-format json`.
    args: Vec<&'static str>,
    env: Vec<(&'static str, &'static str)>,
}

/// What a [`Case`] left behind.
struct Hostile {
    ran: Ran,
    out: Vec<String>,
    letters: Vec<DeadLetter>,
}

impl Case {
    fn new(plugin_name: &str, lines: Vec<String>) -> Case {
        Case {
            stage: Stage::plugin(plugin(plugin_name)),
            lines,
            batch_size: None,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Sets keys of the hostile stage.
    fn with(mut self, keys: impl FnOnce(Stage) -> Stage) -> Case {
        self.stage = keys(self.stage);
        self
    }

    fn batch_size(mut self, n: i64) -> Case {
        self.batch_size = Some(n);
        self
    }

    fn args(mut self, args: &[&'static str]) -> Case {
        self.args = args.to_vec();
        self
    }

    fn env(mut self, env: &[(&'static str, &'static str)]) -> Case {
        self.env = env.to_vec();
        self
    }

    fn pipeline(&self, dir: &Dir) -> Result<PathBuf> {
        dir.write_lines("in.txt", &self.lines)?;
        let mut file = PipelineFile::new();
        if let Some(n) = self.batch_size {
            file = file.batch_size(n);
        }
        file.source("in", Source::file("in.txt"))
            .stage("hostile", self.stage.clone().inputs(&["in"]))
            .sink("out", Sink::file("out.txt").inputs(&["hostile"]))
            .dead_letters("dead.jsonl")
            .write(dir)
    }

    fn run(&self) -> Result<Hostile> {
        self.run_in(&Dir::new()?, None)
    }

    /// Runs the case with its files in `dir`, from the working folder `cwd` if given.
    fn run_in(&self, dir: &Dir, cwd: Option<&Path>) -> Result<Hostile> {
        let pipeline = self.pipeline(dir)?;
        let mut cmd = dir.weir();
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        cmd.args(&self.args)
            .args(["run", "--report", "json"])
            .arg(&pipeline);
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        let ran = Running::start(cmd, Stdin::Null)?.finish(PATIENCE)?;
        Ok(Hostile {
            ran,
            out: read_lines(&dir.path("out.txt"))?,
            letters: dead_letters(&dir.path("dead.jsonl"))?,
        })
    }
}

impl Hostile {
    /// The report of a run that exited 0.
    fn report(&self) -> &Report {
        self.ran.report()
    }

    /// The hostile stage's counters.
    fn hostile(&self) -> &NodeReport {
        self.report().node("hostile")
    }

    /// Exactly `poison` was dead-lettered, with `kind`, and every other input line was written
    /// in input order.
    fn assert_only_dead(&self, lines: &[String], poison: &str, kind: &str) -> &DeadLetter {
        let expected: Vec<&String> = lines.iter().filter(|l| *l != poison).collect();
        assert_same_lines(&self.out, &expected);
        assert_eq!(self.letters.len(), 1, "{:#?}", self.letters);
        let letter = &self.letters[0];
        assert_eq!(letter.kind, kind, "{letter:?}");
        assert_eq!(letter.stage, "hostile");
        assert_eq!(letter.value(), poison);
        assert_eq!(letter.plugin_digest.len(), 64);
        assert_eq!(self.hostile().failures_of(kind), 1);
        assert_eq!(self.report().dead_lettered, 1);
        letter
    }

    /// The run's peak resident memory was at most `mib`.
    fn assert_rss_at_most(&self, mib: u64, why: &str) {
        let peak = self.ran.watched.peak_rss_mib();
        eprintln!("{peak} MiB resident at most; {mib} MiB allowed");
        assert!(
            peak <= mib,
            "weir held {peak} MiB resident; at most {mib} MiB allowed ({why})"
        );
    }
}

mod hostile_events {
    //! A plugin that misbehaves on one event costs that event only.

    use super::*;

    /// An endless loop meets the call's deadline: with fuel out of the way, the poison event
    /// is dead-lettered as `deadline` after one 100 ms deadline per halving of its batch.
    #[test]
    fn an_endless_loop_on_one_event_is_dead_lettered_at_its_deadline() -> Result<()> {
        let lines = events_with(1000, 613, "loop forever");
        let ran = Case::new("fixture-evil-loop-one", lines.clone())
            .with(|s| s.timeout("100ms").unlimited_fuel())
            .run()?;
        let letter = ran.assert_only_dead(&lines, "loop forever", "deadline");
        assert!(letter.message.contains("deadline"), "{letter:?}");
        assert_eq!(ran.hostile().traps, TRAPS_FOR_ONE_IN_256);
        Ok(())
    }

    /// With a far deadline and a small fuel budget, the same loop is stopped by fuel.
    #[test]
    fn an_endless_loop_on_one_event_runs_out_of_fuel_when_fuel_is_the_tighter_limit() -> Result<()>
    {
        let lines = events_with(1000, 3, "loop forever");
        let ran = Case::new("fixture-evil-loop-one", lines.clone())
            .with(|s| s.timeout("1m").fuel(1_000_000))
            .run()?;
        ran.assert_only_dead(&lines, "loop forever", "out-of-fuel");
        assert_eq!(ran.hostile().traps, TRAPS_FOR_ONE_IN_256);
        Ok(())
    }

    /// A plugin that loops on every call costs a batch exactly the documented budget of 20
    /// traps (`MAX_TRAPS_PER_BATCH`), not one per event: every event is dead-lettered as
    /// `deadline` and the run ends. The 40 lines are read at once, so they form one batch.
    #[test]
    fn an_endless_loop_on_every_call_costs_a_batch_exactly_its_trap_budget() -> Result<()> {
        let lines: Vec<String> = (0..40).map(|i| format!("event {i}")).collect();
        let ran = Case::new("fixture-evil-loop-every", lines.clone())
            .with(|s| s.timeout("50ms").unlimited_fuel())
            .run()?;
        let report = ran.report();
        assert!(ran.out.is_empty(), "{:?}", ran.out);
        assert_eq!(ran.letters.len(), lines.len());
        for (letter, line) in ran.letters.iter().zip(&lines) {
            assert_eq!(letter.kind, "deadline", "{letter:?}");
            assert_eq!(letter.value(), line);
        }
        let hostile = report.node("hostile");
        assert_eq!(hostile.traps, u64::from(MAX_TRAPS_PER_BATCH));
        assert_eq!(hostile.calls, u64::from(MAX_TRAPS_PER_BATCH));
        assert_eq!(hostile.failures_of("deadline"), 40);
        Ok(())
    }

    /// Once the trap budget is spent, the events not yet isolated are dead-lettered with a
    /// message that says so (docs/sandbox.md, "Poison isolation and its bound"); the events
    /// that were called alone are not. Halving 40 events spends the 20 traps calling events
    /// 0 to 8 alone: events 9 to 39 were never isolated.
    #[test]
    fn events_left_when_the_trap_budget_runs_out_are_marked_not_isolated() -> Result<()> {
        let lines: Vec<String> = (0..40).map(|i| format!("event {i}")).collect();
        let ran = Case::new("fixture-evil-loop-every", lines)
            .with(|s| s.timeout("50ms").unlimited_fuel())
            .run()?;
        ran.report();
        let marked: Vec<bool> = ran
            .letters
            .iter()
            .map(|l| {
                l.message
                    .contains("not isolated: the batch failed 20 times")
            })
            .collect();
        let expected: Vec<bool> = (0..40).map(|i| i >= 9).collect();
        assert_eq!(marked, expected);
        Ok(())
    }

    /// A memory bomb meets its instance's 32 MiB cap: it is dead-lettered as `memory-limit`
    /// with a message naming the cap, and the host's resident memory stays within the cap
    /// over its baseline (a bomb allowed to grow would take the machine's memory).
    #[test]
    fn a_memory_bomb_is_dead_lettered_at_its_32_mib_cap_and_the_host_stays_near_it() -> Result<()> {
        let lines = events_with(500, 250, "bomb");
        let ran = Case::new("fixture-evil-memory-bomb", lines.clone())
            .with(|s| s.memory("32MiB").timeout("1m").unlimited_fuel())
            .run()?;
        let letter = ran.assert_only_dead(&lines, "bomb", "memory-limit");
        assert!(
            letter
                .message
                .contains("memory limit reached: the instance asked for"),
            "{letter:?}"
        );
        assert!(
            letter.message.contains(&format!("the cap is {}", 32 << 20)),
            "the message does not name the 32 MiB cap: {}",
            letter.message
        );
        assert_eq!(ran.hostile().traps, TRAPS_FOR_ONE_IN_256);
        ran.assert_rss_at_most(
            HOST_BASELINE_MIB + 32,
            "the baseline and one 32 MiB instance",
        );
        Ok(())
    }

    /// Unbounded recursion on the wasm stack meets the engine's stack limit, never the host
    /// thread's: `stack-overflow`.
    #[test]
    fn unbounded_recursion_is_dead_lettered_as_stack_overflow() -> Result<()> {
        let lines = events_with(500, 17, "recurse");
        let ran = Case::new("fixture-evil-recursion", lines.clone()).run()?;
        ran.assert_only_dead(&lines, "recurse", "stack-overflow");
        assert_eq!(ran.hostile().traps, TRAPS_FOR_ONE_IN_256);
        Ok(())
    }

    /// One panicking event in a full batch of 256 costs one dead letter, carrying the panic
    /// message, and exactly one trap per halving: 9.
    #[test]
    fn a_panic_in_a_batch_of_256_costs_one_dead_letter_and_exactly_nine_traps() -> Result<()> {
        let lines = events_with(256, 200, "this is poison");
        let ran = Case::new("fixture-poison", lines.clone()).run()?;
        let letter = ran.assert_only_dead(&lines, "this is poison", "panic");
        assert!(letter.message.contains("poison event"), "{letter:?}");
        assert_eq!(ran.hostile().traps, 9);
        assert_eq!(
            ran.hostile().calls,
            1 + 2 * 8,
            "the batch, then two halves per level"
        );
        Ok(())
    }

    /// A call that returns one outcome too few is searched like a trap: only the event that
    /// causes it is dead-lettered as `wrong-outcome-count`, the other events of its batch and
    /// of the other batches flow in order, and no instance is replaced (the instance is fine).
    #[test]
    fn one_outcome_too_few_fails_exactly_the_event_that_causes_it_as_wrong_outcome_count()
    -> Result<()> {
        let lines = events_with(100, 42, "short");
        let ran = Case::new("fixture-evil-wrong-count", lines.clone())
            .batch_size(10)
            .run()?;
        let letter = ran.assert_only_dead(&lines, "short", "wrong-outcome-count");
        assert!(letter.message.contains("outcomes for"), "{letter:?}");
        assert_eq!(ran.hostile().traps, 0, "a wrong count is not a trap");
        Ok(())
    }

    /// A plugin whose output points a value past the end of its buffer breaks the contract:
    /// the host refuses the output (a `trap`) without reading out of bounds and without a
    /// panic of its own, and isolates the offending event like any trap.
    #[test]
    fn an_output_span_past_its_buffer_is_dead_lettered_as_trap_without_a_host_panic() -> Result<()>
    {
        let lines = events_with(300, 77, "bad spans");
        let ran = Case::new("fixture-evil-bad-spans", lines.clone()).run()?;
        let letter = ran.assert_only_dead(&lines, "bad spans", "trap");
        assert!(
            letter
                .message
                .contains("the plugin's output breaks the contract"),
            "{letter:?}"
        );
        assert_eq!(ran.hostile().traps, TRAPS_FOR_ONE_IN_256);
        assert!(
            !ran.ran.stderr().contains("panicked"),
            "{}",
            ran.ran.stderr()
        );
        Ok(())
    }

    /// A plugin that grows its table past the cap per instance is refused the growth: the
    /// fixture then traps (`unreachable`, reported as a panic), costing its own event only.
    /// The first event of a call sets how far the fixture grows its table, so the long line
    /// comes first.
    #[test]
    fn a_table_grown_past_its_cap_is_refused_and_costs_only_that_event() -> Result<()> {
        let mut lines = events_with(300, 0, "");
        lines[0] = "x".repeat(100_001);
        let poison = lines[0].clone();
        let ran = Case::new("fixture-evil-table-grow", lines.clone()).run()?;
        let letter = ran.assert_only_dead(&lines, &poison, "panic");
        assert!(letter.message.contains("unreachable"), "{}", letter.message);
        assert_eq!(ran.hostile().traps, TRAPS_FOR_ONE_IN_256);
        Ok(())
    }

    /// docs/sandbox.md: "huge tables: table elements per instance, 100,000". A table grown
    /// from 1 to exactly 100,000 elements is within that.
    #[test]
    fn a_table_may_grow_to_the_documented_100_000_elements() -> Result<()> {
        let lines = vec!["x".repeat(99_999), "last".to_string()];
        let ran = Case::new("fixture-evil-table-grow", lines.clone()).run()?;
        assert!(ran.letters.is_empty(), "{:#?}", ran.letters);
        assert_eq!(ran.out, lines);
        Ok(())
    }

    /// A 2-second busy wait is cut by a 100 ms deadline at each of the 9 calls that hold
    /// it: the run takes far less than the 18 s those calls would take uncut.
    #[test]
    fn a_two_second_busy_wait_is_dead_lettered_at_a_short_deadline() -> Result<()> {
        let lines = events_with(300, 100, "slow");
        let ran = Case::new("fixture-evil-busy-wait", lines.clone())
            .with(|s| s.timeout("100ms").unlimited_fuel())
            .run()?;
        ran.assert_only_dead(&lines, "slow", "deadline");
        assert_eq!(ran.hostile().traps, TRAPS_FOR_ONE_IN_256);
        let elapsed = ran.report().elapsed_s;
        assert!(elapsed < 9.0 * 2.0, "{elapsed} s");
        Ok(())
    }

    /// The same event passes, late, when the deadline is longer than the wait.
    #[test]
    fn a_two_second_busy_wait_passes_under_a_longer_deadline() -> Result<()> {
        let lines = events_with(20, 10, "slow");
        let ran = Case::new("fixture-evil-busy-wait", lines.clone())
            .with(|s| s.timeout("1m").unlimited_fuel())
            .run()?;
        assert_eq!(ran.out, lines);
        assert!(ran.letters.is_empty(), "{:?}", ran.letters);
        assert!(ran.report().elapsed_s >= 2.0, "{}", ran.report().elapsed_s);
        Ok(())
    }

    /// Guest log lines as weir writes them with `--log-format json`: the messages of target
    /// `weir::guest`.
    fn guest_messages(stderr: &str) -> Vec<String> {
        stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "weir::guest")
            .filter_map(|v| v["fields"]["message"].as_str().map(str::to_string))
            .filter(|m| !m.contains("was dropped"))
            .collect()
    }

    /// Forwarded guest lines may not exceed 100 a second per stage, after a burst of 100,
    /// however many instances the stage goes through: every trap replaces the instance, and a
    /// fresh instance must not bring a fresh quota. The flood event, 51st of 101 in one batch,
    /// costs at least one trap per halving down to it, 7; on a loaded machine a half of
    /// ordinary events, each writing its 100 lines, may meet the deadline too and cost more.
    fn assert_rate_limited(ran: &Hostile, marker: &str) {
        let messages = guest_messages(ran.ran.stderr());
        let flood: Vec<&String> = messages.iter().filter(|m| m.contains(marker)).collect();
        assert!(!flood.is_empty(), "no guest line reached the host log");
        for line in &messages {
            assert!(line.len() <= 1024, "a guest line of {} bytes", line.len());
        }
        let traps = ran.hostile().traps;
        assert!(traps >= 7, "{traps} traps");
        let seconds = ran.ran.watched.elapsed.as_secs() + 1;
        let allowed = 100 * (seconds + 1);
        assert!(
            (messages.len() as u64) <= allowed,
            "{} guest lines forwarded; at most {allowed} allowed in {seconds} s, whatever the {} instances",
            messages.len(),
            1 + traps
        );
        // The run offered 100 lines for each of 100 ordinary events and a flood: far more
        // than was forwarded.
        assert!(messages.len() < 10_000, "{} lines", messages.len());
        assert!(
            ran.ran.stderr().len() < 2 * 1024 * allowed as usize,
            "{} bytes of stderr",
            ran.ran.stderr().len()
        );
    }

    /// Stderr written in long lines and without end reaches the host log rate-limited and
    /// cut to 1 KiB; the event that floods forever is dead-lettered at its deadline.
    #[test]
    fn a_stderr_flood_reaches_the_host_log_rate_limited_and_capped() -> Result<()> {
        let lines = events_with(101, 50, "flood");
        let ran = Case::new("fixture-evil-stderr-flood", lines.clone())
            .with(|s| s.timeout("200ms").unlimited_fuel())
            .args(&["--log-format", "json"])
            .run()?;
        ran.assert_only_dead(&lines, "flood", "deadline");
        assert_rate_limited(&ran, "stderr-flood");
        Ok(())
    }

    /// The same through the `log` import, with lines ten times the cap.
    #[test]
    fn a_log_flood_reaches_the_host_log_rate_limited_and_capped() -> Result<()> {
        let lines = events_with(101, 50, "flood");
        let ran = Case::new("fixture-evil-log-flood", lines.clone())
            .with(|s| s.timeout("200ms").unlimited_fuel())
            .args(&["--log-format", "json"])
            .run()?;
        ran.assert_only_dead(&lines, "flood", "deadline");
        assert_rate_limited(&ran, "log-flood");
        Ok(())
    }

    /// One event turned into a million breaks `max_output_events` (1024 by default): it is
    /// dead-lettered as `output-cap` and none of its outputs is written. The guest has the
    /// 128 MiB it needs to build them; the host holds at most that and its copy of them.
    #[test]
    fn one_event_made_into_a_million_is_dead_lettered_as_output_cap() -> Result<()> {
        let lines = events_with(200, 120, "explode");
        let ran = Case::new("fixture-evil-fanout", lines.clone())
            .with(|s| s.memory("128MiB").timeout("1m").unlimited_fuel())
            .run()?;
        let letter = ran.assert_only_dead(&lines, "explode", "output-cap");
        assert!(
            letter
                .message
                .contains("made 1000000 events from one; the cap is 1024 (max_output_events)"),
            "{letter:?}"
        );
        ran.assert_rss_at_most(
            HOST_BASELINE_MIB + 128 + 32,
            "the baseline, a 128 MiB instance and the host's copy of the spans of a million \
             empty events, 24 bytes each",
        );
        Ok(())
    }

    /// One event turned into a 64 MiB value breaks `max_value_size` (16 MiB by default). The
    /// guest has the 160 MiB it needs to build it; the host holds at most that and its copy.
    /// (The call's output budget is raised above the value, which would break the default
    /// 64 MiB `max_output_bytes` first.)
    #[test]
    fn one_event_made_into_a_64_mib_value_is_dead_lettered_as_output_cap() -> Result<()> {
        let lines = events_with(200, 30, "huge");
        let ran = Case::new("fixture-evil-huge-value", lines.clone())
            .with(|s| {
                s.memory("160MiB")
                    .timeout("1m")
                    .unlimited_fuel()
                    .max_output_bytes("128MiB")
            })
            .run()?;
        let letter = ran.assert_only_dead(&lines, "huge", "output-cap");
        assert!(
            letter.message.contains(&format!(
                "a {}-byte value; the cap is {} (max_value_size)",
                64 << 20,
                16 << 20
            )),
            "{letter:?}"
        );
        ran.assert_rss_at_most(
            HOST_BASELINE_MIB + 160 + 64,
            "the baseline, a 160 MiB instance and the host's copy of the 64 MiB value",
        );
        Ok(())
    }

    /// With the value cap raised, the same 64 MiB breaks a 1 MiB `max_output_bytes`: exactly
    /// the event whose outputs pass the call's budget is dead-lettered as `output-cap`, the
    /// other events of its call pass, and nothing is lost or reordered.
    #[test]
    fn a_call_over_max_output_bytes_dead_letters_exactly_the_event_that_passes_it() -> Result<()> {
        let lines = events_with(200, 30, "huge");
        let ran = Case::new("fixture-evil-huge-value", lines.clone())
            .with(|s| {
                s.memory("160MiB")
                    .timeout("1m")
                    .unlimited_fuel()
                    .max_value_size("128MiB")
                    .max_output_bytes("1MiB")
            })
            .run()?;
        let letter = ran.assert_only_dead(&lines, "huge", "output-cap");
        assert!(
            letter
                .message
                .contains(&format!("more than {} bytes (max_output_bytes)", 1 << 20)),
            "{letter:?}"
        );
        ran.assert_rss_at_most(
            HOST_BASELINE_MIB + 160 + 64,
            "the baseline, a 160 MiB instance and the host's copy of the 64 MiB value",
        );
        Ok(())
    }
}

/// Runs `weir check` and `weir run` on a pipeline file and returns (exit code, stderr) of
/// each: a refusal at load must look the same from both.
fn check_and_run(dir: &Dir, pipeline: &Path) -> Result<[(i32, String); 2]> {
    let mut results = Vec::new();
    for command in ["check", "run"] {
        let mut cmd = dir.weir();
        cmd.arg(command).arg(pipeline);
        let watched = support::run_watched(cmd, PATIENCE)?;
        results.push((watched.code(), watched.stderr));
    }
    Ok(results.try_into().expect("two commands"))
}

/// A one-stage pipeline `stdin -> stage a -> null` around a plugin file.
fn one_stage(dir: &Dir, stage: Stage) -> Result<PathBuf> {
    PipelineFile::new()
        .source("s", Source::stdin())
        .stage("a", stage.inputs(&["s"]))
        .sink("o", Sink::null().inputs(&["a"]))
        .write(dir)
}

/// Asserts that both commands refused the pipeline with exit 2 and one last line on stderr
/// holding every one of `needles` and none of `not`.
fn assert_refused(results: &[(i32, String); 2], needles: &[&str], not: &[&str]) {
    for (code, stderr) in results {
        assert_eq!(*code, 2, "{stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("weir: error: "), "{stderr}");
        for needle in needles {
            assert!(last.contains(needle), "no {needle:?} in: {last}");
        }
        for needle in not {
            assert!(!last.contains(needle), "{needle:?} in: {last}");
        }
    }
}

mod load_refusals {
    //! Plugins the host must refuse before any event is read: exit 2, one line naming the
    //! file and the reason, from `weir check` and `weir run` alike.

    use super::*;

    fn refused(stage: Stage, needles: &[&str]) -> Result<()> {
        let dir = Dir::new()?;
        let pipeline = one_stage(&dir, stage)?;
        assert_refused(&check_and_run(&dir, &pipeline)?, needles, &[]);
        Ok(())
    }

    /// A text file is refused as not WebAssembly.
    #[test]
    fn a_file_that_is_not_webassembly_is_refused() -> Result<()> {
        let dir = Dir::new()?;
        let file = dir.write("text.wasm", "this is not a plugin\n")?;
        refused(
            Stage::plugin(&file),
            &[&file.display().to_string(), "not a WebAssembly file"],
        )
    }

    /// A core module is refused, with how to make it a component.
    #[test]
    fn a_core_module_is_refused_as_not_a_component() -> Result<()> {
        let dir = Dir::new()?;
        let file = dir.write_bytes("core.wasm", b"\0asm\x01\0\0\0")?;
        refused(
            Stage::plugin(&file),
            &[
                &file.display().to_string(),
                "a core WebAssembly module, not a component",
            ],
        )
    }

    /// A component of another world is refused as not implementing `stage`.
    #[test]
    fn a_component_of_another_world_is_refused_as_not_implementing_the_stage_world() -> Result<()> {
        let file = plugin("fixture-evil-other-world");
        refused(
            Stage::plugin(&file),
            &[
                &file.display().to_string(),
                "does not implement the `stage` world",
            ],
        )
    }

    /// A plugin of `weir:stage@0.9.0` is refused, naming that version and those the host speaks.
    #[test]
    fn a_plugin_built_against_an_unknown_contract_version_is_refused_naming_it() -> Result<()> {
        let file = plugin("fixture-evil-unknown-version");
        refused(
            Stage::plugin(&file),
            &[
                &file.display().to_string(),
                "weir:stage/types@0.9.0",
                "this host speaks weir:stage@0.3, @0.2 or @0.1",
            ],
        )
    }

    /// A file over the 64 MiB cap is refused by its size, before it is read or compiled: a
    /// sparse file with a component header is enough to show it.
    #[test]
    fn a_plugin_over_64_mib_is_refused_by_its_size() -> Result<()> {
        let dir = Dir::new()?;
        let file = dir.write_bytes("big.wasm", b"\0asm\x0d\0\x01\0")?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)?
            .set_len((64 << 20) + 1)?;
        refused(
            Stage::plugin(&file),
            &[&file.display().to_string(), "over the", "limit"],
        )
    }

    /// An `init` that returns an error is refused with that error and the stage's name.
    #[test]
    fn an_init_that_returns_an_error_is_refused_naming_the_stage() -> Result<()> {
        refused(
            Stage::plugin(plugin("fixture-bad-init")).setting("database", "db.internal"),
            &[
                "stage `a`",
                "init returned an error: cannot reach the database at db.internal",
            ],
        )
    }

    /// An endless `init` spends its fuel and traps.
    #[test]
    fn an_init_that_never_returns_is_refused_when_its_fuel_runs_out() -> Result<()> {
        refused(
            Stage::plugin(plugin("fixture-evil-loop-init"))
                .timeout("1m")
                .fuel(10_000),
            &["stage `a`", "init", "out-of-fuel"],
        )
    }

    /// An endless `init`, its fuel out of the way, meets the deadline and is refused.
    #[test]
    fn an_init_that_never_returns_is_refused_at_its_deadline() -> Result<()> {
        refused(
            Stage::plugin(plugin("fixture-evil-loop-init"))
                .timeout("100ms")
                .unlimited_fuel(),
            &["stage `a`", "init", "deadline"],
        )
    }

    /// The fuel `loops` spins of the burn fixture cost in one call, read from the report of a
    /// run with fuel out of the way: fuel counts instructions, so it is the same in `init`.
    fn fuel_of(loops: u64) -> Result<u64> {
        let dir = Dir::new()?;
        dir.write_lines("in.txt", &[format!("burn {loops}")])?;
        let file = PipelineFile::new()
            .source("in", Source::file("in.txt"))
            .stage(
                "burn",
                Stage::plugin(plugin("fixture-burn"))
                    .inputs(&["in"])
                    .unlimited_fuel(),
            )
            .sink("out", Sink::null().inputs(&["burn"]))
            .write(&dir)?;
        let ran = dir.run(&file)?;
        let burn = ran.report().node("burn");
        ensure!(burn.calls == 1, "{burn:?}");
        Ok(burn.fuel)
    }

    /// `weir check` of a stage whose `init` spins `loops` times, with `fuel` per event.
    fn check_init(loops: u64, fuel: u64) -> Result<(i32, String)> {
        let dir = Dir::new()?;
        let pipeline = one_stage(
            &dir,
            Stage::plugin(plugin("fixture-burn"))
                .fuel(fuel as i64)
                .timeout("1m")
                .setting("init_loops", loops as i64),
        )?;
        let (code, _, stderr) = dir.check(&pipeline)?;
        Ok((code, stderr))
    }

    /// `init` gets `INIT_FUEL_EVENTS` (100) events' worth of fuel, not one: an `init` that
    /// burns ten events' worth loads, one that burns a thousand is refused as out of fuel.
    #[test]
    fn init_gets_a_hundred_events_of_fuel_and_no_more() -> Result<()> {
        use weir::sandbox::INIT_FUEL_EVENTS;
        assert_eq!(INIT_FUEL_EVENTS, 100);
        let loops = 2_000_000;
        let burnt = fuel_of(loops)?;
        ensure!(burnt > 1_000_000, "{loops} loops burnt only {burnt} fuel");

        let ten_events = burnt / 10;
        let (code, stderr) = check_init(loops, ten_events)?;
        assert_eq!(code, 0, "an init of 10 events' fuel was refused: {stderr}");

        let thousand_events = burnt / 1000;
        let (code, stderr) = check_init(loops, thousand_events)?;
        assert_eq!(code, 2, "an init of 1000 events' fuel loaded: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains("stage `a`") && last.contains("init") && last.contains("out-of-fuel"),
            "{last}"
        );
        Ok(())
    }
}

mod capabilities {
    //! Deny by default: no files, no environment, no network, unless the stage grants them.

    use super::*;

    /// A plugin importing `wasi:filesystem` is refused without a `dirs` grant, naming the import.
    #[test]
    fn a_plugin_importing_the_filesystem_is_refused_without_a_dirs_grant() -> Result<()> {
        let dir = Dir::new()?;
        let file = plugin("fixture-evil-fs");
        let pipeline = one_stage(&dir, Stage::plugin(&file))?;
        assert_refused(
            &check_and_run(&dir, &pipeline)?,
            &[
                &file.display().to_string(),
                "imports `wasi:filesystem/",
                "does not grant",
            ],
            &[],
        );
        Ok(())
    }

    /// With `data/` granted as `/data`, the guest reads and lists that folder and nothing
    /// else: not the host's `/etc/passwd`, not `/`, not a file beside the folder, not through
    /// a symlink that points out; and it cannot write, even inside.
    #[test]
    fn with_a_dirs_grant_the_plugin_reads_only_inside_the_granted_folder() -> Result<()> {
        let dir = Dir::new()?;
        std::fs::create_dir(dir.path("data"))?;
        dir.write("data/hello.txt", "hello from the granted folder")?;
        dir.write("secret.txt", "beside the granted folder")?;
        std::os::unix::fs::symlink("/etc/passwd", dir.path("data/escape"))?;
        let lines = [
            "read /data/hello.txt",
            "list /data",
            "read /etc/passwd",
            "list /",
            "read /data/../secret.txt",
            "read /data/escape",
            "write /data/new.txt",
            "last",
        ];
        // Run from `/`: the relative `data` can only work relative to the pipeline file.
        let ran = Case::new(
            "fixture-evil-fs",
            lines.iter().map(|l| l.to_string()).collect(),
        )
        .with(|s| s.grant_dir("data", "/data"))
        .run_in(&dir, Some(Path::new("/")))?;
        ran.report();
        assert_eq!(
            ran.out,
            [
                "hello from the granted folder",
                "escape",
                "hello.txt",
                "last"
            ]
        );
        let refused: Vec<&str> = ran.letters.iter().map(DeadLetter::value).collect();
        assert_eq!(refused, &lines[2..7]);
        for letter in &ran.letters {
            assert_eq!(letter.kind, "reject", "{letter:?}");
            assert!(!letter.message.contains("root:"), "{letter:?}");
        }
        assert!(!dir.path("data/new.txt").exists(), "the guest wrote a file");
        Ok(())
    }

    /// `weir plugin inspect` marks the filesystem imports as refused and std's usual ones as
    /// granted.
    #[test]
    fn plugin_inspect_shows_the_filesystem_import_as_refused() -> Result<()> {
        let out = support::weir()
            .args(["plugin", "inspect"])
            .arg(plugin("fixture-evil-fs"))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let fs: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  wasi:filesystem/"))
            .collect();
        assert!(!fs.is_empty(), "{text}");
        for line in fs {
            assert!(line.contains("(refused: "), "{text}");
        }
        // What std always imports stays granted.
        assert!(
            text.lines()
                .any(|l| l.starts_with("  wasi:cli/environment@") && l.ends_with("(granted)")),
            "{text}"
        );
        Ok(())
    }

    /// Rust's std networking also imports `wasi:filesystem`, so the directory grant is given
    /// here to get past the filesystem check: the refusal that remains names a socket import,
    /// and only that.
    #[test]
    fn a_plugin_importing_sockets_is_refused_without_a_network_grant() -> Result<()> {
        let dir = Dir::new()?;
        std::fs::create_dir(dir.path("data"))?;
        let file = plugin("fixture-evil-net");
        let pipeline = one_stage(&dir, Stage::plugin(&file).grant_dir("data", "/data"))?;
        assert_refused(
            &check_and_run(&dir, &pipeline)?,
            &[
                &file.display().to_string(),
                "imports `wasi:sockets/",
                "does not grant",
            ],
            &["wasi:filesystem"],
        );
        Ok(())
    }

    /// The fixture with `network = true` (and the folder grant std's networking needs) over
    /// `lines`, from a folder of its own.
    fn with_network(lines: Vec<String>) -> Result<Hostile> {
        let dir = Dir::new()?;
        std::fs::create_dir(dir.path("data"))?;
        Case::new("fixture-evil-net", lines)
            .with(|s| s.grant_dir("data", "/data").grant_network())
            .run_in(&dir, None)
    }

    /// With `network = true` the plugin resolves a name: `localhost` gives the loopback
    /// address, with the port asked for.
    #[test]
    fn with_a_network_grant_the_plugin_resolves_names() -> Result<()> {
        let ran = with_network(vec!["resolve localhost:7".into(), "last".into()])?;
        ran.report();
        assert!(ran.letters.is_empty(), "{:#?}", ran.letters);
        let resolved: Vec<&str> = ran.out[0].split(',').collect();
        assert!(
            resolved.contains(&"127.0.0.1:7"),
            "localhost resolved to {resolved:?}"
        );
        assert_eq!(ran.out[1], "last");
        Ok(())
    }

    /// With `network = true` the plugin opens a TCP connection to a listener of this test:
    /// the grant gives the outbound network the README promises.
    #[test]
    fn with_a_network_grant_the_plugin_opens_a_tcp_connection() -> Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let accepted = std::thread::spawn(move || listener.accept().map(|(_, peer)| peer));
        let ran = with_network(vec![format!("connect 127.0.0.1:{port}"), "last".into()])?;
        ran.report();
        assert!(ran.letters.is_empty(), "{:#?}", ran.letters);
        assert_eq!(
            ran.out,
            [format!("connected 127.0.0.1:{port}"), "last".into()]
        );
        let peer = accepted.join().expect("the listener")?;
        assert!(peer.ip().is_loopback(), "{peer}");
        Ok(())
    }

    const SECRET: (&str, &str) = ("SECRET", "hunter2");
    const OTHER: (&str, &str) = ("OTHER_VARIABLE", "also-private");

    /// Without an `env` grant the guest sees no variable, though the host has some.
    #[test]
    fn without_an_env_grant_the_guest_sees_no_environment_variables() -> Result<()> {
        let lines = vec!["a".to_string(), "b".to_string()];
        let ran = Case::new("fixture-evil-env", lines)
            .env(&[SECRET, OTHER])
            .run()?;
        ran.report();
        assert_eq!(ran.out, ["", ""], "the guest saw variables");
        Ok(())
    }

    /// An `env` grant shows the guest the variables it names and no other.
    #[test]
    fn an_env_grant_shows_the_guest_only_the_named_variables() -> Result<()> {
        let lines = vec!["a".to_string(), "b".to_string()];
        let ran = Case::new("fixture-evil-env", lines)
            .with(|s| s.grant_env(&["SECRET"]))
            .env(&[SECRET, OTHER])
            .run()?;
        ran.report();
        assert_eq!(ran.out, ["SECRET=hunter2", "SECRET=hunter2"]);
        Ok(())
    }
}

mod breaker {
    //! The circuit breaker: a stage whose plugin keeps failing stops costing the pipeline.

    use super::*;

    /// A `generate` source of `count` events into one stage `hostile` and a null sink.
    fn generated(dir: &Dir, stage: Stage, count: i64) -> Result<PathBuf> {
        PipelineFile::new()
            .source("gen", Source::generate(count).size(100))
            .stage("hostile", stage.inputs(&["gen"]))
            .sink("out", Sink::null().inputs(&["hostile"]))
            .dead_letters("dead.jsonl")
            .write(dir)
    }

    /// With `on_error = "stop"`, a tripped breaker stops the run: exit 1, one last line naming
    /// the stage, the breaker and the last failure.
    #[test]
    fn a_tripped_breaker_with_on_error_stop_exits_1_naming_the_stage() -> Result<()> {
        let dir = Dir::new()?;
        let pipeline = generated(
            &dir,
            Stage::plugin(plugin("fixture-evil-trap-every"))
                .on_error("stop")
                .breaker(100, 0.5, "5s"),
            100_000,
        )?;
        let ran = dir.run(&pipeline)?;
        assert_eq!(ran.code(), 1, "{}", ran.stderr());
        let last = ran.watched.last_line();
        assert!(
            last.starts_with("weir: error: stage `hostile`: circuit breaker tripped"),
            "{}",
            ran.stderr()
        );
        // The last failure is named: the plugin's trap (`unreachable`, reported as a panic).
        assert!(
            last.contains("(last: panic: the guest reached `unreachable`"),
            "{last}"
        );
        assert!(last.ends_with("(on_error = \"stop\")"), "{last}");
        Ok(())
    }

    /// With `on_error = "drop"`, every failed event is counted and none written; the run
    /// ends without waiting on the plugin.
    #[test]
    fn a_tripped_breaker_with_on_error_drop_counts_every_event_and_writes_none() -> Result<()> {
        let dir = Dir::new()?;
        let pipeline = generated(
            &dir,
            Stage::plugin(plugin("fixture-evil-trap-every"))
                .on_error("drop")
                .breaker(100, 0.5, "5s"),
            100_000,
        )?;
        let ran = dir.run(&pipeline)?;
        let report = ran.report();
        assert_eq!((report.events_in, report.events_out), (100_000, 0));
        assert_eq!(report.node("hostile").failed, 100_000);
        assert_eq!(report.dead_lettered, 0);
        assert!(
            dead_letters(&dir.path("dead.jsonl"))?.is_empty(),
            "`drop` wrote dead letters"
        );
        Ok(())
    }

    /// A plugin that spends a whole 50 ms deadline on every event would cost 20 traps a
    /// batch, every batch. With the breaker open after the first batch (256 failures fill
    /// the window of 100) and a cooldown longer than the run, the plugin is called for that
    /// batch only: exactly 20 traps, and every later event fails at once as `breaker-open`.
    #[test]
    fn an_open_breaker_fails_events_at_once_as_breaker_open() -> Result<()> {
        let dir = Dir::new()?;
        let pipeline = generated(
            &dir,
            // One worker: a second would call the plugin on a batch of its own before the
            // breaker opens.
            Stage::plugin(plugin("fixture-evil-loop-every"))
                .timeout("50ms")
                .unlimited_fuel()
                .breaker(100, 0.5, "1h")
                .workers(1),
            5_000,
        )?;
        let ran = dir.run(&pipeline)?;
        let report = ran.report();
        let letters = dead_letters(&dir.path("dead.jsonl"))?;
        assert_eq!(letters.len(), 5_000);
        let hostile = report.node("hostile");
        assert_eq!(hostile.traps, u64::from(MAX_TRAPS_PER_BATCH));
        assert_eq!(hostile.failures_of("deadline"), 256);
        assert_eq!(hostile.failures_of("breaker-open"), 5_000 - 256);
        for (i, letter) in letters.iter().enumerate() {
            let kind = if i < 256 { "deadline" } else { "breaker-open" };
            assert_eq!(letter.kind, kind, "letter {i}: {letter:?}");
        }
        Ok(())
    }

    /// Poison first, then good events: the breaker opens on the poison, fails the good
    /// events that come during its 300 ms cooldown as `breaker-open`, and then a good batch
    /// closes it with a clean window: from then on every good event is written, in order.
    /// The test waits on the fate of each small group of good events, not on the clock.
    #[test]
    fn after_the_cooldown_a_healthy_batch_closes_the_breaker() -> Result<()> {
        use std::io::Write;

        let dir = Dir::new()?;
        let pipeline = PipelineFile::new()
            .linger("1ms")
            .source("in", Source::stdin())
            .stage(
                "hostile",
                Stage::plugin(plugin("fixture-poison"))
                    .inputs(&["in"])
                    .breaker(100, 0.5, "300ms"),
            )
            .sink("out", Sink::file("out.txt").inputs(&["hostile"]))
            .dead_letters("dead.jsonl")
            .write(&dir)?;
        let mut running = dir.start(&pipeline)?;
        let (out, dead) = (dir.path("out.txt"), dir.path("dead.jsonl"));
        let settled = |n: u64| {
            wait_until(
                &format!("{n} events written or dead-lettered"),
                || {
                    let done = support::count_lines(&out) + support::count_lines(&dead);
                    Ok((done >= n).then_some(()))
                },
                || "".into(),
            )
        };
        let poison: String = (0..256).map(|i| format!("poison {i}\n")).collect();
        running.stdin().write_all(poison.as_bytes())?;
        running.stdin().flush()?;
        settled(256)?;
        // Groups of 5 until one is written: the breaker is closed again.
        let mut sent = 0u64;
        let mut good = Vec::new();
        while support::count_lines(&out) == 0 {
            ensure!(sent < 100_000, "the breaker never closed");
            for _ in 0..5 {
                let line = format!("good {sent}");
                writeln!(running.stdin(), "{line}")?;
                good.push(line);
                sent += 1;
            }
            running.stdin().flush()?;
            settled(256 + sent)?;
        }
        let closed_at = good.len();
        for _ in 0..100 {
            let line = format!("good {sent}");
            writeln!(running.stdin(), "{line}")?;
            good.push(line);
            sent += 1;
        }
        running.close_stdin();
        let ran = running.finish(PATIENCE)?;
        let report = ran.report();

        let written = read_lines(&out)?;
        let letters = dead_letters(&dead)?;
        let good_dead: Vec<&str> = letters
            .iter()
            .filter(|l| l.value().starts_with("good"))
            .map(|l| {
                assert_eq!(l.kind, "breaker-open", "{l:?}");
                l.value()
            })
            .collect();
        // Each good event was failed fast while the breaker was open, or written, in order.
        assert_eq!(good_dead, good[..good_dead.len()]);
        assert_same_lines(&written, &good[good_dead.len()..]);
        assert!(
            good_dead.len() < closed_at,
            "the group that closed it was written"
        );
        for letter in letters.iter().filter(|l| l.value().starts_with("poison")) {
            assert!(
                letter.kind == "panic" || letter.kind == "breaker-open",
                "{letter:?}"
            );
        }
        assert_eq!(
            written.len() + letters.len(),
            256 + good.len(),
            "events were lost"
        );
        assert_eq!(report.dead_lettered as usize, letters.len());
        Ok(())
    }
}
