//! The `weir` binary as a user runs it: `weir run --report json FILE`, a whole process, with
//! plugins compiled once into a compile cache of the harness's own (`WEIR_CACHE_DIR`) and
//! mapped from it on every timed run. Default limits apply (fuel and deadline on). [`timed`]
//! runs any whole process the same way (the Go pipeline too): wall time, CPU time and peak
//! resident memory; [`spawn_timed`] starts one the same way, for a program stopped with a
//! signal rather than ending by itself.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// A `weir` binary and the compile cache it runs with.
pub struct Weir {
    pub bin: PathBuf,
    pub cache: PathBuf,
}

/// What one `weir run` did.
pub struct BinaryRun {
    /// The JSON report it printed on stderr.
    pub report: serde_json::Value,
    /// From spawning the process to reaping it.
    pub wall: Duration,
    /// Peak resident memory: `/usr/bin/time`'s `%M` where it is installed, else `wait4`'s.
    /// `wait4` alone counts the harness's own resident set too: at `exec` the kernel keeps the
    /// high-water mark of the memory the child shared with the harness until then.
    pub max_rss_kib: i64,
    /// CPU time (user and system) of the process, from `wait4`.
    pub cpu: Duration,
}

impl BinaryRun {
    pub fn seconds(&self, key: &str) -> Result<Duration> {
        let s = self.report[key]
            .as_f64()
            .with_context(|| format!("no `{key}` in the report"))?;
        Ok(Duration::from_secs_f64(s))
    }
}

/// GNU time, for a child's own peak resident set.
const TIME: &str = "/usr/bin/time";

impl Weir {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        self.environment(&mut cmd);
        cmd
    }

    /// The environment of every run: the harness's compile cache, no log filter, stdin empty.
    pub fn environment(&self, cmd: &mut Command) {
        cmd.env("WEIR_CACHE_DIR", &self.cache)
            .env_remove("WEIR_LOG")
            .stdin(Stdio::null());
    }

    /// `weir check FILE`: loads every plugin, so that later runs find them compiled.
    pub fn warm(&self, file: &Path) -> Result<()> {
        let out = self.command().arg("check").arg(file).output()?;
        ensure!(
            out.status.success(),
            "weir check {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// `weir run --report json FILE`, its stdout discarded.
    pub fn run(&self, file: &Path) -> Result<BinaryRun> {
        let args = [
            OsStr::new("run"),
            OsStr::new("--report"),
            OsStr::new("json"),
        ];
        let run = timed(
            &self.bin,
            args.iter().copied().chain([file.as_os_str()]),
            |c| self.environment(c),
            &file.with_extension("rss"),
        )?;
        ensure!(
            run.status == 0,
            "weir run exited with {}: {}",
            run.status,
            run.stderr
        );
        let line = run
            .stderr
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .with_context(|| format!("no JSON report on stderr: {}", run.stderr))?;
        Ok(BinaryRun {
            report: serde_json::from_str(line)?,
            wall: run.wall,
            max_rss_kib: run.max_rss_kib,
            cpu: run.cpu,
        })
    }

    /// Time from spawning `weir run FILE` to the first line on its stdout (a pipe); the rest
    /// is read to the end and must have `lines` lines in all.
    pub fn first_line(&self, file: &Path, lines: u64) -> Result<Duration> {
        let started = Instant::now();
        let mut child = self
            .command()
            .args(["run", "--quiet"])
            .arg(file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut out = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut line = Vec::new();
        out.read_until(b'\n', &mut line)?;
        let first = started.elapsed();
        let mut rest = Vec::new();
        out.read_to_end(&mut rest)?;
        let seen =
            u64::from(!line.is_empty()) + rest.iter().filter(|&&b| b == b'\n').count() as u64;
        ensure!(child.wait()?.success(), "weir run failed");
        ensure!(
            seen == lines,
            "weir run printed {seen} lines, expected {lines}"
        );
        Ok(first)
    }
}

/// What one whole process did, as [`timed`] saw it.
pub struct Timed {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    /// From spawning the process to reaping it.
    pub wall: Duration,
    /// Peak resident memory, as [`BinaryRun::max_rss_kib`].
    pub max_rss_kib: i64,
    /// CPU time (user and system) of the process, from `wait4`.
    pub cpu: Duration,
}

/// Runs `program ARGS` to its end, its environment set by `environment`, stdin empty, stdout
/// and stderr read; times it from spawning to reaping, and takes its CPU time from `wait4` and
/// its peak resident memory from `/usr/bin/time` (writing to `rss_file`) where it is installed.
pub fn timed<'a>(
    program: &Path,
    args: impl IntoIterator<Item = &'a OsStr>,
    environment: impl Fn(&mut Command),
    rss_file: &Path,
) -> Result<Timed> {
    spawn_timed(program, args, environment, rss_file)?.wait()
}

/// A whole process started as [`timed`] starts it and not yet reaped: for a program that
/// does not end by itself (`weir run` on a NATS source), stopped with a signal.
pub struct Spawned {
    child: Child,
    /// Whether `child` is `/usr/bin/time`, the program its only child.
    wrapped: bool,
    started: Instant,
    stdout: JoinHandle<std::io::Result<String>>,
    stderr: JoinHandle<std::io::Result<String>>,
    rss_file: PathBuf,
    program: PathBuf,
}

/// Starts `program ARGS` as [`timed`] does, and returns at once.
pub fn spawn_timed<'a>(
    program: &Path,
    args: impl IntoIterator<Item = &'a OsStr>,
    environment: impl Fn(&mut Command),
    rss_file: &Path,
) -> Result<Spawned> {
    let time = Path::new(TIME);
    let wrapped = time.exists();
    let mut command = if wrapped {
        // `time` is small: what it shared with the harness before its own `exec` is
        // little, and it reports the program's peak alone.
        let mut c = Command::new(time);
        c.args(["-f", "%M", "-o"]).arg(rss_file).arg(program);
        c
    } else {
        Command::new(program)
    };
    environment(&mut command);
    let started = Instant::now();
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    // Read both pipes beside the wait, so that a chatty run cannot block on a full pipe.
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).map(|_| text)
        })
    };
    let stdout = read(Box::new(child.stdout.take().context("no stdout")?));
    let stderr = read(Box::new(child.stderr.take().context("no stderr")?));
    Ok(Spawned {
        child,
        wrapped,
        started,
        stdout,
        stderr,
        rss_file: rss_file.to_path_buf(),
        program: program.to_path_buf(),
    })
}

