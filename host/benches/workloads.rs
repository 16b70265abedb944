//! The workload harness: W1, W2 and W3 (`BENCHMARKS.md`) through the sandboxed pipeline and
//! through the native baseline, in the same process, alternating, several times each.
//!
//! ```text
//! cargo bench --bench workloads -- [W1|W2|W3|all] [--runs N] [--batch-size N] [--smoke]
//! ```
//!
//! Each workload is one pipeline file (TOML text made here). The sandboxed run is
//! `Topology::build(&p)?.run(..)`; the native run is `Topology::build_with(&p, natives)`, where
//! every stage is the plugin crate's own `weir_plugin::Stage` compiled into this binary and
//! called directly through [`Native`]. Both runs share the source, the batching, the channels,
//! the worker threads and the sink; only what runs a batch differs. Events per second are the
//! source's events over the run's wall time (plugins already loaded and initialised).
//!
//! Every run is checked, so a fast wrong answer fails the harness: the counts and bytes of
//! every node for W1 and W2; for W3 the sha256 and line count of the output file and the
//! dead-letter count, which must equal a reference computed here by calling the stage crates
//! directly over the log. The W1 and W2 sinks count without writing, so each mode also does
//! one smaller run into a file whose every line is compared with the value it must be (W2:
//! upper case). With W3 (not in `--smoke`), the `weir` binary is also started on W3 to measure
//! the first event out with a cold and a warm compile cache, and the peak resident memory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use weir::delivery::FailureKind;
use weir::sandbox::{Failure, Outcome, Trapped};
use weir::stage::{Processor, ProcessorFactory};
use weir::topology::Topology;
use weir::{Pipeline, RunReport};

/// W1 and W2: events from the source.
const W12_EVENTS: u64 = 2_000_000;
/// W1 and W2: bytes per value.
const W12_SIZE: u64 = 100;
/// W1 and W2: events of the run whose output is read back line by line.
const W12_CONTENT_EVENTS: u64 = 100_000;
/// W3: copies of the 2,000-line log read in a row.
const W3_REPEAT: u64 = 500;
/// `--smoke`: sizes that check every path in a few seconds.
const SMOKE_EVENTS: u64 = 20_000;
const SMOKE_REPEAT: u64 = 2;
/// Warm starts of the `weir` binary whose first-event times are reported.
const WARM_STARTS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    W1,
    W2,
    W3,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
        }
    }

    /// The issue's target for the ratio of sandboxed to native events per second.
    fn target(self) -> f64 {
        match self {
            Workload::W1 | Workload::W2 => 0.5,
            Workload::W3 => 0.75,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Native,
    Sandboxed,
}

struct Options {
    workloads: Vec<Workload>,
    runs: usize,
    batch_size: Option<usize>,
    smoke: bool,
}

fn options() -> Result<Options> {
    let mut workloads = Vec::new();
    let mut runs = None;
    let mut batch_size = None;
    let mut smoke = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // Passed by `cargo bench` to every bench target.
            "--bench" => {}
            "--smoke" => smoke = true,
            "--runs" => runs = Some(args.next().context("--runs needs a number")?.parse()?),
            "--batch-size" => {
                batch_size = Some(
                    args.next()
                        .context("--batch-size needs a number")?
                        .parse()?,
                )
            }
            "W1" | "w1" => workloads.push(Workload::W1),
            "W2" | "w2" => workloads.push(Workload::W2),
            "W3" | "w3" => workloads.push(Workload::W3),
            "all" => workloads.extend([Workload::W1, Workload::W2, Workload::W3]),
            other => bail!(
                "unknown argument `{other}`; usage: workloads [W1|W2|W3|all] [--runs N] [--batch-size N] [--smoke]"
            ),
        }
    }
    if workloads.is_empty() {
        workloads.extend([Workload::W1, Workload::W2, Workload::W3]);
    }
    let runs = runs.unwrap_or(if smoke { 1 } else { 5 });
    ensure!(runs >= 1, "--runs must be at least 1");
    Ok(Options {
        workloads,
        runs,
        batch_size,
        smoke,
    })
}

