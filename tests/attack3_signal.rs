//! The third attack round, signals: SIGTERM on a stdin source delivers every line it read.
//!
//! Standard input cannot be read again, so a stopped stdin source turns all it has read into
//! events and reads on to the end of the line it is in, and no further. With stdin a regular
//! file, the offset the run leaves it at is exactly the bytes written out; with a pipe, the
//! rest of the line is waited for, for a short grace.

mod support;

use std::fs::File;
use std::io::{Seek, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use support::{Dir, PATIENCE, PipelineFile, Sink, Source, Stage, plugin, read_lines};

/// Line `i` of the inputs: short, and each one different.
fn line(i: u64) -> String {
    format!("{i:08}")
}

/// Writes `count` numbered lines to `name`; returns its path and length.
fn numbered(dir: &Dir, name: &str, count: u64) -> Result<(std::path::PathBuf, u64)> {
    let path = dir.path(name);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, File::create(&path)?);
    for i in 0..count {
        writeln!(out, "{}", line(i))?;
    }
    out.flush()?;
    let len = std::fs::metadata(&path)?.len();
    Ok((path, len))
}

/// `stdin` → passthrough → `out.txt`.
fn passthrough(dir: &Dir) -> Result<std::path::PathBuf> {
    PipelineFile::new()
        .source("in", Source::stdin())
        .stage("pass", Stage::plugin(plugin("passthrough")).inputs(&["in"]))
        .sink("out", Sink::file("out.txt").inputs(&["pass"]))
        .write(dir)
}

/// The report's `bytes_read` of node `name`.
fn bytes_read(report: &serde_json::Value, name: &str) -> Result<u64> {
    report["nodes"]
        .as_array()
        .context("no nodes")?
        .iter()
        .find(|n| n["name"] == name)
        .with_context(|| format!("no node `{name}`"))?["bytes_read"]
        .as_u64()
        .with_context(|| format!("no bytes_read for `{name}`: {report}"))
}

/// The JSON report: the last line of stderr.
fn report(stderr: &str) -> Result<serde_json::Value> {
    let last = stderr.lines().last().context("no stderr")?;
    serde_json::from_str(last).with_context(|| format!("no report: {stderr}"))
}

/// What one run with a regular file as stdin and SIGTERM mid-stream left.
struct Stopped {
    /// The file's length, and stdin's offset when the signal was sent and after the exit.
    len: u64,
    at_signal: u64,
    offset: u64,
    /// Lines written, the bytes they came from (each with its `\n`), and the report.
    written: Vec<String>,
    written_bytes: u64,
    report: serde_json::Value,
}

