//! End-to-end tests of the data plane through the `weir` binary, with real plugins built
//! from source: what reaches the sinks and the dead letters, in what order, and what the
//! report of `weir run --report json` says about it.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use support::{
    Dir, PATIENCE, PipelineFile, Running, Sink, Source, Stage, Stdin, assert_same_lines,
    dead_letters, events_with, json_events, native_w3, plugin, read_lines, wait_until,
};

fn auth_log() -> std::path::PathBuf {
    support::workspace_root().join("examples/auth-log/data/OpenSSH_2k.log")
}

/// The quickstart pipeline prints exactly what the same plugin logic gives natively, and the
/// summary line (the human form of the report, the one test that reads it) says so.
#[test]
fn the_quickstart_prints_exactly_the_native_w3_output_and_a_summary_line() -> Result<()> {
    let dir = Dir::new()?;
    let root = support::workspace_root();
    for name in ["sshd-parse", "auth-filter", "redact-ip"] {
        plugin(name);
    }
    let out = dir
        .weir()
        .arg("run")
        .arg(root.join("examples/auth-log/pipeline.toml"))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "weir failed: {stderr}");
    let expected = native_w3(&std::fs::read(auth_log())?);
    assert_eq!(expected.lines().count(), 1225);
    assert!(
        out.stdout == expected.as_bytes(),
        "sandboxed output differs from the native run"
    );

    // `weir: 2000 in, 1225 out, 0 dead-lettered in 0.009s (226983 events/s, at most 2000
    // in flight) | parse: 2000 -> 2000 | filter: 2000 -> 1225, 775 filtered | redact: ...`
    let summary = stderr.lines().last().unwrap_or_default();
    let (totals, stages) = summary.split_once(" | ").context("no stage parts")?;
    let rest = totals
        .strip_prefix("weir: 2000 in, 1225 out, 0 dead-lettered in ")
        .with_context(|| format!("summary: {summary}"))?;
    let (seconds, rest) = rest.split_once("s (").context("no duration")?;
    seconds.parse::<f64>()?;
    let (rate, rest) = rest.split_once(" events/s, at most ").context("no rate")?;
    rate.parse::<u64>()?;
    let in_flight = rest
        .strip_suffix(" in flight)")
        .context("no in-flight figure")?;
    assert!(in_flight.parse::<u64>()? > 0, "{summary}");
    assert_eq!(
        stages,
        "parse: 2000 -> 2000 | filter: 2000 -> 1225, 775 filtered | redact: 1225 -> 1225"
    );
    Ok(())
}

/// W3 with several workers per stage and small batches keeps input order and every byte.
#[test]
fn w3_with_parallel_workers_keeps_order_and_matches_the_native_run() -> Result<()> {
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .batch_size(7)
        .source("log", Source::file(auth_log()).repeat(3))
        .stage(
            "parse",
            Stage::plugin(plugin("sshd-parse"))
                .inputs(&["log"])
                .workers(3),
        )
        .stage(
            "filter",
            Stage::plugin(plugin("auth-filter"))
                .inputs(&["parse"])
                .workers(2),
        )
        .stage(
            "redact",
            Stage::plugin(plugin("redact-ip"))
                .inputs(&["filter"])
                .workers(2),
        )
        .sink("out", Sink::file("out.jsonl").inputs(&["redact"]))
        .write(&dir)?;
    let ran = dir.run(&file)?;
    let report = ran.report();
    let once = native_w3(&std::fs::read(auth_log())?);
    assert_eq!(
        std::fs::read_to_string(dir.path("out.jsonl"))?,
        once.repeat(3)
    );
    assert_eq!((report.events_in, report.events_out), (6000, 3675));
    assert_eq!(report.node("parse").events_out, 6000);
    let filter = report.node("filter");
    assert_eq!((filter.events_out, filter.filtered), (3675, 2325));
    assert_eq!(report.node("redact").events_out, 3675);
    Ok(())
}

/// A plugin that traps on one event costs that event only: the rest arrive in order, the
/// poison event is dead-lettered with the trap kind and the panic message, and isolating it
/// in its batch of 256 cost one trap per halving.
#[test]
fn a_trap_on_one_event_dead_letters_it_and_the_rest_flow_in_order() -> Result<()> {
    let dir = Dir::new()?;
    let lines = events_with(1000, 613, "this is poison");
    dir.write_lines("in.txt", &lines)?;
    let file = PipelineFile::new()
        .source("in", Source::file("in.txt"))
        .stage(
            "risky",
            Stage::plugin(plugin("fixture-poison")).inputs(&["in"]),
        )
        .sink("out", Sink::file("out.txt").inputs(&["risky"]))
        .dead_letters("dead.jsonl")
        .write(&dir)?;
    let ran = dir.run(&file)?;
    let report = ran.report();
    let expected: Vec<&String> = lines.iter().filter(|l| !l.contains("poison")).collect();
    assert_same_lines(&read_lines(&dir.path("out.txt"))?, &expected);

    let letters = dead_letters(&dir.path("dead.jsonl"))?;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let letter = &letters[0];
    assert_eq!(
        (letter.kind.as_str(), letter.stage.as_str()),
        ("panic", "risky")
    );
    assert_eq!(letter.value(), "this is poison");
    assert!(letter.message.contains("poison event"), "{letter:?}");
    assert_eq!(
        letter.plugin_digest,
        support::sha256_hex(&std::fs::read(plugin("fixture-poison"))?)
    );
    assert_eq!((report.events_out, report.dead_lettered), (999, 1));
    let risky = report.node("risky");
    assert_eq!(risky.failures_of("panic"), 1);
    assert_eq!(risky.traps, 9, "log2(256) + 1 traps isolate one event");
    Ok(())
}

/// `retry` outcomes are retried with backoff; an event whose retries run out is dead-lettered
/// as `retries-exhausted` after its last attempt; meanwhile the other events flow on, in
/// order. The report counts every event sent back: 2 for each `flaky` event (seen three
/// times), 4 for the hopeless one.
#[test]
fn retries_recover_flaky_events_and_dead_letter_the_hopeless_one() -> Result<()> {
    let dir = Dir::new()?;
    dir.write_lines("in.txt", &["a", "flaky-1", "b", "never", "flaky-2", "c"])?;
    let file = PipelineFile::new()
        .source("in", Source::file("in.txt"))
        .stage(
            "remote",
            // One worker: the fixture counts an event's sightings in its own memory.
            Stage::plugin(plugin("fixture-flaky"))
                .inputs(&["in"])
                .retries(4)
                .setting("attempts", 3)
                .workers(1),
        )
        .sink("out", Sink::file("out.txt").inputs(&["remote"]))
        .dead_letters("dead.jsonl")
        .write(&dir)?;
    let ran = dir.run(&file)?;
    let report = ran.report();
    // Retried events leave the stage when they succeed, so they come after the others.
    assert_eq!(
        read_lines(&dir.path("out.txt"))?,
        ["a", "b", "c", "flaky-1", "flaky-2"]
    );
    let letters = dead_letters(&dir.path("dead.jsonl"))?;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0].kind, "retries-exhausted");
    assert_eq!(letters[0].attempts, 5);
    assert_eq!(letters[0].value(), "never");
    let remote = report.node("remote");
    assert_eq!(remote.retries, 2 + 2 + 4);
    assert_eq!(remote.failures_of("retries-exhausted"), 1);
    assert_eq!((remote.events_out, report.dead_lettered), (5, 1));
    Ok(())
}

