//! Hot loading: new versions of a stage's plugin swapped into a running pipeline.
//!
//! A trigger (the admin API in [`crate::admin`], which the `weir reload` and `weir rollback`
//! commands call, or the file watcher started here for stages with `watch = true`) hands
//! [`Control`] one change for one stage: new plugin bytes, new settings, or a rollback. The
//! change is prepared off the data path, on a blocking thread: the bytes are checked, compiled
//! and checked against the `stage` world, and one instance is made and initialised with the
//! settings. Only if every step succeeds is the version swapped into the stage's [`Live`]
//! handle; otherwise the old version keeps serving and the error goes back to the caller and
//! to the log. Workers pick the new version up before their next batch, so a batch runs on
//! one version from its first call to its last and no event is processed by two versions;
//! each worker drops its old instance as it moves on.
//!
//! After a swap a monitor task reads the new generation's counts from [`Live`]: it records
//! when the version first served a batch and, when the stage's canary guard is on, rolls the
//! version back by itself if its failure rate over its first events is above the threshold.
//! Every stage keeps a short history of versions (digest, origin, load time, state); the
//! compiled code of kept versions is reused when the same digest comes back, which makes a
//! rollback or a swap back to a recent version cheap.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, DebouncedEventKind, Debouncer, new_debouncer};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Pipeline};
use crate::plugins::{self, Plugin, PluginError};
use crate::sandbox::{Sandbox, WasmStage};
use crate::stage::{Live, ProcessorFactory};

/// Versions a stage keeps (the live one, those a rollback can return to, and the last ones
/// refused by a rollback). Each holds its compiled code, so this bounds the memory that a
/// stream of uploads can make the host keep: at most this many plugins per stage.
pub const MAX_KEPT_VERSIONS: usize = 8;

/// Quiet time after the last change of a watched file before it is loaded. A plugin file is
/// often written in several steps (truncate, write, write, close); loading it halfway would
/// fail, or worse, succeed with the wrong code.
pub const WATCH_DEBOUNCE: Duration = Duration::from_millis(300);

/// How often the monitor of a new version reads its counts when no batch wakes it.
const MONITOR_TICK: Duration = Duration::from_millis(10);

/// How long the admin server may take to finish its requests once the pipeline has ended.
/// Blocks a client that holds a request open from holding the pipeline's exit.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Changes of watched files that may wait for the reloading task. The debouncer already
/// merges bursts; a full queue makes the watcher thread wait, never drop a change.
const WATCH_QUEUE: usize = 16;

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
    #[error("{0}")]
    Internal(String),
}

/// Why hot loading could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("admin API: cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("stage `{stage}`: cannot watch {path}: {message}")]
    Watch {
        stage: String,
        path: PathBuf,
        message: String,
    },
}

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Loaded when the pipeline started.
    Startup,
    /// Read from the watched plugin file.
    File,
    /// Uploaded through the admin API.
    Api,
    /// The live plugin with new settings.
    Settings,
}

/// One version of a stage: plugin and settings, and what became of it.
struct Version {
    id: u64,
    plugin: Arc<Plugin>,
    settings: Vec<(String, String)>,
    factory: Arc<dyn ProcessorFactory>,
    origin: Origin,
    loaded_at: SystemTime,
    /// When the change that made this version live was asked for.
    trigger: Instant,
    /// Trigger to swapped in: prepared, checked, initialised, live for new batches.
    ready_after: Duration,
    /// Trigger to the first batch this version finished.
    serving_after: Option<Duration>,
    /// The generation of [`Live`] in which it was last made live.
    generation: u64,
    rolled_back: Option<String>,
}

/// The live version's plugin and settings, from which a change starts.
struct Current {
    plugin: Arc<Plugin>,
    settings: Vec<(String, String)>,
}

/// Where the canary guard of the latest swap stands.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryInfo {
    pub version: u64,
    pub events: u64,
    pub failed: u64,
    /// `watching`, `passed`, `rolled-back`, or `superseded` by a later change.
    pub state: &'static str,
}

