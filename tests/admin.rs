//! End-to-end tests of the admin API's own defences and of the admin commands: the `weir`
//! binary runs a pipeline with its admin API on a free loopback port, and the tests open raw
//! connections that send slowly or nothing, flood it with connections, speak TLS to it with a
//! certificate made here, and call `weir stages` with every form of address and token.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use support::tls::make_certificates;
use support::{Dir, plugin, weir};

const TOKEN: &str = "admin-test-token-0123456789";
/// The longest any test waits for one thing to happen.
const PATIENCE: Duration = Duration::from_secs(30);

/// A `weir run` in the background, fed through a stdin it holds open, with its admin
/// address known.
struct Live {
    child: Child,
    /// `IP:PORT` of the admin API.
    addr: String,
    stderr: Arc<Mutex<String>>,
    stdin: Option<ChildStdin>,
}

impl Live {
    fn start(file: &Path) -> Result<Live> {
        let mut child = weir()
            .arg("run")
            .arg(file)
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
        let mut live = Live {
            child,
            addr: String::new(),
            stderr,
            stdin,
        };
        let marker = "admin API listening on ";
        let line = live.wait_for_stderr(marker)?;
        let url = line[line.find(marker).unwrap() + marker.len()..].trim();
        live.addr = url.split_once("://").context("a URL")?.1.to_string();
        Ok(live)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn port(&self) -> &str {
        self.addr
            .rsplit_once(':')
            .map(|(_, p)| p)
            .unwrap_or_default()
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

    /// Ends the input and waits for weir to exit; returns how long that took.
    fn finish(mut self) -> Result<Duration> {
        let started = Instant::now();
        drop(self.stdin.take());
        let deadline = started + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            ensure!(
                Instant::now() < deadline,
                "weir did not exit: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = started.elapsed();
        ensure!(
            status.success(),
            "weir failed ({status}): {}",
            self.stderr()
        );
        Ok(took)
    }

    /// The open file descriptors of the weir process.
    fn open_fds(&self) -> Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))?.count())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipeline fed through stdin, one passthrough stage, and `[admin]` as given.
fn pipeline(dir: &Dir, admin: &str) -> Result<PathBuf> {
    dir.write(
        "p.toml",
        &format!(
            r#"[sources.in]
type = "stdin"

[stages.pass]
inputs = ["in"]
plugin = "{pass}"

[sinks.out]
inputs = ["pass"]
type = "null"

[admin]
{admin}
"#,
            pass = plugin("passthrough").display(),
        ),
    )
}

/// The line of `p.toml` that `text` starts.
fn line_of(file: &Path, text: &str) -> Result<usize> {
    let content = std::fs::read_to_string(file)?;
    let at = content.find(text).context("text in the file")?;
    Ok(content[..at].matches('\n').count() + 1)
}

/// `weir` with `args`, the token in the environment, no address in the environment.
fn cli(args: &[&str]) -> Result<Output> {
    Ok(weir()
        .env("WEIR_ADMIN_TOKEN", TOKEN)
        .env_remove("WEIR_ADMIN")
        .env_remove("WEIR_ADMIN_CA")
        .args(args)
        .output()?)
}

fn said(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one error line of a command that failed (other lines may be log warnings).
fn error_line(out: &Output) -> String {
    let all = said(out);
    let errors: Vec<&str> = all
        .lines()
        .filter(|l| l.starts_with("weir: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "not one error line: {all}");
    errors[0].to_string()
}

/// How long until the server closes `stream` (a read returns end of file or an error),
/// writing `trickle` to it one byte every `every` meanwhile; `None` if it stays open for
/// [`PATIENCE`].
fn closed_after(stream: &TcpStream, trickle: &[u8], every: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut reader = stream.try_clone().ok()?;
    let done = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&done);
    let watcher = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        *seen.lock().unwrap() = Some(started.elapsed());
    });
    let mut writer = stream.try_clone().ok()?;
    let mut bytes = trickle.iter();
    while started.elapsed() < PATIENCE && done.lock().unwrap().is_none() {
        if let Some(b) = bytes.next() {
            let _ = writer.write_all(&[*b]);
        }
        std::thread::sleep(every);
    }
    let _ = stream.shutdown(Shutdown::Both);
    watcher.join().ok()?;
    let took = *done.lock().unwrap();
    took.filter(|t| *t < PATIENCE)
}

/// The status of the answer to `request`, sent whole on a new connection.
fn status_of(addr: &str, request: &[u8]) -> Result<u16> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.write_all(request)?;
    read_status(&mut stream)
}

