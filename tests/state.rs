//! Keyed state through the binary: a counting stage (`fixture-count-keys`, through the SDK)
//! and a hostile one written against the raw 0.3 WIT (`fixture-evil-state`). What is checked:
//! every count exact across batches, instances and versions; a trapped call's writes gone while
//! every good event's lands once under poison bisection; each limit failing its event as
//! `state-limit` and nothing else; a forged `state-limit` not believed; host work bounded by
//! fuel; TTL; what `weir check` says; four workers routed by key, each key counted in order; state in
//! the data folder exactly once across kill -9, fed from a file and from a NATS stream.

mod support;

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use support::nats::NatsServer;
use support::{
    Dir, PATIENCE, PipelineFile, Ran, Running, Sink, Source, Stage, dead_letters, plugin,
    read_lines, wait_until, with_custom_section,
};

const TOKEN: &str = "test-token-0123456789";

/// The `count-keys` outputs, `(key, count)` in order.
fn counts(dir: &Dir, name: &str) -> Result<Vec<(String, i64)>> {
    read_lines(&dir.path(name))?
        .iter()
        .map(|line| {
            let v: Value = serde_json::from_str(line).with_context(|| line.clone())?;
            Ok((
                v["key"].as_str().context("key")?.to_string(),
                v["count"].as_i64().context("count")?,
            ))
        })
        .collect()
}

/// Checks that each key's counts go 1, 2, 3… in output order, and returns the last of each.
fn each_key_counts_up(outputs: &[(String, i64)]) -> Result<BTreeMap<String, i64>> {
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for (key, count) in outputs {
        let seen = last.entry(key.clone()).or_default();
        ensure!(*count == *seen + 1, "key {key}: {count} after {seen}");
        *seen = *count;
    }
    Ok(last)
}

fn counting(dir: &Dir, events: usize, keys: usize, stage: Stage) -> Result<std::path::PathBuf> {
    let lines: Vec<String> = (0..events).map(|i| format!("k{}", i % keys)).collect();
    dir.write_lines("in.txt", &lines)?;
    PipelineFile::new()
        .batch_size(100)
        .source("in", Source::file("in.txt"))
        .stage("count", stage.inputs(&["in"]))
        .sink("out", Sink::file("out.jsonl").inputs(&["count"]))
        .dead_letters("dead.jsonl")
        .write(dir)
}

#[test]
fn a_counting_stage_counts_every_key_exactly_across_batches() -> Result<()> {
    let dir = Dir::new()?;
    let file = counting(
        &dir,
        20_000,
        100,
        Stage::plugin(plugin("fixture-count-keys")),
    )?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let outputs = counts(&dir, "out.jsonl")?;
    assert_eq!(outputs.len(), 20_000);
    let last = each_key_counts_up(&outputs)?;
    assert_eq!(last.len(), 100);
    assert!(last.values().all(|&n| n == 200), "{last:?}");
    Ok(())
}

/// `workers = 4` on the counting stage: events routed by key, so each key's counts go 1, 2, 3…
/// in output order (one worker owns the key and sees its events in input order) and end
/// exact, and every worker took a share of the keys.
#[test]
fn four_workers_routed_by_key_count_every_key_exactly_and_in_order() -> Result<()> {
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .batch_size(100)
        .source("in", Source::generate(40_000).key("keys", 97))
        .stage(
            "count",
            Stage::plugin(plugin("fixture-count-keys"))
                .inputs(&["in"])
                .workers(4),
        )
        .sink("out", Sink::file("out.jsonl").inputs(&["count"]))
        .dead_letters("dead.jsonl")
        .write(&dir)?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let outputs = counts(&dir, "out.jsonl")?;
    assert_eq!(outputs.len(), 40_000);
    let last = each_key_counts_up(&outputs)?;
    assert_eq!(last.len(), 97);
    let total: i64 = last.values().sum();
    assert_eq!(total, 40_000, "{last:?}");
    let owners: std::collections::BTreeSet<u32> = (last.keys())
        .map(|k| weir::pipeline::partition::partition_of(k.as_bytes(), 4))
        .collect();
    assert_eq!(owners.len(), 4, "every worker owns some of the keys");
    Ok(())
}

