//! The tables of a pipeline file as written: every value typed (text, whole number, list…)
//! and kept with its span, but not yet checked for meaning. Reading refuses unknown keys, wrong
//! types and missing required keys; everything else is left to the checks of each concern.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::config::error::{ConfigError, Ctx, Sp, join};
use crate::config::reader::{self, Table};

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
/// The keys of a `file` or `generate` source, refused on every other type.
pub(crate) const SOURCE_TYPE_KEYS: [&str; 4] = ["path", "repeat", "count", "size"];
/// The keys only a `nats` source has.
pub(crate) const NATS_KEYS: [&str; 8] = [
    "url",
    "stream",
    "consumer",
    "subject",
    "batch",
    "ack_wait",
    "max_ack_pending",
    "key_header",
];
/// The keys only a `tcp` source has.
pub(crate) const TCP_KEYS: [&str; 7] = [
    "listen",
    "max_connections",
    "max_line",
    "idle_timeout",
    "tls_cert",
    "tls_key",
    "peer_header",
];
const SOURCE_KEYS: [&str; 22] = keys(&[
    &["type"],
    &SOURCE_TYPE_KEYS,
    &["batch_size", "linger"],
    &NATS_KEYS,
    &TCP_KEYS,
]);
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
    "breaker",
    "grant",
    "watch",
    "canary",
];
const BREAKER_KEYS: &[&str] = &["window", "threshold", "cooldown"];
const GRANT_KEYS: &[&str] = &["dirs", "env", "network"];
const DIR_KEYS: &[&str] = &["host", "guest"];
const CANARY_KEYS: &[&str] = &["events", "max_failure_rate"];
const SINK_KEYS: &[&str] = &[
    "inputs", "type", "path", "encoding", "mode", "sync", "url", "subject",
];
const DEAD_LETTER_KEYS: &[&str] = &["type", "path", "mode", "sync"];
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

