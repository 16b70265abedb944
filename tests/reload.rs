//! End-to-end tests of hot loading: the `weir` binary runs a pipeline fed through stdin with
//! its admin API on a free loopback port, and the tests swap, refuse, roll back and watch real
//! plugins built from the fixtures while events flow. Every run ends when its input does, with
//! the report of `weir run --report json`.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use support::{
    Dir, JsonEvent, PATIENCE, PipelineFile, Ran, Running, Sink, Source, Stage, Stdin, dead_letters,
    json_events, plugin, sha256_hex, short_digest, wait_until, with_custom_section,
};
use weir::control::MAX_KEPT_VERSIONS;

const TOKEN: &str = "test-token-0123456789";

/// A `weir run` in the background with its admin API's address known.
struct Live {
    running: Running,
    addr: String,
    /// Set to stop the feeder of a [`Live::fed`] run: its input then ends.
    stop_feeding: Arc<AtomicBool>,
}

impl Live {
    /// Starts the pipeline with stdin a pipe the test writes.
    fn start(dir: &Dir, file: &Path) -> Result<Live> {
        Live::start_with(dir, file, Stdin::Piped, Arc::new(AtomicBool::new(false)))
    }

    /// Starts the pipeline with stdin fed numbered lines, 64 every millisecond at most,
    /// until [`Live::finish`]: events flow all along, and the run's size stays bounded.
    fn fed(dir: &Dir, file: &Path) -> Result<Live> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let feed: support::Feeder = Box::new(move |mut stdin| {
            let mut n = 0u64;
            // At most 2 million lines, should the test never say stop.
            while !stopped.load(Ordering::Relaxed) && n < 2_000_000 {
                let chunk: String = (n..n + 64).map(|i| format!("{i}\n")).collect();
                stdin.write_all(chunk.as_bytes())?;
                n += 64;
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        });
        Live::start_with(dir, file, Stdin::Feed(feed), stop)
    }

    fn start_with(
        dir: &Dir,
        file: &Path,
        stdin: Stdin,
        stop_feeding: Arc<AtomicBool>,
    ) -> Result<Live> {
        let mut cmd = dir.weir();
        cmd.env("WEIR_TEST_ADMIN_TOKEN", TOKEN)
            .args(["run", "--report", "json"])
            .arg(file);
        let mut running = Running::start(cmd, stdin)?;
        let marker = "admin API listening on http://";
        let line = running.wait_for_stderr(marker)?;
        let addr = line[line.find(marker).context("marker")? + marker.len()..]
            .trim()
            .to_string();
        Ok(Live {
            running,
            addr,
            stop_feeding,
        })
    }