#[test]
fn a_rejected_event_writes_nothing_and_the_others_count_on() -> Result<()> {
    let dir = Dir::new()?;
    let stage = Stage::plugin(plugin("fixture-count-keys")).setting("fail_on", "k3");
    let file = counting(&dir, 1_000, 10, stage)?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let last = each_key_counts_up(&counts(&dir, "out.jsonl")?)?;
    assert_eq!(last.get("k3"), None);
    assert_eq!(last.len(), 9);
    assert!(last.values().all(|&n| n == 100), "{last:?}");
    let dead = dead_letters(&dir.path("dead.jsonl"))?;
    assert_eq!(dead.len(), 100);
    assert!(dead.iter().all(|d| d.kind == "reject"));
    Ok(())
}

#[test]
fn a_trapped_call_s_writes_are_gone_and_every_good_event_counts_once() -> Result<()> {
    let dir = Dir::new()?;
    let mut lines: Vec<String> = (0..2_000).map(|i| format!("event {i}")).collect();
    for at in [7, 500, 501, 1_999] {
        lines[at] = format!("poison {at}");
    }
    dir.write_lines("in.txt", &lines)?;
    let file = PipelineFile::new()
        .batch_size(256)
        .source("in", Source::file("in.txt"))
        .stage(
            "evil",
            Stage::plugin(plugin("fixture-evil-state"))
                .inputs(&["in"])
                .setting("attack", "write-then-trap"),
        )
        .sink("out", Sink::file("out.txt").inputs(&["evil"]))
        .dead_letters("dead.jsonl")
        .write(&dir)?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    // Each good event's output carries the counter after its own increment: 1 to 1,996, each
    // once, in order, though its batch was re-run piece by piece around the poison.
    let seen: Vec<i64> = read_lines(&dir.path("out.txt"))?
        .iter()
        .map(|l| {
            l.rsplit_once("n=")
                .and_then(|(_, n)| n.parse().ok())
                .context("n=")
        })
        .collect::<Result<_>>()?;
    assert_eq!(seen, (1..=1_996).collect::<Vec<_>>());
    let dead = dead_letters(&dir.path("dead.jsonl"))?;
    assert_eq!(dead.len(), 4);
    assert!(
        dead.iter().all(|d| d.kind == "panic"),
        "{:?}",
        dead.iter().map(|d| &d.kind).collect::<Vec<_>>()
    );
    Ok(())
}

/// One hostile attack on 200 events: the run ends, and what became of the events.
fn attack(dir: &Dir, attack: &str, stage: impl FnOnce(Stage) -> Stage) -> Result<Ran> {
    let lines: Vec<String> = (0..200).map(|i| format!("event {i}")).collect();
    dir.write_lines("in.txt", &lines)?;
    let file = PipelineFile::new()
        .batch_size(50)
        .source("in", Source::file("in.txt"))
        .stage(
            "evil",
            // A breaker window wider than the run: every event reaches the plugin.
            stage(
                Stage::plugin(plugin("fixture-evil-state"))
                    .inputs(&["in"])
                    .setting("attack", attack)
                    .breaker(1_000, 1.0, "1s"),
            ),
        )
        .sink("out", Sink::file("out.txt").inputs(&["evil"]))
        .dead_letters("dead.jsonl")
        .write(dir)?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    Ok(ran)
}

fn kinds(dir: &Dir) -> Result<BTreeMap<String, usize>> {
    let mut kinds = BTreeMap::new();
    for d in dead_letters(&dir.path("dead.jsonl"))? {
        *kinds.entry(d.kind.clone()).or_default() += 1;
    }
    Ok(kinds)
}