/// The status code of the answer's status line.
fn read_status(stream: &mut TcpStream) -> Result<u16> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf)?;
        ensure!(n > 0, "closed before an answer: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    let code = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .with_context(|| format!("not an HTTP answer: {text}"))?;
    Ok(code.parse()?)
}

fn get_stages(addr: &str) -> Vec<u8> {
    format!(
        "GET /stages HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// A head trickled a byte at a time is cut at `header_timeout`, even though bytes keep
/// coming (so the idle timeout never applies); a head over 16 KiB is refused with 431.
#[test]
fn a_head_sent_a_byte_at_a_time_is_cut_at_the_header_timeout() -> Result<()> {
    let dir = Dir::new()?;
    let file = pipeline(
        &dir,
        &format!(
            "listen = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\nheader_timeout = \"1s\"\n\
             idle_timeout = \"20s\"\nbody_timeout = \"20s\""
        ),
    )?;
    let live = Live::start(&file)?;
    let stream = TcpStream::connect(&live.addr)?;
    let head = b"GET /stages HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let took = closed_after(&stream, head, Duration::from_millis(50))
        .context("a trickled head was never cut")?;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "cut after {took:?}, not at the 1 s header timeout"
    );

    let mut huge = format!("GET /stages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n");
    for i in 0..400 {
        huge.push_str(&format!("X-Pad-{i}: {}\r\n", "p".repeat(40)));
    }
    huge.push_str("\r\n");
    assert_eq!(
        status_of(&live.addr, huge.as_bytes())?,
        431,
        "a 20 KiB head"
    );
    assert_eq!(status_of(&live.addr, &get_stages(&live.addr))?, 200);
    live.finish()?;
    Ok(())
}

/// A connection that sends nothing, and one kept alive after its answer, are closed at
/// `idle_timeout`, long before the header timeout.
#[test]
fn a_silent_or_kept_alive_connection_is_closed_at_the_idle_timeout() -> Result<()> {
    let dir = Dir::new()?;
    let file = pipeline(
        &dir,
        &format!(
            "listen = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\nheader_timeout = \"20s\"\n\
             idle_timeout = \"500ms\""
        ),
    )?;
    let live = Live::start(&file)?;
    let silent = TcpStream::connect(&live.addr)?;
    let took = closed_after(&silent, b"", Duration::from_millis(10))
        .context("a silent connection was never closed")?;
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(8),
        "closed after {took:?}, not at the 500 ms idle timeout"
    );

    let mut kept = TcpStream::connect(&live.addr)?;
    kept.set_read_timeout(Some(PATIENCE))?;
    let request =
        format!("GET /stages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    kept.write_all(request.as_bytes())?;
    assert_eq!(read_status(&mut kept)?, 200);
    let took = closed_after(&kept, b"", Duration::from_millis(10))
        .context("a kept-alive connection was never closed")?;
    assert!(took < Duration::from_secs(8), "closed after {took:?}");
    live.finish()?;
    Ok(())
}

/// A body sent slowly gets 408 at `body_timeout`; its request slot is free again after; a
/// body over the route's cap gets 413, and a request without the token still gets 401 before
/// any body is read.
#[test]
fn a_body_sent_slowly_gets_408_at_the_body_timeout_and_one_over_its_cap_413() -> Result<()> {
    let dir = Dir::new()?;
    let file = pipeline(
        &dir,
        &format!(
            "listen = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\nheader_timeout = \"20s\"\n\
             idle_timeout = \"20s\"\nbody_timeout = \"1s\""
        ),
    )?;
    let live = Live::start(&file)?;
    // More slow bodies than there are request slots (4): each is cut, none starves the next.
    let mut slow = Vec::new();
    for _ in 0..6 {
        let mut stream = TcpStream::connect(&live.addr)?;
        stream.set_read_timeout(Some(PATIENCE))?;
        let head = format!(
            "PUT /stages/pass/settings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"a\""
        );
        stream.write_all(head.as_bytes())?;
        slow.push((Instant::now(), stream));
    }
    for (sent, mut stream) in slow {
        assert_eq!(read_status(&mut stream)?, 408);
        let took = sent.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(12),
            "408 after {took:?}"
        );
    }
    let no_token = b"PUT /stages/pass/settings HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    assert_eq!(status_of(&live.addr, no_token)?, 401);
    let mut over = TcpStream::connect(&live.addr)?;
    over.set_read_timeout(Some(PATIENCE))?;
    let head = format!(
        "PUT /stages/pass/settings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 70000\r\n\r\n"
    );
    over.write_all(head.as_bytes())?;
    // The server may answer and close before it has read it all.
    let _ = over.write_all(&[b' '; 70_000]);
    assert_eq!(read_status(&mut over)?, 413, "settings over 64 KiB");
    assert_eq!(status_of(&live.addr, &get_stages(&live.addr))?, 200);
    live.finish()?;
    Ok(())
}