/// The library entry point runs a pipeline and reports per-stage counts. It runs in a child
/// process of this test binary, so that the compile cache it takes from the environment is
/// the test's own and no variable of this process changes while other tests run.
#[test]
fn the_library_run_reports_counts_per_stage() -> Result<()> {
    const CHILD: &str = "WEIR_TEST_LIBRARY_RUN";
    if let Some(file) = std::env::var_os(CHILD) {
        let pipeline = weir::Pipeline::load(Path::new(&file))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let report = runtime.block_on(weir::run(
            &pipeline,
            tokio_util::sync::CancellationToken::new(),
        ))?;
        assert_eq!(report.events_in, 10_000);
        assert_eq!(
            report.events_out, 20_000,
            "fan-out gives each sink every event"
        );
        assert_eq!(report.node("again").unwrap().events_out, 10_000);
        assert_eq!(report.node("count").unwrap().bytes_out, 1_000_000);
        return Ok(());
    }
    let dir = Dir::new()?;
    let upper = plugin("uppercase");
    let file = PipelineFile::new()
        .source("gen", Source::generate(10_000).size(100))
        .stage("upper", Stage::plugin(&upper).inputs(&["gen"]))
        .stage("again", Stage::plugin(&upper).inputs(&["upper"]))
        .sink("count", Sink::null().inputs(&["again"]))
        .sink("copy", Sink::null().inputs(&["upper"]))
        .write(&dir)?;
    let out = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "the_library_run_reports_counts_per_stage",
            "--test-threads=1",
        ])
        .env(CHILD, &file)
        .env("WEIR_CACHE_DIR", dir.cache()?)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The library's running handle: a started pipeline can be looked at while it runs, its
/// stages reached by name, and stopped; waiting then gives the report of a drained run. In a
/// child process, as above.
#[test]
fn a_started_pipeline_can_be_looked_at_reached_and_stopped() -> Result<()> {
    const CHILD: &str = "WEIR_TEST_RUNNING_HANDLE";
    if let Some(file) = std::env::var_os(CHILD) {
        let pipeline = weir::Pipeline::load(Path::new(&file))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        // Built off the runtime: loading plugins is blocking work.
        let topology = weir::Topology::build(&pipeline)?;
        return runtime.block_on(async {
            let running = topology
                .start(
                    tokio_util::sync::CancellationToken::new(),
                    Default::default(),
                )
                .await?;
            ensure!(running.stage("upper").is_some() && running.stage("nope").is_none());
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while running.snapshot().events_in < 100_000 {
                ensure!(std::time::Instant::now() < deadline, "no events flowed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let seen = running.snapshot();
            ensure!(!seen.interrupted && seen.node("gen").is_some());
            running.stop();
            let report = running.wait().await?;
            ensure!(
                report.interrupted,
                "a stopped generator says it was stopped"
            );
            ensure!(report.events_in >= seen.events_in && report.events_in < 1_000_000_000);
            ensure!(
                report.node("count").unwrap().events_in == report.events_in,
                "everything read was drained to the sink"
            );
            Ok(())
        });
    }
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .source("gen", Source::generate(1_000_000_000).size(10))
        .stage("upper", Stage::plugin(plugin("uppercase")).inputs(&["gen"]))
        .sink("count", Sink::null().inputs(&["upper"]))
        .write(&dir)?;
    let out = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "a_started_pipeline_can_be_looked_at_reached_and_stopped",
            "--test-threads=1",
        ])
        .env(CHILD, &file)
        .env("WEIR_CACHE_DIR", dir.cache()?)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A sink that cannot write stops the run with a typed failure that names it and carries the
/// cause, and the report of what ran before. In a child process, as above.
#[test]
fn a_sink_that_cannot_write_stops_the_run_with_its_cause() -> Result<()> {
    const CHILD: &str = "WEIR_TEST_SINK_FAILURE";
    if let Some(file) = std::env::var_os(CHILD) {
        let pipeline = weir::Pipeline::load(Path::new(&file))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let result = runtime.block_on(weir::run(
            &pipeline,
            tokio_util::sync::CancellationToken::new(),
        ));
        let Err(weir::RunError::Stopped { failure, report }) = result else {
            anyhow::bail!("expected a stopped run, got {result:?}");
        };
        let weir::pipeline::NodeFailure::Write { node, cause } = &failure else {
            anyhow::bail!("expected a write failure, got {failure:?}");
        };
        ensure!(node == "sink `full`", "{node}");
        ensure!(cause.raw_os_error() == Some(libc::ENOSPC), "{cause}");
        ensure!(report.events_in > 0 && report.node("full").is_some());
        return Ok(());
    }
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .source("gen", Source::generate(100_000).size(10))
        .sink("full", Sink::file("/dev/full").inputs(&["gen"]))
        .write(&dir)?;
    let out = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "a_sink_that_cannot_write_stops_the_run_with_its_cause",
            "--test-threads=1",
        ])
        .env(CHILD, &file)
        .env("WEIR_CACHE_DIR", dir.cache()?)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Fan-in: a stage with two inputs gets every event of both, each input's events in their
/// order, none twice; a source feeding two stages (fan-out) gives each of them every event.
#[test]
fn a_stage_with_two_inputs_gets_every_event_of_both_in_their_order() -> Result<()> {
    let dir = Dir::new()?;
    let a: Vec<String> = (0..3000).map(|i| format!("a {i}")).collect();
    let b: Vec<String> = (0..2000).map(|i| format!("b {i}")).collect();
    dir.write_lines("a.txt", &a)?;
    dir.write_lines("b.txt", &b)?;
    let file = PipelineFile::new()
        .batch_size(64)
        .source("a", Source::file("a.txt"))
        .source("b", Source::file("b.txt"))
        .stage("upper", Stage::plugin(plugin("uppercase")).inputs(&["a"]))
        .stage(
            "merge",
            Stage::plugin(plugin("passthrough")).inputs(&["upper", "b"]),
        )
        .sink("out", Sink::file("out.txt").inputs(&["merge"]))
        .sink("copy", Sink::file("copy.txt").inputs(&["a"]))
        .write(&dir)?;
    let ran = dir.run(&file)?;
    let report = ran.report();
    let out = read_lines(&dir.path("out.txt"))?;
    let from_a: Vec<&String> = out.iter().filter(|l| l.starts_with("A ")).collect();
    let from_b: Vec<&String> = out.iter().filter(|l| l.starts_with("b ")).collect();
    let upper_a: Vec<String> = a.iter().map(|l| l.to_uppercase()).collect();
    assert_same_lines(&from_a, &upper_a);
    assert_same_lines(&from_b, &b);
    assert_eq!(
        out.len(),
        a.len() + b.len(),
        "an event came twice or from nowhere"
    );
    assert_same_lines(&read_lines(&dir.path("copy.txt"))?, &a);
    assert_eq!(report.events_in, 5000);
    assert_eq!(report.node("merge").events_in, 5000);
    assert_eq!(report.node("out").events_out, 5000);
    assert_eq!(
        report.events_out,
        5000 + 3000,
        "both sinks count their events"
    );
    Ok(())
}