    /// Writes lines to the pipeline's stdin.
    fn send(&mut self, lines: &[&str]) -> Result<()> {
        let stdin = self.running.stdin();
        for line in lines {
            writeln!(stdin, "{line}")?;
        }
        stdin.flush()?;
        Ok(())
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

    /// A PUT of `len` bytes (a component header, then zeros) over a plain TCP connection,
    /// returning the answer's status. The body is written on a thread of its own that stops
    /// at the first error: a server that refuses a body by its size may answer and close
    /// before reading it all, which makes an ordinary client fail on a broken pipe before it
    /// reads the answer.
    fn put_sized(&self, path: &str, len: usize) -> Result<u16> {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(&self.addr)?;
        stream.set_read_timeout(Some(PATIENCE))?;
        write!(
            stream,
            "PUT {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: {len}\r\nConnection: close\r\n\r\n",
            self.addr
        )?;
        let mut body = stream.try_clone()?;
        let writer = std::thread::spawn(move || {
            let mut chunk = vec![0u8; 64 << 10];
            chunk[..8].copy_from_slice(b"\0asm\x0d\0\x01\0");
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len());
                if body.write_all(&chunk[..n]).is_err() {
                    return;
                }
                chunk[..8].fill(0);
                left -= n;
            }
        });
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // Up to the end of the answer's status line; a reset after it does not matter.
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if answer.is_empty() => return Err(e.into()),
                Err(_) => break,
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
        writer.join().expect("the body writer");
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .with_context(|| format!("not an HTTP answer: {text}"))?;
        Ok(status.parse()?)
    }

    fn put_plugin(&self, stage: &str, bytes: &[u8]) -> (u16, Value) {
        self.request(
            "PUT",
            &format!("/stages/{stage}/plugin"),
            Some(TOKEN),
            bytes,
        )
    }

    fn put_settings(&self, stage: &str, body: &[u8]) -> (u16, Value) {
        self.request(
            "PUT",
            &format!("/stages/{stage}/settings"),
            Some(TOKEN),
            body,
        )
    }

    fn rollback(&self, stage: &str) -> (u16, Value) {
        self.request(
            "POST",
            &format!("/stages/{stage}/rollback"),
            Some(TOKEN),
            b"",
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

    /// Waits until `check` holds for the stage's state; returns that state.
    fn wait_for_stage(
        &self,
        stage: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        wait_until(
            &format!("stage `{stage}` to have {what}"),
            || {
                let value = self.stage(stage);
                Ok(check(&value).then_some(value))
            },
            || format!("{:#}", self.stage(stage)),
        )
    }

    /// Waits until the stage has taken `n` events since the start, retries included.
    fn wait_for_events(&self, stage: &str, n: u64) -> Result<Value> {
        self.wait_for_stage(stage, &format!("taken {n} events"), |s| {
            s["events_total"].as_u64() >= Some(n)
        })
    }

    /// A `weir` command against this pipeline's admin API.
    fn cli(&self, args: &[&str]) -> Result<Output> {
        Ok(support::weir()
            .args(args)
            .args(["--admin", &self.addr])
            .output()?)
    }

    /// Ends the input (the feeder stops, or stdin closes) and waits for the run's end.
    fn finish(mut self) -> Result<Ran> {
        self.stop_feeding.store(true, Ordering::Relaxed);
        self.running.close_stdin();
        let ran = self.running.finish(PATIENCE)?;
        ensure!(ran.code() == 0, "weir failed: {}", ran.stderr());
        Ok(ran)
    }
}

/// One output line of `seq -> tag`: its sequence number, its marker, its `tag` version.
fn parse_out(event: &JsonEvent) -> Result<(u64, String, String)> {
    let (n, marker) = event.value().split_once('|').context("no marker")?;
    // The upstream stage's version travels around `tag`, untouched.
    event.version_of("seq");
    Ok((n.parse()?, marker.to_string(), event.version_of("tag")))
}

/// Checks the sink got events 0.. in order, each once but the dead-lettered ones, each
/// tagged by one version whose marker and header agree; returns the number of events and of
/// runs of one version.
fn check_out(dir: &Dir, versions: &[(&str, String)], dead: &[u64]) -> Result<(u64, usize)> {
    let mut next = 0u64;
    let mut dead = dead.iter().copied().peekable();
    let mut runs = 0;
    let mut last = String::new();
    for event in json_events(&dir.path("out.jsonl"))? {
        let (n, marker, header) = parse_out(&event)?;
        while dead.peek() == Some(&next) {
            dead.next();
            next += 1;
        }
        ensure!(n == next, "expected event {next}, got {n}");
        next += 1;
        let Some((_, digest)) = versions.iter().find(|(m, _)| *m == marker) else {
            bail!("unknown marker in {event:?}");
        };
        ensure!(&header == digest, "marker `{marker}` with header {header}");
        if marker != last {
            runs += 1;
            last = marker;
        }
    }
    next += dead.count() as u64;
    Ok((next, runs))
}

/// Numbered lines through `seq`, then the stage `tag` under test (two workers) into a
/// JSON-lines file; the admin API on a free port.
fn tagged(tag: Stage) -> PipelineFile {
    PipelineFile::new()
        .batch_size(64)
        .linger("1ms")
        .source("in", Source::stdin())
        .stage(
            "seq",
            // One worker: the fixture numbers the lines in its own memory.
            Stage::plugin(plugin("fixture-seq"))
                .inputs(&["in"])
                .workers(1),
        )
        .stage("tag", tag.inputs(&["seq"]).workers(2))
        .sink("out", Sink::file("out.jsonl").json().inputs(&["tag"]))
        .dead_letters("dead.jsonl")
        .admin_token(TOKEN)
}

/// Twenty swaps between two versions while events flow: every event reaches the sink once,
/// in order, tagged by exactly one version, and each version leaves a run of events. (With
/// two workers a batch taken just before the swap may start just after it, on the new
/// version, while the next batch started on the old one: around a swap the tags of two
/// neighbouring batches may alternate, so there may be more runs than versions.)
#[test]
fn twenty_swaps_under_load_lose_nothing_and_tag_each_event_with_one_version() -> Result<()> {
    let dir = Dir::new()?;
    let file = tagged(Stage::plugin(plugin("fixture-tag-a")).canary(0, 0.5)).write(&dir)?;
    let a = std::fs::read(plugin("fixture-tag-a"))?;
    let b = std::fs::read(plugin("fixture-tag-b"))?;
    let p = Live::fed(&dir, &file)?;
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
                path.to_str().context("path")?,
                "--token",
                TOKEN,
            ])?;
            let said = String::from_utf8_lossy(&out.stdout);
            ensure!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            ensure!(said.contains(&short_digest(bytes)), "{said}");
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
    let ran = p.finish()?;
    let report = ran.report();
    let (events, runs) = check_out(
        &dir,
        &[("a", short_digest(&a)), ("b", short_digest(&b))],
        &[],
    )?;
    assert_eq!(events, report.events_in);
    assert!(
        runs >= 21,
        "{runs} runs: a version made live served nothing"
    );
    assert_eq!(report.dead_lettered, 0);
    Ok(())
}

/// Versions that cannot run are refused with the reason (API and CLI), and the old version
/// keeps serving without losing an event.
#[test]
fn a_broken_version_is_refused_and_the_old_one_keeps_serving() -> Result<()> {
    let dir = Dir::new()?;
    let file = tagged(Stage::plugin(plugin("fixture-tag-a"))).write(&dir)?;
    let a = std::fs::read(plugin("fixture-tag-a"))?;
    let p = Live::fed(&dir, &file)?;
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
        plugin("fixture-trap-init").to_str().context("path")?,
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
    let before = stage["events"].as_u64().context("events")?;
    p.wait_for_stage("tag", "kept serving", |s| {
        s["events"].as_u64() > Some(before)
    })?;
    let ran = p.finish()?;
    assert!(
        ran.stderr()
            .contains("refused, the old version keeps serving"),
        "{}",
        ran.stderr()
    );
    let (events, _) = check_out(&dir, &[("a", short_digest(&a))], &[])?;
    assert_eq!(events, ran.report().events_in);
    Ok(())
}