/// With `max_connections = 4`, a fifth connection is closed at once, a flood of 200 leaves
/// weir's file descriptors where they were, and a closed slot serves again.
#[test]
fn connections_over_the_cap_are_closed_at_once_and_file_descriptors_stay_bounded() -> Result<()> {
    let dir = Dir::new()?;
    let file = pipeline(
        &dir,
        &format!(
            "listen = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\nheader_timeout = \"30s\"\n\
             idle_timeout = \"30s\"\nmax_connections = 4"
        ),
    )?;
    let live = Live::start(&file)?;
    let before = live.open_fds()?;
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(&live.addr))
        .collect::<Result<_, _>>()?;
    // Let the server accept them all before the next one comes.
    std::thread::sleep(Duration::from_millis(300));
    let fifth = TcpStream::connect(&live.addr)?;
    let took = closed_after(&fifth, b"", Duration::from_millis(10))
        .context("the fifth connection stayed open")?;
    assert!(took < Duration::from_secs(3), "closed after {took:?}");

    let flood: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(&live.addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = live.open_fds()?;
    assert!(
        during <= before + 4 + 8,
        "{during} descriptors open with 4 held and 200 refused, {before} before"
    );
    drop(flood);

    drop(held.pop());
    let deadline = Instant::now() + PATIENCE;
    while status_of(&live.addr, &get_stages(&live.addr)).ok() != Some(200) {
        ensure!(Instant::now() < deadline, "the freed slot never served");
        std::thread::sleep(Duration::from_millis(50));
    }
    live.finish()?;
    Ok(())
}