/// A stage's native baseline: the plugin crate's `Stage`, made and called directly.
struct Native<S>(PhantomData<fn() -> S>);

impl<S: weir_plugin::Stage + Send> Native<S> {
    fn factory() -> Arc<dyn ProcessorFactory> {
        Arc::new(Native::<S>(PhantomData))
    }
}

impl<S: weir_plugin::Stage + Send> ProcessorFactory for Native<S> {
    fn make(&self) -> Result<Box<dyn Processor>, Trapped> {
        let stage = S::init(&weir_plugin::Settings::default()).map_err(|message| Trapped {
            kind: FailureKind::InitFailed,
            message,
        })?;
        Ok(Box::new(NativeProcessor(stage)))
    }

    fn digest(&self) -> &str {
        "native"
    }
}

struct NativeProcessor<S>(S);

impl<S: weir_plugin::Stage + Send> Processor for NativeProcessor<S> {
    fn process(&mut self, events: &[weir::Event]) -> Result<Vec<Outcome>, Trapped> {
        // The sandbox copies each batch into the guest and each result out of it; the
        // baseline makes the same owned copy in, and moves the results out.
        let batch = events
            .iter()
            .map(|e| weir_plugin::Event {
                key: e.key.clone(),
                value: e.value.clone(),
                headers: e.headers.clone(),
                timestamp: e.timestamp,
            })
            .collect();
        Ok(self
            .0
            .process_batch(batch)
            .into_iter()
            .map(|outcome| match outcome {
                Ok(out) => Ok(out
                    .into_iter()
                    .map(|e| weir::Event {
                        key: e.key,
                        value: e.value,
                        headers: e.headers,
                        timestamp: e.timestamp,
                    })
                    .collect()),
                Err(weir_plugin::Failure::Reject(reason)) => Err(Failure::Reject(reason)),
                Err(weir_plugin::Failure::Retry(reason)) => Err(Failure::Retry(reason)),
            })
            .collect())
    }
}

/// The native processors of a workload's stages, by stage name.
fn natives(workload: Workload) -> HashMap<String, Arc<dyn ProcessorFactory>> {
    let stages: Vec<(&str, Arc<dyn ProcessorFactory>)> = match workload {
        Workload::W1 => (1..=3)
            .map(|i| (STAGES[i - 1], Native::<passthrough::Passthrough>::factory()))
            .collect(),
        Workload::W2 => (1..=3)
            .map(|i| (STAGES[i - 1], Native::<uppercase::Uppercase>::factory()))
            .collect(),
        Workload::W3 => vec![
            ("parse", Native::<sshd_parse::SshdParse>::factory()),
            ("filter", Native::<auth_filter::AuthFilter>::factory()),
            ("redact", Native::<redact_ip::RedactIp>::factory()),
        ],
    };
    stages
        .into_iter()
        .map(|(name, f)| (name.to_string(), f))
        .collect()
}

const STAGES: [&str; 3] = ["s1", "s2", "s3"];

/// The W3 log, in the repository.
fn w3_log() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/auth-log/data/OpenSSH_2k.log")
}

/// Where a pipeline writes, when it writes to a file.
enum Sink<'a> {
    Null,
    File(&'a Path),
    Stdout,
}

