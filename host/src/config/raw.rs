//! The tables of a pipeline file as written: every value typed (text, whole number, list…)
//! and kept with its span, but not yet checked for meaning. Reading refuses unknown keys, wrong
//! types and missing required keys; everything else is left to the checks of each concern.
//!
//! This file reads the file's top level, `[pipeline]`, stages, `[admin]` and `[metrics]`;
//! sources and sinks (and `[dead_letter]`) are read by `source` and `sink`, each kind beside
//! its check, since the keys a connector may hold depend on its `type`.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::config::error::{ConfigError, Ctx, Sp, join};
use crate::config::listener::{self, RawListener};
use crate::config::reader::{self, Place, Table};
use crate::config::sink::{self, DEAD_LETTER_KEYS, RawDeadLetter, RawSink};
use crate::config::source::{self, RawSource};

const FILE_KEYS: &[&str] = &[
    "pipeline",
    "sources",
    "stages",
    "sinks",
    "dead_letter",
    "admin",
    "metrics",
];
const GLOBAL_KEYS: &[&str] = &[
    "batch_size",
    "linger",
    "buffer",
    "chain",
    "data_dir",
    "checkpoint_interval",
];
const STAGE_KEYS: &[&str] = &[
    "inputs",
    "plugin",
    "settings",
    "workers",
    "fuel",
    "timeout",
    "memory",
    "retries",
    "on_error",
    "max_output_events",
    "max_output_bytes",
    "max_value_size",
    "state_max_keys",
    "state_max_bytes",
    "state_cache_bytes",
    "allowed_lateness",
    "idle_timeout",
    "late",
    "breaker",
    "grant",
    "watch",
    "canary",
];
const BREAKER_KEYS: &[&str] = &["window", "threshold", "cooldown"];
const GRANT_KEYS: &[&str] = &["dirs", "env", "network"];
const DIR_KEYS: &[&str] = &["host", "guest"];
const CANARY_KEYS: &[&str] = &["events", "max_failure_rate"];
/// `listen`, and every key a listener takes (`config::listener`).
const ADMIN_KEYS: &[&str] = &[
    "listen",
    "token",
    "token_env",
    "token_file",
    "tls_cert",
    "tls_key",
    "header_timeout",
    "idle_timeout",
    "body_timeout",
    "max_connections",
];

const METRICS_KEYS: &[&str] = &["listen", "linger"];

pub(crate) struct RawFile {
    pub pipeline: Option<RawGlobal>,
    pub sources: BTreeMap<String, RawSource>,
    pub stages: BTreeMap<String, RawStage>,
    pub sinks: BTreeMap<String, RawSink>,
    pub dead_letter: Option<RawDeadLetter>,
    pub admin: Option<RawAdmin>,
    pub metrics: Option<RawMetrics>,
}

pub(crate) struct RawMetrics {
    pub table: Range<usize>,
    pub listen: Option<Sp<String>>,
    pub linger: Option<Sp<String>>,
}

pub(crate) struct RawGlobal {
    pub batch_size: Option<Sp<i128>>,
    pub linger: Option<Sp<String>>,
    pub buffer: Option<Sp<i128>>,
    pub chain: Option<Sp<bool>>,
    pub data_dir: Option<Sp<String>>,
    pub checkpoint_interval: Option<Sp<String>>,
}

/// Each setting's key, and its value as the text the plugin receives, in key order.
pub(crate) type Settings = Vec<(Sp<String>, Sp<String>)>;

pub(crate) struct RawStage {
    pub at: Place,
    pub inputs: Sp<Vec<Sp<String>>>,
    pub plugin: Sp<String>,
    pub settings: Settings,
    /// `None` inside: `"auto"`.
    pub workers: Option<Sp<Option<i128>>>,
    pub fuel: Option<Sp<i128>>,
    pub timeout: Option<Sp<String>>,
    pub memory: Option<Sp<String>>,
    pub retries: Option<Sp<i128>>,
    pub on_error: Option<Sp<String>>,
    pub max_output_events: Option<Sp<i128>>,
    pub max_output_bytes: Option<Sp<String>>,
    pub max_value_size: Option<Sp<String>>,
    pub state_max_keys: Option<Sp<i128>>,
    pub state_max_bytes: Option<Sp<String>>,
    pub state_cache_bytes: Option<Sp<String>>,
    pub allowed_lateness: Option<Sp<String>>,
    pub idle_timeout: Option<Sp<String>>,
    pub late: Option<Sp<String>>,
    pub breaker: Option<RawBreaker>,
    pub grant: Option<RawGrant>,
    pub watch: Option<Sp<bool>>,
    pub canary: Option<RawCanary>,
}

