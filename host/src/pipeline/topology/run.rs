//! Running a topology: channels wired, every node started, the end awaited, the report made.
//!
//! One bounded channel runs in front of every consumer (a chain's head or a sink); each
//! producer's [`Outputs`] holds a sender per consumer. Shutdown travels with the data: the
//! sources end (their input ran out, or the stop token was cancelled) and drop their senders;
//! each chain drains, finishes its retries and drops its own; the sinks flush; and the
//! dead-letter writer ends last, once every stage and source has dropped its sender.
//!
//! Every source and sink connects before any node starts, so that an unreachable server, a
//! missing stream or a taken port stops the run before anything is read. Once every thread
//! has ended (every acknowledgement released, or forgotten for ever), each source finishes:
//! a file source makes its last checkpoint, a NATS source sends its last acks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::ChainPlan;
use super::{RunError, Topology};
use crate::config::Pipeline;
use crate::pipeline::connectors::{
    self, BoxFuture, DEAD_LETTER_BUFFER, RunningSink, SinkParts, SourceParts, SourceState,
};
use crate::pipeline::data_dir::DataDir;
use crate::pipeline::edge::{self, Outputs, Receiver, RunContext, Sender};
use crate::pipeline::failure::NodeFailure;
use crate::pipeline::report::{NodeKind, NodeMetrics, RunReport};
use crate::pipeline::stage::StageHandle;
use crate::pipeline::stage::chain::{Chain, TimerBatches};
use crate::pipeline::stage::runner::StageRunner;
use crate::pipeline::state::{Durable, Fired};

type Sources = Vec<(String, Box<dyn connectors::Source>)>;
type Sinks = Vec<(String, Box<dyn connectors::Sink>)>;

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
        self.start(shutdown, options).await?.wait().await
    }

    /// Connects every source and sink and starts every node; events flow from when it
    /// returns until the sources end or `shutdown` is cancelled ([`Running::stop`]).
    pub async fn start(
        self,
        shutdown: CancellationToken,
        options: RunOptions,
    ) -> Result<Running, RunError> {
        let started = Instant::now();
        let bound = self.in_flight_bound();
        // The data folder is locked before anything is read, and until the run ends.
        let data_dir = match &self.pipeline.data_dir {
            Some(dir) => Some(DataDir::open(dir)?),
            None => None,
        };
        let ctx = RunContext::with_tracker(shutdown, Arc::clone(&self.tracker));
        let Topology {
            pipeline,
            chains,
            metrics,
            handles,
            mut sources,
            mut sinks,
            ..
        } = self;
        connect(&mut sources, &mut sinks).await?;
        // Events carry their origins only where a connector needs them: every other pipeline
        // goes without, at no cost per event.
        let sinks_track = sinks.iter().any(|(_, s)| s.needs_origins());
        let mut wiring = Wiring::new(&pipeline, &chains, &metrics);

        let (dl_tx, dl_rx) = edge::dead_letter_channel(DEAD_LETTER_BUFFER);
        let dead_letter_writer =
            connectors::dead_letters::spawn(&pipeline.dead_letter, dl_rx, Arc::clone(&ctx))
                .map_err(|e| RunError::Start {
                    what: "dead-letter sink".into(),
                    cause: e.into(),
                })?;
        let sinks = wiring.start_sinks(sinks, pipeline.buffer, &ctx)?;

        let durable = match &data_dir {
            Some(dir) => open_durable(dir, &handles, &sources, options.from_start)?,
            None => None,
        };
        let rounds = durable.as_ref().map(|d| {
            let stop = CancellationToken::new();
            tokio::spawn(Arc::clone(d).run(
                pipeline.checkpoint_interval,
                stop.clone(),
                Arc::clone(&ctx),
            ));
            (Arc::clone(d), stop)
        });
        // Timers fired on a tick or at the end of the input: batches of their own, acknowledged
        // into the rounds, and with origins where a sink gives events ids.
        let fired = durable.as_ref().map(|d| {
            let fired = Arc::new(Fired::default());
            let ledger = Arc::clone(&fired) as Arc<dyn crate::pipeline::ack::Ledger>;
            d.register(
                "timers",
                crate::pipeline::ack::ledger_id(&ledger),
                Arc::clone(&fired) as Arc<dyn crate::pipeline::state::Positioned>,
            );
            fired
        });
        let timers = TimerBatches {
            fired,
            tracked: sinks_track || sources.iter().any(|(_, s)| s.needs_origins()),
        };
        let threads = wiring.start_chains(chains, &dl_tx, &ctx, &timers)?;
        let state = |name: &str| {
            data_dir.as_ref().map(|dir| SourceState {
                checkpoint: dir.checkpoint(name),
                interval: pipeline.checkpoint_interval,
                from_start: options.from_start,
                durable: durable.clone(),
            })
        };
        let sources = wiring.start_sources(sources, sinks_track, &ctx, &dl_tx, &state)?;
        // Only the nodes hold senders now: each channel closes when its producers end.
        drop(wiring);
        drop(dl_tx);
        Ok(Running {
            started,
            bound,
            ctx,
            metrics,
            handles,
            data_dir,
            rounds,
            sources,
            threads,
            sinks,
            dead_letter_writer,
        })
    }
}