/// A version that fails every event is rolled back by the canary guard as soon as its
/// failures pass what its settings allow: with `events = 500, max_failure_rate = 0.2`, 100
/// failures are allowed and the 101st rolls it back. The events come one per batch, each
/// only once the last was taken, so the bad version sees no event after its verdict: it
/// fails exactly 101. Every event is written once, by the good version or as a dead letter.
#[test]
fn a_version_that_fails_every_event_is_rolled_back_at_its_101st_failure() -> Result<()> {
    let dir = Dir::new()?;
    let file = tagged(Stage::plugin(plugin("fixture-tag-a")).canary(500, 0.2))
        .source("in", Source::stdin().batch_size(1))
        .write(&dir)?;
    let a = std::fs::read(plugin("fixture-tag-a"))?;
    let bad = std::fs::read(plugin("fixture-fail-all"))?;
    let mut p = Live::start(&dir, &file)?;
    let mut sent = 0u64;
    for _ in 0..10 {
        p.send(&["x"])?;
        sent += 1;
    }
    p.wait_for_events("tag", sent)?;
    let (status, v) = p.put_plugin("tag", &bad);
    assert_eq!(status, 200, "{v}");
    loop {
        ensure!(sent < 1000, "the bad version was never rolled back");
        p.send(&["x"])?;
        sent += 1;
        let stage = p.wait_for_events("tag", sent)?;
        if stage["canary"]["state"] == "rolled-back" {
            break;
        }
        if stage["failed"].as_u64() > Some(100) {
            p.wait_for_stage("tag", "rolled back", |s| {
                s["canary"]["state"] == "rolled-back"
            })?;
            break;
        }
    }
    let stage = p.stage("tag");
    assert_eq!(stage["live"]["digest"], sha256_hex(&a), "{stage:#}");
    assert_eq!(stage["counters"]["canary_rollbacks"], 1);
    let versions = stage["versions"].as_array().context("versions")?;
    let bad_version = versions
        .iter()
        .find(|v| v["digest"] == sha256_hex(&bad))
        .context("the bad version is kept")?;
    assert_eq!(bad_version["state"], "rolled-back");
    assert!(
        bad_version["rolled_back"]
            .as_str()
            .unwrap_or_default()
            .contains("canary: 101 of its first 101 events failed"),
        "{bad_version:#}"
    );
    for _ in 0..10 {
        p.send(&["x"])?;
        sent += 1;
    }
    p.wait_for_events("tag", sent)?;
    let ran = p.finish()?;
    assert!(
        ran.stderr().contains(
            "canary: 101 of its first 101 events failed (more than 20 %): rolled back to version 1"
        ),
        "{}",
        ran.stderr()
    );
    let letters = dead_letters(&dir.path("dead.jsonl"))?;
    assert_eq!(
        letters.len(),
        101,
        "the bad version failed more than it was allowed"
    );
    let mut dead = Vec::new();
    for (i, letter) in letters.iter().enumerate() {
        assert_eq!(letter.plugin_digest, sha256_hex(&bad));
        assert!(
            letter.kind == "reject" || letter.kind == "breaker-open",
            "letter {i}: {letter:?}"
        );
        dead.push(letter.value().parse::<u64>()?);
    }
    // Two workers write their dead letters each on its own: sorted, they are events 10 to 110.
    dead.sort_unstable();
    assert_eq!(dead, (10..111).collect::<Vec<u64>>());
    let (events, _) = check_out(&dir, &[("a", short_digest(&a))], &dead)?;
    assert_eq!(events, sent);
    assert_eq!(ran.report().events_in, sent);
    Ok(())
}

/// An event whose retries began on one version finishes on it, even when another version
/// went live meanwhile: its output carries the first version's header, the events after the
/// swap the second's, and no event carries two. The `flaky` event passes at its eighth
/// sighting, after 10 + 20 + ... + 640 ms of backoff (at least 0.6 s with the jitter), so
/// the swap lands while it waits.
#[test]
fn a_retried_event_finishes_on_the_version_that_started_it() -> Result<()> {
    let dir = Dir::new()?;
    let a = std::fs::read(plugin("fixture-flaky"))?;
    // Version B: the same code under another digest, compiled ahead into the warm cache.
    let b = with_custom_section(&a, 1);
    let b_file = dir.write_bytes("flaky-b.wasm", &b)?;
    support::warm(&b_file)?;
    let file = PipelineFile::new()
        .linger("1ms")
        .source("in", Source::stdin())
        .stage(
            "flaky",
            // One worker: the fixture counts an event's sightings in its own memory.
            Stage::plugin(plugin("fixture-flaky"))
                .inputs(&["in"])
                .setting("attempts", 8)
                .retries(10)
                .workers(1),
        )
        .sink("out", Sink::file("out.jsonl").json().inputs(&["flaky"]))
        .dead_letters("dead.jsonl")
        .admin_token(TOKEN)
        .write(&dir)?;
    let mut p = Live::start(&dir, &file)?;
    p.send(&["flaky-x"])?;
    p.wait_for_events("flaky", 1)?;
    let (status, v) = p.put_plugin("flaky", &b);
    assert_eq!(status, 200, "{v}");
    let out = dir.path("out.jsonl");
    ensure!(
        support::count_lines(&out) == 0,
        "the retried event finished before the swap: the test shows nothing"
    );
    let written = |n: u64| {
        wait_until(
            &format!("{n} events written"),
            || Ok((support::count_lines(&out) >= n).then_some(())),
            String::new,
        )
    };
    written(1)?;
    p.send(&["after the swap"])?;
    written(2)?;
    let ran = p.finish()?;
    let events = json_events(&out)?;
    let values: Vec<&str> = events.iter().map(JsonEvent::value).collect();
    assert_eq!(values, ["flaky-x", "after the swap"]);
    assert_eq!(events[0].version_of("flaky"), short_digest(&a));
    assert_eq!(events[1].version_of("flaky"), short_digest(&b));
    let flaky = ran.report().node("flaky");
    assert_eq!(flaky.retries, 7);
    assert!(dead_letters(&dir.path("dead.jsonl"))?.is_empty());
    Ok(())
}

