//! Dead-letter redrive through the `weir` binary: a version rejects some events, a fixed one
//! takes their letters again (`weir redrive`, or a `dead_letters` source), each comes out
//! once, and a second redrive sends nothing; the filters, `--dry-run`, a malformed letter
//! file, a letter whose stage is gone, and a `kill -9` in the middle of a redrive, into a file
//! (at least once) and into NATS (exactly once).

mod support;

use anyhow::{Context, Result};
use support::{
    Dir, PATIENCE, PipelineFile, Running, Sink, Source, Stage, Stdin, plugin, read_lines,
};

/// `weir ARGS` to its end: exit code, stdout, stderr.
fn weir(dir: &Dir, args: &[&str]) -> Result<(i32, String, String)> {
    let out = dir.weir().args(args).output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `weir redrive DEAD --pipeline FILE --report json ARGS`, which must succeed: the events it
/// sent (0 when it had nothing to send and ran nothing).
fn redrive(dir: &Dir, pipeline: &std::path::Path, args: &[&str]) -> Result<u64> {
    let mut cmd = dir.weir();
    cmd.arg("redrive")
        .arg(dir.path("dead.jsonl"))
        .arg("--pipeline")
        .arg(pipeline)
        .args(["--report", "json"])
        .args(args);
    let ran = Running::start(cmd, Stdin::Null)?.finish(PATIENCE)?;
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    if ran.stderr().contains("nothing to redrive") {
        return Ok(0);
    }
    Ok(ran.report().events_in)
}

/// 1,000 lines, of which those at `rejected` say `reject-me` and those at `poisoned` say
/// `poison`.
fn input(rejected: &[usize], poisoned: &[usize]) -> Vec<String> {
    (0..1000)
        .map(|i| {
            if rejected.contains(&i) {
                format!("event {i} reject-me")
            } else if poisoned.contains(&i) {
                format!("event {i} poison")
            } else {
                format!("event {i}")
            }
        })
        .collect()
}

const REJECTED: [usize; 10] = [3, 97, 98, 250, 251, 400, 512, 777, 900, 999];
const POISONED: [usize; 5] = [10, 20, 300, 600, 950];

/// `input.txt` → `check` → `pz` → `up` (upper-case) → `out.txt`; `check` and `pz` run the
/// plugins given, the dead letters go to `dead`.
fn pipeline(
    dir: &Dir,
    name: &str,
    check: &str,
    pz: &str,
    dead: &str,
) -> Result<std::path::PathBuf> {
    let file = PipelineFile::new()
        .source("in", Source::file("input.txt"))
        .stage("check", Stage::plugin(plugin(check)).inputs(&["in"]))
        .stage("pz", Stage::plugin(plugin(pz)).inputs(&["check"]))
        .stage("up", Stage::plugin(plugin("uppercase")).inputs(&["pz"]))
        .sink("out", Sink::file("out.txt").inputs(&["up"]))
        .dead_letters(dir.path(dead))
        .write(dir)?;
    let named = dir.path(name);
    std::fs::rename(&file, &named)?;
    Ok(named)
}

/// The buggy version's run, then the fixed pipeline file.
fn failed_then_fixed(dir: &Dir) -> Result<std::path::PathBuf> {
    dir.write_lines("input.txt", &input(&REJECTED, &POISONED))?;
    let buggy = pipeline(
        dir,
        "buggy.toml",
        "fixture-reject-match",
        "fixture-poison",
        "dead.jsonl",
    )?;
    let ran = dir.run(&buggy)?;
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    pipeline(
        dir,
        "fixed.toml",
        "fixture-stage-passthrough",
        "fixture-stage-passthrough",
        "dead-again.jsonl",
    )
}

fn upper(lines: &[String]) -> Vec<String> {
    lines.iter().map(|l| l.to_uppercase()).collect()
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

fn letters(dir: &Dir) -> Result<Vec<serde_json::Value>> {
    read_lines(&dir.path("dead.jsonl"))?
        .iter()
        .map(|l| serde_json::from_str(l).context("a letter is JSON"))
        .collect()
}

/// The case: a version rejects 10 events; with the fixed version in the pipeline
/// file, `weir redrive` sends the 10 letters (and the 5 of the poison stage) through it, each
/// comes out once, and a second redrive sends nothing.
#[test]
fn a_fixed_version_takes_the_letters_once_and_a_second_redrive_sends_nothing() -> Result<()> {
    let dir = Dir::new()?;
    let fixed = failed_then_fixed(&dir)?;
    let letters = letters(&dir)?;
    let rejects: Vec<_> = letters.iter().filter(|l| l["kind"] == "reject").collect();
    assert_eq!(rejects.len(), 10, "{letters:?}");
    assert_eq!(letters.len(), 15);
    // What a letter keeps: the node, the version, the kind and reason, when, and where its
    // event came from.
    for l in &rejects {
        assert_eq!(l["stage"], "check");
        assert_eq!(l["plugin_digest"].as_str().map(str::len), Some(64));
        assert_eq!(l["source"], "in");
        // Without a NATS connector events are not tracked one by one: the letter says where
        // its batch ends in the file (its identity, the round, the offset).
        let end = l["batch_position"]
            .as_str()
            .and_then(|p| p.rsplit(':').next());
        let end: u64 = end
            .and_then(|e| e.parse().ok())
            .context("a batch position")?;
        assert!(
            end > 0 && end <= std::fs::metadata(dir.path("input.txt"))?.len(),
            "{l}"
        );
        assert!(
            l["at"].as_u64().is_some_and(|at| at > 1_700_000_000_000),
            "{l}"
        );
        assert!(
            l["event"]["value"]
                .as_str()
                .is_some_and(|v| v.ends_with("reject-me"))
        );
    }
    assert_eq!(read_lines(&dir.path("out.txt"))?.len(), 985);

    assert_eq!(redrive(&dir, &fixed, &[])?, 15);
    let all = input(&REJECTED, &POISONED);
    assert_eq!(
        sorted(read_lines(&dir.path("out.txt"))?),
        sorted(upper(&all))
    );
    assert!(
        !dir.path("dead-again.jsonl").exists()
            || read_lines(&dir.path("dead-again.jsonl"))?.is_empty()
    );

    assert_eq!(
        redrive(&dir, &fixed, &[])?,
        0,
        "a second redrive sends nothing"
    );
    assert_eq!(read_lines(&dir.path("out.txt"))?.len(), 1000);
    Ok(())
}

/// `--dry-run` prints one line per letter and sends nothing; `--kind`, `--node`, `--limit`
/// and `--since` choose the letters; a letter sent under one selection is not sent again
/// under another.
#[test]
fn the_filters_choose_the_letters_and_a_dry_run_sends_nothing() -> Result<()> {
    let dir = Dir::new()?;
    let fixed = failed_then_fixed(&dir)?;
    let dead = dir.path("dead.jsonl");
    let dead = dead.to_str().unwrap();
    let fixed_s = fixed.to_str().unwrap();
    let dry = |args: &[&str]| -> Result<Vec<String>> {
        let mut all = vec!["redrive", dead, "--pipeline", fixed_s, "--dry-run"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = weir(&dir, &all)?;
        assert_eq!(code, 0, "{stderr}");
        Ok(stdout.lines().map(str::to_string).collect())
    };
    let everything = dry(&[])?;
    assert_eq!(everything.len(), 15, "{everything:?}");
    assert!(
        everything[0].starts_with("line 1: into `check` (reject at `check`)")
            || everything[0].starts_with("line 1: into `"),
        "{everything:?}"
    );
    assert!(
        !dir.path("dead.jsonl.redrive").exists(),
        "a dry run keeps no progress"
    );
    assert_eq!(
        read_lines(&dir.path("out.txt"))?.len(),
        985,
        "a dry run sends nothing"
    );
    let panics = dry(&["--kind", "panic"])?;
    assert_eq!(panics.len(), 5);
    assert!(
        panics
            .iter()
            .all(|l| l.contains("into `pz` (panic at `pz`)")),
        "{panics:?}"
    );
    assert_eq!(dry(&["--node", "check"])?.len(), 10);
    assert_eq!(dry(&["--node", "check", "--kind", "panic"])?.len(), 0);
    assert_eq!(dry(&["--since", "1h"])?.len(), 15);
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis()
        + 3_600_000)
        .to_string();
    assert_eq!(dry(&["--since", &later])?.len(), 0);
    let into = dry(&["--into", "up", "--limit", "2"])?;
    assert_eq!(into.len(), 2);
    assert!(into.iter().all(|l| l.contains("into `up`")), "{into:?}");

    assert_eq!(
        redrive(&dir, &fixed, &["--node", "check", "--limit", "4"])?,
        4
    );
    assert_eq!(redrive(&dir, &fixed, &["--node", "check"])?, 6);
    assert_eq!(
        dry(&[])?.len(),
        5,
        "the letters of `check` are sent, whatever the selection"
    );
    assert_eq!(redrive(&dir, &fixed, &["--kind", "panic"])?, 5);
    assert_eq!(redrive(&dir, &fixed, &[])?, 0);
    assert_eq!(
        sorted(read_lines(&dir.path("out.txt"))?),
        sorted(upper(&input(&REJECTED, &POISONED)))
    );
    Ok(())
}

/// A line that is not a letter is refused with the file and line, before anything is sent;
/// so is a letter whose stage the pipeline no longer has; and a redrive whose dead letters
/// would go into the file it reads.
#[test]
fn a_malformed_letter_file_is_refused_naming_the_line_and_nothing_is_sent() -> Result<()> {
    let dir = Dir::new()?;
    let fixed = failed_then_fixed(&dir)?;
    let good = read_lines(&dir.path("dead.jsonl"))?;
    let mut bad = good.clone();
    bad.insert(2, "{\"stage\": \"check\", \"kind\": ".to_string());
    dir.write_lines("dead.jsonl", &bad)?;
    let dead = dir.path("dead.jsonl");
    let args = [
        "redrive",
        dead.to_str().unwrap(),
        "--pipeline",
        fixed.to_str().unwrap(),
    ];
    let (code, _, stderr) = weir(&dir, &args)?;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("dead.jsonl:3: not a dead letter"),
        "{stderr}"
    );
    assert_eq!(read_lines(&dir.path("out.txt"))?.len(), 985, "nothing sent");

    let mut gone = good.clone();
    gone[4] = gone[4].replacen("\"stage\":\"", "\"stage\":\"old-", 1);
    dir.write_lines("dead.jsonl", &gone)?;
    let (code, _, stderr) = weir(&dir, &args)?;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("dead.jsonl:5: the letter of `old-"),
        "{stderr}"
    );
    assert!(stderr.contains("--into"), "{stderr}");
    assert_eq!(read_lines(&dir.path("out.txt"))?.len(), 985, "nothing sent");

    dir.write_lines("dead.jsonl", &good)?;
    let itself = pipeline(
        &dir,
        "itself.toml",
        "fixture-stage-passthrough",
        "fixture-stage-passthrough",
        "dead.jsonl",
    )?;
    let (code, _, stderr) = weir(
        &dir,
        &[
            "redrive",
            dead.to_str().unwrap(),
            "--pipeline",
            itself.to_str().unwrap(),
        ],
    )?;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--dead-letters"), "{stderr}");
    Ok(())
}