/// The commit rounds of the stages that keep state, when there are any: the store opened in
/// the data folder, each such stage's state loaded from it and each file source's checkpoint
/// set from it (a NATS source reads its position from it when it starts). A source that
/// cannot commit its position with the state is refused.
fn open_durable(
    dir: &DataDir,
    handles: &std::collections::BTreeMap<String, Arc<StageHandle>>,
    sources: &Sources,
    from_start: bool,
) -> Result<Option<Arc<Durable>>, RunError> {
    let stages: Vec<_> = handles
        .iter()
        .filter(|(_, h)| h.state.attached())
        .map(|(name, h)| (name.clone(), Arc::clone(&h.state)))
        .collect();
    if stages.is_empty() {
        return Ok(None);
    }
    if let Some((name, _)) = sources.iter().find(|(_, s)| !s.commits_with_state()) {
        return Err(RunError::Start {
            what: format!("source `{name}`"),
            cause: "it cannot commit its position with the state the stages keep in \
                    `data_dir`, so that state could not stay exactly once: not supported \
                    (remove `data_dir`, and the state lives in memory)"
                .into(),
        });
    }
    let checkpoints: Vec<_> = sources
        .iter()
        .filter(|(_, s)| s.reads_file().is_some())
        .map(|(name, _)| (name.clone(), dir.checkpoint(name)))
        .collect();
    Durable::open(dir.path(), stages, &checkpoints, from_start)
        .map(Some)
        .map_err(|e| RunError::Start {
            what: "the state store".into(),
            cause: e.into(),
        })
}

/// A running pipeline: a handle to stop it, look at it and reach its stages while it runs,
/// and to wait for its report.
pub struct Running {
    started: Instant,
    bound: u64,
    ctx: Arc<RunContext>,
    metrics: Vec<Arc<NodeMetrics>>,
    handles: std::collections::BTreeMap<String, Arc<StageHandle>>,
    /// Locked until the run has ended.
    data_dir: Option<DataDir>,
    /// The state's commit rounds, and the stop of the periodic ones.
    rounds: Option<(Arc<Durable>, CancellationToken)>,
    sources: StartedSources,
    threads: Vec<std::thread::JoinHandle<()>>,
    sinks: Vec<RunningSink>,
    dead_letter_writer: std::thread::JoinHandle<Result<u64, NodeFailure>>,
}

impl Running {
    /// Stops reading; what is in flight drains, and [`Running::wait`] returns the report.
    pub fn stop(&self) {
        self.ctx.stop.cancel();
    }

