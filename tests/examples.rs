//! The gallery: every folder of `examples/` runs as its README says, through its `run.sh`,
//! with the `weir` binary under test and the plugins built from source, and prints what its
//! `expected.*` file holds. A folder that lacks its pipeline, README, script or expected output,
//! or that no test here runs, fails [`every_example_is_complete_and_tested`].
//!
//! The scripts take a port or a server address from the environment (`ADMIN_PORT`,
//! `HTTP_PORT`, `NATS_URL`), so that the tests run on free ports and a real `nats-server` of
//! their own, beside anything else on the machine.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use support::nats::{NatsServer, free_port};
use support::{Dir, plugin, workspace_root};

/// The examples this file runs, each by the test of the same name.
const TESTED: &[&str] = &[
    "auth-log",
    "brute-force",
    "hot-reload",
    "http-ingest",
    "multi-language",
    "nats-fanout",
    "redrive-and-shadow",
];

fn example(name: &str) -> PathBuf {
    workspace_root().join("examples").join(name)
}

/// Runs `examples/NAME/run.sh` with `env` and this build's `weir`, with a compile cache of the
/// test's own; returns its standard output, after checking that it succeeded.
fn run(name: &str, dir: &Dir, env: &[(&str, String)]) -> Result<String> {
    let mut cmd = Command::new(example(name).join("run.sh"));
    cmd.env("WEIR", env!("CARGO_BIN_EXE_weir"))
        .env("WEIR_CACHE_DIR", dir.cache()?)
        .env_remove("WEIR_LOG")
        .env_remove("WEIR_ADMIN");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run examples/{name}/run.sh"))?;
    let stdout = String::from_utf8(out.stdout)?;
    ensure!(
        out.status.success(),
        "examples/{name}/run.sh failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// The example's expected output: its one `expected.*` file.
fn expected(name: &str) -> Result<String> {
    let file = expected_file(&example(name))?
        .with_context(|| format!("examples/{name}: no expected output"))?;
    Ok(std::fs::read_to_string(file)?)
}

fn expected_file(dir: &Path) -> Result<Option<PathBuf>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_stem().is_some_and(|s| s == "expected") && p.is_file()))
}

/// Checks that the example printed exactly its expected output.
fn prints_expected(name: &str, printed: &str) -> Result<()> {
    let want = expected(name)?;
    ensure!(
        printed == want,
        "examples/{name} printed\n{printed}\ninstead of\n{want}"
    );
    Ok(())
}

/// Every folder of `examples/` has its pipeline, a README, a `run.sh` and an expected output,
/// and a test of this file runs it.
#[test]
fn every_example_is_complete_and_tested() -> Result<()> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(workspace_root().join("examples"))? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let name = path
            .file_name()
            .context("a name")?
            .to_string_lossy()
            .to_string();
        for file in ["pipeline.toml", "README.md", "run.sh"] {
            ensure!(path.join(file).is_file(), "examples/{name} has no {file}");
        }
        ensure!(
            expected_file(&path)?.is_some(),
            "examples/{name} has no expected output (expected.*)"
        );
        found.insert(name);
    }
    let tested: BTreeSet<String> = TESTED.iter().map(|s| s.to_string()).collect();
    ensure!(
        found == tested,
        "examples/ holds {found:?}, tests/examples.rs runs {tested:?}"
    );
    Ok(())
}

/// The quickstart (W3 on the sshd log).
#[test]
fn auth_log() -> Result<()> {
    for name in ["sshd-parse", "auth-filter", "redact-ip"] {
        plugin(name);
    }
    let dir = Dir::new()?;
    prints_expected("auth-log", &run("auth-log", &dir, &[])?)
}

/// Keyed windows: the addresses with 5 failures or more in a minute (`tests/time.rs` checks
/// the same output against a plain count).
#[test]
fn brute_force() -> Result<()> {
    for name in ["sshd-parse", "auth-filter", "brute-force"] {
        plugin(name);
    }
    let dir = Dir::new()?;
    prints_expected("brute-force", &run("brute-force", &dir, &[])?)
}

