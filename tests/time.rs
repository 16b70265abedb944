//! Event time through the `weir` binary: watermarks, windows closed by event-time timers, late
//! events, a forged `late`, and windows that count each event once across `kill -9`.
//!
//! Event time comes from a `generate` source (`event_time`) or from the `fixture-stamp` stage,
//! which sets each event's key and time from its line; the windows are the `window-count`
//! plugin's (the SDK's window helpers over host state and timers).

mod support;

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use support::{
    Dir, PATIENCE, PipelineFile, Running, Sink, Source, Stage, dead_letters, plugin, read_lines,
};

/// `(window_start, key) -> count` from window-count's output lines, each key and window once.
fn windows(dir: &Dir, name: &str) -> Result<Vec<((u64, String), u64)>> {
    read_lines(&dir.path(name))?
        .iter()
        .map(|line| {
            let v: Value = serde_json::from_str(line).with_context(|| line.clone())?;
            Ok((
                (
                    v["window_start"].as_u64().context("window_start")?,
                    v["key"].as_str().context("key")?.to_string(),
                ),
                v["count"].as_u64().context("count")?,
            ))
        })
        .collect()
}

/// W5's events, counted the plain way: `count` events over `keys` keys from `start`.
fn expected(count: u64, keys: u64, start: u64, size: u64) -> BTreeMap<(u64, String), u64> {
    let mut out = BTreeMap::new();
    for i in 0..count {
        let t = start + i;
        *out.entry((t - t % size, format!("k{}", (i * 7919) % keys)))
            .or_default() += 1;
    }
    out
}

fn generated(count: i64, keys: i64, start: i64) -> Source {
    Source::generate(count)
        .key("keys", keys)
        .key("event_time", start)
}

#[test]
fn tumbling_windows_count_every_key_exactly_and_close_as_time_passes() -> Result<()> {
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .source("gen", generated(200_000, 1_000, 1_700_000_000_000))
        .stage(
            "count",
            Stage::plugin(plugin("window-count")).inputs(&["gen"]),
        )
        .sink("out", Sink::file("out.jsonl").inputs(&["count"]))
        .write(&dir)?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let got = windows(&dir, "out.jsonl")?;
    let want = expected(200_000, 1_000, 1_700_000_000_000, 60_000);
    ensure!(
        got.len() == want.len(),
        "{} windows, not {}",
        got.len(),
        want.len()
    );
    ensure!(got.iter().cloned().collect::<BTreeMap<_, _>>() == want);
    // Windows close as the watermark passes them, not all at the end: the output comes in
    // window order.
    let starts: Vec<u64> = got.iter().map(|((s, _), _)| *s).collect();
    ensure!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "windows out of order"
    );
    Ok(())
}

#[test]
fn weir_check_says_how_a_stage_keeps_time() -> Result<()> {
    let dir = Dir::new()?;
    let file = late_pipeline(&dir, Some("drop"))?;
    let (code, out, err) = dir.check(&file)?;
    ensure!(code == 0, "{err}");
    ensure!(
        out.contains(
            "time of `count`: watermark 0s behind the highest event time seen, an input silent \
             for 10s stops holding it back; late events counted and dropped; timers kept with its state"
        ),
        "{out}"
    );
    ensure!(!out.contains("time of `stamp`"), "{out}");
    Ok(())
}

