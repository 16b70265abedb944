//! End-to-end tests of observing a running pipeline, through the `weir` binary: `/metrics`
//! scraped during and after a run and checked against the run's report (and by `promtool
//! check metrics`), `/health`, `weir top --once`, `weir tap`, and the live page in headless
//! Chromium.
//!
//! `promtool` (Debian's `prometheus`) and `chromium` are looked for; a test that
//! needs one that is absent says so and passes, unless `WEIR_REQUIRE_PROMTOOL` or
//! `WEIR_REQUIRE_CHROMIUM` is set (as CI sets them), when it fails.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use support::{Dir, PipelineFile, Report, Running, Sink, Source, Stage, Stdin, plugin};

const TOKEN: &str = "observe-test-token-0123456789";
const PATIENCE: Duration = Duration::from_secs(60);

/// A scrape: each sample (`name{labels}`) and its value.
type Samples = BTreeMap<String, f64>;

fn get(addr: &str, path: &str) -> Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent.get(format!("http://{addr}{path}")).call()?;
    let status = response.status().as_u16();
    Ok((status, response.body_mut().read_to_string()?))
}

fn scrape(addr: &str) -> Result<(String, Samples)> {
    let (status, text) = get(addr, "/metrics")?;
    ensure!(status == 200, "/metrics answered {status}: {text}");
    let mut samples = Samples::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').context("a sample line")?;
        samples.insert(name.to_string(), value.parse()?);
    }
    Ok((text, samples))
}

/// The value of `name` for one node (and more labels, in the order the exposition writes
/// them); 0 when absent.
fn sample(samples: &Samples, name: &str, node: &str, kind: &str, more: &str) -> f64 {
    let key = format!("{name}{{component_id=\"{node}\",component_kind=\"{kind}\"{more}}}");
    samples.get(&key).copied().unwrap_or(0.0)
}

/// The address after `marker` on a line of stderr.
fn address(run: &mut Running, marker: &str) -> Result<String> {
    let line = run.wait_for_stderr(marker)?;
    let url = line[line.find(marker).unwrap() + marker.len()..].trim();
    Ok(url.split_once("://").context("a URL")?.1.to_string())
}

