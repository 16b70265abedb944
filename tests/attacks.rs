//! The second attack round, through the `weir` binary: each test is a hole that was open (a
//! plugin blocked in a host call escaping its deadline, guest text copied whole and raw, a
//! compile cache that trusted file names, a canary blind to a version that fails everything,
//! plugin paths that are not files) and proves it is closed.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use support::{Dir, PipelineFile, Sink, Source, Stage, Stdin, dead_letters, plugin, read_lines};

/// How long a test waits for something a sleeping plugin must not delay: far below the
/// minute the fixture sleeps, far above a loaded machine's slowest honest run.
const BOUND: Duration = Duration::from_secs(30);

/// A token for the admin API in these tests.
const TOKEN: &str = "attack-test-token-0123456789";

fn sleeper(timeout: &str) -> Stage {
    Stage::plugin(plugin("fixture-evil-sleep"))
        .timeout(timeout)
        // Its `read:` events open files, so it imports the filesystem: a folder must be granted.
        .grant_dir("data", "/data")
}

/// A stage that sleeps (a WASI clock wait) on one event and blocks for ever reading a FIFO on
/// another is stopped at its deadline both times, as `deadline`, and every other event flows.
#[test]
fn a_plugin_waiting_in_a_host_call_is_stopped_at_its_deadline_and_the_rest_flows() -> Result<()> {
    let dir = Dir::new()?;
    std::fs::create_dir(dir.path("data"))?;
    let fifo = dir.path("data/fifo");
    ensure!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()?
            .success(),
        "mkfifo failed"
    );
    let input = dir.write_lines("in.txt", &["a", "sleep", "b", "read:/data/fifo", "c"])?;
    let file = PipelineFile::new()
        .source("in", Source::file(&input))
        .stage("s", sleeper("200ms").inputs(&["in"]))
        .sink("out", Sink::file("out.txt").inputs(&["s"]))
        .dead_letters("dead.jsonl")
        .write(&dir)?;
    let started = Instant::now();
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    ensure!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    assert_eq!(read_lines(&dir.path("out.txt"))?, ["a", "b", "c"]);
    let letters = dead_letters(&dir.path("dead.jsonl"))?;
    let mut failed: Vec<(&str, &str)> = letters
        .iter()
        .map(|l| (l.value(), l.kind.as_str()))
        .collect();
    failed.sort_unstable();
    assert_eq!(
        failed,
        [("read:/data/fifo", "deadline"), ("sleep", "deadline")]
    );
    assert!(
        letters[0].message.contains("waiting in a host call"),
        "{letters:?}"
    );
    Ok(())
}

/// An `init` that sleeps is refused by `weir check` at its deadline, naming it, in bounded
/// time: a plugin cannot hold `weir check` (or a run's start) for as long as it likes.
#[test]
fn an_init_asleep_in_a_host_call_is_refused_at_its_deadline() -> Result<()> {
    let dir = Dir::new()?;
    std::fs::create_dir(dir.path("data"))?;
    let file = PipelineFile::new()
        .source("in", Source::stdin())
        .stage(
            "s",
            sleeper("200ms")
                .inputs(&["in"])
                .setting("sleep_in_init", true),
        )
        .sink("out", Sink::stdout().inputs(&["s"]))
        .write(&dir)?;
    let started = Instant::now();
    let (code, _, stderr) = dir.check(&file)?;
    ensure!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("stages.s.plugin") && stderr.contains("init trapped (deadline)"),
        "{stderr}"
    );
    Ok(())
}

/// SIGTERM drains a pipeline whose plugin sleeps in every call: each call ends at its
/// deadline, so the drain ends, and the run exits 0 with the events it had read accounted for.
#[test]
fn a_signal_drains_a_pipeline_whose_plugin_sleeps() -> Result<()> {
    let dir = Dir::new()?;
    std::fs::create_dir(dir.path("data"))?;
    let file = PipelineFile::new()
        .linger("1ms")
        .source("in", Source::stdin())
        .stage("s", sleeper("300ms").inputs(&["in"]))
        .sink("out", Sink::file("out.txt").inputs(&["s"]))
        .dead_letters("dead.jsonl")
        .write(&dir)?;
    let mut p = dir.start(&file)?;
    use std::io::Write;
    writeln!(p.stdin(), "sleep")?;
    p.stdin().flush()?;
    // Whatever the call is doing now, the signal must end the run within its deadline or so.
    std::thread::sleep(Duration::from_millis(100));
    p.signal(libc::SIGTERM)?;
    let started = Instant::now();
    let ran = p.finish(BOUND)?;
    ensure!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    let report = ran.report();
    assert_eq!(
        report.events_in,
        report.events_out + report.dead_lettered,
        "{report:?}"
    );
    Ok(())
}