    /// A stage's handle: the door hot loading goes through.
    pub fn stage(&self, name: &str) -> Option<Arc<StageHandle>> {
        self.handles.get(name).cloned()
    }

    /// Every node's counters: sources, then stages (upstream first), then sinks.
    pub fn nodes(&self) -> &[Arc<NodeMetrics>] {
        &self.metrics
    }

    /// The report as it stands: counts so far (dead letters as the stages and sources
    /// counted them, not yet as written).
    pub fn snapshot(&self) -> RunReport {
        let counted = self.metrics.iter().map(|m| m.snapshot().failed).sum();
        report(
            self.started,
            &self.ctx,
            &self.metrics,
            counted,
            self.bound,
            false,
        )
    }

    /// Waits for the sources to end (or be stopped) and everything to drain, makes each
    /// source's last commit, and returns the report; a fatal failure returns it inside
    /// [`RunError::Stopped`].
    pub async fn wait(self) -> Result<RunReport, RunError> {
        let Running {
            started,
            bound,
            ctx,
            metrics,
            data_dir,
            rounds,
            mut sources,
            threads,
            sinks,
            dead_letter_writer,
            ..
        } = self;
        let interrupted = sources.wait(&ctx).await;
        let dead = tokio::task::spawn_blocking(move || join(threads, sinks, dead_letter_writer))
            .await
            .map_err(|cause| RunError::Crashed {
                what: "the pipeline",
                cause,
            })?;
        let (stages_ok, sinks_ok, dead) = dead;
        if !stages_ok {
            ctx.fail(NodeFailure::crashed("a stage worker thread"));
        }
        if !sinks_ok {
            ctx.fail(NodeFailure::crashed("a sink thread"));
        }
        // A dead-letter writer that failed has recorded why already.
        let dead_lettered = dead.unwrap_or(0);
        // Everything is written and every acknowledgement released (or never will be): the
        // state's last round, then the last commit of each source (a NATS source sends the
        // acks that round released).
        if let Some((durable, stop)) = rounds {
            stop.cancel();
            let last = tokio::task::spawn_blocking(move || durable.round()).await;
            if let Ok(Err(e)) = last {
                ctx.fail(NodeFailure::State {
                    message: e.to_string(),
                });
            }
        }
        sources.finish().await;
        drop(data_dir);

        let report = report(started, &ctx, &metrics, dead_lettered, bound, interrupted);
        match ctx.failure() {
            Some(failure) => Err(RunError::Stopped {
                failure,
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

/// Joins every thread, even after one that panicked; returns whether the stage threads and
/// the sinks ended without a panic, and what the dead-letter writer returned.
fn join(
    threads: Vec<std::thread::JoinHandle<()>>,
    sinks: Vec<RunningSink>,
    dead_letter_writer: std::thread::JoinHandle<Result<u64, NodeFailure>>,
) -> (bool, bool, Result<u64, NodeFailure>) {
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
        .unwrap_or_else(|_| Err(NodeFailure::crashed("the dead-letter writer")));
    (stage_threads, sinks_ok, dead)
}

/// Connects every source and sink, one after another, before any node starts.
async fn connect(sources: &mut Sources, sinks: &mut Sinks) -> Result<(), RunError> {
    for (name, source) in sources.iter_mut() {
        source
            .connect()
            .await
            .map_err(|source| RunError::Connector {
                node: format!("source `{name}`"),
                source,
            })?;
    }
    for (name, sink) in sinks.iter_mut() {
        sink.connect().await.map_err(|source| RunError::Connector {
            node: format!("sink `{name}`"),
            source,
        })?;
    }
    Ok(())
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

    /// A node's number in the run: what its batches' `from` says.
    fn id(&self, name: &str) -> u32 {
        self.metrics
            .iter()
            .position(|m| m.name == name)
            .expect("every node has metrics") as u32
    }

    /// The numbers of the nodes that send to `consumer`.
    fn producers_of(&self, consumer: &str) -> Vec<u32> {
        self.consumers
            .iter()
            .filter(|(_, to)| to.iter().any(|c| c == consumer))
            .map(|(from, _)| self.id(from))
            .collect()
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
        Outputs::new(self.id(node), senders)
    }

    /// An output to each consumer of `node` alone, by the consumer's name.
    fn routes_of(&self, node: &str) -> Vec<(String, Outputs)> {
        let Some(names) = self.consumers.get(node) else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|n| {
                let entry = self.entry.get(n)?.clone();
                Some((n.clone(), Outputs::new(self.id(node), vec![entry])))
            })
            .collect()
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
        timers: &TimerBatches,
    ) -> Result<Vec<std::thread::JoinHandle<()>>, RunError> {
        let runtime = tokio::runtime::Handle::current();
        let mut threads = Vec::new();
        for (plan, workers) in chains {
            let chain = Chain {
                workers,
                producers: self.producers_of(plan.head()),
                input: self.take_input(plan.head()),
                head: self.metric(plan.head()),
                outputs: self.outputs_of(plan.tail()),
                dead_letters: dead_letters.clone(),
                ctx: Arc::clone(ctx),
                keyed: plan.keyed,
                timers: timers.clone(),
            };
            let spawned = chain
                .spawn(&runtime, plan.head())
                .map_err(|e| RunError::Start {
                    what: format!("stage `{}`: cannot start a worker thread", plan.head()),
                    cause: e.into(),
                })?;
            threads.extend(spawned);
        }
        Ok(threads)
    }

    fn start_sinks(
        &mut self,
        sinks: Sinks,
        buffer: usize,
        ctx: &Arc<RunContext>,
    ) -> Result<Vec<RunningSink>, RunError> {
        let mut running = Vec::new();
        for (name, sink) in sinks {
            let parts = SinkParts {
                input: self.take_input(&name),
                metrics: self.metric(&name),
                ctx: Arc::clone(ctx),
                buffer,
            };
            let thread = sink.start(parts).map_err(|source| RunError::Connector {
                node: format!("sink `{name}`"),
                source,
            })?;
            running.push(thread);
        }
        Ok(running)
    }

    fn start_sources(
        &self,
        sources: Sources,
        sinks_track: bool,
        ctx: &Arc<RunContext>,
        dead_letters: &edge::DeadLetterTx,
        state: &dyn Fn(&str) -> Option<SourceState>,
    ) -> Result<StartedSources, RunError> {
        let mut started = StartedSources::default();
        for (name, source) in sources {
            let parts = SourceParts {
                outputs: self.outputs_of(&name),
                metrics: self.metric(&name),
                ctx: Arc::clone(ctx),
                dead_letters: dead_letters.clone(),
                state: state(&name),
                tracked: sinks_track || source.needs_origins(),
                routes: self.routes_of(&name),
            };
            let running = source.start(parts).map_err(|source| RunError::Connector {
                node: format!("source `{name}`"),
                source,
            })?;
            started.tasks.push(running.task);
            started.finishers.extend(running.finish);
        }
        Ok(started)
    }
}

/// The running sources, and what each must do once the run has drained.
#[derive(Default)]
struct StartedSources {
    tasks: Vec<tokio::task::JoinHandle<bool>>,
    finishers: Vec<BoxFuture<'static, ()>>,
}

impl StartedSources {
    /// Waits for every source task; returns whether any was stopped before its input ended.
    async fn wait(&mut self, ctx: &RunContext) -> bool {
        let mut interrupted = false;
        for task in self.tasks.drain(..) {
            match task.await {
                Ok(stopped) => interrupted |= stopped,
                Err(_) => ctx.fail(NodeFailure::crashed("a source")),
            }
        }
        interrupted
    }

    /// What each source does once the run has drained: a last checkpoint, the last acks.
    async fn finish(self) {
        for finish in self.finishers {
            finish.await;
        }
    }
}
