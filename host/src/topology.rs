//! Topology: a checked [`Pipeline`] in, running tasks and channels out, a [`RunReport`] at the end.
//!
//! [`Topology::build`] does everything that can fail before an event is read: it makes the
//! sandbox, loads each plugin once, and starts every stage worker's first instance (so a
//! failing `init` is reported with the stage's name). [`Topology::run`] then wires the graph:
//! one bounded channel of batches in front of every stage and sink, fed by the [`Outputs`] of
//! everything that names it as an input (fan-in); a producer with several consumers sends each
//! its own copy (fan-out). Shutdown travels with the data: sources stop and drop their
//! senders, each stage drains and drops its own, sinks flush, and the dead-letter writer
//! ends last.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Pipeline;
use crate::connectors::{self, DEAD_LETTER_BUFFER};
use crate::delivery::{Batch, DeadLetter, Tracker};
use crate::metrics::{NodeKind, NodeMetrics, RunReport};
use crate::plugins::{Plugin, PluginError};
use crate::sandbox::{Sandbox, WasmStage};
use crate::stage::{self, BreakerState, Live, ProcessorFactory, Worker};

/// Why a pipeline could not start or did not finish cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("stage `{stage}`: plugin {plugin}: {message}")]
    Init {
        stage: String,
        plugin: PathBuf,
        message: String,
    },
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Failed(String),
}

/// The senders towards every consumer of one node.
#[derive(Clone)]
pub(crate) struct Outputs {
    senders: Vec<mpsc::Sender<Batch>>,
}

impl Outputs {
    /// Sends a batch to every consumer, waiting while a consumer's channel is full: this
    /// wait is the backpressure that reaches the source.
    pub(crate) async fn send(&self, batch: Batch) {
        if let Some((last, rest)) = self.senders.split_last() {
            for sender in rest {
                // A closed consumer has already failed and reported why.
                let _ = sender.send(batch.clone()).await;
            }
            let _ = last.send(batch).await;
        }
    }
}

/// What every task of a running pipeline shares.
pub(crate) struct Shared {
    /// Cancelled to stop the sources: on a signal, or when the run has failed.
    pub(crate) stop: CancellationToken,
    pub(crate) tracker: Arc<Tracker>,
    failure: Mutex<Option<String>>,
    /// Taken (and so closed) once every stage has ended, which ends the dead-letter writer.
    dead_letters: Mutex<Option<mpsc::Sender<DeadLetter>>>,
}

impl Shared {
    /// Records the first fatal failure and stops the sources; what is in flight drains.
    pub(crate) fn fail(&self, message: String) {
        tracing::error!("{message}");
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert(message);
        self.stop.cancel();
    }

    pub(crate) async fn dead_letter(&self, letter: DeadLetter) {
        let sender = self
            .dead_letters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(sender) = sender {
            let _ = sender.send(letter).await;
        }
    }

    fn take_failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// A pipeline whose plugins are loaded and whose stage instances are initialised.
pub struct Topology {
    pipeline: Pipeline,
    workers: HashMap<String, Vec<Worker>>,
    live: HashMap<String, Arc<Live>>,
    metrics: Vec<Arc<NodeMetrics>>,
    /// Hot loading: the engine and each plugin stage's first version.
    sandbox: Option<Arc<Sandbox>>,
    plugins: HashMap<String, Arc<Plugin>>,
}

impl Topology {
    /// Loads every plugin and initialises every stage worker.
    pub fn build(pipeline: &Pipeline) -> Result<Topology, RunError> {
        Topology::build_with(pipeline, HashMap::new())
    }

