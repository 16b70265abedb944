//! A NATS source and sink given a cluster: `url` lists the three seeds of a real three-node
//! `nats-server` cluster, and the node `weir` is connected to is killed (`kill -9`) mid-run;
//! every message still comes out exactly once. And a bad seed list is refused by `weir check`
//! before anything runs, naming the key, its line and the entry.
//!
//! The cluster test starts its own cluster on free loopback ports (see
//! `support::nats_cluster`); without `nats-server` it prints why and passes, unless
//! `WEIR_REQUIRE_NATS` is set (CI), where it fails.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use support::file::{PipelineFile, Sink, Source, Stage};
use support::nats::{Client, exactly_once};
use support::nats_cluster::NatsCluster;
use support::{Dir, plugin, wait_until};

/// Messages through the cluster: enough that the run is busy for a while on a 2-core
/// machine, so the kill lands among messages in flight.
const MESSAGES: usize = 20_000;

/// How long the whole cluster run may take before it counts as hung: far beyond what it
/// needs (tens of seconds), as leader elections after the kill stall it for a few seconds
/// and a loaded machine is slow.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// The name the `nats` source `in` gives its connection, as `/connz` shows it.
const SOURCE_CONNECTION: &str = "weir in";

fn payloads(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("event-{i:06}")).collect()
}

/// Waits until stream `name` has a leader and a majority of its replicas current.
fn wait_for_stream(client: &Client, name: &str) -> Result<()> {
    wait_until(
        &format!("stream {name} to have a leader"),
        || Ok(client.stream_ready(name).unwrap_or(false).then_some(())),
        || format!("{:?}", client.stream_ready(name)),
    )
}

/// Waits until stream `name` holds at least `count` messages.
fn wait_for_count(client: &Client, name: &str, count: u64) -> Result<()> {
    wait_until(
        &format!("{count} messages in {name}"),
        || Ok((client.count(name).unwrap_or(0) >= count).then_some(())),
        || format!("{name} holds {:?}", client.count(name)),
    )
}

#[test]
fn killing_the_node_weir_is_connected_to_loses_nothing_and_stores_each_message_once() -> Result<()>
{
    let Some(mut cluster) = NatsCluster::start("nats cluster failover")? else {
        return Ok(());
    };
    let client = cluster.client()?;
    client.stream("IN", &["in"], 3)?;
    client.stream("OUT", &["out"], 3)?;
    wait_for_stream(&client, "IN")?;
    wait_for_stream(&client, "OUT")?;

    let dir = Dir::new()?;
    let seeds = cluster.seeds();
    let file = PipelineFile::new()
        .source(
            "in",
            // A short ack_wait: what the killed node held unacked comes back within seconds.
            Source::nats(&seeds, "IN", "weir")
                .key("subject", "in")
                .key("ack_wait", "5s"),
        )
        .stage("pass", Stage::plugin(plugin("passthrough")).inputs(&["in"]))
        .sink("out", Sink::nats(&seeds, "out").inputs(&["pass"]))
        .dead_letters(dir.path("dead.jsonl"))
        .write(&dir)?;
    let run = dir.start(&file)?;
    let sent = payloads(MESSAGES);
    let (first, rest) = sent.split_at(MESSAGES / 2);
    client.publish("in", first)?;

    // Killed once a random part of the first half is through; the second half is published
    // after the kill, so the run has work left whatever the machine's speed.
    let target = first.len() as u64 * fastrand::u64(10..90) / 100;
    wait_for_count(&client, "OUT", target)?;
    let victim = wait_until(
        "weir's source connection in /connz",
        || cluster.holder_of(SOURCE_CONNECTION),
        || format!("weir said: {}", run.stderr()),
    )?;
    drop(client);
    cluster.kill(victim);
    eprintln!(
        "nats cluster: killed {} (weir's source connection) with OUT at {target}+ of {}",
        cluster.name(victim),
        first.len()
    );

    // The survivors elect new leaders; then the rest goes in through them.
    cluster.wait_ready()?;
    let client = cluster.client()?;
    wait_for_stream(&client, "IN")?;
    client.publish("in", rest)?;
    wait_until(
        "every message in OUT after the kill",
        || Ok((client.count("OUT").unwrap_or(0) >= sent.len() as u64).then_some(())),
        || {
            format!(
                "OUT holds {:?}, consumer {:?}; weir said: {}",
                client.count("OUT"),
                client.consumer("IN", "weir"),
                run.stderr()
            )
        },
    )?;
    wait_until(
        "every message acked",
        || {
            let c = client.consumer("IN", "weir").ok();
            Ok(c.filter(|c| c.pending == 0 && c.ack_pending == 0)
                .map(|_| ()))
        },
        || format!("{:?}", client.consumer("IN", "weir")),
    )?;
    let now = cluster.holder_of(SOURCE_CONNECTION)?;
    ensure!(
        now.is_some_and(|n| n != victim),
        "weir's source reconnected to a surviving node: {now:?}"
    );
    ensure!(!run.exited(), "the run outlived the node's death");

    run.signal(libc::SIGTERM)?;
    let ran = run.finish(RUN_LIMIT)?;
    ensure!(ran.code() == 0, "exit {}: {}", ran.code(), ran.stderr());
    let report = ran.report();
    let counts = client.consumer("IN", "weir")?;
    let out: Vec<String> = client
        .messages("OUT")?
        .into_iter()
        .map(|m| m.payload)
        .collect();
    let distinct = out.iter().collect::<HashSet<_>>().len();
    eprintln!(
        "nats cluster: {} sent; OUT holds {} messages, {distinct} distinct; weir read {} and published {} \
         (the {} beyond one each were redelivered after the kill and dropped by message id); \
         the consumer delivered {}",
        sent.len(),
        out.len(),
        report.events_in,
        report.events_out,
        report.events_out.saturating_sub(sent.len() as u64),
        counts.deliveries
    );
    ensure!(
        out.len() == sent.len() && distinct == sent.len(),
        "OUT holds {} messages, {distinct} distinct, of {} sent",
        out.len(),
        sent.len()
    );
    exactly_once(&out, &sent)?;
    // The report agrees: every message was read and published at least once, none was
    // dead-lettered, and what was read beyond one each the server redelivered.
    ensure!(
        report.dead_lettered == 0 && report.events_in == report.events_out,
        "the report: {report:?}"
    );
    // (Not bounded by the consumer's delivery count: a consumer leader elected after the
    // kill may count again deliveries the dead one made.)
    ensure!(
        report.events_in >= sent.len() as u64,
        "the report read {} of {} sent",
        report.events_in,
        sent.len()
    );
    let (source, sink) = (report.node("in"), report.node("out"));
    ensure!(
        source.events_out == report.events_in && sink.events_in == source.events_out,
        "every event the source read reached the sink: {source:?} {sink:?}"
    );
    Ok(())
}

