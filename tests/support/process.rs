//! A `weir` process watched from outside: its output collected on threads of its own, its
//! stdin fed or left open, signals sent to it, and its end awaited with its exit status,
//! duration and peak resident memory.
//!
//! The peak is the kernel's high-water mark of the child's resident set, `VmHWM` in
//! `/proc/PID/status`, read every few milliseconds while it runs: a peak between two reads is
//! still seen by the next one. (`ru_maxrss` from `wait4` cannot serve: Linux folds the
//! parent's resident set at the moment of the spawn into it, and this test process can be far
//! larger than the child it watches.)

use std::io::Read;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::report::Report;

/// The longest any test waits for one thing to happen, or for one run to end: far beyond
/// what any of them needs on a loaded machine, so only a hang reaches it.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// How often a waiting test looks again.
const POLL: Duration = Duration::from_millis(5);

/// Waits until `check` gives a value, looking every few milliseconds, for at most
/// [`PATIENCE`]; fails naming `what` and the last state `state` describes.
pub fn wait_until<T>(
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>>,
    state: impl Fn() -> String,
) -> Result<T> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        ensure!(
            Instant::now() < deadline,
            "waited {PATIENCE:?} for {what}; {}",
            state()
        );
        std::thread::sleep(POLL);
    }
}

/// What a child process did, watched while it ran: its output, exit status, how long it took
/// and the most memory it held resident.
#[derive(Debug)]
pub struct Watched {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
    /// The peak resident set of the run, in KiB.
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

    /// The last line of stderr.
    pub fn last_line(&self) -> &str {
        self.stderr.lines().last().unwrap_or_default()
    }
}

/// A finished `weir run --report json`: what was watched, and the report when there is one.
#[derive(Debug)]
pub struct Ran {
    pub watched: Watched,
    pub report: Result<Report, String>,
}

impl Ran {
    pub fn code(&self) -> i32 {
        self.watched.code()
    }

    pub fn stderr(&self) -> &str {
        &self.watched.stderr
    }

    /// The report of a run that succeeded; panics with stderr otherwise.
    pub fn report(&self) -> &Report {
        assert_eq!(self.code(), 0, "weir failed: {}", self.watched.stderr);
        match &self.report {
            Ok(report) => report,
            Err(e) => panic!("no report: {e}"),
        }
    }
}

/// What feeds a child's stdin.
pub enum Stdin {
    /// Nothing: stdin is `/dev/null`.
    Null,
    /// A pipe the test writes through [`Running::stdin`].
    Piped,
    /// A pipe written by this function on a thread of its own; dropping the pipe closes it.
    Feed(Feeder),
}

/// What writes a child's stdin on a thread of its own.
pub type Feeder = Box<dyn FnOnce(ChildStdin) -> std::io::Result<()> + Send>;

/// A child process running.
pub struct Running {
    child: Child,
    reaped: bool,
    started: Instant,
    stdin: Option<ChildStdin>,
    feeder: Option<JoinHandle<std::io::Result<()>>>,
    stdout: Option<ChildStdout>,
    out_reader: Option<JoinHandle<std::io::Result<Vec<u8>>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    err_reader: Option<JoinHandle<()>>,
    /// The largest `VmHWM` read so far, in KiB, and the thread that reads it.
    peak_kib: Arc<AtomicU64>,
    memory_watcher: Option<JoinHandle<()>>,
}

impl Running {
    /// Starts `cmd` with its stdout and stderr collected.
    pub fn start(cmd: Command, stdin: Stdin) -> Result<Running> {
        let mut running = Running::start_keeping_stdout(cmd, stdin)?;
        let mut out = running.stdout.take().context("stdout is piped")?;
        running.out_reader = Some(std::thread::spawn(move || {
            let mut buf = Vec::new();
            out.read_to_end(&mut buf).map(|_| buf)
        }));
        Ok(running)
    }

