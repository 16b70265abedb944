//! End-to-end tests of the http source: the `weir` binary takes lines POSTed by ureq clients
//! through real plugins into file sinks, and the tests read the sink file right after each
//! answer. A stage held on a named pipe (the `evil-sleep` fixture reading a FIFO no one has
//! written yet) fills the pipeline on demand, without timing: so a full pipeline's 429, the
//! 200 that waits for the write, and a stop with requests in flight are each made to happen.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use support::{
    Dir, JsonEvent, PATIENCE, PipelineFile, Running, Sink, Source, Stage, Stdin, dead_letters,
    json_events, plugin, read_lines, wait_until,
};

const TOKEN: &str = "http-source-token-0123456789";

/// A `weir run` of an http source, with the URL it said it listens on.
struct Live {
    running: Running,
    url: String,
}

impl Live {
    fn start(dir: &Dir, file: &Path) -> Result<Live> {
        let mut cmd = dir.weir();
        cmd.args(["run", "--report", "json"]).arg(file);
        let mut running = Running::start(cmd, Stdin::Null)?;
        let marker = "listening on ";
        let line = running.wait_for_stderr("source `web` listening on ")?;
        let url = line[line.find(marker).context("marker")? + marker.len()..].trim();
        Ok(Live {
            running,
            url: url.to_string(),
        })
    }

    /// SIGTERM, then the run's end: its exit code and stderr.
    fn stop(self) -> Result<(i32, String)> {
        self.running.signal(libc::SIGTERM)?;
        let watched = self.running.wait(PATIENCE)?;
        Ok((watched.code(), watched.stderr))
    }
}

/// A client that reads every answer, whatever its status.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// An answer: its status, `Retry-After` if any, and its body.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

fn post(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)], body: &str) -> Result<Answer> {
    let mut request = agent.post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.send(body)?;
    let retry_after = (response.headers().get("retry-after"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(Answer {
        status: response.status().as_u16(),
        retry_after,
        body: response.body_mut().read_to_string()?,
    })
}

/// The complete lines of a file being appended to (a last line not yet ended is left out).
fn complete_lines(path: &Path) -> Result<Vec<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    Ok(whole.lines().map(str::to_string).collect())
}

/// How many times each line occurs.
fn counts(lines: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    counts
}

/// Asserts every line of `expected` occurs exactly once in `written`, and nothing else.
fn assert_each_once(written: &[String], expected: &BTreeSet<String>) {
    let counts = counts(written);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(3).collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");
    let missing: Vec<_> = expected
        .iter()
        .filter(|l| !counts.contains_key(l.as_str()))
        .take(3)
        .collect();
    assert!(missing.is_empty(), "never written: {missing:?}");
    assert_eq!(written.len(), expected.len(), "lines written");
}

/// Requests from several clients at once, each of many lines (several batches), through the
/// `uppercase` plugin into a file: each 200 comes only once the request's lines are in the
/// file (read right after it), and in the end every line is there exactly once.
#[test]
fn every_answered_request_is_in_the_sink_once_when_its_200_arrives() -> Result<()> {
    const CLIENTS: usize = 4;
    const REQUESTS: usize = 15;
    const LINES: usize = 40;
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .buffer(1)
        .source("web", Source::http("/events").batch_size(16))
        .stage("upper", Stage::plugin(plugin("uppercase")).inputs(&["web"]))
        .sink("out", Sink::file("out.txt").inputs(&["upper"]))
        .write(&dir)?;
    let live = Live::start(&dir, &file)?;
    let out = dir.path("out.txt");
    let refused = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, out, refused) = (live.url.clone(), out.clone(), Arc::clone(&refused));
            std::thread::spawn(move || -> Result<()> {
                let agent = agent();
                for r in 0..REQUESTS {
                    let lines: Vec<String> =
                        (0..LINES).map(|l| format!("c{c} r{r} l{l}")).collect();
                    let body = lines.join("\n") + "\n";
                    let answer = loop {
                        let answer = post(&agent, &url, &[], &body)?;
                        if answer.status != 429 {
                            break answer;
                        }
                        refused.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(20));
                    };
                    ensure!(answer.status == 200, "{}: {}", answer.status, answer.body);
                    ensure!(
                        answer.body.contains(&format!("\"accepted\":{LINES}")),
                        "{}",
                        answer.body
                    );
                    let written: BTreeSet<String> = complete_lines(&out)?.into_iter().collect();
                    for line in &lines {
                        ensure!(
                            written.contains(&line.to_uppercase()),
                            "`{line}` was answered 200 but is not in the sink yet"
                        );
                    }
                }
                Ok(())
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client panicked")?;
    }
    let (code, stderr) = live.stop()?;
    assert_eq!(code, 0, "{stderr}");
    let expected: BTreeSet<String> = (0..CLIENTS)
        .flat_map(|c| {
            (0..REQUESTS).flat_map(move |r| (0..LINES).map(move |l| format!("C{c} R{r} L{l}")))
        })
        .collect();
    assert_each_once(&read_lines(&out)?, &expected);
    eprintln!(
        "{} answers of 429 on the way",
        refused.load(Ordering::Relaxed)
    );
    Ok(())
}

