//! The control plane: hot loading of new stage versions into a running pipeline.
//!
//! Changes reach a stage from three triggers: the admin API (`server`, its routes, served by
//! a [`crate::http`] listener that holds connections to their limits and checks the token;
//! the `weir reload`, `weir rollback` and `weir stages` commands call it through `client`),
//! the plugin file watcher (`watch`), and the canary guard (`canary`). Each reloadable stage
//! has one actor (`actor`) that takes those changes as commands, one at a time, prepares each
//! new version off the data path and swaps it into the stage's
//! [`StageHandle`](crate::pipeline::stage::StageHandle); `history` keeps a stage's versions.
//! The actor also writes the handle's hot-load record (the live version's number, the counts
//! of swaps, refusals and rollbacks), which the observer reads from the handle.
//! [`Control`] is the front door the server uses: it routes a request to the right actor and
//! builds the answers the API defines in `api`.
//!
//! A stage's actor also starts, promotes and stops its shadow: a candidate version prepared
//! like a reload that runs beside the live one on copies of its input batches
//! ([`crate::pipeline::stage::shadow`]); a reload or rollback ends it.
//!
//! The admin API also serves routes it is handed ([`ExtraRoutes`]): the observe module's
//! `weir top` snapshot and `weir tap` streams behind the token, and, when `[metrics]` shares
//! the admin API's address, the metrics routes open to all.
//!
//! The data plane knows nothing of this module: it only reads the version handle before each
//! batch and records what each batch did.

pub(crate) mod actor;
pub mod api;
pub mod client;
mod history;
mod server;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use notify_debouncer_mini::Debouncer;
use notify_debouncer_mini::notify::RecommendedWatcher;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use weir_sandbox::PluginError;

use crate::config::{Admin, ConfigError};
use crate::control::actor::{Actor, COMMAND_QUEUE, Command};
use crate::control::api::{Origin, ShadowStatus, StageInfo, VersionInfo};
use crate::control::history::History;
use crate::http::{self, STOP_GRACE};
use crate::pipeline::Topology;
use crate::pipeline::stage::StageHandle;
use crate::pipeline::state::StageState;

pub use crate::pipeline::stage::canary::{Verdict, judge};
pub use history::MAX_KEPT_VERSIONS;
pub use watch::WATCH_DEBOUNCE;

/// Why a change was not applied. In every case the old version keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no stage is named `{0}`")]
    UnknownStage(String),
    #[error("stage `{0}` runs native code, not a plugin: it cannot be reloaded")]
    NotReloadable(String),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("stage `{stage}`: the new version failed to start: {message}")]
    Init { stage: String, message: String },
    #[error("stage `{0}` has no earlier version to roll back to")]
    NoPrevious(String),
    #[error("stage `{stage}`: setting `{key}`: {message}")]
    Setting {
        stage: String,
        key: String,
        message: String,
    },
    #[error("stage `{0}` keeps no state: its plugin does not import weir:stage/state")]
    NoState(String),
    #[error("stage `{stage}`: line {line} of the import: {message}")]
    Import {
        stage: String,
        line: usize,
        message: String,
    },
    #[error(
        "stage `{0}` runs no shadow: start one with `weir reload --stage {0} --plugin FILE --shadow`"
    )]
    NoShadow(String),
    #[error("the shadow's sample rate {0} is out of range: give a share above 0 and at most 1")]
    Sample(String),
    #[error("{0}")]
    Internal(String),
}

/// Why hot loading could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The admin API's address cannot be bound: an error of the pipeline file's
    /// `admin.listen`, with its file and line.
    #[error(transparent)]
    Listen(ConfigError),
    #[error("stage `{stage}`: cannot watch {path}: {message}")]
    Watch {
        stage: String,
        path: PathBuf,
        message: String,
    },
}

/// One stage as the control plane sees it.
struct StageControl {
    handle: Arc<StageHandle>,
    /// The actor's channel and the history it keeps; `None` for a stage running native code.
    actor: Option<(mpsc::Sender<Command>, Arc<Mutex<History>>)>,
}

/// The front door to every stage's actor.
pub struct Control {
    stages: BTreeMap<String, StageControl>,
}

impl Control {
    fn stage(&self, name: &str) -> Result<&StageControl, ReloadError> {
        self.stages
            .get(name)
            .ok_or_else(|| ReloadError::UnknownStage(name.to_string()))
    }

    /// Every stage, its live version and its history.
    pub fn stages(&self) -> Vec<StageInfo> {
        self.stages.values().map(StageControl::info).collect()
    }

