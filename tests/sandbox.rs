//! The evil-plugin suite: hostile plugins, built from source like every fixture, run through
//! the real `weir` binary. For each one the host must stay up with the exit status the sandbox
//! promises, deliver the good events in order, dead-letter the poison event with the right
//! kind, and keep its resident memory and wall-clock time within a bound.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;
use support::legacy::stage_count;
use support::{Dir, Watched, plugin, run_watched, weir};

/// Peak resident memory allowed for a whole `weir` process. A run with small plugins sits
/// near 25 MiB and the memory bomb, held to its 64 MiB cap, near 85 MiB. The worst cases
/// here let a guest grow to 256 MiB of linear memory to build a 64 MiB value (about 150 MiB
/// resident, guest and host copies together) or a million events (about 290 MiB, most of it
/// the host's copy of what the guest returned). 600 MiB is twice the worst of those, and
/// still far below what an unbounded plugin would take: the memory bomb alone would grow
/// until the machine ran out.
const MEMORY_BOUND_MIB: u64 = 600;

/// Wall-clock time allowed for one `weir` run. The slowest case here needs about 3 s on a
/// loaded 2-core machine; a hang, or a limit that stopped working, would blow well past it.
const TIME_BOUND: Duration = Duration::from_secs(60);

/// Stage keys that make fuel practically unlimited, so that the deadline is what ends a
/// spinning call (the default fuel would usually end it first).
const NO_FUEL_LIMIT: &str = "fuel = 1_000_000_000_000";

/// Traps one batch may cost while its poison events are isolated (the host's documented cap).
const MAX_TRAPS_PER_BATCH: u64 = 20;

/// One run of a pipeline `file source -> hostile stage -> file sink`, with dead letters in a
/// file. The stage is called `hostile`.
struct Case<'a> {
    plugin: &'a str,
    /// Extra keys of the stage's table, as TOML lines.
    keys: &'a str,
    lines: Vec<String>,
    /// Keys of the `[pipeline]` table, as TOML lines.
    global: &'a str,
    /// Arguments before `run`, such as `--log-format json`.
    args: &'a [&'a str],
    env: &'a [(&'a str, &'a str)],
}

/// What a [`Case`] left behind.
struct Ran {
    watched: Watched,
    out: Vec<String>,
    letters: Vec<Value>,
}

impl<'a> Case<'a> {
    fn new(plugin: &'a str, keys: &'a str, lines: Vec<String>) -> Case<'a> {
        Case {
            plugin,
            keys,
            lines,
            global: "",
            args: &[],
            env: &[],
        }
    }

    fn pipeline(&self, dir: &Dir) -> Result<PathBuf> {
        dir.write("in.txt", &(self.lines.join("\n") + "\n"))?;
        dir.write(
            "p.toml",
            &format!(
                r#"
[pipeline]
{global}

[sources.in]
type = "file"
path = "in.txt"

[stages.hostile]
inputs = ["in"]
plugin = "{plugin}"
{keys}

[sinks.out]
inputs = ["hostile"]
type = "file"
path = "out.txt"

[dead_letter]
type = "file"
path = "dead.jsonl"
"#,
                global = self.global,
                plugin = plugin(self.plugin).display(),
                keys = self.keys,
            ),
        )
    }

    fn run(&self) -> Result<Ran> {
        self.run_in(&Dir::new()?, None)
    }

    /// Runs the case with its files in `dir`, from the working folder `cwd` if given.
    fn run_in(&self, dir: &Dir, cwd: Option<&Path>) -> Result<Ran> {
        let pipeline = self.pipeline(dir)?;
        let mut cmd = weir();
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        cmd.args(self.args).arg("run").arg(&pipeline);
        for (name, value) in self.env {
            cmd.env(name, value);
        }
        let watched = run_watched(cmd, TIME_BOUND)?;
        let out = match std::fs::read_to_string(dir.path("out.txt")) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let letters = support::legacy::dead_letters(&dir.path("dead.jsonl"))?;
        Ok(Ran {
            watched,
            out,
            letters,
        })
    }
}

impl Ran {
    /// The run ended with exit status 0, within the memory and time bounds.
    fn assert_succeeded_within_bounds(&self) {
        assert_eq!(
            self.watched.code(),
            0,
            "weir failed: {}",
            self.watched.stderr
        );
        assert_within_bounds(&self.watched);
    }

