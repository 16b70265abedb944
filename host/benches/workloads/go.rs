//! The Go baseline: `bench/go-pipeline`, a hand-written Go channel pipeline (a reader
//! goroutine, one goroutine per stage, bounded channels of batches of 256, a writer), built
//! once per harness run and run as a whole process, timed as `weir run` is ([`binary::timed`]).
//!
//! The toolchain is `sdk/toolchains.sh`'s (`.toolchains/go/bin/go` in the workspace, or under
//! `WEIR_TOOLCHAINS`), else `go` on `PATH`; with neither, the mode is left out with a line
//! saying so, unless `WEIR_REQUIRE_TOOLCHAINS` is set (CI), which makes that an error. The build
//! is offline and standard-library only, with the settings of `sdk/go/env.sh`; the binary goes
//! into cargo's target directory.
//!
//! The program prints one line of JSON on stdout (`events_in`, `events_out`, `bytes_out`,
//! `dead_lettered`, `elapsed_s`, `total_s`); [`GoPipeline::run`] reads it back.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::binary;
use crate::spec::{self, Workload};

/// The built Go pipeline.
pub struct GoPipeline {
    pub bin: PathBuf,
    /// `go version`'s answer, for the run's header.
    pub version: String,
}

/// What one run of the Go pipeline did.
pub struct GoRun {
    pub events_in: u64,
    pub events_out: u64,
    pub bytes_out: u64,
    pub dead_letters: u64,
    /// From the start of reading to the end of the last write, as the program timed it.
    pub elapsed: Duration,
    /// From the start of the program's `main` to its end.
    pub total: Duration,
    /// The whole process, as [`binary::Timed`] has them.
    pub wall: Duration,
    pub cpu: Duration,
    pub max_rss_kib: i64,
}

/// The workspace root (the harness is built from `host/`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `go` command and the environment it builds with, as `sdk/go/env.sh` sets it.
fn toolchain() -> Option<Command> {
    let tc = std::env::var_os("WEIR_TOOLCHAINS")
        .map_or_else(|| workspace().join(".toolchains"), PathBuf::from);
    let bundled = tc.join("go/bin/go");
    let mut cmd = if bundled.is_file() {
        let mut c = Command::new(&bundled);
        c.env("GOROOT", tc.join("go"));
        if std::env::var_os("GOCACHE").is_none() {
            c.env("GOCACHE", tc.join("go-cache"));
        }
        c
    } else {
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join("go"))
            .find(|go| go.is_file())?;
        let mut c = Command::new(on_path);
        if std::env::var_os("GOCACHE").is_none() {
            c.env(
                "GOCACHE",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache"),
            );
        }
        c
    };
    cmd.env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOTELEMETRY", "off")
        .env("CGO_ENABLED", "0");
    Some(cmd)
}

/// Builds the Go pipeline, or says why there is none: `Ok(None)` when no Go toolchain is
/// found and none is required.
pub fn build() -> Result<Option<GoPipeline>> {
    let Some(mut go) = toolchain() else {
        ensure!(
            std::env::var_os("WEIR_REQUIRE_TOOLCHAINS").is_none(),
            "no Go toolchain for the go pipeline (WEIR_REQUIRE_TOOLCHAINS is set): run `sdk/toolchains.sh go`"
        );
        return Ok(None);
    };
    let source = workspace().join("bench/go-pipeline");
    let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-pipeline/go-pipeline");
    let out = go
        .current_dir(&source)
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(".")
        .output()
        .context("running `go build`")?;
    ensure!(
        out.status.success(),
        "go build in {}: {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut go = toolchain().context("the Go toolchain went away")?;
    let version = go.arg("version").output()?;
    Ok(Some(GoPipeline {
        bin,
        version: String::from_utf8_lossy(&version.stdout).trim().to_string(),
    }))
}

/// The line printed when the mode is left out.
pub const SKIPPED: &str = "go pipeline: skipped, no Go toolchain (neither .toolchains/go/bin/go nor `go` on PATH; `sdk/toolchains.sh go` installs it)";

impl GoPipeline {
    /// Runs a workload of `size` (W1/W2 events, W3 copies of the log). W3 writes to
    /// `output`, and so do W1/W2 when it is given (else their sink counts).
    pub fn run(&self, workload: Workload, size: u64, output: Option<&Path>) -> Result<GoRun> {
        let log = spec::w3_log();
        let size = size.to_string();
        let mut args: Vec<&OsStr> = vec![OsStr::new(match workload {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
        })];
        if workload == Workload::W3 {
            args.push(log.as_os_str());
        }
        args.push(OsStr::new(&size));
        match (workload, output) {
            (_, Some(out)) => args.push(out.as_os_str()),
            (Workload::W3, None) => bail!("W3 needs an output file"),
            _ => {}
        }
        let rss = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-pipeline/run.rss");
        let run = binary::timed(&self.bin, args, |_| {}, &rss)?;
        ensure!(
            run.status == 0,
            "go-pipeline exited with {}: {}",
            run.status,
            run.stderr
        );
        let report: serde_json::Value = serde_json::from_str(run.stdout.trim())
            .with_context(|| format!("go-pipeline's report: {:?}", run.stdout))?;
        let number = |key: &str| {
            report[key]
                .as_u64()
                .with_context(|| format!("no `{key}` in go-pipeline's report"))
        };
        let seconds = |key: &str| {
            report[key]
                .as_f64()
                .map(Duration::from_secs_f64)
                .with_context(|| format!("no `{key}` in go-pipeline's report"))
        };
        Ok(GoRun {
            events_in: number("events_in")?,
            events_out: number("events_out")?,
            bytes_out: number("bytes_out")?,
            dead_letters: number("dead_lettered")?,
            elapsed: seconds("elapsed_s")?,
            total: seconds("total_s")?,
            wall: run.wall,
            cpu: run.cpu,
            max_rss_kib: run.max_rss_kib,
        })
    }
}