/// A FIFO at `dir/gate/fifo` that holds a stage reading it until [`open_gate`].
fn make_gate(dir: &Dir) -> Result<()> {
    std::fs::create_dir_all(dir.path("gate"))?;
    let status = std::process::Command::new("mkfifo")
        .arg(dir.path("gate/fifo"))
        .status()?;
    ensure!(status.success(), "mkfifo failed");
    Ok(())
}

/// Lets the stage held on the gate go on. The guest cannot read a pipe to its end (its reads
/// are positioned), so its event is then rejected and dead-lettered: done all the same.
fn open_gate(dir: &Dir) -> Result<()> {
    std::fs::write(dir.path("gate/fifo"), "opened")?;
    Ok(())
}

/// Answers as they come: each request's number and answer.
type Answers = Arc<Mutex<Vec<(usize, Answer)>>>;

/// Posts `body` on a thread of its own; its answer lands in `answers` under `i`.
fn post_in_background(
    url: &str,
    i: usize,
    body: String,
    answers: &Answers,
) -> std::thread::JoinHandle<Result<()>> {
    let (url, answers) = (url.to_string(), Arc::clone(answers));
    std::thread::spawn(move || {
        let answer = post(&agent(), &url, &[], &body)?;
        answers.lock().unwrap().push((i, answer));
        Ok(())
    })
}

/// A node's counts from the metrics listener's `/snapshot`: events out, and events queued in
/// front of it.
fn node_counts(metrics: &str, node: &str) -> Result<(u64, u64)> {
    let url = format!("http://{metrics}/snapshot");
    let mut response = agent().get(&url).call()?;
    let text = response.body_mut().read_to_string()?;
    let snapshot: serde_json::Value = serde_json::from_str(&text)?;
    let nodes = snapshot["nodes"].as_array().context("nodes")?;
    let found = (nodes.iter().find(|n| n["name"] == node)).context("the node")?;
    let count = |key: &str| found[key].as_u64().unwrap_or_default();
    Ok((count("events_out"), count("queued")))
}

/// A run whose one stage worker is held on the gate by a first request (`read:/gate/fifo`,
/// request number `HELD`), with one batch of room in the stage's channel: http →
/// `evil-sleep` → file, dead letters in `dead.jsonl`, the metrics listener on.
struct Held {
    live: Live,
    metrics: String,
    answers: Answers,
    clients: Vec<std::thread::JoinHandle<Result<()>>>,
}

/// The number of the request held in the stage.
const HELD: usize = usize::MAX;

impl Held {
    fn start(dir: &Dir) -> Result<Held> {
        make_gate(dir)?;
        let file = PipelineFile::new()
            .buffer(1)
            .source("web", Source::http("/"))
            .stage(
                "gate",
                Stage::plugin(plugin("fixture-evil-sleep"))
                    .inputs(&["web"])
                    .grant_dir("gate", "/gate")
                    .timeout("10m")
                    .workers(1),
            )
            .sink("out", Sink::file("out.txt").inputs(&["gate"]))
            .dead_letters("dead.jsonl")
            .metrics("0s")
            .write(dir)?;
        let mut live = Live::start(dir, &file)?;
        let line = live
            .running
            .wait_for_stderr("metrics listening on http://")?;
        let metrics = line.rsplit("http://").next().context("address")?.trim();
        let mut held = Held {
            metrics: metrics.to_string(),
            answers: Arc::default(),
            clients: Vec::new(),
            live,
        };
        held.send(HELD, "read:/gate/fifo\n");
        held.wait_for("the stage holding the first request", |taken, queued| {
            taken == 1 && queued == 0
        })?;
        Ok(held)
    }