#[test]
fn a_key_or_value_over_its_limit_fails_its_event_as_state_limit() -> Result<()> {
    for name in ["big-key", "big-value"] {
        let dir = Dir::new()?;
        attack(&dir, name, |s| s)?;
        assert_eq!(
            kinds(&dir)?,
            BTreeMap::from([("state-limit".to_string(), 200)]),
            "{name}"
        );
        let dead = dead_letters(&dir.path("dead.jsonl"))?;
        let limit = if name == "big-key" { "1 KiB" } else { "1 MiB" };
        assert!(dead[0].message.contains(limit), "{}", dead[0].message);
    }
    Ok(())
}

#[test]
fn a_stage_over_its_key_budget_fails_only_the_events_that_go_over() -> Result<()> {
    let dir = Dir::new()?;
    // The first event fills the store to its 50 keys and fails; the rest find it full, and
    // pass, as the fixture leaves them.
    attack(&dir, "fill", |s| s.key("state_max_keys", 50))?;
    let kinds = kinds(&dir)?;
    assert_eq!(kinds, BTreeMap::from([("state-limit".to_string(), 1)]));
    assert_eq!(read_lines(&dir.path("out.txt"))?.len(), 199);
    let dead = dead_letters(&dir.path("dead.jsonl"))?;
    assert!(
        dead[0].message.contains("state_max_keys"),
        "{}",
        dead[0].message
    );
    Ok(())
}

#[test]
fn a_forged_state_limit_is_a_reject() -> Result<()> {
    let dir = Dir::new()?;
    attack(&dir, "forge-limit", |s| s)?;
    assert_eq!(kinds(&dir)?, BTreeMap::from([("reject".to_string(), 200)]));
    Ok(())
}

#[test]
fn endless_state_calls_end_at_the_call_s_fuel() -> Result<()> {
    let dir = Dir::new()?;
    // A long deadline: only fuel can stop these calls in time.
    let ran = attack(&dir, "spin-scan", |s| {
        s.timeout("60s").fuel(2_000_000).on_error("drop")
    })?;
    let evil = ran.report().node("evil");
    assert_eq!(evil.failed, 200);
    assert!(
        evil.failures.get("out-of-fuel").copied().unwrap_or(0) > 0,
        "{:?}",
        evil.failures
    );
    Ok(())
}

#[test]
fn a_key_written_with_a_ttl_is_gone_once_it_expires() -> Result<()> {
    for (ttl, expected) in [(0, 1), (3_600_000, 10)] {
        let dir = Dir::new()?;
        let stage = Stage::plugin(plugin("fixture-count-keys")).setting("ttl_ms", ttl);
        let file = counting(&dir, 100, 10, stage)?;
        let ran = dir.run(&file)?;
        ensure!(ran.code() == 0, "{}", ran.stderr());
        let outputs = counts(&dir, "out.jsonl")?;
        let max = outputs.iter().map(|(_, n)| *n).max();
        assert_eq!(max, Some(expected), "ttl {ttl} ms");
    }
    Ok(())
}

#[test]
fn weir_check_says_where_the_state_lives_and_that_several_workers_are_routed_by_key() -> Result<()>
{
    let dir = Dir::new()?;
    let file = counting(
        &dir,
        10,
        2,
        Stage::plugin(plugin("fixture-count-keys")).key("state_max_keys", 1000),
    )?;
    let (code, stdout, stderr) = dir.check(&file)?;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "state of `count`: in memory (lost when weir stops), at most 1000 keys and 67108864 bytes"
        ),
        "{stdout}"
    );

    let file = counting(
        &dir,
        10,
        2,
        Stage::plugin(plugin("fixture-count-keys")).workers(2),
    )?;
    let (code, stdout, stderr) = dir.check(&file)?;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "routed by key: `count` runs on 2 workers, each owning the keys that hash to it"
        ),
        "{stdout}"
    );

    // A stateless plugin says nothing of state.
    let file = counting(&dir, 10, 2, Stage::plugin(plugin("passthrough")))?;
    let (code, stdout, _) = dir.check(&file)?;
    assert_eq!(code, 0);
    assert!(!stdout.contains("state of"), "{stdout}");
    Ok(())
}