pub(crate) struct RawBreaker {
    pub window: Option<Sp<i128>>,
    pub threshold: Option<Sp<f64>>,
    pub cooldown: Option<Sp<String>>,
}

pub(crate) struct RawGrant {
    pub dirs: Vec<RawDir>,
    pub env: Vec<Sp<String>>,
    pub network: Option<Sp<bool>>,
}

pub(crate) struct RawDir {
    /// The key path of this entry, such as `stages.a.grant.dirs[0]`.
    pub path: String,
    pub host: Sp<String>,
    pub guest: Sp<String>,
}

pub(crate) struct RawCanary {
    pub events: Option<Sp<i128>>,
    pub max_failure_rate: Option<Sp<f64>>,
}

pub(crate) struct RawAdmin {
    pub listen: Option<Sp<String>>,
    /// The keys it shares with every listener, and the table's span.
    pub listener: RawListener,
}

/// Parses `cx.text` and reads every table of it.
pub(crate) fn read(cx: &Ctx) -> Result<RawFile, ConfigError> {
    let tree = reader::parse(cx)?;
    let root = Table::root(cx, &tree, FILE_KEYS)?;
    let pipeline = root.table(
        "pipeline",
        ("`[pipeline]`", "a table `[pipeline]`"),
        GLOBAL_KEYS,
    )?;
    let dead_letter = root.table(
        "dead_letter",
        ("`[dead_letter]`", "a table `[dead_letter]` with a `type`"),
        DEAD_LETTER_KEYS,
    )?;
    let admin = root.table("admin", ("`[admin]`", "a table `[admin]`"), ADMIN_KEYS)?;
    let metrics = root.table(
        "metrics",
        ("`[metrics]`", "a table `[metrics]`"),
        METRICS_KEYS,
    )?;
    Ok(RawFile {
        pipeline: pipeline.map(|t| read_global(&t)).transpose()?,
        // A source's or sink's keys depend on its `type`: its reader checks them.
        sources: nodes(&root, "sources", ("a source", None), source::read)?,
        stages: nodes(&root, "stages", ("a stage", Some(STAGE_KEYS)), read_stage)?,
        sinks: nodes(&root, "sinks", ("a sink", None), sink::read)?,
        dead_letter: dead_letter
            .map(|t| sink::read_dead_letter(&t))
            .transpose()?,
        admin: admin.map(|t| read_admin(&t)).transpose()?,
        metrics: metrics.map(|t| read_metrics(&t)).transpose()?,
    })
}

/// The tables of one section (`[sources.NAME]`…), each read by `read`; each may hold only
/// `keys`, or any key when `read` checks them itself.
fn nodes<T>(
    root: &Table,
    section: &str,
    (what, keys): (&str, Option<&[&str]>),
    read: fn(&Table, Place) -> Result<T, ConfigError>,
) -> Result<BTreeMap<String, T>, ConfigError> {
    let shape = format!("a table `[{section}.NAME]`");
    let Some(tables) = root.section(section, &format!("tables such as `[{section}.NAME]`"))? else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for (name, node) in tables.entries() {
        let path = join(section, name.get_ref());
        let table = match keys {
            Some(keys) => Table::open(tables.cx(), path, node, (what, &shape), keys)?,
            None => Table::open_any(tables.cx(), path, node, &shape)?,
        };
        let at = Place {
            name: name.clone(),
            table: table.span(),
        };
        out.insert(name.into_inner(), read(&table, at)?);
    }
    Ok(out)
}

fn read_global(t: &Table) -> Result<RawGlobal, ConfigError> {
    Ok(RawGlobal {
        batch_size: t.whole("batch_size")?,
        linger: t.duration("linger")?,
        buffer: t.whole("buffer")?,
        chain: t.flag("chain")?,
        data_dir: t.text("data_dir")?,
        checkpoint_interval: t.duration("checkpoint_interval")?,
    })
}