fn waiting(what: &str, mut ok: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while !ok()? {
        ensure!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// stdin, a stage that panics on `poison` (lowercase: it must come before the uppercasing),
/// a stage that uppercases, a file sink; dead letters to a file. One worker each, so that
/// the instances and traps the metrics show are the same on every machine.
fn pipeline(dir: &Dir) -> PipelineFile {
    PipelineFile::new()
        .linger("1ms")
        .source("in", Source::stdin())
        .stage(
            "poison",
            Stage::plugin(plugin("fixture-poison"))
                .inputs(&["in"])
                .workers(1),
        )
        .stage(
            "upper",
            Stage::plugin(plugin("uppercase"))
                .inputs(&["poison"])
                .workers(1),
        )
        .sink("out", Sink::file(dir.path("out.txt")).inputs(&["upper"]))
        .dead_letters(dir.path("dead.jsonl"))
}

/// Runs `promtool check metrics` on an exposition, when promtool is here.
fn promtool_check(exposition: &str) -> Result<()> {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        ensure!(
            std::env::var_os("WEIR_REQUIRE_PROMTOOL").is_none(),
            "promtool is not installed, and WEIR_REQUIRE_PROMTOOL is set"
        );
        eprintln!("promtool is not installed (Debian's `prometheus`): not checked by it");
        return Ok(());
    };
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(exposition.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "promtool check metrics failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Every counter of a scrape that the report also has, node by node.
fn assert_agrees(samples: &Samples, report: &Report) {
    for node in &report.nodes {
        let (n, k) = (node.name.as_str(), node.kind.as_str());
        let pairs = [
            ("weir_component_received_events_total", node.events_in),
            ("weir_component_sent_events_total", node.events_out),
            ("weir_component_filtered_events_total", node.filtered),
            ("weir_component_received_bytes_total", node.bytes_in),
            ("weir_component_sent_bytes_total", node.bytes_out),
        ];
        for (name, expected) in pairs {
            assert_eq!(
                sample(samples, name, n, k, "") as u64,
                expected,
                "{name} of {n}"
            );
        }
        for (kind, count) in &node.failures {
            let more = format!(",kind=\"{kind}\"");
            let errors = sample(samples, "weir_component_errors_total", n, k, &more);
            assert_eq!(errors as u64, *count, "errors of kind {kind} at {n}");
            let dead = sample(samples, "weir_dead_letters_total", n, k, &more);
            assert_eq!(dead as u64, *count, "dead letters of kind {kind} at {n}");
        }
        if k == "stage" {
            let calls = sample(samples, "weir_stage_calls_total", n, k, "");
            assert_eq!(calls as u64, node.calls, "calls of {n}");
            let fuel = sample(samples, "weir_stage_fuel_consumed_total", n, k, "");
            assert_eq!(fuel as u64, node.fuel, "fuel of {n}");
            let retries = sample(samples, "weir_stage_retries_total", n, k, "");
            assert_eq!(retries as u64, node.retries, "retries of {n}");
            let timed = sample(samples, "weir_stage_call_duration_seconds_count", n, k, "");
            assert_eq!(timed as u64, node.calls, "timed calls of {n}");
            let traps = [
                "panic",
                "out-of-fuel",
                "deadline",
                "memory-limit",
                "stack-overflow",
                "trap",
            ]
            .iter()
            .map(|t| {
                sample(
                    samples,
                    "weir_stage_traps_total",
                    n,
                    k,
                    &format!(",kind=\"{t}\""),
                )
            })
            .sum::<f64>();
            assert_eq!(traps as u64, node.traps, "traps of {n}");
        }
    }
    let dead: f64 = samples
        .iter()
        .filter(|(k, _)| k.starts_with("weir_dead_letters_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(dead as u64, report.dead_lettered, "dead letters in all");
}

#[test]
fn metrics_scraped_during_and_after_a_run_agree_with_its_report() -> Result<()> {
    let dir = Dir::new()?;
    let file = pipeline(&dir).metrics("30s").write(&dir)?;
    let mut run = dir.start(&file)?;
    let addr = address(&mut run, "metrics listening on ")?;
    let (status, health) = get(&addr, "/health")?;
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("\"running\""), "{health}");

    // During: 1,000 events, one of them poison; once the sink has written the others, the
    // counts of every node are those of events that went all the way through.
    let mut lines: Vec<String> = (0..1000).map(|i| format!("event {i}")).collect();
    lines[500] = "poison 500".to_string();
    writeln!(run.stdin(), "{}", lines.join("\n"))?;
    waiting("the sink writing 999 events", || {
        let (_, s) = scrape(&addr)?;
        Ok(sample(&s, "weir_component_sent_events_total", "out", "sink", "") == 999.0)
    })?;
    let (text, during) = scrape(&addr)?;
    promtool_check(&text)?;
    assert_eq!(
        sample(
            &during,
            "weir_component_received_events_total",
            "in",
            "source",
            ""
        ),
        1000.0
    );
    assert_eq!(
        sample(
            &during,
            "weir_component_errors_total",
            "poison",
            "stage",
            ",kind=\"panic\""
        ),
        1.0
    );
    // Isolating the poison event takes several calls that trap (the batch, then its halves).
    assert!(
        sample(
            &during,
            "weir_stage_traps_total",
            "poison",
            "stage",
            ",kind=\"panic\""
        ) >= 1.0
    );
    assert_eq!(
        sample(&during, "weir_stage_instances", "upper", "stage", ""),
        1.0
    );
    assert!(sample(&during, "weir_stage_memory_bytes", "upper", "stage", "") > 0.0);
    assert_eq!(
        sample(&during, "weir_stage_breaker_open", "upper", "stage", ""),
        0.0
    );
    assert!(text.contains(
        "weir_stage_version_info{component_id=\"upper\",component_kind=\"stage\",digest=\""
    ));
    assert!(text.contains("weir_stage_reloads_total{component_id=\"upper\",component_kind=\"stage\",result=\"swapped\"} 0"));
    assert!(
        during.contains_key("weir_buffer_events{component_id=\"out\",component_kind=\"sink\"}")
    );
    assert!(during.contains_key("weir_in_flight_bound"));
    assert!(during.contains_key("weir_in_flight_events"));

    // After: the input ends, the report is printed; `linger` keeps /metrics answering.
    run.close_stdin();
    let report_line = run.wait_for_stderr("\"events_in\"")?;
    let report: Report = serde_json::from_str(&report_line)?;
    let (text, after) = scrape(&addr)?;
    promtool_check(&text)?;
    assert_agrees(&after, &report);
    assert_eq!(report.events_in, 1000);
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(after["weir_in_flight_events"], 0.0);
    let (status, health) = get(&addr, "/health")?;
    assert_eq!(status, 503, "{health}");
    assert!(health.contains("\"stopped\""), "{health}");
    run.signal(libc::SIGTERM)?;
    run.wait(PATIENCE)?;
    Ok(())
}

/// A window stage's event time in the metrics while it runs (its input watermark, its timers
/// not yet fired, its late events and its state's size, as promtool reads them) and in
/// `weir top`: the watermark as UTC time and its lag.
#[test]
fn a_window_stage_shows_its_watermark_timers_and_late_events() -> Result<()> {
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .linger("1ms")
        .metrics("10ms")
        .admin_token(TOKEN)
        .source("in", Source::stdin())
        .stage(
            "stamp",
            Stage::plugin(plugin("fixture-stamp")).inputs(&["in"]),
        )
        .stage(
            "count",
            Stage::plugin(plugin("window-count")).inputs(&["stamp"]),
        )
        .sink("out", Sink::file(dir.path("out.jsonl")).inputs(&["count"]))
        .dead_letters(dir.path("dead.jsonl"))
        .write(&dir)?;
    let mut run = dir.start(&file)?;
    // With the admin API on, /metrics is served on its address.
    let addr = address(&mut run, "admin API listening on ")?;
    // Windows [0, 60 s) of k and j close when k's 61 s event moves the watermark past them;
    // k's [60 s, 120 s) stays open, and k at 5 s is late.
    writeln!(run.stdin(), "k,1000\nj,2000\nk,61000\nk,5000")?;
    let stage = |s: &Samples, name: &str| sample(s, name, "count", "stage", "");
    waiting("the late event counted", || {
        let (_, s) = scrape(&addr)?;
        Ok(stage(&s, "weir_late_events_total") == 1.0)
    })?;
    let (text, during) = scrape(&addr)?;
    promtool_check(&text)?;
    assert_eq!(stage(&during, "weir_watermark_seconds"), 61.0);
    assert_eq!(stage(&during, "weir_timers_pending"), 1.0);
    assert!(stage(&during, "weir_state_keys") >= 2.0, "{text}");
    assert_eq!(stage(&during, "weir_stage_timers_fired_total"), 2.0);
    let out = admin_command(&addr, &["top", "--once"]).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 61 s after the epoch: some 56 years behind the clock.
    let shown = text
        .lines()
        .find(|l| l.starts_with("event time at count: "))
        .with_context(|| format!("no event time for count: {text}"))?;
    ensure!(
        shown.starts_with("event time at count: watermark 1970-01-01T00:01:01.000Z, ")
            && shown.ends_with("d behind the clock"),
        "{shown}"
    );
    ensure!(!text.contains("event time at stamp"), "{text}");
    run.close_stdin();
    run.wait(PATIENCE)?;
    Ok(())
}

#[test]
fn a_file_source_reports_its_size_and_what_it_has_left_to_read() -> Result<()> {
    let dir = Dir::new()?;
    let log = dir.write_lines(
        "in.log",
        &(0..300).map(|i| format!("line {i}")).collect::<Vec<_>>(),
    )?;
    let size = std::fs::metadata(&log)?.len();
    let file = PipelineFile::new()
        .source("in", Source::file(&log).repeat(3))
        .stage("upper", Stage::plugin(plugin("uppercase")).inputs(&["in"]))
        .sink("out", Sink::null().inputs(&["upper"]))
        .metrics("30s")
        .write(&dir)?;
    let mut run = dir.start(&file)?;
    let addr = address(&mut run, "metrics listening on ")?;
    let report_line = run.wait_for_stderr("\"events_in\"")?;
    let report: Report = serde_json::from_str(&report_line)?;
    let (_, after) = scrape(&addr)?;
    assert_eq!(report.events_in, 900);
    assert_eq!(
        sample(&after, "weir_source_size_bytes", "in", "source", "") as u64,
        3 * size
    );
    assert_eq!(
        sample(&after, "weir_source_lag_bytes", "in", "source", ""),
        0.0
    );
    assert_agrees(&after, &report);
    run.signal(libc::SIGTERM)?;
    run.wait(PATIENCE)?;
    Ok(())
}

#[test]
fn a_taken_metrics_port_is_refused_naming_metrics_listen() -> Result<()> {
    let dir = Dir::new()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let mut table = support::Table::default();
    table.set("listen", taken.local_addr()?.to_string());
    let file = pipeline(&dir).metrics_table(table).write(&dir)?;
    let ran = dir.run(&file)?;
    assert_eq!(ran.code(), 2, "{}", ran.stderr());
    assert!(ran.stderr().contains("metrics.listen"), "{}", ran.stderr());
    assert!(ran.stderr().contains("is in use"), "{}", ran.stderr());
    Ok(())
}

#[test]
fn metrics_may_share_the_admin_address_without_its_token() -> Result<()> {
    let dir = Dir::new()?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mut admin = support::Table::default();
    admin.set("listen", listen.as_str());
    admin.set("token", TOKEN);
    let mut metrics = support::Table::default();
    metrics.set("listen", listen.as_str());
    let file = pipeline(&dir)
        .admin_table(admin)
        .metrics_table(metrics)
        .write(&dir)?;
    let mut run = dir.start(&file)?;
    run.wait_for_stderr("metrics served on the admin API's address")?;
    let (status, text) = get(&listen, "/metrics")?;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("weir_component_received_events_total"));
    let (status, _) = get(&listen, "/nodes")?;
    assert_eq!(
        status, 401,
        "the admin API's own routes still need the token"
    );
    run.close_stdin();
    run.wait(PATIENCE)?;
    Ok(())
}

/// A pipeline fed without end, a line every millisecond or so, until dropped.
struct Flowing {
    run: Running,
    stop: Arc<AtomicBool>,
}

impl Flowing {
    fn start(dir: &Dir, file: &Path) -> Result<Flowing> {
        Flowing::start_poisoned(dir, file, 0)
    }

    /// With, every `poison_every` lines (0: never), a line the `poison` stage panics on,
    /// whose text is markup: its reason quotes it.
    fn start_poisoned(dir: &Dir, file: &Path, poison_every: u64) -> Result<Flowing> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let feed: support::Feeder = Box::new(move |mut stdin| {
            let mut i = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                let mut chunk = String::new();
                for _ in 0..20 {
                    if poison_every > 0 && i % poison_every == poison_every - 1 {
                        chunk.push_str(&format!("poison {GUEST_MARKUP} {i}\n"));
                    } else {
                        chunk.push_str(&format!("event {i}\n"));
                    }
                    i += 1;
                }
                stdin.write_all(chunk.as_bytes())?;
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        });
        let mut cmd = dir.weir();
        cmd.args(["run", "--report", "json"]).arg(file);
        let run = Running::start(cmd, Stdin::Feed(feed))?;
        Ok(Flowing { run, stop })
    }

    /// Stops the run with SIGTERM; it must drain and exit 0.
    fn finish(self) -> Result<()> {
        let Flowing { run, stop } = self;
        stop.store(true, Ordering::Relaxed);
        run.signal(libc::SIGTERM)?;
        let watched = run.wait(PATIENCE)?;
        ensure!(watched.code() == 0, "weir failed: {}", watched.last_line());
        Ok(())
    }
}

fn admin_command(addr: &str, args: &[&str]) -> Command {
    let mut cmd = support::weir();
    cmd.args(args)
        .args(["--admin", addr])
        .env("WEIR_ADMIN_TOKEN", TOKEN);
    cmd
}

#[test]
fn weir_top_once_prints_every_node_with_its_rates_in_80_columns() -> Result<()> {
    let dir = Dir::new()?;
    let file = pipeline(&dir).admin_token(TOKEN).write(&dir)?;
    let mut flowing = Flowing::start(&dir, &file)?;
    let addr = address(&mut flowing.run, "admin API listening on ")?;
    let out = admin_command(&addr, &["top", "--once"]).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "weir top failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("weir top: running"), "{text}");
    assert!(text.contains("NODE"), "{text}");
    for node in ["in", "upper", "poison", "out"] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(node))
            .with_context(|| format!("no line for {node}: {text}"))?;
        let rate: f64 = line
            .split_whitespace()
            .nth(if node == "in" { 2 } else { 1 })
            .and_then(|r| r.trim_end_matches('k').parse().ok())
            .with_context(|| format!("no rate on {line:?}"))?;
        assert!(rate > 0.0, "{node} shows no rate: {text}");
    }
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    flowing.finish()
}