/// A pipeline fed through stdin, `seq` then `tag`, with `tag` watching its plugin file in a
/// folder of its own; the admin token comes from the environment.
fn stdin_pipeline(dir: &Dir, watch: bool) -> Result<(PathBuf, PathBuf)> {
    let tag = dir.path("plugins/tag.wasm");
    std::fs::create_dir_all(dir.path("plugins"))?;
    std::fs::copy(plugin("fixture-tag-a"), &tag)?;
    let mut stage = Stage::plugin("plugins/tag.wasm").inputs(&["seq"]);
    if watch {
        stage = stage.watch();
    }
    let file = PipelineFile::new()
        .linger("1ms")
        .source("in", Source::stdin())
        .stage(
            "seq",
            // One worker: the fixture numbers the lines in its own memory.
            Stage::plugin(plugin("fixture-seq"))
                .inputs(&["in"])
                .workers(1),
        )
        .stage("tag", stage)
        .sink("out", Sink::file("out.jsonl").json().inputs(&["tag"]))
        .admin_token_env("WEIR_TEST_ADMIN_TOKEN")
        .write(dir)?;
    Ok((file, tag))
}

/// The values the sink wrote.
fn values(dir: &Dir) -> Result<Vec<String>> {
    Ok(json_events(&dir.path("out.jsonl"))?
        .iter()
        .map(|e| e.value().to_string())
        .collect())
}

/// Requests without the token, or with a wrong one, get 401 and change nothing; the CLI
/// reports the server's refusal. With the token, a rollback and a settings change work.
#[test]
fn without_the_token_nothing_changes() -> Result<()> {
    let dir = Dir::new()?;
    let (file, _) = stdin_pipeline(&dir, false)?;
    let a = std::fs::read(plugin("fixture-tag-a"))?;
    let b = std::fs::read(plugin("fixture-tag-b"))?;
    let mut p = Live::start(&dir, &file)?;
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
        plugin("fixture-tag-b").to_str().context("path")?,
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
    p.send(&["x", "y"])?;
    p.wait_for_events("seq", 2)?;
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
    p.send(&["z"])?;
    p.wait_for_events("seq", 3)?;

    // `weir plugin inspect` names the stage a file is live in.
    let out = p.cli(&[
        "plugin",
        "inspect",
        plugin("fixture-tag-a").to_str().context("path")?,
        "--token",
        TOKEN,
    ])?;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("stage `tag`: live"), "{said}");
    p.finish()?;
    assert_eq!(values(&dir)?, ["0|a", "1|a", "10|a"]);
    Ok(())
}

/// The admin API's error answers, each `{"error": ...}` and none changing anything: 404 for
/// a stage that does not exist, 400 for settings that are not a JSON object of scalars or
/// that the plugin does not declare, 413 for a body over the route's cap (64 KiB of
/// settings, a plugin's 64 MiB and a little more), and 422 for an upload within the body cap
/// but over the plugin size limit.
#[test]
fn the_admin_api_answers_404_400_413_and_422_and_changes_nothing() -> Result<()> {
    use weir::sandbox::MAX_PLUGIN_SIZE;

    let dir = Dir::new()?;
    let (file, _) = stdin_pipeline(&dir, false)?;
    let a = std::fs::read(plugin("fixture-tag-a"))?;
    let b = std::fs::read(plugin("fixture-tag-b"))?;
    let mut p = Live::start(&dir, &file)?;
    let error = |v: &Value| v["error"].as_str().unwrap_or_default().to_string();

    for (method, path, body) in [
        ("GET", "/stages/nope", b"".as_slice()),
        ("PUT", "/stages/nope/plugin", b.as_slice()),
        (
            "PUT",
            "/stages/nope/settings",
            br#"{"prefix": "x"}"#.as_slice(),
        ),
        ("POST", "/stages/nope/rollback", b"".as_slice()),
    ] {
        let (status, v) = p.request(method, path, Some(TOKEN), body);
        assert_eq!(status, 404, "{method} {path}: {v}");
        assert_eq!(error(&v), "no stage is named `nope`", "{method} {path}");
    }

    for (body, says) in [
        (b"prefix=x".as_slice(), "not JSON"),
        (b"[]".as_slice(), "must be a JSON object of settings"),
        (
            br#"{"prefix": [1]}"#.as_slice(),
            "a setting must be a string, number or boolean",
        ),
        (
            br#"{"prefx": "x"}"#.as_slice(),
            "the plugin does not declare a setting `prefx`; did you mean `prefix`?",
        ),
    ] {
        let (status, v) = p.put_settings("seq", body);
        assert_eq!(status, 400, "{}: {v}", String::from_utf8_lossy(body));
        assert!(error(&v).contains(says), "{v}");
    }

    let status = p.put_sized("/stages/seq/settings", (64 << 10) + 1)?;
    assert_eq!(status, 413, "settings over 64 KiB");

    // A component header, then zeros to the size wanted.
    let upload = |size: u64| {
        let mut bytes = vec![0u8; size as usize];
        bytes[..8].copy_from_slice(b"\0asm\x0d\0\x01\0");
        bytes
    };
    let (status, v) = p.put_plugin("tag", &upload(MAX_PLUGIN_SIZE + 1));
    assert_eq!(status, 422, "{v}");
    assert!(
        error(&v).contains(&format!(
            "{} bytes is over the {MAX_PLUGIN_SIZE}-byte limit",
            MAX_PLUGIN_SIZE + 1
        )),
        "{v}"
    );
    let status = p.put_sized("/stages/tag/plugin", (MAX_PLUGIN_SIZE + (1 << 20)) as usize)?;
    assert_eq!(status, 413, "an upload far over the plugin size limit");

    let tag = p.stage("tag");
    assert_eq!(tag["generation"], 0, "{tag:#}");
    assert_eq!(tag["live"]["digest"], sha256_hex(&a));
    assert_eq!(tag["counters"]["refused"], 1, "the 422 counts as refused");
    let seq = p.stage("seq");
    assert_eq!(seq["generation"], 0, "{seq:#}");
    assert_eq!(
        seq["counters"]["refused"], 1,
        "the undeclared setting reached the stage and was refused"
    );
    p.send(&["x"])?;
    p.wait_for_events("tag", 1)?;
    p.finish()?;
    assert_eq!(values(&dir)?, ["0|a"]);
    Ok(())
}