    /// Posts request `i` on a thread of its own.
    fn send(&mut self, i: usize, body: &str) {
        let client = post_in_background(&self.live.url, i, body.to_string(), &self.answers);
        self.clients.push(client);
    }

    /// Waits until `ready` holds for the events the source has taken and those queued in
    /// front of the stage.
    fn wait_for(&self, what: &str, ready: impl Fn(u64, u64) -> bool) -> Result<()> {
        let state = || {
            let (taken, _) = node_counts(&self.metrics, "web")?;
            let (_, queued) = node_counts(&self.metrics, "gate")?;
            Ok(ready(taken, queued).then_some(()))
        };
        wait_until(what, state, || self.said())
    }

    /// The statuses answered so far, for a failure's message.
    fn said(&self) -> String {
        let answers = self.answers.lock().unwrap();
        let statuses: Vec<_> = answers.iter().map(|(i, a)| (*i, a.status)).collect();
        format!("answers so far: {statuses:?}")
    }

    /// Opens the gate and waits for every request's answer; returns them all.
    fn release(&mut self, dir: &Dir) -> Result<Vec<(usize, Answer)>> {
        open_gate(dir)?;
        for client in self.clients.drain(..) {
            client.join().expect("a client panicked")?;
        }
        Ok(std::mem::take(&mut *self.answers.lock().unwrap()))
    }
}

/// Asserts the held event was dead-lettered, once.
fn assert_held_dead_lettered(dir: &Dir) -> Result<()> {
    let dead = dead_letters(&dir.path("dead.jsonl"))?;
    let values: Vec<&str> = dead.iter().map(|d| d.value()).collect();
    assert_eq!(values, ["read:/gate/fifo"]);
    Ok(())
}

/// With the stage held and its channel full, a burst of requests gets 429 with `Retry-After`
/// for what cannot get in (nothing of them taken), without waiting for the stage; the
/// requests that got in wait, and get 200 once the gate opens. A client that retries its
/// 429s after `Retry-After` ends with every line in the sink exactly once.
#[test]
fn a_full_pipeline_answers_429_and_a_retrying_client_loses_nothing() -> Result<()> {
    // Far more than the stage's channel and its worker's window can hold.
    const BURST: usize = 24;
    let dir = Dir::new()?;
    let mut held = Held::start(&dir)?;
    for i in 0..BURST {
        held.send(i, &format!("burst {i}\n"));
    }
    let refused_one = || {
        let answers = held.answers.lock().unwrap();
        Ok(answers.iter().any(|(_, a)| a.status == 429).then_some(()))
    };
    wait_until("a 429 while the stage is held", refused_one, || held.said())?;
    let mut refused = Vec::new();
    for (i, answer) in held.release(&dir)? {
        match answer.status {
            200 => {}
            429 => {
                assert_eq!(answer.retry_after.as_deref(), Some("1"));
                assert!(
                    answer.body.contains("the pipeline is full"),
                    "{}",
                    answer.body
                );
                refused.push(i);
            }
            other => panic!("request {i}: {other}: {}", answer.body),
        }
    }
    assert!(!refused.contains(&HELD), "the held request was refused");
    let agent = agent();
    for i in &refused {
        loop {
            let answer = post(&agent, &held.live.url, &[], &format!("burst {i}\n"))?;
            if answer.status == 200 {
                break;
            }
            assert_eq!(answer.status, 429, "{}", answer.body);
            let wait: u64 = answer.retry_after.context("Retry-After")?.parse()?;
            std::thread::sleep(Duration::from_secs(wait));
        }
    }
    let (code, stderr) = held.live.stop()?;
    assert_eq!(code, 0, "{stderr}");
    let expected: BTreeSet<String> = (0..BURST).map(|i| format!("burst {i}")).collect();
    assert_each_once(&read_lines(&dir.path("out.txt"))?, &expected);
    assert_held_dead_lettered(&dir)
}