#[test]
fn weir_tap_prints_the_events_leaving_a_stage_up_to_its_limit() -> Result<()> {
    let dir = Dir::new()?;
    let file = pipeline(&dir).admin_token(TOKEN).write(&dir)?;
    let mut flowing = Flowing::start(&dir, &file)?;
    let addr = address(&mut flowing.run, "admin API listening on ")?;
    let out = admin_command(&addr, &["tap", "upper", "--limit", "5"]).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(out.status.success(), "weir tap failed: {stderr}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(events.len(), 5, "{stdout}");
    for e in &events {
        let value = e["value"].as_str().context("a value")?;
        assert!(
            value.starts_with("EVENT "),
            "the stage's output, uppercased: {value}"
        );
    }
    assert!(stderr.contains("tap `upper`: 5 events"), "{stderr}");
    assert!(stderr.contains("the limit was reached"), "{stderr}");

    // A sample of one in ten, of the source.
    let out = admin_command(&addr, &["tap", "in", "--limit", "3", "--sample", "0.1"]).output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);

    let out = admin_command(&addr, &["tap", "nowhere"]).output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no source, stage or sink is named `nowhere`")
    );
    let out = support::weir()
        .args(["tap", "upper", "--admin", &addr])
        .output()?;
    assert_eq!(out.status.code(), Some(2), "no token");
    flowing.finish()
}

