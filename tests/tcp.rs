//! The TCP source through the `weir` binary, with raw `std::net::TcpStream` clients (and a
//! rustls one): many connections through a real plugin, backpressure that reaches the
//! clients' writes, the connection cap, over-long lines, idle connections, TLS, SIGTERM while
//! clients are connected, `weir check` and a taken port.

mod support;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use support::{
    Dir, PATIENCE, PipelineFile, Running, Sink, Source, Stage, Stdin, dead_letters, json_events,
    plugin, read_lines, wait_until,
};

/// `weir run --report json FILE` started, and the address its TCP source listens on.
fn start(dir: &Dir, file: &Path) -> Result<(Running, String)> {
    let mut cmd = dir.weir();
    cmd.args(["run", "--report", "json"]).arg(file);
    listening(Running::start(cmd, Stdin::Null)?)
}

/// The address the run's TCP source says it listens on.
fn listening(mut running: Running) -> Result<(Running, String)> {
    let marker = "listening on ";
    let line = running.wait_for_stderr("source `in` listening on")?;
    let url = &line[line.find(marker).context("marker")? + marker.len()..];
    let addr = url.trim().split_once("://").context("a URL")?.1.to_string();
    Ok((running, addr))
}

/// Waits until `out.txt` holds at least `n` lines.
fn wait_for_lines(dir: &Dir, n: usize) -> Result<()> {
    wait_until(
        &format!("{n} lines in out.txt"),
        || Ok((read_lines(&dir.path("out.txt"))?.len() >= n).then_some(())),
        || {
            format!(
                "{} lines",
                read_lines(&dir.path("out.txt")).map_or(0, |l| l.len())
            )
        },
    )
}

/// The JSON report: the last line of stderr.
fn report(stderr: &str) -> Result<serde_json::Value> {
    let last = stderr.lines().last().context("no stderr")?;
    serde_json::from_str(last).with_context(|| format!("no report: {stderr}"))
}

/// Node `name` of a JSON report.
fn node<'r>(report: &'r serde_json::Value, name: &str) -> Result<&'r serde_json::Value> {
    report["nodes"]
        .as_array()
        .context("no nodes")?
        .iter()
        .find(|n| n["name"] == name)
        .with_context(|| format!("no node `{name}` in {report}"))
}

/// How many times each line occurs.
fn counted(lines: Vec<String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        *counts.entry(line).or_insert(0) += 1;
    }
    counts
}

/// A client's lines, written in one go of many writes.
fn client_lines(client: usize, count: usize) -> String {
    (0..count).map(|i| format!("c{client}-line{i}\n")).collect()
}

/// Eight clients at once, 5,000 lines each, through the uppercase plugin to a file: every
/// line comes out exactly once, and the report counts the connections and the bytes read.
#[test]
fn many_connections_through_a_plugin_every_line_out_exactly_once() -> Result<()> {
    const CLIENTS: usize = 8;
    const LINES: usize = 5_000;
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .source("in", Source::tcp("127.0.0.1:0"))
        .stage("upper", Stage::plugin(plugin("uppercase")).inputs(&["in"]))
        .sink("out", Sink::file("out.txt").inputs(&["upper"]))
        .write(&dir)?;
    let (running, addr) = start(&dir, &file)?;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || -> Result<usize> {
                let mut stream = TcpStream::connect(&addr)?;
                let text = client_lines(c, LINES);
                // In pieces that cut lines anywhere, as a network does.
                for piece in text.as_bytes().chunks(1000 + c * 37) {
                    stream.write_all(piece)?;
                }
                stream.shutdown(Shutdown::Write)?;
                Ok(text.len())
            })
        })
        .collect();
    let mut sent = 0;
    for client in clients {
        sent += client.join().expect("client thread")?;
    }
    wait_for_lines(&dir, CLIENTS * LINES)?;
    running.signal(libc::SIGTERM)?;
    let ran = running.finish(PATIENCE)?;
    assert_eq!(ran.code(), 0, "{}", ran.stderr());

    let counts = counted(read_lines(&dir.path("out.txt"))?);
    let expected: Vec<String> = (0..CLIENTS)
        .flat_map(|c| (0..LINES).map(move |i| format!("C{c}-LINE{i}")))
        .collect();
    assert_eq!(counts.len(), expected.len(), "distinct lines out");
    for line in &expected {
        assert_eq!(counts.get(line), Some(&1), "{line}");
    }
    let report = report(ran.stderr())?;
    assert_eq!(report["events_in"], (CLIENTS * LINES) as u64);
    assert_eq!(report["interrupted"], true);
    let source = node(&report, "in")?;
    assert_eq!(source["bytes_read"], sent as u64, "{source}");
    assert_eq!(
        source["connections"]["accepted"], CLIENTS as u64,
        "{source}"
    );
    assert_eq!(source["connections"]["refused"], 0, "{source}");
    assert_eq!(source["connections"]["open"], 0, "{source}");
    Ok(())
}

