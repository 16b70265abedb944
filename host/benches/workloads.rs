//! The workload harness: W1, W2, W3 and W4 of `WORKLOADS.md` through weir and through their
//! baselines, in the same run, each run checked.
//!
//! ```text
//! cargo bench --bench workloads -- [W1|W2|W3|W4|all] [--runs N] [--smoke]
//!     [--bin LABEL=PATH]... [--pipeline 'KEY = VALUE']... [--stage 'KEY = VALUE']...
//! ```
//!
//! What runs, for each workload (the modes):
//!
//! - `ceiling threads` and `ceiling chained` (`ceiling`): the plain native pipeline, no weir
//!   host at all, one thread per stage or the three stages on one thread.
//! - `weir`, `weir unchained`, `weir workers=2`, and for W2 `weir 0.1` (`binary`): the built
//!   `weir` binary, `weir run --report json` on a pipeline file, a whole process with its
//!   plugins mapped from a warm compile cache and default limits (fuel and deadline on):
//!   chained (the default), with `[pipeline] chain = false`, with `workers = 2` on every
//!   stage, and with W2's stages on the 0.1 contract (`fixture-v01-upper`).
//! - `native-in-weir chained` and `native-in-weir unchained` (`native`): weir's data plane in
//!   this process, every stage run by its plugin's code compiled natively: the host without
//!   the sandbox.
//! - `go pipeline` (`go`): `bench/go-pipeline`, a hand-written Go channel pipeline (a reader
//!   goroutine, one goroutine per stage, bounded channels of batches of 256, a writer), the
//!   baseline of weir's speed targets against Go; a whole process timed as `weir run` is, and
//!   left out, with a line saying so, when no Go toolchain is found.
//! - One more `weir` mode per `--bin` (another build of the binary), `--pipeline` (a line
//!   added to `[pipeline]`) and `--stage` (a line added to every stage): how a setting is
//!   measured against the default in the same run.
//!
//! Each round runs every mode once; the order rotates by one mode each round, so every mode
//! goes first in turn and a burst of load from the other users of the machine falls on all of
//! them alike. Rates are source events over the time from the start of reading to the end of
//! the last write (`elapsed_s` of weir's and the Go pipeline's reports; the threads' lifetime in
//! the ceiling); the
//! median of `--runs` rounds (5 by default) is reported with the range. Each run's CPU time
//! (user and system: `wait4` for `weir run`, `getrusage` around an in-process run) gives a
//! second figure, events per CPU-second, which the other users of a shared machine disturb
//! far less than wall time. `wait4` also gives the Go pipeline's CPU time.
//!
//! Every timed run is checked, so a fast wrong answer fails the harness. W1/W2: the source
//! emitted 2,000,000 events, every stage passed all of them and failed none, and the sink
//! counted 2,000,000 events and 200,000,000 bytes (weir's report; the ceiling's writer, which
//! also compares the value of the first event of every batch with what it must be). A weir
//! sink that counts writes nothing to look at, so before timing, every weir mode runs the
//! workload once at 100,000 events into a file whose every line is compared with its
//! expected value (W2: upper case); the Go pipeline's sink checks the first value of every
//! batch as the ceiling's does, and it too writes 100,000 events to a file, every line checked,
//! before timing. W3: the output file equals, byte for byte, the output of the plugins' plain
//! functions called in turn on each line, and so the ceiling's and the Go pipeline's (which
//! are checked the same way), and the dead-letter count is the same. With W3, the `weir` binary
//! is also timed to its first output line on a pipe, and its peak resident memory is taken
//! from every timed `weir` run. `--smoke` runs every mode once at small sizes and only checks.
//!
//! W4 (`w4`) has modes and a table of its own: `weir run` between two JetStream streams of a
//! `nats-server` the harness starts, against a bare async-nats client on the same server (its
//! module says how each is timed and checked). It runs when named, with `all` and by default
//! (a few seconds at `--smoke`), and is skipped with a line saying so when `nats-server` is
//! not installed, unless `WEIR_REQUIRE_NATS` is set. The extra modes (`--bin`, `--pipeline`,
//! `--stage`) apply to W1–W3.

