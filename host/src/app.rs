//! The application: what `weir run` and `weir check` do, wired from the library's parts.
//!
//! [`run`] is the library's entry point: it builds the [`Topology`] (plugins loaded, first
//! instances initialised) off the runtime's threads, starts the control plane (admin API,
//! file watcher) before any event is read, runs the data plane until its sources end or the
//! shutdown token is cancelled, and stops the control plane. [`watch_signals`] turns the first
//! SIGINT or SIGTERM into a graceful stop and the second into an immediate exit.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::config::Pipeline;
use crate::control;
use crate::pipeline::topology::RunOptions;
use crate::pipeline::{RunError, RunReport, Topology};

/// Builds the topology off the runtime's threads: compiling plugins is CPU work.
pub async fn build(pipeline: &Pipeline) -> Result<Topology, RunError> {
    let pipeline = pipeline.clone();
    tokio::task::spawn_blocking(move || Topology::build(&pipeline))
        .await
        .map_err(|e| RunError::Failed(format!("the pipeline build stopped unexpectedly: {e}")))?
}

/// Builds and runs a pipeline, with hot loading when the file asks for it.
pub async fn run(pipeline: &Pipeline, shutdown: CancellationToken) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let topology = build(pipeline).await?;
    run_topology(topology, shutdown, RunOptions::default(), started).await
}

/// Runs a built topology, with hot loading when its pipeline asks for it.
pub async fn run_topology(
    topology: Topology,
    shutdown: CancellationToken,
    options: RunOptions,
    started: Instant,
) -> Result<RunReport, RunError> {
    // The admin API binds before any event is read, so a taken port stops the run at once;
    // it is refused as the pipeline file's `admin.listen` (exit 2).
    let control = control::start(&topology).await.map_err(|e| match e {
        control::StartError::Listen(e) => RunError::Config(e),
        other => RunError::Io(other.to_string()),
    })?;
    let result = topology.run_with(shutdown, options).await;
    if let Some(control) = control {
        control.stop().await;
    }
    result.map(|mut report| {
        report.total = started.elapsed();
        report
    })
}

/// First SIGINT or SIGTERM: stop reading and drain. A second one: exit at once with 130.
pub async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            return;
        }
    };
    for round in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if round == 0 {
            crate::notice::warn(
                "stopping: draining what is in flight (signal again to exit at once)",
            );
            shutdown.cancel();
        } else {
            crate::notice::error("interrupted twice; exiting without draining");
            std::process::exit(130);
        }
    }
}
