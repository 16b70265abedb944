//! The `weir` command line: argument definitions and what each command does.
//!
//! `main.rs` parses a [`Cli`] and hands it to [`main`], which sets up logging, runs the
//! command and turns its outcome into an exit code: 0 on success, 1 when a run failed, 2 when
//! the pipeline file or a plugin was refused. Failures end with one line saying why.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::Pipeline;
use crate::plugins;
use crate::sandbox::Sandbox;
use crate::topology::{self, RunError, Topology};

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "Run pipelines whose stages are sandboxed WebAssembly components"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// Log filter, as in RUST_LOG (for example `info` or `weir=debug`). Defaults to warnings,
    /// plus what plugins log at info and above.
    #[arg(long, global = true, env = "WEIR_LOG")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline until its sources end or it is interrupted, then drain and exit.
    Run {
        /// The pipeline file (TOML).
        file: PathBuf,
        /// Do not print the summary line at the end.
        #[arg(long)]
        quiet: bool,
    },
    /// Check a pipeline file and load every plugin, without reading any event.
    Check {
        /// The pipeline file (TOML).
        file: PathBuf,
    },
    /// Work with plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show a plugin's world, imports, exports, size and sha256, and whether this host loads it.
    Inspect {
        /// The component file (.wasm).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    init_logging(cli.log_format, cli.log.as_deref());
    let result = match cli.command {
        Command::Run { file, quiet } => run(&file, quiet),
        Command::Check { file } => check(&file),
        Command::Plugin {
            command: PluginCommand::Inspect { file, json },
        } => inspect(&file, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("weir: error: {message}");
            ExitCode::from(code)
        }
    }
}

type CommandResult = Result<(), (u8, String)>;

fn refused(e: impl std::fmt::Display) -> (u8, String) {
    (2, one_line(e))
}

fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

fn init_logging(format: LogFormat, filter: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or("warn,weir::guest=info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(file: &Path, quiet: bool) -> CommandResult {
    let pipeline = Pipeline::load(file).map_err(refused)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-io")
        .build()
        .map_err(|e| (1, format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone()));
        topology::run(&pipeline, shutdown).await
    });
    match result {
        Ok(report) => {
            if !quiet {
                eprintln!("weir: {report}");
            }
            Ok(())
        }
        Err(e @ (RunError::Plugin(_) | RunError::Init { .. })) => Err(refused(e)),
        Err(e) => Err((1, one_line(e))),
    }
}

/// First SIGINT or SIGTERM: stop reading and drain. A second one: exit at once.
async fn watch_signals(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
            tracing::warn!("stopping: draining what is in flight (signal again to exit at once)");
            eprintln!("weir: stopping: draining what is in flight (signal again to exit at once)");
            shutdown.cancel();
        } else {
            eprintln!("weir: error: interrupted twice; exiting without draining");
            std::process::exit(130);
        }
    }
}

fn check(file: &Path) -> CommandResult {
    let pipeline = Pipeline::load(file).map_err(refused)?;
    Topology::build(&pipeline).map_err(refused)?;
    println!(
        "{}: ok: {} sources, {} stages, {} sinks; at most {} events in flight",
        file.display(),
        pipeline.sources.len(),
        pipeline.stages.len(),
        pipeline.sinks.len(),
        pipeline.in_flight_bound()
    );
    Ok(())
}

fn inspect(file: &Path, json: bool) -> CommandResult {
    let sandbox =
        Sandbox::new().map_err(|e| (1, format!("cannot start the WebAssembly engine: {e}")))?;
    let report = plugins::inspect(&sandbox, file).map_err(refused)?;
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| (1, e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    println!("plugin:  {}", report.path.display());
    println!("size:    {} bytes", report.size);
    println!("sha256:  {}", report.sha256);
    match &report.loadable {
        Ok(()) => println!("world:   weir:stage/stage@0.1.0 (loads on this host)"),
        Err(why) => println!("world:   not loadable on this host: {why}"),
    }
    println!("imports:");
    for import in &report.imports {
        match &import.refused {
            None => println!("  {}  (granted)", import.name),
            Some(why) => println!("  {}  (refused: {why})", import.name),
        }
    }
    println!("exports:");
    for export in &report.exports {
        println!("  {export}");
    }
    Ok(())
}