#[path = "workloads/binary.rs"]
mod binary;
#[path = "workloads/ceiling.rs"]
mod ceiling;
#[path = "workloads/go.rs"]
mod go;
#[path = "workloads/native.rs"]
mod native;
// The tests' NATS server: started, required or skipped the same way in both.
#[allow(dead_code)]
#[path = "../../tests/support/nats.rs"]
mod nats;
#[path = "workloads/report.rs"]
mod report;
#[path = "workloads/spec.rs"]
mod spec;
#[path = "workloads/w4.rs"]
mod w4;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio_util::sync::CancellationToken;
use weir::Pipeline;
use weir::pipeline::Topology;

use binary::Weir;
use ceiling::Shape as CeilingShape;
use go::GoPipeline;
use report::{Results, Sample};
use spec::{Shape, Sink, W3Expected, Workload};

/// `--smoke` sizes: every path, in seconds.
const SMOKE_EVENTS: u64 = 20_000;
const SMOKE_REPEAT: u64 = 2;
/// W1/W2 events of the content run of each weir mode.
const CONTENT_EVENTS: u64 = 100_000;
/// Warm starts of `weir run` timed to the first output line.
const FIRST_LINE_STARTS: usize = 5;

struct Options {
    workloads: Vec<Workload>,
    w4: bool,
    runs: usize,
    smoke: bool,
    /// Extra weir modes: (label, binary, shape).
    extra: Vec<(String, Option<PathBuf>, Shape)>,
}

fn options() -> Result<Options> {
    let mut o = Options {
        workloads: Vec::new(),
        w4: false,
        runs: 5,
        smoke: false,
        extra: Vec::new(),
    };
    let mut runs = None;
    let mut args = std::env::args().skip(1);
    let usage = "usage: workloads [W1|W2|W3|W4|all] [--runs N] [--smoke] [--bin LABEL=PATH] [--pipeline LINE] [--stage LINE]";
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            // Passed by `cargo bench` to every bench target.
            "--bench" => {}
            "--smoke" => o.smoke = true,
            "--runs" => runs = Some(value("--runs")?.parse::<usize>()?),
            "--bin" => {
                let v = value("--bin")?;
                let (label, path) = v.split_once('=').context("--bin LABEL=PATH")?;
                o.extra
                    .push((label.into(), Some(path.into()), Shape::default()));
            }
            "--pipeline" => {
                let line = value("--pipeline")?;
                let shape = Shape {
                    pipeline: line.clone(),
                    ..Shape::default()
                };
                o.extra.push((line, None, shape));
            }
            "--stage" => {
                let line = value("--stage")?;
                let shape = Shape {
                    stage: line.clone(),
                    ..Shape::default()
                };
                o.extra.push((line, None, shape));
            }
            "W1" | "w1" => o.workloads.push(Workload::W1),
            "W2" | "w2" => o.workloads.push(Workload::W2),
            "W3" | "w3" => o.workloads.push(Workload::W3),
            "W4" | "w4" => o.w4 = true,
            "all" => {
                o.workloads
                    .extend([Workload::W1, Workload::W2, Workload::W3]);
                o.w4 = true;
            }
            other => bail!("unknown argument `{other}`; {usage}"),
        }
    }
    if o.workloads.is_empty() && !o.w4 {
        o.workloads
            .extend([Workload::W1, Workload::W2, Workload::W3]);
        o.w4 = true;
    }
    o.runs = runs.unwrap_or(if o.smoke { 1 } else { 5 });
    ensure!(o.runs >= 1, "--runs must be at least 1");
    Ok(o)
}

/// One way of running a workload.
#[derive(Clone)]
enum Mode {
    Ceiling(CeilingShape),
    /// `weir run` with binary number `bin` of the harness's list.
    Weir {
        label: String,
        bin: usize,
        shape: Shape,
    },
    NativeInWeir {
        unchained: bool,
    },
    /// `bench/go-pipeline`, a whole process.
    Go,
}

impl Mode {
    fn label(&self) -> String {
        match self {
            Mode::Ceiling(CeilingShape::Threads) => "ceiling threads".into(),
            Mode::Ceiling(CeilingShape::Chained) => "ceiling chained".into(),
            Mode::Weir { label, .. } => label.clone(),
            Mode::NativeInWeir { unchained: false } => "native-in-weir chained".into(),
            Mode::NativeInWeir { unchained: true } => "native-in-weir unchained".into(),
            Mode::Go => report::GO.into(),
        }
    }
}