struct StageState {
    versions: VecDeque<Version>,
    live: u64,
    /// Versions a rollback returns to, the most recent last.
    previous: Vec<u64>,
    next_id: u64,
    canary: Option<CanaryInfo>,
    /// The watched file as last seen, so that an event for an unchanged file (our own read
    /// of it among them) costs a `stat`, not a reload.
    file: Option<FileSeen>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileMeta {
    len: u64,
    modified: Option<SystemTime>,
    ino: u64,
    ctime_ns: i64,
}

struct FileSeen {
    meta: FileMeta,
    digest: String,
}

#[derive(Default)]
struct Counters {
    swaps: AtomicU64,
    refused: AtomicU64,
    rollbacks: AtomicU64,
    canary_rollbacks: AtomicU64,
}

/// Hot-load counters of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct CountersInfo {
    /// New versions made live (rollbacks excluded).
    pub swaps: u64,
    /// Changes refused: the old version kept serving.
    pub refused: u64,
    /// Rollbacks, asked for or made by the canary guard.
    pub rollbacks: u64,
    pub canary_rollbacks: u64,
}

/// One stage as the hot loader sees it.
struct StageControl {
    config: Arc<config::Stage>,
    live: Arc<Live>,
    /// `None` for a stage running native code.
    sandbox: Option<Arc<Sandbox>>,
    state: Mutex<StageState>,
    /// One change at a time per stage, so that a swap and a rollback cannot interleave.
    busy: tokio::sync::Mutex<()>,
    counters: Counters,
}

/// A version as the admin API reports it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub id: u64,
    pub digest: String,
    pub short_digest: String,
    pub origin: Origin,
    pub plugin: String,
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub loaded_at_ms: u64,
    pub settings: BTreeMap<String, String>,
    /// `live`, `standby` (a rollback can return to it), `rolled-back` or `retired`.
    pub state: &'static str,
    /// Trigger to swapped in, in milliseconds.
    pub ready_ms: f64,
    /// Trigger to its first finished batch, in milliseconds.
    pub serving_ms: Option<f64>,
    pub rolled_back: Option<String>,
}

/// A stage as the admin API reports it.
#[derive(Debug, Clone, Serialize)]
pub struct StageInfo {
    pub name: String,
    pub reloadable: bool,
    pub watch: bool,
    pub plugin: String,
    pub live: Option<VersionInfo>,
    pub generation: u64,
    /// Events and failures of the live generation so far.
    pub events: u64,
    pub failed: u64,
    /// Events of every version since the start.
    pub events_total: u64,
    pub canary: Option<CanaryInfo>,
    pub versions: Vec<VersionInfo>,
    pub counters: CountersInfo,
}

/// The hot loader of a running pipeline: every stage's versions and the changes to them.
pub struct Control {
    stages: BTreeMap<String, Arc<StageControl>>,
    stop: CancellationToken,
}

/// The admin server and file watcher of a running pipeline; [`Running::stop`] ends them.
pub struct Running {
    pub control: Arc<Control>,
    /// Where the admin API listens, when it is on.
    pub admin_addr: Option<std::net::SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    watcher: Option<Debouncer<RecommendedWatcher>>,
}