fn read_stage(t: &Table, at: Place) -> Result<RawStage, ConfigError> {
    let inputs = t.texts("inputs", "[\"auth_log\"]")?;
    let plugin = t.text("plugin")?;
    let breaker_shape = "a table such as { window = 100, threshold = 0.5, cooldown = \"5s\" }";
    let grant_shape = "a table such as { dirs = [...], env = [\"TZ\"], network = false }";
    let canary_shape = "a table such as { events = 1000, max_failure_rate = 0.5 }";
    let breaker = t.table("breaker", ("a breaker", breaker_shape), BREAKER_KEYS)?;
    let grant = t.table("grant", ("a grant", grant_shape), GRANT_KEYS)?;
    let canary = t.table("canary", ("a canary", canary_shape), CANARY_KEYS)?;
    Ok(RawStage {
        inputs: t.required(
            inputs,
            "inputs",
            "a stage needs `inputs`, the sources or stages it reads, such as `inputs = [\"auth_log\"]`",
        )?,
        plugin: t.required(
            plugin,
            "plugin",
            "a stage needs `plugin`, the path of its WebAssembly component",
        )?,
        settings: read_settings(t)?,
        workers: t.whole_or("workers", "auto")?,
        fuel: t.whole("fuel")?,
        timeout: t.duration("timeout")?,
        memory: t.size("memory")?,
        retries: t.whole("retries")?,
        on_error: t.text("on_error")?,
        max_output_events: t.whole("max_output_events")?,
        max_output_bytes: t.size("max_output_bytes")?,
        max_value_size: t.size("max_value_size")?,
        state_max_keys: t.whole("state_max_keys")?,
        state_max_bytes: t.size("state_max_bytes")?,
        state_cache_bytes: t.size("state_cache_bytes")?,
        allowed_lateness: t.duration("allowed_lateness")?,
        idle_timeout: t.duration("idle_timeout")?,
        late: t.text("late")?,
        breaker: breaker.map(|b| read_breaker(&b)).transpose()?,
        grant: grant.map(|g| read_grant(&g)).transpose()?,
        watch: t.flag("watch")?,
        canary: canary.map(|c| read_canary(&c)).transpose()?,
        at,
    })
}

fn read_settings(t: &Table) -> Result<Settings, ConfigError> {
    let Some(settings) = t.section("settings", "a table such as { format = \"json\" }")? else {
        return Ok(Vec::new());
    };
    settings
        .entries()
        .map(|(key, node)| Ok((key.clone(), settings.scalar(key.get_ref(), node)?)))
        .collect()
}

fn read_breaker(t: &Table) -> Result<RawBreaker, ConfigError> {
    Ok(RawBreaker {
        window: t.whole("window")?,
        threshold: t.fraction("threshold")?,
        cooldown: t.duration("cooldown")?,
    })
}

fn read_grant(t: &Table) -> Result<RawGrant, ConfigError> {
    let shape = "{ host = \"lookup\", guest = \"/data\" }";
    let mut dirs = Vec::new();
    for dir in t.tables("dirs", ("a directory grant", shape), DIR_KEYS)? {
        let (host, guest) = (dir.text("host")?, dir.text("guest")?);
        dirs.push(RawDir {
            host: dir.required(
                host,
                "host",
                "a directory grant needs `host`, a folder of this machine",
            )?,
            guest: dir.required(
                guest,
                "guest",
                "a directory grant needs `guest`, the path the plugin sees, such as `\"/data\"`",
            )?,
            path: dir.path().to_string(),
        });
    }
    let env = t.texts("env", "[\"TZ\"]")?;
    Ok(RawGrant {
        dirs,
        env: env.map(Sp::into_inner).unwrap_or_default(),
        network: t.flag("network")?,
    })
}

fn read_canary(t: &Table) -> Result<RawCanary, ConfigError> {
    Ok(RawCanary {
        events: t.whole("events")?,
        max_failure_rate: t.fraction("max_failure_rate")?,
    })
}

fn read_admin(t: &Table) -> Result<RawAdmin, ConfigError> {
    Ok(RawAdmin {
        listen: t.text("listen")?,
        listener: listener::read(t)?,
    })
}

fn read_metrics(t: &Table) -> Result<RawMetrics, ConfigError> {
    Ok(RawMetrics {
        table: t.span(),
        listen: t.text("listen")?,
        linger: t.duration("linger")?,
    })
}
