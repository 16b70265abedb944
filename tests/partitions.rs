//! Partitioned NATS subjects through the real `weir` binary and a real `nats-server`: a sink
//! with `partitions = 3` puts each key's messages on `SUBJECT.p`, `p` the partition of the key
//! (checked message by message with the async-nats client); a source owning partitions 0 and
//! 1 of 3 gets exactly the messages of the keys that hash there; an event computed again goes
//! to the same subject under the same message id; `weir check` prints the partitioning and
//! refuses malformed values naming the key and its line; and three processes with static
//! partitions count event-time windows into one stream, one of them killed with SIGKILL and
//! started again, every window exactly once and exact.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, ensure};
use support::file::{PipelineFile, Sink, Source, Stage};
use support::nats::NatsServer;
use support::{Dir, PATIENCE, Running, plugin, read_lines, wait_until};
use weir::pipeline::partition::partition_of;

const KEYS: usize = 300;
const MESSAGES: usize = 3_000;
const PARTITIONS: u32 = 3;

/// `(key, payload)`: key `user-N`, payload `user-N/i`, so every output names its key.
fn keyed() -> Vec<(String, String)> {
    (0..MESSAGES)
        .map(|i| {
            let key = format!("user-{}", i % KEYS);
            let payload = format!("{key}/{i}");
            (key, payload)
        })
        .collect()
}

/// The key an output payload names.
fn key_of(payload: &str) -> &str {
    payload.split_once('/').map_or(payload, |(k, _)| k)
}

/// `IN` (keyed, header `k`) → passthrough → the sink `parts`, 3 partitions of `parts`.
fn splitter(dir: &Dir, server: &NatsServer, consumer: &str) -> Result<std::path::PathBuf> {
    PipelineFile::new()
        .source(
            "in",
            Source::nats(&server.url(), "IN", consumer)
                .key("subject", "in")
                .key("key_header", "k"),
        )
        .stage("pass", Stage::plugin(plugin("passthrough")).inputs(&["in"]))
        .sink(
            "parts",
            Sink::nats(&server.url(), "parts")
                .key("partitions", i64::from(PARTITIONS))
                .inputs(&["pass"]),
        )
        .dead_letters(dir.path("dead.jsonl"))
        .write_as(dir, &format!("split-{consumer}.toml"))
}

/// Stops a run with SIGTERM and checks it exits 0.
fn stop(run: Running) -> Result<()> {
    run.signal(libc::SIGTERM)?;
    let ended = run.wait(PATIENCE)?;
    ensure!(ended.code() == 0, "exit {}: {}", ended.code(), ended.stderr);
    Ok(())
}

/// Checks that every message of `PARTS` is on the subject of its key's partition; returns how
/// many each partition holds.
fn each_on_its_partition(server: &NatsServer) -> Result<BTreeMap<String, usize>> {
    let mut per_subject = BTreeMap::new();
    for m in server.messages("PARTS")? {
        let key = m.header("k").context("the key header went through")?;
        ensure!(key == key_of(&m.payload), "{m:?}");
        let expected = format!("parts.{}", partition_of(key.as_bytes(), PARTITIONS));
        ensure!(
            m.subject == expected,
            "{} on {}, not {expected}",
            m.payload,
            m.subject
        );
        ensure!(m.header("Nats-Msg-Id").is_some(), "{m:?} has no message id");
        *per_subject.entry(m.subject).or_default() += 1;
    }
    Ok(per_subject)
}