#[test]
fn a_tap_whose_reader_falls_behind_loses_samples_and_says_so() -> Result<()> {
    let dir = Dir::new()?;
    // A source far faster than a reader that does not read: more than the tap's 32 chunks,
    // the socket's buffers and the pipe's fill within the pause.
    let file = PipelineFile::new()
        .source("in", Source::generate(200_000_000))
        .sink("out", Sink::null().inputs(&["in"]))
        .admin_token(TOKEN)
        .write(&dir)?;
    let mut run = dir.start(&file)?;
    let addr = address(&mut run, "admin API listening on ")?;
    let tap = admin_command(&addr, &["tap", "in", "--limit", "100000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(2));
    let out = tap.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(out.status.success(), "weir tap failed: {stderr}");
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(
        stderr.contains(&format!("tap `in`: {lines} events, ")),
        "{stderr}"
    );
    assert!(stderr.contains(" lost: this reader was slower"), "{stderr}");
    // The pipeline was never held: it still runs, and stops cleanly.
    run.signal(libc::SIGTERM)?;
    let ran = run.wait(PATIENCE)?;
    ensure!(ran.code() == 0, "weir failed: {}", ran.last_line());
    Ok(())
}

#[test]
fn weir_tap_of_dead_letters_shows_why_events_failed() -> Result<()> {
    let dir = Dir::new()?;
    // The shortest idle timeout there is: a tap on a quiet node keeps its connection by its
    // heartbeat, not by the events it has yet to see.
    let mut admin = support::Table::default();
    admin.set("listen", "127.0.0.1:0");
    admin.set("token", TOKEN);
    admin.set("idle_timeout", "100ms");
    let file = pipeline(&dir).admin_table(admin).write(&dir)?;
    let mut run = dir.start(&file)?;
    let addr = address(&mut run, "admin API listening on ")?;
    let mut tap = admin_command(&addr, &["tap", "poison", "--dead-letters", "--limit", "1"]);
    let tap = tap
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // The tap is open once the server has answered its head; it then waits, quiet, for
    // many idle timeouts.
    std::thread::sleep(Duration::from_millis(1500));
    writeln!(run.stdin(), "event 1\npoison 2\nevent 3")?;
    let out = tap.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tap `poison`: 1 event; the limit was reached"),
        "{stderr}"
    );
    let letter: serde_json::Value = serde_json::from_str(stdout.trim()).context("one letter")?;
    assert_eq!(letter["stage"], "poison");
    assert_eq!(letter["kind"], "panic");
    assert_eq!(letter["event"]["value"], "poison 2");
    run.close_stdin();
    run.wait(PATIENCE)?;
    Ok(())
}

/// Headless Chromium's arguments: as root, without a sandbox, and without the background
/// networking that a closed network refuses; virtual time runs the page's one-second polls
/// without waiting for them (it stops while a request is out, so each poll is answered).
const CHROMIUM_ARGS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--window-size=1150,420",
    "--virtual-time-budget=4000",
];

