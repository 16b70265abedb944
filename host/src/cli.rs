//! The `weir` command line: argument definitions and what each command does.
//!
//! `main.rs` parses a [`Cli`] and hands it to [`main`], which sets up logging, runs the
//! command and turns its outcome into an exit code: 0 on success, 1 when a run failed, 2 when
//! the pipeline file or a plugin was refused. Failures end with one line saying why.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::client::{Client, ClientError};
use crate::config::{DEFAULT_ADMIN_LISTEN, Pipeline};
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
    /// Hot-load a new plugin (or new settings) into a stage of a running pipeline.
    Reload {
        /// The stage to change.
        #[arg(long)]
        stage: String,
        /// The new component file (.wasm).
        #[arg(long, required_unless_present = "set")]
        plugin: Option<PathBuf>,
        /// A setting, KEY=VALUE (repeatable): the live plugin runs with exactly these
        /// settings on new instances.
        #[arg(long = "set", value_name = "KEY=VALUE", conflicts_with = "plugin")]
        set: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Return a stage of a running pipeline to the version live before the current one.
    Rollback {
        /// The stage to roll back.
        #[arg(long)]
        stage: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show the stages of a running pipeline: live version, history, canary, counters.
    Stages {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the admin API of a running pipeline is, and its token.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// The admin API's address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin: String,
    /// The admin API's bearer token.
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
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
        /// Also ask this running pipeline's admin API which stages run this plugin.
        #[arg(long, value_name = "ADDR")]
        admin: Option<String>,
        /// The admin API's bearer token.
        #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

/// Runs a parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    init_logging(cli.log_format, cli.log.as_deref());
    let result = match cli.command {
        Command::Run { file, quiet } => run(&file, quiet),
        Command::Check { file } => check(&file),
        Command::Plugin {
            command:
                PluginCommand::Inspect {
                    file,
                    json,
                    admin,
                    token,
                },
        } => inspect(&file, json, admin, token),
        Command::Reload {
            stage,
            plugin,
            set,
            admin,
        } => reload(&stage, plugin.as_deref(), &set, &admin),
        Command::Rollback { stage, admin } => rollback(&stage, &admin),
        Command::Stages { json, admin } => stages(json, &admin),
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

fn inspect(file: &Path, json: bool, admin: Option<String>, token: Option<String>) -> CommandResult {
    let admin = match (admin, token) {
        (Some(addr), Some(token)) => Some((addr, token)),
        (Some(_), None) => {
            return Err((2, "`--admin` needs `--token` or WEIR_ADMIN_TOKEN".into()));
        }
        (None, _) => None,
    };
    let sandbox =
        Sandbox::new().map_err(|e| (1, format!("cannot start the WebAssembly engine: {e}")))?;
    let report = plugins::inspect(&sandbox, file).map_err(refused)?;
    // Which stages of a running pipeline hold this plugin, and in what state.
    let running = match &admin {
        Some((addr, token)) => {
            let stages = Client::new(addr, token).stages().map_err(client_failed)?;
            Some(stages_running(&stages, &report.sha256))
        }
        None => None,
    };
    if json {
        let mut value = serde_json::to_value(&report).map_err(|e| (1, e.to_string()))?;
        if let Some(running) = &running {
            value["running"] = serde_json::json!(
                running
                    .iter()
                    .map(|(stage, state)| serde_json::json!({ "stage": stage, "state": state }))
                    .collect::<Vec<_>>()
            );
        }
        let text = serde_json::to_string_pretty(&value).map_err(|e| (1, e.to_string()))?;
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
    if let Some(running) = running {
        println!("running:");
        if running.is_empty() {
            println!("  in no stage of the pipeline");
        }
        for (stage, state) in running {
            println!("  stage `{stage}`: {state}");
        }
    }
    Ok(())
}

// ---- hot loading: the client side of the admin API -------------------------------------------

/// Stages whose history holds the digest, with that version's state (`live`, `standby`, ...).
fn stages_running(stages: &serde_json::Value, digest: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for stage in stages.as_array().into_iter().flatten() {
        let name = stage["name"].as_str().unwrap_or("?");
        let states: Vec<&str> = stage["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["digest"] == digest)
            .filter_map(|v| v["state"].as_str())
            .collect();
        let best = ["live", "standby", "rolled-back", "retired"]
            .into_iter()
            .find(|s| states.contains(s));
        if let Some(state) = best {
            found.push((name.to_string(), state.to_string()));
        }
    }
    found
}

/// A refused change exits 2, like a refused plugin at start; any other failure exits 1.
fn client_failed(e: ClientError) -> (u8, String) {
    match &e {
        ClientError::Refused { status: 422, .. } => (2, one_line(e)),
        _ => (1, one_line(e)),
    }
}

fn describe_version(stage: &str, v: &serde_json::Value) -> String {
    format!(
        "stage `{stage}`: version {} ({}) live, ready in {} ms",
        v["id"],
        v["short_digest"].as_str().unwrap_or("?"),
        v["ready_ms"]
    )
}

fn reload(stage: &str, plugin: Option<&Path>, set: &[String], admin: &AdminArgs) -> CommandResult {
    let client = Client::new(&admin.admin, &admin.token);
    let answer = match plugin {
        Some(file) => {
            let bytes = std::fs::read(file)
                .map_err(|e| (2, format!("plugin {}: cannot read it: {e}", file.display())))?;
            client.put_plugin(stage, &bytes)
        }
        None => {
            let mut settings = serde_json::Map::new();
            for pair in set {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| (2, format!("`--set {pair}`: write KEY=VALUE")))?;
                settings.insert(key.to_string(), value.into());
            }
            client.put_settings(stage, &serde_json::Value::Object(settings))
        }
    }
    .map_err(client_failed)?;
    println!("{}", describe_version(stage, &answer));
    Ok(())
}

fn rollback(stage: &str, admin: &AdminArgs) -> CommandResult {
    let answer = Client::new(&admin.admin, &admin.token)
        .rollback(stage)
        .map_err(client_failed)?;
    println!("{}", describe_version(stage, &answer));
    Ok(())
}

fn stages(json: bool, admin: &AdminArgs) -> CommandResult {
    let stages = Client::new(&admin.admin, &admin.token)
        .stages()
        .map_err(client_failed)?;
    if json {
        let text = serde_json::to_string_pretty(&stages).map_err(|e| (1, e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    for stage in stages.as_array().into_iter().flatten() {
        let name = stage["name"].as_str().unwrap_or("?");
        let live = &stage["live"];
        if live.is_null() {
            println!("{name}: native code, not reloadable");
            continue;
        }
        println!(
            "{name}: version {} ({}) live: {} events, {} failed since it was swapped in",
            live["id"],
            live["short_digest"].as_str().unwrap_or("?"),
            stage["events"],
            stage["failed"]
        );
        for v in stage["versions"].as_array().into_iter().flatten() {
            let age = now_ms.saturating_sub(v["loaded_at_ms"].as_u64().unwrap_or(now_ms));
            println!(
                "  version {} {} {:<11} from {:<8} loaded {:.1} s ago, ready {} ms after its trigger{}",
                v["id"],
                v["short_digest"].as_str().unwrap_or("?"),
                v["state"].as_str().unwrap_or("?"),
                v["origin"].as_str().unwrap_or("?"),
                age as f64 / 1e3,
                v["ready_ms"],
                v["rolled_back"]
                    .as_str()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}
