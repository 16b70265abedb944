//! W4 broker: NATS JetStream in, W3's stages, NATS JetStream out, against a bare client on the
//! same server.
//!
//! The harness starts its own `nats-server -js` on a free loopback port with a store in a
//! temporary folder (the tests' [`NatsServer`]: without the server installed W4 is skipped
//! with a line saying so, unless `WEIR_REQUIRE_NATS` is set). It fills stream `IN` (subject
//! `in`) once with W3's input, one message per line of the log as weir's file source reads
//! it, `repeat` copies (1,000,000 messages; one copy at `--smoke`), keeping at most
//! [`FILL_WINDOW`] PubAcks outstanding. Before every timed run stream `OUT` (subject `out`,
//! a duplicate window) is made again, empty, and the run reads `IN` through a durable consumer
//! of its own, new, so that every run reads all of it.
//!
//! Two modes, the order alternating by round:
//!
//! - `weir`: `weir run --report json` on a pipeline file: a `nats` source on `IN`, W3's three
//!   plugins, a `nats` sink on `out` (message ids, acks after PubAcks), defaults otherwise, the
//!   compile cache warmed first. The source never ends by itself, so the harness asks the
//!   server every [`POLL`] how many messages `OUT` holds; the time runs from spawning the
//!   process to the answer that `OUT` holds W3's output count. Then it waits for the consumer
//!   to have nothing pending or unacked (every message acked, dead letters terminated),
//!   stops the process with SIGTERM and reaps it: its CPU time and peak resident memory come
//!   from `wait4` and `/usr/bin/time` as for every `weir run` of the harness.
//! - `bare client`: the ceiling, in this process on the harness's runtime: async-nats, a pull
//!   consumer on `IN` (batches of [`PULL_BATCH`]), each message's payload published to `out`
//!   with a message id, at most [`WINDOW`] PubAcks outstanding, each source message acked
//!   once its PubAck is in. No stages: it republishes every message. Its time runs from
//!   connecting to the last PubAck, the moment `OUT` holds every message; its CPU time is this
//!   process's over the run.
//!
//! Every run is checked, outside the time: `OUT` holds exactly the expected count, and read
//! back in order every message's payload is, byte for byte, the expected value (weir: W3's
//! output computed natively by [`W3Expected`]; the bare client: the input) and carries a
//! `Nats-Msg-Id`; the consumer has nothing left pending or unacked; weir exited 0 and its
//! report counts every input message and W3's dead letters. The server's CPU time over each
//! timed span is read from `/proc`, since on two cores it shares them with the mode measured.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::StreamExt;
use tokio::runtime::Runtime;

use crate::binary::{self, Spawned, Weir};
use crate::nats::NatsServer;
use crate::report::{Spread, thousands};
use crate::spec::{self, W3Expected, Workload};

/// Copies of the log in `IN` at `--smoke`: 2,000 messages, every check, a few seconds.
pub const SMOKE_REPEAT: u64 = 1;

const IN: &str = "IN";
const IN_SUBJECT: &str = "in";
const OUT: &str = "OUT";
const OUT_SUBJECT: &str = "out";

/// PubAcks outstanding while the harness fills `IN`: enough to keep the server busy, fewer
/// than async-nats's own limit of in-flight acks (5,000), which would stall the publisher.
const FILL_WINDOW: usize = 4096;
/// The bare client's pull batch: weir's default `batch` (the source's batch size).
const PULL_BATCH: usize = spec::BATCH;
/// PubAcks the bare client waits for at once, their source messages unacked: four batches,
/// as weir's sink keeps `buffer` (4) batches outstanding.
const WINDOW: usize = 4 * spec::BATCH;
/// The bare client's consumer's `max_ack_pending`: above its window and the pull buffered
/// behind it, so that the server never stops delivering while the client waits for it.
const BARE_MAX_ACK_PENDING: i64 = 4 * WINDOW as i64;
/// How often the harness asks how many messages `OUT` holds while weir runs: the error it
/// adds to weir's time, against the load its requests put on the server.
const POLL: Duration = Duration::from_millis(5);
/// A run whose output, or whose consumer's backlog, stops moving this long has failed: the
/// harness must end rather than wait for ever on a stuck run.
const STALL: Duration = Duration::from_secs(60);
/// How long one message of a read-back may take to arrive.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// `OUT`'s duplicate window, as the README's `--dupe-window 2m`.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// One timed run of a mode.
pub struct Run {
    /// From the start (process spawned, or client connecting) to `OUT` complete.
    pub elapsed: Duration,
    /// CPU time of the `weir run` process (to its exit), or of this process over the run.
    pub cpu: Duration,
    /// CPU time of `nats-server` over `elapsed`.
    pub server_cpu: Duration,
    /// `weir run`: the process's wall time (to its exit after SIGTERM) and peak RSS in KiB.
    pub process: Option<(Duration, i64)>,
}