#[test]
fn hopping_and_session_windows_count_exactly() -> Result<()> {
    let dir = Dir::new()?;
    let lines: Vec<String> = [
        // key a: two sessions (gap 10 s), b: one spanning a merge.
        "a,1000", "b,2000", "a,5000", "b,20000", "b,11000", "a,40000", "z,100000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    dir.write_lines("in.txt", &lines)?;
    let file = PipelineFile::new()
        .batch_size(2)
        .source("in", Source::file("in.txt"))
        .stage(
            "stamp",
            Stage::plugin(plugin("fixture-stamp")).inputs(&["in"]),
        )
        .stage(
            "session",
            Stage::plugin(plugin("window-count"))
                .inputs(&["stamp"])
                .setting("window", "session")
                .setting("gap_ms", "10000")
                .key("allowed_lateness", "20s"),
        )
        .stage(
            "hop",
            Stage::plugin(plugin("window-count"))
                .inputs(&["stamp"])
                .setting("window", "hopping")
                .setting("size_ms", "20000")
                .setting("slide_ms", "10000")
                .key("allowed_lateness", "20s"),
        )
        .sink(
            "sessions",
            Sink::file("sessions.jsonl").inputs(&["session"]),
        )
        .sink("hops", Sink::file("hops.jsonl").inputs(&["hop"]))
        .write(&dir)?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let sessions: BTreeMap<_, _> = windows(&dir, "sessions.jsonl")?.into_iter().collect();
    let want: BTreeMap<(u64, String), u64> = [
        ((1000, "a"), 2),
        ((40000, "a"), 1),
        // b at 2000 and 20000 are 18 s apart, but 11000 bridges them.
        ((2000, "b"), 3),
        ((100000, "z"), 1),
    ]
    .into_iter()
    .map(|((s, k), n)| ((s, k.to_string()), n))
    .collect();
    ensure!(sessions == want, "sessions: {sessions:?}");
    let hops: BTreeMap<_, _> = windows(&dir, "hops.jsonl")?.into_iter().collect();
    // Windows of 20 s every 10 s: an event at t is in the two starting at t - t % 10 s and
    // 10 s before.
    let mut want: BTreeMap<(u64, String), u64> = BTreeMap::new();
    for line in &lines {
        let (k, t) = line.split_once(',').unwrap();
        let t: u64 = t.parse()?;
        let last = t - t % 10_000;
        for s in [last.checked_sub(10_000), Some(last)].into_iter().flatten() {
            *want.entry((s, k.to_string())).or_default() += 1;
        }
    }
    ensure!(hops == want, "hops: {hops:?}\nwant {want:?}");
    Ok(())
}

fn late_pipeline(dir: &Dir, late: Option<&str>) -> Result<std::path::PathBuf> {
    // The third event is 56 s behind the highest time seen: its window ([0, 60 s)) closed when
    // the watermark passed 60 s.
    dir.write_lines("in.txt", &["k,1000", "k,61000", "k,5000", "k,62000"])?;
    let mut count = Stage::plugin(plugin("window-count")).inputs(&["stamp"]);
    if let Some(late) = late {
        count = count.key("late", late);
    }
    PipelineFile::new()
        .batch_size(1)
        .source("in", Source::file("in.txt"))
        .stage(
            "stamp",
            Stage::plugin(plugin("fixture-stamp")).inputs(&["in"]),
        )
        .stage("count", count)
        .sink("out", Sink::file("out.jsonl").inputs(&["count"]))
        .dead_letters("dead.jsonl")
        .write(dir)
}

#[test]
fn a_late_event_is_dead_lettered_as_late_or_dropped() -> Result<()> {
    let dir = Dir::new()?;
    let file = late_pipeline(&dir, None)?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let got: BTreeMap<_, _> = windows(&dir, "out.jsonl")?.into_iter().collect();
    let want: BTreeMap<(u64, String), u64> = [((0, "k"), 1), ((60_000, "k"), 2)]
        .into_iter()
        .map(|((s, k), n)| ((s, k.to_string()), n))
        .collect();
    ensure!(got == want, "{got:?}");
    let dead = dead_letters(&dir.path("dead.jsonl"))?;
    ensure!(dead.len() == 1, "{dead:?}");
    ensure!(dead[0].kind == "late", "{:?}", dead[0]);
    ensure!(dead[0].value() == "k,5000", "{:?}", dead[0]);

    let dir = Dir::new()?;
    let file = late_pipeline(&dir, Some("drop"))?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    ensure!(
        !dir.path("dead.jsonl").exists() || read_lines(&dir.path("dead.jsonl"))?.is_empty(),
        "a dropped late event is not written"
    );
    let late = ran.report().node("count").failures_of("late");
    ensure!(late == 1, "{late} late events counted");
    Ok(())
}

/// `workers = 4` on the window stage: the events are routed by key, each worker's windows
/// come out as one worker's would (each key's in window order), and lateness is judged by the
/// stage's watermark, not a worker's: an event is late when an event of a key another worker
/// owns has moved the watermark past its window.
#[test]
fn four_workers_routed_by_key_count_the_same_windows_and_share_the_stage_s_watermark() -> Result<()>
{
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .source("gen", generated(200_000, 1_000, 1_700_000_000_000))
        .stage(
            "count",
            Stage::plugin(plugin("window-count"))
                .inputs(&["gen"])
                .workers(4),
        )
        .sink("out", Sink::file("out.jsonl").inputs(&["count"]))
        .write(&dir)?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let got = windows(&dir, "out.jsonl")?;
    let want = expected(200_000, 1_000, 1_700_000_000_000, 60_000);
    ensure!(
        got.len() == want.len(),
        "{} windows, not {}",
        got.len(),
        want.len()
    );
    ensure!(got.iter().cloned().collect::<BTreeMap<_, _>>() == want);
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for ((start, key), _) in &got {
        let seen = last.entry(key.as_str()).or_default();
        ensure!(*start >= *seen, "key {key}: window {start} after {seen}");
        *seen = *start;
    }

    // Two keys that different workers own.
    let owner = |k: &str| weir::pipeline::partition::partition_of(k.as_bytes(), 4);
    let a = "k0";
    let b = (1..)
        .map(|i| format!("k{i}"))
        .find(|k| owner(k) != owner(a))
        .expect("some key hashes elsewhere");
    let dir = Dir::new()?;
    dir.write_lines(
        "in.txt",
        &[
            format!("{a},1000"),
            format!("{b},61000"),
            format!("{a},5000"),
            format!("{b},62000"),
        ],
    )?;
    let file = PipelineFile::new()
        .batch_size(1)
        .source("in", Source::file("in.txt"))
        .stage(
            "stamp",
            Stage::plugin(plugin("fixture-stamp")).inputs(&["in"]),
        )
        .stage(
            "count",
            Stage::plugin(plugin("window-count"))
                .inputs(&["stamp"])
                .workers(4),
        )
        .sink("out", Sink::file("out.jsonl").inputs(&["count"]))
        .dead_letters("dead.jsonl")
        .write(&dir)?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let got: BTreeMap<_, _> = windows(&dir, "out.jsonl")?.into_iter().collect();
    let want: BTreeMap<(u64, String), u64> = [((0, a.to_string()), 1), ((60_000, b.clone()), 2)]
        .into_iter()
        .collect();
    ensure!(got == want, "{got:?}");
    let dead = dead_letters(&dir.path("dead.jsonl"))?;
    ensure!(dead.len() == 1, "{dead:?}");
    ensure!(dead[0].kind == "late", "{:?}", dead[0]);
    ensure!(dead[0].value() == format!("{a},5000"), "{:?}", dead[0]);
    Ok(())
}

#[test]
fn a_plugin_cannot_pass_a_bad_event_off_as_late() -> Result<()> {
    let dir = Dir::new()?;
    dir.write_lines("in.txt", &["a", "b"])?;
    let file = PipelineFile::new()
        .source("in", Source::file("in.txt"))
        .stage(
            "evil",
            Stage::plugin(plugin("fixture-evil-state"))
                .inputs(&["in"])
                .setting("attack", "forge-late")
                .key("late", "drop"),
        )
        .sink("out", Sink::file("out.jsonl").inputs(&["evil"]))
        .dead_letters("dead.jsonl")
        .write(&dir)?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    let dead = dead_letters(&dir.path("dead.jsonl"))?;
    ensure!(dead.len() == 2, "both written, not dropped: {dead:?}");
    ensure!(dead.iter().all(|d| d.kind == "reject"), "{dead:?}");
    Ok(())
}

/// The example finds what a plain count of the same failures per address and clock minute
/// finds (a minute aligned to the epoch is a window of 60 s), and prints its expected output.
#[test]
fn the_brute_force_example_finds_the_addresses_a_plain_count_finds() -> Result<()> {
    let root = support::workspace_root();
    for name in ["sshd-parse", "auth-filter", "brute-force"] {
        plugin(name);
    }
    let dir = Dir::new()?;
    let out = dir
        .weir()
        .arg("run")
        .arg(root.join("examples/brute-force/pipeline.toml"))
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout)?;
    let expected = std::fs::read_to_string(root.join("examples/brute-force/expected.jsonl"))?;
    ensure!(
        printed == expected,
        "the example's output changed:\n{printed}"
    );

    let log = std::fs::read(root.join("examples/auth-log/data/OpenSSH_2k.log"))?;
    let mut plain: BTreeMap<(String, String), u64> = BTreeMap::new();
    for line in support::native_failures(&log) {
        let v: Value = serde_json::from_str(&line)?;
        let (ts, msg) = (
            v["ts"].as_str().context("ts")?,
            v["msg"].as_str().context("msg")?,
        );
        let ip = ["from ", "rhost=", "["]
            .iter()
            .find_map(|tag| {
                let rest = &msg[msg.find(tag)? + tag.len()..];
                let word = rest.split([' ', ']']).next()?;
                (!word.is_empty()).then(|| word.to_string())
            })
            .context("an address")?;
        *plain.entry((ip, ts[..12].to_string())).or_default() += 1;
    }
    let mut want: Vec<(String, u64)> = (plain.into_iter())
        .filter(|(_, n)| *n >= 5)
        .map(|((ip, _), n)| (ip, n))
        .collect();
    let mut got: Vec<(String, u64)> = Vec::new();
    for line in printed.lines() {
        let v: Value = serde_json::from_str(line)?;
        got.push((
            v["ip"].as_str().context("ip")?.to_string(),
            v["failures"].as_u64().context("failures")?,
        ));
    }
    want.sort();
    got.sort();
    ensure!(got == want, "weir: {got:?}\nplain: {want:?}");
    Ok(())
}