impl Running {
    /// Stops the admin server, the watcher and every monitor.
    pub async fn stop(mut self) {
        self.control.stop.cancel();
        // Dropping the debouncer stops its thread.
        self.watcher.take();
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for Running {
    /// A run that ends early (a sink that cannot open) still stops the server and monitors.
    fn drop(&mut self) {
        self.control.stop.cancel();
    }
}

/// Starts hot loading for a pipeline that asks for it (an `[admin]` table, or a stage with
/// `watch = true`); `Ok(None)` otherwise.
pub(crate) async fn start(
    pipeline: &Pipeline,
    live: &HashMap<String, Arc<Live>>,
    plugins: &HashMap<String, Arc<Plugin>>,
    sandbox: Option<Arc<Sandbox>>,
) -> Result<Option<Running>, StartError> {
    let watched: Vec<&config::Stage> = pipeline
        .stages
        .iter()
        .filter(|s| s.watch && plugins.contains_key(&s.name))
        .collect();
    if pipeline.admin.is_none() && watched.is_empty() {
        return Ok(None);
    }
    let control = Arc::new(Control::new(pipeline, live, plugins, sandbox));
    let mut tasks = Vec::new();
    let mut admin_addr = None;
    if let Some(admin) = &pipeline.admin {
        let (addr, task) =
            crate::admin::serve(admin, Arc::clone(&control), control.stop.clone()).await?;
        admin_addr = Some(addr);
        tasks.push(task);
    }
    let watcher = if watched.is_empty() {
        None
    } else {
        let (watcher, task) = control.watch(&watched)?;
        tasks.push(task);
        Some(watcher)
    };
    Ok(Some(Running {
        control,
        admin_addr,
        tasks,
        watcher,
    }))
}

fn file_meta(path: &Path) -> std::io::Result<FileMeta> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok(FileMeta {
        len: meta.len(),
        modified: meta.modified().ok(),
        ino: meta.ino(),
        ctime_ns: meta.ctime().saturating_mul(1_000_000_000) + meta.ctime_nsec(),
    })
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Control {
    fn new(
        pipeline: &Pipeline,
        live: &HashMap<String, Arc<Live>>,
        plugins: &HashMap<String, Arc<Plugin>>,
        sandbox: Option<Arc<Sandbox>>,
    ) -> Control {
        let now = Instant::now();
        let mut stages = BTreeMap::new();
        for stage in &pipeline.stages {
            let Some(stage_live) = live.get(&stage.name) else {
                continue;
            };
            let (generation, factory) = stage_live.current();
            let mut versions = VecDeque::new();
            let plugin = plugins.get(&stage.name);
            if let Some(plugin) = plugin {
                versions.push_back(Version {
                    id: 1,
                    plugin: Arc::clone(plugin),
                    settings: stage.settings.clone(),
                    factory,
                    origin: Origin::Startup,
                    loaded_at: plugin.loaded_at,
                    trigger: now,
                    ready_after: Duration::ZERO,
                    serving_after: None,
                    generation,
                    rolled_back: None,
                });
            }
            let file = plugin.and_then(|p| {
                file_meta(&stage.plugin).ok().map(|meta| FileSeen {
                    meta,
                    digest: p.digest.clone(),
                })
            });
            stages.insert(
                stage.name.clone(),
                Arc::new(StageControl {
                    config: Arc::new(stage.clone()),
                    live: Arc::clone(stage_live),
                    sandbox: plugin.and(sandbox.clone()),
                    state: Mutex::new(StageState {
                        versions,
                        live: 1,
                        previous: Vec::new(),
                        next_id: 2,
                        canary: None,
                        file,
                    }),
                    busy: tokio::sync::Mutex::new(()),
                    counters: Counters::default(),
                }),
            );
        }
        Control {
            stages,
            stop: CancellationToken::new(),
        }
    }

    fn stage(&self, name: &str) -> Result<&Arc<StageControl>, ReloadError> {
        self.stages
            .get(name)
            .ok_or_else(|| ReloadError::UnknownStage(name.to_string()))
    }

    /// Every stage, its live version and its history.
    pub fn stages(&self) -> Vec<StageInfo> {
        self.stages.values().map(|s| s.info()).collect()
    }

    /// One stage, its live version and its history.
    pub fn stage_info(&self, name: &str) -> Result<StageInfo, ReloadError> {
        Ok(self.stage(name)?.info())
    }

    /// Makes `bytes` the stage's plugin, keeping its settings. `trigger` is when the change
    /// was asked for, from which the swap latency is measured.
    pub async fn load_plugin(
        self: &Arc<Self>,
        stage: &str,
        bytes: Vec<u8>,
        origin: Origin,
        trigger: Instant,
    ) -> Result<VersionInfo, ReloadError> {
        let sc = Arc::clone(self.stage(stage)?);
        let label = match origin {
            Origin::File => sc.config.plugin.clone(),
            _ => PathBuf::from(format!("(upload for stage `{stage}`)")),
        };
        let result = self
            .change(&sc, trigger, origin, move |current, cache, sandbox| {
                let digest = plugins::check_bytes(&label, &bytes)?;
                let plugin = match cache.into_iter().find(|p| p.digest == digest) {
                    Some(plugin) => plugin,
                    None => Arc::new(Plugin::from_bytes(sandbox, &label, &bytes)?),
                };
                Ok((plugin, current.settings))
            })
            .await;
        self.report(&sc, "plugin", result)
    }

    /// Runs the stage's plugin with new settings: new instances, the same code.
    pub async fn set_settings(
        self: &Arc<Self>,
        stage: &str,
        settings: Vec<(String, String)>,
        trigger: Instant,
    ) -> Result<VersionInfo, ReloadError> {
        let sc = Arc::clone(self.stage(stage)?);
        let result = self
            .change(&sc, trigger, Origin::Settings, move |current, _, _| {
                Ok((current.plugin, settings))
            })
            .await;
        self.report(&sc, "settings", result)
    }

    /// Returns the stage to the version that was live before the current one.
    pub async fn rollback(
        self: &Arc<Self>,
        stage: &str,
        reason: &str,
        trigger: Instant,
    ) -> Result<VersionInfo, ReloadError> {
        let sc = Arc::clone(self.stage(stage)?);
        let _busy = sc.busy.lock().await;
        let result = self.rollback_locked(&sc, reason, trigger, None).await;
        self.report(&sc, "rollback", result)
    }

    fn report(
        &self,
        sc: &StageControl,
        what: &str,
        result: Result<VersionInfo, ReloadError>,
    ) -> Result<VersionInfo, ReloadError> {
        let stage = &sc.config.name;
        match &result {
            Ok(v) => tracing::info!(stage = %stage, version = v.id, digest = %v.short_digest,
                ready_ms = v.ready_ms, "hot load ({what}): version live"),
            Err(e) => {
                sc.counters.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(stage = %stage, "hot load ({what}) refused, the old version keeps serving: {e}");
            }
        }
        result
    }

    /// Prepares a new version with `make` (which picks the plugin and the settings) and an
    /// initialised trial instance, off the data path; then swaps it in.
    async fn change<F>(
        self: &Arc<Self>,
        sc: &Arc<StageControl>,
        trigger: Instant,
        origin: Origin,
        make: F,
    ) -> Result<VersionInfo, ReloadError>
    where
        F: FnOnce(
                Current,
                Vec<Arc<Plugin>>,
                &Sandbox,
            ) -> Result<(Arc<Plugin>, Vec<(String, String)>), ReloadError>
            + Send
            + 'static,
    {
        let sandbox = sc
            .sandbox
            .clone()
            .ok_or_else(|| ReloadError::NotReloadable(sc.config.name.clone()))?;
        let _busy = sc.busy.lock().await;
        let (current, cache) = {
            let state = sc.lock();
            let live = state.live_version();
            let current = Current {
                plugin: Arc::clone(&live.plugin),
                settings: live.settings.clone(),
            };
            let cache: Vec<Arc<Plugin>> = state
                .versions
                .iter()
                .map(|v| Arc::clone(&v.plugin))
                .collect();
            (current, cache)
        };
        let config = Arc::clone(&sc.config);
        let prepared = tokio::task::spawn_blocking(move || {
            let (plugin, settings) = make(current, cache, &sandbox)?;
            // A new version gets the stage's grants, no more: its imports are checked again.
            plugin.check_grants(&config.grant)?;
            let factory: Arc<dyn ProcessorFactory> = Arc::new(WasmStage {
                sandbox: Arc::clone(&sandbox),
                plugin: Arc::clone(&plugin),
                stage: Arc::from(config.name.as_str()),
                limits: config.limits,
                grant: config.grant.clone(),
                settings: settings.clone(),
            });
            trial(&config.name, factory.as_ref())?;
            Ok::<_, ReloadError>((plugin, settings, factory))
        })
        .await
        .map_err(|e| ReloadError::Internal(format!("preparing the version stopped: {e}")))?;
        let (plugin, settings, factory) = prepared?;

        sc.live.swap(Arc::clone(&factory));
        let generation = sc.live.counts().generation;
        let ready_after = trigger.elapsed();
        let info = {
            let mut state = sc.lock();
            let id = state.next_id;
            state.next_id += 1;
            let old = state.live;
            state.previous.push(old);
            state.live = id;
            state.versions.push_back(Version {
                id,
                loaded_at: SystemTime::now(),
                plugin,
                settings,
                factory,
                origin,
                trigger,
                ready_after,
                serving_after: None,
                generation,
                rolled_back: None,
            });
            state.evict();
            state.info_of(id)
        };
        sc.counters.swaps.fetch_add(1, Ordering::Relaxed);
        self.monitor(sc, info.id, generation, trigger, false);
        Ok(info)
    }

    /// The rollback itself; the caller holds the stage's `busy` lock. With `only_from`, it
    /// happens only while that version is still live (a canary decision must not undo a
    /// later change).
    async fn rollback_locked(
        self: &Arc<Self>,
        sc: &Arc<StageControl>,
        reason: &str,
        trigger: Instant,
        only_from: Option<u64>,
    ) -> Result<VersionInfo, ReloadError> {
        if sc.sandbox.is_none() {
            return Err(ReloadError::NotReloadable(sc.config.name.clone()));
        }
        let (target, factory) = {
            let state = sc.lock();
            if only_from.is_some_and(|id| id != state.live) {
                return Err(ReloadError::Internal(
                    "a later change already replaced the version".into(),
                ));
            }
            let target = state
                .previous
                .last()
                .copied()
                .ok_or_else(|| ReloadError::NoPrevious(sc.config.name.clone()))?;
            let version = state
                .versions
                .iter()
                .find(|v| v.id == target)
                .ok_or_else(|| ReloadError::NoPrevious(sc.config.name.clone()))?;
            (target, Arc::clone(&version.factory))
        };
        // The earlier version's instances are made anew, so its `init` runs again; check it
        // still starts before the swap.
        let name = sc.config.name.clone();
        let trial_factory = Arc::clone(&factory);
        tokio::task::spawn_blocking(move || trial(&name, trial_factory.as_ref()))
            .await
            .map_err(|e| ReloadError::Internal(format!("preparing the rollback stopped: {e}")))??;

        sc.live.swap(factory);
        let generation = sc.live.counts().generation;
        let ready_after = trigger.elapsed();
        let info = {
            let mut state = sc.lock();
            let from = state.live;
            state.previous.pop();
            state.live = target;
            if let Some(v) = state.versions.iter_mut().find(|v| v.id == from) {
                v.rolled_back = Some(reason.to_string());
            }
            if let Some(v) = state.versions.iter_mut().find(|v| v.id == target) {
                v.trigger = trigger;
                v.ready_after = ready_after;
                v.serving_after = None;
                v.generation = generation;
            }
            state.info_of(target)
        };
        sc.counters.rollbacks.fetch_add(1, Ordering::Relaxed);
        self.monitor(sc, target, generation, trigger, true);
        Ok(info)
    }

    /// Watches a new generation: records when it first served, and runs the canary guard.
    ///
    /// A rollback is not guarded: it returns to a version that already served, and a guard
    /// on it could make two bad versions roll each other back in turn.
    fn monitor(
        self: &Arc<Self>,
        sc: &Arc<StageControl>,
        version: u64,
        generation: u64,
        trigger: Instant,
        rollback: bool,
    ) {
        let control = Arc::clone(self);
        let sc = Arc::clone(sc);
        let canary = sc.config.canary;
        let guarded = canary.events > 0 && !rollback;
        if guarded {
            sc.lock().canary = Some(CanaryInfo {
                version,
                events: 0,
                failed: 0,
                state: "watching",
            });
        }
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let mut served = false;
            let verdict = loop {
                // Woken after each batch, so the guard decides as soon as it can; the tick
                // notices a later swap when no batch comes.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = sc.live.recorded() => {}
                    _ = tokio::time::sleep(MONITOR_TICK) => {}
                }
                let counts = sc.live.counts();
                if counts.generation != generation {
                    break "superseded";
                }
                if !served && let Some(first) = counts.first_batch {
                    served = true;
                    let mut state = sc.lock();
                    if let Some(v) = state.versions.iter_mut().find(|v| v.id == version) {
                        v.serving_after = Some(first.saturating_duration_since(trigger));
                    }
                }
                if !guarded {
                    if served {
                        return;
                    }
                    continue;
                }
                {
                    let mut state = sc.lock();
                    if let Some(c) = state.canary.as_mut().filter(|c| c.version == version) {
                        c.events = counts.events;
                        c.failed = counts.failed;
                    }
                }
                // Over the first `events` events, more failures than the rate allows: once
                // the failures alone pass that count the verdict cannot change, so it need
                // not wait for the rest.
                let allowed = canary.events as f64 * canary.max_failure_rate;
                let over = counts.failed as f64 > allowed
                    || (counts.events >= canary.events
                        && counts.failed as f64 > counts.events as f64 * canary.max_failure_rate);
                if over {
                    break "rolled-back";
                }
                if counts.events >= canary.events {
                    break "passed";
                }
            };
            let set = |state: &'static str| {
                if let Some(c) = sc.lock().canary.as_mut().filter(|c| c.version == version) {
                    c.state = state;
                }
            };
            if verdict != "rolled-back" {
                if guarded {
                    set(verdict);
                }
                return;
            }
            let counts = sc.live.counts();
            let reason = format!(
                "canary: {} of its first {} events failed (more than {:.0} %)",
                counts.failed,
                counts.events,
                canary.max_failure_rate * 100.0
            );
            let _busy = sc.busy.lock().await;
            match control
                .rollback_locked(&sc, &reason, Instant::now(), Some(version))
                .await
            {
                Ok(back) => {
                    set("rolled-back");
                    sc.counters.canary_rollbacks.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(stage = %sc.config.name, "{reason}: rolled back to version {} ({})",
                        back.id, back.short_digest);
                    eprintln!(
                        "weir: stage `{}`: {reason}: rolled back to version {} ({})",
                        sc.config.name, back.id, back.short_digest
                    );
                }
                Err(e) => {
                    set("superseded");
                    tracing::error!(stage = %sc.config.name, "{reason}, but the rollback failed: {e}");
                }
            }
        });
    }

    /// Starts watching the plugin files of `stages`: one debouncer over their folders (a
    /// file replaced by a rename is seen only by watching its folder), and a task that
    /// reloads a stage when its file settles with new contents.
    fn watch(
        self: &Arc<Self>,
        stages: &[&config::Stage],
    ) -> Result<(Debouncer<RecommendedWatcher>, tokio::task::JoinHandle<()>), StartError> {
        let watch_err = |stage: &config::Stage, message: String| StartError::Watch {
            stage: stage.name.clone(),
            path: stage.plugin.clone(),
            message,
        };
        let mut targets: Vec<(PathBuf, String)> = Vec::new();
        let mut folders: Vec<PathBuf> = Vec::new();
        for stage in stages {
            let path = stage
                .plugin
                .canonicalize()
                .map_err(|e| watch_err(stage, e.to_string()))?;
            let folder = path
                .parent()
                .map(Path::to_path_buf)
                .ok_or_else(|| watch_err(stage, "the file has no folder".into()))?;
            if !folders.contains(&folder) {
                folders.push(folder);
            }
            targets.push((path, stage.name.clone()));
        }
        let (tx, mut rx) = mpsc::channel::<String>(WATCH_QUEUE);
        let mut debouncer = new_debouncer(WATCH_DEBOUNCE, move |result: DebounceEventResult| {
            let events = match result {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!("plugin file watcher: {e}");
                    return;
                }
            };
            for event in events {
                // `AnyContinuous` means the file is still being written: wait for it to settle.
                if event.kind != DebouncedEventKind::Any {
                    continue;
                }
                for (path, stage) in &targets {
                    if &event.path == path {
                        let _ = tx.blocking_send(stage.clone());
                    }
                }
            }
        })
        .map_err(|e| watch_err(stages[0], e.to_string()))?;
        for (folder, stage) in folders.iter().zip(stages) {
            debouncer
                .watcher()
                .watch(folder, RecursiveMode::NonRecursive)
                .map_err(|e| watch_err(stage, e.to_string()))?;
        }
        let control = Arc::clone(self);
        let stop = self.stop.clone();
        let task = tokio::spawn(async move {
            loop {
                let stage = tokio::select! {
                    _ = stop.cancelled() => return,
                    stage = rx.recv() => match stage { Some(s) => s, None => return },
                };
                control.file_changed(&stage).await;
            }
        });
        Ok((debouncer, task))
    }

    /// A watched file settled: reload it if its contents changed since last seen.
    async fn file_changed(self: &Arc<Self>, stage: &str) {
        let trigger = Instant::now();
        let Ok(sc) = self.stage(stage).map(Arc::clone) else {
            return;
        };
        let path = sc.config.plugin.clone();
        let Ok(meta) = file_meta(&path) else {
            // Removed, or mid-rename: the next event brings the new file.
            return;
        };
        if sc.lock().file.as_ref().is_some_and(|f| f.meta == meta) {
            return;
        }
        let read_path = path.clone();
        let read = tokio::task::spawn_blocking(move || plugins::read(&read_path)).await;
        let (bytes, digest) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                sc.counters.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    stage,
                    "watched plugin file refused, the old version keeps serving: {e}"
                );
                if let Ok(meta) = file_meta(&path) {
                    sc.lock().file = Some(FileSeen {
                        meta,
                        digest: String::new(),
                    });
                }
                return;
            }
            Err(_) => return,
        };
        let unchanged = {
            let mut state = sc.lock();
            let unchanged = state.file.as_ref().is_some_and(|f| f.digest == digest);
            state.file = Some(FileSeen { meta, digest });
            unchanged
        };
        if unchanged {
            return;
        }
        if let Ok(v) = self.load_plugin(stage, bytes, Origin::File, trigger).await {
            eprintln!(
                "weir: stage `{stage}`: reloaded {} (version {}, {}) in {:.1} ms",
                path.display(),
                v.id,
                v.short_digest,
                v.ready_ms
            );
        }
    }
}