/// A seed list with a bad entry is refused by `weir check` (exit 2) naming the key, its line
/// and the entry; the same list without the typo passes. No server is needed: the check
/// connects to nothing.
#[test]
fn weir_check_refuses_a_bad_seed_list_naming_the_key_the_line_and_the_entry() -> Result<()> {
    let dir = Dir::new()?;
    let good = "nats://127.0.0.1:4222,nats://127.0.0.1:4223, 127.0.0.1:4224";
    let cases = [
        (
            "nats://127.0.0.1:4222,nats://127.0.0.1:42x23",
            "in",
            "entry 2 of 2 (`nats://127.0.0.1:42x23`) is not a server URL: invalid port number",
        ),
        (
            "nats://127.0.0.1:4222,,nats://127.0.0.1:4224",
            "out",
            "entry 2 of 3 is empty",
        ),
        (
            "nats://127.0.0.1:4222,http://127.0.0.1:4223",
            "in",
            "entry 2 of 2 (`http://127.0.0.1:4223`) has the scheme `http`",
        ),
    ];
    let pipeline = |source_url: &str, sink_url: &str| {
        PipelineFile::new()
            .source("in", Source::nats(source_url, "IN", "weir"))
            .sink("out", Sink::nats(sink_url, "out").inputs(&["in"]))
            .write(&dir)
    };
    let (code, _, stderr) = dir.check(&pipeline(good, good)?)?;
    ensure!(code == 0, "a good seed list passes: {stderr}");
    for (bad, node, message) in cases {
        let (source_url, sink_url, key) = match node {
            "in" => (bad, good, "sources.in.url"),
            _ => (good, bad, "sinks.out.url"),
        };
        let file = pipeline(source_url, sink_url)?;
        let text = std::fs::read_to_string(&file)?;
        let line = 1 + text
            .lines()
            .position(|l| l.starts_with("url") && l.contains(bad))
            .context("the bad url's line")?;
        let (code, _, stderr) = dir.check(&file)?;
        ensure!(
            code == 2,
            "`{bad}` refused with exit 2, got {code}: {stderr}"
        );
        let place = format!("{}:{line}: `{key}`: ", file.display());
        ensure!(
            stderr.contains(&format!("{place}{message}")),
            "`{bad}`: expected `{place}{message}` in: {stderr}"
        );
    }
    Ok(())
}

/// A run with a seed list where no seed answers fails at once, naming the list.
#[test]
fn a_seed_list_where_no_seed_answers_fails_the_run_naming_the_list() -> Result<()> {
    let dir = Dir::new()?;
    // Nothing listens on ports just freed.
    let free = || -> Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let seeds = format!("nats://127.0.0.1:{},nats://127.0.0.1:{}", free()?, free()?);
    let file = PipelineFile::new()
        .source("in", Source::nats(&seeds, "IN", "weir"))
        .sink("out", Sink::null().inputs(&["in"]))
        .write(&dir)?;
    let ran = dir.run(&file)?;
    ensure!(
        ran.code() == 1
            && ran
                .stderr()
                .contains(&format!("cannot connect to NATS at {seeds}")),
        "an unreachable seed list fails the run naming it: {}",
        ran.stderr()
    );
    Ok(())
}