/// A `dead_letters` source in a pipeline file: the letters go into the stages that take it,
/// each into the one that failed it, with its progress kept as `weir redrive` keeps it.
#[test]
fn a_dead_letters_source_in_a_pipeline_file_sends_each_letter_once() -> Result<()> {
    let dir = Dir::new()?;
    failed_then_fixed(&dir)?;
    let file = PipelineFile::new()
        .source(
            "letters",
            Source::file("dead.jsonl")
                .key("type", "dead_letters")
                .key("kind", vec!["reject"]),
        )
        .stage(
            "check",
            Stage::plugin(plugin("fixture-stage-passthrough")).inputs(&["letters"]),
        )
        .stage("up", Stage::plugin(plugin("uppercase")).inputs(&["check"]))
        .sink("out", Sink::file("again.txt").inputs(&["up"]))
        .write(&dir)?;
    let ran = dir.run(&file)?;
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    let mut expected: Vec<String> = REJECTED
        .iter()
        .map(|i| format!("EVENT {i} REJECT-ME"))
        .collect();
    expected.sort();
    let mut got = read_lines(&dir.path("again.txt"))?;
    got.sort();
    assert_eq!(got, expected);
    let ran = dir.run(&file)?;
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    assert_eq!(ran.report().events_in, 0, "a second run sends nothing");

    // `into` must name a stage that takes the source; a filter's kind must be a kind.
    let text = std::fs::read_to_string(&file)?;
    let refused = |text: String, key: &str| -> Result<()> {
        let bad = dir.write("bad.toml", &text)?;
        let (code, _, stderr) = dir.check(&bad)?;
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(key), "{stderr}");
        Ok(())
    };
    refused(
        text.replace(
            "type = \"dead_letters\"",
            "type = \"dead_letters\"\ninto = \"up\"",
        ),
        "sources.letters.into",
    )?;
    refused(
        text.replace("\"reject\"", "\"rejected\""),
        "sources.letters.kind",
    )?;
    Ok(())
}