    /// The stage's keyed state, if a version of it keeps state.
    pub fn state(&self, name: &str) -> Result<Arc<StageState>, ReloadError> {
        let state = &self.stage(name)?.handle.state;
        if !state.attached() {
            return Err(ReloadError::NoState(name.to_string()));
        }
        Ok(Arc::clone(state))
    }

    /// One stage, its live version and its history.
    pub fn stage_info(&self, name: &str) -> Result<StageInfo, ReloadError> {
        Ok(self.stage(name)?.info())
    }

    /// Makes `bytes` the stage's plugin, keeping its settings. `trigger` is when the change
    /// was asked for, from which the swap latency is measured.
    pub async fn load_plugin(
        &self,
        stage: &str,
        bytes: Vec<u8>,
        origin: Origin,
        trigger: Instant,
    ) -> Result<VersionInfo, ReloadError> {
        self.ask(stage, |reply| Command::Plugin {
            bytes,
            origin,
            trigger,
            reply,
        })
        .await
    }

    /// Runs the stage's plugin with new settings: new instances, the same code.
    pub async fn set_settings(
        &self,
        stage: &str,
        settings: Vec<(String, String)>,
        trigger: Instant,
    ) -> Result<VersionInfo, ReloadError> {
        self.ask(stage, |reply| Command::Settings {
            settings,
            trigger,
            reply,
        })
        .await
    }

    /// Runs `bytes` beside the stage's live version on `sample` of its input batches, its
    /// outputs compared, never sent on.
    pub async fn start_shadow(
        &self,
        stage: &str,
        bytes: Vec<u8>,
        sample: f64,
    ) -> Result<ShadowStatus, ReloadError> {
        if !(sample > 0.0 && sample <= 1.0) {
            return Err(ReloadError::Sample(sample.to_string()));
        }
        self.ask(stage, |reply| Command::Shadow {
            bytes,
            sample,
            reply,
        })
        .await
    }

    /// The counts of the stage's running shadow, or of its latest one.
    pub fn shadow_status(&self, stage: &str) -> Result<ShadowStatus, ReloadError> {
        self.stage(stage)?
            .handle
            .shadow_stats()
            .map(|s| s.status())
            .ok_or_else(|| ReloadError::NoShadow(stage.to_string()))
    }

    /// Makes the running shadow the stage's live version.
    pub async fn promote_shadow(
        &self,
        stage: &str,
        trigger: Instant,
    ) -> Result<VersionInfo, ReloadError> {
        self.ask(stage, |reply| Command::Promote { trigger, reply })
            .await
    }

    /// Ends the stage's running shadow; its final counts.
    pub async fn stop_shadow(&self, stage: &str) -> Result<ShadowStatus, ReloadError> {
        self.ask(stage, |reply| Command::StopShadow { reply }).await
    }

    /// Returns the stage to the version that was live before the current one.
    pub async fn rollback(
        &self,
        stage: &str,
        trigger: Instant,
    ) -> Result<VersionInfo, ReloadError> {
        self.ask(stage, |reply| Command::Rollback { trigger, reply })
            .await
    }