/// A workload's pipeline file. `size` is W1/W2's event count or W3's repeat count.
fn pipeline_text(
    workload: Workload,
    size: u64,
    batch_size: Option<usize>,
    sink: Sink,
    dead_letters: &Path,
) -> String {
    let mut text = String::new();
    if let Some(n) = batch_size {
        text.push_str(&format!("[pipeline]\nbatch_size = {n}\n\n"));
    }
    let plugin = |name: &str| weir_test_plugins::plugin(name).display().to_string();
    let (source, stages) = match workload {
        Workload::W1 | Workload::W2 => {
            let name = if workload == Workload::W1 {
                "passthrough"
            } else {
                "uppercase"
            };
            let stages: Vec<(&str, String)> = STAGES.iter().map(|&s| (s, plugin(name))).collect();
            (
                format!("type = \"generate\"\ncount = {size}\nsize = {W12_SIZE}\n"),
                stages,
            )
        }
        Workload::W3 => (
            format!(
                "type = \"file\"\npath = {:?}\nrepeat = {size}\n",
                w3_log().display().to_string()
            ),
            vec![
                ("parse", plugin("sshd-parse")),
                ("filter", plugin("auth-filter")),
                ("redact", plugin("redact-ip")),
            ],
        ),
    };
    text.push_str(&format!("[sources.input]\n{source}\n"));
    let mut input = "input";
    for (name, path) in &stages {
        text.push_str(&format!(
            "[stages.{name}]\ninputs = [{input:?}]\nplugin = {path:?}\n\n"
        ));
        input = name;
    }
    let sink = match sink {
        Sink::Null => "type = \"null\"".to_string(),
        Sink::Stdout => "type = \"stdout\"".to_string(),
        Sink::File(path) => format!("type = \"file\"\npath = {:?}", path.display().to_string()),
    };
    text.push_str(&format!("[sinks.out]\ninputs = [{input:?}]\n{sink}\n\n"));
    text.push_str(&format!(
        "[dead_letter]\ntype = \"file\"\npath = {:?}\n",
        dead_letters.display().to_string()
    ));
    text
}

/// What one run did, as far as the checks need it.
struct Run {
    report: RunReport,
    build: Duration,
}

impl Run {
    fn rate(&self) -> f64 {
        self.report.events_in as f64 / self.report.elapsed.as_secs_f64()
    }
}

fn run(
    runtime: &tokio::runtime::Runtime,
    workload: Workload,
    mode: Mode,
    pipeline: &Pipeline,
) -> Result<Run> {
    let started = Instant::now();
    let topology = match mode {
        Mode::Sandboxed => Topology::build(pipeline),
        Mode::Native => Topology::build_with(pipeline, natives(workload)),
    }?;
    let build = started.elapsed();
    let report = runtime.block_on(topology.run(CancellationToken::new()))?;
    Ok(Run { report, build })
}

/// W1's value of event `i`; W2's is its upper case.
fn generated(i: u64) -> Vec<u8> {
    (0..W12_SIZE).map(|j| b'a' + ((i + j) % 26) as u8).collect()
}

/// W1/W2 counts: every node passed every event and every byte, nothing failed.
fn check_counts(report: &RunReport, events: u64) -> Result<()> {
    ensure!(
        report.events_in == events,
        "the source emitted {} events, expected {events}",
        report.events_in
    );
    ensure!(
        report.dead_lettered == 0,
        "{} events were dead-lettered",
        report.dead_lettered
    );
    for stage in STAGES {
        let node = report.node(stage).context("a stage is missing")?;
        ensure!(
            node.events_in == events && node.events_out == events && node.failed == 0,
            "stage {stage}: {} in, {} out, {} failed; expected {events} in and out",
            node.events_in,
            node.events_out,
            node.failed
        );
    }
    let sink = report.node("out").context("the sink is missing")?;
    ensure!(
        sink.events_out == events && sink.bytes_out == events * W12_SIZE,
        "the sink counted {} events and {} bytes, expected {events} and {}",
        sink.events_out,
        sink.bytes_out,
        events * W12_SIZE
    );
    Ok(())
}

/// W1/W2 content: line `i` of the file is event `i`'s value (upper case for W2).
fn check_content(workload: Workload, file: &Path, events: u64) -> Result<()> {
    let reader = BufReader::new(std::fs::File::open(file)?);
    let mut i = 0u64;
    for line in reader.split(b'\n') {
        let line = line?;
        let mut expected = generated(i);
        if workload == Workload::W2 {
            expected.make_ascii_uppercase();
        }
        ensure!(
            line == expected,
            "line {i} of the output is {:?}, expected {:?}",
            String::from_utf8_lossy(&line),
            String::from_utf8_lossy(&expected)
        );
        i += 1;
    }
    ensure!(i == events, "the output has {i} lines, expected {events}");
    Ok(())
}