/// With three workers per stage of a chain, poison events that trap in different batches are
/// each isolated and dead-lettered once, and every other event keeps its input order: ten
/// poison events in ten batches of 16 cost exactly 10 × (log2(16) + 1) traps.
#[test]
fn parallel_workers_isolate_each_poison_event_once_and_keep_the_order() -> Result<()> {
    let dir = Dir::new()?;
    let poisoned: Vec<usize> = (0..10).map(|k| 16 * (7 * k + 3) + 5).collect();
    let lines: Vec<String> = (0..2000)
        .map(|i| {
            if poisoned.contains(&i) {
                format!("poison {i}")
            } else {
                format!("event {i}")
            }
        })
        .collect();
    dir.write_lines("in.txt", &lines)?;
    let file = PipelineFile::new()
        .batch_size(16)
        .source("in", Source::file("in.txt"))
        .stage(
            "risky",
            Stage::plugin(plugin("fixture-poison"))
                .inputs(&["in"])
                .workers(3),
        )
        .stage(
            "upper",
            Stage::plugin(plugin("uppercase"))
                .inputs(&["risky"])
                .workers(3),
        )
        .sink("out", Sink::file("out.txt").inputs(&["upper"]))
        .dead_letters("dead.jsonl")
        .write(&dir)?;
    let ran = dir.run(&file)?;
    let report = ran.report();
    let expected: Vec<String> = lines
        .iter()
        .filter(|l| !l.starts_with("poison"))
        .map(|l| l.to_uppercase())
        .collect();
    assert_same_lines(&read_lines(&dir.path("out.txt"))?, &expected);
    let mut dead: Vec<String> = dead_letters(&dir.path("dead.jsonl"))?
        .iter()
        .map(|l| {
            assert_eq!(l.kind, "panic", "{l:?}");
            l.value().to_string()
        })
        .collect();
    dead.sort_by_key(|v| v[7..].parse::<usize>().unwrap_or(0));
    let poison: Vec<String> = poisoned.iter().map(|i| format!("poison {i}")).collect();
    assert_eq!(dead, poison, "one dead letter per poison event");
    let risky = report.node("risky");
    assert_eq!(risky.traps, 10 * 5);
    assert_eq!(risky.failures_of("panic"), 10);
    assert_eq!(report.node("upper").events_out, 1990);
    Ok(())
}

mod backpressure {
    //! Memory is bounded by configuration, never by luck: with a consumer slower than the
    //! source, the events in flight (emitted by a source, not yet written or dead-lettered)
    //! stay under the bound `weir check` prints and the report repeats, whatever the shape
    //! of the pipeline: retries, dead letters, fan-out, several workers.

    use super::*;