/// Every mode of a workload; extra binaries are numbered from 1 (0 is the built `weir`).
fn modes(workload: Workload, options: &Options, go: bool) -> Vec<Mode> {
    let weir = |label: &str, shape: Shape| Mode::Weir {
        label: label.into(),
        bin: 0,
        shape,
    };
    let mut modes = vec![
        Mode::Ceiling(CeilingShape::Threads),
        Mode::Ceiling(CeilingShape::Chained),
        weir("weir", Shape::default()),
        weir(
            "weir unchained",
            Shape {
                unchained: true,
                ..Shape::default()
            },
        ),
        weir(
            "weir workers=2",
            Shape {
                workers: Some(2),
                ..Shape::default()
            },
        ),
    ];
    if workload == Workload::W2 {
        modes.push(weir(
            "weir 0.1",
            Shape {
                plugin: Some("fixture-v01-upper"),
                ..Shape::default()
            },
        ));
    }
    modes.push(Mode::NativeInWeir { unchained: false });
    modes.push(Mode::NativeInWeir { unchained: true });
    if go {
        modes.push(Mode::Go);
    }
    let mut bins = 0;
    for (label, bin, shape) in &options.extra {
        let bin = match bin {
            Some(_) => {
                bins += 1;
                bins
            }
            None => 0,
        };
        modes.push(Mode::Weir {
            // A line may add a table (`[metrics]` and its keys): one line in the tables.
            label: format!("weir {}", label.replace('\n', "; ")),
            bin,
            shape: shape.clone(),
        });
    }
    modes
}

/// What every run of one workload shares.
struct Bench<'a> {
    workload: Workload,
    size: u64,
    dir: &'a Path,
    weirs: &'a [Weir],
    go: Option<&'a GoPipeline>,
    runtime: &'a tokio::runtime::Runtime,
    /// W3's expected output and dead letters.
    w3: Option<W3Expected>,
}