#[test]
fn windows_in_the_data_folder_count_each_event_once_across_kill_9s() -> Result<()> {
    const EVENTS: i64 = 3_000_000;
    const KEYS: i64 = 2_000;
    const START: i64 = 1_700_000_000_000;
    let dir = Dir::new()?;
    // A generated source has no position to resume from: the same events in a file do.
    let lines: Vec<String> = (0..EVENTS as u64)
        .map(|i| format!("k{},{}", (i * 7919) % KEYS as u64, START as u64 + i))
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
            Stage::plugin(plugin("window-count"))
                .inputs(&["stamp"])
                .setting("size_ms", "10000"),
        )
        .sink("out", Sink::file("out.jsonl").inputs(&["count"]))
        .write(&dir)?;
    let mut seed: u64 = 0x71e;
    let mut killed_mid_run = 0;
    for _ in 0..3 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = std::time::Duration::from_millis(300 + (seed >> 33) % 700);
        let mut cmd = dir.weir();
        cmd.args(["run"]).arg(&file);
        let running = Running::start(cmd, support::Stdin::Null)?;
        std::thread::sleep(wait);
        if !running.exited() {
            killed_mid_run += 1;
        }
        let _ = running.signal(libc::SIGKILL);
        let _ = running.wait(PATIENCE);
    }
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    ensure!(killed_mid_run == 3, "a run ended before its kill");
    // Outputs are at least once (a window closed again after a crash is written again), but
    // every count written is exact, and every window of every key is there.
    let want = expected(EVENTS as u64, KEYS as u64, START as u64, 10_000);
    let got = windows(&dir, "out.jsonl")?;
    let mut seen = BTreeMap::new();
    for (window, n) in &got {
        let w = want
            .get(window)
            .with_context(|| format!("no such window {window:?}"))?;
        ensure!(n == w, "{window:?}: {n}, not {w}");
        seen.insert(window.clone(), *n);
    }
    ensure!(
        seen.len() == want.len(),
        "{} of {} windows",
        seen.len(),
        want.len()
    );
    eprintln!("{} output lines for {} windows", got.len(), want.len());
    Ok(())
}