/// SIGTERM with two requests in flight (one held in the stage, one taken behind it): the
/// listener stops taking requests, the two drain once the gate opens and get their 200, the
/// run exits 0, and every line answered 200 is in the sink (or, for the held one, in the
/// dead letters).
#[test]
fn a_stop_lets_the_requests_in_flight_finish_with_their_200() -> Result<()> {
    let dir = Dir::new()?;
    let mut held = Held::start(&dir)?;
    held.send(1, "behind\n");
    held.wait_for("the second request taken", |taken, _| taken == 2)?;

    held.live.running.signal(libc::SIGTERM)?;
    held.live.running.wait_for_stderr("stopping")?;
    // A request after the stop is refused (the listener is closed, or 503); one that slipped
    // in before the stop is taken and must then be written.
    let late = post(&agent(), &held.live.url, &[], "late\n");
    let late_taken = match &late {
        Err(_) => false,
        Ok(a) if a.status == 503 => {
            assert!(a.body.contains("stopping"), "{}", a.body);
            false
        }
        Ok(a) => {
            assert_eq!(a.status, 200, "{}", a.body);
            true
        }
    };
    for (i, answer) in held.release(&dir)? {
        assert_eq!(answer.status, 200, "request {i}: {}", answer.body);
        assert!(answer.body.contains("\"accepted\":1"), "{}", answer.body);
    }
    let watched = held.live.running.wait(PATIENCE)?;
    assert_eq!(watched.code(), 0, "{}", watched.stderr);
    let mut expected: BTreeSet<String> = ["behind".to_string()].into();
    if late_taken {
        expected.insert("late".to_string());
    }
    assert_each_once(&read_lines(&dir.path("out.txt"))?, &expected);
    assert_held_dead_lettered(&dir)
}

/// The token, the method and path, the body and line caps, and the request headers copied
/// onto each event (as JSON lines in the sink, key included).
#[test]
fn requests_are_held_to_the_token_the_route_and_the_caps_and_carry_their_headers() -> Result<()> {
    let dir = Dir::new()?;
    let source = Source::http("/in")
        .key("token", TOKEN)
        .key("max_body", "1KiB")
        .key("max_line", 100)
        .key(
            "headers",
            toml::Value::Array(vec!["X-Request-Id".into(), "X-Tag".into()]),
        )
        .key("key_header", "X-Key");
    let file = PipelineFile::new()
        .source("web", source)
        .sink("out", Sink::file("out.jsonl").json().inputs(&["web"]))
        .write(&dir)?;
    let live = Live::start(&dir, &file)?;
    let agent = agent();
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let url = &live.url;

    let none = post(&agent, url, &[], "no token\n")?;
    assert_eq!(none.status, 401, "{}", none.body);
    let wrong = post(
        &agent,
        url,
        &[("Authorization", "Bearer http-source-token-0123456788")],
        "wrong\n",
    )?;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let got = agent.get(url).header("Authorization", &bearer).call()?;
    assert_eq!(got.status().as_u16(), 405);
    let elsewhere = post(&agent, &url.replace("/in", "/out"), &auth, "elsewhere\n")?;
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.body);
    let over = over_cap(url, &bearer)?;
    assert!(over.starts_with("HTTP/1.1 413"), "{over}");
    assert!(over.contains("1024-byte cap"), "{over}");
    let long = format!("short\n{}\nshort\n", "y".repeat(101));
    let too_long = post(&agent, url, &auth, &long)?;
    assert_eq!(too_long.status, 413, "{}", too_long.body);
    assert!(
        too_long.body.contains("line 2 is 101 bytes"),
        "{}",
        too_long.body
    );

    let headers = [
        ("Authorization", bearer.as_str()),
        ("X-Request-Id", "req-7"),
        ("X-Key", "user-42"),
    ];
    let ok = post(&agent, url, &headers, "first\n\r\nsecond")?;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body, "{\"accepted\":2}");
    let (code, stderr) = live.stop()?;
    assert_eq!(code, 0, "{stderr}");

    let events: Vec<JsonEvent> = json_events(&dir.path("out.jsonl"))?;
    let values: Vec<&str> = events.iter().map(JsonEvent::value).collect();
    assert_eq!(values, ["first", "second"]);
    for event in &events {
        assert_eq!(event.key.as_deref(), Some("user-42"));
        assert_eq!(event.header("X-Request-Id"), ["req-7"]);
        assert!(event.header("X-Tag").is_empty(), "{event:?}");
        assert!(event.header("Authorization").is_empty(), "{event:?}");
        assert!(event.timestamp.is_some(), "{event:?}");
    }
    Ok(())
}

