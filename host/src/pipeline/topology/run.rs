//! Running a topology: channels wired, every node started, the end awaited, the report made.
//!
//! One bounded channel runs in front of every consumer (a chain's head or a sink); each
//! producer's [`Outputs`] holds a sender per consumer. Shutdown travels with the data: the
//! sources end (their input ran out, or the stop token was cancelled) and drop their senders;
//! each chain drains, finishes its retries and drops its own; the sinks flush; and the
//! dead-letter writer ends last, once every stage and source has dropped its sender.
//!
//! NATS sources and sinks connect before any node starts, so that an unreachable server or a
//! missing stream stops the run before anything is read. Once every thread has ended (every
//! acknowledgement released, or forgotten for ever), each file source makes its last
//! checkpoint and each NATS source sends its last acks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::ChainPlan;
use super::{RunError, Topology};
use crate::config::{Pipeline, SinkKind, SourceKind};
use crate::pipeline::checkpoint::{Checkpointer, DataDir, Positions};
use crate::pipeline::connectors::DEAD_LETTER_BUFFER;
use crate::pipeline::connectors::nats::{self, NatsInput, NatsOutput};
use crate::pipeline::connectors::parts::{SourceCheckpoint, SourceParts};
use crate::pipeline::connectors::sinks::{spawn_dead_letters, spawn_sink};
use crate::pipeline::connectors::sources;
use crate::pipeline::edge::{self, Outputs, Receiver, RunContext, Sender};
use crate::pipeline::report::{NodeKind, NodeMetrics, RunReport};
use crate::pipeline::stage::chain::Chain;
use crate::pipeline::stage::runner::StageRunner;

/// Whether a source's batches carry their events' origins: a NATS source needs them to end a
/// dead-lettered message with `Term`, a NATS sink to name each message it publishes. Every
/// other pipeline goes without, at no cost per event.
fn tracked(pipeline: &Pipeline, source: &crate::config::Source) -> bool {
    matches!(source.kind, SourceKind::Nats(_))
        || pipeline
            .sinks
            .iter()
            .any(|s| matches!(s.kind, SinkKind::Nats { .. }))
}

/// How a run starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Read every file source from its start, whatever its checkpoint says.
    pub from_start: bool,
}

impl Topology {
    /// Runs the pipeline until its sources end or `shutdown` is cancelled, then drains.
    pub async fn run(self, shutdown: CancellationToken) -> Result<RunReport, RunError> {
        self.run_with(shutdown, RunOptions::default()).await
    }

    /// [`Topology::run`] with options.
    pub async fn run_with(
        self,
        shutdown: CancellationToken,
        options: RunOptions,
    ) -> Result<RunReport, RunError> {
        let started = Instant::now();
        let bound = self.in_flight_bound();
        // The data folder is locked before anything is read, and until the run ends.
        let data_dir = match &self.pipeline.data_dir {
            Some(dir) => Some(DataDir::open(dir)?),
            None => None,
        };
        let mut brokers = Brokers::connect(&self.pipeline).await?;
        let ctx = RunContext::with_tracker(shutdown, Arc::clone(&self.tracker));
        let Topology {
            pipeline,
            chains,
            metrics,
            ..
        } = self;
        let mut wiring = Wiring::new(&pipeline, &chains, &metrics);

        let (dl_tx, dl_rx) = edge::dead_letter_channel(DEAD_LETTER_BUFFER);
        let dead_letter_writer = spawn_dead_letters(&pipeline.dead_letter, dl_rx, Arc::clone(&ctx))
            .map_err(|e| RunError::Io(format!("dead-letter sink: {e}")))?;
        let sinks = wiring.start_sinks(&pipeline, &mut brokers, &ctx)?;

        let threads = wiring.start_chains(chains, &dl_tx, &ctx)?;
        let mut started_sources =
            wiring.start_sources(&pipeline, &mut brokers, &ctx, &dl_tx, &data_dir, options)?;
        // Only the nodes hold senders now: each channel closes when its producers end.
        drop(wiring);
        drop(dl_tx);

        let interrupted = started_sources.wait(&ctx).await;
        let dead = tokio::task::spawn_blocking(move || join(threads, sinks, dead_letter_writer))
            .await
            .map_err(|e| RunError::Failed(format!("the pipeline stopped unexpectedly: {e}")))?;
        let (stages_ok, sinks_ok, dead) = dead;
        if !stages_ok {
            ctx.fail("a stage worker thread stopped unexpectedly".into());
        }
        if !sinks_ok {
            ctx.fail("a sink thread stopped unexpectedly".into());
        }
        // A dead-letter writer that failed has recorded why already.
        let dead_lettered = dead.unwrap_or(0);
        // Everything is written and every acknowledgement released (or never will be): the
        // last commit of each source.
        started_sources.finish().await?;
        drop(data_dir);

        let report = report(started, &ctx, &metrics, dead_lettered, bound, interrupted);
        match ctx.failure() {
            Some(message) => Err(RunError::Stopped {
                message,
                report: Box::new(report),
            }),
            None => Ok(report),
        }
    }
}