/// A stage keeps its last `MAX_KEPT_VERSIONS` (8) versions: after ten settings changes, the
/// versions 4 to 11 are kept, and a rollback can go back through the seven standby ones,
/// and no further.
#[test]
fn a_stage_keeps_its_last_eight_versions_and_rolls_back_through_them() -> Result<()> {
    assert_eq!(MAX_KEPT_VERSIONS, 8);
    let dir = Dir::new()?;
    let (file, _) = stdin_pipeline(&dir, false)?;
    let mut p = Live::start(&dir, &file)?;
    for i in 1..=10 {
        let (status, v) = p.put_settings("seq", format!(r#"{{"prefix": "p{i}-"}}"#).as_bytes());
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["id"], i + 1);
    }
    let seq = p.stage("seq");
    let versions = seq["versions"].as_array().context("versions")?;
    let ids: Vec<u64> = versions.iter().filter_map(|v| v["id"].as_u64()).collect();
    assert_eq!(ids, (4..=11).collect::<Vec<u64>>(), "{seq:#}");
    let states: Vec<&str> = versions
        .iter()
        .filter_map(|v| v["state"].as_str())
        .collect();
    assert_eq!(states, [vec!["standby"; 7], vec!["live"]].concat());

    for back_to in (4..=10).rev() {
        let (status, v) = p.rollback("seq");
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["id"], back_to);
    }
    let (status, v) = p.rollback("seq");
    assert_eq!(status, 409, "{v}");
    assert_eq!(
        v["error"],
        "stage `seq` has no earlier version to roll back to"
    );
    let seq = p.stage("seq");
    assert_eq!(seq["live"]["id"], 4);
    assert_eq!(seq["live"]["settings"]["prefix"], "p3-");
    assert_eq!(seq["counters"]["rollbacks"], 7);
    p.send(&["x"])?;
    p.wait_for_events("tag", 1)?;
    p.finish()?;
    assert_eq!(values(&dir)?, ["p3-0|a"]);
    Ok(())
}

/// A swap starts the new version with a closed breaker: the breaker that a poison batch
/// opened (for an hour) no longer fails events once another version is live.
#[test]
fn a_swap_closes_the_breaker_the_old_version_opened() -> Result<()> {
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .linger("1ms")
        .source("in", Source::stdin())
        .stage(
            "tag",
            Stage::plugin(plugin("fixture-poison"))
                .inputs(&["in"])
                .breaker(100, 0.5, "1h")
                .canary(0, 0.5),
        )
        .sink("out", Sink::file("out.jsonl").json().inputs(&["tag"]))
        .dead_letters("dead.jsonl")
        .admin_token(TOKEN)
        .write(&dir)?;
    let mut p = Live::start(&dir, &file)?;
    let poison: Vec<String> = (0..256).map(|i| format!("poison {i}")).collect();
    let poison: Vec<&str> = poison.iter().map(String::as_str).collect();
    p.send(&poison)?;
    let dead = dir.path("dead.jsonl");
    let letters = |n: u64| {
        wait_until(
            &format!("{n} dead letters"),
            || Ok((support::count_lines(&dead) >= n).then_some(())),
            String::new,
        )
    };
    letters(256)?;
    p.send(&["good 1"])?;
    letters(257)?;
    let tag_a = std::fs::read(plugin("fixture-tag-a"))?;
    let (status, v) = p.put_plugin("tag", &tag_a);
    assert_eq!(status, 200, "{v}");
    p.send(&["good 2"])?;
    p.wait_for_stage("tag", "served the new version", |s| {
        s["events"].as_u64() == Some(1)
    })?;
    let ran = p.finish()?;
    let written = json_events(&dir.path("out.jsonl"))?;
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0].value(), "good 2|a");
    assert_eq!(written[0].version_of("tag"), short_digest(&tag_a));
    let all = dead_letters(&dead)?;
    assert_eq!(all.len(), 257);
    assert_eq!(all[256].value(), "good 1");
    assert_eq!(
        all[256].kind, "breaker-open",
        "the breaker was open before the swap"
    );
    assert_eq!(
        ran.report().node("tag").failures_of("breaker-open") as usize,
        { all.iter().filter(|l| l.kind == "breaker-open").count() }
    );
    Ok(())
}