/// Sends `n` events of key `a`, and waits until the sink holds `total` lines.
fn send_and_wait(running: &mut Running, dir: &Dir, n: usize, total: usize) -> Result<()> {
    for _ in 0..n {
        writeln!(running.stdin(), "a")?;
    }
    running.stdin().flush()?;
    let written = || {
        read_lines(&dir.path("out.jsonl"))
            .map(|l| l.len())
            .unwrap_or(0)
    };
    wait_until(
        "the sink to catch up",
        || Ok((written() >= total).then_some(())),
        || format!("{} of {total} lines written", written()),
    )
}

/// A running `stdin -> count -> out.jsonl` pipeline with its admin API, and its address.
fn live_counter(dir: &Dir) -> Result<(Running, String)> {
    let file = PipelineFile::new()
        .linger("1ms")
        .source("in", Source::stdin())
        .stage(
            "count",
            Stage::plugin(plugin("fixture-count-keys")).inputs(&["in"]),
        )
        .stage(
            "plain",
            Stage::plugin(plugin("passthrough")).inputs(&["in"]),
        )
        .sink("out", Sink::file("out.jsonl").inputs(&["count"]))
        .sink("rest", Sink::null().inputs(&["plain"]))
        .admin_token(TOKEN)
        .write(dir)?;
    let mut running = dir.start(&file)?;
    let marker = "admin API listening on http://";
    let line = running.wait_for_stderr(marker)?;
    let addr = line[line.find(marker).context("marker")? + marker.len()..]
        .trim()
        .to_string();
    Ok((running, addr))
}

/// `weir ARGS --admin ADDR --token TOKEN`: its exit code and stdout, and stderr.
fn admin_cli(addr: &str, args: &[&str]) -> Result<(i32, String, String)> {
    let out = support::weir()
        .args(args)
        .args(["--admin", addr, "--token", TOKEN])
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn a_hot_swap_and_a_rollback_keep_the_stage_s_state() -> Result<()> {
    let dir = Dir::new()?;
    let (mut running, addr) = live_counter(&dir)?;
    let cli = |args: &[&str]| -> Result<()> {
        let (code, _, stderr) = admin_cli(&addr, args)?;
        ensure!(code == 0, "{args:?}: {stderr}");
        Ok(())
    };
    send_and_wait(&mut running, &dir, 10, 10)?;
    let other = dir.write_bytes(
        "count-2.wasm",
        &with_custom_section(&std::fs::read(plugin("fixture-count-keys"))?, 2),
    )?;
    cli(&[
        "reload",
        "--stage",
        "count",
        "--plugin",
        other.to_str().context("path")?,
    ])?;
    send_and_wait(&mut running, &dir, 10, 20)?;
    cli(&["rollback", "--stage", "count"])?;
    send_and_wait(&mut running, &dir, 10, 30)?;
    running.close_stdin();
    let ran = running.finish(PATIENCE)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let outputs = counts(&dir, "out.jsonl")?;
    let last = each_key_counts_up(&outputs)?;
    assert_eq!(last.get("a"), Some(&30));
    Ok(())
}

#[test]
fn weir_state_lists_gets_exports_and_imports_a_running_stage_s_state() -> Result<()> {
    let dir = Dir::new()?;
    let (mut running, addr) = live_counter(&dir)?;
    for key in ["a", "a", "a", "b", "b"] {
        writeln!(running.stdin(), "{key}")?;
    }
    running.stdin().flush()?;
    let written = || {
        read_lines(&dir.path("out.jsonl"))
            .map(|l| l.len())
            .unwrap_or(0)
    };
    wait_until(
        "five counts",
        || Ok((written() >= 5).then_some(())),
        || format!("{} lines", written()),
    )?;
    let (code, keys, stderr) = admin_cli(&addr, &["state", "ls", "count"])?;
    assert_eq!((code, keys.as_str()), (0, "a\nb\n"), "{stderr}");
    let (code, one, stderr) = admin_cli(&addr, &["state", "get", "count", "a"])?;
    assert_eq!(code, 0, "{stderr}");
    let entry: Value = serde_json::from_str(one.trim())?;
    use base64::Engine as _;
    let three = base64::engine::general_purpose::STANDARD.encode(3i64.to_le_bytes());
    assert_eq!(
        entry,
        serde_json::json!({"key": "a", "value_base64": three})
    );
    let (code, _, stderr) = admin_cli(&addr, &["state", "get", "count", "z"])?;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no such key"), "{stderr}");
    let (code, _, stderr) = admin_cli(&addr, &["state", "ls", "plain"])?;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("keeps no state"), "{stderr}");
    let (code, exported, stderr) = admin_cli(&addr, &["state", "export", "count"])?;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(exported.lines().count(), 2, "{exported}");
    running.close_stdin();
    let ran = running.finish(PATIENCE)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());

    // Into a new run: its counts go on from the imported ones.
    let next = Dir::new()?;
    let exported_file = next.write("state.jsonl", &exported)?;
    let (mut running, addr) = live_counter(&next)?;
    let (code, said, stderr) = admin_cli(
        &addr,
        &[
            "state",
            "import",
            "count",
            exported_file.to_str().context("path")?,
        ],
    )?;
    assert_eq!(code, 0, "{stderr}");
    assert!(said.contains("2 entries imported"), "{said}");
    let bad = next.write("bad.jsonl", "{\"key\": \"c\"}\n")?;
    let (code, _, stderr) = admin_cli(
        &addr,
        &["state", "import", "count", bad.to_str().context("path")?],
    )?;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
    writeln!(running.stdin(), "a")?;
    running.close_stdin();
    let ran = running.finish(PATIENCE)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    assert_eq!(counts(&next, "out.jsonl")?, vec![("a".to_string(), 4)]);
    Ok(())
}