/// 20,000 letters; the redrive is killed (`kill -9`) in the middle and run again. Every letter
/// comes out at least once; those the progress had passed at the kill exactly once, the others
/// at most twice (the window between a sink's flush and the next progress write); a last
/// redrive sends nothing.
#[test]
fn a_redrive_killed_and_run_again_sends_every_letter_and_none_the_progress_passed_twice()
-> Result<()> {
    const N: usize = 20_000;
    let dir = Dir::new()?;
    let values: Vec<String> = (0..N).map(|i| format!("letter {i}")).collect();
    dir.write_lines("input.txt", &values)?;
    let buggy = PipelineFile::new()
        .source("in", Source::file("input.txt"))
        .stage(
            "check",
            Stage::plugin(plugin("fixture-fail-all")).inputs(&["in"]),
        )
        .sink("out", Sink::file("out.txt").inputs(&["check"]))
        .dead_letters(dir.path("dead.jsonl"))
        .write(&dir)?;
    assert_eq!(dir.run(&buggy)?.code(), 0);
    assert_eq!(read_lines(&dir.path("dead.jsonl"))?.len(), N);
    // Small batches, each fsynced: the redrive takes long enough to be killed in its middle.
    let fixed = PipelineFile::new()
        .batch_size(16)
        .buffer(1)
        .pipeline_key("checkpoint_interval", "50ms")
        .source("in", Source::file("input.txt"))
        .stage(
            "check",
            Stage::plugin(plugin("fixture-stage-passthrough")).inputs(&["in"]),
        )
        .sink(
            "out",
            Sink::file("out.txt")
                .key("sync", "fsync")
                .inputs(&["check"]),
        )
        .dead_letters(dir.path("dead-again.jsonl"))
        .write(&dir)?;
    let mut cmd = dir.weir();
    cmd.arg("redrive")
        .arg(dir.path("dead.jsonl"))
        .arg("--pipeline")
        .arg(&fixed);
    let running = Running::start(cmd, Stdin::Null)?;
    support::wait_until(
        "a part of the letters written",
        || {
            let written = read_lines(&dir.path("out.txt")).unwrap_or_default().len();
            Ok((written >= N / 4 && dir.path("dead.jsonl.redrive").exists()).then_some(()))
        },
        || running.stderr(),
    )?;
    running.signal(libc::SIGKILL)?;
    let killed = running.wait(PATIENCE)?;
    assert_ne!(killed.code(), 0, "killed before its end: {}", killed.stderr);
    let progress: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path("dead.jsonl.redrive"))?)?;
    let passed = progress["entries"][0]["lines"].as_u64().context("lines")? as usize;
    let written = read_lines(&dir.path("out.txt"))?.len();
    assert!(
        passed > 0 && passed < N,
        "the progress was written mid-way: {passed}"
    );
    assert!(written < N, "killed before the end: {written}");

    assert!(redrive(&dir, &fixed, &[])? > 0);
    let out = read_lines(&dir.path("out.txt"))?;
    let mut seen = std::collections::HashMap::new();
    for line in &out {
        *seen.entry(line.clone()).or_insert(0u32) += 1;
    }
    // The letters are in the order they were written, not the input's.
    let lettered: Vec<String> = letters(&dir)?
        .iter()
        .map(|l| l["event"]["value"].as_str().unwrap_or_default().to_string())
        .collect();
    for (i, value) in lettered.iter().enumerate() {
        let n = seen.get(value).copied().unwrap_or(0);
        if i < passed {
            assert_eq!(
                n, 1,
                "{value}: before the progress at the kill, out exactly once"
            );
        } else {
            assert!((1..=2).contains(&n), "{value}: out {n} times");
        }
    }
    assert_eq!(seen.len(), N);
    assert_eq!(
        redrive(&dir, &fixed, &[])?,
        0,
        "a last redrive sends nothing"
    );
    Ok(())
}