/// Replacing the watched plugin file (write elsewhere then rename; then overwrite in place,
/// in two writes a moment apart) reloads it once each time, never the half-written file.
#[test]
fn a_watched_file_reloads_once_per_replacement() -> Result<()> {
    let dir = Dir::new()?;
    let (file, tag) = stdin_pipeline(&dir, true)?;
    let a = std::fs::read(plugin("fixture-tag-a"))?;
    let b = std::fs::read(plugin("fixture-tag-b"))?;
    let mut p = Live::start(&dir, &file)?;
    // The watcher starts after the admin API says it listens, and before the first event
    // is read: once an event went through, a replacement cannot be missed.
    p.send(&["x"])?;
    p.wait_for_events("tag", 1)?;

    let staged = dir.path("plugins/.tag.wasm.tmp");
    std::fs::write(&staged, &b)?;
    std::fs::rename(&staged, &tag)?;
    let stage = p.wait_for_stage("tag", "loaded b", |s| s["live"]["digest"] == sha256_hex(&b))?;
    assert_eq!(stage["counters"]["swaps"], 1, "{stage:#}");
    assert_eq!(stage["live"]["origin"], "file");
    p.send(&["y"])?;
    p.wait_for_events("tag", 2)?;

    // In place, in two writes: the debounce must not load the half-written file. (The
    // stage's actor takes file changes in order, so a half-file load would be counted as
    // refused before the whole file is loaded.)
    {
        let mut f = std::fs::File::create(&tag)?;
        f.write_all(&a[..a.len() / 2])?;
        f.flush()?;
        // A writer that pauses mid-file, for less than the debounce.
        std::thread::sleep(weir::control::WATCH_DEBOUNCE / 6);
        f.write_all(&a[a.len() / 2..])?;
    }
    let stage = p.wait_for_stage("tag", "loaded a", |s| s["live"]["digest"] == sha256_hex(&a))?;
    assert_eq!(stage["counters"]["swaps"], 2, "{stage:#}");
    assert_eq!(stage["counters"]["refused"], 0, "a partial file was loaded");
    p.send(&["z"])?;
    p.wait_for_events("tag", 3)?;
    let ran = p.finish()?;
    assert_eq!(
        ran.stderr().matches("reloaded").count(),
        2,
        "{}",
        ran.stderr()
    );
    let lines: Vec<(u64, String, String)> = json_events(&dir.path("out.jsonl"))?
        .iter()
        .map(parse_out)
        .collect::<Result<_>>()?;
    assert_eq!(
        lines,
        [
            (0, "a".to_string(), short_digest(&a)),
            (1, "b".to_string(), short_digest(&b)),
            (2, "a".to_string(), short_digest(&a))
        ]
    );
    Ok(())
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
    let file = PipelineFile::new()
        .source("gen", Source::generate(1_000_000_000_000).size(100))
        .stage(
            "tag",
            Stage::plugin(plugin("fixture-tag-a"))
                .inputs(&["gen"])
                .canary(0, 0.5),
        )
        .sink("out", Sink::null().inputs(&["tag"]))
        .admin_token(TOKEN)
        .write(&dir)?;
    let a = std::fs::read(plugin("fixture-tag-a"))?;
    let b = std::fs::read(plugin("fixture-tag-b"))?;
    let p = Live::start_with(&dir, &file, Stdin::Null, Arc::new(AtomicBool::new(false)))?;
    p.wait_for_stage("tag", "served", |s| s["events"].as_u64() > Some(0))?;
    // Measurement windows: the benchmark measures rates over fixed stretches of time.
    std::thread::sleep(Duration::from_secs(1));
    let total = || p.stage("tag")["events_total"].as_u64().unwrap_or(0);
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
            s["live"]["ready_ms"].as_f64().unwrap_or(0.0),
            s["live"]["serving_ms"].as_f64().unwrap_or(0.0),
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
    p.running.signal(libc::SIGINT)?;
    p.running.wait(PATIENCE)?;
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

/// `stdin -> tag -> out`, `tag` running passthrough on two workers (both offer their batches to
/// one shadow), batches of 64.
fn shadowed(dir: &Dir) -> Result<PathBuf> {
    shadowed_file().write(dir)
}

fn shadowed_file() -> PipelineFile {
    PipelineFile::new()
        .batch_size(64)
        .linger("1ms")
        .source("in", Source::stdin())
        .stage(
            "tag",
            Stage::plugin(plugin("passthrough"))
                .inputs(&["in"])
                .workers(2),
        )
        .sink("out", Sink::file("out.jsonl").json().inputs(&["tag"]))
        .dead_letters("dead.jsonl")
        .admin_token(TOKEN)
}

impl Live {
    /// `GET /stages/{stage}/shadow`.
    fn shadow(&self, stage: &str) -> Value {
        let (status, value) =
            self.request("GET", &format!("/stages/{stage}/shadow"), Some(TOKEN), b"");
        assert_eq!(status, 200, "{value}");
        value
    }

    /// Starts a shadow of `fixture` on `stage` with `weir reload --shadow`.
    fn start_shadow(&self, stage: &str, fixture: &str) -> Result<()> {
        let out = self.cli(&[
            "reload",
            "--stage",
            stage,
            "--plugin",
            plugin(fixture).to_str().context("path")?,
            "--shadow",
            "--token",
            TOKEN,
        ])?;
        let said = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && said.contains("shadow") && said.contains("running"),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Sends `event-FROM` to `event-TO` (excluded) in chunks of 100, each once the shadow has
    /// taken the one before (compared or failed on either side), so that its queue never
    /// fills and no batch is skipped.
    fn send_shadowed(&mut self, stage: &str, from: u64, to: u64) -> Result<()> {
        self.send_lines_shadowed(stage, from, to, |i| format!("event-{i}"))
    }

    /// [`Live::send_shadowed`] with line `i` made by `line`.
    fn send_lines_shadowed(
        &mut self,
        stage: &str,
        from: u64,
        to: u64,
        line: impl Fn(u64) -> String,
    ) -> Result<()> {
        let taken = |s: &Value| {
            let failed = |side: &str| -> u64 {
                s[side]
                    .as_object()
                    .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
            };
            s["compared"].as_u64().unwrap_or(0) + failed("shadow_failed").max(failed("live_failed"))
        };
        let base = taken(&self.shadow(stage));
        for start in (from..to).step_by(100) {
            let end = (start + 100).min(to);
            let lines: Vec<String> = (start..end).map(&line).collect();
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            self.send(&refs)?;
            let want = base + end - from;
            wait_until(
                &format!("the shadow to take {want} events"),
                || {
                    let s = self.shadow(stage);
                    Ok((taken(&s) >= want).then_some(()))
                },
                || format!("{:#}", self.shadow(stage)),
            )?;
        }
        Ok(())
    }
}

/// A shadow of the very version that is live: every event is compared and found equal, and
/// the live output is the input.
#[test]
fn shadow_an_identical_version_finds_no_difference() -> Result<()> {
    let dir = Dir::new()?;
    let file = shadowed(&dir)?;
    let mut p = Live::start(&dir, &file)?;
    p.start_shadow("tag", "passthrough")?;
    p.send_shadowed("tag", 0, 1000)?;
    let s = p.shadow("tag");
    assert_eq!(s["state"], "running", "{s:#}");
    assert_eq!(s["compared"], 1000, "{s:#}");
    assert_eq!(s["equal"], 1000, "{s:#}");
    assert_eq!(s["different"], 0, "{s:#}");
    assert_eq!(s["skipped"], 0, "{s:#}");
    assert_eq!(s["samples"].as_array().map(Vec::len), Some(0), "{s:#}");
    assert_eq!(p.stage("tag")["shadow"]["compared"], 1000);
    p.finish()?;
    let mut got = values(&dir)?;
    got.sort();
    let mut want: Vec<String> = (0..1000).map(|i| format!("event-{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    Ok(())
}

/// A shadow that appends `|new` to the values ending in 0: exactly 100 of 1000 events differ,
/// `weir shadow status` shows the latest 8 pairs, and the live output is unchanged.
#[test]
fn shadow_a_changed_version_counts_each_difference_with_samples() -> Result<()> {
    let dir = Dir::new()?;
    let file = shadowed_file().metrics("1s").write(&dir)?;
    let mut p = Live::start(&dir, &file)?;
    // Both listen on port 0: the metrics are served on the admin API's address.
    p.running
        .wait_for_stderr("metrics served on the admin API's address")?;
    let metrics = p.addr.clone();
    p.start_shadow("tag", "fixture-shadow-diff")?;
    p.send_shadowed("tag", 0, 1000)?;
    let s = p.shadow("tag");
    assert_eq!(s["compared"], 1000, "{s:#}");
    assert_eq!(s["equal"], 900, "{s:#}");
    assert_eq!(s["different"], 100, "{s:#}");
    let samples = s["samples"].as_array().context("samples")?;
    assert_eq!(samples.len(), 8, "{s:#}");
    for sample in samples {
        let input = sample["input"]["value"].as_str().context("input")?;
        assert!(input.ends_with('0'), "{sample:#}");
        assert_eq!(sample["live"]["value"], input, "{sample:#}");
        assert_eq!(
            sample["shadow"]["value"],
            format!("{input}|new"),
            "{sample:#}"
        );
        assert_eq!(sample["live_outputs"], 1);
        assert_eq!(sample["shadow_outputs"], 1);
    }
    let out = p.cli(&["shadow", "status", "tag", "--token", TOKEN])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("events: 1000 compared, 900 equal, 100 different"),
        "{text}"
    );
    assert!(text.contains("latest differences (8):"), "{text}");
    assert!(text.contains("|new\" (1 outputs)"), "{text}");
    let json = p.cli(&["shadow", "status", "tag", "--json", "--token", TOKEN])?;
    let parsed: Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(parsed["different"], 100);
    let mut answer = ureq::get(format!("http://{metrics}/metrics")).call()?;
    let text = answer.body_mut().read_to_string()?;
    let series = |result: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("weir_shadow_events_total{")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    assert_eq!(series("equal").as_deref(), Some("900"), "{text}");
    assert_eq!(series("different").as_deref(), Some("100"), "{text}");
    assert!(text.contains("weir_shadow_batches_total{"), "{text}");
    assert!(text.contains("weir_shadow_event_nanoseconds{"), "{text}");
    p.finish()?;
    let got = values(&dir)?;
    assert_eq!(got.len(), 1000);
    assert!(got.iter().all(|v| !v.contains("|new")));
    Ok(())
}

/// A shadow that traps on every event: each is counted as the shadow's failure, none is
/// compared, and the live output is every event, exactly, with no dead letter.
#[test]
fn shadow_that_traps_on_everything_costs_the_live_output_nothing() -> Result<()> {
    let dir = Dir::new()?;
    let file = shadowed(&dir)?;
    let mut p = Live::start(&dir, &file)?;
    p.start_shadow("tag", "fixture-evil-trap-every")?;
    p.send_shadowed("tag", 0, 1000)?;
    let s = p.shadow("tag");
    assert_eq!(s["compared"], 0, "{s:#}");
    let shadow_failed: u64 = s["shadow_failed"]
        .as_object()
        .context("shadow_failed")?
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(shadow_failed, 1000, "{s:#}");
    assert_eq!(s["live_failed"], serde_json::json!({}), "{s:#}");
    let ran = p.finish()?;
    let mut got = values(&dir)?;
    got.sort();
    let mut want: Vec<String> = (0..1000).map(|i| format!("event-{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    let tag = ran.report().node("tag");
    assert_eq!((tag.failed, tag.traps), (0, 0));
    assert!(dead_letters(&dir.path("dead.jsonl"))?.is_empty());
    Ok(())
}

/// Promotion makes the shadow live through the usual swap: events sent after it come out of
/// the new version, and `weir stages` shows it as version 2. A later shadow is stopped by
/// `weir shadow stop`, and a reload ends a running one.
#[test]
fn shadow_promote_makes_it_live_and_stop_ends_it() -> Result<()> {
    let dir = Dir::new()?;
    let file = shadowed(&dir)?;
    let mut p = Live::start(&dir, &file)?;
    p.start_shadow("tag", "fixture-shadow-diff")?;
    p.send_shadowed("tag", 0, 100)?;
    let out = p.cli(&["shadow", "promote", "tag", "--token", TOKEN])?;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("shadow promoted: version 2"),
        "{said}"
    );
    assert_eq!(p.shadow("tag")["state"], "promoted");
    let diff = std::fs::read(plugin("fixture-shadow-diff"))?;
    assert_eq!(p.live_digest("tag"), sha256_hex(&diff));
    let out = p.cli(&["stages", "--token", TOKEN])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tag: version 2"), "{text}");
    let lines: Vec<String> = (100..200).map(|i| format!("event-{i}")).collect();
    p.send(&lines.iter().map(String::as_str).collect::<Vec<_>>())?;
    p.wait_for_events("tag", 200)?;

    // Another shadow, stopped: the live version stays; a third, ended by a rollback.
    p.start_shadow("tag", "passthrough")?;
    let out = p.cli(&["shadow", "stop", "tag", "--token", TOKEN])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(p.shadow("tag")["state"], "stopped");
    let out = p.cli(&["shadow", "stop", "tag", "--token", TOKEN])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs no shadow"));
    assert_eq!(p.live_digest("tag"), sha256_hex(&diff));
    p.start_shadow("tag", "passthrough")?;
    let (status, v) = p.rollback("tag");
    assert_eq!(status, 200, "{v}");
    assert_eq!(p.shadow("tag")["state"], "replaced");
    let ran = p.finish()?;
    assert_eq!(ran.report().node("tag").events_out, 200);
    let got = values(&dir)?;
    let changed = |range: std::ops::Range<u64>| {
        range
            .filter(|i| got.contains(&format!("event-{i}|new")))
            .count()
    };
    assert_eq!(changed(0..100), 0, "{got:?}");
    assert_eq!(changed(100..200), 10, "{got:?}");
    assert_eq!(got.len(), 200);
    Ok(())
}

/// A shadow of the second stage of a chain whose stages run on `workers = "auto"`: each worker
/// of the chain offers its batches to the one shadow, which counts exactly the events that
/// differ; `weir check` plans the two stages as one chain.
#[test]
fn shadow_a_stage_inside_a_chain_on_every_worker() -> Result<()> {
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .batch_size(64)
        .linger("1ms")
        .source("in", Source::stdin())
        .stage(
            "pre",
            Stage::plugin(plugin("passthrough"))
                .inputs(&["in"])
                .key("workers", "auto"),
        )
        .stage(
            "tag",
            Stage::plugin(plugin("passthrough"))
                .inputs(&["pre"])
                .key("workers", "auto"),
        )
        .sink("out", Sink::file("out.jsonl").json().inputs(&["tag"]))
        .dead_letters("dead.jsonl")
        .admin_token(TOKEN)
        .write(&dir)?;
    let checked = dir.weir().arg("check").arg(&file).output()?;
    let said = String::from_utf8_lossy(&checked.stderr).to_string()
        + &String::from_utf8_lossy(&checked.stdout);
    assert!(said.contains("pre") && said.contains("chain"), "{said}");
    let mut p = Live::start(&dir, &file)?;
    p.start_shadow("tag", "fixture-shadow-diff")?;
    p.send_shadowed("tag", 0, 1000)?;
    let s = p.shadow("tag");
    assert_eq!(
        (&s["compared"], &s["equal"], &s["different"]),
        (&Value::from(1000), &Value::from(900), &Value::from(100)),
        "{s:#}"
    );
    let ran = p.finish()?;
    assert_eq!(ran.report().node("tag").events_out, 1000);
    Ok(())
}

/// A hostile shadow that allocates without end on every 100th event: exactly those 10 are
/// its failures, the 990 others are compared and equal, and the live output is every event
/// with no dead letter. A sample rate outside (0, 1] is refused before anything is sent.
#[test]
fn shadow_a_hostile_version_fails_alone_and_a_bad_rate_is_refused() -> Result<()> {
    let dir = Dir::new()?;
    let file = shadowed(&dir)?;
    let mut p = Live::start(&dir, &file)?;
    for rate in ["0", "1.5", "-1"] {
        let out = p.cli(&[
            "reload",
            "--stage",
            "tag",
            "--plugin",
            plugin("passthrough").to_str().context("path")?,
            "--shadow",
            "--sample",
            rate,
            "--token",
            TOKEN,
        ])?;
        assert_eq!(out.status.code(), Some(2), "--sample {rate}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("above 0 and at most 1"), "{said}");
    }
    let (status, v) = p.request(
        "PUT",
        "/stages/tag/shadow?sample=2",
        Some(TOKEN),
        &std::fs::read(plugin("passthrough"))?,
    );
    assert_eq!(status, 400, "{v}");
    let (status, _) = p.request("GET", "/stages/tag/shadow", Some(TOKEN), b"");
    assert_eq!(status, 409);

    p.start_shadow("tag", "fixture-evil-memory-bomb")?;
    let line = |i: u64| {
        if i.is_multiple_of(100) {
            format!("bomb-{i}")
        } else {
            format!("event-{i}")
        }
    };
    p.send_lines_shadowed("tag", 0, 1000, line)?;
    let s = p.shadow("tag");
    assert_eq!(s["compared"], 990, "{s:#}");
    assert_eq!(s["equal"], 990, "{s:#}");
    // It allocates and writes without end: the call's fuel or the memory cap stops it.
    let failed = s["shadow_failed"].as_object().context("shadow_failed")?;
    assert_eq!(
        failed.values().filter_map(Value::as_u64).sum::<u64>(),
        10,
        "{s:#}"
    );
    assert!(
        failed
            .keys()
            .all(|k| k == "out-of-fuel" || k == "memory-limit"),
        "{s:#}"
    );
    assert_eq!(s["live_failed"], serde_json::json!({}), "{s:#}");
    let ran = p.finish()?;
    let mut got = values(&dir)?;
    got.sort();
    let mut want: Vec<String> = (0..1000).map(line).collect();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(ran.report().node("tag").failed, 0);
    assert!(dead_letters(&dir.path("dead.jsonl"))?.is_empty());
    Ok(())
}
