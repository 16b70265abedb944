//! Shared helpers of the end-to-end tests: the binary, temporary folders, the built plugins,
//! and the native run of the W3 stage logic that sandboxed runs are compared with.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use weir_plugin::{Event, Settings, Stage};

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
fn stage<S: Stage>(events: Vec<Event>) -> Vec<Event> {
    let mut stage = S::init(&Settings::default()).expect("init");
    stage
        .process_batch(events)
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
