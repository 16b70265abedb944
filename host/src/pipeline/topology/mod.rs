//! Topology: a checked [`Pipeline`] in, a planned and loaded [`Topology`] out, then a
//! [`Running`] pipeline and a [`RunReport`] at the end.
//!
//! [`Topology::build`] does everything that can fail before an event is read and needs no
//! network: it makes the sandbox, loads each plugin once, checks each stage's grants and
//! settings against its plugin, plans the chains (`plan`), starts every worker's first
//! instance of every stage (so a failing `init` is reported with the stage's name), and makes
//! each source and sink from its configuration through the connector seam (naming no kind).
//! The control plane reaches the stages through [`Topology::stage`] before the run starts,
//! and the observe module reads every node's counters ([`Topology::nodes`]) and the in-flight
//! tracker ([`Topology::tracker`]).
//!
//! [`Topology::start`] (in `run`) locks the data folder, connects every source and sink,
//! wires the graph and starts every node; the [`Running`] handle it returns stops the run,
//! shows its counts so far, reaches a stage by name, and waits for the report. Shutdown
//! travels with the data.

mod plan;
mod run;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use weir_sandbox::{LogQuota, Plugin, PluginError, ProcessorFactory, Sandbox, WasmStage};

use crate::config::{AUTO_WORKERS_MAX, ConfigError, Pipeline};
use crate::pipeline::ack::Tracker;
use crate::pipeline::connectors::{self, ConnectorError, DEAD_LETTER_BUFFER};
use crate::pipeline::data_dir::DataDirError;
use crate::pipeline::failure::NodeFailure;
use crate::pipeline::report::{NodeKind, NodeMetrics, RunReport};
use crate::pipeline::stage::runner::{Route, StageRunner};
use crate::pipeline::stage::{MAX_WAITING_RETRIES, StageHandle};
use crate::pipeline::state::{StageState, routed_by_key};

pub use plan::{ChainPlan, chains, consumers, keyed_chains};
pub use run::{RunOptions, Running};

/// Why a pipeline could not start or did not finish cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("stage `{stage}`: plugin {plugin}: {message}")]
    Init {
        stage: String,
        plugin: PathBuf,
        message: String,
    },
    /// The data folder is another run's, or cannot be made: refused before anything is read.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// A source or sink that could not connect or start.
    #[error("{node}: {source}")]
    Connector {
        /// `source `NAME`` or `sink `NAME``.
        node: String,
        #[source]
        source: ConnectorError,
    },
    /// A part of the run that could not start: a thread, the dead-letter sink, the control
    /// plane.
    #[error("{what}: {cause}")]
    Start {
        what: String,
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A task of the run's own that ended without finishing its work (a panic).
    #[error("{what} stopped unexpectedly: {cause}")]
    Crashed {
        what: &'static str,
        #[source]
        cause: tokio::task::JoinError,
    },
    /// The run ended with a fatal failure (a sink that could not write, a stage that stopped
    /// it); the report says what it did before.
    #[error("{failure}")]
    Stopped {
        #[source]
        failure: NodeFailure,
        report: Box<RunReport>,
    },
}

impl RunError {
    /// Whether the pipeline file or a plugin was refused (exit status 2), as opposed to a run
    /// that failed (1).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            RunError::Plugin(_)
                | RunError::Config(_)
                | RunError::Init { .. }
                | RunError::DataDir(_)
                | RunError::Connector {
                    source: ConnectorError::Config(_),
                    ..
                }
        )
    }
}

/// A pipeline whose plugins are loaded and whose first instances are initialised.
pub struct Topology {
    /// The pipeline as planned: each `workers = "auto"` resolved.
    pipeline: Pipeline,
    /// What `"auto"` chose for each stage that had it, and why, for `weir check`.
    auto: Vec<AutoWorkers>,
    handles: BTreeMap<String, Arc<StageHandle>>,
    /// Each chain's plan and its workers' runners.
    chains: Vec<(ChainPlan, Vec<Vec<StageRunner>>)>,
    metrics: Vec<Arc<NodeMetrics>>,
    sandbox: Option<Arc<Sandbox>>,
    /// The plugin each sandboxed stage started with.
    plugins: HashMap<String, Arc<Plugin>>,
    /// Counts the events in flight; made here, so that it can be read while the run goes on.
    tracker: Arc<Tracker>,
    /// Every source and sink, by name, in the pipeline's order.
    sources: Vec<(String, Box<dyn connectors::Source>)>,
    sinks: Vec<(String, Box<dyn connectors::Sink>)>,
}