#[test]
fn a_partitioned_sink_routes_each_key_and_a_source_reads_exactly_its_partitions() -> Result<()> {
    let Some(server) = NatsServer::start("nats partitions")? else {
        return Ok(());
    };
    server.stream("IN", &["in"])?;
    server.stream("PARTS", &["parts.*"])?;
    let dir = Dir::new()?;
    let sent = keyed();
    server.publish_keyed(&|_| "in".to_string(), "k", &sent)?;

    let split = dir.start(&splitter(&dir, &server, "split")?)?;
    wait_until(
        "every message in PARTS",
        || Ok((server.count("PARTS")? >= MESSAGES as u64).then_some(())),
        || {
            format!(
                "PARTS holds {:?}; weir said: {}",
                server.count("PARTS").ok(),
                split.stderr()
            )
        },
    )?;
    stop(split)?;
    let per_subject = each_on_its_partition(&server)?;
    eprintln!("partitions: {per_subject:?}");
    ensure!(
        per_subject.len() == PARTITIONS as usize && per_subject.values().all(|&n| n >= 500),
        "every partition has a fair share: {per_subject:?}"
    );

    // The same input computed again, through a new consumer of the same source: each event
    // goes to the same subject under the same message id, and the server drops every copy.
    let again = dir.start(&splitter(&dir, &server, "again")?)?;
    wait_until(
        "the second consumer to finish",
        || {
            // Until weir has created it, there is none.
            let c = server.consumer("IN", "again").ok();
            Ok(
                c.filter(|c| c.deliveries >= MESSAGES as u64 && c.ack_pending == 0)
                    .map(drop),
            )
        },
        || format!("{:?}", server.consumer("IN", "again").ok()),
    )?;
    stop(again)?;
    ensure!(
        server.count("PARTS")? == MESSAGES as u64,
        "a recomputed event is stored once: PARTS holds {}",
        server.count("PARTS")?
    );
    ensure!(each_on_its_partition(&server)? == per_subject);

    // A process owning partitions 0 and 1 of 3.
    let file = PipelineFile::new()
        .source(
            "parts",
            Source::nats(&server.url(), "PARTS", "owner")
                .key("subject", "parts")
                .key("partitions", vec![0i64, 1])
                .key("partition_count", i64::from(PARTITIONS))
                .key("key_header", "k"),
        )
        .stage(
            "pass",
            Stage::plugin(plugin("passthrough")).inputs(&["parts"]),
        )
        .sink("out", Sink::file("out.txt").inputs(&["pass"]))
        .dead_letters(dir.path("dead.jsonl"))
        .write(&dir)?;
    let expected: BTreeSet<&str> = sent
        .iter()
        .filter(|(k, _)| partition_of(k.as_bytes(), PARTITIONS) < 2)
        .map(|(_, p)| p.as_str())
        .collect();
    let owner = dir.start(&file)?;
    let written = || read_lines(&dir.path("out.txt")).map_or(0, |l| l.len());
    wait_until(
        "partitions 0 and 1 in the output",
        || Ok((written() >= expected.len()).then_some(())),
        || format!("{} of {} written", written(), expected.len()),
    )?;
    // Time for anything from partition 2 to arrive, were it coming.
    std::thread::sleep(std::time::Duration::from_millis(500));
    stop(owner)?;
    let out = read_lines(&dir.path("out.txt"))?;
    let got: BTreeSet<&str> = out.iter().map(String::as_str).collect();
    ensure!(
        out.len() == expected.len() && got == expected,
        "{} lines, {} distinct, {} expected; {} not expected",
        out.len(),
        got.len(),
        expected.len(),
        got.difference(&expected).count()
    );
    for p in 0..2 {
        let c = server.consumer("PARTS", &format!("owner-{p}"))?;
        ensure!(c.pending == 0 && c.ack_pending == 0, "owner-{p}: {c:?}");
    }
    ensure!(
        server.consumer("PARTS", "owner-2").is_err(),
        "no consumer for a partition the process does not own"
    );
    Ok(())
}

/// `[sources.in]` partitioned as given and `[sinks.out]` with `partitions` as given.
fn partitioned(source: &[(&str, toml::Value)], sink: Option<toml::Value>) -> PipelineFile {
    let mut s = Source::nats("nats://127.0.0.1:4222", "PARTS", "owner").key("subject", "parts");
    for (key, value) in source {
        s = s.key(key, value.clone());
    }
    let mut out = Sink::nats("nats://127.0.0.1:4222", "out").inputs(&["in"]);
    if let Some(p) = sink {
        out = out.key("partitions", p);
    }
    PipelineFile::new().source("in", s).sink("out", out)
}