    /// A reader that takes its first `slow_bytes` at most 16 KiB per 2 ms, then the rest
    /// at full speed: a consumer far slower than the pipeline while every buffer fills.
    fn slow_reader(mut from: impl Read + Send + 'static, slow_bytes: u64) -> Slow {
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 << 10];
            let mut total = 0u64;
            loop {
                let n = from.read(&mut buf)?;
                if n == 0 {
                    return Ok(total);
                }
                total += n as u64;
                if total < slow_bytes {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    }

    type Slow = std::thread::JoinHandle<std::io::Result<u64>>;

    /// Makes a named pipe at `path` and reads it slowly, as [`slow_reader`]: a sink or dead
    /// letter "file" that is slower than the pipeline.
    fn slow_fifo(path: &Path, slow_bytes: u64) -> Result<Slow> {
        let status = std::process::Command::new("mkfifo").arg(path).status()?;
        ensure!(status.success(), "mkfifo failed");
        let path = path.to_path_buf();
        Ok(std::thread::spawn(move || {
            let fifo = std::fs::File::open(&path)?;
            slow_reader(fifo, slow_bytes).join().expect("the reader")
        }))
    }

    /// Runs a pipeline whose `stdout` sink (if any) is read slowly; checks the bound
    /// `weir check` prints is the report's, and the events in flight never passed it.
    fn run_bounded(
        dir: &Dir,
        file: &Path,
        slow_bytes: u64,
        fifo: Option<Slow>,
    ) -> Result<(support::Ran, u64)> {
        let bound = dir.checked_bound(file)?;
        let mut cmd = dir.weir();
        cmd.args(["run", "--report", "json"]).arg(file);
        let mut running = Running::start_keeping_stdout(cmd, Stdin::Null)?;
        let stdout = slow_reader(running.take_stdout().context("stdout")?, slow_bytes);
        let ran = running.finish(PATIENCE)?;
        // The readers end once weir has closed what they read, which only a run that got
        // as far as its report is sure to have done.
        let report = ran.report();
        eprintln!(
            "{} of {} events in flight at most; {} MiB resident at most",
            report.in_flight_max,
            report.in_flight_bound,
            ran.watched.peak_rss_mib()
        );
        let read = stdout.join().expect("the stdout reader")?;
        if let Some(fifo) = fifo {
            fifo.join().expect("the fifo reader")?;
        }
        assert_eq!(
            report.in_flight_bound, bound,
            "`weir check` and the report differ"
        );
        assert!(
            report.in_flight_max <= bound,
            "{} events were in flight; the bound is {bound}",
            report.in_flight_max
        );
        Ok((ran, read))
    }

    /// Peak resident memory of a run with small plugins and little in flight: the binary,
    /// the engine, a few instances and the runtime's threads (about 15 MiB when measured).
    const HOST_BASELINE_MIB: u64 = 40;

    /// 200 MB of events through one passthrough stage into a slow stdout: the events in
    /// flight stay under the bound, and so does memory, seen from outside: the process holds
    /// at most a few copies of what may be in flight on top of its baseline, never the
    /// 200 MB the source could pile up.
    #[test]
    fn a_slow_consumer_keeps_events_in_flight_and_memory_under_the_bound() -> Result<()> {
        let dir = Dir::new()?;
        let (count, size) = (20_000u64, 10_000u64);
        let file = PipelineFile::new()
            .batch_size(64)
            .buffer(2)
            .source("gen", Source::generate(count as i64).size(size as i64))
            .stage(
                "pass",
                Stage::plugin(plugin("passthrough")).inputs(&["gen"]),
            )
            .sink("out", Sink::stdout().inputs(&["pass"]))
            .write(&dir)?;
        let (ran, read) = run_bounded(&dir, &file, 16 << 20, None)?;
        let report = ran.report();
        assert_eq!(read, count * (size + 1), "every event was written");
        let bound_mib = (report.in_flight_bound * size) >> 20;
        assert!(
            bound_mib * 10 < (count * size) >> 20,
            "the bound ({bound_mib} MiB) must be far below the input"
        );
        // The source batch, the plugin's copy and the sink's buffer: three copies at most.
        let allowed = HOST_BASELINE_MIB + 3 * bound_mib;
        assert!(
            ran.watched.peak_rss_mib() <= allowed,
            "weir held {} MiB resident; {allowed} MiB allowed for {} events in flight at most",
            ran.watched.peak_rss_mib(),
            report.in_flight_bound
        );
        assert!(
            report.in_flight_max > 2 * 64,
            "the consumer never held the pipeline back: {} in flight at most",
            report.in_flight_max
        );
        Ok(())
    }

    /// Every event asks for one retry: retried batches wait on timers, holding their source
    /// batches open; the chain takes no new input while too many wait.
    #[test]
    fn retried_events_waiting_for_their_backoff_stay_under_the_bound() -> Result<()> {
        let dir = Dir::new()?;
        let lines: Vec<String> = (0..10_000).map(|i| format!("flaky-{i:06}")).collect();
        dir.write_lines("in.txt", &lines)?;
        let file = PipelineFile::new()
            .batch_size(64)
            .buffer(2)
            .source("in", Source::file("in.txt"))
            .stage(
                "remote",
                // One worker: the fixture counts an event's sightings in its own memory.
                Stage::plugin(plugin("fixture-flaky"))
                    .inputs(&["in"])
                    .setting("attempts", 2)
                    .workers(1),
            )
            .sink("out", Sink::stdout().inputs(&["remote"]))
            .write(&dir)?;
        let (ran, read) = run_bounded(&dir, &file, 64 << 10, None)?;
        let report = ran.report();
        assert_eq!(read, 10_000 * 13);
        assert_eq!(report.node("remote").retries, 10_000);
        assert_eq!(report.events_out, 10_000);
        Ok(())
    }

    /// Every event fails and is dead-lettered into a slow named pipe: the dead letters in
    /// flight count until written, and stay under the bound.
    #[test]
    fn dead_letters_written_slowly_stay_under_the_bound() -> Result<()> {
        let dir = Dir::new()?;
        let fifo = slow_fifo(&dir.path("dead.jsonl"), 1 << 20)?;
        let file = PipelineFile::new()
            .batch_size(64)
            .buffer(2)
            .source("gen", Source::generate(10_000).size(100))
            .stage(
                "bad",
                Stage::plugin(plugin("fixture-fail-all")).inputs(&["gen"]),
            )
            .sink("out", Sink::stdout().inputs(&["bad"]))
            .dead_letters("dead.jsonl")
            .write(&dir)?;
        let (ran, _) = run_bounded(&dir, &file, 0, Some(fifo))?;
        let report = ran.report();
        assert_eq!(report.dead_lettered, 10_000);
        assert!(
            report.in_flight_max > 2 * 64,
            "the dead-letter writer never held the pipeline back: {} in flight at most",
            report.in_flight_max
        );
        Ok(())
    }

    /// A source feeding two branches, one of them into a slow stdout: the slow branch holds
    /// the source back for both.
    #[test]
    fn a_fan_out_with_one_slow_branch_stays_under_the_bound() -> Result<()> {
        let dir = Dir::new()?;
        let file = PipelineFile::new()
            .batch_size(64)
            .buffer(2)
            .source("gen", Source::generate(50_000).size(100))
            .stage(
                "pass",
                Stage::plugin(plugin("passthrough")).inputs(&["gen"]),
            )
            .stage("upper", Stage::plugin(plugin("uppercase")).inputs(&["gen"]))
            .sink("out", Sink::stdout().inputs(&["pass"]))
            .sink("fast", Sink::null().inputs(&["upper", "pass"]))
            .write(&dir)?;
        let (ran, read) = run_bounded(&dir, &file, 1 << 20, None)?;
        let report = ran.report();
        assert_eq!(read, 50_000 * 101);
        assert_eq!(report.node("fast").events_out, 100_000);
        assert!(report.in_flight_max > 2 * 64, "{}", report.in_flight_max);
        Ok(())
    }

    /// Two workers and their reorder window, into a slow stdout.
    #[test]
    fn two_workers_and_their_reorder_window_stay_under_the_bound() -> Result<()> {
        let dir = Dir::new()?;
        let file = PipelineFile::new()
            .batch_size(64)
            .buffer(2)
            .source("gen", Source::generate(50_000).size(100))
            .stage(
                "pass",
                Stage::plugin(plugin("passthrough"))
                    .inputs(&["gen"])
                    .workers(2),
            )
            .sink("out", Sink::stdout().inputs(&["pass"]))
            .write(&dir)?;
        let (ran, read) = run_bounded(&dir, &file, 1 << 20, None)?;
        assert_eq!(read, 50_000 * 101);
        assert!(ran.report().in_flight_max > 2 * 64);
        Ok(())
    }
}

mod signals {
    //! SIGINT and SIGTERM stop the sources and drain; a second signal exits at once.

    use super::*;

    /// Writes `line 0`, `line 1`, … to a child's stdin until it stops reading; returns how
    /// many lines went into the pipe.
    fn numbered_lines() -> (support::Feeder, std::sync::mpsc::Receiver<u64>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let feed: support::Feeder = Box::new(move |mut stdin| {
            let mut sent = 0u64;
            // One write per line: a line shorter than PIPE_BUF goes into the pipe whole or
            // not at all, so `sent` counts exactly the lines the child could read. Bounded,
            // should the child never stop reading: 10 million lines at most.
            while sent < 10_000_000 {
                if stdin
                    .write_all(format!("line {sent}\n").as_bytes())
                    .is_err()
                {
                    break;
                }
                sent += 1;
            }
            let _ = tx.send(sent);
            Ok(())
        });
        (feed, rx)
    }

