//! A real three-node NATS cluster for the tests: three `nats-server`s on free loopback ports,
//! each with JetStream and a store folder of its own, joined by `cluster { routes }`, each
//! with its monitoring port open so that a test can see which node holds a client's
//! connection (`/connz`) and whether JetStream is ready there (`/healthz`).
//!
//! [`NatsCluster::start`] returns once every node reports JetStream healthy and the cluster
//! has a meta leader (a JetStream request answers without error), so streams can be created
//! at once. Like [`super::nats::NatsServer`], it returns `None` when `nats-server` is not
//! installed and `WEIR_REQUIRE_NATS` is unset.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::nats::{Client, free_port, installed};
use super::process::wait_until;

/// One node: its process (none once killed) and its ports.
struct Node {
    name: String,
    child: Option<Child>,
    port: u16,
    http_port: u16,
}

/// Three running `nats-server`s in one cluster, killed when dropped.
pub struct NatsCluster {
    nodes: Vec<Node>,
    store: tempfile::TempDir,
}

/// How long one monitoring request may take: a node busy electing leaders on a loaded
/// 2-core machine answers within this, a dead one is not waited on for ever.
const MONITOR_TIMEOUT: Duration = Duration::from_secs(10);

impl NatsCluster {
    /// Starts three nodes and waits until JetStream is ready on all of them, or returns
    /// `None` (test skipped) when there is no server to start and none is required.
    pub fn start(test: &str) -> Result<Option<NatsCluster>> {
        let Some(binary) = installed(test)? else {
            return Ok(None);
        };
        let store = tempfile::tempdir()?;
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
            .collect::<Result<_>>()?;
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route, _)| format!("nats-route://127.0.0.1:{route}"))
            .collect();
        let mut nodes = Vec::new();
        for (i, &(port, route, http_port)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let config = node_config(&name, (port, route, http_port), &routes, store.path());
            let file = store.path().join(format!("{name}.conf"));
            std::fs::write(&file, config)?;
            let log = std::fs::File::create(store.path().join(format!("{name}.log")))?;
            let child = Command::new(&binary)
                .arg("-c")
                .arg(&file)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("cannot start nats-server")?;
            nodes.push(Node {
                name,
                child: Some(child),
                port,
                http_port,
            });
        }
        let cluster = NatsCluster { nodes, store };
        cluster.wait_ready()?;
        Ok(Some(cluster))
    }

    /// Waits until every live node says JetStream is healthy and a JetStream request answers.
    pub fn wait_ready(&self) -> Result<()> {
        let live: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.live(i)).collect();
        for &i in &live {
            let node = &self.nodes[i];
            wait_until(
                &format!("JetStream healthy on {}", node.name),
                || Ok(self.polled(matches!(self.monitor(i, "/healthz"), Ok((200, _))))),
                || format!("{:?}; log: {}", self.monitor(i, "/healthz"), self.log(i)),
            )?;
        }
        wait_until(
            "the cluster's meta leader",
            || Ok(self.polled(self.client().is_ok())),
            || format!("{:?}", self.client().err()),
        )
    }

    /// Every node's client URL, separated by commas: the seed list of a pipeline.
    pub fn seeds(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(|n| url(n.port)).collect();
        urls.join(",")
    }

    /// A client connected to the live nodes (it follows the cluster if one of them dies).
    pub fn client(&self) -> Result<Client> {
        let live: Vec<String> = (0..self.nodes.len())
            .filter(|&i| self.live(i))
            .map(|i| url(self.nodes[i].port))
            .collect();
        Client::connect(&live.join(","))
    }

    /// `Some` when `ready`; else `None` after a pause, so that a cluster still electing its
    /// leaders is not flooded with connections and requests.
    fn polled(&self, ready: bool) -> Option<()> {
        if !ready {
            std::thread::sleep(Duration::from_millis(100));
        }
        ready.then_some(())
    }

    fn live(&self, node: usize) -> bool {
        self.nodes[node].child.is_some()
    }

    /// The node (index) holding the client connection called `name`, if a live one does.
    pub fn holder_of(&self, name: &str) -> Result<Option<usize>> {
        for i in (0..self.nodes.len()).filter(|&i| self.live(i)) {
            let (status, body) = self.monitor(i, "/connz?limit=1024")?;
            anyhow::ensure!(
                status == 200,
                "/connz of node {i} answered {status}: {body}"
            );
            let connz: serde_json::Value = serde_json::from_str(&body)?;
            let connections = connz["connections"].as_array().cloned().unwrap_or_default();
            if connections.iter().any(|c| c["name"] == name) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Kills node `node` at once (`kill -9`), keeping its store.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    /// A GET on node `node`'s monitoring port: status and body.
    fn monitor(&self, node: usize, path: &str) -> Result<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(MONITOR_TIMEOUT))
            .build()
            .into();
        let address = format!("http://127.0.0.1:{}{path}", self.nodes[node].http_port);
        let mut response = agent.get(address).call()?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    }

    /// The last lines node `node` logged, for a failure's message.
    pub fn log(&self, node: usize) -> String {
        let path = self.log_path(node);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn log_path(&self, node: usize) -> PathBuf {
        self.store
            .path()
            .join(format!("{}.log", self.nodes[node].name))
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in 0..self.nodes.len() {
            self.kill(node);
        }
    }
}

fn url(port: u16) -> String {
    format!("nats://127.0.0.1:{port}")
}

/// One node's configuration: its client, route and monitoring ports on loopback, every
/// node's route (a node skips the one to itself), its own store folder.
fn node_config(name: &str, ports: (u16, u16, u16), routes: &[String], store: &Path) -> String {
    let (port, route, http_port) = ports;
    let store = store.join(name);
    format!(
        "server_name: {name}\n\
         listen: \"127.0.0.1:{port}\"\n\
         http: \"127.0.0.1:{http_port}\"\n\
         jetstream {{\n  store_dir: {store:?}\n}}\n\
         cluster {{\n  name: weir\n  listen: \"127.0.0.1:{route}\"\n  routes: [{}]\n}}\n",
        routes
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