    /// Like [`Topology::build`], but the stages named in `natives` run the given processors
    /// instead of their plugins: the native baseline of the benchmarks uses this.
    pub fn build_with(
        pipeline: &Pipeline,
        mut natives: HashMap<String, Arc<dyn ProcessorFactory>>,
    ) -> Result<Topology, RunError> {
        let mut sandbox: Option<Arc<Sandbox>> = None;
        let mut plugins: HashMap<PathBuf, Arc<Plugin>> = HashMap::new();
        let mut workers = HashMap::new();
        let mut live = HashMap::new();
        let mut metrics = Vec::new();
        let mut stage_plugins = HashMap::new();
        for source in &pipeline.sources {
            metrics.push(Arc::new(NodeMetrics::new(&source.name, NodeKind::Source)));
        }
        for stage in &pipeline.stages {
            let factory: Arc<dyn ProcessorFactory> = match natives.remove(&stage.name) {
                Some(native) => native,
                None => {
                    let sandbox = match &sandbox {
                        Some(s) => Arc::clone(s),
                        None => {
                            let s =
                                Sandbox::new().map_err(|e| RunError::Engine(format!("{e:#}")))?;
                            sandbox.insert(s).clone()
                        }
                    };
                    let plugin = match plugins.get(&stage.plugin) {
                        Some(p) => Arc::clone(p),
                        None => {
                            let p = Arc::new(Plugin::load(&sandbox, &stage.plugin)?);
                            tracing::info!(stage = %stage.name, plugin = %stage.plugin.display(), digest = %p.short_digest(), "plugin loaded");
                            plugins.insert(stage.plugin.clone(), Arc::clone(&p));
                            p
                        }
                    };
                    plugin.check_grants(&stage.grant)?;
                    stage_plugins.insert(stage.name.clone(), Arc::clone(&plugin));
                    Arc::new(WasmStage {
                        sandbox,
                        plugin,
                        grant: stage.grant.clone(),
                        stage: Arc::from(stage.name.as_str()),
                        limits: stage.limits,
                        settings: stage.settings.clone(),
                    })
                }
            };
            let stage_live = Live::new(factory);
            let breaker = BreakerState::new(stage.breaker);
            let node = Arc::new(NodeMetrics::new(&stage.name, NodeKind::Stage));
            let config = Arc::new(stage.clone());
            let mut pool = Vec::with_capacity(stage.workers);
            for _ in 0..stage.workers {
                let worker = Worker::new(
                    Arc::clone(&stage_live),
                    Arc::clone(&config),
                    Arc::clone(&node),
                    Arc::clone(&breaker),
                )
                .map_err(|t| RunError::Init {
                    stage: stage.name.clone(),
                    plugin: stage.plugin.clone(),
                    message: t.message,
                })?;
                pool.push(worker);
            }
            workers.insert(stage.name.clone(), pool);
            live.insert(stage.name.clone(), stage_live);
            metrics.push(node);
        }
        for sink in &pipeline.sinks {
            metrics.push(Arc::new(NodeMetrics::new(&sink.name, NodeKind::Sink)));
        }
        Ok(Topology {
            pipeline: pipeline.clone(),
            workers,
            live,
            metrics,
            sandbox,
            plugins: stage_plugins,
        })
    }

    /// The live version handle of a stage, through which a new version can be swapped in.
    pub fn live(&self, stage: &str) -> Option<Arc<Live>> {
        self.live.get(stage).cloned()
    }

    /// Runs the pipeline until its sources end or `shutdown` is cancelled, then drains.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<RunReport, RunError> {
        let started = Instant::now();
        let pipeline = &self.pipeline;
        let (dl_tx, dl_rx) = mpsc::channel(DEAD_LETTER_BUFFER);
        let shared = Arc::new(Shared {
            stop: shutdown,
            tracker: Arc::new(Tracker::default()),
            failure: Mutex::new(None),
            dead_letters: Mutex::new(Some(dl_tx)),
        });
        let metric = |name: &str| {
            Arc::clone(
                self.metrics
                    .iter()
                    .find(|m| m.name == name)
                    .expect("every node has metrics"),
            )
        };

        // A channel in front of every consumer; producers collect the senders that name them.
        let mut receivers: HashMap<String, mpsc::Receiver<Batch>> = HashMap::new();
        let mut senders: HashMap<String, Vec<mpsc::Sender<Batch>>> = HashMap::new();
        let consumers = pipeline
            .stages
            .iter()
            .map(|s| (&s.name, &s.inputs))
            .chain(pipeline.sinks.iter().map(|s| (&s.name, &s.inputs)));
        for (name, inputs) in consumers {
            let (tx, rx) = mpsc::channel(pipeline.buffer);
            receivers.insert(name.clone(), rx);
            for input in inputs {
                senders.entry(input.clone()).or_default().push(tx.clone());
            }
        }
        let mut outputs_of = |name: &str| Outputs {
            senders: senders.remove(name).unwrap_or_default(),
        };