    /// SIGTERM while stdin streams: the source stops reading, everything it accepted is
    /// written, and weir exits 0. What was written is exactly the first N input lines,
    /// uppercased, where N is what the report says the source emitted and the sink wrote.
    #[test]
    fn sigterm_mid_stream_writes_an_exact_prefix_of_the_input_and_exits_0() -> Result<()> {
        let dir = Dir::new()?;
        let file = PipelineFile::new()
            .linger("1ms")
            .source("in", Source::stdin())
            .stage("upper", Stage::plugin(plugin("uppercase")).inputs(&["in"]))
            .sink("out", Sink::file("out.txt").inputs(&["upper"]))
            .write(&dir)?;
        let (feed, sent) = numbered_lines();
        let mut cmd = dir.weir();
        cmd.args(["run", "--report", "json"]).arg(&file);
        let running = Running::start(cmd, Stdin::Feed(feed))?;
        let out = dir.path("out.txt");
        wait_until(
            "the first 5000 lines to be written",
            || Ok((support::count_lines(&out) >= 5000).then_some(())),
            || running.stderr(),
        )?;
        running.signal(libc::SIGTERM)?;
        let ran = running.finish(PATIENCE)?;
        let report = ran.report();
        assert!(
            report.interrupted,
            "the report does not say it was interrupted"
        );
        let sent = sent.recv_timeout(PATIENCE)?;
        let written = read_lines(&out)?;
        let n = written.len() as u64;
        assert!(n >= 5000 && n <= sent, "{n} written of {sent} sent");
        let expected: Vec<String> = (0..n).map(|i| format!("LINE {i}")).collect();
        assert_same_lines(&written, &expected);
        assert_eq!(report.events_in, n, "the source emitted what was written");
        assert_eq!(report.events_out, n);
        assert!(
            ran.stderr()
                .contains("weir: stopping: draining what is in flight"),
            "{}",
            ran.stderr()
        );
        Ok(())
    }

    /// A second signal while the run drains exits at once with status 130: here the drain
    /// waits on a batch of three events that keep the stage busy for two seconds each.
    #[test]
    fn a_second_signal_while_draining_exits_130_at_once() -> Result<()> {
        let dir = Dir::new()?;
        let file = PipelineFile::new()
            .linger("1ms")
            .source("in", Source::stdin())
            .stage(
                "slow",
                Stage::plugin(plugin("fixture-evil-busy-wait"))
                    .inputs(&["in"])
                    .timeout("1m")
                    .unlimited_fuel(),
            )
            .sink("out", Sink::file("out.txt").inputs(&["slow"]))
            .write(&dir)?;
        let mut running = dir.start(&file)?;
        running.stdin().write_all(b"slow 1\nslow 2\nslow 3\n")?;
        running.stdin().flush()?;
        // The plugin says so when it starts on the first: the batch is accepted.
        running.wait_for_stderr("busy waiting")?;
        running.signal(libc::SIGTERM)?;
        running.wait_for_stderr("weir: stopping: draining")?;
        running.signal(libc::SIGINT)?;
        let watched = running.wait(PATIENCE)?;
        assert_eq!(watched.code(), 130, "{}", watched.stderr);
        assert_eq!(
            watched.last_line(),
            "weir: error: interrupted twice; exiting without draining"
        );
        // Draining would have written all three; at most the first was done in time.
        let written = read_lines(&dir.path("out.txt"))?;
        assert!(
            written.len() < 3,
            "weir drained instead of exiting: {written:?}"
        );
        Ok(())
    }
}

mod sinks {
    //! A sink or dead-letter sink that cannot write fails the run, naming itself.

    use super::*;

    /// Outputs to `/dev/full`: every write fails with ENOSPC. The run exits 1 with one last
    /// line that names the sink and the reason, and prints no report of success.
    #[test]
    fn a_sink_that_cannot_write_fails_the_run_naming_the_sink() -> Result<()> {
        let dir = Dir::new()?;
        let lines: Vec<String> = (0..5000).map(|i| format!("event {i}")).collect();
        dir.write_lines("in.txt", &lines)?;
        let file = PipelineFile::new()
            .source("in", Source::file("in.txt"))
            .stage("pass", Stage::plugin(plugin("passthrough")).inputs(&["in"]))
            .sink("full", Sink::file("/dev/full").inputs(&["pass"]))
            .sink("kept", Sink::file("kept.txt").inputs(&["pass"]))
            .write(&dir)?;
        let ran = dir.run(&file)?;
        assert_eq!(ran.code(), 1, "{}", ran.stderr());
        assert_eq!(
            ran.watched.last_line(),
            "weir: error: sink `full`: cannot write: No space left on device (os error 28)"
        );
        assert!(ran.report.is_err(), "a failed run printed a report");
        // The other sink wrote whole lines only, in order.
        let kept = read_lines(&dir.path("kept.txt"))?;
        assert_same_lines(&kept, &lines[..kept.len()]);
        Ok(())
    }

    /// Dead letters to `/dev/full`: the run exits 1 naming the dead-letter sink.
    #[test]
    fn a_dead_letter_sink_that_cannot_write_fails_the_run_naming_it() -> Result<()> {
        let dir = Dir::new()?;
        dir.write_lines("in.txt", &events_with(100, 50, "poison"))?;
        let file = PipelineFile::new()
            .source("in", Source::file("in.txt"))
            .stage(
                "risky",
                Stage::plugin(plugin("fixture-poison")).inputs(&["in"]),
            )
            .sink("out", Sink::null().inputs(&["risky"]))
            .dead_letters("/dev/full")
            .write(&dir)?;
        let ran = dir.run(&file)?;
        assert_eq!(ran.code(), 1, "{}", ran.stderr());
        assert_eq!(
            ran.watched.last_line(),
            "weir: error: dead-letter sink /dev/full: cannot write: No space left on device (os error 28)"
        );
        assert!(ran.report.is_err(), "a failed run printed a report");
        Ok(())
    }
}

mod sources {
    //! What sources accept: over-long lines.

    use super::*;
    use weir::pipeline::connectors::{MAX_LINE, OVERSIZED_KEPT};

    /// A file `first\n`, then a line of `len` NUL bytes that takes no memory to make (a hole
    /// in a sparse file), then `last\n`.
    fn file_with_a_long_line(path: &Path, len: usize) -> Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(b"first\n")?;
        f.set_len(6 + len as u64)?;
        let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
        f.write_all(b"\nlast\n")?;
        Ok(())
    }

    fn one_line_pipeline(dir: &Dir, source: Source) -> Result<std::path::PathBuf> {
        PipelineFile::new()
            .source("in", source)
            .stage("pass", Stage::plugin(plugin("passthrough")).inputs(&["in"]))
            .sink("out", Sink::file("out.txt").inputs(&["pass"]))
            .dead_letters("dead.jsonl")
            .write(dir)
    }

    /// A line one byte over `MAX_LINE` is dead-lettered at the source as `oversized` with
    /// its length and its first bytes; the lines around it flow on.
    #[test]
    fn a_file_line_over_the_line_limit_is_dead_lettered_as_oversized() -> Result<()> {
        let dir = Dir::new()?;
        file_with_a_long_line(&dir.path("in.txt"), MAX_LINE + 1)?;
        let file = one_line_pipeline(&dir, Source::file("in.txt"))?;
        let ran = dir.run(&file)?;
        let report = ran.report();
        assert_eq!(read_lines(&dir.path("out.txt"))?, ["first", "last"]);
        let letters = dead_letters(&dir.path("dead.jsonl"))?;
        assert_eq!(letters.len(), 1);
        let letter = &letters[0];
        assert_eq!(
            (letter.stage.as_str(), letter.kind.as_str()),
            ("in", "oversized")
        );
        assert!(
            letter.message.contains(&format!(
                "line 2 is {} bytes, over the {MAX_LINE}-byte limit",
                MAX_LINE + 1
            )),
            "{}",
            letter.message
        );
        assert_eq!(letter.value(), "\0".repeat(OVERSIZED_KEPT));
        assert_eq!(report.node("in").failures_of("oversized"), 1);
        assert_eq!(report.node("pass").events_in, 2);
        assert_eq!(report.dead_lettered, 1);
        Ok(())
    }