/// The W3 result computed without any pipeline: the stage crates called in order on the
/// log's lines. Returns the output of one copy of the log and its number of rejects.
fn w3_reference() -> Result<(Vec<u8>, u64)> {
    use weir_plugin::Stage;
    let bytes = std::fs::read(w3_log())?;
    let mut lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    if bytes.ends_with(b"\n") {
        lines.pop();
    }
    let settings = weir_plugin::Settings::default();
    let init = |e: String| anyhow::anyhow!("init: {e}");
    let mut parse = sshd_parse::SshdParse::init(&settings).map_err(init)?;
    let mut filter = auth_filter::AuthFilter::init(&settings).map_err(init)?;
    let mut redact = redact_ip::RedactIp::init(&settings).map_err(init)?;
    let mut stages: [Box<dyn FnMut(weir_plugin::Event) -> weir_plugin::Outcome>; 3] = [
        Box::new(move |e| parse.process(e)),
        Box::new(move |e| filter.process(e)),
        Box::new(move |e| redact.process(e)),
    ];
    let mut out = Vec::new();
    let mut rejects = 0;
    for line in lines {
        let mut events = vec![weir_plugin::Event::new(line)];
        for stage in &mut stages {
            let mut next = Vec::new();
            for event in events {
                match stage(event) {
                    Ok(produced) => next.extend(produced),
                    Err(_) => rejects += 1,
                }
            }
            events = next;
        }
        for event in events {
            out.extend_from_slice(&event.value);
            out.push(b'\n');
        }
    }
    Ok((out, rejects))
}

/// The sha256 and line count of a file.
fn digest_file(path: &Path) -> Result<(String, u64)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut lines = 0;
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        hasher.update(&buf[..n]);
    }
    Ok((format!("{:x}", hasher.finalize()), lines))
}

/// What every W3 run must produce.
struct W3Expected {
    sha256: String,
    lines: u64,
    dead_letters: u64,
}

impl W3Expected {
    fn new(repeat: u64) -> Result<W3Expected> {
        let (one, rejects) = w3_reference()?;
        let mut hasher = Sha256::new();
        for _ in 0..repeat {
            hasher.update(&one);
        }
        let lines = one.iter().filter(|&&b| b == b'\n').count() as u64 * repeat;
        Ok(W3Expected {
            sha256: format!("{:x}", hasher.finalize()),
            lines,
            dead_letters: rejects * repeat,
        })
    }

    fn check(&self, report: &RunReport, output: &Path) -> Result<()> {
        let (sha256, lines) = digest_file(output)?;
        ensure!(
            lines == self.lines && sha256 == self.sha256,
            "the output has {lines} lines with sha256 {sha256}; expected {} lines with sha256 {}",
            self.lines,
            self.sha256
        );
        let sink = report.node("out").context("the sink is missing")?;
        ensure!(
            sink.events_out == self.lines,
            "the sink counted {} events, expected {}",
            sink.events_out,
            self.lines
        );
        ensure!(
            report.dead_lettered == self.dead_letters,
            "{} dead letters, expected {}",
            report.dead_lettered,
            self.dead_letters
        );
        Ok(())
    }
}

/// Median, min and max of some rates.
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Spread {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9} ({}–{})",
            thousands(self.median),
            thousands(self.min),
            thousands(self.max)
        )
    }
}

fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One row of the table.
struct Row {
    workload: Workload,
    events: u64,
    native: Spread,
    sandboxed: Spread,
    build_native: Duration,
    build_sandboxed: Duration,
}

fn median_duration(values: &[Duration]) -> Duration {
    let secs: Vec<f64> = values.iter().map(Duration::as_secs_f64).collect();
    Duration::from_secs_f64(Spread::of(&secs).median)
}

