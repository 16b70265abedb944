//! Checkpoints and sinks that keep what they wrote, through the `weir` binary: a file source
//! in a pipeline with `data_dir` resumes after its last commit, a rewritten file is read from
//! its start, `--from-start` ignores the commit, file sinks append unless told to truncate, two
//! runs on one `data_dir` are refused, and a sink that is a source's file is refused by
//! `weir check`. Every claim is a count or a content, never a time.

mod support;

use std::time::Duration;

use anyhow::Result;
use support::{Dir, PipelineFile, Sink, Source, Stage, plugin, read_lines};
use support::{PATIENCE, Running, Stdin};

/// `input.txt` → passthrough → `out.txt`, with checkpoints in `state/`.
fn pipeline(dir: &Dir, sink: Sink) -> Result<std::path::PathBuf> {
    PipelineFile::new()
        .pipeline_key("data_dir", dir.path("state").display().to_string())
        .source("in", Source::file("input.txt"))
        .stage("pass", Stage::plugin(plugin("passthrough")).inputs(&["in"]))
        .sink("out", sink.inputs(&["pass"]))
        .dead_letters(dir.path("dead.jsonl"))
        .write(dir)
}

fn numbered(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("line {i}")).collect()
}

fn append_lines(dir: &Dir, name: &str, lines: &[String]) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path(name))?;
    for line in lines {
        writeln!(file, "{line}")?;
    }
    Ok(())
}

/// `weir run --report json ARGS FILE` to its end; the events its source read.
fn run_ok(dir: &Dir, file: &std::path::Path, args: &[&str]) -> Result<u64> {
    let mut cmd = dir.weir();
    cmd.args(["run", "--report", "json"]).args(args).arg(file);
    let ran = Running::start(cmd, Stdin::Null)?.finish(PATIENCE)?;
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    Ok(ran.report().events_in)
}

/// A restart reads only what was appended since the last commit, and the appending sink keeps
/// the first run's output: the output is the input, exactly once.
#[test]
fn a_restart_resumes_after_the_last_commit_and_the_sink_keeps_the_first_runs_output() -> Result<()>
{
    let dir = Dir::new()?;
    dir.write_lines("input.txt", &numbered(0, 3000))?;
    let file = pipeline(&dir, Sink::file("out.txt"))?;
    assert_eq!(run_ok(&dir, &file, &[])?, 3000);
    append_lines(&dir, "input.txt", &numbered(3000, 4500))?;
    assert_eq!(
        run_ok(&dir, &file, &[])?,
        1500,
        "only the appended lines are read"
    );
    assert_eq!(read_lines(&dir.path("out.txt"))?, numbered(0, 4500));
    // Nothing new: nothing read, nothing written.
    assert_eq!(run_ok(&dir, &file, &[])?, 0);
    assert_eq!(read_lines(&dir.path("out.txt"))?.len(), 4500);
    Ok(())
}

/// `--from-start` reads the whole file again whatever the checkpoint says, and a sink with
/// `mode = "truncate"` starts empty.
#[test]
fn from_start_ignores_the_checkpoint_and_truncate_starts_the_sink_empty() -> Result<()> {
    let dir = Dir::new()?;
    dir.write_lines("input.txt", &numbered(0, 2000))?;
    let file = pipeline(&dir, Sink::file("out.txt").key("mode", "truncate"))?;
    assert_eq!(run_ok(&dir, &file, &[])?, 2000);
    assert_eq!(run_ok(&dir, &file, &[])?, 0);
    assert!(
        read_lines(&dir.path("out.txt"))?.is_empty(),
        "truncated, nothing new"
    );
    assert_eq!(run_ok(&dir, &file, &["--from-start"])?, 2000);
    assert_eq!(read_lines(&dir.path("out.txt"))?, numbered(0, 2000));
    Ok(())
}

/// A file replaced by another (a rotation: a new inode) or rewritten shorter in place (a
/// truncation) is read from its start, not from the old offset.
#[test]
fn a_rotated_or_truncated_file_is_read_from_its_start() -> Result<()> {
    let dir = Dir::new()?;
    dir.write_lines("input.txt", &numbered(0, 1000))?;
    let file = pipeline(&dir, Sink::file("out.txt"))?;
    assert_eq!(run_ok(&dir, &file, &[])?, 1000);

    // Rotation: the old file moves away, a new one takes its name.
    std::fs::rename(dir.path("input.txt"), dir.path("input.txt.1"))?;
    let rotated = numbered(1000, 1100);
    dir.write_lines("input.txt", &rotated)?;
    assert_eq!(run_ok(&dir, &file, &[])?, 100);

    // Truncation in place: same inode, shorter, different first bytes.
    let rewritten: Vec<String> = (0..10).map(|i| format!("again {i}")).collect();
    dir.write_lines("input.txt", &rewritten)?;
    assert_eq!(run_ok(&dir, &file, &[])?, 10);

    let mut expected = numbered(0, 1100);
    expected.extend(rewritten);
    assert_eq!(read_lines(&dir.path("out.txt"))?, expected);
    Ok(())
}

/// While one run holds a `data_dir`, a second run on it is refused with exit 2, naming the
/// folder and the holder's process; the first run goes on and ends normally.
#[test]
fn a_second_run_on_one_data_dir_is_refused_naming_the_holder() -> Result<()> {
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .pipeline_key("data_dir", dir.path("state").display().to_string())
        .source("in", Source::stdin())
        .stage("pass", Stage::plugin(plugin("passthrough")).inputs(&["in"]))
        .sink("out", Sink::file("out.txt").inputs(&["pass"]))
        .write(&dir)?;
    let mut first = dir.start(&file)?;
    // The lock exists before the first run reads: wait for the file rather than a time.
    let lock = dir.path("state").join("weir.lock");
    support::wait_until(
        "the first run to lock state/",
        || Ok(lock.exists().then_some(())),
        || first.stderr(),
    )?;
    let second = dir.run_with(&file, &[], Stdin::Null)?;
    assert_eq!(second.code(), 2, "{}", second.stderr());
    let said = second.stderr();
    assert!(said.contains("is in use by another weir run"), "{said}");
    assert!(said.contains(&format!("pid {}", first.pid())), "{said}");

    use std::io::Write;
    writeln!(first.stdin(), "still flowing")?;
    first.close_stdin();
    let ran = first.finish(Duration::from_secs(60))?;
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    assert_eq!(read_lines(&dir.path("out.txt"))?, vec!["still flowing"]);
    Ok(())
}

/// A sink whose path reaches a source's file through a link is refused by `weir check`, and
/// the input is left as it was.
#[test]
fn a_sink_that_is_a_sources_file_through_a_link_is_refused() -> Result<()> {
    let dir = Dir::new()?;
    dir.write_lines("input.txt", &numbered(0, 10))?;
    std::os::unix::fs::symlink(dir.path("input.txt"), dir.path("alias.txt"))?;
    let file = pipeline(&dir, Sink::file("alias.txt"))?;
    let (code, _, stderr) = dir.check(&file)?;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("sinks.out"), "names the sink: {stderr}");
    let ran = dir.run_with(&file, &[], Stdin::Null)?;
    assert_eq!(ran.code(), 2, "{}", ran.stderr());
    assert_eq!(read_lines(&dir.path("input.txt"))?, numbered(0, 10));
    Ok(())
}