/// `in.txt -> count -> out.jsonl` with the state in `data/`, committed every 50 ms.
fn durable_counting(dir: &Dir) -> Result<std::path::PathBuf> {
    durable_counting_with(dir, |stage| stage)
}

/// [`durable_counting`] with the counting stage changed by `change`.
fn durable_counting_with(
    dir: &Dir,
    change: impl FnOnce(Stage) -> Stage,
) -> Result<std::path::PathBuf> {
    PipelineFile::new()
        .batch_size(256)
        .pipeline_key("data_dir", dir.path("data").display().to_string())
        .pipeline_key("checkpoint_interval", "50ms")
        .source("in", Source::file("in.txt"))
        .stage(
            "count",
            change(Stage::plugin(plugin("fixture-count-keys")).inputs(&["in"])),
        )
        .sink("out", Sink::file("out.jsonl").inputs(&["count"]))
        .write(dir)
}

#[test]
fn state_in_the_data_folder_goes_on_where_the_last_run_ended() -> Result<()> {
    let dir = Dir::new()?;
    dir.write_lines("in.txt", &vec!["a"; 100])?;
    let file = durable_counting(&dir)?;
    let (code, stdout, stderr) = dir.check(&file)?;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("state.redb (durable"), "{stdout}");
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    // The file grows; the next run reads what is new, and counts on from 100.
    let mut more = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path("in.txt"))?;
    for _ in 0..50 {
        writeln!(more, "a")?;
    }
    drop(more);
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let outputs = counts(&dir, "out.jsonl")?;
    assert_eq!(outputs.len(), 150);
    each_key_counts_up(&outputs)?;

    // The stopped pipeline's state, read and written in its data folder.
    use base64::Engine as _;
    let b64 = |n: i64| base64::engine::general_purpose::STANDARD.encode(n.to_le_bytes());
    let data = dir.path("data");
    let data = data.to_str().context("path")?;
    let out = support::weir()
        .args(["state", "export", "count", "--data-dir", data])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        exported,
        serde_json::json!({"key": "a", "value_base64": b64(150)})
    );
    let import = dir.write(
        "import.jsonl",
        &format!("{{\"key\": \"b\", \"value_base64\": \"{}\"}}\n", b64(41)),
    )?;
    let out = support::weir()
        .args(["state", "import", "count", "--data-dir", data])
        .arg(&import)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut more = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path("in.txt"))?;
    writeln!(more, "b")?;
    drop(more);
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    assert_eq!(
        counts(&dir, "out.jsonl")?.last(),
        Some(&("b".to_string(), 42))
    );

    // `--from-start` reads the file again, and the state starts over with it.
    let mut cmd = dir.weir();
    cmd.args(["run", "--from-start", "--report", "json"])
        .arg(&file);
    let ran = Running::start(cmd, support::Stdin::Null)?.finish(PATIENCE)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let outputs = counts(&dir, "out.jsonl")?;
    assert_eq!(outputs.len(), 302);
    assert_eq!(outputs.last(), Some(&("b".to_string(), 1)));
    assert_eq!(outputs[300], ("a".to_string(), 150));
    Ok(())
}