/// Runs the pipeline with `count` lines on stdin (a regular file) and sends SIGTERM once it
/// has been reading for `after`. `None` when the run read all its input all the same.
fn stop_mid_stream(count: u64, after: Duration) -> Result<Option<Stopped>> {
    let dir = Dir::new()?;
    let pipeline = passthrough(&dir)?;
    let (input, len) = numbered(&dir, "in.txt", count)?;
    // The child's stdin shares this open file, so its offset (`lseek(fd, 0, SEEK_CUR)`,
    // `stream_position`) is the child's.
    let mut shared = File::open(&input)?;
    let mut child = dir
        .weir()
        .args(["run", "--report", "json"])
        .arg(&pipeline)
        .stdin(Stdio::from(shared.try_clone()?))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = i32::try_from(child.id())?;
    // Loading the plugin comes first: wait until reading has begun.
    let started = Instant::now();
    while shared.stream_position()? == 0 {
        ensure!(started.elapsed() < PATIENCE, "the run never began to read");
        if child.try_wait()?.is_some() {
            bail!(
                "weir exited before reading: {:?}",
                child.wait_with_output()?
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(after);
    let at_signal = shared.stream_position()?;
    // SAFETY: `kill` only sends a signal, to our child, which is not reaped yet.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    ensure!(rc == 0, "kill: {}", std::io::Error::last_os_error());
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(out.status.code() == Some(0), "weir failed: {stderr}");
    let offset = shared.stream_position()?;
    if offset == len {
        return Ok(None);
    }
    let written = read_lines(&dir.path("out.txt"))?;
    let written_bytes = written.iter().map(|l| l.len() as u64 + 1).sum();
    Ok(Some(Stopped {
        len,
        at_signal,
        offset,
        written,
        written_bytes,
        report: report(&stderr)?,
    }))
}

/// Issue 16, item 9: stdin a regular file of a few million short lines, SIGTERM after a
/// while: the run exits 0, the lines written are exactly the first ones in order, and the
/// offset the run leaves stdin at is the bytes of those lines, as the report says. Five runs,
/// so a lucky one proves nothing.
#[test]
fn sigterm_on_a_stdin_source_delivers_every_line_it_read() -> Result<()> {
    let mut count = 4_000_000;
    let mut runs = 0;
    let mut tries = 0;
    while runs < 5 {
        tries += 1;
        ensure!(tries <= 10, "the runs kept reading all their input first");
        let Some(run) = stop_mid_stream(count, Duration::from_millis(300))? else {
            // Read to its end before the signal: a bigger input.
            count *= 2;
            continue;
        };
        runs += 1;
        println!(
            "{count} lines, {} bytes: {} read at the signal, {} at the exit, {} lines written",
            run.len,
            run.at_signal,
            run.offset,
            run.written.len()
        );
        assert!(!run.written.is_empty(), "nothing was written");
        let first_wrong = run
            .written
            .iter()
            .enumerate()
            .find(|(i, l)| **l != line(*i as u64));
        assert!(
            first_wrong.is_none(),
            "line {:?} is not the line of its place",
            first_wrong
        );
        assert_eq!(
            run.offset, run.written_bytes,
            "stdin's offset after the run against the bytes of the lines written"
        );
        assert_eq!(bytes_read(&run.report, "in")?, run.offset);
        assert_eq!(run.report["interrupted"], true);
        assert_eq!(run.report["events_out"], run.written.len() as u64);
    }
    Ok(())
}

/// The summary line names the bytes a stdin source read.
#[test]
fn the_summary_says_how_many_bytes_stdin_gave() -> Result<()> {
    let dir = Dir::new()?;
    let pipeline = passthrough(&dir)?;
    let (input, len) = numbered(&dir, "in.txt", 1000)?;
    let out = dir
        .weir()
        .arg("run")
        .arg(&pipeline)
        .stdin(Stdio::from(File::open(input)?))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "weir failed: {stderr}");
    let summary = stderr.lines().last().unwrap_or_default();
    assert!(
        summary.contains(&format!(" | in: {len} bytes read from stdin | pass: ")),
        "{summary}"
    );
    Ok(())
}

/// `weir run --report json` with its stdin a pipe the test writes.
fn start_piped(dir: &Dir, pipeline: &std::path::Path) -> Result<support::Running> {
    let mut cmd: Command = dir.weir();
    cmd.args(["run", "--report", "json"]).arg(pipeline);
    support::Running::start(cmd, support::Stdin::Piped)
}

/// Waits until `out.txt` holds `n` lines.
fn wait_for_lines(dir: &Dir, n: usize) -> Result<()> {
    support::wait_until(
        "lines written",
        || Ok((read_lines(&dir.path("out.txt"))?.len() >= n).then_some(())),
        || format!("{:?}", read_lines(&dir.path("out.txt"))),
    )
}

/// Stdin a pipe: a line begun when the signal comes is read to its end when the rest comes
/// within the grace, and not a byte more is read.
#[test]
fn sigterm_on_a_piped_stdin_reads_the_line_begun_to_its_end_and_no_further() -> Result<()> {
    let dir = Dir::new()?;
    let pipeline = passthrough(&dir)?;
    let mut running = start_piped(&dir, &pipeline)?;
    // One write: the reader takes all of it at once, a line and a half.
    running.stdin().write_all(b"first\npar")?;
    running.stdin().flush()?;
    wait_for_lines(&dir, 1)?;
    running.signal(libc::SIGTERM)?;
    running.wait_for_stderr("stopping")?;
    std::thread::sleep(Duration::from_millis(200));
    running.stdin().write_all(b"t\nnever read\n")?;
    running.stdin().flush()?;
    let ran = running.finish(PATIENCE)?;
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    assert_eq!(read_lines(&dir.path("out.txt"))?, ["first", "part"]);
    let report = report(ran.stderr())?;
    assert_eq!(bytes_read(&report, "in")?, b"first\npart\n".len() as u64);
    Ok(())
}

/// Stdin a pipe whose rest of a line never comes: after the grace, what came of it goes on
/// as a line of its own, and a notice says so.
#[test]
fn sigterm_on_a_piped_stdin_gives_up_on_a_line_whose_rest_never_comes() -> Result<()> {
    let dir = Dir::new()?;
    let pipeline = passthrough(&dir)?;
    let mut running = start_piped(&dir, &pipeline)?;
    running.stdin().write_all(b"first\npar")?;
    running.stdin().flush()?;
    wait_for_lines(&dir, 1)?;
    running.signal(libc::SIGTERM)?;
    let ran = running.finish(PATIENCE)?;
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    assert!(
        ran.stderr().contains("did not come within"),
        "{}",
        ran.stderr()
    );
    assert_eq!(read_lines(&dir.path("out.txt"))?, ["first", "par"]);
    let report = report(ran.stderr())?;
    assert_eq!(bytes_read(&report, "in")?, b"first\npar".len() as u64);
    Ok(())
}
