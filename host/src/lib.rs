//! weir: a pipeline host whose transform stages are sandboxed WebAssembly components.
//!
//! Events flow from sources through stages to sinks as batches on bounded channels:
//! [`config`] reads and checks a pipeline file, [`topology`] builds and runs the graph,
//! [`stage`] runs a stage's plugin instances on worker threads, [`sandbox`] owns wasmtime and
//! every limit, [`plugins`] loads and checks components, [`connectors`] holds sources and
//! sinks, [`delivery`] the batches, acknowledgements and dead letters, [`metrics`] the
//! counters, and [`cli`] the `weir` command line. Hot loading lives in [`reload`] (versions,
//! swaps, rollbacks, the canary guard, the file watcher), [`admin`] (the HTTP API) and
//! [`client`] (the API's client for the command line).
//!
//! The library's entry point is [`run`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = weir::config::Pipeline::load("pipeline.toml".as_ref())?;
//! let report = weir::run(&pipeline, tokio_util::sync::CancellationToken::new()).await?;
//! println!("{report}");
//! # Ok(()) }
//! ```

pub mod admin;
pub mod cli;
pub mod client;
pub mod config;
mod connectors;
pub mod delivery;
pub mod metrics;
pub mod plugins;
pub mod reload;
pub mod sandbox;
pub mod stage;
pub mod topology;

pub use config::Pipeline;
pub use metrics::RunReport;
pub use sandbox::Event;
pub use topology::{RunError, run};