    /// Exactly `poison` was dead-lettered, with `kind`, and every other input line was written
    /// in input order.
    fn assert_only_dead(&self, lines: &[String], poison: &str, kind: &str) -> &Value {
        let expected: Vec<&String> = lines.iter().filter(|l| *l != poison).collect();
        assert_same_lines(&self.out, &expected);
        assert_eq!(self.letters.len(), 1, "{:#?}", self.letters);
        let letter = &self.letters[0];
        assert_eq!(letter["kind"], kind, "{letter}");
        assert_eq!(letter["stage"], "hostile");
        assert_eq!(letter["event"]["value"], poison);
        assert_eq!(letter["plugin_digest"].as_str().map(str::len), Some(64));
        letter
    }

    fn traps(&self) -> u64 {
        stage_count(&self.watched.stderr, "hostile", "traps").unwrap_or(0)
    }
}

/// Asserts that `written` is `expected`, line for line. A failure names the first
/// difference, cut short: a hostile plugin's output can be a million lines or 64 MiB long.
fn assert_same_lines<S: AsRef<str>>(written: &[String], expected: &[S]) {
    let short = |s: &str| s.chars().take(60).collect::<String>();
    let first_difference = written
        .iter()
        .zip(expected)
        .position(|(w, e)| w != e.as_ref())
        .or((written.len() != expected.len()).then(|| written.len().min(expected.len())));
    if let Some(i) = first_difference {
        panic!(
            "the good events did not arrive in order: {} lines written, {} expected; line {i} is {:?}, expected {:?}",
            written.len(),
            expected.len(),
            written.get(i).map(|s| short(s)),
            expected.get(i).map(|s| short(s.as_ref())),
        );
    }
}

fn assert_within_bounds(watched: &Watched) {
    assert!(
        watched.peak_rss_mib() < MEMORY_BOUND_MIB,
        "weir held {} MiB resident; the bound is {MEMORY_BOUND_MIB} MiB",
        watched.peak_rss_mib()
    );
    assert!(
        watched.elapsed < TIME_BOUND,
        "weir ran for {:?}; the bound is {TIME_BOUND:?}",
        watched.elapsed
    );
}

/// `count` events `event I`, with `poison` in place of the one at `at`.
fn events_with(count: usize, at: usize, poison: &str) -> Vec<String> {
    (0..count)
        .map(|i| {
            if i == at {
                poison.to_string()
            } else {
                format!("event {i}")
            }
        })
        .collect()
}

fn message(letter: &Value) -> &str {
    letter["message"].as_str().unwrap_or_default()
}

mod hostile_events {
    //! A plugin that misbehaves on one event costs that event only.

    use super::*;

    /// An endless loop meets the call's deadline: with fuel out of the way, the poison event
    /// is dead-lettered as `deadline` after a few 100 ms deadlines of isolation.
    #[test]
    fn an_endless_loop_on_one_event_is_dead_lettered_at_its_deadline() -> Result<()> {
        let lines = events_with(1000, 613, "loop forever");
        let keys = format!("timeout = \"100ms\"\n{NO_FUEL_LIMIT}");
        let ran = Case::new("fixture-evil-loop-one", &keys, lines.clone()).run()?;
        ran.assert_succeeded_within_bounds();
        let letter = ran.assert_only_dead(&lines, "loop forever", "deadline");
        assert!(message(letter).contains("deadline"), "{letter}");
        Ok(())
    }

    /// With a far deadline and a small fuel budget, the same loop is stopped by fuel.
    #[test]
    fn an_endless_loop_on_one_event_runs_out_of_fuel_when_fuel_is_the_tighter_limit() -> Result<()>
    {
        let lines = events_with(1000, 3, "loop forever");
        let ran = Case::new(
            "fixture-evil-loop-one",
            "timeout = \"30s\"\nfuel = 1_000_000",
            lines.clone(),
        )
        .run()?;
        ran.assert_succeeded_within_bounds();
        ran.assert_only_dead(&lines, "loop forever", "out-of-fuel");
        Ok(())
    }

    /// A plugin that loops on every call cannot make a batch cost more than the documented
    /// 20 traps: every event is dead-lettered as `deadline` and the run ends. The 40 lines
    /// arrive in one read, so they form one batch.
    #[test]
    fn an_endless_loop_on_every_call_dead_letters_each_event_within_twenty_traps_a_batch()
    -> Result<()> {
        let lines: Vec<String> = (0..40).map(|i| format!("event {i}")).collect();
        let keys = format!("timeout = \"50ms\"\n{NO_FUEL_LIMIT}");
        let ran = Case::new("fixture-evil-loop-every", &keys, lines.clone()).run()?;
        ran.assert_succeeded_within_bounds();
        assert!(ran.out.is_empty(), "{:?}", ran.out);
        assert_eq!(ran.letters.len(), lines.len());
        for (letter, line) in ran.letters.iter().zip(&lines) {
            assert_eq!(letter["kind"], "deadline", "{letter}");
            assert_eq!(&letter["event"]["value"], line);
        }
        assert!(
            ran.traps() <= MAX_TRAPS_PER_BATCH,
            "one batch cost {} traps; the cap is {MAX_TRAPS_PER_BATCH}: {}",
            ran.traps(),
            ran.watched.stderr.lines().last().unwrap_or_default()
        );
        Ok(())
    }