    /// A line of exactly `MAX_LINE` bytes is one event like any other.
    #[test]
    fn a_file_line_of_exactly_the_line_limit_is_one_event() -> Result<()> {
        let dir = Dir::new()?;
        file_with_a_long_line(&dir.path("in.txt"), MAX_LINE)?;
        let file = one_line_pipeline(&dir, Source::file("in.txt"))?;
        let ran = dir.run(&file)?;
        let report = ran.report();
        assert_eq!(report.node("pass").events_out, 3);
        assert_eq!(report.dead_lettered, 0);
        assert_eq!(
            std::fs::metadata(dir.path("out.txt"))?.len(),
            std::fs::metadata(dir.path("in.txt"))?.len()
        );
        Ok(())
    }

    /// The same over standard input, streamed 64 KiB at a time.
    #[test]
    fn a_stdin_line_over_the_line_limit_is_dead_lettered_as_oversized() -> Result<()> {
        let dir = Dir::new()?;
        let file = one_line_pipeline(&dir, Source::stdin())?;
        let feed: support::Feeder = Box::new(|mut stdin| {
            stdin.write_all(b"first\n")?;
            let zeros = vec![0u8; 64 << 10];
            let mut left = MAX_LINE + 1;
            while left > 0 {
                let n = left.min(zeros.len());
                stdin.write_all(&zeros[..n])?;
                left -= n;
            }
            stdin.write_all(b"\nlast\n")
        });
        let ran = dir.run_with(&file, &[], Stdin::Feed(feed))?;
        let report = ran.report();
        assert_eq!(read_lines(&dir.path("out.txt"))?, ["first", "last"]);
        let letters = dead_letters(&dir.path("dead.jsonl"))?;
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].kind, "oversized");
        assert_eq!(report.node("in").failures_of("oversized"), 1);
        Ok(())
    }
}

/// Contract 0.1 plugins run through `weir run` beside 0.2 ones: a 0.1 stage that upper-cases
/// (and rejects empty values), a 0.1 stage that asks for one retry of every value, then a
/// 0.2 stage; every output carries the version header of each of the three.
#[test]
fn contract_0_1_plugins_run_beside_0_2_plugins_in_one_pipeline() -> Result<()> {
    let dir = Dir::new()?;
    dir.write_lines("in.txt", &["alpha", "", "beta", "gamma"])?;
    let file = PipelineFile::new()
        .source("in", Source::file("in.txt"))
        .stage(
            "upper01",
            Stage::plugin(plugin("fixture-v01-upper")).inputs(&["in"]),
        )
        .stage(
            "retry01",
            Stage::plugin(plugin("fixture-v01-retry")).inputs(&["upper01"]),
        )
        .stage(
            "tag02",
            Stage::plugin(plugin("fixture-tag-a")).inputs(&["retry01"]),
        )
        .sink("out", Sink::file("out.jsonl").json().inputs(&["tag02"]))
        .dead_letters("dead.jsonl")
        .write(&dir)?;
    let ran = dir.run(&file)?;
    let report = ran.report();
    let out = json_events(&dir.path("out.jsonl"))?;
    let values: Vec<&str> = out.iter().map(|e| e.value()).collect();
    assert_eq!(values, ["ALPHA|a", "BETA|a", "GAMMA|a"]);
    let digest =
        |name: &str| -> Result<String> { Ok(support::short_digest(&std::fs::read(plugin(name))?)) };
    for event in &out {
        assert_eq!(event.version_of("upper01"), digest("fixture-v01-upper")?);
        assert_eq!(event.version_of("retry01"), digest("fixture-v01-retry")?);
        assert_eq!(event.version_of("tag02"), digest("fixture-tag-a")?);
    }
    let letters = dead_letters(&dir.path("dead.jsonl"))?;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(
        (letters[0].stage.as_str(), letters[0].kind.as_str()),
        ("upper01", "reject")
    );
    assert_eq!(letters[0].message, "empty value");
    assert_eq!(report.node("retry01").retries, 3);
    Ok(())
}

mod compile_cache {
    //! Where compiled plugins are kept: `$WEIR_CACHE_DIR` (empty: no cache), else
    //! `$XDG_CACHE_HOME/weir`, else `~/.cache/weir`; and a second load takes the entry.

    use super::*;

    /// A pipeline of one small plugin (the 0.1 uppercase) and `weir check` of it, with the
    /// environment's cache variables replaced by `vars`.
    fn check_with(dir: &Dir, vars: &[(&str, &Path)]) -> Result<String> {
        let upper = weir_test_plugins::plugin("fixture-v01-upper");
        let file = PipelineFile::new()
            .source("in", Source::stdin())
            .stage("upper", Stage::plugin(&upper).inputs(&["in"]))
            .sink("out", Sink::null().inputs(&["upper"]))
            .write(dir)?;
        let mut cmd = support::weir();
        cmd.env_remove("WEIR_CACHE_DIR")
            .env_remove("XDG_CACHE_HOME")
            .env("HOME", dir.path("home-unused"))
            .args(["--log", "weir_sandbox=debug"]);
        for (name, value) in vars {
            cmd.env(name, value);
        }
        let out = cmd.arg("check").arg(&file).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        ensure!(out.status.success(), "weir check failed: {stderr}");
        Ok(stderr)
    }

    /// The cache entries in `dir`: `<sha256>-<engine hash>.cwasm`.
    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".cwasm"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn digest() -> Result<String> {
        Ok(support::sha256_hex(&std::fs::read(
            weir_test_plugins::plugin("fixture-v01-upper"),
        )?))
    }

