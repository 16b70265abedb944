//! What every end-to-end test shares: the `weir` binary, a temporary folder per test with its
//! own compile cache, the built plugins, the pipeline-file builder (`file`), the watched
//! process (`process`), a real NATS server (`nats`) or three in a cluster (`nats_cluster`)
//! and what a run leaves to read (`report`).
//!
//! **Compile caches.** No test touches the user's cache. Each test's folder has a cache of
//! its own (`WEIR_CACHE_DIR`), filled with hard links to a warm cache kept under cargo's
//! `target/tmp`, into which every plugin a test names is compiled once (by a `weir check` of
//! it). So no run of a test pays a cold compile, which keeps compiling out of time and memory
//! bounds, and no run can disturb another's cache: weir replaces an entry by renaming a new
//! file over it, never by writing into a linked one.

#![allow(dead_code, unused_imports)]

pub mod file;
pub mod nats;
pub mod nats_cluster;
pub mod process;
pub mod report;
pub mod tls;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result};
use weir_plugin::{Event, Settings, Transform};

pub use file::{PipelineFile, Sink, Source, Stage, Table};
pub use process::{Feeder, PATIENCE, Ran, Running, Stdin, Watched, run_watched, wait_until};
pub use report::{
    DeadLetter, JsonEvent, NodeReport, Report, count_lines, dead_letters, json_events, read_lines,
};

/// The `weir` binary with logging at its defaults and the compile cache off: a command that
/// loads plugins should come from [`Dir::weir`], which gives it the test's own cache.
pub fn weir() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.env_remove("WEIR_LOG")
        .env_remove("WEIR_ADMIN_TOKEN")
        .env("WEIR_CACHE_DIR", "");
    cmd
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// The built component of a plugin package (`sshd-parse`, `fixture-poison`), compiled into
/// the warm cache.
pub fn plugin(package: &str) -> PathBuf {
    let path = weir_test_plugins::plugin(package);
    warm(&path).unwrap_or_else(|e| panic!("cannot compile {}: {e:#}", path.display()));
    path
}

/// The warm compile cache the tests' caches link to.
fn warm_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("weir-compile-cache")
}

/// Plugin files this process has made sure are in the warm cache.
static WARMED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Makes a folder private to this user, as weir wants a cache folder.
fn private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(anyhow::Error::from(e).context(format!("cannot create {}", path.display()))),
    }
}

/// Compiles the plugin at `path` into the warm cache, unless an entry of it is there.
pub fn warm(path: &Path) -> Result<()> {
    let mut warmed = WARMED.lock().unwrap_or_else(|e| e.into_inner());
    if warmed.contains(path) {
        return Ok(());
    }
    let cache = warm_dir();
    private_dir(&cache)?;
    let digest = sha256_hex(&std::fs::read(path)?);
    let cached = std::fs::read_dir(&cache)?
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with(&digest));
    if !cached {
        // Compiling comes before every check of a plugin, so even one that is refused at
        // load (another world, an ungranted import) lands in the cache.
        let scratch = tempfile::tempdir()?;
        let file = PipelineFile::new()
            .source("in", Source::stdin())
            .stage("warm", Stage::plugin(path).inputs(&["in"]))
            .sink("out", Sink::null().inputs(&["warm"]));
        let pipeline = scratch.path().join("warm.toml");
        std::fs::write(&pipeline, file.text())?;
        weir()
            .env("WEIR_CACHE_DIR", &cache)
            .arg("check")
            .arg(&pipeline)
            .output()?;
    }
    warmed.insert(path.to_path_buf());
    Ok(())
}

/// A temporary folder, removed when dropped, with the test's own compile cache in `cache/`.
pub struct Dir(tempfile::TempDir);

impl Dir {
    pub fn new() -> Result<Dir> {
        Ok(Dir(tempfile::tempdir()?))
    }