/// The run's report, once everything has ended.
fn report(
    started: Instant,
    ctx: &RunContext,
    metrics: &[Arc<NodeMetrics>],
    dead_lettered: u64,
    bound: u64,
    interrupted: bool,
) -> RunReport {
    let nodes: Vec<_> = metrics.iter().map(|m| m.snapshot()).collect();
    RunReport {
        elapsed: started.elapsed(),
        total: started.elapsed(),
        events_in: ctx.tracker.emitted(),
        events_out: nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Sink)
            .map(|n| n.events_out)
            .sum(),
        dead_lettered,
        in_flight_max: ctx.tracker.high_water(),
        acknowledged: ctx.tracker.done(),
        in_flight_bound: bound,
        interrupted: interrupted && ctx.failure().is_none(),
        nodes,
    }
}

type SinkThread = std::thread::JoinHandle<Result<(), String>>;

/// Joins every thread, even after one that panicked; returns whether the stage threads and
/// the sinks ended without a panic, and what the dead-letter writer returned.
fn join(
    threads: Vec<std::thread::JoinHandle<()>>,
    sinks: Vec<SinkThread>,
    dead_letter_writer: std::thread::JoinHandle<Result<u64, String>>,
) -> (bool, bool, Result<u64, String>) {
    let stage_threads = threads
        .into_iter()
        .map(|t| t.join())
        .filter(Result::is_err)
        .count()
        == 0;
    // A sink that failed has recorded why already; only a panic is news here.
    let sinks_ok = sinks
        .into_iter()
        .map(|s| s.join())
        .filter(Result::is_err)
        .count()
        == 0;
    let dead = dead_letter_writer
        .join()
        .unwrap_or_else(|_| Err("the dead-letter thread panicked".into()));
    (stage_threads, sinks_ok, dead)
}

/// The NATS sources and sinks of a pipeline, connected before anything starts.
#[derive(Default)]
struct Brokers {
    inputs: HashMap<String, NatsInput>,
    outputs: HashMap<String, NatsOutput>,
}

impl Brokers {
    async fn connect(pipeline: &Pipeline) -> Result<Brokers, RunError> {
        let mut brokers = Brokers::default();
        for source in &pipeline.sources {
            if let SourceKind::Nats(config) = &source.kind {
                let input = nats::prepare_source(source, config)
                    .await
                    .map_err(|e| RunError::Failed(format!("source `{}`: {e}", source.name)))?;
                brokers.inputs.insert(source.name.clone(), input);
            }
        }
        for sink in &pipeline.sinks {
            if let SinkKind::Nats {
                url,
                servers,
                subject,
            } = &sink.kind
            {
                let output = nats::prepare_sink(sink, url, servers, subject)
                    .await
                    .map_err(|e| RunError::Failed(format!("sink `{}`: {e}", sink.name)))?;
                brokers.outputs.insert(sink.name.clone(), output);
            }
        }
        Ok(brokers)
    }
}

/// The channels of a run, until every node holds its ends.
struct Wiring {
    /// Every node's consumers.
    consumers: HashMap<String, Vec<String>>,
    receivers: HashMap<String, Receiver>,
    /// The sending end of every consumer's channel, with the consumer's metrics (which count
    /// the events queued in it).
    entry: HashMap<String, (Sender, Arc<NodeMetrics>)>,
    metrics: Vec<Arc<NodeMetrics>>,
}

impl Wiring {
    /// A channel in front of every consumer; producers collect the senders that name it.
    fn new(
        pipeline: &Pipeline,
        chains: &[(ChainPlan, Vec<Vec<StageRunner>>)],
        metrics: &[Arc<NodeMetrics>],
    ) -> Wiring {
        let consumers = super::consumers(pipeline)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut wiring = Wiring {
            consumers,
            receivers: HashMap::new(),
            entry: HashMap::new(),
            metrics: metrics.to_vec(),
        };
        let heads = chains.iter().map(|(plan, _)| plan.head().to_string());
        for name in heads.chain(pipeline.sinks.iter().map(|s| s.name.clone())) {
            let (tx, rx) = edge::channel(pipeline.buffer);
            wiring.receivers.insert(name.clone(), rx);
            let queue = wiring.metric(&name);
            wiring.entry.insert(name, (tx, queue));
        }
        wiring
    }

    fn metric(&self, name: &str) -> Arc<NodeMetrics> {
        Arc::clone(
            self.metrics
                .iter()
                .find(|m| m.name == name)
                .expect("every node has metrics"),
        )
    }