    /// Starts `cmd` with its stderr collected and its stdout left for the test to read
    /// through [`Running::take_stdout`].
    pub fn start_keeping_stdout(mut cmd: Command, stdin: Stdin) -> Result<Running> {
        let (mode, feed) = match stdin {
            Stdin::Null => (Stdio::null(), None),
            Stdin::Piped => (Stdio::piped(), None),
            Stdin::Feed(feed) => (Stdio::piped(), Some(feed)),
        };
        let mut child = cmd
            .stdin(mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        let mut pipe = child.stdin.take();
        let feeder = match (feed, pipe.take()) {
            (Some(feed), Some(stdin)) => Some(std::thread::spawn(move || feed(stdin))),
            (None, p) => {
                pipe = p;
                None
            }
            (Some(_), None) => None,
        };
        // Stderr is drained on a thread of its own, so a chatty child never blocks on a full
        // pipe, and a test can look at what it said so far.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err = child.stderr.take().context("stderr is piped")?;
        let sink = Arc::clone(&stderr);
        let err_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        // `spawn` returns once the child has exec'd, so every read is of weir's own memory.
        let peak_kib = Arc::new(AtomicU64::new(0));
        let pid = child.id();
        let peak = Arc::clone(&peak_kib);
        let memory_watcher = std::thread::spawn(move || {
            // Ends when the process has exited: a zombie's status has no `VmHWM`.
            while let Some(kib) = peak_rss_kib_now(pid) {
                peak.fetch_max(kib, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Ok(Running {
            stdout: child.stdout.take(),
            child,
            reaped: false,
            started: Instant::now(),
            stdin: pipe,
            feeder,
            out_reader: None,
            stderr,
            err_reader: Some(err_reader),
            peak_kib,
            memory_watcher: Some(memory_watcher),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's stdin, when it was started with [`Stdin::Piped`] and not closed since.
    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("stdin is piped and open")
    }

    /// Closes the child's stdin: its input ends.
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// The child's stdout, for a test that reads it itself.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// What the child wrote on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until a whole line of stderr holds `text`; returns that line. Fails if the
    /// child exits first.
    pub fn wait_for_stderr(&mut self, text: &str) -> Result<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // Whole lines only: the last one may still be on its way.
            let said = self.stderr();
            let whole = &said[..said.rfind('\n').map_or(0, |end| end + 1)];
            if let Some(line) = whole.lines().find(|l| l.contains(text)) {
                return Ok(line.to_string());
            }
            if self.exited() {
                bail!("weir exited before saying `{text}`: {}", self.stderr());
            }
            ensure!(
                Instant::now() < deadline,
                "no `{text}` on stderr after {PATIENCE:?}: {}",
                self.stderr()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Whether the child has exited, without reaping it: [`Running::wait`] still reads its
    /// status and peak memory.
    pub fn exited(&self) -> bool {
        if self.reaped {
            return true;
        }
        let pid: libc::id_t = self.child.id();
        // SAFETY: a zeroed `siginfo_t` is a valid value of that plain C struct.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `waitid` writes only to `info`; with `WNOWAIT` it leaves the child waitable.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: `waitid` filled `info` in (or left it zeroed, which reads as pid 0).
        rc == 0 && unsafe { info.si_pid() } != 0
    }

    /// Sends `signal` (such as `libc::SIGTERM`) to the child.
    pub fn signal(&self, signal: i32) -> Result<()> {
        ensure!(!self.reaped, "the child has exited");
        let pid = i32::try_from(self.child.id())?;
        // SAFETY: `kill` only sends a signal; the pid is our child's, not yet reaped, so it
        // cannot have been reused by another process.
        let rc = unsafe { libc::kill(pid, signal) };
        ensure!(
            rc == 0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
        Ok(())
    }

    /// Waits for the child to exit, for at most `limit` (then kills it and fails): a hostile
    /// plugin must never make the host hang.
    pub fn wait(mut self, limit: Duration) -> Result<Watched> {
        let pid = i32::try_from(self.child.id())?;
        let status = loop {
            let mut status = 0;
            // SAFETY: `waitpid` writes only to the local it is given; the pid is our child's,
            // and no one else waits for it (`Child::wait` is only called after a kill).
            let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            ensure!(rc >= 0, "waitpid: {}", std::io::Error::last_os_error());
            if rc == pid {
                break status;
            }
            if self.started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.reaped = true;
                bail!(
                    "the process ran for more than {limit:?} and was killed; stderr: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(POLL);
        };
        self.reaped = true;
        let elapsed = self.started.elapsed();
        drop(self.stdin.take());
        if let Some(feeder) = self.feeder.take() {
            // A child that exits before reading all its input makes the feeder fail with a
            // broken pipe; the caller judges the child by what it wrote, not by that.
            let _ = feeder.join().expect("the stdin feeder panicked");
        }
        let stdout = match self.out_reader.take() {
            Some(reader) => reader.join().expect("the stdout reader panicked")?,
            None => Vec::new(),
        };
        if let Some(reader) = self.err_reader.take() {
            reader.join().expect("the stderr reader panicked");
        }
        if let Some(watcher) = self.memory_watcher.take() {
            watcher.join().expect("the memory watcher panicked");
        }
        use std::os::unix::process::ExitStatusExt;
        Ok(Watched {
            status: ExitStatus::from_raw(status),
            stdout,
            stderr: self.stderr(),
            elapsed,
            peak_rss_kib: self.peak_kib.load(Ordering::Relaxed),
        })
    }

    /// [`Running::wait`], then the report when the run printed one.
    pub fn finish(self, limit: Duration) -> Result<Ran> {
        let watched = self.wait(limit)?;
        let report = Report::from_stderr(&watched.stderr).map_err(|e| format!("{e:#}"));
        Ok(Ran { watched, report })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to its end with stdout and stderr collected; see [`Running::wait`].
pub fn run_watched(cmd: Command, limit: Duration) -> Result<Watched> {
    Running::start(cmd, Stdin::Null)?.wait(limit)
}

/// Reads `VmHWM` (the peak resident set so far) of a live process, in KiB.
pub fn peak_rss_kib_now(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