/// `workers = "auto"` (the default) gives a stateless stage whose timestamps feed no
/// watermark the machine's cores, and one worker to a stage that keeps state or time and to
/// a stage before one that keeps time; `weir check` says which and why, and a number given in
/// the file is kept as it is.
#[test]
fn auto_workers_give_every_core_only_where_no_state_or_watermark_depends_on_one() -> Result<()> {
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .source("in", Source::file("in.txt"))
        .stage(
            "stamp",
            Stage::plugin(plugin("fixture-stamp")).inputs(&["in"]),
        )
        .stage(
            "count",
            Stage::plugin(plugin("window-count"))
                .inputs(&["stamp"])
                .setting("size_ms", "1000"),
        )
        .stage(
            "after",
            Stage::plugin(plugin("passthrough")).inputs(&["count"]),
        )
        .stage(
            "pinned",
            Stage::plugin(plugin("passthrough"))
                .inputs(&["after"])
                .workers(1),
        )
        .sink("out", Sink::file("out.jsonl").inputs(&["pinned"]))
        .write(&dir)?;
    dir.write_lines("in.txt", &["k,1000"])?;
    let (code, stdout, stderr) = dir.check(&file)?;
    assert_eq!(code, 0, "{stderr}");
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let plural = if cores == 1 { "" } else { "s" };
    for line in [
        "workers of `stamp`: 1 worker (auto: its timestamps may make a later stage's watermark)"
            .to_string(),
        "workers of `count`: 1 worker (auto: it keeps state)".to_string(),
        format!("workers of `after`: {cores} worker{plural} (auto: the machine's cores)"),
    ] {
        assert!(stdout.contains(&line), "no `{line}` in:\n{stdout}");
    }
    assert!(!stdout.contains("workers of `pinned`"), "{stdout}");
    Ok(())
}
