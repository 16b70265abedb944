//! A real NATS server for the tests: Debian's `nats-server`, started on a free loopback port
//! with JetStream in a temporary folder, and a small blocking client to fill and read its
//! streams.
//!
//! [`NatsServer::start`] returns `None`, after saying why on stderr, when `nats-server` is
//! not installed and `WEIR_REQUIRE_NATS` is unset: a developer without it still runs every
//! other test. CI installs it and sets the variable, so there a missing server fails.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_nats::jetstream::{self, stream};

/// A running `nats-server`, killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    store: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    client: Option<async_nats::Client>,
}

/// Whether the tests must have a server (CI), rather than skip without one.
fn required() -> bool {
    std::env::var_os("WEIR_REQUIRE_NATS").is_some_and(|v| !v.is_empty())
}

fn installed() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl NatsServer {
    /// Starts a server, or returns `None` (test skipped) when there is none to start and
    /// none is required.
    pub fn start(test: &str) -> Result<Option<NatsServer>> {
        let Some(_) = installed() else {
            if required() {
                bail!("nats-server is not installed, and WEIR_REQUIRE_NATS is set");
            }
            eprintln!(
                "skipping {test}: nats-server is not installed (apt-get install nats-server; set WEIR_REQUIRE_NATS=1 to make this a failure)"
            );
            return Ok(None);
        };
        let mut server = NatsServer {
            child: None,
            port: free_port()?,
            store: tempfile::tempdir()?,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            client: None,
        };
        server.spawn()?;
        Ok(Some(server))
    }

    fn spawn(&mut self) -> Result<()> {
        let binary = installed().context("nats-server")?;
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
        let mut last: String;
        loop {
            let url = self.url();
            let connected = self.runtime.block_on(async move {
                let client = async_nats::connect(&url).await?;
                // JetStream answers once it has recovered its store.
                // (A raw request: the client's typed account info does not parse 2.9's.)
                client.request("$JS.API.INFO", "".into()).await?;
                anyhow::Ok(client)
            });
            match connected {
                Ok(client) => {
                    self.client = Some(client);
                    return Ok(());
                }
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() > deadline {
                bail!(
                    "nats-server did not answer on port {} in 20 s: {last}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
        self.spawn()
    }

    fn js(&self) -> jetstream::Context {
        // The context spawns a task of its own: it needs the runtime entered.
        let _inside = self.runtime.enter();
        jetstream::new(self.client.clone().expect("connected"))
    }

    /// Creates a stream capturing `subjects`, with a duplicate window of two minutes.
    pub fn stream(&self, name: &str, subjects: &[&str]) -> Result<()> {
        let js = self.js();
        let config = stream::Config {
            name: name.to_string(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        self.runtime.block_on(js.create_stream(config))?;
        Ok(())
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

/// A message as a stream holds it.
#[derive(Debug, Clone)]
pub struct Message {
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
