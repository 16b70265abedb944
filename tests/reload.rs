//! End-to-end tests of hot loading: the `weir` binary runs a pipeline with its admin API on
//! a free loopback port, and the tests swap, refuse, roll back and watch real plugins built
//! from the fixtures while events flow.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use support::{Dir, plugin, sha256_hex, weir};

const TOKEN: &str = "test-token-0123456789";
/// The longest any test waits for one thing to happen.
const PATIENCE: Duration = Duration::from_secs(30);

/// A `weir run` in the background, with its stderr collected and its admin address known.
struct Pipeline {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
    stdin: Option<ChildStdin>,
}

impl Pipeline {
    fn start(file: &Path) -> Result<Pipeline> {
        let mut child = weir()
            .arg("run")
            .arg(file)
            .env_remove("WEIR_ADMIN_TOKEN")
            .env("WEIR_TEST_ADMIN_TOKEN", TOKEN)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let reader = BufReader::new(child.stderr.take().context("stderr")?);
        let collected = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                let mut all = collected.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        let stdin = child.stdin.take();
        let mut pipeline = Pipeline {
            child,
            addr: String::new(),
            stderr,
            stdin,
        };
        let marker = "admin API listening on http://";
        let line = pipeline.wait_for_stderr(marker)?;
        pipeline.addr = line[line.find(marker).unwrap() + marker.len()..]
            .trim()
            .to_string();
        Ok(pipeline)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until a stderr line contains `text`; returns that line.
    fn wait_for_stderr(&mut self, text: &str) -> Result<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.stderr().lines().find(|l| l.contains(text)) {
                return Ok(line.to_string());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("weir exited ({status}) before `{text}`: {}", self.stderr());
            }
            ensure!(
                Instant::now() < deadline,
                "no `{text}` on stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn request(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(PATIENCE))
            .build()
            .into();
        let url = format!("http://{}{path}", self.addr);
        let auth = token.map(|t| format!("Bearer {t}"));
        let sent = match method {
            "GET" => {
                let mut r = agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            "PUT" => {
                let mut r = agent.put(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(body)
            }
            _ => {
                let mut r = agent.post(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(body)
            }
        };
        let mut response = sent.expect("the admin API answers");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn put_plugin(&self, stage: &str, bytes: &[u8]) -> (u16, Value) {
        self.request(
            "PUT",
            &format!("/stages/{stage}/plugin"),
            Some(TOKEN),
            bytes,
        )
    }

    fn stage(&self, name: &str) -> Value {
        let (status, value) = self.request("GET", &format!("/stages/{name}"), Some(TOKEN), b"");
        assert_eq!(status, 200, "{value}");
        value
    }

    fn live_digest(&self, stage: &str) -> String {
        self.stage(stage)["live"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until `check` holds for the stage's state.
    fn wait_for_stage(
        &self,
        stage: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.stage(stage);
            if check(&value) {
                return Ok(value);
            }
            ensure!(
                Instant::now() < deadline,
                "stage `{stage}` never {what}: {value:#}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A `weir` command against this pipeline's admin API.
    fn cli(&self, args: &[&str]) -> Result<Output> {
        Ok(weir()
            .env_remove("WEIR_ADMIN_TOKEN")
            .args(args)
            .args(["--admin", &self.addr])
            .output()?)
    }

    /// Interrupts the run (the source stops, everything drains) and waits for its end.
    fn finish(mut self) -> Result<String> {
        drop(self.stdin.take());
        support::legacy::interrupt(&self.child)?;
        let status = self.child.wait()?;
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(100));
        let stderr = self.stderr();
        ensure!(status.success(), "weir failed ({status}): {stderr}");
        Ok(stderr)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn short(bytes: &[u8]) -> String {
    sha256_hex(bytes)[..12].to_string()
}

/// A generator at full speed numbered by `seq`, then the stage `tag` under test, into a
/// JSON-lines file; the admin API on a free port.
fn generated_pipeline(dir: &Dir, tag_extra: &str) -> Result<PathBuf> {
    dir.write(
        "p.toml",
        &format!(
            r#"
[pipeline]
batch_size = 64

[sources.gen]
type = "generate"
count = 1_000_000_000
size = 4

[stages.seq]
inputs = ["gen"]
plugin = "{seq}"

[stages.tag]
inputs = ["seq"]
plugin = "{a}"
workers = 2
{tag_extra}

[sinks.out]
inputs = ["tag"]
type = "file"
path = "out.jsonl"
encoding = "json"

[dead_letter]
type = "file"
path = "dead.jsonl"

[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"
"#,
            seq = plugin("fixture-seq").display(),
            a = plugin("fixture-tag-a").display(),
        ),
    )
}

/// One output line: its sequence number, its marker, and its `tag` version header.
fn parse_out(line: &str) -> Result<(u64, String, String)> {
    let v: Value = serde_json::from_str(line)?;
    let value = v["value"].as_str().context("value")?;
    let (n, marker) = value.split_once('|').context("no marker")?;
    let headers = v["headers"].as_array().context("headers")?;
    let tags: Vec<&str> = headers
        .iter()
        .filter(|h| h[0] == "weir.version.tag")
        .filter_map(|h| h[1].as_str())
        .collect();
    ensure!(tags.len() == 1, "not exactly one version header: {line}");
    let upstream = headers
        .iter()
        .filter(|h| h[0] == "weir.version.seq")
        .count();
    ensure!(
        upstream == 1,
        "the upstream version header did not follow: {line}"
    );
    Ok((n.parse()?, marker.to_string(), tags[0].to_string()))
}

/// Checks the sink got events 0.. in order, each once, each tagged by one version whose
/// marker and header agree; returns the number of events and of runs of one version.
fn check_out(dir: &Dir, versions: &[(&str, String)], dead: &[u64]) -> Result<(u64, usize)> {
    let text = std::fs::read_to_string(dir.path("out.jsonl"))?;
    let mut next = 0u64;
    let mut dead = dead.iter().copied().peekable();
    let mut runs = 0;
    let mut last = String::new();
    for line in text.lines() {
        let (n, marker, header) = parse_out(line)?;
        while dead.peek() == Some(&next) {
            dead.next();
            next += 1;
        }
        ensure!(n == next, "expected event {next}, got {n}");
        next += 1;
        let Some((_, digest)) = versions.iter().find(|(m, _)| *m == marker) else {
            bail!("unknown marker in {line}");
        };
        ensure!(&header == digest, "marker `{marker}` with header {header}");
        if marker != last {
            runs += 1;
            last = marker;
        }
    }
    ensure!(
        dead.next().is_none(),
        "a dead-lettered event is past the output's end"
    );
    Ok((next, runs))
}

/// Twenty swaps between two versions while the generator runs at full speed: every event
/// reaches the sink once, in order, tagged by exactly one version, and the tags change at
/// each swap.
#[test]
fn twenty_swaps_under_load_lose_nothing_and_tag_each_event_with_one_version() -> Result<()> {
    let dir = Dir::new()?;
    let file = generated_pipeline(&dir, "canary = { events = 0 }")?;
    let a = std::fs::read(plugin("fixture-tag-a"))?;
    let b = std::fs::read(plugin("fixture-tag-b"))?;
    let p = Pipeline::start(&file)?;
    p.wait_for_stage("tag", "served", |s| s["events"].as_u64() > Some(0))?;
    for i in 0..20 {
        let (name, bytes) = if i % 2 == 0 {
            ("fixture-tag-b", &b)
        } else {
            ("fixture-tag-a", &a)
        };
        // Half the swaps through the CLI, half through the API directly.
        if i % 4 < 2 {
            let path = plugin(name);
            let out = p.cli(&[
                "reload",
                "--stage",
                "tag",
                "--plugin",
                path.to_str().unwrap(),
                "--token",
                TOKEN,
            ])?;
            let said = String::from_utf8_lossy(&out.stdout);
            ensure!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            ensure!(said.contains(&short(bytes)), "{said}");
        } else {
            let (status, v) = p.put_plugin("tag", bytes);
            ensure!(status == 200, "{v}");
            ensure!(v["digest"] == sha256_hex(bytes), "{v}");
        }
        // Version 1 is the one loaded at start.
        let id = i as u64 + 2;
        // Each version serves before the next swap, so each leaves a run in the output.
        p.wait_for_stage("tag", "served the new version", |s| {
            s["live"]["id"].as_u64() == Some(id) && s["events"].as_u64() > Some(0)
        })?;
    }
    let stage = p.stage("tag");
    assert_eq!(stage["counters"]["swaps"], 20, "{stage:#}");
    assert_eq!(stage["live"]["digest"], sha256_hex(&a));
    let stderr = p.finish()?;
    let emitted = support::legacy::summary_field(&stderr, "weir: ", " in,").context("summary")?;
    let (events, runs) = check_out(&dir, &[("a", short(&a)), ("b", short(&b))], &[])?;
    assert_eq!(events, emitted, "{stderr}");
    assert_eq!(runs, 21, "one run per version made live");
    assert!(stderr.contains("0 dead-lettered"), "{stderr}");
    Ok(())
}

/// Versions that cannot run are refused with the reason (API and CLI), and the old version
/// keeps serving without losing an event.
#[test]
fn a_broken_version_is_refused_and_the_old_one_keeps_serving() -> Result<()> {
    let dir = Dir::new()?;
    let file = generated_pipeline(&dir, "")?;
    let a = std::fs::read(plugin("fixture-tag-a"))?;
    let p = Pipeline::start(&file)?;
    p.wait_for_stage("tag", "served", |s| s["events"].as_u64() > Some(0))?;

    let broken: [(&str, Vec<u8>, &str); 4] = [
        (
            "traps in init",
            std::fs::read(plugin("fixture-trap-init"))?,
            "init trapped",
        ),
        (
            "another world",
            std::fs::read(plugin("fixture-other-world"))?,
            "does not implement the `stage` world",
        ),
        (
            "not wasm",
            b"#!/bin/sh\necho hello\n".to_vec(),
            "not a WebAssembly file",
        ),
        (
            "a core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "a core WebAssembly module, not a component",
        ),
    ];
    for (what, bytes, reason) in &broken {
        let (status, v) = p.put_plugin("tag", bytes);
        assert_eq!(status, 422, "{what}: {v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{what}: {error}");
    }
    // The CLI says why and exits 2.
    let out = p.cli(&[
        "reload",
        "--stage",
        "tag",
        "--plugin",
        plugin("fixture-trap-init").to_str().unwrap(),
        "--token",
        TOKEN,
    ])?;
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("weir: error:") && said.contains("init trapped") && said.contains("HTTP 422"),
        "{said}"
    );

    let stage = p.stage("tag");
    assert_eq!(stage["counters"]["refused"], 5, "{stage:#}");
    assert_eq!(stage["counters"]["swaps"], 0);
    assert_eq!(stage["generation"], 0, "nothing was swapped in");
    assert_eq!(stage["live"]["digest"], sha256_hex(&a));
    let before = stage["events"].as_u64().unwrap();
    p.wait_for_stage("tag", "kept serving", |s| {
        s["events"].as_u64() > Some(before)
    })?;
    let stderr = p.finish()?;
    assert!(
        stderr.contains("refused, the old version keeps serving"),
        "{stderr}"
    );
    let emitted = support::legacy::summary_field(&stderr, "weir: ", " in,").context("summary")?;
    let (events, _) = check_out(&dir, &[("a", short(&a))], &[])?;
    assert_eq!(events, emitted);
    Ok(())
}

/// A version that fails every event is rolled back by the canary guard; every event is
/// written once, either by a good version or as a dead letter of the bad one.
#[test]
fn a_version_that_fails_every_event_is_rolled_back_by_the_canary() -> Result<()> {
    let dir = Dir::new()?;
    let file = generated_pipeline(&dir, "canary = { events = 500, max_failure_rate = 0.2 }")?;
    let a = std::fs::read(plugin("fixture-tag-a"))?;
    let bad = std::fs::read(plugin("fixture-fail-all"))?;
    let p = Pipeline::start(&file)?;
    p.wait_for_stage("tag", "served", |s| s["events"].as_u64() > Some(0))?;
    let (status, v) = p.put_plugin("tag", &bad);
    assert_eq!(status, 200, "{v}");
    let stage = p.wait_for_stage("tag", "rolled back", |s| {
        s["canary"]["state"] == "rolled-back"
    })?;
    assert_eq!(stage["live"]["digest"], sha256_hex(&a), "{stage:#}");
    assert_eq!(stage["counters"]["canary_rollbacks"], 1);
    let bad_version = stage["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["digest"] == sha256_hex(&bad))
        .unwrap();
    assert_eq!(bad_version["state"], "rolled-back");
    assert!(
        bad_version["rolled_back"]
            .as_str()
            .unwrap()
            .contains("canary")
    );
    let before = p.stage("tag")["events"].as_u64().unwrap();
    p.wait_for_stage("tag", "served again", |s| {
        s["events"].as_u64() > Some(before)
    })?;
    let stderr = p.finish()?;
    assert!(
        stderr.contains("canary:") && stderr.contains("rolled back to version 1"),
        "{stderr}"
    );

    let mut dead = Vec::new();
    for line in std::fs::read_to_string(dir.path("dead.jsonl"))?.lines() {
        let letter: Value = serde_json::from_str(line)?;
        assert_eq!(letter["plugin_digest"], sha256_hex(&bad));
        dead.push(letter["event"]["value"].as_str().unwrap().parse::<u64>()?);
    }
    assert!(!dead.is_empty());
    assert!(
        dead.len() < 5_000,
        "{} events failed before the rollback",
        dead.len()
    );
    let emitted = support::legacy::summary_field(&stderr, "weir: ", " in,").context("summary")?;
    let (events, _) = check_out(&dir, &[("a", short(&a))], &dead)?;
    assert_eq!(events, emitted);
    Ok(())
}

/// A pipeline fed through stdin, with `tag` watching its plugin file in a folder of its own.
fn stdin_pipeline(dir: &Dir, watch: bool) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir.path("plugins"))?;
    let tag = dir.path("plugins/tag.wasm");
    std::fs::copy(plugin("fixture-tag-a"), &tag)?;
    let file = dir.write(
        "p.toml",
        &format!(
            r#"
[pipeline]
linger = "1ms"

[sources.in]
type = "stdin"

[stages.seq]
inputs = ["in"]
plugin = "{seq}"

[stages.tag]
inputs = ["seq"]
plugin = "plugins/tag.wasm"
watch = {watch}

[sinks.out]
inputs = ["tag"]
type = "file"
path = "out.jsonl"
encoding = "json"

[admin]
listen = "127.0.0.1:0"
token_env = "WEIR_TEST_ADMIN_TOKEN"
"#,
            seq = plugin("fixture-seq").display(),
        ),
    )?;
    Ok((file, tag))
}

/// Requests without the token, or with a wrong one, get 401 and change nothing; the CLI
/// reports the server's refusal. With the token, a rollback and a settings change work.
#[test]
fn without_the_token_nothing_changes() -> Result<()> {
    let dir = Dir::new()?;
    let (file, _) = stdin_pipeline(&dir, false)?;
    let a = std::fs::read(plugin("fixture-tag-a"))?;
    let b = std::fs::read(plugin("fixture-tag-b"))?;
    let mut p = Pipeline::start(&file)?;
    for token in [None, Some("wrong-token-0123456789"), Some("")] {
        for (method, path, body) in [
            ("PUT", "/stages/tag/plugin", b.as_slice()),
            (
                "PUT",
                "/stages/seq/settings",
                br#"{"prefix": "x"}"#.as_slice(),
            ),
            ("POST", "/stages/tag/rollback", b"".as_slice()),
            ("GET", "/stages", b"".as_slice()),
        ] {
            let (status, v) = p.request(method, path, token, body);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {v}");
        }
    }
    let out = p.cli(&[
        "reload",
        "--stage",
        "tag",
        "--plugin",
        plugin("fixture-tag-b").to_str().unwrap(),
        "--token",
        "wrong-token-0123456789",
    ])?;
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("a valid bearer token is required (HTTP 401)"),
        "{said}"
    );
    let stage = p.stage("tag");
    assert_eq!(stage["generation"], 0, "{stage:#}");
    assert_eq!(stage["live"]["digest"], sha256_hex(&a));
    assert_eq!(p.stage("seq")["generation"], 0);

    // With the token: a swap, a rollback through the CLI, and nothing left to roll back.
    let (status, v) = p.put_plugin("tag", &b);
    assert_eq!(status, 200, "{v}");
    let out = p.cli(&["rollback", "--stage", "tag", "--token", TOKEN])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(p.live_digest("tag"), sha256_hex(&a));
    let out = p.cli(&["rollback", "--stage", "tag", "--token", TOKEN])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no earlier version"));

    // A settings change: the same plugin on new instances.
    let seq_digest = p.live_digest("seq");
    let stdin = p.stdin.as_mut().context("stdin")?;
    stdin.write_all(b"x\ny\n")?;
    stdin.flush()?;
    p.wait_for_stage("seq", "saw two events", |s| {
        s["events_total"].as_u64() == Some(2)
    })?;
    let out = p.cli(&[
        "reload", "--stage", "seq", "--set", "prefix=1", "--token", TOKEN,
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stage = p.stage("seq");
    assert_eq!(stage["live"]["digest"], seq_digest.as_str());
    assert_eq!(stage["live"]["origin"], "settings");
    assert_eq!(stage["live"]["settings"]["prefix"], "1");
    let stdin = p.stdin.as_mut().context("stdin")?;
    stdin.write_all(b"z\n")?;
    stdin.flush()?;
    p.wait_for_stage("seq", "saw the third event", |s| {
        s["events_total"].as_u64() == Some(3)
    })?;

    // `weir plugin inspect` names the stage a file is live in.
    let out = p.cli(&[
        "plugin",
        "inspect",
        plugin("fixture-tag-a").to_str().unwrap(),
        "--token",
        TOKEN,
    ])?;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("stage `tag`: live"), "{said}");
    p.finish()?;
    let values: Vec<String> = std::fs::read_to_string(dir.path("out.jsonl"))?
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["value"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(values, ["0|a", "1|a", "10|a"]);
    Ok(())
}

/// Replacing the watched plugin file (write elsewhere then rename; then overwrite in place,
/// in two writes) reloads it exactly once each time; our own reads do not trigger reloads.
#[test]
fn a_watched_file_reloads_once_per_replacement() -> Result<()> {
    let dir = Dir::new()?;
    let (file, tag) = stdin_pipeline(&dir, true)?;
    let a = std::fs::read(plugin("fixture-tag-a"))?;
    let b = std::fs::read(plugin("fixture-tag-b"))?;
    let mut p = Pipeline::start(&file)?;

    let staged = dir.path("plugins/.tag.wasm.tmp");
    std::fs::write(&staged, &b)?;
    std::fs::rename(&staged, &tag)?;
    p.wait_for_stage("tag", "loaded b", |s| s["live"]["digest"] == sha256_hex(&b))?;
    // Long enough for any stray event (our own read of the file among them) to settle.
    std::thread::sleep(Duration::from_millis(1000));
    let stage = p.stage("tag");
    assert_eq!(stage["counters"]["swaps"], 1, "{stage:#}");
    assert_eq!(stage["live"]["origin"], "file");
    let stdin = p.stdin.as_mut().context("stdin")?;
    stdin.write_all(b"x\n")?;
    stdin.flush()?;
    p.wait_for_stage("tag", "saw an event", |s| {
        s["events_total"].as_u64() == Some(1)
    })?;

    // In place, in two steps: the debounce must not load the half-written file.
    {
        let mut f = std::fs::File::create(&tag)?;
        f.write_all(&a[..a.len() / 2])?;
        f.flush()?;
        std::thread::sleep(Duration::from_millis(50));
        f.write_all(&a[a.len() / 2..])?;
    }
    p.wait_for_stage("tag", "loaded a", |s| s["live"]["digest"] == sha256_hex(&a))?;
    std::thread::sleep(Duration::from_millis(1000));
    let stage = p.stage("tag");
    assert_eq!(stage["counters"]["swaps"], 2, "{stage:#}");
    assert_eq!(stage["counters"]["refused"], 0, "a partial file was loaded");
    let stdin = p.stdin.as_mut().context("stdin")?;
    stdin.write_all(b"y\n")?;
    stdin.flush()?;
    p.wait_for_stage("tag", "saw an event", |s| {
        s["events_total"].as_u64() == Some(2)
    })?;
    let stderr = p.finish()?;
    assert_eq!(stderr.matches("reloaded").count(), 2, "{stderr}");
    let lines: Vec<(u64, String, String)> = std::fs::read_to_string(dir.path("out.jsonl"))?
        .lines()
        .map(|l| parse_out(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            (0, "b".to_string(), short(&b)),
            (1, "a".to_string(), short(&a))
        ]
    );
    Ok(())
}

/// Appends a custom section to a component: the same code under a new digest, which the
/// host has never compiled.
fn with_custom_section(bytes: &[u8], n: u32) -> Vec<u8> {
    let name = b"weir-bench";
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

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Swap latency (trigger to serving) and throughput with and without swaps, in one run.
/// A measurement, not a check: `cargo test --release --test reload -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn bench_swap_latency_and_throughput() -> Result<()> {
    let dir = Dir::new()?;
    let file = dir.write(
        "p.toml",
        &format!(
            r#"
[sources.gen]
type = "generate"
count = 1_000_000_000
size = 100

[stages.tag]
inputs = ["gen"]
plugin = "{a}"
canary = {{ events = 0 }}

[sinks.out]
inputs = ["tag"]
type = "null"

[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"
"#,
            a = plugin("fixture-tag-a").display(),
        ),
    )?;
    let a = std::fs::read(plugin("fixture-tag-a"))?;
    let b = std::fs::read(plugin("fixture-tag-b"))?;
    let p = Pipeline::start(&file)?;
    p.wait_for_stage("tag", "served", |s| s["events"].as_u64() > Some(0))?;
    std::thread::sleep(Duration::from_secs(1));
    let total = || p.stage("tag")["events_total"].as_u64().unwrap();
    let window = Duration::from_secs(3);

    let quiet = |label: &str| {
        let (n0, t0) = (total(), Instant::now());
        std::thread::sleep(window);
        let rate = (total() - n0) as f64 / t0.elapsed().as_secs_f64();
        println!("{label}: {rate:.0} events/s");
        rate
    };
    // One swap: the request, then the host's own figures once the version served.
    let swap = |bytes: &[u8], id: u64| -> Result<(f64, f64, f64)> {
        let sent = Instant::now();
        let (status, v) = p.put_plugin("tag", bytes);
        ensure!(status == 200, "{v}");
        let answered = sent.elapsed().as_secs_f64() * 1e3;
        let s = p.wait_for_stage("tag", "served", |s| {
            s["live"]["id"].as_u64() == Some(id) && s["live"]["serving_ms"].is_number()
        })?;
        Ok((
            answered,
            s["live"]["ready_ms"].as_f64().unwrap(),
            s["live"]["serving_ms"].as_f64().unwrap(),
        ))
    };

    let before = quiet("without swaps (before)");
    let mut id = 1;
    let (mut ready, mut serving, mut answered) = (Vec::new(), Vec::new(), Vec::new());
    let (n0, t0) = (total(), Instant::now());
    let mut swaps = 0;
    while t0.elapsed() < window {
        id += 1;
        let (rtt, r, s) = swap(if id % 2 == 0 { &b } else { &a }, id)?;
        answered.push(rtt);
        ready.push(r);
        serving.push(s);
        swaps += 1;
    }
    let during = (total() - n0) as f64 / t0.elapsed().as_secs_f64();
    println!("during {swaps} swaps back to back: {during:.0} events/s");
    let middle = quiet("without swaps (between)");
    // The load of the acceptance test: 20 swaps, one every 150 ms.
    let (n0, t0) = (total(), Instant::now());
    for k in 0..20u32 {
        id += 1;
        let (rtt, r, s) = swap(if id % 2 == 0 { &b } else { &a }, id)?;
        answered.push(rtt);
        ready.push(r);
        serving.push(s);
        let next = Duration::from_millis(150) * (k + 1);
        if let Some(wait) = next.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let paced = (total() - n0) as f64 / t0.elapsed().as_secs_f64();
    println!("during 20 swaps, one every 150 ms: {paced:.0} events/s");
    let after = quiet("without swaps (after)");

    let (mut c_ready, mut c_serving, mut c_answered) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..7 {
        id += 1;
        let (rtt, r, s) = swap(&with_custom_section(&b, n), id)?;
        c_answered.push(rtt);
        c_ready.push(r);
        c_serving.push(s);
    }
    p.finish()?;
    println!(
        "cached version ({} swaps): median request {:.2} ms, trigger->swapped {:.2} ms, trigger->serving {:.2} ms",
        ready.len(),
        median(&mut answered),
        median(&mut ready),
        median(&mut serving)
    );
    println!(
        "new version, compiled ({} swaps): median request {:.2} ms, trigger->swapped {:.2} ms, trigger->serving {:.2} ms",
        c_ready.len(),
        median(&mut c_answered),
        median(&mut c_ready),
        median(&mut c_serving)
    );
    let without = (before + middle + after) / 3.0;
    println!(
        "throughput / without swaps: {:.3} back to back, {:.3} at one swap per 150 ms",
        during / without,
        paced / without
    );
    Ok(())
}
