//! weir: a pipeline host whose transform stages are sandboxed WebAssembly components.
//!
//! The house follows the data. [`config`] turns a pipeline file into a checked
//! [`Pipeline`]. The sandbox is a crate of its own (`weir-sandbox`): wasmtime, limits, plugin
//! loading and calls, nothing of pipelines. [`pipeline`] is the data plane: packed batches and
//! their acknowledgements, edges, connectors, chains of stages on worker threads, and the
//! topology that builds and runs them. [`control`] is the control plane: one actor per
//! stage for hot loading, the admin API's server and client, the file watcher and the canary
//! guard. [`observe`] reads what the data plane counts: Prometheus metrics, `weir top`'s
//! snapshot, `weir tap`'s streams, the live page and the progress line. [`app`] wires them for
//! `weir run`, and [`cli`] parses the command line and prints. Imports point one way: `cli` →
//! `app` → `observe` → `control` → `pipeline` → `config`, sandbox.
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

pub mod app;
pub mod cli;
pub mod config;
pub mod control;
pub mod notice;
pub mod observe;
pub mod pipeline;

pub use app::run;
pub use config::Pipeline;
pub use pipeline::topology::{RunOptions, Running};
pub use pipeline::{RunError, RunReport, Topology};
pub use weir_sandbox as sandbox;
