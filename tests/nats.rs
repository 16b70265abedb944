//! Delivery that survives `kill -9`, through the real `weir` binary: NATS JetStream in and
//! out against a real `nats-server`, the file path with checkpoints, and three processes
//! sharing one durable consumer.
//!
//! Each test starts its own server on a free loopback port (see `support::nats`); without
//! `nats-server` installed the NATS tests print why and pass, unless `WEIR_REQUIRE_NATS` is
//! set (CI), where they fail. The kill tests kill at random moments, several rounds each, then
//! let a last run finish, and count every event: each input at least once in the output, the
//! duplicates printed (and, behind message ids, none at all).

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use support::file::{PipelineFile, Sink, Source, Stage};
use support::nats::{NatsServer, exactly_once};
use support::{Dir, PATIENCE, Running, plugin, wait_until};

/// Kill rounds per kill test: enough for kills to land at different stages of a run.
const ROUNDS: usize = 3;

/// Messages per round: a few thousand keeps each test within seconds on a 2-core machine.
const PER_ROUND: usize = 3000;

/// Lines per round of the file path: more than a NATS round, as a file run is much faster
/// and a kill should land while it runs.
const FILE_PER_ROUND: usize = 50_000;

fn round_bytes(lines: &[String]) -> u64 {
    lines.iter().map(|l| l.len() as u64 + 1).sum()
}

fn payloads(round: usize, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("r{round}-event-{i:06}"))
        .collect()
}

/// A NATS → passthrough → NATS pipeline: stream `IN` (subject `in`) to subject `out`.
fn nats_pipeline(dir: &Dir, server: &NatsServer, consumer: &str) -> Result<std::path::PathBuf> {
    PipelineFile::new()
        .source(
            "in",
            Source::nats(&server.url(), "IN", consumer)
                .key("subject", "in")
                .key("ack_wait", "2s")
                .key("key_header", "k"),
        )
        .stage("pass", Stage::plugin(plugin("passthrough")).inputs(&["in"]))
        .sink("out", Sink::nats(&server.url(), "out").inputs(&["pass"]))
        .dead_letters(dir.path("dead.jsonl"))
        .write(dir)
}

fn streams(server: &NatsServer) -> Result<()> {
    server.stream("IN", &["in"])?;
    server.stream("OUT", &["out"])
}

/// Waits until stream `name` holds `count` messages.
fn wait_for_count(server: &NatsServer, name: &str, count: u64) -> Result<()> {
    wait_until(
        &format!("{count} messages in {name}"),
        || Ok((server.count(name)? >= count).then_some(())),
        || format!("{name} holds {:?}", server.count(name).ok()),
    )
}

/// Stops a run with SIGTERM and checks it exits 0.
fn stop(run: Running) -> Result<()> {
    run.signal(libc::SIGTERM)?;
    let ended = run.wait(PATIENCE)?;
    ensure!(ended.code() == 0, "exit {}: {}", ended.code(), ended.stderr);
    Ok(())
}

/// Kills a run with SIGKILL (if it has not ended by itself) and reaps it.
fn kill(run: Running) -> Result<()> {
    if !run.exited() {
        let _ = run.signal(libc::SIGKILL);
    }
    let _ = run.wait(PATIENCE)?;
    Ok(())
}

#[test]
fn nats_round_trip_through_a_stage_delivers_every_message_once_and_acks_it() -> Result<()> {
    let Some(server) = NatsServer::start("nats round trip")? else {
        return Ok(());
    };
    streams(&server)?;
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .source(
            "in",
            Source::nats(&server.url(), "IN", "weir").key("subject", "in"),
        )
        .stage("upper", Stage::plugin(plugin("uppercase")).inputs(&["in"]))
        .sink("out", Sink::nats(&server.url(), "out").inputs(&["upper"]))
        .dead_letters(dir.path("dead.jsonl"))
        .write(&dir)?;
    let run = dir.start(&file)?;
    let sent = payloads(0, PER_ROUND);
    server.publish("in", &sent)?;
    wait_for_count(&server, "OUT", sent.len() as u64)?;
    stop(run)?;

    let out: Vec<String> = server
        .messages("OUT")?
        .into_iter()
        .map(|m| m.payload)
        .collect();
    let upper: Vec<String> = sent.iter().map(|s| s.to_uppercase()).collect();
    // One process, one consumer: the order is kept too.
    ensure!(out == upper, "OUT differs from the uppercased input");
    let counts = server.consumer("IN", "weir")?;
    ensure!(
        counts.pending == 0 && counts.ack_pending == 0,
        "every message acked at shutdown: {counts:?}"
    );
    Ok(())
}

