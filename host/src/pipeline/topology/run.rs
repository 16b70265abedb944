//! Running a topology: channels wired, every node started, the end awaited, the report made.
//!
//! One bounded channel runs in front of every consumer (a chain's head or a sink); each
//! producer's [`Outputs`] holds a sender per consumer. Shutdown travels with the data: the
//! sources end (their input ran out, or the stop token was cancelled) and drop their senders;
//! each chain drains, finishes its retries and drops its own; the sinks flush; and the
//! dead-letter writer ends last, once every stage and source has dropped its sender.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{RunError, Topology};
use crate::config::SourceKind;
use crate::pipeline::checkpoint::{Checkpointer, DataDir, Positions};
use crate::pipeline::connectors::DEAD_LETTER_BUFFER;
use crate::pipeline::connectors::sinks::{spawn_dead_letters, spawn_sink};
use crate::pipeline::connectors::sources::{self, SourceCheckpoint, SourceParts};
use crate::pipeline::edge::{self, Outputs, Receiver, RunContext, Sender};
use crate::pipeline::report::{NodeKind, RunReport};
use crate::pipeline::stage::chain::Chain;

/// Whether a source's batches carry their events' origins: a NATS source needs them to end a
/// dead-lettered message with `Term`, a NATS sink to name each message it publishes. Every
/// other pipeline goes without, at no cost per event.
fn tracked(pipeline: &crate::config::Pipeline, source: &crate::config::Source) -> bool {
    matches!(source.kind, SourceKind::Nats(_))
        || pipeline
            .sinks
            .iter()
            .any(|s| matches!(s.kind, crate::config::SinkKind::Nats { .. }))
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
            Some(dir) => Some(DataDir::open(dir).map_err(|e| RunError::Failed(e.to_string()))?),
            None => None,
        };
        let ctx = RunContext::new(shutdown);
        let Topology {
            pipeline,
            chains,
            metrics,
            ..
        } = self;
        let metric = |name: &str| {
            Arc::clone(
                metrics
                    .iter()
                    .find(|m| m.name == name)
                    .expect("every node has metrics"),
            )
        };

        // A channel in front of every consumer; producers collect the senders that name it.
        let consumers = super::consumers(&pipeline);
        let mut receivers: HashMap<String, Receiver> = HashMap::new();
        let mut entry: HashMap<String, Sender> = HashMap::new();
        let heads = chains.iter().map(|(plan, _)| plan.head().to_string());
        for name in heads.chain(pipeline.sinks.iter().map(|s| s.name.clone())) {
            let (tx, rx) = edge::channel(pipeline.buffer);
            receivers.insert(name.clone(), rx);
            entry.insert(name, tx);
        }
        let outputs_of = |node: &str| {
            let senders = consumers
                .get(node)
                .map(|names| names.iter().filter_map(|n| entry.get(n).cloned()).collect())
                .unwrap_or_default();
            Outputs::new(senders)
        };

        let (dl_tx, dl_rx) = edge::dead_letter_channel(DEAD_LETTER_BUFFER);
        let dead_letter_writer = spawn_dead_letters(&pipeline.dead_letter, dl_rx, Arc::clone(&ctx))
            .map_err(|e| RunError::Io(format!("dead-letter sink: {e}")))?;
        let mut sinks = Vec::new();
        for sink in &pipeline.sinks {
            let rx = receivers
                .remove(&sink.name)
                .expect("every sink has a channel");
            let handle = spawn_sink(
                sink,
                rx,
                metric(&sink.name),
                Arc::clone(&ctx),
                pipeline.buffer,
            )
            .map_err(|e| RunError::Io(format!("sink `{}`: {e}", sink.name)))?;
            sinks.push(handle);
        }

        let runtime = tokio::runtime::Handle::current();
        let mut threads = Vec::new();
        for (plan, workers) in chains {
            let chain = Chain {
                workers,
                input: receivers
                    .remove(plan.head())
                    .expect("every chain has a channel"),
                outputs: outputs_of(plan.tail()),
                dead_letters: dl_tx.clone(),
                ctx: Arc::clone(&ctx),
            };
            let spawned = chain.spawn(&runtime, plan.head()).map_err(|e| {
                RunError::Io(format!(
                    "stage `{}`: cannot start a worker thread: {e}",
                    plan.head()
                ))
            })?;
            threads.extend(spawned);
        }
        let mut source_tasks = Vec::new();
        let mut checkpointers = Vec::new();
        let checkpoint_stop = CancellationToken::new();
        for source in &pipeline.sources {
            let checkpoint = match (&data_dir, &source.kind) {
                (Some(dir), SourceKind::File { .. }) => {
                    let cp = Arc::new(Checkpointer {
                        path: dir.checkpoint(&source.name),
                        positions: Arc::new(Positions::default()),
                    });
                    tokio::spawn(
                        Arc::clone(&cp).run(pipeline.checkpoint_interval, checkpoint_stop.clone()),
                    );
                    checkpointers.push(Arc::clone(&cp));
                    Some(SourceCheckpoint {
                        path: cp.path.clone(),
                        positions: Arc::clone(&cp.positions),
                        from_start: options.from_start,
                    })
                }
                _ => None,
            };
            let parts = SourceParts {
                outputs: outputs_of(&source.name),
                metrics: metric(&source.name),
                ctx: Arc::clone(&ctx),
                dead_letters: dl_tx.clone(),
                checkpoint,
                tracked: tracked(&pipeline, source),
            };
            let task = sources::spawn(source, parts)
                .map_err(|e| RunError::Io(format!("source `{}`: {e}", source.name)))?;
            source_tasks.push(task);
        }
        // Only the nodes hold senders now: each channel closes when its producers end.
        drop(entry);
        drop(dl_tx);

        let mut interrupted = false;
        for task in source_tasks {
            match task.await {
                Ok(stopped) => interrupted |= stopped,
                Err(e) => ctx.fail(format!("a source stopped unexpectedly: {e}")),
            }
        }
        let joined = tokio::task::spawn_blocking(move || {
            // Every thread is joined, even after one that panicked.
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
        })
        .await
        .map_err(|e| RunError::Failed(format!("the pipeline stopped unexpectedly: {e}")))?;
        let (stages_ok, sinks_ok, dead) = joined;
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
        checkpoint_stop.cancel();
        tokio::task::spawn_blocking(move || {
            for cp in checkpointers {
                cp.commit();
            }
        })
        .await
        .map_err(|e| RunError::Failed(format!("the last checkpoint stopped unexpectedly: {e}")))?;
        drop(data_dir);

        let nodes: Vec<_> = metrics.iter().map(|m| m.snapshot()).collect();
        let report = RunReport {
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
        };
        match ctx.failure() {
            Some(message) => Err(RunError::Stopped {
                message,
                report: Box::new(report),
            }),
            None => Ok(report),
        }
    }
}
