//! The application: what `weir run` and `weir check` do, wired from the library's parts.
//!
//! [`run`] is the library's entry point: it builds the [`Topology`] (plugins loaded, first
//! instances initialised) off the runtime's threads, starts the observer and the control plane
//! (admin API, file watcher) and the metrics listener before any event is read, runs the data
//! plane until its sources end or the shutdown token is cancelled, and stops the control
//! plane. [`run_observed`] does the same and hands back what still observes the ended run (the
//! metrics listener, for `[metrics] linger`), for `weir run` to stop once it has printed its
//! report. [`watch_signals`] turns the first SIGINT or SIGTERM into a graceful stop and the
//! second into an immediate exit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::Pipeline;
use crate::control;
use crate::observe::{self, Observer};
use crate::pipeline::topology::RunOptions;
use crate::pipeline::{RunError, RunReport, Topology};

/// Builds the topology off the runtime's threads: compiling plugins is CPU work.
pub async fn build(pipeline: &Pipeline) -> Result<Topology, RunError> {
    let pipeline = pipeline.clone();
    tokio::task::spawn_blocking(move || Topology::build(&pipeline))
        .await
        .map_err(|cause| RunError::Crashed {
            what: "the pipeline build",
            cause,
        })?
}

/// Builds and runs a pipeline, with hot loading when the file asks for it.
pub async fn run(pipeline: &Pipeline, shutdown: CancellationToken) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let topology = build(pipeline).await?;
    run_topology(topology, shutdown, RunOptions::default(), started).await
}

/// Runs a built topology, with hot loading and metrics when its pipeline asks for them.
pub async fn run_topology(
    topology: Topology,
    shutdown: CancellationToken,
    options: RunOptions,
    started: Instant,
) -> Result<RunReport, RunError> {
    let (result, observing) = run_observed(topology, shutdown, options, started, false).await;
    observing.stop().await;
    result
}

/// What still observes a run once it has ended: the metrics listener, kept for `[metrics]
/// linger` so that a last scrape sees the final counts.
pub struct Observing {
    pub observer: Arc<Observer>,
    listening: Option<observe::Listening>,
    linger: Duration,
}

impl Observing {
    /// Where `/metrics` listens on an address of its own.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.listening.as_ref().map(|l| l.addr)
    }

    /// Keeps answering for `[metrics] linger`, then stops.
    pub async fn finish(self) {
        if self.listening.is_some() && !self.linger.is_zero() {
            tokio::time::sleep(self.linger).await;
        }
        self.stop().await;
    }

    /// Stops at once.
    pub async fn stop(self) {
        if let Some(listening) = self.listening {
            listening.stop().await;
        }
    }
}

/// Runs a built topology; hands back the run's outcome and what still observes it. With
/// `progress`, draws the progress line on stderr while the run goes on.
pub async fn run_observed(
    topology: Topology,
    shutdown: CancellationToken,
    options: RunOptions,
    started: Instant,
    progress: bool,
) -> (Result<RunReport, RunError>, Observing) {
    let observer = Observer::new(&topology, shutdown.clone());
    let mut observing = Observing {
        observer: Arc::clone(&observer),
        listening: None,
        linger: Duration::ZERO,
    };
    let control = match start_observers(&topology, &observer, &mut observing).await {
        Ok(control) => control,
        Err(e) => return (Err(e), observing),
    };
    let progress = progress.then(|| observe::progress::start(&observer));
    let result = topology.run_with(shutdown, options).await;
    if let Some(progress) = progress {
        progress.finish().await;
    }
    observer.end();
    if let Some(control) = control {
        control.stop().await;
    }
    let result = result.map(|mut report| {
        report.total = started.elapsed();
        report
    });
    (result, observing)
}

/// Starts the control plane and the metrics listener. Both bind before any event is read, so
/// a taken port stops the run at once; it is refused as the pipeline file's `admin.listen` or
/// `metrics.listen` (exit 2).
async fn start_observers(
    topology: &Topology,
    observer: &Arc<Observer>,
    observing: &mut Observing,
) -> Result<Option<control::Running>, RunError> {
    let pipeline = topology.pipeline();
    let shared = match (&pipeline.metrics, &pipeline.admin) {
        (Some(m), Some(a)) => m.listen == a.listen,
        _ => false,
    };
    let extra = control::ExtraRoutes {
        authorized: observe::admin_routes(observer),
        open: if shared {
            observe::metrics_routes(observer)
        } else {
            axum::Router::new()
        },
    };
    let control = control::start(topology, extra).await.map_err(|e| match e {
        control::StartError::Listen(e) => RunError::Config(e),
        other => RunError::Start {
            what: "the control plane".into(),
            cause: other.into(),
        },
    })?;
    if let Some(control) = &control {
        observer.set_control(Arc::clone(&control.control));
    }
    if let Some(metrics) = &pipeline.metrics {
        observing.linger = metrics.linger;
        if shared {
            crate::notice::info("metrics served on the admin API's address");
        } else {
            let listening = observe::listen(&pipeline.file, metrics, observer)
                .await
                .map_err(RunError::Config)?;
            observing.listening = Some(listening);
        }
    }
    Ok(control)
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
