//! One actor per reloadable stage: every change to the stage is a command on its channel.
//!
//! Hot loading's triggers (the admin API, the file watcher, the canary guard) send the actor a
//! [`Command`] with a one-shot reply. The actor takes them one at a time, so a swap, a
//! settings change and a rollback never interleave, without a lock held across a change.
//! A change is prepared off the data path, on a blocking thread: the bytes are checked and
//! compiled (or a kept version's compiled plugin reused), the stage's grants and settings are
//! checked against the plugin, and one instance is made and initialised. Only if every step
//! succeeds is the new version swapped into the stage's [`StageHandle`]; otherwise the old
//! version keeps serving and the error goes back to the caller, to the log and to the stage's
//! `refused` counter.
//!
//! After a guarded swap a monitor task reads the new generation's counts after each batch and
//! sends the actor the canary's verdict ([`canary::judge`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use weir_sandbox::{LogQuota, Plugin, ProcessorFactory, Sandbox, WasmStage};

use crate::config;
use crate::control::ReloadError;
use crate::control::api::{CanaryInfo, CanaryState, Origin, VersionInfo};
use crate::control::history::{History, Version};
use crate::pipeline::stage::canary::{self, Verdict};
use crate::pipeline::stage::{Shadow, ShadowState, ShadowStatus, StageHandle};
use crate::pipeline::state::{StageState, unrouted_state};

/// How often the monitor of a new version reads its counts when no batch wakes it.
const MONITOR_TICK: Duration = Duration::from_millis(50);

/// Commands that may wait for a stage's actor. A full queue makes a trigger wait its turn
/// (the API answers when the change is done); it never drops a change.
pub(crate) const COMMAND_QUEUE: usize = 16;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, ReloadError>>;

/// A change to a stage, or a question about it.
pub(crate) enum Command {
    /// Make these bytes the stage's plugin, keeping its settings.
    Plugin {
        bytes: Vec<u8>,
        origin: Origin,
        trigger: Instant,
        reply: Reply<VersionInfo>,
    },
    /// Run the live plugin with these settings.
    Settings {
        settings: Vec<(String, String)>,
        trigger: Instant,
        reply: Reply<VersionInfo>,
    },
    /// Return to the version live before the current one.
    Rollback {
        trigger: Instant,
        reply: Reply<VersionInfo>,
    },
    /// The canary guard of `version` decided.
    Verdict { version: u64, verdict: Verdict },
    /// The watched plugin file settled.
    FileChanged { trigger: Instant },
    /// Run these bytes as the stage's shadow on `sample` of its input batches.
    Shadow {
        bytes: Vec<u8>,
        sample: f64,
        reply: Reply<ShadowStatus>,
    },
    /// Make the running shadow the live version.
    Promote {
        trigger: Instant,
        reply: Reply<VersionInfo>,
    },
    /// End the running shadow.
    StopShadow { reply: Reply<ShadowStatus> },
}

/// The watched file as last seen, so that an event for an unchanged file (our own read of it
/// among them) costs a `stat`, not a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileMeta {
    len: u64,
    modified: Option<SystemTime>,
    ino: u64,
    ctime_ns: i64,
}

struct FileSeen {
    /// `None` until the watcher's first look: the file may have changed since it was loaded.
    meta: Option<FileMeta>,
    digest: String,
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

pub(crate) struct Actor {
    pub config: Arc<config::Stage>,
    pub handle: Arc<StageHandle>,
    pub sandbox: Arc<Sandbox>,
    pub history: Arc<Mutex<History>>,
    /// For the monitors this actor starts.
    pub commands: mpsc::Sender<Command>,
    pub stop: CancellationToken,
    file: Option<FileSeen>,
    /// The running shadow's plugin and settings, from which a promotion prepares the live
    /// version (on the stage's own state).
    shadow: Option<Candidate>,
}

/// Locks a stage's history; every update under it is one step, so a panic elsewhere cannot
/// leave it half-written.
pub(crate) fn lock(history: &Mutex<History>) -> MutexGuard<'_, History> {
    history.lock().unwrap_or_else(|e| e.into_inner())
}