/// The answer to a body over the 1 KiB cap, as text. Sent by hand: a `Content-Length` of
/// 4 KiB, then 1,100 bytes, then a wait for the answer. The server answers 413 once the cap
/// is passed and closes; a client that went on sending could see the close as a reset
/// before it reads the answer, so this one sends nothing more.
fn over_cap(url: &str, bearer: &str) -> Result<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").context("an http URL")?;
    let (addr, path) = rest.split_at(rest.find('/').context("a path")?);
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {bearer}\r\n\
         Content-Length: 4096\r\n\r\n"
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&[b'x'; 1100])?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// A private CA and a certificate it signed for `localhost` and 127.0.0.1, as PEM files in
/// `dir`: `ca.pem`, `cert.pem`, `key.pem`.
fn make_certificates(dir: &Dir) -> Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "weir test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    dir.write("ca.pem", &ca.self_signed(&ca_key)?.pem())?;
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    dir.write("cert.pem", &leaf.signed_by(&leaf_key, &issuer)?.pem())?;
    dir.write("key.pem", &leaf_key.serialize_pem())?;
    Ok(())
}

/// A client that trusts the CA in `ca` alone.
fn tls_agent(ca: &Path) -> Result<ureq::Agent> {
    let pem = std::fs::read(ca)?;
    let roots: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .build();
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .build()
        .into())
}

/// With `tls_cert` and `tls_key`, the source speaks TLS: a client that trusts the CA gets its
/// 200 and its lines written; plain HTTP to the same port gets no answer.
#[test]
fn the_source_serves_tls() -> Result<()> {
    let dir = Dir::new()?;
    make_certificates(&dir)?;
    let source = Source::http("/")
        .key("tls_cert", "cert.pem")
        .key("tls_key", "key.pem");
    let file = PipelineFile::new()
        .source("web", source)
        .sink("out", Sink::file("out.txt").inputs(&["web"]))
        .write(&dir)?;
    let live = Live::start(&dir, &file)?;
    assert!(live.url.starts_with("https://127.0.0.1:"), "{}", live.url);
    let answer = post(
        &tls_agent(&dir.path("ca.pem"))?,
        &live.url,
        &[],
        "over tls\n",
    )?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(complete_lines(&dir.path("out.txt"))?, ["over tls"]);
    let plain = post(
        &agent(),
        &live.url.replace("https://", "http://"),
        &[],
        "plain\n",
    );
    assert!(
        plain.is_err(),
        "plain HTTP was answered: {}",
        plain.map(|a| a.status).unwrap_or(0)
    );
    let (code, stderr) = live.stop()?;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(read_lines(&dir.path("out.txt"))?, ["over tls"]);
    Ok(())
}

/// A port another program holds stops the run before anything is read, with exit 2, naming
/// the file, the line and `sources.web.listen`; `weir check` (which binds nothing) describes
/// the source.
#[test]
fn a_taken_port_is_refused_at_the_sources_listen_key() -> Result<()> {
    let dir = Dir::new()?;
    let taken = TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let pipeline = PipelineFile::new()
        .source("web", Source::http("/events").key("listen", addr.as_str()))
        .sink("out", Sink::file("out.txt").inputs(&["web"]));
    let file = pipeline.write(&dir)?;
    let (code, stdout, stderr) = dir.check(&file)?;
    assert_eq!(code, 0, "{stderr}");
    let described = format!("source `web`: HTTP POST at http://{addr}/events");
    assert!(stdout.contains(&described), "{stdout}");

    let mut cmd = dir.weir();
    cmd.arg("run").arg(&file);
    let watched = Running::start(cmd, Stdin::Null)?.wait(PATIENCE)?;
    assert_eq!(watched.code(), 2, "{}", watched.stderr);
    let place = format!(
        "{}:{}: `sources.web.listen`: `{addr}` is in use",
        file.display(),
        pipeline.line_of(&addr)
    );
    assert!(watched.stderr.contains(&place), "{}", watched.stderr);
    assert!(!dir.path("out.txt").exists() || read_lines(&dir.path("out.txt"))?.is_empty());
    drop(taken);
    Ok(())
}
