//! The `weir` command line: argument definitions and what each command does.
//!
//! `main.rs` parses a [`Cli`] and hands it to [`main`], which sets up logging, runs the
//! command and turns its outcome into an exit code: 0 on success, 1 when a run failed, 2 when
//! the pipeline file or a plugin was refused. Failures end with one line saying why.

/// `println!` for a command's output, except that a reader who went away (`weir stages |
/// head -1`) ends the command quietly with status 0, as Unix tools do, instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::print_line(format_args!($($arg)*))
    };
}

mod admin;
mod authoring;
mod graph;
mod plugin;
mod redrive;
mod shadow;
mod state;
mod tap;
mod top;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::Pipeline;
use crate::pipeline::Topology;
use crate::pipeline::topology::RunOptions;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
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
        /// Write the final report to stderr in this format instead of the summary line:
        /// `json` is one JSON object (per node: in, out, failed by kind; dead letters;
        /// in-flight maximum and bound; duration; whether the run was interrupted).
        #[arg(long, value_enum, value_name = "FORMAT")]
        report: Option<ReportFormat>,
        /// Read every file source from its start, whatever its checkpoint in `data_dir` says.
        #[arg(long)]
        from_start: bool,
    },
    /// Send the letters of a dead-letter file again, each into the stage that failed it (or
    /// --into), through the pipeline file's stages and sinks. The progress is kept beside the
    /// letter file (DEAD.jsonl.redrive): a second redrive sends nothing, and one run again
    /// after a crash only what was not acknowledged (exactly once into NATS).
    Redrive {
        /// The dead-letter file (JSON lines, as weir writes them).
        letters: PathBuf,
        /// The pipeline file whose stages and sinks the letters go through.
        #[arg(long, value_name = "FILE")]
        pipeline: PathBuf,
        /// Send every letter into this stage, whatever stage failed it.
        #[arg(long, value_name = "STAGE")]
        into: Option<String>,
        /// Only letters of this kind (repeatable): reject, panic, out-of-fuel…
        #[arg(long = "kind", value_name = "KIND")]
        kinds: Vec<String>,
        /// Only letters failed at this node (repeatable).
        #[arg(long = "node", value_name = "NODE")]
        nodes: Vec<String>,
        /// Only letters written since then: a duration ago (`2h`) or milliseconds since the
        /// Unix epoch.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// At most this many letters.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// Print what would be sent, one line per letter, and send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Where the letters that fail again go (default: the pipeline's dead letters).
        #[arg(long, value_name = "FILE")]
        dead_letters: Option<PathBuf>,
        /// The progress file (default: the letter file's path with `.redrive` added).
        #[arg(long, value_name = "FILE")]
        progress: Option<PathBuf>,
        /// Do not print the summary line at the end.
        #[arg(long)]
        quiet: bool,
        /// Write the final report to stderr in this format instead of the summary line.
        #[arg(long, value_enum, value_name = "FORMAT")]
        report: Option<ReportFormat>,
    },
    /// Check a pipeline file and load every plugin, without reading any event.
    Check {
        /// The pipeline file (TOML).
        file: PathBuf,
        /// Print the topology instead, chains included, as Graphviz (`dot`) or Mermaid text.
        #[arg(long, value_name = "FORMAT")]
        graph: Option<graph::Graph>,
    },
    /// Work with plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Hot-load a new plugin (or new settings) into a stage of a running pipeline.
    #[command(group(clap::ArgGroup::new("change").required(true).args(["plugin", "set"])))]
    Reload {
        /// The stage to change.
        #[arg(long)]
        stage: String,
        /// The new component file (.wasm).
        #[arg(long, value_name = "FILE")]
        plugin: Option<PathBuf>,
        /// A setting, KEY=VALUE (repeatable): the live plugin runs with exactly these
        /// settings on new instances.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Run the new plugin as a shadow beside the live version instead: it sees copies of
        /// the stage's input batches, its outputs are compared with the live ones and never
        /// sent on (see `weir shadow`).
        #[arg(long, requires = "plugin")]
        shadow: bool,
        /// With `--shadow`: the share of input batches copied to it, above 0 and at most 1.
        #[arg(
            long,
            value_name = "RATE",
            requires = "shadow",
            allow_negative_numbers = true
        )]
        sample: Option<f64>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The shadow of a stage of a running pipeline: its comparison with the live version,
    /// its promotion, its end.
    Shadow {
        #[command(subcommand)]
        command: ShadowCommand,
    },
    /// Return a stage of a running pipeline to the version live before the current one.
    Rollback {
        /// The stage to roll back.
        #[arg(long)]
        stage: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// A live view of a running pipeline through its admin API: per node events/s in and
    /// out, queue, failures by kind, call latency p50/p99, fuel per event, breaker, version.
    Top {
        /// Print one plain-text snapshot (rates over `--interval`) and exit.
        #[arg(long)]
        once: bool,
        /// Time between two looks, such as `1s` or `500ms`.
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
        interval: std::time::Duration,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print the events leaving a node of a running pipeline, as JSON lines, as they pass. A
    /// tap never slows the pipeline: when this command falls behind, samples are lost, and
    /// counted.
    Tap {
        /// The source, stage or sink to tap.
        node: String,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// The fraction of events to copy, above 0 and at most 1 (0.01: one in a hundred).
        #[arg(long, value_name = "RATE", default_value = "1")]
        sample: f64,
        /// Tap the dead letters the node makes instead of the events it sends on.
        #[arg(long)]
        dead_letters: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Read or write the keyed state of a stage of a running pipeline (JSON lines).
    State {
        #[command(subcommand)]
        command: StateCommand,
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

/// `weir shadow`: a candidate version started with `weir reload --shadow`.
#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// Events compared, equal and different, failures on each side, batches skipped, time
    /// per event, and the latest differing pairs.
    Status {
        stage: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make the shadow the stage's live version (a swap like any reload: history, canary and
    /// rollback as usual).
    Promote {
        stage: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// End the shadow; the live version goes on as it was.
    Stop {
        stage: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `weir state`: a stage's keyed state, through the admin API of a running pipeline, or with
/// `--data-dir` from the data folder of a stopped one.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print the keys, one per line (`base64:…` for bytes that are not UTF-8).
    Ls {
        stage: String,
        /// Only keys that start with this text.
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many keys.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        #[command(flatten)]
        place: StatePlace,
    },
    /// Print one entry as a JSON line; exit 1 when the key is absent.
    Get {
        stage: String,
        key: String,
        #[command(flatten)]
        place: StatePlace,
    },
    /// Print every entry as JSON lines (`key`, `value`, or `*_base64` for bytes that are not
    /// UTF-8), as the stage's last completed call left them.
    Export {
        stage: String,
        /// Only keys that start with this text.
        #[arg(long, default_value = "")]
        prefix: String,
        #[command(flatten)]
        place: StatePlace,
    },
    /// Write the entries of a JSON-lines file (as `export` prints them) into the state.
    Import {
        stage: String,
        file: PathBuf,
        #[command(flatten)]
        place: StatePlace,
    },
}

/// Where `weir state` finds the state.
#[derive(Debug, clap::Args)]
pub struct StatePlace {
    /// The data folder of a stopped pipeline (`[pipeline] data_dir`), read and written
    /// directly; without it, the admin API of a running one.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Where the admin API of a running pipeline is, and what a request to it needs.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// The admin API's address: PORT (on 127.0.0.1), HOST:PORT, http://HOST:PORT or
    /// https://HOST:PORT. Without it, WEIR_ADMIN, else 127.0.0.1:7878.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// The admin API's bearer token, and the CA to trust for its certificate.
#[derive(Debug, clap::Args)]
pub struct AuthArgs {
    /// The bearer token. Every local user can read it in the process list: prefer
    /// --token-file or WEIR_ADMIN_TOKEN.
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding the bearer token, that only its owner may read. Without it or
    /// --token, the token is WEIR_ADMIN_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Certificates (PEM) to trust beside the system's for an https:// address, such as
    /// the private CA that signed the admin API's certificate.
    #[arg(long, value_name = "FILE", env = "WEIR_ADMIN_CA")]
    pub tls_ca: Option<PathBuf>,
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
        /// Also ask this running pipeline's admin API which stages run this plugin: PORT,
        /// HOST:PORT, http://HOST:PORT or https://HOST:PORT.
        #[arg(long, value_name = "ADDR")]
        admin: Option<String>,
        #[command(flatten)]
        auth: AuthArgs,
    },
    /// Make a new stage project from a template, in Rust, Python, JavaScript, C or Go.
    New {
        /// The stage's name: lower-case letters, digits and dashes.
        name: String,
        /// The language.
        #[arg(long, value_enum)]
        lang: authoring::Lang,
        /// The template: `map` (upper-cases every value) or `filter` (drops values holding a
        /// word, with declared settings).
        #[arg(long, default_value = "map")]
        template: String,
        /// The folder to make (default: ./NAME); it must not exist or be empty.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Build a stage project into a component with its language's toolchain, and check it
    /// loads on this host.
    Build {
        /// The project folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the component (default: for Rust, where cargo puts it; otherwise
        /// DIR/target/NAME.wasm).
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Run a component in the sandbox on a few events and print each outcome (JSON lines on
    /// stdout; fuel and time per event on stderr).
    Test(PluginTestArgs),
}

/// The arguments of `weir plugin test`.
#[derive(Debug, clap::Args)]
pub struct PluginTestArgs {
    /// The component file (.wasm).
    plugin: PathBuf,
    /// An event with this value (repeatable), before those of --input.
    #[arg(long = "text", value_name = "VALUE")]
    texts: Vec<String>,
    /// A file whose every line is an event's value.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// A setting, KEY=VALUE (repeatable), checked against what the plugin declares.
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// The key of every event.
    #[arg(long)]
    key: Option<String>,
    /// A header of every event, NAME=VALUE (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// A golden file: exit 1, showing the difference, unless stdout would be exactly it.
    #[arg(long, value_name = "FILE")]
    expect: Option<PathBuf>,
    /// Fuel per event (default 10000000).
    #[arg(long)]
    fuel: Option<u64>,
    /// Wall-clock limit per call, such as 1s (default) or 250ms.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Linear memory per instance, such as 64MiB (default).
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
}

/// Runs a parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    init_logging(cli.log_format, cli.log.as_deref());
    let result = match cli.command {
        Command::Run {
            file,
            quiet,
            report,
            from_start,
        } => run(&file, quiet, report, RunOptions { from_start }),
        Command::Check { file, graph } => check(&file, graph),
        Command::Redrive {
            letters,
            pipeline,
            into,
            kinds,
            nodes,
            since,
            limit,
            dry_run,
            dead_letters,
            progress,
            quiet,
            report,
        } => redrive::redrive(redrive::Args {
            letters: &letters,
            pipeline: &pipeline,
            into,
            kinds,
            nodes,
            since,
            limit,
            dry_run,
            dead_letters,
            progress,
            quiet,
            report,
        }),
        Command::Plugin { command } => plugin_command(command),
        Command::Reload {
            stage,
            plugin,
            set,
            shadow,
            sample,
            admin,
        } => match (shadow, plugin.as_deref()) {
            (true, Some(plugin)) => shadow::start(&stage, plugin, sample.unwrap_or(1.0), &admin),
            _ => admin::reload(&stage, plugin.as_deref(), &set, &admin),
        },
        Command::Shadow { command } => match command {
            ShadowCommand::Status { stage, json, admin } => shadow::status(&stage, json, &admin),
            ShadowCommand::Promote { stage, admin } => shadow::promote(&stage, &admin),
            ShadowCommand::Stop { stage, admin } => shadow::stop(&stage, &admin),
        },
        Command::Rollback { stage, admin } => admin::rollback(&stage, &admin),
        Command::Stages { json, admin } => admin::stages(json, &admin),
        Command::State { command } => state_command(command),
        Command::Top {
            once,
            interval,
            admin,
        } => top::top(once, interval, &admin),
        Command::Tap {
            node,
            limit,
            sample,
            dead_letters,
            admin,
        } => tap::tap(&node, limit, sample, dead_letters, &admin),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            crate::notice::error(&message);
            ExitCode::from(code)
        }
    }
}

type CommandResult = Result<(), (u8, String)>;

/// `weir plugin inspect`, `new`, `build` and `test`.
fn plugin_command(command: PluginCommand) -> CommandResult {
    match command {
        PluginCommand::Inspect {
            file,
            json,
            admin,
            auth,
        } => plugin::inspect(&file, json, admin.as_deref(), &auth),
        PluginCommand::New {
            name,
            lang,
            template,
            dir,
        } => authoring::new(&name, lang, &template, dir.as_deref()),
        PluginCommand::Build { dir, out } => authoring::build(&dir, out.as_deref()),
        PluginCommand::Test(a) => authoring::test(&authoring::TestArgs {
            plugin: &a.plugin,
            texts: &a.texts,
            input: a.input.as_deref(),
            settings: &a.settings,
            key: a.key.as_deref(),
            headers: &a.headers,
            expect: a.expect.as_deref(),
            fuel: a.fuel,
            timeout: a.timeout.as_deref(),
            memory: a.memory.as_deref(),
        }),
    }
}

#[doc(hidden)]
pub fn print_line(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{text}").and_then(|()| stdout.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// `--interval`: a duration from 100ms to 1h, written as in pipeline files.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let d = crate::config::parse_duration(text)?;
    let range = std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(3600);
    if range.contains(&d) {
        Ok(d)
    } else {
        Err("write a duration from 100ms to 1h".to_string())
    }
}

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
    use std::io::IsTerminal;
    let wanted = filter.unwrap_or("warn,weir::guest=info");
    // Notices are log events in JSON mode: whatever the filter, they get through.
    let with_notices = format!("{wanted},{}=info", crate::notice::TARGET);
    let (filter, refused) = match tracing_subscriber::EnvFilter::try_new(&with_notices) {
        Ok(f) => (f, None),
        Err(e) => (
            tracing_subscriber::EnvFilter::new(format!("warn,{}=info", crate::notice::TARGET)),
            Some(e),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into a file or a pipe.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => {
            builder.json().init();
            crate::notice::use_json();
        }
    }
    if let Some(e) = refused {
        crate::notice::warn(&format!(
            "the log filter `{wanted}` is not valid ({e}); logging warnings only"
        ));
    }
}

fn run(
    file: &Path,
    quiet: bool,
    report: Option<ReportFormat>,
    options: RunOptions,
) -> CommandResult {
    let pipeline = Pipeline::load(file).map_err(refused)?;
    run_pipeline(&pipeline, quiet, report, options)
}

/// Runs a checked pipeline as `weir run` does: its report, its exit status.
fn run_pipeline(
    pipeline: &Pipeline,
    quiet: bool,
    report: Option<ReportFormat>,
    options: RunOptions,
) -> CommandResult {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-io")
        .build()
        .map_err(|e| (1, format!("cannot start the runtime: {e}")))?;
    // The progress line is for a person at a terminal, and only for inputs with an end.
    let progress =
        !quiet && report.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (result, observing) = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(app::watch_signals(shutdown.clone()));
        match app::build(pipeline).await {
            Ok(topology) => {
                let progress = progress && topology.inputs_end();
                let (result, observing) =
                    app::run_observed(topology, shutdown, options, started, progress).await;
                (result, Some(observing))
            }
            Err(e) => (Err(e), None),
        }
    });
    let print = |summary: &crate::pipeline::RunReport| match report {
        Some(ReportFormat::Json) => eprintln!("{}", summary.to_json()),
        None if !quiet => crate::notice::info(&summary.to_string()),
        None => {}
    };
    // The report first, then `[metrics] linger`: a last scrape sees what the report says.
    let print = |summary: &crate::pipeline::RunReport| {
        print(summary);
        if let Some(observing) = observing {
            runtime.block_on(observing.finish());
        }
    };
    match result {
        Ok(summary) => {
            print(&summary);
            Ok(())
        }
        Err(e) if e.is_refusal() => Err(refused(e)),
        Err(crate::pipeline::RunError::Stopped { failure, report }) => {
            // What the run did before it failed, then why it failed.
            print(&report);
            Err((1, one_line(failure)))
        }
        Err(e) => Err((1, one_line(e))),
    }
}

impl StatePlace {
    fn at(&self) -> (Option<&Path>, &AdminArgs) {
        (self.data_dir.as_deref(), &self.admin)
    }
}

fn state_command(command: StateCommand) -> CommandResult {
    match command {
        StateCommand::Ls {
            stage,
            prefix,
            limit,
            place,
        } => state::list(&stage, &prefix, limit, false, place.at()),
        StateCommand::Get { stage, key, place } => state::get(&stage, &key, place.at()),
        StateCommand::Export {
            stage,
            prefix,
            place,
        } => state::list(&stage, &prefix, None, true, place.at()),
        StateCommand::Import { stage, file, place } => state::import(&stage, &file, place.at()),
    }
}

fn check(file: &Path, graph: Option<graph::Graph>) -> CommandResult {
    let pipeline = Pipeline::load(file).map_err(refused)?;
    let topology = Topology::build(&pipeline).map_err(refused)?;
    if let Some(graph) = graph {
        out!("{}", graph::render(&topology, graph).trim_end());
        return Ok(());
    }
    let chains: Vec<String> = topology
        .chains()
        .filter(|c| c.stages.len() > 1)
        .map(|c| c.stages.join(" -> "))
        .collect();
    out!(
        "{}: ok: {} sources, {} stages, {} sinks; at most {} events in flight",
        file.display(),
        pipeline.sources.len(),
        pipeline.stages.len(),
        pipeline.sinks.len(),
        topology.in_flight_bound()
    );
    if !chains.is_empty() {
        out!("chained: {}", chains.join("; "));
    }
    for (stage, workers, why) in topology.auto_workers() {
        let plural = if *workers == 1 { "" } else { "s" };
        out!("workers of `{stage}`: {workers} worker{plural} (auto: {why})");
    }
    for chain in topology.chains().filter(|c| c.keyed) {
        out!(
            "routed by key: `{}` runs on {} workers, each owning the keys that hash to it",
            chain.head(),
            chain.workers
        );
    }
    for (what, name, describes) in topology.connectors() {
        out!("{what} `{name}`: {describes}");
    }
    for (stage, state) in topology.states() {
        out!("state of `{stage}`: {state}");
    }
    for (stage, time) in topology.times() {
        out!("time of `{stage}`: {time}");
    }
    Ok(())
}