/// Into a NATS sink, a redrive killed (`kill -9`) in its middle and run again sends every
/// letter exactly once: a redriven event's message id comes from the letter file and the
/// letter's line, the same in both redrives, and the server drops the copy. A last redrive
/// sends nothing.
#[test]
fn a_redrive_killed_and_run_again_into_nats_sends_every_letter_exactly_once() -> Result<()> {
    const N: usize = 20_000;
    let Some(server) = support::nats::NatsServer::start(
        "a_redrive_killed_and_run_again_into_nats_sends_every_letter_exactly_once",
    )?
    else {
        return Ok(());
    };
    server.stream("OUT", &["out"])?;
    let dir = Dir::new()?;
    let values: Vec<String> = (0..N).map(|i| format!("letter {i}")).collect();
    dir.write_lines("input.txt", &values)?;
    let buggy = PipelineFile::new()
        .source("in", Source::file("input.txt"))
        .stage(
            "check",
            Stage::plugin(plugin("fixture-fail-all")).inputs(&["in"]),
        )
        .sink("out", Sink::nats(&server.url(), "out").inputs(&["check"]))
        .dead_letters(dir.path("dead.jsonl"))
        .write(&dir)?;
    assert_eq!(dir.run(&buggy)?.code(), 0);
    assert_eq!(read_lines(&dir.path("dead.jsonl"))?.len(), N);
    assert_eq!(server.count("OUT")?, 0);
    // Small batches: the redrive takes long enough to be killed in its middle.
    let fixed = PipelineFile::new()
        .batch_size(16)
        .buffer(1)
        .pipeline_key("checkpoint_interval", "50ms")
        .source("in", Source::file("input.txt"))
        .stage(
            "check",
            Stage::plugin(plugin("fixture-stage-passthrough")).inputs(&["in"]),
        )
        .sink("out", Sink::nats(&server.url(), "out").inputs(&["check"]))
        .dead_letters(dir.path("dead-again.jsonl"))
        .write(&dir)?;
    let mut cmd = dir.weir();
    cmd.arg("redrive")
        .arg(dir.path("dead.jsonl"))
        .arg("--pipeline")
        .arg(&fixed);
    let running = Running::start(cmd, Stdin::Null)?;
    support::wait_until(
        "a part of the letters published",
        || {
            let published = server.count("OUT")? as usize;
            Ok((published >= N / 4 && dir.path("dead.jsonl.redrive").exists()).then_some(()))
        },
        || running.stderr(),
    )?;
    running.signal(libc::SIGKILL)?;
    let killed = running.wait(PATIENCE)?;
    assert_ne!(killed.code(), 0, "killed before its end: {}", killed.stderr);
    let published = server.count("OUT")? as usize;
    assert!(published < N, "killed before the end: {published}");

    // The second redrive sends again what was published after the progress's last write:
    // the copies the server must drop.
    let sent = redrive(&dir, &fixed, &[])? as usize;
    assert!(
        sent + published > N,
        "the redrive sent {sent} after {published} were published: nothing sent twice to drop"
    );
    let messages = server.messages("OUT")?;
    let mut seen = std::collections::HashMap::new();
    for m in &messages {
        *seen.entry(m.payload.clone()).or_insert(0u32) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    assert_eq!(messages.len(), N, "every letter, once");
    assert_eq!(seen.len(), N);
    assert_eq!(
        redrive(&dir, &fixed, &[])?,
        0,
        "a last redrive sends nothing"
    );
    assert_eq!(server.count("OUT")?, N as u64);
    Ok(())
}