        // Hot loading: the admin API binds before any event is read, so a taken port stops
        // the run at once rather than after it started.
        let control =
            crate::reload::start(pipeline, &self.live, &self.plugins, self.sandbox.clone())
                .await
                .map_err(|e| RunError::Io(e.to_string()))?;

        let dead_letter_writer =
            connectors::spawn_dead_letters(&pipeline.dead_letter, dl_rx, shared.stop.clone())
                .map_err(|e| RunError::Io(format!("dead-letter sink: {e}")))?;

        let mut sinks = Vec::new();
        for sink in &pipeline.sinks {
            let rx = receivers
                .remove(&sink.name)
                .expect("every sink has a channel");
            let handle = connectors::spawn_sink(
                sink,
                rx,
                metric(&sink.name),
                shared.stop.clone(),
                pipeline.buffer,
            )
            .map_err(|e| RunError::Io(format!("sink `{}`: {e}", sink.name)))?;
            sinks.push(handle);
        }

        let mut tasks = Vec::new();
        for stage in &pipeline.stages {
            let rx = receivers
                .remove(&stage.name)
                .expect("every stage has a channel");
            let workers = self
                .workers
                .remove(&stage.name)
                .expect("every stage has workers");
            let handles = stage::spawn(workers, rx, outputs_of(&stage.name), Arc::clone(&shared))
                .map_err(|e| {
                RunError::Io(format!(
                    "stage `{}`: cannot start a worker thread: {e}",
                    stage.name
                ))
            })?;
            tasks.extend(handles);
        }
        for source in &pipeline.sources {
            let task = connectors::spawn_source(
                source,
                outputs_of(&source.name),
                metric(&source.name),
                Arc::clone(&shared),
            )
            .map_err(|e| RunError::Io(format!("source `{}`: {e}", source.name)))?;
            tasks.push(task);
        }
        drop(senders);

        for task in tasks {
            if let Err(e) = task.await {
                shared.fail(format!("a pipeline task stopped unexpectedly: {e}"));
            }
        }
        if let Some(control) = control {
            control.stop().await;
        }
        // Every stage has ended: close the dead-letter channel so its writer can finish.
        shared
            .dead_letters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let tracker = Arc::clone(&shared.tracker);
        let mut failure = shared.take_failure();
        for sink in sinks {
            if let Err(message) = sink
                .join()
                .unwrap_or_else(|_| Err("sink thread panicked".into()))
            {
                failure.get_or_insert(message);
            }
        }
        let dead_lettered = match dead_letter_writer
            .join()
            .unwrap_or_else(|_| Err("dead-letter thread panicked".into()))
        {
            Ok(n) => n,
            Err(message) => {
                failure.get_or_insert(message);
                0
            }
        };

        let nodes: Vec<_> = self.metrics.iter().map(|m| m.snapshot()).collect();
        let report = RunReport {
            elapsed: started.elapsed(),
            events_in: tracker.emitted(),
            events_out: nodes
                .iter()
                .filter(|n| n.kind == NodeKind::Sink)
                .map(|n| n.events_out)
                .sum(),
            dead_lettered,
            in_flight_max: tracker.high_water(),
            nodes,
        };
        match failure {
            Some(message) => Err(RunError::Failed(message)),
            None => Ok(report),
        }
    }
}

/// Builds and runs a pipeline: the library's entry point.
pub async fn run(pipeline: &Pipeline, shutdown: CancellationToken) -> Result<RunReport, RunError> {
    let topology = {
        let pipeline = pipeline.clone();
        // Compiling plugins is CPU work: keep it off the reactor.
        tokio::task::spawn_blocking(move || Topology::build(&pipeline))
            .await
            .map_err(|e| RunError::Failed(format!("pipeline build stopped unexpectedly: {e}")))??
    };
    topology.run(shutdown).await
}