#[test]
fn weir_check_prints_the_partitioning_and_refuses_malformed_values() -> Result<()> {
    let dir = Dir::new()?;
    let list = |ps: &[i64]| toml::Value::Array(ps.iter().map(|&p| p.into()).collect());
    let good = partitioned(
        &[("partitions", list(&[2, 0])), ("partition_count", 3.into())],
        Some(4.into()),
    );
    let (code, stdout, stderr) = dir.check(&good.write(&dir)?)?;
    ensure!(code == 0, "{stderr}");
    for line in [
        "source `in`: NATS stream `PARTS`, partitions 0, 2 of 3 of subject `parts` \
         (`parts.0`, `parts.2`) through durable consumers `owner-0`, `owner-2` at \
         nats://127.0.0.1:4222",
        "sink `out`: NATS subjects `out.0` to `out.3` at nats://127.0.0.1:4222: 4 partitions \
         by the hash of each event's key (an event without a key goes to partition 0)",
    ] {
        ensure!(stdout.contains(line), "{line:?} not in:\n{stdout}");
    }

    // Each malformed file: the key the error names, the text on the line it names, and what
    // the message says.
    let cases: Vec<(PipelineFile, &str, &str, &str)> = vec![
        (
            partitioned(&[], Some(0.into())),
            "sinks.out.partitions",
            "partitions = 0",
            "from 1 to 1024",
        ),
        (
            partitioned(&[], Some(1025.into())),
            "sinks.out.partitions",
            "partitions = 1025",
            "from 1 to 1024",
        ),
        (
            partitioned(&[], Some("three".into())),
            "sinks.out.partitions",
            "partitions = \"three\"",
            "expected a whole number",
        ),
        (
            partitioned(
                &[("partitions", list(&[0, 3])), ("partition_count", 3.into())],
                None,
            ),
            "sources.in.partitions",
            "partitions = [0, 3]",
            "partition 3 is not one of the 3 of `partition_count` (0 to 2)",
        ),
        (
            partitioned(
                &[("partitions", list(&[1, 1])), ("partition_count", 3.into())],
                None,
            ),
            "sources.in.partitions",
            "partitions = [1, 1]",
            "partition 1 is listed twice",
        ),
        (
            partitioned(
                &[("partitions", list(&[])), ("partition_count", 3.into())],
                None,
            ),
            "sources.in.partitions",
            "partitions = []",
            "names no partition",
        ),
        (
            partitioned(
                &[("partitions", list(&[0])), ("partition_count", 2000.into())],
                None,
            ),
            "sources.in.partition_count",
            "partition_count = 2000",
            "from 1 to 1024",
        ),
        (
            partitioned(&[("partitions", list(&[0]))], None),
            "sources.in.partition_count",
            "partitions = [0]",
            "`partitions` needs `partition_count`",
        ),
        (
            partitioned(&[("partition_count", 3.into())], None),
            "sources.in.partitions",
            "partition_count = 3",
            "`partition_count` needs `partitions`",
        ),
        (
            partitioned(
                &[
                    ("partitions", list(&[0])),
                    ("partition_count", 3.into()),
                    ("subject", "parts.*".into()),
                ],
                None,
            ),
            "sources.in.subject",
            "subject = \"parts.*\"",
            "cannot be partitioned",
        ),
        (
            partitioned(
                &[
                    ("partitions", toml::Value::Array(vec!["0".into()])),
                    ("partition_count", 3.into()),
                ],
                None,
            ),
            "sources.in.partitions",
            "partitions = [\"0\"]",
            "a whole number, as in [0, 1]",
        ),
    ];
    for (file, key, on, says) in cases {
        let line = file.line_of(on);
        let (code, _, stderr) = dir.check(&file.write(&dir)?)?;
        ensure!(code == 2, "{key} ({on}): exit {code}: {stderr}");
        let place = format!(":{line}: `{key}`: ");
        ensure!(
            stderr.contains(&place) && stderr.contains(says),
            "{on}: wanted {place:?} and {says:?} in: {stderr}"
        );
    }

    // A partitioned source without `subject`: blamed on `partitions`, naming `subject`.
    let mut file = partitioned(
        &[("partitions", list(&[0])), ("partition_count", 3.into())],
        None,
    );
    let mut source = Source::nats("nats://127.0.0.1:4222", "PARTS", "owner");
    source = source
        .key("partitions", list(&[0]))
        .key("partition_count", 3);
    file = file.source("in", source);
    let line = file.line_of("partitions = [0]");
    let (code, _, stderr) = dir.check(&file.write(&dir)?)?;
    ensure!(code == 2, "{stderr}");
    ensure!(
        stderr.contains(&format!(":{line}: `sources.in.subject`: "))
            && stderr.contains("SUBJECT.P"),
        "{stderr}"
    );
    Ok(())
}