/// Makes and initialises one instance of a version, then drops it: a version whose `init`
/// fails never goes live.
fn trial(stage: &str, factory: &dyn ProcessorFactory) -> Result<(), ReloadError> {
    factory.make().map(drop).map_err(|t| ReloadError::Init {
        stage: stage.to_string(),
        message: t.message,
    })
}

impl StageControl {
    fn lock(&self) -> std::sync::MutexGuard<'_, StageState> {
        // A panic while holding the lock leaves consistent data: every update is one step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self) -> StageInfo {
        let counts = self.live.counts();
        let mut state = self.lock();
        // The live version's first batch may have come since the monitor last looked.
        let live_id = state.live;
        if let Some(v) = state.versions.iter_mut().find(|v| v.id == live_id)
            && v.serving_after.is_none()
            && counts.generation == v.generation
            && let Some(first) = counts.first_batch
        {
            v.serving_after = Some(first.saturating_duration_since(v.trigger));
        }
        let versions: Vec<VersionInfo> = state.versions.iter().map(|v| state.describe(v)).collect();
        let live = versions.iter().find(|v| v.state == "live").cloned();
        let c = &self.counters;
        StageInfo {
            name: self.config.name.clone(),
            reloadable: self.sandbox.is_some(),
            watch: self.config.watch,
            plugin: self.config.plugin.display().to_string(),
            live,
            generation: counts.generation,
            events: counts.events,
            failed: counts.failed,
            events_total: counts.total_events,
            canary: state.canary.clone(),
            versions,
            counters: CountersInfo {
                swaps: c.swaps.load(Ordering::Relaxed),
                refused: c.refused.load(Ordering::Relaxed),
                rollbacks: c.rollbacks.load(Ordering::Relaxed),
                canary_rollbacks: c.canary_rollbacks.load(Ordering::Relaxed),
            },
        }
    }
}