/// Runs one workload: a content check per mode (W1/W2), then `runs` timed runs per mode,
/// alternating so that a burst of load from elsewhere costs both modes alike.
fn workload(
    runtime: &tokio::runtime::Runtime,
    options: &Options,
    workload: Workload,
    dir: &Path,
) -> Result<Row> {
    let size = match (workload, options.smoke) {
        (Workload::W3, true) => SMOKE_REPEAT,
        (Workload::W3, false) => W3_REPEAT,
        (_, true) => SMOKE_EVENTS,
        (_, false) => W12_EVENTS,
    };
    let dead_letters = dir.join("dead-letters.jsonl");
    let output = dir.join("out.txt");
    let parse = |text: String| Pipeline::parse(&dir.join("pipeline.toml"), &text);
    let modes = [Mode::Native, Mode::Sandboxed];

    let w3 = match workload {
        Workload::W3 => Some(W3Expected::new(size)?),
        _ => {
            let events = size.min(W12_CONTENT_EVENTS);
            let text = pipeline_text(
                workload,
                events,
                options.batch_size,
                Sink::File(&output),
                &dead_letters,
            );
            let pipeline = parse(text)?;
            for mode in modes {
                let done = run(runtime, workload, mode, &pipeline)?;
                check_counts(&done.report, events)
                    .and_then(|()| check_content(workload, &output, events))
                    .with_context(|| format!("{} {mode:?} content run", workload.name()))?;
            }
            None
        }
    };

    let sink = match workload {
        Workload::W3 => Sink::File(&output),
        _ => Sink::Null,
    };
    let pipeline = parse(pipeline_text(
        workload,
        size,
        options.batch_size,
        sink,
        &dead_letters,
    ))?;
    let mut rates: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut builds: HashMap<&str, Vec<Duration>> = HashMap::new();
    for i in 0..options.runs {
        for mode in modes {
            let done = run(runtime, workload, mode, &pipeline)?;
            let checked = match &w3 {
                Some(expected) => expected.check(&done.report, &output),
                None => check_counts(&done.report, size),
            };
            checked.with_context(|| format!("{} {mode:?} run {}", workload.name(), i + 1))?;
            let key = if mode == Mode::Native {
                "native"
            } else {
                "weir"
            };
            eprintln!(
                "  {} {key:>6} run {}: {:>12} events/s ({:.3} s)",
                workload.name(),
                i + 1,
                thousands(done.rate()),
                done.report.elapsed.as_secs_f64()
            );
            rates.entry(key).or_default().push(done.rate());
            builds.entry(key).or_default().push(done.build);
        }
    }
    let _ = std::fs::remove_file(&output);
    Ok(Row {
        workload,
        events: match workload {
            Workload::W3 => size * 2000,
            _ => size,
        },
        native: Spread::of(&rates["native"]),
        sandboxed: Spread::of(&rates["weir"]),
        build_native: median_duration(&builds["native"]),
        build_sandboxed: median_duration(&builds["weir"]),
    })
}