    async fn ask<T>(
        &self,
        stage: &str,
        command: impl FnOnce(oneshot::Sender<Result<T, ReloadError>>) -> Command,
    ) -> Result<T, ReloadError> {
        let sc = self.stage(stage)?;
        let Some((commands, _)) = &sc.actor else {
            return Err(ReloadError::NotReloadable(stage.to_string()));
        };
        let (reply, answer) = oneshot::channel();
        let gone = || ReloadError::Internal("the pipeline is shutting down".into());
        commands.send(command(reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

impl StageControl {
    fn info(&self) -> StageInfo {
        let config = &self.handle.config;
        let counts = self.handle.counts();
        let plugin = config.plugin.display().to_string();
        let counters = self.handle.reloads.counts().into();
        let shadow = self.handle.shadow_stats().map(|s| s.status());
        match &self.actor {
            Some((_, history)) => StageInfo {
                shadow,
                ..actor::lock(history).stage_info(
                    &config.name,
                    config.watch,
                    &plugin,
                    &counts,
                    counters,
                )
            },
            None => StageInfo {
                name: config.name.clone(),
                reloadable: false,
                watch: false,
                plugin,
                live: None,
                generation: counts.generation,
                events: counts.events,
                failed: counts.failed,
                events_total: counts.total_events,
                canary: None,
                versions: Vec::new(),
                counters,
                shadow: None,
            },
        }
    }
}

/// The admin server, file watcher and actors of a running pipeline; [`Running::stop`] ends
/// them.
pub struct Running {
    pub control: Arc<Control>,
    /// Where the admin API listens, when it is on.
    pub admin_addr: Option<SocketAddr>,
    stop: CancellationToken,
    server: Option<http::Server>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    watcher: Option<Debouncer<RecommendedWatcher>>,
}

impl Running {
    /// Stops the admin server, the watcher, every actor and monitor.
    pub async fn stop(mut self) {
        self.stop.cancel();
        // Dropping the debouncer stops its thread.
        self.watcher.take();
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for Running {
    /// A run that ends early (a sink that cannot open) still stops the server and actors.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An address that cannot be bound is the pipeline file's error, at `admin.listen`.
fn listen_error(file: &Path, admin: &Admin, e: http::BindError) -> StartError {
    StartError::Listen(ConfigError {
        file: file.to_path_buf(),
        line: Some(admin.listen_line),
        key: Some("admin.listen".to_string()),
        message: e.to_string(),
    })
}

/// Routes the admin API serves beside its own: `authorized` behind its token, `open` to all.
#[derive(Default)]
pub struct ExtraRoutes {
    pub authorized: axum::Router,
    pub open: axum::Router,
}

/// Watches the files of the stages with `watch = true`. The watcher starts before the admin
/// API says it listens, and then looks at each file once: a file replaced between its load and
/// now is not missed.
async fn start_watcher(
    targets: Vec<(String, PathBuf, mpsc::Sender<Command>)>,
) -> Result<Option<Debouncer<RecommendedWatcher>>, StartError> {
    if targets.is_empty() {
        return Ok(None);
    }
    let first_looks: Vec<mpsc::Sender<Command>> =
        targets.iter().map(|(_, _, tx)| tx.clone()).collect();
    let watcher = watch::start(targets)?;
    for commands in first_looks {
        let _ = commands
            .send(Command::FileChanged {
                trigger: Instant::now(),
            })
            .await;
    }
    Ok(Some(watcher))
}

/// Starts hot loading for a pipeline that asks for it (an `[admin]` table, or a stage with
/// `watch = true`); `Ok(None)` otherwise. Must run before the topology does, so that a taken
/// admin port stops the run before any event is read.
pub async fn start(topology: &Topology, extra: ExtraRoutes) -> Result<Option<Running>, StartError> {
    let pipeline = topology.pipeline();
    let watched = pipeline
        .stages
        .iter()
        .any(|s| s.watch && topology.plugin(&s.name).is_some());
    if pipeline.admin.is_none() && !watched {
        return Ok(None);
    }
    let stop = CancellationToken::new();
    let mut stages = BTreeMap::new();
    let mut tasks = Vec::new();
    let mut targets = Vec::new();
    for stage in &pipeline.stages {
        let handle = topology
            .stage(&stage.name)
            .expect("every stage has a handle");
        let actor = match (topology.plugin(&stage.name), topology.sandbox()) {
            (Some(plugin), Some(sandbox)) => {
                let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
                let actor = Actor::new(
                    Arc::clone(&handle.config),
                    Arc::clone(&handle),
                    sandbox,
                    plugin,
                    tx.clone(),
                    stop.clone(),
                );
                let history = Arc::clone(&actor.history);
                tasks.push(tokio::spawn(actor.run(rx)));
                if stage.watch {
                    targets.push((stage.name.clone(), stage.plugin.clone(), tx.clone()));
                }
                Some((tx, history))
            }
            _ => None,
        };
        stages.insert(stage.name.clone(), StageControl { handle, actor });
    }
    let control = Arc::new(Control { stages });
    let watcher = start_watcher(targets).await?;
    let mut server = None;
    if let Some(admin) = &pipeline.admin {
        let serving = server::serve(admin, Arc::clone(&control), extra, stop.clone())
            .await
            .map_err(|e| listen_error(&pipeline.file, admin, e))?;
        // The address is printed whatever the log filter: with port 0, it is how a caller
        // finds the server.
        let scheme = if admin.tls.is_some() { "https" } else { "http" };
        crate::notice::info(&format!(
            "admin API listening on {scheme}://{}",
            serving.addr
        ));
        server = Some(serving);
    }
    Ok(Some(Running {
        control,
        admin_addr: server.as_ref().map(|s| s.addr),
        stop,
        server,
        tasks,
        watcher,
    }))
}
