//! Shared helpers of the end-to-end tests: the binary, temporary folders, the built plugins,
//! and the native run of the W3 stage logic that sandboxed runs are compared with.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use weir_plugin::{Event, Settings, Transform};

pub use weir_test_plugins::plugin;

/// The `weir` binary, with logging left at its defaults.
pub fn weir() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.env_remove("WEIR_LOG");
    cmd
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// A temporary folder, removed when dropped.
pub struct Dir(tempfile::TempDir);

impl Dir {
    pub fn new() -> Result<Dir> {
        Ok(Dir(tempfile::tempdir()?))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        self.write_bytes(name, text.as_bytes())
    }

    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.path(name);
        std::fs::write(&path, bytes)?;
        Ok(path)
    }
}

/// Splits a file into values as `BufRead::lines` does: on `\n`, without a trailing `\r`.
pub fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .collect();
    if bytes.ends_with(b"\n") || bytes.is_empty() {
        out.pop();
    }
    out
}

/// Runs a stage natively over events, panicking on any failure (W3 on its data has none).
fn stage<S: Transform>(events: Vec<Event>) -> Vec<Event> {
    let mut stage = weir_plugin::native::init::<S>(Settings::default()).expect("init");
    weir_plugin::native::process_events(&mut stage, &events)
        .into_iter()
        .flat_map(|o| o.expect("the native stage failed"))
        .collect()
}

/// The W3 output of the native stage logic over a log file's bytes: JSON lines.
pub fn native_w3(log: &[u8]) -> String {
    let events = lines(log).into_iter().map(Event::new).collect();
    let parsed = stage::<sshd_parse::SshdParse>(events);
    let kept = stage::<auth_filter::AuthFilter>(parsed);
    let redacted = stage::<redact_ip::RedactIp>(kept);
    let mut out = String::new();
    for event in redacted {
        out.push_str(std::str::from_utf8(&event.value).expect("W3 output is UTF-8"));
        out.push('\n');
    }
    out
}

/// Reads the number between `before` and `after` in the run's summary line.
pub fn summary_field(stderr: &str, before: &str, after: &str) -> Option<u64> {
    let line = stderr.lines().rev().find(|l| l.starts_with("weir: "))?;
    let start = line.find(before)? + before.len();
    let end = start + line[start..].find(after)?;
    line[start..end].trim().parse().ok()
}

/// Sends SIGINT to a child process.
pub fn interrupt(child: &std::process::Child) -> Result<()> {
    let status = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -INT failed");
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// What a child process did, watched while it ran: its output, exit status, how long it took
/// and the most memory it held resident.
pub struct Watched {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: std::time::Duration,
    /// The largest `VmHWM` (peak resident set) read from `/proc/<pid>/status`, in KiB.
    pub peak_rss_kib: u64,
}

impl Watched {
    /// The exit code, or -1 when a signal ended the process.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    pub fn peak_rss_mib(&self) -> u64 {
        self.peak_rss_kib / 1024
    }
}

/// Reads `VmHWM` and `VmRSS` of a live process, in KiB; `None` once it has exited.
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .filter(|l| l.starts_with("VmHWM:") || l.starts_with("VmRSS:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .max()
}

/// Runs `cmd` to the end with stdout and stderr captured, polling its resident memory every
/// few milliseconds. `VmHWM` is the kernel's high-water mark, so a peak between two polls is
/// still seen by the next one. A process still running after `limit` is killed, and the
/// call fails: a hostile plugin must never make the host hang.
pub fn run_watched(cmd: Command, limit: std::time::Duration) -> Result<Watched> {
    run_watched_feeding(cmd, limit, None)
}

/// What writes a child's stdin, on a thread of its own; dropping the pipe closes it.
pub type Feeder = Box<dyn FnOnce(std::process::ChildStdin) -> std::io::Result<()> + Send>;

/// [`run_watched`], with stdin written by `feed` while the child runs (empty without one).
pub fn run_watched_feeding(
    mut cmd: Command,
    limit: std::time::Duration,
    feed: Option<Feeder>,
) -> Result<Watched> {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let start = Instant::now();
    let mut child = cmd
        .stdin(if feed.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let feeder = match (feed, child.stdin.take()) {
        (Some(feed), Some(stdin)) => Some(std::thread::spawn(move || feed(stdin))),
        _ => None,
    };
    // Both pipes are drained on threads of their own, so a chatty child never blocks on a
    // full pipe while this thread polls its memory.
    let mut out_pipe = child.stdout.take().expect("stdout is piped");
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        out_pipe.read_to_end(&mut buf).map(|_| buf)
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        err_pipe.read_to_end(&mut buf).map(|_| buf)
    });
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = resident_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("the process ran for more than {limit:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    if let Some(feeder) = feeder {
        // A child that exits before reading all its input makes the feeder fail with a
        // broken pipe; the caller judges the child by what it wrote, not by that.
        let _ = feeder.join().expect("stdin feeder");
    }
    let stdout = out_reader.join().expect("stdout reader")?;
    let stderr = err_reader.join().expect("stderr reader")?;
    Ok(Watched {
        status,
        stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed,
        peak_rss_kib: peak,
    })
}

/// The dead letters in a JSON-lines file; none when the file was never written.
pub fn dead_letters(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// The number before `what` (such as `traps` or `failed`) in a stage's part of the summary
/// line, `| NAME: IN -> OUT, N failed, N traps`; 0 when the summary leaves it out.
pub fn stage_count(stderr: &str, stage: &str, what: &str) -> Option<u64> {
    let line = stderr.lines().rev().find(|l| l.starts_with("weir: "))?;
    let part = line
        .split(" | ")
        .skip(1)
        .find(|p| p.starts_with(&format!("{stage}: ")))?;
    Some(
        part.split(", ")
            .skip(1)
            .find_map(|f| f.strip_suffix(&format!(" {what}"))?.parse().ok())
            .unwrap_or(0),
    )
}