impl Topology {
    /// Loads every plugin and initialises every stage worker.
    pub fn build(pipeline: &Pipeline) -> Result<Topology, RunError> {
        Topology::build_with(pipeline, HashMap::new())
    }

    /// Like [`Topology::build`], but the stages named in `natives` run the given processors
    /// instead of their plugins: the benchmarks' native-through-weir baseline uses this.
    pub fn build_with(
        pipeline: &Pipeline,
        mut natives: HashMap<String, Arc<dyn ProcessorFactory>>,
    ) -> Result<Topology, RunError> {
        let sources: Vec<_> = pipeline
            .sources
            .iter()
            .map(|s| (s.name.clone(), connectors::source(s)))
            .collect();
        let sinks: Vec<_> = pipeline
            .sinks
            .iter()
            .map(|s| (s.name.clone(), connectors::sink(s)))
            .collect();
        refuse_writing_a_source(pipeline, &sources, &sinks)?;
        let mut loader = Loader::default();
        let (pipeline, auto) = resolve_workers(pipeline, &natives, &mut loader)?;
        let pipeline = &pipeline;
        let mut handles = BTreeMap::new();
        // The stages routed by key: each heads a chain whose workers own its keys.
        let mut routed = BTreeSet::new();
        let mut metrics: Vec<Arc<NodeMetrics>> = pipeline
            .sources
            .iter()
            .map(|s| Arc::new(NodeMetrics::new(&s.name, NodeKind::Source)))
            .collect();
        for stage in &pipeline.stages {
            let quota = LogQuota::new();
            let state = Arc::new(StageState::new(
                stage.limits.state_max_keys,
                stage.limits.state_max_bytes,
                stage.limits.state_cache_bytes,
            ));
            let factory = match natives.remove(&stage.name) {
                Some(native) => native,
                None => loader.factory(stage, &quota, &state)?,
            };
            let node = Arc::new(NodeMetrics::new(&stage.name, NodeKind::Stage));
            metrics.push(Arc::clone(&node));
            let keyed = (loader.stage_plugins.get(&stage.name))
                .is_some_and(|plugin| routed_by_key(stage, plugin));
            if keyed {
                routed.insert(stage.name.clone());
            }
            let handle = StageHandle::new(
                Arc::new(stage.clone()),
                factory,
                node,
                quota,
                (state, keyed),
            );
            handles.insert(stage.name.clone(), handle);
        }
        metrics.extend(
            pipeline
                .sinks
                .iter()
                .map(|s| Arc::new(NodeMetrics::new(&s.name, NodeKind::Sink))),
        );
        let mut planned = Vec::new();
        for plan in keyed_chains(pipeline, &routed) {
            let mut workers = Vec::with_capacity(plan.workers);
            for worker in 0..plan.workers {
                let mut runners = plan
                    .stages
                    .iter()
                    .map(|name| {
                        let handle = Arc::clone(&handles[name]);
                        StageRunner::new(Arc::clone(&handle)).map_err(|t| {
                            let config = &handle.config;
                            RunError::Config(config.plugin_error(format!(
                                "stage `{}` cannot start plugin {}: {}",
                                config.name,
                                config.plugin.display(),
                                t.message
                            )))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if plan.keyed {
                    runners[0].route(Route {
                        worker: worker as u32,
                        workers: plan.workers as u32,
                    });
                }
                workers.push(runners);
            }
            planned.push((plan, workers));
        }
        Ok(Topology {
            pipeline: pipeline.clone(),
            auto,
            handles,
            chains: planned,
            metrics,
            sandbox: loader.sandbox,
            plugins: loader.stage_plugins,
            tracker: Arc::new(Tracker::default()),
            sources,
            sinks,
        })
    }

    /// Each stage with `workers = "auto"`: the workers chosen, and why.
    pub fn auto_workers(&self) -> &[AutoWorkers] {
        &self.auto
    }

    /// Every node's counters: sources, then stages (upstream first), then sinks.
    pub fn nodes(&self) -> &[Arc<NodeMetrics>] {
        &self.metrics
    }

    /// The run's acknowledgement tracker: events emitted, done, in flight.
    pub fn tracker(&self) -> Arc<Tracker> {
        Arc::clone(&self.tracker)
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// A stage's handle: its live version (which hot loading swaps), counts and metrics.
    pub fn stage(&self, name: &str) -> Option<Arc<StageHandle>> {
        self.handles.get(name).cloned()
    }

    /// The plugin a sandboxed stage started with; `None` for a native stage.
    pub fn plugin(&self, stage: &str) -> Option<Arc<Plugin>> {
        self.plugins.get(stage).cloned()
    }

    /// The engine the plugins run in, when any stage runs a plugin.
    pub fn sandbox(&self) -> Option<Arc<Sandbox>> {
        self.sandbox.clone()
    }

    /// The chains the stages run in.
    pub fn chains(&self) -> impl Iterator<Item = &ChainPlan> {
        self.chains.iter().map(|(plan, _)| plan)
    }

    /// Whether every source's input ends by itself (files, the generator), so that a
    /// progress line can say how far the run is.
    pub fn inputs_end(&self) -> bool {
        !self.sources.is_empty() && self.sources.iter().all(|(_, s)| s.ends())
    }

    /// Each source's and sink's name and what it reads or writes, for `weir check`.
    pub fn connectors(&self) -> impl Iterator<Item = (&'static str, &str, String)> {
        let sources = self
            .sources
            .iter()
            .map(|(name, s)| ("source", name.as_str(), s.describe()));
        let sinks = self
            .sinks
            .iter()
            .map(|(name, s)| ("sink", name.as_str(), s.describe()));
        sources.chain(sinks)
    }

    /// Each stage whose plugin keeps state, and how: where it lives and its limits.
    pub fn states(&self) -> impl Iterator<Item = (&str, String)> {
        self.pipeline
            .stages
            .iter()
            .filter(|s| self.plugins.get(&s.name).is_some_and(|p| p.uses_state()))
            .map(|s| {
                let limits = &s.limits;
                let place = match &self.pipeline.data_dir {
                    Some(dir) => format!(
                        "in {} (durable, written with the source positions every {}; at \
                         most {} bytes of it kept in memory)",
                        dir.join(crate::pipeline::state::STORE_FILE).display(),
                        crate::config::fmt_duration(self.pipeline.checkpoint_interval),
                        limits.state_cache_bytes
                    ),
                    None => "in memory (lost when weir stops)".to_string(),
                };
                (
                    s.name.as_str(),
                    format!(
                        "{place}, at most {} keys and {} bytes",
                        limits.state_max_keys, limits.state_max_bytes
                    ),
                )
            })
    }

    /// Each stage whose plugin keeps time (imports `time`), with how its watermark and its
    /// late events go, for `weir check`.
    pub fn times(&self) -> impl Iterator<Item = (&str, String)> {
        self.pipeline
            .stages
            .iter()
            .filter(|s| self.plugins.get(&s.name).is_some_and(|p| p.uses_time()))
            .map(|s| {
                let t = &s.time;
                let late = match t.late {
                    crate::config::Late::DeadLetter => "dead-lettered as `late`",
                    crate::config::Late::Drop => "counted and dropped",
                };
                (
                    s.name.as_str(),
                    format!(
                        "watermark {} behind the highest event time seen, an input silent for {} \
                         stops holding it back; late events {late}; timers kept with its state",
                        crate::config::fmt_duration(t.allowed_lateness),
                        crate::config::fmt_duration(t.idle_timeout),
                    ),
                )
            })
    }

    /// The most source events that can be in flight at once, from the configuration: every
    /// place that can hold a batch derived from a source batch, times the largest batch.
    pub fn in_flight_bound(&self) -> u64 {
        let p = &self.pipeline;
        let batch = p
            .sources
            .iter()
            .map(|s| s.batch_size)
            .max()
            .unwrap_or(p.batch_size) as u64;
        let buffer = p.buffer as u64;
        // Each source: the batch it is sending, and the one it gathers if it gathers.
        let sources: u64 = self.sources.iter().map(|(_, s)| s.batches_held()).sum();
        let chains: u64 = self
            .chains()
            .map(|c| {
                let workers = c.workers as u64;
                let stages = c.stages.len() as u64;
                // The input channel; the reorder window (2 per worker); retries waiting,
                // up to the bound, plus those a worker's batch may add at each stage.
                buffer + 2 * workers + MAX_WAITING_RETRIES as u64 * workers + workers * stages
            })
            .sum();
        // Each sink: its channel, what it holds unflushed (flushed every `buffer` batches at
        // the latest) and the batch it is writing.
        let sinks = p.sinks.len() as u64 * (2 * buffer + 1);
        // The dead-letter channel, what its writer holds unflushed, and the letters it writes.
        let dead_letters = 2 * DEAD_LETTER_BUFFER as u64 + 1;
        (sources + chains + sinks + dead_letters) * batch
    }
}

/// Refuses a sink or dead-letter file that is one of the sources' files, through whatever
/// path or link: the sink would write into the input it is reading (and `mode = "truncate"`
/// would empty it before it is read).
fn refuse_writing_a_source(
    pipeline: &Pipeline,
    sources: &[(String, Box<dyn connectors::Source>)],
    sinks: &[(String, Box<dyn connectors::Sink>)],
) -> Result<(), RunError> {
    use std::os::unix::fs::MetadataExt;
    let identity =
        |path: &std::path::Path| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let sources: Vec<(&str, (u64, u64))> = sources
        .iter()
        .filter_map(|(name, s)| Some((name.as_str(), identity(s.reads_file()?)?)))
        .collect();
    let dead_letters = connectors::dead_letters::writes_file(&pipeline.dead_letter);
    let written = sinks
        .iter()
        .filter_map(|(name, s)| Some((format!("sinks.{name}.path"), s.writes_file()?)))
        .chain(dead_letters.map(|path| ("dead_letter.path".to_string(), path)));
    for (key, path) in written {
        let Some(id) = identity(path) else { continue };
        if let Some((source, _)) = sources.iter().find(|(_, s)| *s == id) {
            return Err(RunError::Config(ConfigError {
                file: pipeline.file.clone(),
                line: None,
                key: Some(key),
                message: format!(
                    "{} is the file source `{source}` reads: write somewhere else",
                    path.display()
                ),
            }));
        }
    }
    Ok(())
}

/// Loads each plugin file once and makes each sandboxed stage's first version.
/// What `workers = "auto"` chose for a stage: its name, the workers, and why.
pub type AutoWorkers = (String, usize, &'static str);

/// Resolves each `workers = "auto"` (the default) once the plugins are known:
/// - a stage whose plugin keeps state or event time gets one worker: state on several workers
///   is routed by key, which pays only where the state is not the bottleneck (say
///   `workers = N` for it), and a watermark is a stage's, not a worker's;
/// - so does a stage upstream of one that keeps event time: its outputs' timestamps may make
///   the watermark, which must advance in input order, not per worker;
/// - every other stage gets the machine's cores (at most [`AUTO_WORKERS_MAX`]): its outputs
///   go on in input order through the chain's reorder window.
fn resolve_workers(
    pipeline: &Pipeline,
    natives: &HashMap<String, Arc<dyn ProcessorFactory>>,
    loader: &mut Loader,
) -> Result<(Pipeline, Vec<AutoWorkers>), RunError> {
    let mut resolved = pipeline.clone();
    if !pipeline.stages.iter().any(|s| s.workers_auto) {
        return Ok((resolved, Vec::new()));
    }
    let mut keeps = BTreeMap::new();
    for stage in &pipeline.stages {
        let (state, time) = if natives.contains_key(&stage.name) {
            (false, false)
        } else {
            let plugin = loader.plugin(stage)?;
            (plugin.uses_state(), plugin.uses_time())
        };
        keeps.insert(stage.name.as_str(), (state, time));
    }
    // The stages whose outputs reach a stage that keeps time.
    let mut feeding = BTreeSet::new();
    let mut pending: Vec<&str> = (keeps.iter())
        .filter(|(_, (_, time))| *time)
        .map(|(name, _)| *name)
        .collect();
    while let Some(name) = pending.pop() {
        let Some(stage) = pipeline.stages.iter().find(|s| s.name == name) else {
            continue;
        };
        for input in &stage.inputs {
            if keeps.contains_key(input.as_str()) && feeding.insert(input.as_str()) {
                pending.push(input.as_str());
            }
        }
    }
    let cores = std::thread::available_parallelism()
        .map_or(crate::config::DEFAULT_WORKERS, |n| n.get())
        .min(AUTO_WORKERS_MAX);
    let mut chosen = Vec::new();
    for stage in resolved.stages.iter_mut().filter(|s| s.workers_auto) {
        let (state, time) = keeps[stage.name.as_str()];
        let (workers, why) = if state {
            (1, "it keeps state")
        } else if time {
            (1, "it keeps event time")
        } else if feeding.contains(stage.name.as_str()) {
            (1, "its timestamps may make a later stage's watermark")
        } else {
            (cores, "the machine's cores")
        };
        stage.workers = workers;
        chosen.push((stage.name.clone(), workers, why));
    }
    Ok((resolved, chosen))
}

#[derive(Default)]
struct Loader {
    sandbox: Option<Arc<Sandbox>>,
    by_path: HashMap<PathBuf, Arc<Plugin>>,
    stage_plugins: HashMap<String, Arc<Plugin>>,
}

impl Loader {
    /// The stage's plugin, loaded once per file.
    fn plugin(&mut self, stage: &crate::config::Stage) -> Result<Arc<Plugin>, RunError> {
        let sandbox = self.sandbox()?;
        Ok(match self.by_path.get(&stage.plugin) {
            Some(p) => Arc::clone(p),
            None => {
                let p = Arc::new(Plugin::load(&sandbox, &stage.plugin)?);
                tracing::info!(stage = %stage.name, plugin = %stage.plugin.display(),
                    digest = %p.short_digest(), contract = p.contract.as_str(), "plugin loaded");
                self.by_path.insert(stage.plugin.clone(), Arc::clone(&p));
                p
            }
        })
    }

    fn sandbox(&mut self) -> Result<Arc<Sandbox>, RunError> {
        Ok(match &self.sandbox {
            Some(s) => Arc::clone(s),
            None => {
                let s = Sandbox::new().map_err(|e| RunError::Engine(format!("{e:#}")))?;
                self.sandbox.insert(s).clone()
            }
        })
    }

    fn factory(
        &mut self,
        stage: &crate::config::Stage,
        quota: &Arc<LogQuota>,
        state: &Arc<StageState>,
    ) -> Result<Arc<dyn ProcessorFactory>, RunError> {
        let sandbox = self.sandbox()?;
        let plugin = self.plugin(stage)?;
        plugin.check_grants(&stage.grant)?;
        if let Some(description) = &plugin.description {
            weir_sandbox::settings::check(&description.settings, &stage.settings)
                .map_err(|e| stage.setting_error(&e.key, e.message))?;
        }
        let uses_state = plugin.uses_state();
        self.stage_plugins
            .insert(stage.name.clone(), Arc::clone(&plugin));
        Ok(Arc::new(WasmStage {
            sandbox,
            plugin,
            stage: Arc::from(stage.name.as_str()),
            limits: stage.limits.sandbox,
            grant: stage.grant.clone(),
            settings: stage.settings.clone(),
            log: Arc::clone(quota),
            state: uses_state.then(|| state.attach()),
        }))
    }
}