/// Three events rejected with a 16 MiB reason each: the dead letters keep a cut reason of at
/// most 1 KiB, saying how much was cut, instead of 48 MiB of it.
#[test]
fn a_sixteen_mib_reason_costs_at_most_a_kibibyte_per_dead_letter() -> Result<()> {
    let dir = Dir::new()?;
    let input = dir.write_lines("in.txt", &["long", "ok", "long", "long"])?;
    let file = PipelineFile::new()
        .source("in", Source::file(&input))
        .stage(
            "s",
            // Room (and fuel) for three 16 MiB reasons at once in the guest.
            Stage::plugin(plugin("fixture-evil-reason"))
                .inputs(&["in"])
                .memory("256MiB")
                .fuel(1_000_000_000),
        )
        .sink("out", Sink::file("out.txt").inputs(&["s"]))
        .dead_letters("dead.jsonl")
        .write(&dir)?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let size = std::fs::metadata(dir.path("dead.jsonl"))?.len();
    assert!(size < 8 << 10, "the dead letters take {size} bytes");
    let letters = dead_letters(&dir.path("dead.jsonl"))?;
    assert_eq!(letters.len(), 3);
    for letter in &letters {
        assert!(letter.message.len() <= 1024, "{}", letter.message.len());
        assert!(
            letter.message.ends_with(&format!(
                "[cut: {} more bytes]",
                (16 << 20) - letter.message.find('…').context("a cut")?
            )),
            "{}",
            &letter.message[letter.message.len().saturating_sub(60)..]
        );
    }
    assert!(
        ran.stderr().len() < 64 << 10,
        "stderr: {} bytes",
        ran.stderr().len()
    );
    Ok(())
}

/// A reason and a log line that hide `\nweir: error: …` cannot pass for the host's own error
/// line: guest text is one line, its line breaks escaped, in the log and in dead letters.
#[test]
fn a_plugin_cannot_forge_a_host_log_line() -> Result<()> {
    let dir = Dir::new()?;
    let input = dir.write_lines("in.txt", &["forge", "ok"])?;
    let file = PipelineFile::new()
        .source("in", Source::file(&input))
        .stage(
            "s",
            Stage::plugin(plugin("fixture-evil-reason")).inputs(&["in"]),
        )
        .sink("out", Sink::file("out.txt").inputs(&["s"]))
        .dead_letters("dead.jsonl")
        .write(&dir)?;
    let ran = dir.run_with(&file, &["--log", "warn,weir::guest=info"], Stdin::Null)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    for line in ran.stderr().lines() {
        assert!(
            !line.starts_with("weir: error: forged"),
            "a forged line: {line}"
        );
    }
    assert!(
        ran.stderr()
            .contains("ok\\nweir: error: forged by a plugin's log line"),
        "the log line is there, escaped: {}",
        ran.stderr()
    );
    let letters = dead_letters(&dir.path("dead.jsonl"))?;
    assert_eq!(
        letters[0].message,
        "bad\\nweir: error: forged by a plugin's reason"
    );
    Ok(())
}

/// A panic with a 1 MiB message: its dead letter names the panic in at most 1 KiB.
#[test]
fn a_huge_panic_message_is_cut() -> Result<()> {
    let dir = Dir::new()?;
    let input = dir.write_lines("in.txt", &["ok", "panic", "ok"])?;
    let file = PipelineFile::new()
        .source("in", Source::file(&input))
        .stage(
            "s",
            Stage::plugin(plugin("fixture-evil-reason"))
                .inputs(&["in"])
                .setting("reason_bytes", 1 << 20),
        )
        .sink("out", Sink::file("out.txt").inputs(&["s"]))
        .dead_letters("dead.jsonl")
        .write(&dir)?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let letters = dead_letters(&dir.path("dead.jsonl"))?;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].kind, "panic");
    assert!(
        letters[0].message.len() <= 1024,
        "{}",
        letters[0].message.len()
    );
    assert_eq!(read_lines(&dir.path("out.txt"))?, ["ok", "ok"]);
    Ok(())
}

/// The attack that worked: one plugin's compiled entry copied over another plugin's entry in
/// the compile cache made weir run the first plugin's code for the second (passthrough
/// printed upper case). An entry is now bound to its plugin's digest by a keyed tag, so the
/// copy is refused and the plugin compiled again: passthrough passes through.
#[test]
fn a_cache_entry_copied_over_another_plugins_is_never_run() -> Result<()> {
    let dir = Dir::new()?;
    let cache = dir.path("own-cache");
    let input = dir.write_lines("in.txt", &["abc"])?;
    let run = |name: &str, plugin_path: &Path| -> Result<Vec<String>> {
        let file = PipelineFile::new()
            .source("in", Source::file(&input))
            .stage("s", Stage::plugin(plugin_path).inputs(&["in"]))
            .sink("out", Sink::file(format!("{name}.txt")).inputs(&["s"]))
            .write_as(&dir, &format!("{name}.toml"))?;
        let out = support::weir()
            .env("WEIR_CACHE_DIR", &cache)
            .args(["run", "--quiet"])
            .arg(&file)
            .output()?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        read_lines(&dir.path(&format!("{name}.txt")))
    };
    let (pass, upper) = (plugin("passthrough"), plugin("uppercase"));
    assert_eq!(run("pass", &pass)?, ["abc"]);
    assert_eq!(run("upper", &upper)?, ["ABC"]);
    let entry_of = |plugin_path: &Path| -> Result<std::path::PathBuf> {
        let digest = support::sha256_hex(&std::fs::read(plugin_path)?);
        std::fs::read_dir(&cache)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&digest))
            })
            .context("no entry")
    };
    std::fs::copy(entry_of(&upper)?, entry_of(&pass)?)?;
    std::fs::remove_file(dir.path("pass.txt"))?;
    assert_eq!(
        run("pass", &pass)?,
        ["abc"],
        "passthrough ran uppercase's code"
    );
    Ok(())
}