/// The lists in `parts`, one after another, as one list of `N` keys: a list shared by two
/// tables is written once.
const fn keys<const N: usize>(parts: &[&[&'static str]]) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut n, mut i) = (0, 0);
    while i < parts.len() {
        let mut j = 0;
        while j < parts[i].len() {
            out[n] = parts[i][j];
            n += 1;
            j += 1;
        }
        i += 1;
    }
    assert!(n == N, "the parts hold a different number of keys");
    out
}

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

/// Where a node (source, stage or sink) was written: its name's key and its table.
pub(crate) struct Place {
    pub name: Sp<String>,
    pub table: Range<usize>,
}

pub(crate) struct RawSource {
    pub at: Place,
    pub kind: Sp<String>,
    pub path: Option<Sp<String>>,
    pub repeat: Option<Sp<i128>>,
    pub count: Option<Sp<i128>>,
    pub size: Option<Sp<String>>,
    pub batch_size: Option<Sp<i128>>,
    pub linger: Option<Sp<String>>,
    /// NATS JetStream.
    pub nats: RawNats,
    /// A TCP listener.
    pub tcp: RawTcp,
}

/// The keys of a `tcp` source.
pub(crate) struct RawTcp {
    pub listen: Option<Sp<String>>,
    pub max_connections: Option<Sp<i128>>,
    pub max_line: Option<Sp<String>>,
    pub idle_timeout: Option<Sp<String>>,
    pub tls_cert: Option<Sp<String>>,
    pub tls_key: Option<Sp<String>>,
    pub peer_header: Option<Sp<String>>,
}

/// The keys of a `nats` source or sink.
#[derive(Default)]
pub(crate) struct RawNats {
    pub url: Option<Sp<String>>,
    pub stream: Option<Sp<String>>,
    pub consumer: Option<Sp<String>>,
    pub subject: Option<Sp<String>>,
    pub batch: Option<Sp<i128>>,
    pub ack_wait: Option<Sp<String>>,
    pub max_ack_pending: Option<Sp<i128>>,
    pub key_header: Option<Sp<String>>,
}

/// Each setting's key, and its value as the text the plugin receives, in key order.
pub(crate) type Settings = Vec<(Sp<String>, Sp<String>)>;

pub(crate) struct RawStage {
    pub at: Place,
    pub inputs: Sp<Vec<Sp<String>>>,
    pub plugin: Sp<String>,
    pub settings: Settings,
    pub workers: Option<Sp<i128>>,
    pub fuel: Option<Sp<i128>>,
    pub timeout: Option<Sp<String>>,
    pub memory: Option<Sp<String>>,
    pub retries: Option<Sp<i128>>,
    pub on_error: Option<Sp<String>>,
    pub max_output_events: Option<Sp<i128>>,
    pub max_output_bytes: Option<Sp<String>>,
    pub max_value_size: Option<Sp<String>>,
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

pub(crate) struct RawSink {
    pub at: Place,
    pub inputs: Sp<Vec<Sp<String>>>,
    pub kind: Sp<String>,
    pub path: Option<Sp<String>>,
    pub encoding: Option<Sp<String>>,
    pub mode: Option<Sp<String>>,
    pub sync: Option<Sp<String>>,
    pub url: Option<Sp<String>>,
    pub subject: Option<Sp<String>>,
}

pub(crate) struct RawDeadLetter {
    pub kind: Sp<String>,
    pub path: Option<Sp<String>>,
    pub mode: Option<Sp<String>>,
    pub sync: Option<Sp<String>>,
}

pub(crate) struct RawAdmin {
    pub table: Range<usize>,
    pub listen: Option<Sp<String>>,
    pub token: Option<Sp<String>>,
    pub token_env: Option<Sp<String>>,
    pub token_file: Option<Sp<String>>,
    pub tls_cert: Option<Sp<String>>,
    pub tls_key: Option<Sp<String>>,
    pub header_timeout: Option<Sp<String>>,
    pub idle_timeout: Option<Sp<String>>,
    pub body_timeout: Option<Sp<String>>,
    pub max_connections: Option<Sp<i128>>,
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
        sources: nodes(&root, "sources", ("a source", &SOURCE_KEYS), read_source)?,
        stages: nodes(&root, "stages", ("a stage", STAGE_KEYS), read_stage)?,
        sinks: nodes(&root, "sinks", ("a sink", SINK_KEYS), read_sink)?,
        dead_letter: dead_letter.map(|t| read_dead_letter(&t)).transpose()?,
        admin: admin.map(|t| read_admin(&t)).transpose()?,
        metrics: metrics.map(|t| read_metrics(&t)).transpose()?,
    })
}

/// The tables of one section (`[sources.NAME]`…), each read by `read`.
fn nodes<T>(
    root: &Table,
    section: &str,
    (what, keys): (&str, &[&str]),
    read: fn(&Table, Place) -> Result<T, ConfigError>,
) -> Result<BTreeMap<String, T>, ConfigError> {
    let shape = format!("a table `[{section}.NAME]`");
    let Some(tables) = root.section(section, &format!("tables such as `[{section}.NAME]`"))? else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for (name, node) in tables.entries() {
        let path = join(section, name.get_ref());
        let table = Table::open(tables.cx(), path, node, (what, &shape), keys)?;
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

fn read_source(t: &Table, at: Place) -> Result<RawSource, ConfigError> {
    let kind = t.text("type")?;
    Ok(RawSource {
        kind: t.required(
            kind,
            "type",
            "a source needs `type`: `\"stdin\"`, `\"file\"`, `\"generate\"`, `\"nats\"` or `\"tcp\"`",
        )?,
        path: t.text("path")?,
        repeat: t.whole("repeat")?,
        count: t.whole("count")?,
        size: t.size("size")?,
        batch_size: t.whole("batch_size")?,
        linger: t.duration("linger")?,
        nats: RawNats {
            url: t.text("url")?,
            stream: t.text("stream")?,
            consumer: t.text("consumer")?,
            subject: t.text("subject")?,
            batch: t.whole("batch")?,
            ack_wait: t.duration("ack_wait")?,
            max_ack_pending: t.whole("max_ack_pending")?,
            key_header: t.text("key_header")?,
        },
        tcp: RawTcp {
            listen: t.text("listen")?,
            max_connections: t.whole("max_connections")?,
            max_line: t.size("max_line")?,
            idle_timeout: t.duration("idle_timeout")?,
            tls_cert: t.text("tls_cert")?,
            tls_key: t.text("tls_key")?,
            peer_header: t.text("peer_header")?,
        },
        at,
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
        workers: t.whole("workers")?,
        fuel: t.whole("fuel")?,
        timeout: t.duration("timeout")?,
        memory: t.size("memory")?,
        retries: t.whole("retries")?,
        on_error: t.text("on_error")?,
        max_output_events: t.whole("max_output_events")?,
        max_output_bytes: t.size("max_output_bytes")?,
        max_value_size: t.size("max_value_size")?,
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

fn read_sink(t: &Table, at: Place) -> Result<RawSink, ConfigError> {
    let (inputs, kind) = (t.texts("inputs", "[\"parse\"]")?, t.text("type")?);
    Ok(RawSink {
        inputs: t.required(
            inputs,
            "inputs",
            "a sink needs `inputs`, the sources or stages it writes, such as `inputs = [\"parse\"]`",
        )?,
        kind: t.required(
            kind,
            "type",
            "a sink needs `type`: `\"stdout\"`, `\"file\"`, `\"null\"` or `\"nats\"`",
        )?,
        path: t.text("path")?,
        encoding: t.text("encoding")?,
        mode: t.text("mode")?,
        sync: t.text("sync")?,
        url: t.text("url")?,
        subject: t.text("subject")?,
        at,
    })
}

fn read_dead_letter(t: &Table) -> Result<RawDeadLetter, ConfigError> {
    let kind = t.text("type")?;
    Ok(RawDeadLetter {
        kind: t.required(
            kind,
            "type",
            "`[dead_letter]` needs `type`: `\"file\"` or `\"stderr\"`",
        )?,
        path: t.text("path")?,
        mode: t.text("mode")?,
        sync: t.text("sync")?,
    })
}

fn read_admin(t: &Table) -> Result<RawAdmin, ConfigError> {
    Ok(RawAdmin {
        table: t.span(),
        listen: t.text("listen")?,
        token: t.text("token")?,
        token_env: t.text("token_env")?,
        token_file: t.text("token_file")?,
        tls_cert: t.text("tls_cert")?,
        tls_key: t.text("tls_key")?,
        header_timeout: t.duration("header_timeout")?,
        idle_timeout: t.duration("idle_timeout")?,
        body_timeout: t.duration("body_timeout")?,
        max_connections: t.whole("max_connections")?,
    })
}

fn read_metrics(t: &Table) -> Result<RawMetrics, ConfigError> {
    Ok(RawMetrics {
        table: t.span(),
        listen: t.text("listen")?,
        linger: t.duration("linger")?,
    })
}