/// When the pipeline ends, idle connections do not hold its exit: it takes far less than
/// their timeouts.
#[test]
fn the_end_of_the_pipeline_does_not_wait_for_idle_connections() -> Result<()> {
    let dir = Dir::new()?;
    let file = pipeline(
        &dir,
        &format!(
            "listen = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\nheader_timeout = \"1h\"\n\
             idle_timeout = \"1h\""
        ),
    )?;
    let live = Live::start(&file)?;
    let _silent = TcpStream::connect(&live.addr)?;
    let mut kept = TcpStream::connect(&live.addr)?;
    kept.set_read_timeout(Some(PATIENCE))?;
    let request =
        format!("GET /stages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    kept.write_all(request.as_bytes())?;
    assert_eq!(read_status(&mut kept)?, 200);
    let took = live.finish()?;
    assert!(took < Duration::from_secs(4), "weir took {took:?} to exit");
    Ok(())
}

/// The admin API over TLS: `weir stages` with `https://` trusts the private CA given by
/// `--tls-ca` or WEIR_ADMIN_CA, and without it says how to trust it; plain HTTP to the TLS
/// port fails; a connection that never starts its handshake is closed at `header_timeout`.
#[test]
fn the_admin_api_serves_tls_and_the_cli_trusts_a_private_ca() -> Result<()> {
    let dir = Dir::new()?;
    make_certificates(&dir)?;
    let file = pipeline(
        &dir,
        &format!(
            "listen = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\ntls_cert = \"cert.pem\"\n\
             tls_key = \"key.pem\"\nheader_timeout = \"1s\"\nidle_timeout = \"20s\""
        ),
    )?;
    let live = Live::start(&file)?;
    assert!(live.stderr().contains("admin API listening on https://"));
    let url = format!("https://127.0.0.1:{}", live.port());
    let ca = dir.path("ca.pem");
    let ca = ca.to_str().context("path")?;

    let out = cli(&["stages", "--json", "--admin", &url, "--tls-ca", ca])?;
    assert!(out.status.success(), "{}", said(&out));
    let stages: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(stages[0]["name"], "pass", "{stages:#}");

    let out = weir()
        .env("WEIR_ADMIN_TOKEN", TOKEN)
        .env("WEIR_ADMIN", format!("https://localhost:{}", live.port()))
        .env("WEIR_ADMIN_CA", ca)
        .args(["stages"])
        .output()?;
    assert!(out.status.success(), "{}", said(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pass: version 1"));

    let out = cli(&["stages", "--admin", &url])?;
    assert_eq!(out.status.code(), Some(1));
    let e = error_line(&out);
    assert!(e.contains("TLS") && e.contains("--tls-ca FILE"), "{e}");

    let out = cli(&[
        "stages",
        "--admin",
        &format!("http://127.0.0.1:{}", live.port()),
    ])?;
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));

    let silent = TcpStream::connect(&live.addr)?;
    let took = closed_after(&silent, b"", Duration::from_millis(10))
        .context("a handshake that never starts was never cut")?;
    assert!(took < Duration::from_secs(8), "cut after {took:?}");
    live.finish()?;
    Ok(())
}

/// An address beyond loopback is refused without TLS, at `weir check` and `weir run`, naming
/// the file, the line and `admin.listen`, and how to fix it; with `tls_cert` and `tls_key` it
/// passes. Half a TLS pair, or a key that is not the certificate's, is refused too.
#[test]
fn a_listen_address_beyond_loopback_is_refused_without_tls() -> Result<()> {
    let dir = Dir::new()?;
    make_certificates(&dir)?;
    let file = pipeline(
        &dir,
        &format!("listen = \"0.0.0.0:7878\"\ntoken = \"{TOKEN}\""),
    )?;
    let line = line_of(&file, "listen =")?;
    for command in ["check", "run"] {
        let out = weir()
            .arg(command)
            .arg(&file)
            .stdin(Stdio::null())
            .output()?;
        assert_eq!(out.status.code(), Some(2), "{command}: {}", said(&out));
        let e = error_line(&out);
        let place = format!(
            "{}:{line}: `admin.listen`: `0.0.0.0:7878` is beyond loopback",
            file.display()
        );
        assert!(e.contains(&place), "{command}: {e}");
        assert!(e.contains("set `tls_cert` and `tls_key`"), "{e}");
    }

    let with_tls = |extra: &str| -> Result<Output> {
        let file = pipeline(
            &dir,
            &format!("listen = \"0.0.0.0:7878\"\ntoken = \"{TOKEN}\"\n{extra}"),
        )?;
        Ok(weir().arg("check").arg(&file).output()?)
    };
    let out = with_tls("tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"")?;
    assert!(out.status.success(), "{}", said(&out));
    let out = with_tls("tls_cert = \"cert.pem\"")?;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        said(&out).contains("`admin.tls_cert`: `tls_cert` needs `tls_key` too"),
        "{}",
        said(&out)
    );
    let out = with_tls("tls_cert = \"cert.pem\"\ntls_key = \"ca.pem\"")?;
    assert_eq!(out.status.code(), Some(2));
    assert!(said(&out).contains("`admin.tls_key`: "), "{}", said(&out));
    assert!(
        said(&out).contains("no private key in it"),
        "{}",
        said(&out)
    );
    let out = with_tls("tls_cert = \"cert.pem\"\ntls_key = \"ca-key.pem\"")?;
    assert_eq!(out.status.code(), Some(2));
    let e = error_line(&out);
    assert!(
        e.contains("`admin.tls_key`: ") && e.contains("does not fit"),
        "{e}"
    );
    Ok(())
}

/// The token from a file: `token_file` in `[admin]` and `--token-file` on the command line,
/// each refused when others than its owner may read it; `--token` works, with a warning that
/// every local user sees it, and WEIR_ADMIN_TOKEN without one.
#[test]
fn a_token_file_serves_unless_others_may_read_it() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::new()?;
    let token_file = dir.write("token", &format!("{TOKEN}\n"))?;
    let mode = |m: u32| std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(m));
    let file = pipeline(&dir, "listen = \"127.0.0.1:0\"\ntoken_file = \"token\"")?;
    mode(0o644)?;
    let out = weir().arg("check").arg(&file).output()?;
    assert_eq!(out.status.code(), Some(2));
    let e = said(&out);
    let line = line_of(&file, "token_file")?;
    assert!(e.contains(&format!(":{line}: `admin.token_file`:")), "{e}");
    assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");

    mode(0o600)?;
    let live = Live::start(&file)?;
    let path = token_file.to_str().context("path")?;
    let out = weir()
        .env_remove("WEIR_ADMIN_TOKEN")
        .args(["stages", "--admin", live.port(), "--token-file", path])
        .output()?;
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).is_empty(), "{}", said(&out));

    let out = weir()
        .env_remove("WEIR_ADMIN_TOKEN")
        .args(["stages", "--admin", live.port(), "--token", TOKEN])
        .output()?;
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("`--token` shows the token to every local user"));

    let out = cli(&["stages", "--admin", live.port()])?;
    assert!(
        out.status.success() && said(&out).is_empty(),
        "{}",
        said(&out)
    );

    mode(0o640)?;
    let out = weir()
        .env_remove("WEIR_ADMIN_TOKEN")
        .args(["stages", "--admin", live.port(), "--token-file", path])
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let e = said(&out);
    assert!(
        e.contains("`--token-file") && e.contains("chmod 600"),
        "{e}"
    );
    live.finish()?;
    Ok(())
}