impl Bench<'_> {
    fn output(&self) -> PathBuf {
        self.dir.join("out.txt")
    }

    fn dead_letters(&self) -> PathBuf {
        self.dir.join("dead-letters.jsonl")
    }

    /// Writes the pipeline file of a weir mode at a size, with its sink; returns its path.
    fn pipeline_file(&self, index: usize, shape: &Shape, size: u64, sink: Sink) -> Result<PathBuf> {
        let path = self
            .dir
            .join(format!("{}-{index}-{size}.toml", self.workload.name()));
        let text = spec::pipeline_text(self.workload, size, shape, sink, &self.dead_letters());
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// The timed pipeline file of a mode: W1/W2 count in a null sink, W3 writes a file.
    fn timed_file(&self, index: usize, shape: &Shape) -> Result<PathBuf> {
        let output = self.output();
        let sink = match self.workload {
            Workload::W3 => Sink::File(&output),
            _ => Sink::Null,
        };
        self.pipeline_file(index, shape, self.size, sink)
    }

    /// Before timing: the compile cache holds every plugin of the mode, and (W1/W2) the mode
    /// writes the right values, every byte of `CONTENT_EVENTS` events checked.
    fn prepare(&self, index: usize, mode: &Mode) -> Result<()> {
        let (shape, unchained) = match mode {
            Mode::Ceiling(_) => return Ok(()),
            Mode::Go => return self.prepare_go(),
            Mode::Weir { bin, shape, .. } => {
                self.weirs[*bin].warm(&self.timed_file(index, shape)?)?;
                (shape.clone(), None)
            }
            Mode::NativeInWeir { unchained } => (Shape::default(), Some(*unchained)),
        };
        if self.workload == Workload::W3 {
            return Ok(());
        }
        let events = self.size.min(CONTENT_EVENTS);
        let shape = Shape {
            unchained: unchained.unwrap_or(shape.unchained),
            ..shape
        };
        let output = self.output();
        let file = self.pipeline_file(index, &shape, events, Sink::File(&output))?;
        let report = match mode {
            Mode::Weir { bin, .. } => self.weirs[*bin].run(&file)?.report,
            _ => self.in_process(&file)?.to_json(),
        };
        spec::check_report_counts(self.workload, &report, events)?;
        spec::check_lines(self.workload, &output, events)
    }

    /// W1/W2: the Go pipeline writes `CONTENT_EVENTS` events to a file, every line checked.
    fn prepare_go(&self) -> Result<()> {
        if self.workload == Workload::W3 {
            return Ok(());
        }
        let events = self.size.min(CONTENT_EVENTS);
        let run = self
            .go()?
            .run(self.workload, events, Some(&self.output()))?;
        ensure!(
            run.events_in == events && run.events_out == events && run.dead_letters == 0,
            "{} events read, {} written, {} dead letters; expected {events}, {events}, none",
            run.events_in,
            run.events_out,
            run.dead_letters
        );
        spec::check_lines(self.workload, &self.output(), events)
    }

    fn go(&self) -> Result<&GoPipeline> {
        self.go.context("the go pipeline was not built")
    }

    fn in_process(&self, file: &Path) -> Result<weir::RunReport> {
        let pipeline = Pipeline::load(file)?;
        let topology = Topology::build_with(&pipeline, native::natives(self.workload))?;
        Ok(self
            .runtime
            .block_on(topology.run(CancellationToken::new()))?)
    }

    /// One timed run of a mode, checked.
    fn measure(&self, index: usize, mode: &Mode) -> Result<Sample> {
        let events = self.workload.events(self.size);
        match mode {
            Mode::Ceiling(shape) => {
                let cpu = binary::own_cpu_time();
                let run = ceiling::run(self.workload, self.size, *shape, &self.output())?;
                let cpu = binary::own_cpu_time() - cpu;
                self.check_ceiling(&run)?;
                Ok(Sample::new(run.events_in, run.elapsed, cpu))
            }
            Mode::Weir { bin, shape, .. } => {
                let run = self.weirs[*bin].run(&self.timed_file(index, shape)?)?;
                self.check_report(&run.report, events)?;
                let mut sample = Sample::new(events, run.seconds("elapsed_s")?, run.cpu);
                sample.process = Some((run.seconds("total_s")?, run.wall, run.max_rss_kib));
                Ok(sample)
            }
            Mode::NativeInWeir { unchained } => {
                let shape = Shape {
                    unchained: *unchained,
                    ..Shape::default()
                };
                let file = self.timed_file(index, &shape)?;
                let cpu = binary::own_cpu_time();
                let report = self.in_process(&file)?;
                let cpu = binary::own_cpu_time() - cpu;
                self.check_report(&report.to_json(), events)?;
                Ok(Sample::new(events, report.elapsed, cpu))
            }
            Mode::Go => {
                let output = self.output();
                let output = (self.workload == Workload::W3).then_some(output.as_path());
                let run = self.go()?.run(self.workload, self.size, output)?;
                self.check_ceiling(&ceiling::CeilingRun {
                    events_in: run.events_in,
                    events_out: run.events_out,
                    bytes_out: run.bytes_out,
                    rejects: run.dead_letters,
                    elapsed: run.elapsed,
                })?;
                let mut sample = Sample::new(events, run.elapsed, run.cpu);
                sample.process = Some((run.total, run.wall, run.max_rss_kib));
                Ok(sample)
            }
        }
    }

    fn check_report(&self, report: &serde_json::Value, events: u64) -> Result<()> {
        match &self.w3 {
            None => spec::check_report_counts(self.workload, report, events),
            Some(expected) => {
                expected.check_output(&self.output())?;
                expected.check_dead_letters(report["dead_lettered"].as_u64().unwrap_or(u64::MAX))
            }
        }
    }

    /// The checks of a run of the ceiling, or of the Go pipeline.
    fn check_ceiling(&self, run: &ceiling::CeilingRun) -> Result<()> {
        let events = self.workload.events(self.size);
        ensure!(run.events_in == events, "{} events read", run.events_in);
        match &self.w3 {
            None => {
                ensure!(
                    run.events_out == events && run.bytes_out == events * spec::W12_SIZE,
                    "the writer counted {} events and {} bytes",
                    run.events_out,
                    run.bytes_out
                );
                Ok(())
            }
            Some(expected) => {
                expected.check_output(&self.output())?;
                expected.check_dead_letters(run.rejects)
            }
        }
    }
}