/// A message a stage dead-letters is ended with `Term` once its dead letter is written: it is
/// neither acked as delivered nor redelivered after `ack_wait`.
#[test]
fn a_dead_lettered_message_is_terminated_and_never_redelivered() -> Result<()> {
    let Some(server) = NatsServer::start("nats dead letters")? else {
        return Ok(());
    };
    streams(&server)?;
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .source(
            "in",
            Source::nats(&server.url(), "IN", "weir")
                .key("subject", "in")
                .key("ack_wait", "1s"),
        )
        .stage(
            "risky",
            Stage::plugin(plugin("fixture-poison")).inputs(&["in"]),
        )
        .sink("out", Sink::nats(&server.url(), "out").inputs(&["risky"]))
        .dead_letters(dir.path("dead.jsonl"))
        .write(&dir)?;
    let run = dir.start(&file)?;
    let sent = support::events_with(100, 37, "this is poison");
    server.publish("in", &sent)?;
    wait_for_count(&server, "OUT", 99)?;
    let letters = || {
        std::fs::read_to_string(dir.path("dead.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    wait_until(
        "one dead letter",
        || Ok((letters() == 1).then_some(())),
        || format!("{} dead letters", letters()),
    )?;
    // Two ack_waits: a message left unacked would have come back by now.
    std::thread::sleep(Duration::from_millis(2500));
    stop(run)?;
    let counts = server.consumer("IN", "weir")?;
    ensure!(
        counts.ack_pending == 0 && counts.redelivered == 0,
        "the poison message was terminated: {counts:?}"
    );
    ensure!(letters() == 1, "dead-lettered once: {} letters", letters());
    ensure!(server.count("OUT")? == 99, "the rest went through");
    Ok(())
}

#[test]
fn replaying_the_same_input_stores_each_message_once_by_its_message_id() -> Result<()> {
    let Some(server) = NatsServer::start("nats message ids")? else {
        return Ok(());
    };
    server.stream("OUT", &["out"])?;
    let dir = Dir::new()?;
    let sent = payloads(0, PER_ROUND);
    let input = dir.write_lines("in.txt", &sent)?;
    let file = PipelineFile::new()
        .source("in", Source::file(&input))
        .stage("pass", Stage::plugin(plugin("passthrough")).inputs(&["in"]))
        .sink("out", Sink::nats(&server.url(), "out").inputs(&["pass"]))
        .dead_letters(dir.path("dead.jsonl"))
        .write(&dir)?;
    for round in 0..2 {
        // No data_dir: each run reads the file from its start again.
        let ran = dir.run(&file)?;
        ensure!(ran.code() == 0, "run {round}: {}", ran.stderr());
    }
    let out: Vec<String> = server
        .messages("OUT")?
        .into_iter()
        .map(|m| m.payload)
        .collect();
    exactly_once(&out, &sent)?;
    let first = server.messages("OUT")?.into_iter().next();
    ensure!(
        first.is_some_and(|m| m.header("Nats-Msg-Id").is_some()),
        "each message has an id"
    );
    Ok(())
}

#[test]
fn a_missing_stream_or_server_is_an_error_naming_the_url_and_the_stream() -> Result<()> {
    let Some(server) = NatsServer::start("nats missing stream")? else {
        return Ok(());
    };
    let dir = Dir::new()?;
    let url = server.url();
    let pipeline = |url: &str| {
        PipelineFile::new()
            .source("in", Source::nats(url, "NOSUCH", "weir"))
            .sink("out", Sink::null().inputs(&["in"]))
            .write(&dir)
    };
    let ran = dir.run(&pipeline(&url)?)?;
    ensure!(
        ran.code() == 1,
        "a missing stream fails the run as other start errors do"
    );
    ensure!(
        ran.stderr().contains(&url) && ran.stderr().contains("NOSUCH"),
        "names the URL and the stream: {}",
        ran.stderr()
    );

    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let nowhere = format!("nats://127.0.0.1:{port}");
    let ran = dir.run(&pipeline(&nowhere)?)?;
    ensure!(
        ran.code() == 1 && ran.stderr().contains(&nowhere),
        "an unreachable server fails the run naming it: {}",
        ran.stderr()
    );
    Ok(())
}

/// The file path: a file source with checkpoints in `data_dir` into an appending file sink,
/// killed at random moments. Every round appends fresh lines to the input, starts `weir`,
/// and kills it somewhere between its start and well after it would have finished; a last
/// run reads what is left.
#[test]
fn kill_9_on_the_file_path_loses_nothing_and_bounds_the_duplicates() -> Result<()> {
    let dir = Dir::new()?;
    let input = dir.path("in.txt");
    let output = dir.path("out.txt");
    let file = PipelineFile::new()
        .pipeline_key("data_dir", dir.path("data").display().to_string())
        // The shortest interval, and a sink that fsyncs every flush: a run lasts long enough
        // for several commits, so a kill lands between two of them, not before the first.
        .pipeline_key("checkpoint_interval", "10ms")
        .batch_size(64)
        .source("in", Source::file(&input))
        .stage("pass", Stage::plugin(plugin("passthrough")).inputs(&["in"]))
        .sink(
            "out",
            Sink::file(&output).key("sync", "fsync").inputs(&["pass"]),
        )
        .dead_letters(dir.path("dead.jsonl"))
        .write(&dir)?;
    std::fs::write(&input, "")?;
    let in_flight = dir.checked_bound(&file)? as usize;
    let mut sent = Vec::new();
    let mut duplicates = vec![0];
    for round in 0..ROUNDS {
        let lines = payloads(round, FILE_PER_ROUND);
        append_lines(&input, &lines)?;
        // Killed once the output has grown by a random part of the round: mid-run, whatever
        // the machine's speed.
        let written = || std::fs::metadata(&output).map_or(0, |m| m.len());
        let target = written() + round_bytes(&lines) * fastrand::u64(5..95) / 100;
        sent.extend(lines);
        let run = dir.start(&file)?;
        wait_until(
            "the output to grow",
            || Ok((written() >= target || run.exited()).then_some(())),
            || format!("{} of {target} bytes", written()),
        )?;
        kill(run)?;
        duplicates.push(duplicates_in(&output, &sent)?.0);
    }
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "the last run: {}", ran.stderr());
    let (dups, cut) = duplicates_in(&output, &sent)?;
    eprintln!(
        "file path: duplicates after each kill {duplicates:?}, at the end {dups}, cut lines {cut}, of {} lines",
        sent.len()
    );
    let missing = missing_in(&output, &sent)?;
    ensure!(missing == 0, "{missing} input lines are not in the output");
    // What may come again after a kill: what was in flight plus one checkpoint interval's
    // input (10 ms: a few thousand lines even without a disk to wait for). Half a round is
    // far above that and far below a re-read from the start.
    duplicates.push(dups);
    let per_kill: Vec<usize> = duplicates.windows(2).map(|w| w[1] - w[0]).collect();
    ensure!(
        per_kill
            .iter()
            .all(|&d| d <= in_flight + FILE_PER_ROUND / 2),
        "duplicates per restart {per_kill:?} beyond the bound (in flight {in_flight})"
    );
    // A kill mid-write may leave one line cut per round.
    ensure!(cut <= ROUNDS, "{cut} cut lines");
    Ok(())
}

fn append_lines(path: &Path, lines: &[String]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    let mut text = lines.join("\n");
    text.push('\n');
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Output lines beyond the first copy of each input line, and lines that are no input at all
/// (cut by a kill mid-write).
fn duplicates_in(output: &Path, sent: &[String]) -> Result<(usize, usize)> {
    let text = std::fs::read_to_string(output).unwrap_or_default();
    let wanted: HashSet<&str> = sent.iter().map(String::as_str).collect();
    let mut seen = HashSet::new();
    let (mut dups, mut cut) = (0, 0);
    for line in text.lines() {
        if !wanted.contains(line) {
            cut += 1;
        } else if !seen.insert(line) {
            dups += 1;
        }
    }
    Ok((dups, cut))
}

fn missing_in(output: &Path, sent: &[String]) -> Result<usize> {
    let text = std::fs::read_to_string(output)?;
    let got: HashSet<&str> = text.lines().collect();
    Ok(sent.iter().filter(|s| !got.contains(s.as_str())).count())
}

/// The NATS path: every round publishes fresh messages, starts `weir`, kills it at a random
/// moment; a last run drains the stream, redelivered messages included. The output stream
/// holds each message once (message ids); the redeliveries are the duplicates the server
/// dropped.
#[test]
fn kill_9_on_the_nats_path_loses_nothing_and_stores_each_message_once() -> Result<()> {
    let Some(server) = NatsServer::start("nats kill -9")? else {
        return Ok(());
    };
    streams(&server)?;
    let dir = Dir::new()?;
    let file = nats_pipeline(&dir, &server, "weir")?;
    let mut sent = Vec::new();
    for round in 0..ROUNDS {
        let run = dir.start(&file)?;
        let batch = payloads(round, PER_ROUND);
        let before = server.count("OUT")?;
        server.publish("in", &batch)?;
        sent.extend(batch);
        // Killed once a random part of the round is through.
        let target = before + PER_ROUND as u64 * fastrand::u64(5..95) / 100;
        wait_until(
            "the output stream to grow",
            || Ok((server.count("OUT")? >= target || run.exited()).then_some(())),
            || format!("OUT holds {:?}", server.count("OUT").ok()),
        )?;
        kill(run)?;
        eprintln!(
            "nats path: after kill {round}: OUT holds {} of {} sent",
            server.count("OUT")?,
            sent.len()
        );
    }
    let run = dir.start(&file)?;
    // What the killed runs held unacked comes back after ack_wait (2 s).
    wait_for_count(&server, "OUT", sent.len() as u64)?;
    wait_until(
        "every message acked",
        || {
            let c = server.consumer("IN", "weir")?;
            Ok((c.pending == 0 && c.ack_pending == 0).then_some(()))
        },
        || format!("{:?}", server.consumer("IN", "weir").ok()),
    )?;
    stop(run)?;
    let counts = server.consumer("IN", "weir")?;
    eprintln!(
        "nats path: {} messages, {} delivered more than once after the kills (dropped by message id: 0 duplicates stored)",
        sent.len(),
        counts.deliveries - sent.len() as u64
    );
    let out: Vec<String> = server
        .messages("OUT")?
        .into_iter()
        .map(|m| m.payload)
        .collect();
    exactly_once(&out, &sent)
}

/// Three processes on one durable consumer: each message is processed by one of them; one is
/// killed mid-run and the others take over its unacked messages after `ack_wait`.
#[test]
fn three_processes_share_one_consumer_and_survive_kill_9_of_one() -> Result<()> {
    let Some(server) = NatsServer::start("nats scale-out")? else {
        return Ok(());
    };
    streams(&server)?;
    let dir = Dir::new()?;
    let file = nats_pipeline(&dir, &server, "shared")?;
    let mut runs: Vec<Running> = (0..3).map(|_| dir.start(&file)).collect::<Result<_>>()?;
    // All three pulling before anything is published, so that the work is shared.
    wait_until(
        "three processes pulling",
        || {
            let c = server.consumer("IN", "shared").ok();
            Ok(c.filter(|c| c.waiting >= 3).map(|_| ()))
        },
        || format!("{:?}", server.consumer("IN", "shared").ok()),
    )?;
    let sent = payloads(0, PER_ROUND * 2);
    let started = Instant::now();
    let (first, rest) = sent.split_at(PER_ROUND);
    server.publish("in", first)?;
    // One of them is killed once a random part of the first half is through.
    let target = PER_ROUND as u64 * fastrand::u64(5..95) / 100;
    wait_until(
        "the output stream to grow",
        || Ok((server.count("OUT")? >= target).then_some(())),
        || format!("OUT holds {:?}", server.count("OUT").ok()),
    )?;
    kill(runs.remove(fastrand::usize(0..3)))?;
    server.publish("in", rest)?;
    wait_for_count(&server, "OUT", sent.len() as u64)?;
    eprintln!(
        "scale-out: {} messages through three processes, one killed, in {:?}",
        sent.len(),
        started.elapsed()
    );
    for run in runs {
        stop(run)?;
    }
    let counts = server.consumer("IN", "shared")?;
    eprintln!(
        "scale-out: {} delivered more than once (the killed process's unacked messages)",
        counts.deliveries - sent.len() as u64
    );
    let out: Vec<String> = server
        .messages("OUT")?
        .into_iter()
        .map(|m| m.payload)
        .collect();
    exactly_once(&out, &sent)
}

/// The server killed (`kill -9`) and restarted mid-run: the run reconnects with backoff, and
/// every message, those in flight at the kill included, ends in the output stream once.
#[test]
fn a_server_restarted_mid_run_is_reconnected_and_nothing_is_lost() -> Result<()> {
    let Some(mut server) = NatsServer::start("nats reconnect")? else {
        return Ok(());
    };
    streams(&server)?;
    let dir = Dir::new()?;
    let file = nats_pipeline(&dir, &server, "weir")?;
    let run = dir.start(&file)?;
    let sent = payloads(0, PER_ROUND * 2);
    let (first, rest) = sent.split_at(PER_ROUND);
    server.publish("in", first)?;
    let target = PER_ROUND as u64 * fastrand::u64(5..95) / 100;
    wait_for_count(&server, "OUT", target)?;
    server.restart()?;
    server.publish("in", rest)?;
    wait_until(
        "every message in OUT after the restart",
        || Ok((server.count("OUT")? >= sent.len() as u64).then_some(())),
        || {
            format!(
                "OUT holds {:?}, IN {:?}, consumer {:?}; weir said: {}",
                server.count("OUT").ok(),
                server.count("IN").ok(),
                server.consumer("IN", "weir"),
                run.stderr()
            )
        },
    )?;
    ensure!(!run.exited(), "the run outlived the server's restart");
    stop(run)?;
    let out: Vec<String> = server
        .messages("OUT")?
        .into_iter()
        .map(|m| m.payload)
        .collect();
    exactly_once(&out, &sent)
}

/// W4, a figure rather than a check (ignored; `cargo test --release --test nats -- --ignored
/// --nocapture --test-threads 1 w4`, one at a time so the ceiling's run does not share the
/// cores with this one): the W3 stages between a NATS stream and a NATS stream. The input is
/// published first; the time runs from `weir run` to the last output message stored, the
/// start of the process included.
#[test]
#[ignore]
fn w4_nats_through_the_w3_stages_throughput() -> Result<()> {
    let Some(server) = NatsServer::start("W4")? else {
        return Ok(());
    };
    streams(&server)?;
    const REPEAT: usize = 25;
    let log = std::fs::read_to_string(
        support::workspace_root().join("examples/auth-log/data/OpenSSH_2k.log"),
    )?;
    let lines: Vec<String> = log.lines().map(str::to_string).collect();
    let input: Vec<String> = (0..REPEAT).flat_map(|_| lines.iter().cloned()).collect();
    server.publish("in", &input)?;
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .source(
            "log",
            Source::nats(&server.url(), "IN", "w4").key("subject", "in"),
        )
        .stage(
            "parse",
            Stage::plugin(plugin("sshd-parse")).inputs(&["log"]),
        )
        .stage(
            "filter",
            Stage::plugin(plugin("auth-filter")).inputs(&["parse"]),
        )
        .stage(
            "redact",
            Stage::plugin(plugin("redact-ip")).inputs(&["filter"]),
        )
        .sink("out", Sink::nats(&server.url(), "out").inputs(&["redact"]))
        .write(&dir)?;
    let expected = (1225 * REPEAT) as u64;
    let started = Instant::now();
    let run = dir.start(&file)?;
    wait_until(
        "the W3 output in OUT",
        || Ok((server.count("OUT")? >= expected).then_some(())),
        || format!("OUT holds {:?}", server.count("OUT").ok()),
    )?;
    let elapsed = started.elapsed();
    stop(run)?;
    eprintln!(
        "W4: {} events in, {expected} out, in {elapsed:.2?}: {:.0} events/s",
        input.len(),
        input.len() as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// The ceiling of W4 (ignored, as W4): a bare async-nats client on the same server and input
/// that only consumes, republishes each message, waits for the PubAcks of each 256 and acks
/// their sources: what weir's NATS path does, without stages.
#[test]
#[ignore]
fn w4_ceiling_a_bare_client_consumes_republishes_and_acks() -> Result<()> {
    use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
    use futures::StreamExt;
    let Some(server) = NatsServer::start("W4 ceiling")? else {
        return Ok(());
    };
    streams(&server)?;
    let log = std::fs::read_to_string(
        support::workspace_root().join("examples/auth-log/data/OpenSSH_2k.log"),
    )?;
    let input: Vec<String> = (0..25)
        .flat_map(|_| log.lines().map(str::to_string))
        .collect();
    let count = input.len();
    server.publish("in", &input)?;
    let url = server.url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let elapsed = runtime.block_on(async move {
        let started = Instant::now();
        let js = async_nats::jetstream::new(async_nats::connect(&url).await?);
        let config = pull::Config {
            durable_name: Some("bare".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        };
        let consumer: PullConsumer = js
            .get_stream("IN")
            .await?
            .get_or_create_consumer("bare", config)
            .await?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(256)
            .messages()
            .await?;
        let (mut pending, mut done) = (Vec::new(), 0);
        while done < count {
            let message = messages.next().await.context("the pull ended")??;
            let ack = js.publish("out", message.payload.clone()).await?;
            pending.push((message, ack));
            if pending.len() >= 256 || done + pending.len() == count {
                for (message, ack) in pending.drain(..) {
                    ack.await?;
                    message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    done += 1;
                }
            }
        }
        anyhow::Ok(started.elapsed())
    })?;
    eprintln!(
        "W4 ceiling: {count} events consumed, republished and acked in {elapsed:.2?}: {:.0} events/s",
        count as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