impl Actor {
    pub(crate) fn new(
        config: Arc<config::Stage>,
        handle: Arc<StageHandle>,
        sandbox: Arc<Sandbox>,
        plugin: Arc<Plugin>,
        commands: mpsc::Sender<Command>,
        stop: CancellationToken,
    ) -> Actor {
        let version = handle.current();
        let first = Version {
            id: 1,
            settings: config.settings.clone(),
            factory: Arc::clone(&version.factory),
            origin: Origin::Startup,
            loaded_at: plugin.loaded_at,
            trigger: Instant::now(),
            ready_after: Duration::ZERO,
            generation: version.generation,
            rolled_back: None,
            plugin: Arc::clone(&plugin),
        };
        handle.reloads.set_live(first.id);
        let file = Some(FileSeen {
            meta: None,
            digest: plugin.digest.clone(),
        });
        Actor {
            history: Arc::new(Mutex::new(History::new(first))),
            config,
            handle,
            sandbox,
            commands,
            stop,
            file,
            shadow: None,
        }
    }

    /// Takes commands until the run stops.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        loop {
            let command = tokio::select! {
                _ = self.stop.cancelled() => return,
                command = rx.recv() => match command {
                    Some(c) => c,
                    None => return,
                },
            };
            match command {
                Command::Plugin {
                    bytes,
                    origin,
                    trigger,
                    reply,
                } => {
                    let result = self.load(bytes, origin, trigger).await;
                    let _ = reply.send(self.report("plugin", result));
                }
                Command::Settings {
                    settings,
                    trigger,
                    reply,
                } => {
                    let result = self.settings(settings, trigger).await;
                    let _ = reply.send(self.report("settings", result));
                }
                Command::Rollback { trigger, reply } => {
                    let result = self.rollback("asked for", trigger).await;
                    let _ = reply.send(self.report("rollback", result));
                }
                Command::Verdict { version, verdict } => self.verdict(version, verdict).await,
                Command::FileChanged { trigger } => self.file_changed(trigger).await,
                Command::Shadow {
                    bytes,
                    sample,
                    reply,
                } => {
                    let result = self.start_shadow(bytes, sample).await;
                    if let Err(e) = &result {
                        tracing::warn!(stage = %self.config.name, "shadow refused: {e}");
                    }
                    let _ = reply.send(result);
                }
                Command::Promote { trigger, reply } => {
                    let result = self.promote(trigger).await;
                    let _ = reply.send(self.report("shadow promotion", result));
                }
                Command::StopShadow { reply } => {
                    let result = self.end_shadow(ShadowState::Stopped);
                    let _ = reply.send(
                        result.ok_or_else(|| ReloadError::NoShadow(self.config.name.clone())),
                    );
                }
            }
        }
    }

    fn report(
        &self,
        what: &str,
        result: Result<VersionInfo, ReloadError>,
    ) -> Result<VersionInfo, ReloadError> {
        let stage = &self.config.name;
        match &result {
            Ok(v) => tracing::info!(stage = %stage, version = v.id, digest = %v.short_digest,
                ready_ms = v.ready_ms, "hot load ({what}): version live"),
            Err(e) => {
                self.handle.reloads.refused();
                tracing::warn!(stage = %stage, "hot load ({what}) refused, the old version keeps serving: {e}");
            }
        }
        result
    }

    async fn load(
        &mut self,
        bytes: Vec<u8>,
        origin: Origin,
        trigger: Instant,
    ) -> Result<VersionInfo, ReloadError> {
        let prepared = self.compile(bytes, origin, false).await?;
        Ok(self.swap_in(prepared, origin, trigger))
    }

    /// Checks and compiles `bytes` (or reuses a kept version's compiled plugin) and prepares
    /// a version with the live settings: on the stage's state and log quota, or, for a
    /// `shadow`, on a state and a quota of its own, so that it can neither write the live
    /// version's state nor spend its log lines.
    async fn compile(
        &self,
        bytes: Vec<u8>,
        origin: Origin,
        shadow: bool,
    ) -> Result<Prepared, ReloadError> {
        let label = match origin {
            Origin::File => self.config.plugin.clone(),
            _ => PathBuf::from(format!("(upload for stage `{}`)", self.config.name)),
        };
        let (kept, settings) = {
            let history = lock(&self.history);
            let kept: Vec<Arc<Plugin>> = history.plugins().cloned().collect();
            let settings = history
                .live_version()
                .map(|v| v.settings.clone())
                .unwrap_or_default();
            (kept, settings)
        };
        let sandbox = Arc::clone(&self.sandbox);
        let config = Arc::clone(&self.config);
        let (quota, state) = if shadow {
            let limits = &self.config.limits;
            let state = StageState::new(
                limits.state_max_keys,
                limits.state_max_bytes,
                limits.state_cache_bytes,
            );
            (LogQuota::new(), Arc::new(state))
        } else {
            (
                Arc::clone(&self.handle.log_quota),
                Arc::clone(&self.handle.state),
            )
        };
        let keyed = self.handle.keyed;
        blocking(move || {
            let digest = weir_sandbox::check_bytes(&label, &bytes)?;
            let plugin = match kept.into_iter().find(|p| p.digest == digest) {
                Some(plugin) => plugin,
                None => Arc::new(Plugin::from_bytes(&sandbox, &label, &bytes)?),
            };
            prepare(&config, &sandbox, (quota, state, keyed), plugin, settings)
        })
        .await
    }

    /// Starts a shadow of `bytes`, prepared like a reload (checked, compiled, granted, its
    /// `init` run) off the data path; it replaces a shadow already running.
    async fn start_shadow(
        &mut self,
        bytes: Vec<u8>,
        sample: f64,
    ) -> Result<ShadowStatus, ReloadError> {
        let prepared = self.compile(bytes, Origin::Api, true).await?;
        let shadow = Shadow::start(
            &self.config.name,
            prepared.factory,
            self.config.limits,
            sample,
        )
        .map_err(|e| ReloadError::Internal(format!("cannot start the shadow's thread: {e}")))?;
        let status = shadow.stats.status();
        self.handle.set_shadow(Arc::new(shadow));
        self.shadow = Some((prepared.plugin, prepared.settings));
        tracing::info!(stage = %self.config.name, digest = %status.digest, sample,
            "shadow running beside the live version");
        Ok(status)
    }

    /// Makes the running shadow's version live through the usual swap: history, canary and
    /// rollback as for any reload. It is prepared again on the stage's own state.
    async fn promote(&mut self, trigger: Instant) -> Result<VersionInfo, ReloadError> {
        let (plugin, settings) = self
            .shadow
            .clone()
            .ok_or_else(|| ReloadError::NoShadow(self.config.name.clone()))?;
        let sandbox = Arc::clone(&self.sandbox);
        let config = Arc::clone(&self.config);
        let quota = Arc::clone(&self.handle.log_quota);
        let state = Arc::clone(&self.handle.state);
        let keyed = self.handle.keyed;
        let prepared =
            blocking(move || prepare(&config, &sandbox, (quota, state, keyed), plugin, settings))
                .await?;
        self.end_shadow(ShadowState::Promoted);
        Ok(self.swap_in(prepared, Origin::Api, trigger))
    }

    /// Ends the running shadow, marked `state`; its final counts, `None` when none ran.
    fn end_shadow(&mut self, state: ShadowState) -> Option<ShadowStatus> {
        self.shadow = None;
        let ended = self.handle.end_shadow(state)?;
        tracing::info!(stage = %self.config.name, ?state, "shadow ended");
        Some(ended.stats.status())
    }

    async fn settings(
        &mut self,
        settings: Vec<(String, String)>,
        trigger: Instant,
    ) -> Result<VersionInfo, ReloadError> {
        let plugin = lock(&self.history)
            .live_version()
            .map(|v| Arc::clone(&v.plugin))
            .ok_or_else(|| ReloadError::Internal("the stage has no live version".into()))?;
        let sandbox = Arc::clone(&self.sandbox);
        let config = Arc::clone(&self.config);
        let quota = Arc::clone(&self.handle.log_quota);
        let state = Arc::clone(&self.handle.state);
        let keyed = self.handle.keyed;
        let prepared =
            blocking(move || prepare(&config, &sandbox, (quota, state, keyed), plugin, settings))
                .await?;
        Ok(self.swap_in(prepared, Origin::Settings, trigger))
    }

    /// Swaps a prepared version in and records it; starts its canary guard.
    fn swap_in(&mut self, prepared: Prepared, origin: Origin, trigger: Instant) -> VersionInfo {
        // A new live version ends the shadow: it was compared with the version now gone.
        self.end_shadow(ShadowState::Replaced);
        let live = self.handle.swap(Arc::clone(&prepared.factory), true);
        let counts = self.handle.counts();
        let mut history = lock(&self.history);
        let id = history.next_id();
        history.push_live(Version {
            id,
            plugin: prepared.plugin,
            settings: prepared.settings,
            factory: prepared.factory,
            origin,
            loaded_at: SystemTime::now(),
            trigger,
            ready_after: trigger.elapsed(),
            generation: live.generation,
            rolled_back: None,
        });
        self.handle.reloads.set_live(id);
        self.handle.reloads.swapped();
        let canary = self.config.canary;
        history.canary = (canary.events > 0).then_some(CanaryInfo {
            version: id,
            events: 0,
            failed: 0,
            state: CanaryState::Watching,
        });
        let info = history
            .info_of(id, &counts)
            .expect("a version just made live is kept");
        drop(history);
        if canary.events > 0 {
            self.monitor(id, live.generation);
        }
        info
    }

    /// The rollback itself. A rollback is not guarded: it returns to a version that already
    /// served, and a guard on it could make two bad versions roll each other back in turn.
    async fn rollback(
        &mut self,
        reason: &str,
        trigger: Instant,
    ) -> Result<VersionInfo, ReloadError> {
        let (target, factory) = {
            let history = lock(&self.history);
            let target = history
                .rollback_target()
                .ok_or_else(|| ReloadError::NoPrevious(self.config.name.clone()))?;
            (target.id, Arc::clone(&target.factory))
        };
        // The earlier version's instances are made anew, so its `init` runs again; check it
        // still starts before the swap.
        let name = self.config.name.clone();
        let trial_factory = Arc::clone(&factory);
        blocking(move || trial(&name, trial_factory.as_ref())).await?;
        self.end_shadow(ShadowState::Replaced);
        let live = self.handle.swap(factory, false);
        let counts = self.handle.counts();
        let mut history = lock(&self.history);
        history.roll_back(reason, trigger, live.generation);
        self.handle.reloads.set_live(history.live);
        self.handle.reloads.rolled_back();
        Ok(history
            .info_of(target, &counts)
            .expect("the rollback target is kept"))
    }

    /// Watches a new generation and sends the canary's verdict back.
    fn monitor(&self, version: u64, generation: u64) {
        let handle = Arc::clone(&self.handle);
        let commands = self.commands.clone();
        let stop = self.stop.clone();
        let canary = self.config.canary;
        tokio::spawn(async move {
            loop {
                // Woken after each batch, so the guard decides as soon as it can; the tick
                // notices a later swap when no batch comes.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = handle.recorded() => {}
                    _ = tokio::time::sleep(MONITOR_TICK) => {}
                }
                let counts = handle.counts();
                if counts.generation != generation {
                    return;
                }
                let verdict = canary::judge(&counts, &canary);
                if verdict != Verdict::Watching {
                    let _ = commands.send(Command::Verdict { version, verdict }).await;
                    return;
                }
            }
        });
    }

    async fn verdict(&mut self, version: u64, verdict: Verdict) {
        let counts = self.handle.counts();
        {
            let mut history = lock(&self.history);
            let Some(canary) = history.canary.as_mut().filter(|c| c.version == version) else {
                return;
            };
            if canary.state != CanaryState::Watching {
                return;
            }
            canary.events = counts.events;
            canary.failed = counts.failed;
            if history.live != version {
                if let Some(c) = history.canary.as_mut() {
                    c.state = CanaryState::Superseded;
                }
                return;
            }
            if verdict == Verdict::Passed {
                if let Some(c) = history.canary.as_mut() {
                    c.state = CanaryState::Passed;
                }
                return;
            }
        }
        let reason = format!(
            "canary: {} of its first {} events failed (more than {:.0} %)",
            counts.failed,
            counts.events,
            self.config.canary.max_failure_rate * 100.0
        );
        let result = self.rollback(&reason, Instant::now()).await;
        let mut history = lock(&self.history);
        let state = match &result {
            Ok(_) => CanaryState::RolledBack,
            Err(_) => CanaryState::Superseded,
        };
        if let Some(c) = history.canary.as_mut() {
            c.state = state;
        }
        match result {
            Ok(back) => {
                self.handle.reloads.canary_rolled_back();
                crate::notice::warn(&format!(
                    "stage `{}`: {reason}: rolled back to version {} ({})",
                    self.config.name, back.id, back.short_digest
                ));
            }
            Err(e) => {
                // The condemned version stays live: its workers must go on calling it.
                self.handle.pardon();
                tracing::error!(stage = %self.config.name, "{reason}, but the rollback failed: {e}")
            }
        }
    }

    /// A watched file settled: reload it if its contents changed since last seen.
    async fn file_changed(&mut self, trigger: Instant) {
        let path = self.config.plugin.clone();
        let Ok(meta) = file_meta(&path) else {
            // Removed, or mid-rename: the next event brings the new file.
            return;
        };
        if self.file.as_ref().is_some_and(|f| f.meta == Some(meta)) {
            return;
        }
        let read_path = path.clone();
        let read =
            blocking(move || weir_sandbox::read(&read_path).map_err(ReloadError::from)).await;
        let (bytes, digest) = match read {
            Ok(read) => read,
            Err(e) => {
                self.handle.reloads.refused();
                tracing::warn!(stage = %self.config.name,
                    "watched plugin file refused, the old version keeps serving: {e}");
                self.file = Some(FileSeen {
                    meta: Some(meta),
                    digest: String::new(),
                });
                return;
            }
        };
        let unchanged = self.file.as_ref().is_some_and(|f| f.digest == digest);
        self.file = Some(FileSeen {
            meta: Some(meta),
            digest,
        });
        if unchanged {
            return;
        }
        let result = self.load(bytes, Origin::File, trigger).await;
        if let Ok(v) = self.report("plugin", result) {
            crate::notice::info(&format!(
                "stage `{}`: reloaded {} (version {}, {}) in {:.1} ms",
                self.config.name,
                path.display(),
                v.id,
                v.short_digest,
                v.ready_ms
            ));
        }
    }
}