#[test]
fn state_in_the_data_folder_counts_each_event_once_across_four_kill_9s() -> Result<()> {
    let dir = Dir::new()?;
    let lines: Vec<String> = (0..3_000_000).map(|i| format!("k{}", i % 1_000)).collect();
    dir.write_lines("in.txt", &lines)?;
    let file = durable_counting(&dir)?;
    counted_once_across_kill_9s(&dir, &file, lines.len(), 1_000)
}

/// A state many times its cache (`state_cache_bytes` at its least, 1 MiB, for 50,000 keys that
/// cost about 7 MiB in memory), each batch's keys cycling through all of them so that nearly
/// every write finds its entry gone to the store: counted once each across four kill -9s.
#[test]
fn a_state_larger_than_its_cache_counts_each_event_once_across_four_kill_9s() -> Result<()> {
    let dir = Dir::new()?;
    let lines: Vec<String> = (0..1_000_000).map(|i| format!("k{}", i % 50_000)).collect();
    dir.write_lines("in.txt", &lines)?;
    let file = durable_counting_with(&dir, |stage| stage.key("state_cache_bytes", "1MiB"))?;
    counted_once_across_kill_9s(&dir, &file, lines.len(), 50_000)
}

/// The same with the counting stage on four workers routed by key (`fixture-stamp` gives each
/// line its key): the workers' calls commit in any order, and the rounds still write exactly
/// the effect of the events up to the positions.
#[test]
fn state_routed_by_key_in_the_data_folder_counts_each_event_once_across_four_kill_9s() -> Result<()>
{
    let dir = Dir::new()?;
    let lines: Vec<String> = (0..1_000_000)
        .map(|i| format!("k{},{}", i % 1_000, 1_000 + i))
        .collect();
    dir.write_lines("in.txt", &lines)?;
    let file = PipelineFile::new()
        .batch_size(256)
        .pipeline_key("data_dir", dir.path("data").display().to_string())
        .pipeline_key("checkpoint_interval", "50ms")
        .source("in", Source::file("in.txt"))
        .stage(
            "stamp",
            Stage::plugin(plugin("fixture-stamp")).inputs(&["in"]),
        )
        .stage(
            "count",
            Stage::plugin(plugin("fixture-count-keys"))
                .inputs(&["stamp"])
                .workers(4),
        )
        .sink("out", Sink::file("out.jsonl").inputs(&["count"]))
        .write(&dir)?;
    counted_once_across_kill_9s(&dir, &file, lines.len(), 1_000)
}