/// The `<g class="node …">` elements of a dumped DOM: each one's `data-node` and `data-rate`.
fn page_nodes(dom: &str) -> Vec<(String, f64)> {
    let attr = |tag: &str, name: &str| {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        Some(tag[start..].split('"').next()?.to_string())
    };
    dom.split("<g class=\"node")
        .skip(1)
        .filter_map(|rest| {
            let tag = rest.split('>').next()?;
            let rate = attr(tag, "data-rate")?.parse().ok()?;
            Some((attr(tag, "data-node")?, rate))
        })
        .collect()
}

/// Headless Chromium's path; `None` (the test passes, saying so) when it is not installed,
/// unless `WEIR_REQUIRE_CHROMIUM` is set.
fn chromium() -> Result<Option<&'static str>> {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if chromium.is_none() {
        ensure!(
            std::env::var_os("WEIR_REQUIRE_CHROMIUM").is_none(),
            "chromium is not installed, and WEIR_REQUIRE_CHROMIUM is set"
        );
        eprintln!("chromium is not installed (Debian's `chromium`): the page is not tested");
    }
    Ok(chromium)
}

#[test]
fn the_live_page_shows_every_node_with_a_rate_in_headless_chromium() -> Result<()> {
    let Some(chromium) = chromium()? else {
        return Ok(());
    };
    let dir = Dir::new()?;
    let file = pipeline(&dir).metrics("0s").write(&dir)?;
    let mut flowing = Flowing::start(&dir, &file)?;
    let addr = address(&mut flowing.run, "metrics listening on ")?;
    let url = format!("http://{addr}/");
    // The page, once its polls have run: every node with a rate above zero. A loaded machine
    // may answer the first polls late, so it is loaded again until the deadline.
    let deadline = Instant::now() + PATIENCE;
    let nodes = loop {
        let out = Command::new(chromium)
            .args(CHROMIUM_ARGS)
            .arg("--dump-dom")
            .arg(&url)
            .output()?;
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        let nodes = page_nodes(&dom);
        if nodes.len() == 4 && nodes.iter().all(|(_, rate)| *rate > 0.0) {
            break nodes;
        }
        ensure!(
            Instant::now() < deadline,
            "the page never showed every node with a rate: {dom}"
        );
    };
    let mut seen: Vec<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
    seen.sort();
    assert_eq!(seen, ["in", "out", "poison", "upper"], "{nodes:?}");
    flowing.finish()
}

/// The markup in the poison lines of the page's test: the page must show it as text.
const GUEST_MARKUP: &str = "<b id=\"guest\">guest</b>";

/// The attributes of a start tag's inside (after its name).
fn attributes(tag: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq]
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or("")
            .to_string();
        let value_and_more = &rest[eq + 2..];
        let Some(end) = value_and_more.find('"') else {
            break;
        };
        out.insert(name, value_and_more[..end].to_string());
        rest = &value_and_more[end + 1..];
    }
    out
}