/// A Python, a JavaScript and a Go stage in one pipeline, each built by `weir plugin build`
/// from the example's sources, with its own golden test passing natively first.
#[test]
fn multi_language() -> Result<()> {
    let tc = workspace_root().join(".toolchains");
    let missing: Vec<&str> = [
        "python/bin/componentize-py",
        "js/node_modules/.bin/componentize-js",
        "go/bin/go",
    ]
    .into_iter()
    .filter(|f| !tc.join(f).exists())
    .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("WEIR_REQUIRE_TOOLCHAINS").is_none(),
            "toolchains missing ({missing:?}) and WEIR_REQUIRE_TOOLCHAINS is set"
        );
        eprintln!("SKIPPED: toolchains missing ({missing:?}): run sdk/toolchains.sh");
        return Ok(());
    }
    let root = example("multi-language");
    for (lang, stage) in [
        ("python", "keep-failures"),
        ("js", "user-and-address"),
        ("go", "count-by-address"),
    ] {
        let out = Command::new(workspace_root().join(format!("sdk/{lang}/test.sh")))
            .arg(root.join(stage))
            .env("WEIR_TOOLCHAINS", &tc)
            .output()?;
        ensure!(
            out.status.success(),
            "the golden test of {stage} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = Dir::new()?;
    let printed = run("multi-language", &dir, &[])?;
    prints_expected("multi-language", &printed)?;
    // The Go stage's numbers are each address's count of failed-password lines so far.
    let log = std::fs::read_to_string(example("auth-log").join("data/OpenSSH_2k.log"))?;
    let mut seen: std::collections::HashMap<String, u64> = Default::default();
    let mut want = Vec::new();
    for line in log.lines().filter(|l| l.contains("Failed password for ")) {
        let rest = &line[line.find(" from ").context("from")? + 6..];
        let address = rest.split(' ').next().context("an address")?;
        if line.contains("user  ") {
            continue; // the line the JavaScript stage dead-letters
        }
        let n = seen.entry(address.to_string()).or_default();
        *n += 1;
        want.push((address.to_string(), *n));
    }
    let got: Vec<(String, u64)> = printed
        .lines()
        .map(|l| -> Result<(String, u64)> {
            let v: Value = serde_json::from_str(l)?;
            Ok((
                v["address"].as_str().context("address")?.to_string(),
                v["attempt"].as_u64().context("attempt")?,
            ))
        })
        .collect::<Result<_>>()?;
    ensure!(got == want, "the attempts differ from a plain count");
    let letters = std::fs::read_to_string(root.join("out/dead-letters.jsonl"))?;
    ensure!(
        letters.lines().count() == 1 && letters.contains("no user and address in the line"),
        "dead letters: {letters}"
    );
    Ok(())
}

/// NATS in, two branches, NATS and a file out, against a real `nats-server`.
#[test]
fn nats_fanout() -> Result<()> {
    let Some(server) = NatsServer::start("nats_fanout")? else {
        return Ok(());
    };
    for name in ["sshd-parse", "auth-filter", "redact-ip"] {
        plugin(name);
    }
    server.stream("LOGS", &["logs"])?;
    server.stream("PARSED", &["parsed"])?;
    let dir = Dir::new()?;
    let printed = run("nats-fanout", &dir, &[("NATS_URL", server.url())])?;
    prints_expected("nats-fanout", &printed)?;
    let file = std::fs::read_to_string(example("nats-fanout").join("out/failures.jsonl"))?;
    ensure!(
        file == expected("auth-log")?,
        "out/failures.jsonl is not the quickstart's output"
    );
    let parsed = server.messages("PARSED")?;
    ensure!(
        parsed.len() == 2000,
        "PARSED holds {} messages",
        parsed.len()
    );
    for message in &parsed {
        let v: Value = serde_json::from_str(&message.payload)
            .with_context(|| format!("not JSON: {:?}", message.payload))?;
        ensure!(v["proc"] == "sshd", "not a parsed sshd line: {v}");
    }
    Ok(())
}

/// A version swapped in under load and rolled back: every line once and in order.
#[test]
fn hot_reload() -> Result<()> {
    for name in ["passthrough", "uppercase"] {
        plugin(name);
    }
    let dir = Dir::new()?;
    let printed = run(
        "hot-reload",
        &dir,
        &[("ADMIN_PORT", free_port()?.to_string())],
    )?;
    prints_expected("hot-reload", &printed)
}

/// Lines POSTed over HTTP, answered 200 once written. The script POSTs with curl: without it
/// the test says so and passes (CI installs it).
#[test]
fn http_ingest() -> Result<()> {
    let curl = Command::new("curl").arg("--version").output();
    if !curl.is_ok_and(|out| out.status.success()) {
        eprintln!("SKIPPED: curl is not installed (apt-get install curl): http-ingest not run");
        return Ok(());
    }
    for name in ["sshd-parse", "auth-filter", "redact-ip"] {
        plugin(name);
    }
    let dir = Dir::new()?;
    let printed = run(
        "http-ingest",
        &dir,
        &[("HTTP_PORT", free_port()?.to_string())],
    )?;
    prints_expected("http-ingest", &printed)
}

/// A fixed version shadowed beside the live one, promoted, and the live one's dead letters
/// redriven through it: every line once. Its two Go versions each pass their golden test
/// natively first.
#[test]
fn redrive_and_shadow() -> Result<()> {
    let tc = workspace_root().join(".toolchains");
    if !tc.join("go/bin/go").exists() {
        assert!(
            std::env::var_os("WEIR_REQUIRE_TOOLCHAINS").is_none(),
            "the Go toolchain is missing and WEIR_REQUIRE_TOOLCHAINS is set"
        );
        eprintln!("SKIPPED: the Go toolchain is missing: run sdk/toolchains.sh go");
        return Ok(());
    }
    let root = example("redrive-and-shadow");
    for version in ["label-v1", "label-v2"] {
        let out = Command::new(workspace_root().join("sdk/go/test.sh"))
            .arg(root.join(version))
            .env("WEIR_TOOLCHAINS", &tc)
            .output()?;
        ensure!(
            out.status.success(),
            "the golden test of {version} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    plugin("sshd-parse");
    let dir = Dir::new()?;
    let printed = run(
        "redrive-and-shadow",
        &dir,
        &[("ADMIN_PORT", free_port()?.to_string())],
    )?;
    prints_expected("redrive-and-shadow", &printed)
}