/// A sink that cannot write (its standard output is not read) holds the pipeline back: the
/// source stops reading its connection, so the client's writes block long before its burst
/// is sent, weir's memory stays far below the burst, and what is in flight stays within the
/// bound `weir check` prints. Once the output is read again, every line comes out.
#[test]
fn a_stalled_pipeline_blocks_the_clients_writes_instead_of_buffering() -> Result<()> {
    const LINE: usize = 1024;
    const BURST: usize = 256 << 20;
    let lines = BURST / LINE;
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .batch_size(64)
        .buffer(1)
        .source("in", Source::tcp("127.0.0.1:0"))
        .sink("out", Sink::stdout().inputs(&["in"]))
        .write(&dir)?;
    let bound = dir.checked_bound(&file)?;
    let mut cmd = dir.weir();
    cmd.args(["run", "--report", "json"]).arg(&file);
    let (mut running, addr) = listening(Running::start_keeping_stdout(cmd, Stdin::Null)?)?;

    let written = Arc::new(AtomicU64::new(0));
    let progress = Arc::clone(&written);
    let client = std::thread::spawn(move || -> Result<()> {
        let mut stream = TcpStream::connect(&addr)?;
        let mut chunk = Vec::with_capacity(64 * LINE);
        for i in 0..lines {
            let mut line = format!("{i:09}").into_bytes();
            line.resize(LINE - 1, b'.');
            line.push(b'\n');
            chunk.extend_from_slice(&line);
            if chunk.len() == 64 * LINE || i + 1 == lines {
                stream.write_all(&chunk)?;
                progress.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                chunk.clear();
            }
        }
        stream.shutdown(Shutdown::Write)?;
        Ok(())
    });

    // Wait until the client makes no progress: its writes are blocked (or it is done, which
    // would mean weir took the whole burst while it could write nothing out).
    let mut last = u64::MAX;
    let held_at = wait_until(
        "the client's writes to stop moving",
        || {
            std::thread::sleep(Duration::from_millis(400));
            let now = written.load(Ordering::Relaxed);
            let still = now == last && now > 0;
            last = now;
            Ok(still.then_some(now))
        },
        || format!("{} bytes written", written.load(Ordering::Relaxed)),
    )?;
    let rss_mib = support::process::peak_rss_kib_now(running.pid()).context("rss")? / 1024;

    assert!(
        held_at < (BURST / 8) as u64,
        "the client wrote {held_at} of {BURST} bytes while nothing could leave weir"
    );
    assert!(
        rss_mib < (BURST >> 22) as u64,
        "weir holds {rss_mib} MiB while the pipeline is stalled"
    );

    // Read the output again: the rest of the burst goes through.
    let mut stdout = running.take_stdout().context("stdout")?;
    let out = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&out);
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = stdout.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            let newlines = buf[..n].iter().filter(|&&b| b == b'\n').count();
            counted.fetch_add(newlines as u64, Ordering::Relaxed);
        }
    });
    client.join().expect("client thread")?;
    wait_until(
        "every line out",
        || Ok((out.load(Ordering::Relaxed) == lines as u64).then_some(())),
        || format!("{} lines out", out.load(Ordering::Relaxed)),
    )?;
    running.signal(libc::SIGTERM)?;
    let watched = running.wait(PATIENCE)?;
    assert_eq!(watched.code(), 0, "{}", watched.stderr);
    reader.join().expect("reader")?;
    assert_eq!(out.load(Ordering::Relaxed), lines as u64);
    let report = report(&watched.stderr)?;
    let in_flight = report["in_flight_max"].as_u64().context("in_flight_max")?;
    assert!(in_flight <= bound, "{in_flight} in flight, bound {bound}");
    assert_eq!(report["in_flight_bound"], bound);
    assert!(watched.peak_rss_mib() < (BURST >> 22) as u64);
    Ok(())
}