/// Every start tag `name` of a dumped DOM, with its attributes.
fn tags(dom: &str, name: &str) -> Vec<BTreeMap<String, String>> {
    dom.split(&format!("<{name} "))
        .skip(1)
        .filter_map(|rest| rest.split('>').next())
        .map(attributes)
        .collect()
}

/// What the page's charts lack in a dumped DOM; empty when every chart is drawn.
fn page_lacks(dom: &str) -> Vec<String> {
    let mut lacks = Vec::new();
    let points = |a: &BTreeMap<String, String>| -> u64 {
        a.get("data-points")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    };
    let svgs = tags(dom, "svg");
    let chart = |kind: &str, node: Option<&str>| {
        svgs.iter().find(|a| {
            a.get("data-chart").map(String::as_str) == Some(kind)
                && node.is_none_or(|n| a.get("data-node").map(String::as_str) == Some(n))
        })
    };
    let mut want = |what: String, ok: bool| {
        if !ok {
            lacks.push(what);
        }
    };
    for node in ["in", "poison", "upper", "out"] {
        let rate = chart("rate", Some(node));
        want(
            format!("a rate chart of {node}"),
            rate.is_some_and(|a| points(a) > 0),
        );
    }
    for stage in ["poison", "upper"] {
        for kind in ["latency", "fuel"] {
            let c = chart(kind, Some(stage));
            want(
                format!("a {kind} chart of {stage}"),
                c.is_some_and(|a| points(a) > 0),
            );
        }
    }
    want(
        "the in-flight chart".into(),
        chart("in-flight", None).is_some_and(|a| points(a) > 0),
    );
    want(
        "the in-flight gauge and its bound".into(),
        chart("in-flight-gauge", None)
            .and_then(|a| a.get("data-bound")?.parse::<u64>().ok())
            .is_some_and(|b| b > 0),
    );
    let sparks = tags(dom, "path")
        .into_iter()
        .filter(|a| a.get("class").map(String::as_str) == Some("spark") && points(a) > 0)
        .count();
    want(format!("4 sparklines, not {sparks}"), sparks == 4);
    want(
        "the timeline's swap of upper to version 2".into(),
        chart("timeline", None).is_some_and(|a| a.get("data-changes").is_some_and(|n| n != "0"))
            && tags(dom, "g").iter().any(|a| {
                a.get("data-kind").map(String::as_str) == Some("swap")
                    && a.get("data-stage").map(String::as_str) == Some("upper")
                    && a.get("data-version").map(String::as_str) == Some("2")
            }),
    );
    want(
        "the timeline's rollback of upper to version 1".into(),
        tags(dom, "g").iter().any(|a| {
            a.get("data-kind").map(String::as_str) == Some("rollback")
                && a.get("data-stage").map(String::as_str) == Some("upper")
                && a.get("data-version").map(String::as_str) == Some("1")
        }),
    );
    want(
        "a failure reason of poison".into(),
        tags(dom, "tr").iter().any(|a| {
            a.get("class").map(String::as_str) == Some("reason")
                && a.get("data-node").map(String::as_str) == Some("poison")
                && a.get("data-kind").map(String::as_str) == Some("panic")
        }),
    );
    want(
        "the guest's markup, shown as text".into(),
        dom.contains("poison &lt;b id=\"guest\"&gt;guest&lt;/b&gt;"),
    );
    want(
        "no element of the guest's".into(),
        !dom.contains("<b id=\"guest\">"),
    );
    let shadow = tags(dom, "div")
        .into_iter()
        .find(|a| a.get("class").map(String::as_str) == Some("shadow"));
    let count = |name: &str| -> u64 {
        shadow
            .as_ref()
            .and_then(|a| a.get(name)?.parse().ok())
            .unwrap_or(0)
    };
    want(
        "the shadow of upper, running, with events compared and different".into(),
        shadow.as_ref().is_some_and(|a| {
            a.get("data-stage").map(String::as_str) == Some("upper")
                && a.get("data-state").map(String::as_str) == Some("running")
        }) && count("data-compared") > 0
            && count("data-different") > 0
            && count("data-equal") + count("data-different") == count("data-compared"),
    );
    want(
        "the shadow's differing pairs, read with the token".into(),
        tags(dom, "tr")
            .iter()
            .any(|a| a.get("class").map(String::as_str) == Some("pair")),
    );
    want(
        "a shadow panel, shown".into(),
        dom.contains("id=\"shadow\" data-panel=\"shadow\">"),
    );
    lacks
}

