//! A real NATS server for the tests: Debian's `nats-server`, started on a free loopback port
//! with JetStream in a temporary folder, and a small blocking [`Client`] to fill and read its
//! streams (shared with the three-node cluster of `nats_cluster`, and with the workloads
//! harness's W4, `host/benches/workloads/w4.rs`).
//!
//! [`NatsServer::start`] returns `None`, after saying why on stderr, when `nats-server` is
//! not installed and `WEIR_REQUIRE_NATS` is unset: a developer without it still runs every
//! other test. CI installs it and sets the variable, so there a missing server fails.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use async_nats::jetstream::{self, stream};

/// A running `nats-server`, killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    store: tempfile::TempDir,
    client: Option<Client>,
}

/// Whether the tests must have a server (CI), rather than skip without one.
fn required() -> bool {
    std::env::var_os("WEIR_REQUIRE_NATS").is_some_and(|v| !v.is_empty())
}

/// The `nats-server` binary, or `None` (after saying why the test `test` is skipped) when it
/// is not installed and not required.
pub fn installed(test: &str) -> Result<Option<PathBuf>> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file());
    if found.is_none() {
        if required() {
            bail!("nats-server is not installed, and WEIR_REQUIRE_NATS is set");
        }
        eprintln!(
            "skipping {test}: nats-server is not installed (apt-get install nats-server; set WEIR_REQUIRE_NATS=1 to make this a failure)"
        );
    }
    Ok(found)
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl NatsServer {
    /// Starts a server, or returns `None` (test skipped) when there is none to start and
    /// none is required.
    pub fn start(test: &str) -> Result<Option<NatsServer>> {
        let Some(binary) = installed(test)? else {
            return Ok(None);
        };
        let mut server = NatsServer {
            child: None,
            port: free_port()?,
            store: tempfile::tempdir()?,
            client: None,
        };
        server.spawn(&binary)?;
        Ok(Some(server))
    }

    fn spawn(&mut self, binary: &Path) -> Result<()> {
        let child = Command::new(binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start nats-server")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let last = match Client::connect(&self.url()) {
                Ok(client) => {
                    self.client = Some(client);
                    return Ok(());
                }
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "nats-server did not answer on port {} in 20 s: {last}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id, while it runs (the workloads harness reads its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (`kill -9`), keeping its store.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.client = None;
        self.spawn(&installed("a restart")?.context("nats-server")?)
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("connected")
    }

    /// Creates a stream capturing `subjects`, with a duplicate window of two minutes.
    pub fn stream(&self, name: &str, subjects: &[&str]) -> Result<()> {
        self.client().stream(name, subjects, 1)
    }

    /// Publishes each payload to `subject`, waiting for every PubAck.
    pub fn publish(&self, subject: &str, payloads: &[String]) -> Result<()> {
        self.client().publish(subject, payloads)
    }

    /// Publishes each `(key, payload)`, in order, to `subject(key)` with the key in header
    /// `header`, waiting for every PubAck.
    pub fn publish_keyed(
        &self,
        subject: &dyn Fn(&str) -> String,
        header: &str,
        keyed: &[(String, String)],
    ) -> Result<()> {
        self.client().publish_keyed(subject, header, keyed)
    }

    /// How many messages the stream holds.
    pub fn count(&self, name: &str) -> Result<u64> {
        self.client().count(name)
    }

    /// Every message the stream holds, in order: payload and headers.
    pub fn messages(&self, name: &str) -> Result<Vec<Message>> {
        self.client().messages(name)
    }

    /// The durable consumer's counts.
    pub fn consumer(&self, stream: &str, consumer: &str) -> Result<ConsumerCounts> {
        self.client().consumer(stream, consumer)
    }

    /// Where the store lives (for a test that restarts the server).
    pub fn store(&self) -> &std::path::Path {
        self.store.path()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking JetStream client: a runtime of its own, entered only for each call.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    client: async_nats::Client,
}

impl Client {
    /// Connects to `urls` (one, or several separated by commas) once JetStream answers there.
    pub fn connect(urls: &str) -> Result<Client> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let servers: Vec<&str> = urls.split(',').collect();
        let client = runtime.block_on(async move {
            let client = async_nats::connect(servers).await?;
            // JetStream answers once it has recovered its store (and, in a cluster, once
            // the cluster has a meta leader). A raw request: the client's typed account
            // info does not parse 2.9's.
            let info = client.request("$JS.API.INFO", "".into()).await?;
            let text = String::from_utf8_lossy(&info.payload);
            ensure!(
                !text.contains("\"error\""),
                "JetStream is not ready: {text}"
            );
            anyhow::Ok(client)
        })?;
        Ok(Client { runtime, client })
    }

    fn js(&self) -> jetstream::Context {
        // The context spawns a task of its own: it needs the runtime entered.
        let _inside = self.runtime.enter();
        jetstream::new(self.client.clone())
    }

    /// Creates a stream capturing `subjects` on `replicas` servers, with a duplicate window
    /// of two minutes.
    pub fn stream(&self, name: &str, subjects: &[&str], replicas: usize) -> Result<()> {
        let js = self.js();
        let config = stream::Config {
            name: name.to_string(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            duplicate_window: Duration::from_secs(120),
            num_replicas: replicas,
            ..Default::default()
        };
        self.runtime.block_on(js.create_stream(config))?;
        Ok(())
    }

    /// Whether stream `name` has a leader and a majority of its group current (always true
    /// on a single server): until then a publish may find no one to store it.
    pub fn stream_ready(&self, name: &str) -> Result<bool> {
        let js = self.js();
        let name = name.to_string();
        self.runtime.block_on(async move {
            let mut stream = js.get_stream(&name).await?;
            let info = stream.info().await?;
            anyhow::Ok(info.cluster.as_ref().is_none_or(|c| {
                let current = c
                    .replicas
                    .iter()
                    .filter(|r| r.current && !r.offline)
                    .count();
                // The leader and the current replicas, of the leader and all replicas.
                c.leader.is_some() && 2 * (current + 1) > c.replicas.len() + 1
            }))
        })
    }

    /// Publishes each payload to `subject`, waiting for every PubAck.
    pub fn publish(&self, subject: &str, payloads: &[String]) -> Result<()> {
        let js = self.js();
        let subject = subject.to_string();
        self.runtime.block_on(async move {
            for chunk in payloads.chunks(1000) {
                let mut acks = Vec::with_capacity(chunk.len());
                for p in chunk {
                    acks.push(js.publish(subject.clone(), p.clone().into()).await?);
                }
                for ack in acks {
                    ack.await?;
                }
            }
            anyhow::Ok(())
        })
    }

    /// Publishes each `(key, payload)`, in order, to `subject(key)` with the key in header
    /// `header`, waiting for every PubAck.
    pub fn publish_keyed(
        &self,
        subject: &dyn Fn(&str) -> String,
        header: &str,
        keyed: &[(String, String)],
    ) -> Result<()> {
        let js = self.js();
        self.runtime.block_on(async move {
            for chunk in keyed.chunks(1000) {
                let mut acks = Vec::with_capacity(chunk.len());
                for (key, payload) in chunk {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(header, key.as_str());
                    let published = js
                        .publish_with_headers(subject(key), headers, payload.clone().into())
                        .await?;
                    acks.push(published);
                }
                for ack in acks {
                    ack.await?;
                }
            }
            anyhow::Ok(())
        })
    }

    /// How many messages the stream holds.
    pub fn count(&self, name: &str) -> Result<u64> {
        let js = self.js();
        let name = name.to_string();
        self.runtime.block_on(async move {
            let mut stream = js.get_stream(&name).await?;
            anyhow::Ok(stream.info().await?.state.messages)
        })
    }

    /// Every message the stream holds, in order: payload and headers.
    pub fn messages(&self, name: &str) -> Result<Vec<Message>> {
        let js = self.js();
        let name = name.to_string();
        self.runtime.block_on(async move {
            let mut stream = js.get_stream(&name).await?;
            let info = stream.info().await?;
            let (first, last) = (info.state.first_sequence, info.state.last_sequence);
            let mut out = Vec::new();
            if info.state.messages == 0 {
                return Ok(out);
            }
            for seq in first..=last {
                let Ok(raw) = stream.get_raw_message(seq).await else {
                    continue;
                };
                let headers = raw
                    .headers
                    .iter()
                    .flat_map(|(n, vs)| {
                        let n: &str = n.as_ref();
                        vs.iter()
                            .map(move |v| (n.to_string(), v.as_str().to_string()))
                    })
                    .collect();
                out.push(Message {
                    subject: raw.subject.to_string(),
                    payload: String::from_utf8_lossy(&raw.payload).into_owned(),
                    headers,
                });
            }
            anyhow::Ok(out)
        })
    }

    /// The durable consumer's counts: messages not yet delivered, delivered and not acked,
    /// and redelivered.
    pub fn consumer(&self, stream: &str, consumer: &str) -> Result<ConsumerCounts> {
        let js = self.js();
        let (stream, consumer) = (stream.to_string(), consumer.to_string());
        self.runtime.block_on(async move {
            let s = js.get_stream(&stream).await?;
            let mut c: jetstream::consumer::PullConsumer = s
                .get_consumer(&consumer)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let info = c.info().await?;
            anyhow::Ok(ConsumerCounts {
                pending: info.num_pending,
                ack_pending: info.num_ack_pending as u64,
                redelivered: info.num_redelivered as u64,
                waiting: info.num_waiting as u64,
                deliveries: info.delivered.consumer_sequence,
            })
        })
    }
}

/// A message as a stream holds it.
#[derive(Debug, Clone)]
pub struct Message {
    pub subject: String,
    pub payload: String,
    pub headers: Vec<(String, String)>,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Counts of a durable consumer.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerCounts {
    pub pending: u64,
    pub ack_pending: u64,
    pub redelivered: u64,
    /// Pull requests waiting on the server: one per process pulling.
    pub waiting: u64,
    /// Deliveries so far, redeliveries included.
    pub deliveries: u64,
}

/// Checks that `expected` are each in `payloads` exactly once, and nothing else is.
pub fn exactly_once(payloads: &[String], expected: &[String]) -> Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for p in payloads {
        *seen.entry(p.as_str()).or_default() += 1;
    }
    let missing = expected
        .iter()
        .filter(|e| !seen.contains_key(e.as_str()))
        .count();
    let twice = seen.values().filter(|&&n| n > 1).count();
    let wanted: HashSet<&str> = expected.iter().map(String::as_str).collect();
    let strange = seen.keys().filter(|p| !wanted.contains(*p)).count();
    ensure!(
        missing == 0 && twice == 0 && strange == 0,
        "{missing} missing, {twice} more than once, {strange} never sent, of {}",
        expected.len()
    );
    Ok(())
}