/// Runs `file` four times, each killed with SIGKILL at a moment from a fixed seed, then to the
/// end, and checks that each of `keys` keys counted `events / keys` in the end.
fn counted_once_across_kill_9s(
    dir: &Dir,
    file: &std::path::Path,
    events: usize,
    keys: usize,
) -> Result<()> {
    // Kill moments spread over the first runs, from a fixed seed: the same on every machine
    // as a sequence, wherever each lands in the input.
    let mut seed: u64 = 0x5eed;
    let mut killed_mid_run = 0;
    for _ in 0..4 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = std::time::Duration::from_millis(50 + (seed >> 33) % 200);
        let mut cmd = dir.weir();
        cmd.args(["run", "--report", "json"]).arg(file);
        let running = Running::start(cmd, support::Stdin::Null)?;
        std::thread::sleep(wait);
        if !running.exited() {
            killed_mid_run += 1;
        }
        let _ = running.signal(libc::SIGKILL);
        let _ = running.wait(PATIENCE);
    }
    let ran = dir.run(file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let outputs = counts(dir, "out.jsonl")?;
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for (key, n) in &outputs {
        let seen = last.entry(key.clone()).or_default();
        *seen = (*seen).max(*n);
    }
    eprintln!(
        "{killed_mid_run} of 4 runs killed mid-run; {} output lines for {events} events",
        outputs.len()
    );
    assert_eq!(killed_mid_run, 4, "a run ended before its kill");
    assert_eq!(last.len(), keys);
    let wrong: Vec<_> = last
        .iter()
        .filter(|(_, n)| **n != (events / keys) as i64)
        .collect();
    assert!(
        wrong.is_empty(),
        "counts other than {}: {wrong:?}",
        events / keys
    );
    Ok(())
}

/// Partitions 0 and 1 of 3 of `in` (stream `IN`) → count → out.jsonl, the state in `data/`
/// committed every 50 ms. Each consumer lets far more messages wait for their round than one
/// interval takes.
fn nats_counting(dir: &Dir, server: &NatsServer) -> Result<std::path::PathBuf> {
    PipelineFile::new()
        .batch_size(256)
        .pipeline_key("data_dir", dir.path("data").display().to_string())
        .pipeline_key("checkpoint_interval", "50ms")
        .source(
            "in",
            Source::nats(&server.url(), "IN", "count")
                .key("subject", "in")
                .key("partitions", vec![0i64, 1])
                .key("partition_count", 3)
                .key("key_header", "k")
                .key("ack_wait", "2s")
                .key("max_ack_pending", 20_000),
        )
        .stage(
            "count",
            Stage::plugin(plugin("fixture-count-keys")).inputs(&["in"]),
        )
        .sink("out", Sink::file("out.jsonl").inputs(&["count"]))
        .write(dir)
}

/// Each key's highest count in out.jsonl, and the lines that are not a count (cut by a kill
/// mid-write).
fn highest_counts(dir: &Dir) -> Result<(BTreeMap<String, i64>, usize)> {
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut cut = 0;
    for line in read_lines(&dir.path("out.jsonl"))? {
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            cut += 1;
            continue;
        };
        let (Some(key), Some(n)) = (v["key"].as_str(), v["count"].as_i64()) else {
            cut += 1;
            continue;
        };
        let seen = last.entry(key.to_string()).or_default();
        *seen = (*seen).max(n);
    }
    Ok((last, cut))
}