    fn assert_one_entry(dir: &Path) -> Result<()> {
        let found = entries(dir);
        assert_eq!(found.len(), 1, "{found:?} in {}", dir.display());
        assert!(
            found[0].starts_with(&format!("{}-", digest()?)),
            "{found:?}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        assert_eq!(mode & 0o077, 0, "the cache folder is not private: {mode:o}");
        Ok(())
    }

    /// `$WEIR_CACHE_DIR` names the cache folder, before `$XDG_CACHE_HOME`; the folder is private
    /// to the user, and a second load maps the entry instead of compiling.
    #[test]
    fn weir_cache_dir_names_the_cache_and_a_second_load_maps_the_entry() -> Result<()> {
        let dir = Dir::new()?;
        let cache = dir.path("chosen");
        let xdg = dir.path("xdg");
        let first = check_with(
            &dir,
            &[("WEIR_CACHE_DIR", &cache), ("XDG_CACHE_HOME", &xdg)],
        )?;
        assert_one_entry(&cache)?;
        assert!(!first.contains("taken from the cache"), "{first}");
        assert!(entries(&xdg.join("weir")).is_empty());
        let second = check_with(&dir, &[("WEIR_CACHE_DIR", &cache)])?;
        assert!(
            second.contains("compiled plugin taken from the cache"),
            "{second}"
        );
        Ok(())
    }

    /// Without `$WEIR_CACHE_DIR`, the cache is `$XDG_CACHE_HOME/weir`, not under `$HOME`.
    #[test]
    fn without_weir_cache_dir_the_cache_is_under_xdg_cache_home() -> Result<()> {
        let dir = Dir::new()?;
        let xdg = dir.path("xdg");
        check_with(
            &dir,
            &[("XDG_CACHE_HOME", &xdg), ("HOME", &dir.path("home"))],
        )?;
        assert_one_entry(&xdg.join("weir"))?;
        assert!(!dir.path("home").exists());
        Ok(())
    }

    /// Without either variable (an empty `$XDG_CACHE_HOME` counts as unset), the cache is
    /// `$HOME/.cache/weir`.
    #[test]
    fn without_either_variable_the_cache_is_under_home() -> Result<()> {
        let dir = Dir::new()?;
        check_with(&dir, &[("HOME", &dir.path("home"))])?;
        assert_one_entry(&dir.path("home/.cache/weir"))?;
        // An empty XDG_CACHE_HOME counts as unset.
        let other = dir.path("other");
        check_with(&dir, &[("HOME", &other), ("XDG_CACHE_HOME", Path::new(""))])?;
        assert_one_entry(&other.join(".cache/weir"))?;
        Ok(())
    }

    /// An empty `$WEIR_CACHE_DIR` turns the cache off: nothing is written anywhere, and a
    /// second load compiles again.
    #[test]
    fn an_empty_weir_cache_dir_turns_the_cache_off() -> Result<()> {
        let dir = Dir::new()?;
        let xdg = dir.path("xdg");
        let home = dir.path("home");
        for _ in 0..2 {
            let said = check_with(
                &dir,
                &[
                    ("WEIR_CACHE_DIR", Path::new("")),
                    ("XDG_CACHE_HOME", &xdg),
                    ("HOME", &home),
                ],
            )?;
            assert!(!said.contains("taken from the cache"), "{said}");
        }
        assert!(!xdg.exists() && !home.exists(), "a cache was written");
        Ok(())
    }
}

mod refused {
    //! Bad input gets an error that names the file, the line and the key: one case per
    //! table of the pipeline file, end to end through `weir check` (the config module's own
    //! tests have one case per check).

    use super::*;

    /// stdin -> stage `a` (passthrough) -> null sink.
    fn good() -> PipelineFile {
        with_stage(Stage::plugin(plugin("passthrough")))
    }

    /// stdin -> stage `a` as given -> null sink.
    fn with_stage(stage: Stage) -> PipelineFile {
        PipelineFile::new()
            .source("s", Source::stdin())
            .stage("a", stage.inputs(&["s"]))
            .sink("o", Sink::null().inputs(&["a"]))
    }

    /// `weir check` of `file` exits 2 with one last line `weir: error: FILE:LINE: \`KEY\`:
    /// ...` holding `message`, where LINE is the line of the file holding `at`.
    fn assert_refused(file: &PipelineFile, at: &str, key: &str, message: &str) -> Result<()> {
        let dir = Dir::new()?;
        let path = file.write(&dir)?;
        let (code, _, stderr) = dir.check(&path)?;
        assert_eq!(code, 2, "{stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        let place = format!(
            "weir: error: {}:{}: `{key}`: ",
            path.display(),
            file.line_of(at)
        );
        assert!(
            last.starts_with(&place) && last.contains(message),
            "expected {place}...{message}; got: {last}"
        );
        Ok(())
    }

    /// A good file passes `weir check`, which names it, counts its nodes and states the
    /// in-flight bound.
    #[test]
    fn a_good_file_passes_check_and_states_its_bound() -> Result<()> {
        let dir = Dir::new()?;
        let path = good().write(&dir)?;
        let (code, stdout, stderr) = dir.check(&path)?;
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.starts_with(&format!(
                "{}: ok: 1 sources, 1 stages, 1 sinks; at most ",
                path.display()
            )),
            "{stdout}"
        );
        assert!(dir.checked_bound(&path)? > 0);
        Ok(())
    }

    /// `[pipeline]`: a number out of its range.
    #[test]
    fn a_pipeline_value_out_of_range_is_named_with_its_line() -> Result<()> {
        assert_refused(
            &good().batch_size(0),
            "batch_size",
            "pipeline.batch_size",
            "must be a whole number from 1 to 65_536, found 0",
        )
    }

    /// `[sources.NAME]`: an unknown type, with the closest one.
    #[test]
    fn a_source_of_an_unknown_type_is_named_with_a_suggestion() -> Result<()> {
        assert_refused(
            &good().source("g", Source::generate(5).key("type", "generat")),
            "\"generat\"",
            "sources.g.type",
            "did you mean `generate`?",
        )
    }

    /// `[stages.NAME]`: an input no node has.
    #[test]
    fn an_unknown_input_is_named_with_its_line() -> Result<()> {
        assert_refused(
            &good().stage("b", Stage::plugin(plugin("passthrough")).inputs(&["nope"])),
            "\"nope\"",
            "stages.b.inputs",
            "unknown input `nope`",
        )
    }

    /// `[stages.NAME]`: stages that feed each other.
    #[test]
    fn a_cycle_is_named_with_its_line() -> Result<()> {
        let pass = plugin("passthrough");
        assert_refused(
            &good()
                .stage("b", Stage::plugin(&pass).inputs(&["c"]))
                .stage("c", Stage::plugin(&pass).inputs(&["b"])),
            "[\"c\"]",
            "stages.b.inputs",
            "the stages form a cycle: b -> c -> b",
        )
    }

    /// `[stages.NAME]`: a plugin file that does not exist.
    #[test]
    fn a_missing_plugin_file_is_named_with_its_line() -> Result<()> {
        assert_refused(
            &good().stage("b", Stage::plugin("/no/such/plugin.wasm").inputs(&["s"])),
            "/no/such/plugin.wasm",
            "stages.b.plugin",
            "plugin file not found: /no/such/plugin.wasm",
        )
    }

    /// `[stages.NAME]`: a value of the wrong type.
    #[test]
    fn a_stage_value_of_the_wrong_type_is_named_with_its_line() -> Result<()> {
        assert_refused(
            &good().stage(
                "b",
                Stage::plugin(plugin("passthrough"))
                    .inputs(&["s"])
                    .key("workers", "many"),
            ),
            "\"many\"",
            "stages.b.workers",
            "expected a whole number or \"auto\", found the text \"many\"",
        )
    }