    fn outputs_of(&self, node: &str) -> Outputs {
        let senders = self
            .consumers
            .get(node)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| self.entry.get(n).cloned())
                    .collect()
            })
            .unwrap_or_default();
        Outputs::new(senders)
    }

    fn take_input(&mut self, consumer: &str) -> Receiver {
        self.receivers
            .remove(consumer)
            .expect("every consumer has a channel")
    }

    /// One set of worker threads per chain, reading the channel in front of its head.
    fn start_chains(
        &mut self,
        chains: Vec<(ChainPlan, Vec<Vec<StageRunner>>)>,
        dead_letters: &edge::DeadLetterTx,
        ctx: &Arc<RunContext>,
    ) -> Result<Vec<std::thread::JoinHandle<()>>, RunError> {
        let runtime = tokio::runtime::Handle::current();
        let mut threads = Vec::new();
        for (plan, workers) in chains {
            let chain = Chain {
                workers,
                input: self.take_input(plan.head()),
                head: self.metric(plan.head()),
                outputs: self.outputs_of(plan.tail()),
                dead_letters: dead_letters.clone(),
                ctx: Arc::clone(ctx),
            };
            let spawned = chain.spawn(&runtime, plan.head()).map_err(|e| {
                RunError::Io(format!(
                    "stage `{}`: cannot start a worker thread: {e}",
                    plan.head()
                ))
            })?;
            threads.extend(spawned);
        }
        Ok(threads)
    }

    fn start_sinks(
        &mut self,
        pipeline: &Pipeline,
        brokers: &mut Brokers,
        ctx: &Arc<RunContext>,
    ) -> Result<Vec<SinkThread>, RunError> {
        let mut sinks = Vec::new();
        for sink in &pipeline.sinks {
            let rx = self.take_input(&sink.name);
            let metrics = self.metric(&sink.name);
            let ctx = Arc::clone(ctx);
            let handle = match brokers.outputs.remove(&sink.name) {
                Some(output) => {
                    nats::sink::spawn_sink(sink, output, rx, metrics, ctx, pipeline.buffer)
                }
                None => spawn_sink(sink, rx, metrics, ctx, pipeline.buffer),
            }
            .map_err(|e| RunError::Io(format!("sink `{}`: {e}", sink.name)))?;
            sinks.push(handle);
        }
        Ok(sinks)
    }

    fn start_sources(
        &self,
        pipeline: &Pipeline,
        brokers: &mut Brokers,
        ctx: &Arc<RunContext>,
        dead_letters: &edge::DeadLetterTx,
        data_dir: &Option<DataDir>,
        options: RunOptions,
    ) -> Result<StartedSources, RunError> {
        let mut started = StartedSources::default();
        for source in &pipeline.sources {
            let checkpoint = match (data_dir, &source.kind) {
                (Some(dir), SourceKind::File { .. }) => {
                    let cp = Arc::new(Checkpointer {
                        path: dir.checkpoint(&source.name),
                        positions: Arc::new(Positions::default()),
                    });
                    tokio::spawn(Arc::clone(&cp).run(
                        pipeline.checkpoint_interval,
                        started.checkpoint_stop.clone(),
                    ));
                    started.checkpointers.push(Arc::clone(&cp));
                    Some(SourceCheckpoint {
                        path: cp.path.clone(),
                        positions: Arc::clone(&cp.positions),
                        from_start: options.from_start,
                    })
                }
                _ => None,
            };
            let parts = SourceParts {
                outputs: self.outputs_of(&source.name),
                metrics: self.metric(&source.name),
                ctx: Arc::clone(ctx),
                dead_letters: dead_letters.clone(),
                checkpoint,
                tracked: tracked(pipeline, source),
            };
            let task = match brokers.inputs.remove(&source.name) {
                Some(input) => {
                    let (task, finisher) = nats::source::spawn_source(source, input, parts);
                    started.finishers.push(finisher);
                    task
                }
                None => sources::spawn(source, parts)
                    .map_err(|e| RunError::Io(format!("source `{}`: {e}", source.name)))?,
            };
            started.tasks.push(task);
        }
        Ok(started)
    }
}

/// The running sources, and what each must do once the run has drained.
#[derive(Default)]
struct StartedSources {
    tasks: Vec<tokio::task::JoinHandle<bool>>,
    checkpointers: Vec<Arc<Checkpointer>>,
    checkpoint_stop: CancellationToken,
    finishers: Vec<nats::source::Finisher>,
}

impl StartedSources {
    /// Waits for every source task; returns whether any was stopped before its input ended.
    async fn wait(&mut self, ctx: &RunContext) -> bool {
        let mut interrupted = false;
        for task in self.tasks.drain(..) {
            match task.await {
                Ok(stopped) => interrupted |= stopped,
                Err(e) => ctx.fail(format!("a source stopped unexpectedly: {e}")),
            }
        }
        interrupted
    }

    /// The last checkpoint of each file source, the last acks of each NATS source.
    async fn finish(self) -> Result<(), RunError> {
        self.checkpoint_stop.cancel();
        let checkpointers = self.checkpointers;
        tokio::task::spawn_blocking(move || {
            for cp in checkpointers {
                cp.commit();
            }
        })
        .await
        .map_err(|e| RunError::Failed(format!("the last checkpoint stopped unexpectedly: {e}")))?;
        for finisher in self.finishers {
            finisher.finish().await;
        }
        Ok(())
    }
}