/// Whether the server closed `stream`: reading it comes to its end (or a reset), after at
/// most what the server said before closing (a TLS alert). The read timeout only keeps a
/// broken build from hanging the test.
fn closed_by_server(stream: &mut TcpStream) -> Result<bool> {
    stream.set_read_timeout(Some(PATIENCE))?;
    let mut said = Vec::new();
    match stream.read_to_end(&mut said) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(true),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `max_connections = 2`: a third connection is closed at once and counted, while the two
/// go on. A line over `max_line` is dead-lettered as `oversized` with its first bytes, and the
/// lines after it on the same connection still arrive. A connection silent for
/// `idle_timeout` is closed.
#[test]
fn the_connection_cap_the_line_limit_and_the_idle_timeout_hold() -> Result<()> {
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .source(
            "in",
            Source::tcp("127.0.0.1:0")
                .key("max_connections", 2)
                .key("max_line", "1KiB")
                .key("idle_timeout", "1s"),
        )
        .sink("out", Sink::file("out.txt").inputs(&["in"]))
        .dead_letters("dead.jsonl")
        .write(&dir)?;
    let (running, addr) = start(&dir, &file)?;
    let mut first = TcpStream::connect(&addr)?;
    let mut second = TcpStream::connect(&addr)?;
    first.write_all(b"one\n")?;
    second.write_all(b"two\n")?;
    wait_for_lines(&dir, 2)?;

    let mut third = TcpStream::connect(&addr)?;
    let _ = third.write_all(b"three\n");
    assert!(
        closed_by_server(&mut third)?,
        "the third connection stays open"
    );

    let mut long = b"short\n".to_vec();
    long.extend(std::iter::repeat_n(b'x', 5000));
    long.extend_from_slice(b"\nafter\n");
    for piece in long.chunks(700) {
        first.write_all(piece)?;
    }
    wait_for_lines(&dir, 4)?;
    // Silent for longer than `idle_timeout`: closed by weir (the test waits for the close).
    assert!(
        closed_by_server(&mut second)?,
        "an idle connection stays open"
    );

    running.signal(libc::SIGTERM)?;
    let ran = running.finish(PATIENCE)?;
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    let mut out = read_lines(&dir.path("out.txt"))?;
    out.sort();
    assert_eq!(out, ["after", "one", "short", "two"]);
    let letters = dead_letters(&dir.path("dead.jsonl"))?;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].kind, "oversized");
    assert!(
        letters[0]
            .message
            .contains("5000 bytes, over the 1024-byte limit"),
        "{}",
        letters[0].message
    );
    assert!(letters[0].value().bytes().all(|b| b == b'x') && !letters[0].value().is_empty());
    let report = report(ran.stderr())?;
    let source = node(&report, "in")?;
    assert_eq!(source["connections"]["accepted"], 2, "{source}");
    assert_eq!(source["connections"]["refused"], 1, "{source}");
    assert_eq!(source["failures"]["oversized"], 1, "{source}");
    Ok(())
}

/// With `tls_cert` and `tls_key`, a rustls client's lines arrive, each with its peer's
/// address in the `peer_header`; a plain TCP client's bytes never become events.
#[test]
fn lines_over_tls_arrive_with_their_peer_and_plain_text_is_refused() -> Result<()> {
    let dir = Dir::new()?;
    support::tls::make_certificates(&dir)?;
    let file = PipelineFile::new()
        .source(
            "in",
            Source::tcp("127.0.0.1:0")
                .key("tls_cert", "cert.pem")
                .key("tls_key", "key.pem")
                .key("peer_header", "peer"),
        )
        .sink("out", Sink::file("out.jsonl").json().inputs(&["in"]))
        .write(&dir)?;
    let (running, addr) = start(&dir, &file)?;
    assert!(
        running.stderr().contains("listening on tls://"),
        "{}",
        running.stderr()
    );

    let mut plain = TcpStream::connect(&addr)?;
    plain.write_all(b"in clear\n")?;
    assert!(closed_by_server(&mut plain)?);

    let tcp = TcpStream::connect(&addr)?;
    let local = tcp.local_addr()?.to_string();
    let mut tls = rustls::StreamOwned::new(support::tls::client(&dir)?, tcp);
    tls.write_all(b"secret one\nsecret two\r\nlast without newline")?;
    tls.conn.send_close_notify();
    tls.flush()?;
    tls.sock.shutdown(Shutdown::Write)?;
    wait_until(
        "three events",
        || Ok((json_events(&dir.path("out.jsonl")).map_or(0, |e| e.len()) >= 3).then_some(())),
        || format!("{:?}", json_events(&dir.path("out.jsonl"))),
    )?;
    running.signal(libc::SIGTERM)?;
    let ran = running.finish(PATIENCE)?;
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    let events = json_events(&dir.path("out.jsonl"))?;
    let values: Vec<&str> = events.iter().map(|e| e.value()).collect();
    assert_eq!(values, ["secret one", "secret two", "last without newline"]);
    for event in &events {
        assert_eq!(
            event.header("peer"),
            std::slice::from_ref(&local),
            "{event:?}"
        );
        assert_eq!(event.key, None);
    }
    Ok(())
}