/// Events per key, keys and the event time between two events of the scale-out test: about
/// five minutes of event time, so each key has several windows.
const SCALE_EVENTS: usize = 30_000;
const SCALE_KEYS: usize = 60;
const STEP_MS: u64 = 10;
const T0: u64 = 1_700_000_000_000;

/// Process `p` of 3: partition `p` of `ev`, stamped with its key and time, counted in tumbling
/// event-time windows of 60 s, each window published to `win` with its message id; its state
/// and the stream position it goes with in a data folder of its own.
fn windows_process(dir: &Dir, server: &NatsServer, p: u32) -> Result<std::path::PathBuf> {
    PipelineFile::new()
        .pipeline_key(
            "data_dir",
            dir.path(&format!("data-{p}")).display().to_string(),
        )
        .pipeline_key("checkpoint_interval", "50ms")
        .source(
            "ev",
            Source::nats(&server.url(), "EV", "windows")
                .key("subject", "ev")
                .key("partitions", vec![i64::from(p)])
                .key("partition_count", i64::from(PARTITIONS))
                .key("key_header", "k"),
        )
        .stage(
            "stamp",
            Stage::plugin(plugin("fixture-stamp")).inputs(&["ev"]),
        )
        .stage(
            "count",
            Stage::plugin(plugin("window-count")).inputs(&["stamp"]),
        )
        .sink("win", Sink::nats(&server.url(), "win").inputs(&["count"]))
        .dead_letters(dir.path(&format!("dead-{p}.jsonl")))
        .write_as(dir, &format!("windows-{p}.toml"))
}

/// `(key, "KEY,MS")` for events `range`: key `k{i % keys}`, time `T0 + i × STEP_MS`.
fn timed(range: std::ops::Range<usize>) -> Vec<(String, String)> {
    range
        .map(|i| {
            let key = format!("k{}", i % SCALE_KEYS);
            let payload = format!("{key},{}", T0 + i as u64 * STEP_MS);
            (key, payload)
        })
        .collect()
}