    /// A memory bomb meets the instance's 64 MiB cap: it is dead-lettered as `memory-limit`
    /// and the host's own memory stays far below the bound.
    #[test]
    fn a_memory_bomb_is_dead_lettered_as_memory_limit_and_the_host_stays_small() -> Result<()> {
        let lines = events_with(500, 250, "bomb");
        let keys = format!("timeout = \"30s\"\n{NO_FUEL_LIMIT}");
        let ran = Case::new("fixture-evil-memory-bomb", &keys, lines.clone()).run()?;
        ran.assert_succeeded_within_bounds();
        let letter = ran.assert_only_dead(&lines, "bomb", "memory-limit");
        assert!(message(letter).contains("memory"), "{letter}");
        Ok(())
    }

    /// Unbounded recursion on the wasm stack meets the engine's stack limit, never the host
    /// thread's: `stack-overflow`.
    #[test]
    fn unbounded_recursion_is_dead_lettered_as_stack_overflow() -> Result<()> {
        let lines = events_with(500, 17, "recurse");
        let ran = Case::new("fixture-evil-recursion", "", lines.clone()).run()?;
        ran.assert_succeeded_within_bounds();
        ran.assert_only_dead(&lines, "recurse", "stack-overflow");
        Ok(())
    }

    /// One panicking event in a full batch of 256 costs one dead letter, carrying the panic
    /// message, and one trap per halving: 9.
    #[test]
    fn a_panic_in_a_batch_of_256_costs_one_dead_letter_and_at_most_nine_traps() -> Result<()> {
        let lines = events_with(256, 200, "this is poison");
        let ran = Case::new("fixture-poison", "", lines.clone()).run()?;
        ran.assert_succeeded_within_bounds();
        let letter = ran.assert_only_dead(&lines, "this is poison", "panic");
        assert!(message(letter).contains("poison event"), "{letter}");
        assert!(ran.traps() <= 9, "{} traps", ran.traps());
        Ok(())
    }

    /// A call that returns one outcome too few fails that call's events as
    /// `wrong-outcome-count`; the other batches are untouched and keep their order.
    #[test]
    fn one_outcome_too_few_fails_only_that_batch_as_wrong_outcome_count() -> Result<()> {
        let lines = events_with(100, 42, "short");
        let ran = Case::new("fixture-evil-wrong-count", "", lines.clone())
            .global("batch_size = 10")
            .run()?;
        ran.assert_succeeded_within_bounds();
        let dead: Vec<&str> = ran
            .letters
            .iter()
            .map(|l| l["event"]["value"].as_str().unwrap_or_default())
            .collect();
        assert!(dead.contains(&"short"), "{dead:?}");
        assert!(dead.len() <= 10, "more than one batch failed: {dead:?}");
        for letter in &ran.letters {
            assert_eq!(letter["kind"], "wrong-outcome-count", "{letter}");
            assert!(message(letter).contains("outcomes for"), "{letter}");
        }
        // The failed events are one run of neighbours, and everything else was written.
        let first = lines.iter().position(|l| l == dead[0]).unwrap();
        assert_eq!(
            &lines[first..first + dead.len()],
            dead.as_slice(),
            "the failed events are not one batch"
        );
        let expected: Vec<&String> = lines
            .iter()
            .filter(|l| !dead.contains(&l.as_str()))
            .collect();
        assert_same_lines(&ran.out, &expected);
        Ok(())
    }

    /// A 2-second busy wait is cut by a 100 ms deadline.
    #[test]
    fn a_two_second_busy_wait_is_dead_lettered_at_a_short_deadline() -> Result<()> {
        let lines = events_with(300, 100, "slow");
        let keys = format!("timeout = \"100ms\"\n{NO_FUEL_LIMIT}");
        let ran = Case::new("fixture-evil-busy-wait", &keys, lines.clone()).run()?;
        ran.assert_succeeded_within_bounds();
        ran.assert_only_dead(&lines, "slow", "deadline");
        // One deadline per halving of a batch of at most 256: about a second, never 2 s
        // per attempt.
        assert!(
            ran.watched.elapsed < Duration::from_secs(10),
            "{:?}",
            ran.watched.elapsed
        );
        Ok(())
    }