/// SIGTERM while clients are connected: everything they wrote before the signal comes out,
/// once; a line begun before the signal is read to its end when the rest comes within the
/// grace; the run ends with exit 0 and says it was interrupted.
#[test]
fn sigterm_with_clients_connected_delivers_what_they_wrote_once() -> Result<()> {
    const CLIENTS: usize = 4;
    const LINES: usize = 2_000;
    let dir = Dir::new()?;
    let file = PipelineFile::new()
        .source("in", Source::tcp("127.0.0.1:0"))
        .stage("pass", Stage::plugin(plugin("passthrough")).inputs(&["in"]))
        .sink("out", Sink::file("out.txt").inputs(&["pass"]))
        .write(&dir)?;
    let (mut running, addr) = start(&dir, &file)?;
    // Connected, written, and left open: the clients do not close before the signal.
    let mut streams = Vec::new();
    for c in 0..CLIENTS {
        let mut stream = TcpStream::connect(&addr)?;
        stream.write_all(client_lines(c, LINES).as_bytes())?;
        streams.push(stream);
    }
    let mut begun = TcpStream::connect(&addr)?;
    begun.write_all(b"whole\nhalf")?;
    running.signal(libc::SIGTERM)?;
    running.wait_for_stderr("stopping")?;
    begun.write_all(b"-and-rest\n")?;
    let ran = running.finish(PATIENCE)?;
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    drop(streams);

    let counts = counted(read_lines(&dir.path("out.txt"))?);
    let mut expected: Vec<String> = (0..CLIENTS)
        .flat_map(|c| (0..LINES).map(move |i| format!("c{c}-line{i}")))
        .collect();
    expected.extend(["whole".to_string(), "half-and-rest".to_string()]);
    assert_eq!(counts.len(), expected.len(), "distinct lines out");
    for line in &expected {
        assert_eq!(counts.get(line), Some(&1), "{line}");
    }
    let report = report(ran.stderr())?;
    assert_eq!(report["interrupted"], true);
    assert_eq!(report["events_in"], expected.len() as u64);
    Ok(())
}

/// `weir check` describes the source; a port another program holds refuses the run with exit
/// status 2, naming the file, the line and `sources.in.listen`, before anything is read.
#[test]
fn check_describes_the_source_and_a_taken_port_refuses_the_run() -> Result<()> {
    let dir = Dir::new()?;
    let taken = TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let pipeline = PipelineFile::new()
        .source("in", Source::tcp(&addr).key("max_connections", 3))
        .sink("out", Sink::file("out.txt").inputs(&["in"]));
    let file: PathBuf = pipeline.write(&dir)?;
    let (code, stdout, stderr) = dir.check(&file)?;
    assert_eq!(code, 0, "{stderr}");
    let described = format!("source `in`: lines over TCP on {addr}, at most 3 connections");
    assert!(stdout.contains(&described), "{stdout}");

    let ran = dir.run(&file)?;
    assert_eq!(ran.code(), 2, "{}", ran.stderr());
    let line = pipeline.line_of("listen =");
    let place = format!(
        "{}:{line}: `sources.in.listen`: `{addr}` is in use",
        file.display()
    );
    assert!(ran.stderr().contains(&place), "{}", ran.stderr());
    assert!(!dir.path("out.txt").exists() || read_lines(&dir.path("out.txt"))?.is_empty());
    drop(taken);
    Ok(())
}