/// `--admin` takes a port, HOST:PORT or a URL, and WEIR_ADMIN stands in for it; anything
/// else is refused with what to write.
#[test]
fn the_admin_address_is_a_port_a_url_or_weir_admin() -> Result<()> {
    let dir = Dir::new()?;
    let file = pipeline(
        &dir,
        &format!("listen = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\""),
    )?;
    let live = Live::start(&file)?;
    let port = live.port().to_string();
    for addr in [
        port.clone(),
        format!("127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}/"),
    ] {
        let out = cli(&["stages", "--admin", &addr])?;
        assert!(out.status.success(), "--admin {addr}: {}", said(&out));
    }
    let out = weir()
        .env("WEIR_ADMIN_TOKEN", TOKEN)
        .env("WEIR_ADMIN", format!("http://127.0.0.1:{port}"))
        .arg("stages")
        .output()?;
    assert!(out.status.success(), "WEIR_ADMIN: {}", said(&out));

    let out = cli(&["stages", "--admin", "http://127.0.0.1"])?;
    assert_eq!(out.status.code(), Some(2));
    let e = said(&out);
    assert!(
        e.contains("`--admin`: `http://127.0.0.1` is not an admin address: write PORT"),
        "{e}"
    );
    let out = weir()
        .env("WEIR_ADMIN_TOKEN", TOKEN)
        .env("WEIR_ADMIN", "nowhere")
        .arg("stages")
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(said(&out).contains("WEIR_ADMIN: `nowhere` is not an admin address"));
    live.finish()?;
    Ok(())
}

/// `weir stages` with nothing listening says how to turn the admin API on; `weir reload`
/// without a change names both `--plugin` and `--set`; a missing token says where to put it.
#[test]
fn the_admin_commands_say_what_is_missing() -> Result<()> {
    let free = TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port()
        .to_string();
    let out = cli(&["stages", "--admin", &free])?;
    assert_eq!(out.status.code(), Some(1));
    let e = error_line(&out);
    assert!(
        e.contains("connection refused") && e.contains("`[admin]` table with `listen`"),
        "{e}"
    );
    assert!(e.contains("`token_env`, `token_file` or `token`"), "{e}");

    let out = cli(&["reload", "--stage", "pass"])?;
    assert_eq!(out.status.code(), Some(2));
    let e = said(&out);
    assert!(
        e.contains("--plugin <FILE>") && e.contains("--set <KEY=VALUE>"),
        "{e}"
    );

    let out = weir()
        .env_remove("WEIR_ADMIN_TOKEN")
        .args(["stages", "--admin", &free])
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(said(&out).contains("give `--token-file FILE` or set WEIR_ADMIN_TOKEN"));
    Ok(())
}

/// An admin port already taken stops `weir run` before any event, with exit 2 naming the
/// file, the line and `admin.listen`.
#[test]
fn a_busy_admin_port_is_refused_naming_the_file_and_line() -> Result<()> {
    let taken = TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?;
    let dir = Dir::new()?;
    let file = pipeline(&dir, &format!("listen = \"{addr}\"\ntoken = \"{TOKEN}\""))?;
    let out = weir().arg("run").arg(&file).stdin(Stdio::null()).output()?;
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    let e = error_line(&out);
    let line = line_of(&file, "listen =")?;
    let place = format!(
        "{}:{line}: `admin.listen`: `{addr}` is in use",
        file.display()
    );
    assert!(e.contains(&place), "{e}");
    Ok(())
}