    /// The same event passes, late, when the deadline is longer than the wait.
    #[test]
    fn a_two_second_busy_wait_passes_under_a_longer_deadline() -> Result<()> {
        let lines = events_with(20, 10, "slow");
        let keys = format!("timeout = \"5s\"\n{NO_FUEL_LIMIT}");
        let ran = Case::new("fixture-evil-busy-wait", &keys, lines.clone()).run()?;
        ran.assert_succeeded_within_bounds();
        assert_eq!(ran.out, lines);
        assert!(ran.letters.is_empty(), "{:?}", ran.letters);
        assert!(ran.watched.elapsed >= Duration::from_secs(2));
        Ok(())
    }

    /// Guest log lines as weir writes them with `--log-format json`: the messages of target
    /// `weir::guest`.
    fn guest_messages(stderr: &str) -> Vec<String> {
        stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "weir::guest")
            .filter_map(|v| v["fields"]["message"].as_str().map(str::to_string))
            .filter(|m| !m.contains("was dropped"))
            .collect()
    }

    /// Forwarded guest lines may not exceed 100 a second per instance, after a burst of 100.
    /// Every trap replaces the instance (a fresh one has a fresh burst), so the bound counts
    /// the instances: one per worker plus one per trap.
    fn assert_rate_limited(ran: &Ran, marker: &str) {
        let messages = guest_messages(&ran.watched.stderr);
        let flood: Vec<&String> = messages.iter().filter(|m| m.contains(marker)).collect();
        assert!(!flood.is_empty(), "no guest line reached the host log");
        for line in &messages {
            assert!(line.len() <= 1024, "a guest line of {} bytes", line.len());
        }
        let instances = 1 + ran.traps();
        let seconds = ran.watched.elapsed.as_secs() + 1;
        let allowed = 100 * instances * (seconds + 1);
        assert!(
            (messages.len() as u64) <= allowed,
            "{} guest lines forwarded; at most {allowed} allowed ({instances} instances, {seconds} s)",
            messages.len()
        );
        // The run offered 100 lines for each of 100 ordinary events and a flood: far more
        // than was forwarded.
        assert!(messages.len() < 10_000, "{} lines", messages.len());
        assert!(
            ran.watched.stderr.len() < 2 * 1024 * allowed as usize,
            "{} bytes of stderr",
            ran.watched.stderr.len()
        );
    }

    /// Stderr written in long lines and without end reaches the host log rate-limited and
    /// cut to 1 KiB; the event that floods forever is dead-lettered at its deadline.
    #[test]
    fn a_stderr_flood_reaches_the_host_log_rate_limited_and_capped() -> Result<()> {
        let lines = events_with(101, 50, "flood");
        let keys = format!("timeout = \"200ms\"\n{NO_FUEL_LIMIT}");
        let ran = Case::new("fixture-evil-stderr-flood", &keys, lines.clone())
            .args(&["--log-format", "json"])
            .run()?;
        ran.assert_succeeded_within_bounds();
        ran.assert_only_dead(&lines, "flood", "deadline");
        assert_rate_limited(&ran, "stderr-flood");
        Ok(())
    }

    /// The same through the `log` import, with lines ten times the cap.
    #[test]
    fn a_log_flood_reaches_the_host_log_rate_limited_and_capped() -> Result<()> {
        let lines = events_with(101, 50, "flood");
        let keys = format!("timeout = \"200ms\"\n{NO_FUEL_LIMIT}");
        let ran = Case::new("fixture-evil-log-flood", &keys, lines.clone())
            .args(&["--log-format", "json"])
            .run()?;
        ran.assert_succeeded_within_bounds();
        ran.assert_only_dead(&lines, "flood", "deadline");
        assert_rate_limited(&ran, "log-flood");
        Ok(())
    }

    /// Limits that let the guest build its output: the host's output caps, not memory or
    /// fuel, must be what stops it.
    fn roomy() -> String {
        format!("memory = \"256MiB\"\ntimeout = \"30s\"\n{NO_FUEL_LIMIT}")
    }

    /// One event turned into a million breaks `max_output_events` (1024 by default): it is
    /// dead-lettered as `output-cap` and none of its outputs is written.
    #[test]
    fn one_event_made_into_a_million_is_dead_lettered_as_output_cap() -> Result<()> {
        let lines = events_with(200, 120, "explode");
        let ran = Case::new("fixture-evil-fanout", &roomy(), lines.clone()).run()?;
        ran.assert_succeeded_within_bounds();
        ran.assert_only_dead(&lines, "explode", "output-cap");
        Ok(())
    }

    /// One event turned into a 64 MiB value breaks `max_value_size` (16 MiB by default).
    #[test]
    fn one_event_made_into_a_64_mib_value_is_dead_lettered_as_output_cap() -> Result<()> {
        let lines = events_with(200, 30, "huge");
        let ran = Case::new("fixture-evil-huge-value", &roomy(), lines.clone()).run()?;
        ran.assert_succeeded_within_bounds();
        ran.assert_only_dead(&lines, "huge", "output-cap");
        Ok(())
    }

    /// With the value cap raised, the same 64 MiB breaks a 1 MiB `max_output_bytes`: the
    /// events of the offending call are dead-lettered as `output-cap` (whether the host then
    /// narrows it down to the one event is its choice); nothing is lost or reordered.
    #[test]
    fn a_call_over_max_output_bytes_dead_letters_its_events_as_output_cap() -> Result<()> {
        let lines = events_with(200, 30, "huge");
        let keys = format!(
            "{}\nmax_value_size = \"128MiB\"\nmax_output_bytes = \"1MiB\"",
            roomy()
        );
        let ran = Case::new("fixture-evil-huge-value", &keys, lines.clone()).run()?;
        ran.assert_succeeded_within_bounds();
        let dead: Vec<&str> = ran
            .letters
            .iter()
            .map(|l| l["event"]["value"].as_str().unwrap_or_default())
            .collect();
        assert!(dead.contains(&"huge"), "{dead:?}");
        for letter in &ran.letters {
            assert_eq!(letter["kind"], "output-cap", "{letter}");
        }
        let expected: Vec<&String> = lines
            .iter()
            .filter(|l| !dead.contains(&l.as_str()))
            .collect();
        assert_same_lines(&ran.out, &expected);
        Ok(())
    }
}