    /// `[sinks.NAME]`: a key a sink does not take.
    #[test]
    fn an_unknown_sink_key_is_named_with_its_line() -> Result<()> {
        assert_refused(
            &good().sink("p", Sink::null().inputs(&["a"]).key("colour", "red")),
            "colour",
            "sinks.p.colour",
            "unknown key; a sink takes",
        )
    }

    /// `[dead_letter]`: a file sink without its path.
    #[test]
    fn a_file_dead_letter_sink_without_a_path_is_named_with_its_line() -> Result<()> {
        let mut table = support::Table::default();
        table.set("type", "file");
        assert_refused(
            &good().dead_letter_table(table),
            "type = \"file\"",
            "dead_letter.path",
            "a `file` dead-letter sink needs `path`",
        )
    }

    /// `[admin]`: a token too short to guess hard.
    #[test]
    fn a_short_admin_token_is_named_with_its_line() -> Result<()> {
        assert_refused(
            &good().admin_token("short"),
            "\"short\"",
            "admin.token",
            "the token must be at least 16 characters",
        )
    }

    /// A 0.2 plugin declares its settings; `weir check` refuses one it does not declare,
    /// suggesting the closest, and a value that is not of the declared type.
    #[test]
    fn a_setting_the_plugin_does_not_declare_is_named_with_a_suggestion() -> Result<()> {
        let stage = |key: &str, value: toml::Value| {
            with_stage(Stage::plugin(plugin("fixture-flaky")).setting(key, value))
        };
        assert_refused(
            &stage("attemps", 3.into()),
            "attemps",
            "stages.a.settings.attemps",
            "the plugin does not declare a setting `attemps`; did you mean `attempts`?",
        )?;
        assert_refused(
            &stage("attempts", "many".into()),
            "\"many\"",
            "stages.a.settings.attempts",
            "\"many\" is not an integer (the plugin declares `attempts` as integer)",
        )
    }
}

/// `weir plugin inspect` shows the world, imports, exports and digest of a real plugin.
#[test]
fn plugin_inspect_shows_the_world_imports_exports_and_digest() -> Result<()> {
    let path = plugin("sshd-parse");
    let out = support::weir()
        .args(["plugin", "inspect"])
        .arg(&path)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("world:   weir:stage/stage@0.3.0 (loads on this host)"),
        "{text}"
    );
    assert!(text.contains("weir:stage/types@0.3.0  (granted)"), "{text}");
    assert!(
        text.contains("  describe\n") && text.contains("  init\n") && text.contains("  process\n"),
        "{text}"
    );
    let digest = support::sha256_hex(&std::fs::read(&path)?);
    assert!(text.contains(&format!("sha256:  {digest}")), "{text}");
    Ok(())
}

/// W3 over 100 copies of the sshd log (200,000 lines) runs in under 64 MiB of resident memory
/// at the default settings, with the same output as the native stages: memory is bounded by
/// the configuration, not by the input's length. (BENCHMARKS.md times the full W3; this
/// checks its memory claim without timing anything.)
#[test]
fn w3_at_the_default_settings_stays_under_64_mib_resident() -> Result<()> {
    let dir = Dir::new()?;
    let stage = |name: &str, input: &str| Stage::plugin(plugin(name)).inputs(&[input]);
    let file = PipelineFile::new()
        .source("log", Source::file(auth_log()).repeat(100))
        .stage("parse", stage("sshd-parse", "log"))
        .stage("filter", stage("auth-filter", "parse"))
        .stage("redact", stage("redact-ip", "filter"))
        .sink("out", Sink::file("out.jsonl").inputs(&["redact"]))
        .write(&dir)?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    assert_eq!(ran.report().events_in, 200_000);
    let peak = ran.watched.peak_rss_mib();
    assert!(peak <= 64, "peak resident memory {peak} MiB");
    let once = native_w3(&std::fs::read(auth_log())?);
    let out = std::fs::read_to_string(dir.path("out.jsonl"))?;
    assert_eq!(out.len(), once.len() * 100);
    assert!(out.starts_with(&once) && out.ends_with(&once));
    Ok(())
}

/// `weir check --graph mermaid|dot` on the quickstart prints its topology: the source, the
/// three stages in one chain on the workers `"auto"` chose, the sink, every edge, and the dead
/// letters fed by every stage; a format it does not know is refused.
#[test]
fn weir_check_draws_the_quickstart_with_its_chain_in_mermaid_and_dot() -> Result<()> {
    let dir = Dir::new()?;
    let root = support::workspace_root();
    for name in ["sshd-parse", "auth-filter", "redact-ip"] {
        plugin(name);
    }
    let file = root.join("examples/auth-log/pipeline.toml");
    let graph = |format: &str| -> Result<(bool, String, String)> {
        let out = dir
            .weir()
            .args(["check", "--graph", format])
            .arg(&file)
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let stage = |name: &str| match cores {
        1 => name.to_string(),
        n => format!("{name} ({n} workers)"),
    };
    let chain = match cores {
        1 => "chain, 1 worker".to_string(),
        n => format!("chain, {n} workers"),
    };

    let (ok, mermaid, stderr) = graph("mermaid")?;
    assert!(ok, "{stderr}");
    let want = format!(
        "flowchart LR\n  n0[(\"source auth_log\")]\n  n1[\"{}\"]\n  n2[\"{}\"]\n  n3[\"{}\"]\n  \
         n4[/\"sink out\"/]\n  subgraph chain0 [\"{chain}\"]\n    n1\n    n2\n    n3\n  end\n  \
         n0 --> n1\n  n1 --> n2\n  n2 --> n3\n  n3 --> n4\n  dead[/\"dead letters\"/]\n  \
         n1 -.-> dead\n  n2 -.-> dead\n  n3 -.-> dead\n",
        stage("parse"),
        stage("filter"),
        stage("redact")
    );
    assert_eq!(mermaid, want);

    let (ok, dot, stderr) = graph("dot")?;
    assert!(ok, "{stderr}");
    assert!(
        dot.starts_with("digraph weir {\n") && dot.ends_with("}\n"),
        "{dot}"
    );
    for line in [
        "  n0 [label=\"source auth_log\", shape=cylinder];".to_string(),
        format!("  n1 [label=\"{}\", shape=box];", stage("parse")),
        "  n4 [label=\"sink out\", shape=folder];".to_string(),
        format!(
            "  subgraph cluster_0 {{\n    label=\"{chain}\";\n    style=dashed;\n    n1; n2; n3;\n  }}"
        ),
        "  n0 -> n1;\n  n1 -> n2;\n  n2 -> n3;\n  n3 -> n4;".to_string(),
        "  n3 -> dead [style=dashed];".to_string(),
    ] {
        assert!(dot.contains(&line), "no `{line}` in:\n{dot}");
    }
    // Graphviz reads it, where it is installed.
    if let Ok(mut child) = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(dot.as_bytes())?;
        assert!(child.wait()?.success(), "dot refused:\n{dot}");
    }

    let (ok, _, stderr) = graph("svg")?;
    assert!(!ok && stderr.contains("svg"), "{stderr}");
    Ok(())
}