/// The NATS version of the test above. 150,000 messages over 1,500 keys, each on its key's
/// partition of 3 (`in.P`), interleaved in one stream, so that a partition's sequences are
/// sparse; the process owns partitions 0 and 1. Four runs are killed with SIGKILL at seeded
/// points of their output. Before the second and fourth kills the server is killed first and
/// the run goes on without it for a while: it commits what it has in flight, and the acks it
/// then sends never arrive, so after the restart the server redelivers messages whose effect
/// is committed, which must be skipped. A last run drains the partitions. Each key of
/// partitions 0 and 1 counts exactly 100, in the state and in the output; no key of
/// partition 2 is counted.
#[test]
fn nats_state_in_the_data_folder_counts_each_message_once_across_four_kill_9s() -> Result<()> {
    const EVENTS: usize = 150_000;
    const KEYS: usize = 1_500;
    let Some(mut server) = NatsServer::start("nats durable state")? else {
        return Ok(());
    };
    server.stream("IN", &["in.*"])?;
    let partition = |key: &str| weir::pipeline::partition::partition_of(key.as_bytes(), 3);
    let keyed: Vec<(String, String)> = (0..EVENTS)
        .map(|i| (format!("k{}", i % KEYS), format!("event {i}")))
        .collect();
    server.publish_keyed(&|key| format!("in.{}", partition(key)), "k", &keyed)?;
    let owned = (0..KEYS)
        .filter(|k| partition(&format!("k{k}")) < 2)
        .count();
    let dir = Dir::new()?;
    let file = nats_counting(&dir, &server)?;
    let written = || std::fs::metadata(dir.path("out.jsonl")).map_or(0, |m| m.len());
    let mut seed: u64 = 0x5eed;
    for round in 0..4 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Killed once the output has grown by 2,000 to 17,000 lines (about 25 bytes each).
        let target = written() + (2_000 + (seed >> 33) % 15_000) * 25;
        let run = dir.start(&file)?;
        wait_until(
            "the output to grow",
            || Ok((written() >= target || run.exited()).then_some(())),
            || {
                format!(
                    "{} of {target} bytes; weir said: {}",
                    written(),
                    run.stderr()
                )
            },
        )?;
        ensure!(!run.exited(), "run {round} ended: {}", run.stderr());
        let server_down = round % 2 == 1;
        if server_down {
            server.kill();
            // Rounds go on without the server: what was in flight is committed, unacked.
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        run.signal(libc::SIGKILL)?;
        let _ = run.wait(PATIENCE);
        if server_down {
            server.restart()?;
        }
        let consumer = server.consumer("IN", "count-0")?;
        eprintln!(
            "kill {round}{}: {} bytes of output; consumer count-0 {consumer:?}",
            if server_down {
                " (server down first)"
            } else {
                ""
            },
            written()
        );
    }
    let run = dir.start(&file)?;
    let drained = || -> Result<bool> {
        for c in ["count-0", "count-1"] {
            let Ok(c) = server.consumer("IN", c) else {
                return Ok(false);
            };
            if c.pending > 0 || c.ack_pending > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    };
    wait_until(
        "every message of partitions 0 and 1 acked",
        || Ok(drained()?.then_some(())),
        || {
            format!(
                "{:?}; weir said: {}",
                server.consumer("IN", "count-0").ok(),
                run.stderr()
            )
        },
    )?;
    run.signal(libc::SIGTERM)?;
    let ended = run.wait(PATIENCE)?;
    ensure!(ended.code() == 0, "{}", ended.stderr);
    let skipped = ended
        .stderr
        .lines()
        .find(|l| l.contains("acked without running"))
        .unwrap_or("(nothing skipped)");
    let deliveries =
        server.consumer("IN", "count-0")?.deliveries + server.consumer("IN", "count-1")?.deliveries;
    let (last, cut) = highest_counts(&dir)?;
    eprintln!(
        "nats durable state: {deliveries} deliveries for the {} messages of partitions 0 and 1, \
         {cut} cut lines; the last run: {skipped}",
        owned * EVENTS / KEYS
    );
    assert_eq!(
        last.len(),
        owned,
        "the keys of partitions 0 and 1, and no other"
    );
    ensure!(last.keys().all(|k| partition(k) < 2));
    let expected = (EVENTS / KEYS) as i64;
    exact(&last, expected, "in the output")?;

    // The state itself, read from the stopped pipeline's data folder.
    let data = dir.path("data");
    let out = support::weir()
        .args(["state", "export", "count", "--data-dir"])
        .arg(&data)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use base64::Engine as _;
    let mut held = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["value_base64"].as_str().context("value")?)?;
        let n = i64::from_le_bytes(bytes.as_slice().try_into()?);
        held.insert(v["key"].as_str().context("key")?.to_string(), n);
    }
    assert_eq!(held.len(), owned);
    exact(&held, expected, "in the state")
}

/// Fails, saying how many keys and how far off, unless every count is `expected`.
fn exact(counts: &BTreeMap<String, i64>, expected: i64, place: &str) -> Result<()> {
    let wrong: Vec<i64> = counts
        .values()
        .copied()
        .filter(|&n| n != expected)
        .collect();
    ensure!(
        wrong.is_empty(),
        "{place}: {} of {} keys count other than {expected}, from {:?} to {:?}",
        wrong.len(),
        counts.len(),
        wrong.iter().min(),
        wrong.iter().max()
    );
    Ok(())
}