/// Three processes with static partitions count windows from one partitioned stream into one
/// output stream; one is killed with SIGKILL mid-stream and started again. Every window comes
/// out once, with its exact count: the restarted process's state and stream position are
/// those of its last commit round, the events after it are redelivered and counted again, and
/// a window computed again is published under the same message id, so the server keeps one.
#[test]
fn three_processes_count_windows_exactly_once_across_a_kill_9() -> Result<()> {
    let Some(server) = NatsServer::start("nats windows scale-out")? else {
        return Ok(());
    };
    server.stream("EV", &["ev.*"])?;
    server.stream("WIN", &["win"])?;
    let dir = Dir::new()?;
    let on_partition = |key: &str| format!("ev.{}", partition_of(key.as_bytes(), PARTITIONS));
    let first = timed(0..SCALE_EVENTS / 2);
    server.publish_keyed(&on_partition, "k", &first)?;
    let mut runs: Vec<Option<Running>> = (0..PARTITIONS)
        .map(|p| dir.start(&windows_process(&dir, &server, p)?).map(Some))
        .collect::<Result<_>>()?;
    let victim = 1usize;
    let from_victim = |server: &NatsServer| -> Result<usize> {
        Ok(server
            .messages("WIN")?
            .iter()
            .filter(|m| {
                window_key(&m.payload)
                    .is_some_and(|k| partition_of(k.as_bytes(), PARTITIONS) == victim as u32)
            })
            .count())
    };
    wait_until(
        "windows from the process to be killed",
        || Ok((from_victim(&server)? > 0).then_some(())),
        || format!("WIN holds {:?}", server.count("WIN").ok()),
    )?;
    // The second half, and the kill while the process is on it.
    let second = timed(SCALE_EVENTS / 2..SCALE_EVENTS);
    server.publish_keyed(&on_partition, "k", &second)?;
    std::thread::sleep(std::time::Duration::from_millis(30));
    let killed = runs[victim].take().context("running")?;
    let mid_run = !killed.exited();
    killed.signal(libc::SIGKILL)?;
    let _ = killed.wait(PATIENCE);
    runs[victim] = Some(dir.start(&windows_process(&dir, &server, victim as u32)?)?);
    // An event an hour on, on each partition: every window of the test closes.
    let flush: Vec<(String, String)> = (0..PARTITIONS)
        .map(|p| {
            let key = (0..)
                .map(|i| format!("flush{i}"))
                .find(|k| partition_of(k.as_bytes(), PARTITIONS) == p)
                .expect("some key hashes to each partition");
            let payload = format!("{key},{}", T0 + 3_600_000);
            (key, payload)
        })
        .collect();
    server.publish_keyed(&on_partition, "k", &flush)?;

    let mut want: BTreeMap<(u64, String), u64> = BTreeMap::new();
    for (key, payload) in first.iter().chain(&second) {
        let t: u64 = payload.split_once(',').context("KEY,MS")?.1.parse()?;
        *want.entry((t - t % 60_000, key.clone())).or_default() += 1;
    }
    wait_until(
        "every window in WIN",
        || Ok((server.count("WIN")? >= want.len() as u64).then_some(())),
        || format!("WIN holds {:?} of {}", server.count("WIN").ok(), want.len()),
    )?;
    // Time for a duplicate to arrive, were one coming.
    std::thread::sleep(std::time::Duration::from_millis(500));
    for run in runs.into_iter().flatten() {
        stop(run)?;
    }
    let messages = server.messages("WIN")?;
    let mut got: BTreeMap<(u64, String), u64> = BTreeMap::new();
    for m in &messages {
        let v: serde_json::Value = serde_json::from_str(&m.payload)?;
        let window = (
            v["window_start"].as_u64().context("window_start")?,
            v["key"].as_str().context("key")?.to_string(),
        );
        ensure!(m.header("Nats-Msg-Id").is_some(), "{m:?} has no message id");
        let count = v["count"].as_u64().context("count")?;
        ensure!(
            got.insert(window.clone(), count).is_none(),
            "window {window:?} published twice"
        );
    }
    eprintln!(
        "{} windows from {SCALE_EVENTS} events in 3 processes; the killed one was {}",
        got.len(),
        if mid_run { "running" } else { "already out" }
    );
    ensure!(mid_run, "the process ended before its kill");
    // (window, wanted, got, the partition of its key)
    let wrong: Vec<_> = want
        .iter()
        .filter(|(w, n)| got.get(*w) != Some(n))
        .map(|(w, n)| (w, n, got.get(w), partition_of(w.1.as_bytes(), PARTITIONS)))
        .take(5)
        .collect();
    ensure!(
        got == want,
        "{} windows, {} wanted; wrong: {wrong:?}",
        got.len(),
        want.len()
    );
    Ok(())
}

/// The key a window line names.
fn window_key(payload: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    v["key"].as_str().map(str::to_string)
}