impl StageState {
    fn live_version(&self) -> &Version {
        self.versions
            .iter()
            .find(|v| v.id == self.live)
            .expect("the live version is always kept")
    }

    /// Drops the oldest versions past the bound, never the live one; a dropped version
    /// can no longer be rolled back to.
    fn evict(&mut self) {
        while self.versions.len() > MAX_KEPT_VERSIONS {
            let Some(pos) = self.versions.iter().position(|v| v.id != self.live) else {
                return;
            };
            if let Some(v) = self.versions.remove(pos) {
                self.previous.retain(|&id| id != v.id);
            }
        }
    }

    fn info_of(&self, id: u64) -> VersionInfo {
        let v = self
            .versions
            .iter()
            .find(|v| v.id == id)
            .expect("a version just made live is kept");
        self.describe(v)
    }

    fn describe(&self, v: &Version) -> VersionInfo {
        let state = if v.id == self.live {
            "live"
        } else if v.rolled_back.is_some() && !self.previous.contains(&v.id) {
            "rolled-back"
        } else if self.previous.contains(&v.id) {
            "standby"
        } else {
            "retired"
        };
        VersionInfo {
            id: v.id,
            digest: v.plugin.digest.clone(),
            short_digest: v.plugin.short_digest().to_string(),
            origin: v.origin,
            plugin: v.plugin.path.display().to_string(),
            size: v.plugin.size,
            loaded_at_ms: v
                .loaded_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            settings: v.settings.iter().cloned().collect(),
            state,
            ready_ms: millis(v.ready_after),
            serving_ms: v.serving_after.map(millis),
            rolled_back: v.rolled_back.clone(),
        }
    }
}