/// The `weir` binary on W3: time to the first output line with a cold and then a warm
/// compile cache (repeat 1, stdout sink), and peak resident memory of a full W3 run.
fn binary_figures(dir: &Path) -> Result<()> {
    let cache = dir.join("compile-cache");
    let dead_letters = dir.join("bin-dead-letters.jsonl");
    let start_file = dir.join("start.toml");
    std::fs::write(
        &start_file,
        pipeline_text(Workload::W3, 1, None, Sink::Stdout, &dead_letters),
    )?;
    let expected_lines = W3Expected::new(1)?.lines;
    let weir = |file: &Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
        cmd.args(["run", "--quiet"])
            .arg(file)
            .env("WEIR_CACHE_DIR", &cache)
            .env_remove("WEIR_LOG")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        cmd
    };
    let first_line = || -> Result<Duration> {
        let started = Instant::now();
        let mut child = weir(&start_file).stdout(Stdio::piped()).spawn()?;
        let mut out = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut line = Vec::new();
        out.read_until(b'\n', &mut line)?;
        let first = started.elapsed();
        let mut rest = Vec::new();
        out.read_to_end(&mut rest)?;
        let lines = 1 + rest.iter().filter(|&&b| b == b'\n').count() as u64;
        ensure!(child.wait()?.success(), "weir run failed");
        ensure!(
            lines == expected_lines,
            "weir run printed {lines} lines, expected {expected_lines}"
        );
        Ok(first)
    };
    let _ = std::fs::remove_dir_all(&cache);
    let cold = first_line()?;
    let warm: Vec<Duration> = (0..WARM_STARTS)
        .map(|_| first_line())
        .collect::<Result<_>>()?;
    let mut sorted = warm.clone();
    sorted.sort();
    println!(
        "W3 start, first event out of `weir run`: cold cache {:.1} ms; warm cache median {:.1} ms (min {:.1}, max {:.1}, {} runs; target <= 50 ms)",
        ms(cold),
        ms(median_duration(&warm)),
        ms(sorted[0]),
        ms(sorted[sorted.len() - 1]),
        warm.len()
    );

    let full_file = dir.join("full.toml");
    let output = dir.join("bin-out.txt");
    std::fs::write(
        &full_file,
        pipeline_text(
            Workload::W3,
            W3_REPEAT,
            None,
            Sink::File(&output),
            &dead_letters,
        ),
    )?;
    let started = Instant::now();
    let child = weir(&full_file).stdout(Stdio::null()).spawn()?;
    let (status, max_rss_kib) = wait_with_max_rss(child)?;
    let elapsed = started.elapsed();
    ensure!(status == 0, "weir run exited with {status}");
    let (_, lines) = digest_file(&output)?;
    let _ = std::fs::remove_file(&output);
    let expected = W3Expected::new(W3_REPEAT)?;
    ensure!(
        lines == expected.lines,
        "weir run wrote {lines} lines, expected {}",
        expected.lines
    );
    println!(
        "W3 full run of `weir run` (default settings, warm cache): peak resident memory {:.1} MiB (target <= 64 MiB), {:.2} s",
        max_rss_kib as f64 / 1024.0,
        elapsed.as_secs_f64()
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Waits for a child and returns its exit status and peak resident set (KiB), which only
/// `wait4` reports exactly: `/proc` loses it when the process ends.
fn wait_with_max_rss(child: std::process::Child) -> Result<(i32, i64)> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our unwaited child; the pointers are to live locals. `child` is not
    // waited on afterwards (dropping a `Child` does not wait).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    ensure!(r == pid, "wait4: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    drop(child);
    Ok((code, usage.ru_maxrss))
}

fn main() -> Result<()> {
    let options = options()?;
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    // As `weir run` builds it: a multi-threaded reactor with one thread per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-io")
        .build()?;
    println!(
        "weir workloads: {} run(s) per mode{}{}",
        options.runs,
        if options.smoke {
            ", smoke sizes (checks only)"
        } else {
            ""
        },
        match options.batch_size {
            Some(n) => format!(", batch_size = {n}"),
            None => String::new(),
        }
    );
    let mut rows = Vec::new();
    for &w in &options.workloads {
        rows.push(workload(&runtime, &options, w, dir.path())?);
    }
    println!();
    println!(
        "| workload | events | native events/s, median (min–max) | weir events/s, median (min–max) | ratio | target | build native / weir |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let ratio = row.sandboxed.median / row.native.median;
        println!(
            "| {} | {} | {} | {} | {:.2} | ≥ {} {} | {:.1} / {:.1} ms |",
            row.workload.name(),
            thousands(row.events as f64),
            row.native,
            row.sandboxed,
            ratio,
            row.workload.target(),
            if options.smoke {
                "(not judged at smoke sizes)"
            } else if ratio >= row.workload.target() {
                "met"
            } else {
                "missed"
            },
            ms(row.build_native),
            ms(row.build_sandboxed),
        );
    }
    if options.workloads.contains(&Workload::W3) && !options.smoke {
        println!();
        binary_figures(dir.path())?;
    }
    println!(
        "\nworkloads: every run's output checked; {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