/// The live page a second after it is opened late, on a pipeline that has run for seconds:
/// the host's history fills every chart (rates and sparklines per node, call latency and
/// fuel per event per stage, in flight against its bound), the timeline shows a hot swap
/// made by `weir reload` and its `weir rollback`, the failure reasons, read with the admin
/// token, show the plugin's markup as text, and a shadow started by `weir reload --shadow`
/// shows its comparison with the live version and, with the token, its differing pairs.
/// Without the token, the open listener gives no message.
#[test]
fn the_live_page_charts_the_last_minutes_in_headless_chromium() -> Result<()> {
    let Some(chromium) = chromium()? else {
        return Ok(());
    };
    let dir = Dir::new()?;
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.to_string()
    };
    let mut admin = support::Table::default();
    admin.set("listen", listen.as_str());
    admin.set("token", TOKEN);
    let mut metrics = support::Table::default();
    metrics.set("listen", listen.as_str());
    let file = pipeline(&dir)
        .admin_table(admin)
        .metrics_table(metrics)
        .write(&dir)?;
    let mut flowing = Flowing::start_poisoned(&dir, &file, 100)?;
    flowing
        .run
        .wait_for_stderr("metrics served on the admin API's address")?;
    let history = || -> Result<serde_json::Value> {
        let (status, text) = get(&listen, "/history")?;
        ensure!(status == 200, "/history answered {status}: {text}");
        Ok(serde_json::from_str(&text)?)
    };
    // A few seconds of traffic in the host's history, and failures.
    waiting("three samples with traffic, and a failure", || {
        let h = history()?;
        let samples = h["uptime_s"].as_array().map_or(0, Vec::len);
        let flowing = h["nodes"].as_array().is_some_and(|nodes| {
            nodes.len() == 4
                && nodes.iter().all(|n| {
                    let rates = n["rate_in"].as_array().cloned().unwrap_or_default();
                    rates
                        .iter()
                        .chain(n["rate_out"].as_array().into_iter().flatten())
                        .any(|r| r.as_f64() > Some(0.0))
                })
        });
        let failed = h["reasons"].as_array().is_some_and(|r| !r.is_empty());
        Ok(samples >= 3 && flowing && failed)
    })?;
    let passthrough = plugin("fixture-stage-passthrough");
    let out = admin_command(
        &listen,
        &[
            "reload",
            "--stage",
            "upper",
            "--plugin",
            passthrough.to_str().context("path")?,
        ],
    )
    .output()?;
    ensure!(
        out.status.success(),
        "weir reload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Time for the new version's calls to show in the charts, then back to version 1.
    std::thread::sleep(Duration::from_secs(2));
    let out = admin_command(&listen, &["rollback", "--stage", "upper"]).output()?;
    ensure!(
        out.status.success(),
        "weir rollback failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A shadow of upper that differs from it: the page's comparison panel.
    let diff = plugin("fixture-shadow-diff");
    let out = admin_command(
        &listen,
        &[
            "reload",
            "--stage",
            "upper",
            "--plugin",
            diff.to_str().context("path")?,
            "--shadow",
        ],
    )
    .output()?;
    ensure!(
        out.status.success(),
        "weir reload --shadow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = history()?;
    let samples = h["uptime_s"].as_array().map_or(0, Vec::len);
    assert!((3..=300).contains(&samples), "{samples} samples");
    for node in h["nodes"].as_array().context("nodes")? {
        for series in [
            "rate_in",
            "rate_out",
            "failed",
            "queued",
            "p50_ms",
            "p99_ms",
            "fuel_per_event",
        ] {
            assert_eq!(
                node[series].as_array().map(Vec::len),
                Some(samples),
                "{series} of {node}"
            );
        }
    }
    let changes: Vec<(&str, &str, u64)> = h["changes"]
        .as_array()
        .context("changes")?
        .iter()
        .filter_map(|c| {
            Some((
                c["stage"].as_str()?,
                c["kind"].as_str()?,
                c["version"].as_u64()?,
            ))
        })
        .collect();
    assert_eq!(
        changes,
        [("upper", "swap", 2), ("upper", "rollback", 1)],
        "{h}"
    );
    // The open listener gives the reasons, not their messages; the admin API, with its
    // token, gives them whole.
    let reason = &h["reasons"][0];
    assert_eq!(
        (reason["node"].as_str(), reason["kind"].as_str()),
        (Some("poison"), Some("panic")),
        "{h}"
    );
    assert!(reason["message"].is_null(), "{reason}");
    let (status, _) = get(&listen, "/reasons")?;
    assert_eq!(status, 401, "the messages need the token");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let reasons: serde_json::Value = serde_json::from_str(
        &agent
            .get(format!("http://{listen}/reasons"))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .call()?
            .body_mut()
            .read_to_string()?,
    )?;
    let message = reasons[0]["message"].as_str().context("a message")?;
    assert!(message.contains(GUEST_MARKUP), "{message}");

    // The page, opened now with the token in its fragment (never sent to the server).
    let url = format!("http://{listen}/#token={TOKEN}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let out = Command::new(chromium)
            .args(CHROMIUM_ARGS)
            .arg("--dump-dom")
            .arg(&url)
            .output()?;
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        let lacks = page_lacks(&dom);
        if lacks.is_empty() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the page lacks {}: {dom}",
            lacks.join(", ")
        );
    }
    // A screenshot of it, into docs/ when WEIR_PAGE_SCREENSHOT names it there.
    let shot = std::env::var("WEIR_PAGE_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path("page.png"));
    let out = Command::new(chromium)
        .args(CHROMIUM_ARGS)
        .args([
            "--hide-scrollbars",
            "--run-all-compositor-stages-before-draw",
            "--window-size=1400,1500",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::metadata(&shot)?.len() > 1000, "a screenshot");
    flowing.finish()
}

/// `weir run FILE` (with `extra` arguments) under a pseudo-terminal made by util-linux's
/// `script`: what it drew on the terminal. `None` when `script` is not installed.
fn on_a_terminal(dir: &Dir, file: &Path, extra: &str) -> Result<Option<String>> {
    let line = format!(
        "{} run {extra} {}",
        env!("CARGO_BIN_EXE_weir"),
        file.display()
    );
    let out = match Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("WEIR_CACHE_DIR", dir.cache()?)
        .env("TERM", "xterm")
        .env_remove("WEIR_LOG")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(_) => return Ok(None),
    };
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

#[test]
fn the_progress_line_shows_on_a_terminal_only_and_not_with_quiet() -> Result<()> {
    let dir = Dir::new()?;
    // Long enough for the line's first ticks (every 200 ms).
    let file = PipelineFile::new()
        .source("in", Source::generate(4_000_000))
        .stage("upper", Stage::plugin(plugin("uppercase")).inputs(&["in"]))
        .sink("out", Sink::null().inputs(&["upper"]))
        .write(&dir)?;
    // stderr a pipe: the summary line only.
    let out = dir.weir().arg("run").arg(&file).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("ETA"), "not a terminal: {stderr}");
    let Some(drawn) = on_a_terminal(&dir, &file, "")? else {
        eprintln!("`script` (util-linux) is not installed: the terminal is not tested");
        return Ok(());
    };
    assert!(drawn.contains(" read ["), "{drawn}");
    assert!(drawn.contains("failed, ETA"), "{drawn}");
    let quiet = on_a_terminal(&dir, &file, "--quiet")?.unwrap_or_default();
    assert!(!quiet.contains("ETA"), "--quiet: {quiet}");
    Ok(())
}

/// The stage's version number and hot-load counters in `/metrics` follow what the admin API
/// does: a settings change makes version 2 live and counts a swap; a rollback makes version 1
/// live again and counts a rollback.
#[test]
fn metrics_follow_the_version_number_and_the_reloads_of_the_admin_api() -> Result<()> {
    let dir = Dir::new()?;
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.to_string()
    };
    let mut admin = support::Table::default();
    admin.set("listen", listen.as_str());
    admin.set("token", TOKEN);
    let mut metrics = support::Table::default();
    metrics.set("listen", listen.as_str());
    let file = pipeline(&dir)
        .admin_table(admin)
        .metrics_table(metrics)
        .write(&dir)?;
    let mut run = dir.start(&file)?;
    run.wait_for_stderr("metrics served on the admin API's address")?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let auth = format!("Bearer {TOKEN}");
    let version = |text: &str| -> Option<String> {
        let line = text.lines().find(|l| {
            l.starts_with("weir_stage_version_info{component_id=\"upper\",component_kind=\"stage\"")
        })?;
        let from = line.find("version=\"")? + "version=\"".len();
        Some(line[from..].split('"').next()?.to_string())
    };
    let reloads = |samples: &Samples, result: &str| {
        let more = format!(",result=\"{result}\"");
        sample(samples, "weir_stage_reloads_total", "upper", "stage", &more)
    };

    let (text, samples) = scrape(&listen)?;
    assert_eq!(version(&text).as_deref(), Some("1"), "{text}");
    assert_eq!(reloads(&samples, "swapped"), 0.0);

    let url = format!("http://{listen}/stages/upper/settings");
    let mut swapped = agent.put(&url).header("Authorization", &auth).send("{}")?;
    let body = swapped.body_mut().read_to_string()?;
    assert_eq!(swapped.status().as_u16(), 200, "{body}");
    let (text, samples) = scrape(&listen)?;
    assert_eq!(version(&text).as_deref(), Some("2"), "{text}");
    assert_eq!(reloads(&samples, "swapped"), 1.0);
    assert_eq!(reloads(&samples, "rolled-back"), 0.0);

    let url = format!("http://{listen}/stages/upper/rollback");
    let mut back = agent.post(&url).header("Authorization", &auth).send("")?;
    let body = back.body_mut().read_to_string()?;
    assert_eq!(back.status().as_u16(), 200, "{body}");
    let (text, samples) = scrape(&listen)?;
    assert_eq!(version(&text).as_deref(), Some("1"), "{text}");
    assert_eq!(reloads(&samples, "swapped"), 1.0);
    assert_eq!(reloads(&samples, "rolled-back"), 1.0);
    assert_eq!(reloads(&samples, "refused"), 0.0);

    run.close_stdin();
    run.wait(PATIENCE)?;
    Ok(())
}