/// Every timed run of W4.
pub struct Results {
    pub messages_in: u64,
    pub messages_out: u64,
    pub server: String,
    pub weir: Vec<Run>,
    pub bare: Vec<Run>,
}

/// What every run shares.
struct Bench<'a> {
    server: NatsServer,
    runtime: &'a Runtime,
    js: jetstream::Context,
    weir: &'a Weir,
    dir: &'a Path,
    expected: W3Expected,
    /// One copy of the log's lines, and how many copies `IN` holds.
    lines: Vec<Bytes>,
    repeat: u64,
}

/// Runs W4: `runs` rounds of each mode. `None` when no server is installed (and none is
/// required): the harness goes on without W4.
pub fn run(
    weir: &Weir,
    runtime: &Runtime,
    dir: &Path,
    runs: usize,
    smoke: bool,
) -> Result<Option<Results>> {
    let Some(server) = NatsServer::start("W4")? else {
        return Ok(None);
    };
    let repeat = if smoke { SMOKE_REPEAT } else { spec::W3_REPEAT };
    let url = server.url();
    let client = runtime.block_on(async_nats::connect(&url))?;
    let version = client.server_info().version;
    let js = {
        // The context spawns a task of its own: it needs the runtime entered.
        let _inside = runtime.enter();
        jetstream::new(client)
    };
    let bench = Bench {
        server,
        runtime,
        js,
        weir,
        dir,
        expected: W3Expected::new(repeat)?,
        lines: spec::w3_lines()?.into_iter().map(Bytes::from).collect(),
        repeat,
    };
    let filled = Instant::now();
    bench.fill().context("W4: filling stream IN")?;
    eprintln!(
        "  W4 stream {IN} filled with {} messages in {:.1} s",
        thousands(bench.messages_in() as f64),
        filled.elapsed().as_secs_f64()
    );
    bench.recreate_out()?;
    weir.warm(&bench.pipeline_file("warm")?)
        .context("W4 weir: warming the compile cache")?;
    let mut results = Results {
        messages_in: bench.messages_in(),
        messages_out: bench.expected.lines,
        server: format!("nats-server {version}"),
        weir: Vec::new(),
        bare: Vec::new(),
    };
    for round in 1..=runs {
        let weir_first = round % 2 == 1;
        for weir_now in [weir_first, !weir_first] {
            let (label, run) = if weir_now {
                ("weir", bench.weir(round))
            } else {
                ("bare client", bench.bare(round))
            };
            let run = run.with_context(|| format!("W4 {label} run {round}"))?;
            eprintln!(
                "  W4 {label:<28} round {round}: {:>10} messages in/s ({:.3} s, {:.3} s of CPU, server {:.3} s)",
                thousands(bench.messages_in() as f64 / run.elapsed.as_secs_f64()),
                run.elapsed.as_secs_f64(),
                run.cpu.as_secs_f64(),
                run.server_cpu.as_secs_f64()
            );
            match weir_now {
                true => results.weir.push(run),
                false => results.bare.push(run),
            }
        }
    }
    Ok(Some(results))
}