impl Spawned {
    /// When the process was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Whether the process has ended (it is left to be reaped by [`Spawned::wait`]).
    pub fn exited(&self) -> bool {
        // SAFETY: an all-zero `siginfo_t` is a valid value of this plain C struct.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        // SAFETY: the pid is our child, not yet reaped; the pointer is to a live local.
        // WNOWAIT leaves it waitable, so `wait` still gets its resource usage.
        let r = unsafe { libc::waitid(libc::P_PID, self.child.id(), &mut info, flags) };
        // SAFETY: `si_pid` is set by `waitid` when a child has changed state, zero otherwise.
        r == 0 && unsafe { info.si_pid() } != 0
    }

    /// Sends `signal` to the program itself: with `/usr/bin/time` in between, to its child
    /// (`time` would die of it and leave the program running).
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        let pid = if self.wrapped {
            let own = self.child.id();
            let children = format!("/proc/{own}/task/{own}/children");
            let text = std::fs::read_to_string(&children).context(children)?;
            let first = text.split_whitespace().next().with_context(|| {
                format!("{TIME} has no child: {} has ended", self.program.display())
            })?;
            first.parse()?
        } else {
            self.child.id() as libc::pid_t
        };
        // SAFETY: plain system call on a pid of ours.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!("kill {pid}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the process to end; its status, output, wall time, CPU time and peak
    /// resident memory.
    pub fn wait(self) -> Result<Timed> {
        let (status, usage) = wait_with_usage(self.child)?;
        let wall = self.started.elapsed();
        let stdout = self.stdout.join().expect("the stdout reader")?;
        let stderr = self.stderr.join().expect("the stderr reader")?;
        let max_rss_kib = match std::fs::read_to_string(&self.rss_file) {
            Ok(text) => text.trim().parse().context("time's %M")?,
            Err(_) => usage.ru_maxrss,
        };
        let _ = std::fs::remove_file(&self.rss_file);
        Ok(Timed {
            status,
            stdout,
            stderr,
            wall,
            max_rss_kib,
            cpu: cpu_time(&usage),
        })
    }
}

/// User and system time of a resource usage.
pub fn cpu_time(usage: &libc::rusage) -> Duration {
    let t = |v: libc::timeval| Duration::new(v.tv_sec as u64, v.tv_usec as u32 * 1000);
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// CPU time this process has used so far, all its threads together.
pub fn own_cpu_time() -> Duration {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to a live local; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    cpu_time(&usage)
}

/// Waits for a child and returns its exit status and resource usage: its peak resident set
/// (KiB) and CPU time, which only `wait4` reports exactly (`/proc` loses them when the
/// process ends).
fn wait_with_usage(child: Child) -> Result<(i32, libc::rusage)> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; the pointers are to live locals. `child`
    // is not waited on afterwards (dropping a `Child` does not wait).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    drop(child);
    Ok((code, usage))
}