impl<'a> Case<'a> {
    fn global(mut self, global: &'a str) -> Case<'a> {
        self.global = global;
        self
    }

    fn args(mut self, args: &'a [&'a str]) -> Case<'a> {
        self.args = args;
        self
    }

    fn env(mut self, env: &'a [(&'a str, &'a str)]) -> Case<'a> {
        self.env = env;
        self
    }
}

/// Runs `weir check` and `weir run` on a pipeline file and returns (exit code, stderr) of
/// each: a refusal at load must look the same from both.
fn check_and_run(pipeline: &Path) -> Result<[(i32, String); 2]> {
    let mut results = Vec::new();
    for command in ["check", "run"] {
        let mut cmd = weir();
        cmd.arg(command).arg(pipeline);
        let watched = run_watched(cmd, TIME_BOUND)?;
        assert_within_bounds(&watched);
        results.push((watched.code(), watched.stderr));
    }
    Ok(results.try_into().expect("two commands"))
}

/// A one-stage pipeline `stdin -> stage a -> null` around a plugin file and extra stage keys.
fn one_stage(dir: &Dir, plugin: &Path, keys: &str) -> Result<PathBuf> {
    dir.write(
        "p.toml",
        &format!(
            "[sources.s]\ntype = \"stdin\"\n\n[stages.a]\ninputs = [\"s\"]\nplugin = \"{}\"\n{keys}\n\n[sinks.o]\ninputs = [\"a\"]\ntype = \"null\"\n",
            plugin.display()
        ),
    )
}