impl Bench<'_> {
    fn messages_in(&self) -> u64 {
        self.lines.len() as u64 * self.repeat
    }

    /// Creates `IN` and publishes every input message to it once.
    fn fill(&self) -> Result<()> {
        let js = self.js.clone();
        let lines = self.lines.clone();
        let (repeat, count) = (self.repeat, self.messages_in());
        self.runtime.block_on(async move {
            js.create_stream(stream::Config {
                name: IN.into(),
                subjects: vec![IN_SUBJECT.into()],
                ..Default::default()
            })
            .await?;
            let mut acks: VecDeque<PublishAckFuture> = VecDeque::with_capacity(FILL_WINDOW);
            for _ in 0..repeat {
                for line in &lines {
                    if acks.len() == FILL_WINDOW {
                        acks.pop_front().expect("a full window").await?;
                    }
                    acks.push_back(js.publish(IN_SUBJECT, line.clone()).await?);
                }
            }
            for ack in acks {
                ack.await?;
            }
            let held = js.get_stream(IN).await?.get_info().await?.state.messages;
            ensure!(
                held == count,
                "{IN} holds {held} messages, expected {count}"
            );
            anyhow::Ok(())
        })
    }

    /// Makes `OUT` again, empty: a purge would keep the message ids of the last run within
    /// the duplicate window, and the server would drop this run's messages as copies.
    fn recreate_out(&self) -> Result<()> {
        let js = self.js.clone();
        self.runtime.block_on(async move {
            if js.get_stream(OUT).await.is_ok() {
                js.delete_stream(OUT).await?;
            }
            js.create_stream(stream::Config {
                name: OUT.into(),
                subjects: vec![OUT_SUBJECT.into()],
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await?;
            anyhow::Ok(())
        })
    }

    /// weir's pipeline file, reading `IN` through durable consumer `consumer`.
    fn pipeline_file(&self, consumer: &str) -> Result<PathBuf> {
        let url = self.server.url();
        let mut text = format!(
            "[sources.in]\ntype = \"nats\"\nurl = {url:?}\nstream = {IN:?}\nconsumer = {consumer:?}\nsubject = {IN_SUBJECT:?}\n"
        );
        let mut input = "in";
        let w3 = Workload::W3;
        for (name, plugin) in w3.stages().into_iter().zip(w3.plugins()) {
            let path = weir_test_plugins::plugin(plugin);
            text.push_str(&format!(
                "\n[stages.{name}]\ninputs = [{input:?}]\nplugin = {:?}\n",
                path.display().to_string()
            ));
            input = name;
        }
        text.push_str(&format!(
            "\n[sinks.out]\ninputs = [{input:?}]\ntype = \"nats\"\nurl = {url:?}\nsubject = {OUT_SUBJECT:?}\n"
        ));
        text.push_str(&format!(
            "\n[dead_letter]\ntype = \"file\"\npath = {:?}\nmode = \"truncate\"\n",
            self.dir.join("w4-dead-letters.jsonl").display().to_string()
        ));
        let path = self.dir.join(format!("W4-{consumer}.toml"));
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// `nats-server`'s CPU time so far (user and system), from `/proc`.
    fn server_cpu(&self) -> Result<Duration> {
        let pid = self.server.pid().context("nats-server is not running")?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces): state is the first, utime
        // the twelfth and stime the thirteenth.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("/proc/PID/stat")?
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Ok(Duration::from_secs_f64(ticks as f64 / per_second))
    }

    /// One timed run of `weir run`, checked.
    fn weir(&self, round: usize) -> Result<Run> {
        self.recreate_out()?;
        let consumer = format!("weir-{round}");
        let file = self.pipeline_file(&consumer)?;
        let args = [
            OsStr::new("run"),
            OsStr::new("--report"),
            OsStr::new("json"),
        ];
        let server_cpu = self.server_cpu()?;
        let child = binary::spawn_timed(
            &self.weir.bin,
            args.into_iter().chain([file.as_os_str()]),
            |c| self.weir.environment(c),
            &file.with_extension("rss"),
        )?;
        let watched = self
            .wait_for_out(self.expected.lines, &child)
            .and_then(|at| {
                let server_cpu = self.server_cpu()? - server_cpu;
                self.wait_settled(&consumer, Some(&child))?;
                Ok((at, server_cpu))
            });
        let (at, server_cpu) = match watched {
            Ok(done) => done,
            Err(e) => {
                // Not left running behind the harness: killed, reaped, its stderr shown.
                let _ = child.signal(libc::SIGKILL);
                let stderr = child.wait().map(|t| t.stderr).unwrap_or_default();
                return Err(e.context(format!("weir run's stderr: {stderr}")));
            }
        };
        let elapsed = at - child.started();
        child.signal(libc::SIGTERM)?;
        let ended = child.wait()?;
        ensure!(
            ended.status == 0,
            "weir run exited with {} after SIGTERM: {}",
            ended.status,
            ended.stderr
        );
        let line = ended
            .stderr
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .with_context(|| format!("no JSON report on stderr: {}", ended.stderr))?;
        let report: serde_json::Value = serde_json::from_str(line)?;
        let events_in = report["events_in"].as_u64().unwrap_or(u64::MAX);
        ensure!(
            events_in == self.messages_in(),
            "weir read {events_in} messages, expected {}",
            self.messages_in()
        );
        self.expected
            .check_dead_letters(report["dead_lettered"].as_u64().unwrap_or(u64::MAX))?;
        self.check_out(self.expected.values(), self.expected.lines)?;
        self.delete_consumer(&consumer)?;
        Ok(Run {
            elapsed,
            cpu: ended.cpu,
            server_cpu,
            process: Some((ended.wall, ended.max_rss_kib)),
        })
    }

    /// One timed run of the bare client, checked.
    fn bare(&self, round: usize) -> Result<Run> {
        self.recreate_out()?;
        let consumer = format!("bare-{round}");
        let count = self.messages_in();
        let url = self.server.url();
        let (server_cpu, cpu) = (self.server_cpu()?, binary::own_cpu_time());
        let started = Instant::now();
        self.runtime.block_on(bare_client(&url, &consumer, count))?;
        let elapsed = started.elapsed();
        let (server_cpu, cpu) = (
            self.server_cpu()? - server_cpu,
            binary::own_cpu_time() - cpu,
        );
        self.wait_settled(&consumer, None)?;
        let input = (0..self.repeat).flat_map(|_| self.lines.iter().map(|l| l.as_ref()));
        self.check_out(input, count)?;
        self.delete_consumer(&consumer)?;
        Ok(Run {
            elapsed,
            cpu,
            server_cpu,
            process: None,
        })
    }

    /// Asks every [`POLL`] how many messages `OUT` holds, until it holds `count`; the moment
    /// of the answer that it does. Fails if weir ends first or `OUT` stops growing.
    fn wait_for_out(&self, count: u64, child: &Spawned) -> Result<Instant> {
        let js = self.js.clone();
        self.runtime.block_on(async move {
            let stream = js.get_stream(OUT).await?;
            let mut last = (u64::MAX, Instant::now());
            loop {
                let held = stream.get_info().await?.state.messages;
                if held >= count {
                    return Ok(Instant::now());
                }
                if held != last.0 {
                    last = (held, Instant::now());
                } else if last.1.elapsed() > STALL {
                    bail!("{OUT} holds {held} of {count} messages, none more in {STALL:?}");
                }
                if child.exited() {
                    bail!("weir run ended with {OUT} holding {held} of {count} messages");
                }
                tokio::time::sleep(POLL).await;
            }
        })
    }

    /// Waits until consumer `name` of `IN` has delivered everything and has nothing unacked.
    fn wait_settled(&self, name: &str, child: Option<&Spawned>) -> Result<()> {
        let js = self.js.clone();
        self.runtime.block_on(async move {
            let stream = js.get_stream(IN).await?;
            let mut consumer: PullConsumer = stream.get_consumer(name).await.map_err(|e| anyhow!(e))?;
            let mut last = ((u64::MAX, usize::MAX), Instant::now());
            loop {
                let info = consumer.info().await?;
                let left = (info.num_pending, info.num_ack_pending);
                if left == (0, 0) {
                    return Ok(());
                }
                if left != last.0 {
                    last = (left, Instant::now());
                } else if last.1.elapsed() > STALL {
                    bail!(
                        "consumer {name}: {} messages pending and {} unacked, unchanged for {STALL:?}",
                        left.0,
                        left.1
                    );
                }
                if child.is_some_and(Spawned::exited) {
                    bail!("weir run ended with {} messages pending and {} unacked", left.0, left.1);
                }
                tokio::time::sleep(POLL).await;
            }
        })
    }

    fn delete_consumer(&self, name: &str) -> Result<()> {
        let js = self.js.clone();
        self.runtime.block_on(async move {
            js.get_stream(IN).await?.delete_consumer(name).await?;
            anyhow::Ok(())
        })
    }

    /// `OUT` holds exactly `count` messages, and read in order they are `expected`, byte for
    /// byte, each with a message id.
    fn check_out<'v>(&self, expected: impl Iterator<Item = &'v [u8]>, count: u64) -> Result<()> {
        let js = self.js.clone();
        self.runtime.block_on(async move {
            let stream = js.get_stream(OUT).await?;
            let held = stream.get_info().await?.state.messages;
            ensure!(
                held == count,
                "{OUT} holds {held} messages, expected {count}"
            );
            // An ephemeral consumer without acks: a plain read of the stream, in order.
            let reader: PullConsumer = stream
                .create_consumer(pull::Config {
                    ack_policy: AckPolicy::None,
                    ..Default::default()
                })
                .await?;
            let mut messages = reader
                .stream()
                .max_messages_per_batch(1000)
                .messages()
                .await?;
            let mut seen = 0u64;
            for want in expected {
                let message = tokio::time::timeout(READ_TIMEOUT, messages.next())
                    .await
                    .with_context(|| format!("message {seen} of {OUT} did not come"))?
                    .context("the read of OUT ended")??;
                ensure!(
                    message.payload.as_ref() == want,
                    "message {seen} of {OUT} is {:?}, expected {:?}",
                    String::from_utf8_lossy(&message.payload),
                    String::from_utf8_lossy(want)
                );
                let id = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id"));
                ensure!(id.is_some(), "message {seen} of {OUT} has no Nats-Msg-Id");
                seen += 1;
            }
            ensure!(
                seen == count,
                "{seen} messages expected, {OUT} holds {count}"
            );
            anyhow::Ok(())
        })
    }
}