/// A shadow's plugin and settings.
type Candidate = (Arc<Plugin>, Vec<(String, String)>);

/// A version ready to go live.
struct Prepared {
    plugin: Arc<Plugin>,
    settings: Vec<(String, String)>,
    factory: Arc<dyn ProcessorFactory>,
}

/// Checks a plugin against the stage (grants, declared settings) and makes and initialises
/// one instance of it, then drops it: a version whose `init` fails never goes live.
fn prepare(
    config: &config::Stage,
    sandbox: &Arc<Sandbox>,
    (quota, state, keyed): (Arc<LogQuota>, Arc<StageState>, bool),
    plugin: Arc<Plugin>,
    settings: Vec<(String, String)>,
) -> Result<Prepared, ReloadError> {
    // A new version gets the stage's grants, no more: its imports are checked again.
    plugin.check_grants(&config.grant)?;
    if let Some(description) = &plugin.description {
        weir_sandbox::settings::check(&description.settings, &settings).map_err(|e| {
            ReloadError::Setting {
                stage: config.name.clone(),
                key: e.key,
                message: e.message,
            }
        })?;
    }
    if let Some(message) = unrouted_state(config, &plugin, keyed) {
        return Err(ReloadError::Init {
            stage: config.name.clone(),
            message,
        });
    }
    let factory: Arc<dyn ProcessorFactory> = Arc::new(WasmStage {
        sandbox: Arc::clone(sandbox),
        plugin: Arc::clone(&plugin),
        stage: Arc::from(config.name.as_str()),
        limits: config.limits.sandbox,
        grant: config.grant.clone(),
        settings: settings.clone(),
        log: quota,
        // The stage's own state, which the live version has been using: the new one sees it.
        state: plugin.uses_state().then(|| state.attach()),
    });
    trial(&config.name, factory.as_ref())?;
    Ok(Prepared {
        plugin,
        settings,
        factory,
    })
}

/// Makes and initialises one instance of a version, then drops it.
fn trial(stage: &str, factory: &dyn ProcessorFactory) -> Result<(), ReloadError> {
    factory.make().map(drop).map_err(|t| ReloadError::Init {
        stage: stage.to_string(),
        message: t.message,
    })
}

/// Runs CPU work (compiling, initialising) off the runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ReloadError> + Send + 'static,
) -> Result<T, ReloadError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ReloadError::Internal(format!("preparing the change stopped: {e}")))?
}