/// Runs one workload: every mode prepared, then `runs` rounds of every mode.
fn workload(
    options: &Options,
    workload: Workload,
    weirs: &[Weir],
    go: Option<&GoPipeline>,
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
) -> Result<Results> {
    let size = match (workload, options.smoke) {
        (Workload::W3, true) => SMOKE_REPEAT,
        (Workload::W3, false) => spec::W3_REPEAT,
        (_, true) => SMOKE_EVENTS,
        (_, false) => spec::W12_EVENTS,
    };
    let bench = Bench {
        workload,
        size,
        dir,
        weirs,
        go,
        runtime,
        w3: match workload {
            Workload::W3 => Some(W3Expected::new(size)?),
            _ => None,
        },
    };
    let modes = modes(workload, options, go.is_some());
    for (i, mode) in modes.iter().enumerate() {
        bench
            .prepare(i, mode)
            .with_context(|| format!("{} {}: the content run", workload.name(), mode.label()))?;
    }
    let mut results = Results::new(workload, modes.iter().map(Mode::label).collect());
    for round in 0..options.runs {
        for k in 0..modes.len() {
            let i = (round + k) % modes.len();
            let mode = &modes[i];
            let sample = bench.measure(i, mode).with_context(|| {
                format!("{} {} run {}", workload.name(), mode.label(), round + 1)
            })?;
            eprintln!(
                "  {} {:<28} round {}: {:>10} events/s ({:.3} s, {:.3} s of CPU)",
                workload.name(),
                mode.label(),
                round + 1,
                report::thousands(sample.rate()),
                sample.elapsed.as_secs_f64(),
                sample.cpu.as_secs_f64()
            );
            results.push(i, sample);
        }
    }
    let _ = std::fs::remove_file(bench.output());
    Ok(results)
}

/// W3 start-up: `weir run` on one copy of the log, stdout a pipe, timed to its first line,
/// with an empty compile cache once and then warm.
fn first_line(weir: &Weir, dir: &Path) -> Result<(Duration, Vec<Duration>)> {
    let file = dir.join("first-line.toml");
    let text = spec::pipeline_text(
        Workload::W3,
        1,
        &Shape::default(),
        Sink::Stdout,
        &dir.join("first-line-dead-letters.jsonl"),
    );
    std::fs::write(&file, text)?;
    let lines = W3Expected::new(1)?.lines;
    let cold = Weir {
        bin: weir.bin.clone(),
        cache: dir.join("cold-cache"),
    };
    let cold_time = cold.first_line(&file, lines)?;
    let warm = (0..FIRST_LINE_STARTS)
        .map(|_| cold.first_line(&file, lines))
        .collect::<Result<Vec<_>>>()?;
    Ok((cold_time, warm))
}

fn main() -> Result<()> {
    let options = options()?;
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let cache = dir.path().join("cache");
    let mut weirs = vec![Weir {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_weir")),
        cache: cache.clone(),
    }];
    for (_, bin, _) in &options.extra {
        if let Some(bin) = bin {
            weirs.push(Weir {
                bin: bin.clone(),
                cache: cache.clone(),
            });
        }
    }
    // As `weir run` builds it: a multi-threaded reactor with one thread per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-io")
        .build()?;
    let mut names: Vec<&str> = options.workloads.iter().map(|w| w.name()).collect();
    if options.w4 {
        names.push("W4");
    }
    report::machine(&names, options.runs, options.smoke);
    // Only W1–W3 have a Go mode.
    let go = match options.workloads.is_empty() {
        true => None,
        false => go::build()?,
    };
    match &go {
        Some(go) => println!("go pipeline: {}, {}", go.bin.display(), go.version),
        None if options.workloads.is_empty() => {}
        None => println!("{}", go::SKIPPED),
    }
    let mut all = Vec::new();
    for &w in &options.workloads {
        all.push(workload(
            &options,
            w,
            &weirs,
            go.as_ref(),
            &runtime,
            dir.path(),
        )?);
    }
    let start_up = if options.workloads.contains(&Workload::W3) && !options.smoke {
        Some(first_line(&weirs[0], dir.path())?)
    } else {
        None
    };
    let w4 = match options.w4 {
        true => w4::run(&weirs[0], &runtime, dir.path(), options.runs, options.smoke)?,
        false => None,
    };
    if !all.is_empty() {
        report::print(&all, start_up.as_ref(), options.smoke);
    }
    if let Some(w4) = &w4 {
        w4::print(w4, options.smoke);
    }
    println!(
        "\nworkloads: every run's output checked; {:.1} s in all; load average at the end: {}",
        started.elapsed().as_secs_f64(),
        report::loadavg()
    );
    Ok(())
}