/// The ceiling: consumes `count` messages of `IN` through a new durable consumer `name`,
/// publishes each payload to `out` with a message id, and acks each source message once its
/// PubAck is in; returns when the last PubAck is, `OUT` then holding every message.
async fn bare_client(url: &str, name: &str, count: u64) -> Result<()> {
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client.clone());
    let consumer: PullConsumer = js
        .get_stream(IN)
        .await?
        .create_consumer(pull::Config {
            durable_name: Some(name.into()),
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: BARE_MAX_ACK_PENDING,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .messages()
        .await?;
    let mut pending: VecDeque<(jetstream::Message, PublishAckFuture)> =
        VecDeque::with_capacity(WINDOW);
    let settle = |(message, ack): (jetstream::Message, PublishAckFuture)| async move {
        ack.await?;
        message.ack().await.map_err(|e| anyhow!(e))
    };
    for _ in 0..count {
        if pending.len() == WINDOW {
            settle(pending.pop_front().expect("a full window")).await?;
        }
        let message = messages.next().await.context("the pull ended")??;
        let sequence = message.info().map_err(|e| anyhow!(e))?.stream_sequence;
        let publish = PublishMessage::build()
            .payload(message.payload.clone())
            .message_id(format!("bare-{sequence}"));
        let ack = js.send_publish(OUT_SUBJECT, publish).await?;
        pending.push_back((message, ack));
    }
    for done in pending {
        settle(done).await?;
    }
    // The acks are on their way out, not waited for, as weir's.
    client.flush().await?;
    Ok(())
}

/// W4's table: each mode's rate, its ratio to the bare client, CPU, the server's CPU, and
/// for `weir run` the process's wall time and memory.
pub fn print(r: &Results, smoke: bool) {
    println!(
        "\n### W4 ({} messages in, {} out; {})\n",
        thousands(r.messages_in as f64),
        thousands(r.messages_out as f64),
        r.server
    );
    println!(
        "| mode | messages in/s, median (min–max) | ÷ bare client | messages in per CPU-second, median | nats-server CPU per run, median | `weir run` process wall, median | peak RSS, largest |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let rate = |run: &Run| r.messages_in as f64 / run.elapsed.as_secs_f64();
    let median = |runs: &[Run], f: &dyn Fn(&Run) -> f64| {
        Spread::of(&runs.iter().map(f).collect::<Vec<_>>()).median
    };
    let bare = median(&r.bare, &rate);
    let per_cpu = |run: &Run| r.messages_in as f64 / run.cpu.as_secs_f64();
    for (label, runs) in [("weir", &r.weir), ("bare client", &r.bare)] {
        let s = Spread::of(&runs.iter().map(rate).collect::<Vec<_>>());
        let process: Vec<(Duration, i64)> = runs.iter().filter_map(|run| run.process).collect();
        let (wall, rss) = if process.is_empty() {
            (String::new(), String::new())
        } else {
            let wall = Spread::of(
                &process
                    .iter()
                    .map(|p| p.0.as_secs_f64())
                    .collect::<Vec<_>>(),
            );
            let rss = Spread::of(
                &process
                    .iter()
                    .map(|p| p.1 as f64 / 1024.0)
                    .collect::<Vec<_>>(),
            );
            (
                format!("{:.2} s", wall.median),
                format!("{:.1} MiB", rss.max),
            )
        };
        println!(
            "| {label} | {} ({}–{}) | {:.2} | {} | {:.2} s | {wall} | {rss} |",
            thousands(s.median),
            thousands(s.min),
            thousands(s.max),
            s.median / bare,
            thousands(median(runs, &per_cpu)),
            median(runs, &|run| run.server_cpu.as_secs_f64()),
        );
    }
    println!(
        "\nW4 weir ÷ bare client: {:.2} (medians of messages in per second{}). Time runs from spawning `weir run` (or connecting the bare client) to `{OUT}` holding every output message; CPU is the `weir run` process's (to its exit) or this process's over the bare client's run; the server's CPU is counted apart. The bare client republishes every message ({}), weir W3's output ({}): the server stores fewer of weir's.",
        median(&r.weir, &rate) / bare,
        if smoke {
            "; not judged at smoke sizes"
        } else {
            ""
        },
        thousands(r.messages_in as f64),
        thousands(r.messages_out as f64),
    );
}