    pub fn root(&self) -> &Path {
        self.0.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        self.write_bytes(name, text.as_bytes())
    }

    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
        Ok(path)
    }

    /// Writes `lines`, each ending with `\n`.
    pub fn write_lines<S: AsRef<str>>(&self, name: &str, lines: &[S]) -> Result<PathBuf> {
        let mut text = String::new();
        for line in lines {
            text.push_str(line.as_ref());
            text.push('\n');
        }
        self.write(name, &text)
    }

    /// The test's compile cache: `cache/`, holding links to every entry of the warm cache and
    /// to its key.
    pub fn cache(&self) -> Result<PathBuf> {
        let cache = self.path("cache");
        private_dir(&cache)?;
        for entry in std::fs::read_dir(warm_dir())? {
            let entry = entry?;
            let name = entry.file_name();
            // The entries, and the key that proves them: without it every entry is refused.
            if !name.to_string_lossy().ends_with(".cwasm") && name != "key" {
                continue;
            }
            let to = cache.join(&name);
            if to.exists() {
                continue;
            }
            if std::fs::hard_link(entry.path(), &to).is_err() {
                // Another file system: a copy does as well, only slower.
                std::fs::copy(entry.path(), &to)
                    .with_context(|| format!("cannot copy {}", entry.path().display()))?;
            }
        }
        Ok(cache)
    }

    /// The `weir` binary with this test's compile cache.
    pub fn weir(&self) -> Command {
        let mut cmd = weir();
        match self.cache() {
            Ok(cache) => {
                cmd.env("WEIR_CACHE_DIR", cache);
            }
            Err(e) => panic!("cannot prepare the test's compile cache: {e:#}"),
        }
        cmd
    }

    /// `weir run --report json FILE` to its end, with no input.
    pub fn run(&self, file: &Path) -> Result<Ran> {
        self.run_with(file, &[], Stdin::Null)
    }

    /// `weir ARGS run --report json FILE` to its end, its stdin as given.
    pub fn run_with(&self, file: &Path, args: &[&str], stdin: Stdin) -> Result<Ran> {
        let mut cmd = self.weir();
        cmd.args(args).args(["run", "--report", "json"]).arg(file);
        Running::start(cmd, stdin)?.finish(PATIENCE)
    }

    /// `weir run --report json FILE` started, its stdin a pipe the test writes.
    pub fn start(&self, file: &Path) -> Result<Running> {
        let mut cmd = self.weir();
        cmd.args(["run", "--report", "json"]).arg(file);
        Running::start(cmd, Stdin::Piped)
    }

    /// `weir check FILE`: its exit code, stdout and stderr.
    pub fn check(&self, file: &Path) -> Result<(i32, String, String)> {
        let out = self.weir().arg("check").arg(file).output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// The in-flight bound `weir check` prints for a pipeline file.
    pub fn checked_bound(&self, file: &Path) -> Result<u64> {
        let (code, stdout, stderr) = self.check(file)?;
        anyhow::ensure!(code == 0, "weir check failed: {stderr}");
        let start = stdout.find("at most ").context("no bound")? + "at most ".len();
        let end = start + stdout[start..].find(' ').context("no bound")?;
        Ok(stdout[start..end].parse()?)
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

/// `count` lines `event I`, with `poison` in place of the one at `at`.
pub fn events_with(count: usize, at: usize, poison: &str) -> Vec<String> {
    (0..count)
        .map(|i| {
            if i == at {
                poison.to_string()
            } else {
                format!("event {i}")
            }
        })
        .collect()
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

/// The authentication failures of a log file, as the native sshd-parse and auth-filter give
/// them: JSON lines.
pub fn native_failures(log: &[u8]) -> Vec<String> {
    let events = lines(log).into_iter().map(Event::new).collect();
    let parsed = stage::<sshd_parse::SshdParse>(events);
    stage::<auth_filter::AuthFilter>(parsed)
        .into_iter()
        .map(|e| String::from_utf8(e.value).expect("JSON is UTF-8"))
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// The first 12 hex digits of a plugin's sha256: its version header.
pub fn short_digest(bytes: &[u8]) -> String {
    sha256_hex(bytes)[..12].to_string()
}

/// Asserts that `written` is `expected`, line for line. A failure names the first
/// difference, cut short: a hostile plugin's output can be a million lines or 64 MiB long.
pub fn assert_same_lines<S: AsRef<str>, T: AsRef<str>>(written: &[S], expected: &[T]) {
    let short = |s: &str| s.chars().take(60).collect::<String>();
    let first_difference = written
        .iter()
        .zip(expected)
        .position(|(w, e)| w.as_ref() != e.as_ref())
        .or((written.len() != expected.len()).then(|| written.len().min(expected.len())));
    if let Some(i) = first_difference {
        panic!(
            "the events did not arrive as expected: {} lines written, {} expected; line {i} is {:?}, expected {:?}",
            written.len(),
            expected.len(),
            written.get(i).map(|s| short(s.as_ref())),
            expected.get(i).map(|s| short(s.as_ref())),
        );
    }
}

/// Appends a custom section to a component: the same code under a new digest.
pub fn with_custom_section(bytes: &[u8], n: u32) -> Vec<u8> {
    let name = b"weir-test";
    let payload = n.to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = bytes.to_vec();
    out.push(0);
    out.push(section.len() as u8);
    out.extend_from_slice(&section);
    out
}