/// A plugin path that is a FIFO, and `/dev/zero`, are refused at once: reading either would
/// hang or never end.
#[test]
fn a_plugin_path_that_is_not_a_regular_file_is_refused_at_once() -> Result<()> {
    let dir = Dir::new()?;
    let fifo = dir.path("plugin.wasm");
    ensure!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()?
            .success(),
        "mkfifo failed"
    );
    for path in [fifo.as_path(), Path::new("/dev/zero")] {
        let started = Instant::now();
        let out = support::weir()
            .args(["plugin", "inspect"])
            .arg(path)
            .stdin(Stdio::null())
            .output()?;
        ensure!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("not a regular file"), "{stderr}");
    }
    let file = PipelineFile::new()
        .source("in", Source::stdin())
        .stage("s", Stage::plugin(&fifo).inputs(&["in"]))
        .sink("out", Sink::stdout().inputs(&["s"]))
        .write(&dir)?;
    let started = Instant::now();
    let (code, _, stderr) = dir.check(&file)?;
    ensure!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("stages.s.plugin"), "{stderr}");
    Ok(())
}

/// Under a full-speed generator, a version that fails every event (a trap on each call, or a
/// reject of each event) is rolled back by the canary within its first `events`, breaker or
/// not: the breaker's `breaker-open` failures count too. The bad version's failures stay
/// within the canary's allowance plus what was already in flight when it decided.
#[test]
fn a_version_that_fails_everything_is_rolled_back_under_a_full_speed_generator() -> Result<()> {
    for bad in ["fixture-evil-trap-every", "fixture-fail-all"] {
        rolled_back_under_load(bad).with_context(|| format!("with {bad}"))?;
    }
    Ok(())
}

fn rolled_back_under_load(bad: &str) -> Result<()> {
    let dir = Dir::new()?;
    let canary_events = 1000;
    let file = PipelineFile::new()
        .source("gen", Source::generate(1_000_000_000))
        .stage(
            "s",
            Stage::plugin(plugin("passthrough"))
                .inputs(&["gen"])
                .canary(canary_events, 0.5)
                .on_error("drop"),
        )
        .sink("out", Sink::null().inputs(&["s"]))
        .admin_table({
            let mut t = support::Table::default();
            t.set("listen", "127.0.0.1:0");
            t.set("token", TOKEN);
            t
        })
        .write(&dir)?;
    let bound = dir.checked_bound(&file)?;
    let mut p = dir.start(&file)?;
    let line = p.wait_for_stderr("admin API listening on http://")?;
    let addr = line
        .rsplit("http://")
        .next()
        .context("an address")?
        .trim()
        .to_string();
    let out = dir
        .weir()
        .args(["reload", "--admin", &addr, "--stage", "s", "--plugin"])
        .arg(plugin(bad))
        .env("WEIR_ADMIN_TOKEN", TOKEN)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.wait_for_stderr("rolled back to version 1")?;
    let stages = dir
        .weir()
        .args(["stages", "--json", "--admin", &addr])
        .env("WEIR_ADMIN_TOKEN", TOKEN)
        .output()?;
    let stages: serde_json::Value = serde_json::from_slice(&stages.stdout)?;
    let stage = &stages[0];
    assert_eq!(stage["canary"]["state"], "rolled-back", "{stage:#}");
    let failed = stage["canary"]["failed"].as_u64().context("failed")?;
    // Allowed: half of 1000; then what was in flight (the bound) when the verdict came.
    assert!(
        failed <= canary_events as u64 / 2 + 1 + bound,
        "the bad version failed {failed} events (bound {bound})"
    );
    p.signal(libc::SIGTERM)?;
    let ran = p.finish(BOUND)?;
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    let report = ran.report();
    let dropped = report.node("s").failed;
    assert!(
        dropped <= canary_events as u64 / 2 + 1 + bound,
        "{dropped} events failed in all (bound {bound})"
    );
    Ok(())
}