/// Asserts that both commands refused the pipeline with exit 2 and one last line on stderr
/// holding every one of `needles`.
fn assert_refused(results: &[(i32, String); 2], needles: &[&str]) {
    for (code, stderr) in results {
        assert_eq!(*code, 2, "{stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("weir: error: "), "{stderr}");
        for needle in needles {
            assert!(last.contains(needle), "no {needle:?} in: {last}");
        }
    }
}

mod load_refusals {
    //! Plugins the host must refuse before any event is read: exit 2, one line naming the
    //! file and the reason, from `weir check` and `weir run` alike.

    use super::*;

    fn refused(plugin: &Path, keys: &str, needles: &[&str]) -> Result<()> {
        let dir = Dir::new()?;
        let pipeline = one_stage(&dir, plugin, keys)?;
        assert_refused(&check_and_run(&pipeline)?, needles);
        Ok(())
    }

    #[test]
    fn a_file_that_is_not_webassembly_is_refused() -> Result<()> {
        let dir = Dir::new()?;
        let file = dir.write("text.wasm", "this is not a plugin\n")?;
        refused(
            &file,
            "",
            &[&file.display().to_string(), "not a WebAssembly file"],
        )
    }

    #[test]
    fn a_core_module_is_refused_as_not_a_component() -> Result<()> {
        let dir = Dir::new()?;
        let file = dir.write_bytes("core.wasm", b"\0asm\x01\0\0\0")?;
        refused(
            &file,
            "",
            &[
                &file.display().to_string(),
                "a core WebAssembly module, not a component",
            ],
        )
    }

    #[test]
    fn a_component_of_another_world_is_refused_as_not_implementing_the_stage_world() -> Result<()> {
        let file = plugin("fixture-evil-other-world");
        refused(
            &file,
            "",
            &[
                &file.display().to_string(),
                "does not implement the `stage` world",
            ],
        )
    }

    #[test]
    fn a_plugin_built_against_an_unknown_contract_version_is_refused_naming_it() -> Result<()> {
        let file = plugin("fixture-evil-unknown-version");
        refused(
            &file,
            "",
            &[
                &file.display().to_string(),
                "weir:stage/types@0.9.0",
                "this host speaks weir:stage@0.2 or weir:stage@0.1",
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
            &file,
            "",
            &[&file.display().to_string(), "over the", "limit"],
        )
    }

    #[test]
    fn an_init_that_returns_an_error_is_refused_naming_the_stage() -> Result<()> {
        refused(
            &plugin("fixture-bad-init"),
            "settings = { database = \"db.internal\" }",
            &[
                "stage `a`",
                "init returned an error: cannot reach the database at db.internal",
            ],
        )
    }

    /// `init` gets 100 events' fuel; an endless `init` spends it and traps.
    #[test]
    fn an_init_that_never_returns_is_refused_when_its_fuel_runs_out() -> Result<()> {
        refused(
            &plugin("fixture-evil-loop-init"),
            "timeout = \"30s\"\nfuel = 10_000",
            &["stage `a`", "init", "out-of-fuel"],
        )
    }

    #[test]
    fn an_init_that_never_returns_is_refused_at_its_deadline() -> Result<()> {
        refused(
            &plugin("fixture-evil-loop-init"),
            &format!("timeout = \"100ms\"\n{NO_FUEL_LIMIT}"),
            &["stage `a`", "init", "deadline"],
        )
    }
}

mod capabilities {
    //! Deny by default: no files, no environment, no network, unless the stage grants them.

    use super::*;

    #[test]
    fn a_plugin_importing_the_filesystem_is_refused_without_a_dirs_grant() -> Result<()> {
        let dir = Dir::new()?;
        let file = plugin("fixture-evil-fs");
        let pipeline = one_stage(&dir, &file, "")?;
        assert_refused(
            &check_and_run(&pipeline)?,
            &[
                &file.display().to_string(),
                "imports `wasi:filesystem/",
                "does not grant",
            ],
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
            "grant = { dirs = [{ host = \"data\", guest = \"/data\" }] }",
            lines.iter().map(|l| l.to_string()).collect(),
        )
        .run_in(&dir, Some(Path::new("/")))?;
        assert_eq!(ran.watched.code(), 0, "{}", ran.watched.stderr);
        assert_within_bounds(&ran.watched);
        assert_eq!(
            ran.out,
            [
                "hello from the granted folder",
                "escape",
                "hello.txt",
                "last"
            ]
        );
        let refused: Vec<&str> = ran
            .letters
            .iter()
            .map(|l| l["event"]["value"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(refused, &lines[2..7]);
        for letter in &ran.letters {
            assert_eq!(letter["kind"], "reject", "{letter}");
            assert!(!message(letter).contains("root:"), "{letter}");
        }
        assert!(!dir.path("data/new.txt").exists(), "the guest wrote a file");
        Ok(())
    }

    #[test]
    fn plugin_inspect_shows_the_filesystem_import_as_refused() -> Result<()> {
        let out = weir()
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
    /// here to reach the socket check: without `network = true` the sockets are refused.
    #[test]
    fn a_plugin_importing_sockets_is_refused_without_a_network_grant() -> Result<()> {
        let dir = Dir::new()?;
        std::fs::create_dir(dir.path("data"))?;
        let file = plugin("fixture-evil-net");
        let pipeline = one_stage(
            &dir,
            &file,
            "grant = { dirs = [{ host = \"data\", guest = \"/data\" }] }",
        )?;
        assert_refused(
            &check_and_run(&pipeline)?,
            &[
                &file.display().to_string(),
                "imports `wasi:sockets/",
                "does not grant",
            ],
        );
        Ok(())
    }

    #[test]
    fn a_plugin_importing_sockets_is_refused_with_no_grant_at_all() -> Result<()> {
        let dir = Dir::new()?;
        let file = plugin("fixture-evil-net");
        let pipeline = one_stage(&dir, &file, "")?;
        assert_refused(
            &check_and_run(&pipeline)?,
            &[
                &file.display().to_string(),
                "imports `wasi:",
                "does not grant",
            ],
        );
        Ok(())
    }

    #[test]
    fn a_plugin_importing_sockets_loads_when_network_and_dirs_are_granted() -> Result<()> {
        let dir = Dir::new()?;
        std::fs::create_dir(dir.path("data"))?;
        let pipeline = one_stage(
            &dir,
            &plugin("fixture-evil-net"),
            "grant = { dirs = [{ host = \"data\", guest = \"/data\" }], network = true }",
        )?;
        let out = weir().arg("check").arg(&pipeline).output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    const SECRET: (&str, &str) = ("SECRET", "hunter2");
    const OTHER: (&str, &str) = ("OTHER_VARIABLE", "also-private");

    #[test]
    fn without_an_env_grant_the_guest_sees_no_environment_variables() -> Result<()> {
        let lines = vec!["a".to_string(), "b".to_string()];
        let ran = Case::new("fixture-evil-env", "", lines)
            .env(&[SECRET, OTHER])
            .run()?;
        ran.assert_succeeded_within_bounds();
        assert_eq!(ran.out, ["", ""], "the guest saw variables");
        Ok(())
    }

    #[test]
    fn an_env_grant_shows_the_guest_only_the_named_variables() -> Result<()> {
        let lines = vec!["a".to_string(), "b".to_string()];
        let ran = Case::new("fixture-evil-env", "grant = { env = [\"SECRET\"] }", lines)
            .env(&[SECRET, OTHER])
            .run()?;
        ran.assert_succeeded_within_bounds();
        assert_eq!(ran.out, ["SECRET=hunter2", "SECRET=hunter2"]);
        Ok(())
    }
}

mod breaker {
    //! The circuit breaker: a stage whose plugin keeps failing stops costing the pipeline.

    use super::*;

    /// A `generate` source of `count` events into one stage of `plugin` and a null sink.
    fn generated(dir: &Dir, plugin_name: &str, keys: &str, count: u64) -> Result<PathBuf> {
        dir.write(
            "p.toml",
            &format!(
                r#"
[sources.gen]
type = "generate"
count = {count}
size = 100

[stages.hostile]
inputs = ["gen"]
plugin = "{plugin}"
{keys}

[sinks.out]
inputs = ["hostile"]
type = "null"

[dead_letter]
type = "file"
path = "dead.jsonl"
"#,
                plugin = plugin(plugin_name).display(),
            ),
        )
    }

    #[test]
    fn a_tripped_breaker_with_on_error_stop_exits_1_naming_the_stage() -> Result<()> {
        let dir = Dir::new()?;
        let pipeline = generated(
            &dir,
            "fixture-evil-trap-every",
            "on_error = \"stop\"\nbreaker = { window = 100, threshold = 0.5, cooldown = \"5s\" }",
            100_000,
        )?;
        let mut cmd = weir();
        cmd.arg("run").arg(&pipeline);
        let watched = run_watched(cmd, TIME_BOUND)?;
        assert_within_bounds(&watched);
        assert_eq!(watched.code(), 1, "{}", watched.stderr);
        let last = watched.stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains("stage `hostile`") && last.contains("circuit breaker"),
            "{}",
            watched.stderr
        );
        // The last failure is named: the plugin's trap, reported as a panic.
        assert!(
            last.contains("panic") || last.contains("unreachable"),
            "{last}"
        );
        Ok(())
    }

    #[test]
    fn a_tripped_breaker_with_on_error_drop_lets_the_run_end_in_bounded_time() -> Result<()> {
        let dir = Dir::new()?;
        let pipeline = generated(
            &dir,
            "fixture-evil-trap-every",
            "on_error = \"drop\"\nbreaker = { window = 100, threshold = 0.5, cooldown = \"5s\" }",
            100_000,
        )?;
        let mut cmd = weir();
        cmd.arg("run").arg(&pipeline);
        let watched = run_watched(cmd, TIME_BOUND)?;
        assert_eq!(watched.code(), 0, "{}", watched.stderr);
        assert_within_bounds(&watched);
        assert!(
            watched.stderr.contains("100000 in, 0 out"),
            "{}",
            watched.stderr
        );
        assert!(
            support::legacy::dead_letters(&dir.path("dead.jsonl"))?.is_empty(),
            "`drop` wrote dead letters"
        );
        Ok(())
    }

    /// A plugin that spends a whole 50 ms deadline on every event would take 20 batches ×
    /// 20 traps × 50 ms = 20 s over 5,000 events. With the breaker open after the first
    /// batch, the rest fail at once as `breaker-open` and the run takes a few seconds.
    #[test]
    fn an_open_breaker_fails_events_at_once_as_breaker_open() -> Result<()> {
        let dir = Dir::new()?;
        let pipeline = generated(
            &dir,
            "fixture-evil-loop-every",
            &format!(
                "timeout = \"50ms\"\n{NO_FUEL_LIMIT}\nbreaker = {{ window = 100, threshold = 0.5, cooldown = \"60s\" }}"
            ),
            5_000,
        )?;
        let mut cmd = weir();
        cmd.arg("run").arg(&pipeline);
        let watched = run_watched(cmd, TIME_BOUND)?;
        assert_eq!(watched.code(), 0, "{}", watched.stderr);
        assert_within_bounds(&watched);
        assert!(
            watched.elapsed < Duration::from_secs(10),
            "{:?}",
            watched.elapsed
        );
        let letters = support::legacy::dead_letters(&dir.path("dead.jsonl"))?;
        assert_eq!(letters.len(), 5_000);
        let open = letters
            .iter()
            .filter(|l| l["kind"] == "breaker-open")
            .count();
        assert!(
            open >= 5_000 - 2 * 256,
            "{open} events failed as breaker-open"
        );
        for letter in &letters {
            assert!(
                letter["kind"] == "deadline" || letter["kind"] == "breaker-open",
                "{letter}"
            );
        }
        Ok(())
    }

    /// Poison first, then good events paced over 3 s: the breaker opens on the poison,
    /// stays open for its 300 ms cooldown, and then a good batch closes it, so the later
    /// good events are delivered again, in order. A closed breaker starts a fresh window:
    /// were the poison still counted, it could not stay closed, as the spec says it does.
    #[test]
    fn after_the_cooldown_a_healthy_batch_closes_the_breaker() -> Result<()> {
        use std::io::Write;

        let dir = Dir::new()?;
        let pipeline = dir.write(
            "p.toml",
            &format!(
                r#"
[sources.in]
type = "stdin"

[stages.hostile]
inputs = ["in"]
plugin = "{poison}"
breaker = {{ window = 100, threshold = 0.5, cooldown = "300ms" }}

[sinks.out]
inputs = ["hostile"]
type = "file"
path = "out.txt"

[dead_letter]
type = "file"
path = "dead.jsonl"
"#,
                poison = plugin("fixture-poison").display()
            ),
        )?;
        let good: Vec<String> = (0..600).map(|i| format!("good {i}")).collect();
        let paced = good.clone();
        let feed: support::legacy::Feeder = Box::new(move |mut stdin| {
            let poison: String = (0..256).map(|i| format!("poison {i}\n")).collect();
            stdin.write_all(poison.as_bytes())?;
            stdin.flush()?;
            for line in &paced {
                writeln!(stdin, "{line}")?;
                stdin.flush()?;
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        });
        let mut cmd = weir();
        cmd.arg("run").arg(&pipeline);
        let watched = support::legacy::run_watched_feeding(cmd, TIME_BOUND, Some(feed))?;
        assert_eq!(watched.code(), 0, "{}", watched.stderr);
        assert_within_bounds(&watched);

        let written: Vec<String> = std::fs::read_to_string(dir.path("out.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let letters = support::legacy::dead_letters(&dir.path("dead.jsonl"))?;
        // Every good event was either written, in order, or failed fast while open; the
        // last 100 were sent well after the cooldown and must all have been written.
        let mut expected = good.iter();
        for line in &written {
            assert!(
                expected.any(|g| g == line),
                "{line} is not a good event in order"
            );
        }
        assert_eq!(&written[written.len().saturating_sub(100)..], &good[500..]);
        for letter in &letters {
            let value = letter["event"]["value"].as_str().unwrap_or_default();
            if value.starts_with("good") {
                assert_eq!(letter["kind"], "breaker-open", "{letter}");
            } else {
                assert!(
                    letter["kind"] == "panic" || letter["kind"] == "breaker-open",
                    "{letter}"
                );
            }
        }
        assert_eq!(written.len() + letters.len(), 856, "events were lost");
        Ok(())
    }
}
