//! The one pipeline-file builder of the tests: sources, stages, sinks, dead letters,
//! `[pipeline]` and `[admin]`, written as TOML into a test's temporary folder.
//!
//! Every key keeps the order it was set in, so a written file reads like a hand-written one,
//! and [`PipelineFile::line_of`] finds the line a key landed on for the tests of error
//! messages. Values are `toml::Value`s: a test may set any key to any value, a wrong one
//! included, with `key`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use toml::Value;

use super::Dir;

/// A TOML table whose keys keep the order they were set in.
#[derive(Debug, Clone, Default)]
pub struct Table(Vec<(String, Value)>);

impl Table {
    /// Sets `key`, replacing an earlier value in place.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) => *old = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    /// Leaves `key` out of the table.
    pub fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    /// Sets `key` of the inline table `table` (such as `grant` or `settings`).
    fn set_in(&mut self, table: &str, key: &str, value: impl Into<Value>) {
        let mut inner = match self.0.iter().find(|(k, _)| k == table) {
            Some((_, Value::Table(t))) => t.clone(),
            _ => toml::Table::new(),
        };
        inner.insert(key.to_string(), value.into());
        self.set(table, Value::Table(inner));
    }

    fn render(&self, header: &str, out: &mut String) {
        out.push_str(&format!("[{header}]\n"));
        for (key, value) in &self.0 {
            out.push_str(&format!("{} = {value}\n", bare_or_quoted(key)));
        }
        out.push('\n');
    }
}

/// A key as TOML writes it: bare when it can be.
fn bare_or_quoted(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

fn path_value(path: impl AsRef<Path>) -> Value {
    Value::String(path.as_ref().display().to_string())
}

fn names(inputs: &[&str]) -> Value {
    Value::Array(inputs.iter().map(|i| Value::from(*i)).collect())
}

/// Sets the table of node `name`, in place when there is one.
fn put(nodes: &mut Vec<(String, Table)>, name: &str, table: Table) {
    match nodes.iter_mut().find(|(n, _)| n == name) {
        Some((_, old)) => *old = table,
        None => nodes.push((name.to_string(), table)),
    }
}

/// A whole pipeline file.
#[derive(Debug, Clone, Default)]
pub struct PipelineFile {
    pipeline: Table,
    sources: Vec<(String, Table)>,
    stages: Vec<(String, Table)>,
    sinks: Vec<(String, Table)>,
    dead_letter: Option<Table>,
    admin: Option<Table>,
    metrics: Option<Table>,
}

impl PipelineFile {
    pub fn new() -> PipelineFile {
        PipelineFile::default()
    }

    /// `[pipeline] batch_size`.
    pub fn batch_size(self, n: i64) -> Self {
        self.pipeline_key("batch_size", n)
    }

    /// `[pipeline] linger`, a duration such as `"1ms"`.
    pub fn linger(self, linger: &str) -> Self {
        self.pipeline_key("linger", linger)
    }

    /// `[pipeline] buffer`.
    pub fn buffer(self, n: i64) -> Self {
        self.pipeline_key("buffer", n)
    }

    /// Any key of `[pipeline]`.
    pub fn pipeline_key(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.pipeline.set(key, value);
        self
    }

    /// Adds a source, or replaces the one of that name.
    pub fn source(mut self, name: &str, source: Source) -> Self {
        put(&mut self.sources, name, source.0);
        self
    }

    /// Adds a stage, or replaces the one of that name.
    pub fn stage(mut self, name: &str, stage: Stage) -> Self {
        put(&mut self.stages, name, stage.0);
        self
    }

    /// Adds a sink, or replaces the one of that name.
    pub fn sink(mut self, name: &str, sink: Sink) -> Self {
        put(&mut self.sinks, name, sink.0);
        self
    }

    /// Dead letters as JSON lines in `path` (relative to the pipeline file).
    pub fn dead_letters(mut self, path: impl AsRef<Path>) -> Self {
        let mut table = Table::default();
        table.set("type", "file");
        table.set("path", path_value(path));
        self.dead_letter = Some(table);
        self
    }

    /// Any `[dead_letter]` table.
    pub fn dead_letter_table(mut self, table: Table) -> Self {
        self.dead_letter = Some(table);
        self
    }

    /// The admin API on a free loopback port with this token.
    pub fn admin_token(mut self, token: &str) -> Self {
        let mut table = Table::default();
        table.set("listen", "127.0.0.1:0");
        table.set("token", token);
        self.admin = Some(table);
        self
    }

    /// The admin API on a free loopback port, its token read from the variable `name`.
    pub fn admin_token_env(mut self, name: &str) -> Self {
        let mut table = Table::default();
        table.set("listen", "127.0.0.1:0");
        table.set("token_env", name);
        self.admin = Some(table);
        self
    }

    /// `/metrics` on a free loopback port, answering for `linger` after the run.
    pub fn metrics(mut self, linger: &str) -> Self {
        let mut table = Table::default();
        table.set("listen", "127.0.0.1:0");
        table.set("linger", linger);
        self.metrics = Some(table);
        self
    }

    /// Any `[metrics]` table.
    pub fn metrics_table(mut self, table: Table) -> Self {
        self.metrics = Some(table);
        self
    }

    /// Any `[admin]` table.
    pub fn admin_table(mut self, table: Table) -> Self {
        self.admin = Some(table);
        self
    }

    /// The file's text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if !self.pipeline.0.is_empty() {
            self.pipeline.render("pipeline", &mut out);
        }
        for (kind, nodes) in [
            ("sources", &self.sources),
            ("stages", &self.stages),
            ("sinks", &self.sinks),
        ] {
            for (name, table) in nodes {
                table.render(&format!("{kind}.{}", bare_or_quoted(name)), &mut out);
            }
        }
        if let Some(table) = &self.dead_letter {
            table.render("dead_letter", &mut out);
        }
        if let Some(table) = &self.admin {
            table.render("admin", &mut out);
        }
        if let Some(table) = &self.metrics {
            table.render("metrics", &mut out);
        }
        out
    }

    /// Writes the file as `pipeline.toml` in `dir`; returns its path.
    pub fn write(&self, dir: &Dir) -> Result<PathBuf> {
        self.write_as(dir, "pipeline.toml")
    }

    pub fn write_as(&self, dir: &Dir, name: &str) -> Result<PathBuf> {
        dir.write(name, &self.text())
    }

    /// The number (from 1) of the first line of the file that holds `needle`.
    pub fn line_of(&self, needle: &str) -> usize {
        let text = self.text();
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("no line holds {needle:?} in:\n{text}"))
    }
}

/// A `[sources.NAME]` table.
#[derive(Debug, Clone)]
pub struct Source(pub Table);

impl Source {
    /// Lines of a file (relative to the pipeline file, or absolute).
    pub fn file(path: impl AsRef<Path>) -> Source {
        let mut table = Table::default();
        table.set("type", "file");
        table.set("path", path_value(path));
        Source(table)
    }

    /// Lines of standard input.
    pub fn stdin() -> Source {
        let mut table = Table::default();
        table.set("type", "stdin");
        Source(table)
    }

    /// `count` values of workload W1.
    pub fn generate(count: i64) -> Source {
        let mut table = Table::default();
        table.set("type", "generate");
        table.set("count", count);
        Source(table)
    }

    /// A durable pull consumer `consumer` of the JetStream stream `stream` at `url`.
    pub fn nats(url: &str, stream: &str, consumer: &str) -> Source {
        let mut table = Table::default();
        table.set("type", "nats");
        table.set("url", url);
        table.set("stream", stream);
        table.set("consumer", consumer);
        Source(table)
    }

    /// Lines from TCP connections to `listen` (such as `127.0.0.1:0`, any free port).
    pub fn tcp(listen: &str) -> Source {
        let mut table = Table::default();
        table.set("type", "tcp");
        table.set("listen", listen);
        Source(table)
    }

    /// Lines POSTed to `path` at a free loopback port (weir says which on stderr).
    pub fn http(path: &str) -> Source {
        let mut table = Table::default();
        table.set("type", "http");
        table.set("listen", "127.0.0.1:0");
        table.set("path", path);
        Source(table)
    }

    /// The generator's value size, in bytes.
    pub fn size(self, bytes: i64) -> Source {
        self.key("size", bytes)
    }

    pub fn repeat(self, times: i64) -> Source {
        self.key("repeat", times)
    }

    pub fn batch_size(self, n: i64) -> Source {
        self.key("batch_size", n)
    }

    pub fn key(mut self, key: &str, value: impl Into<Value>) -> Source {
        self.0.set(key, value);
        self
    }
}

/// A `[stages.NAME]` table.
#[derive(Debug, Clone)]
pub struct Stage(pub Table);

impl Stage {
    /// A stage running the plugin at `path`; give it its inputs with [`Stage::inputs`].
    pub fn plugin(path: impl AsRef<Path>) -> Stage {
        let mut table = Table::default();
        table.set("inputs", Value::Array(Vec::new()));
        table.set("plugin", path_value(path));
        Stage(table)
    }

    pub fn inputs(self, inputs: &[&str]) -> Stage {
        self.key("inputs", names(inputs))
    }

    /// One entry of `settings`.
    pub fn setting(mut self, key: &str, value: impl Into<Value>) -> Stage {
        self.0.set_in("settings", key, value);
        self
    }

    pub fn workers(self, n: i64) -> Stage {
        self.key("workers", n)
    }

    pub fn fuel(self, per_event: i64) -> Stage {
        self.key("fuel", per_event)
    }

    /// Fuel out of the way, so that the deadline is what ends a spinning call.
    pub fn unlimited_fuel(self) -> Stage {
        self.fuel(1_000_000_000_000)
    }

    pub fn timeout(self, timeout: &str) -> Stage {
        self.key("timeout", timeout)
    }

    pub fn memory(self, size: &str) -> Stage {
        self.key("memory", size)
    }

    pub fn retries(self, n: i64) -> Stage {
        self.key("retries", n)
    }

    /// `"dead-letter"`, `"drop"` or `"stop"`.
    pub fn on_error(self, policy: &str) -> Stage {
        self.key("on_error", policy)
    }

    pub fn breaker(self, window: i64, threshold: f64, cooldown: &str) -> Stage {
        let mut table = toml::Table::new();
        table.insert("window".into(), window.into());
        table.insert("threshold".into(), threshold.into());
        table.insert("cooldown".into(), cooldown.into());
        self.key("breaker", Value::Table(table))
    }

    /// Grants the host folder `host` (relative to the pipeline file) as `guest`.
    pub fn grant_dir(mut self, host: &str, guest: &str) -> Stage {
        let mut dir = toml::Table::new();
        dir.insert("host".into(), host.into());
        dir.insert("guest".into(), guest.into());
        let mut dirs = match self.grant().get("dirs") {
            Some(Value::Array(d)) => d.clone(),
            _ => Vec::new(),
        };
        dirs.push(Value::Table(dir));
        self.0.set_in("grant", "dirs", Value::Array(dirs));
        self
    }

    pub fn grant_env(mut self, names: &[&str]) -> Stage {
        self.0.set_in(
            "grant",
            "env",
            Value::Array(names.iter().map(|n| Value::from(*n)).collect()),
        );
        self
    }

    pub fn grant_network(mut self) -> Stage {
        self.0.set_in("grant", "network", true);
        self
    }

    fn grant(&self) -> toml::Table {
        match self.0.0.iter().find(|(k, _)| k == "grant") {
            Some((_, Value::Table(t))) => t.clone(),
            _ => toml::Table::new(),
        }
    }

    pub fn watch(self) -> Stage {
        self.key("watch", true)
    }

    pub fn canary(self, events: i64, max_failure_rate: f64) -> Stage {
        let mut table = toml::Table::new();
        table.insert("events".into(), events.into());
        table.insert("max_failure_rate".into(), max_failure_rate.into());
        self.key("canary", Value::Table(table))
    }

    pub fn max_output_events(self, n: i64) -> Stage {
        self.key("max_output_events", n)
    }

    pub fn max_output_bytes(self, size: &str) -> Stage {
        self.key("max_output_bytes", size)
    }

    pub fn max_value_size(self, size: &str) -> Stage {
        self.key("max_value_size", size)
    }

    pub fn key(mut self, key: &str, value: impl Into<Value>) -> Stage {
        self.0.set(key, value);
        self
    }
}

/// A `[sinks.NAME]` table.
#[derive(Debug, Clone)]
pub struct Sink(pub Table);

impl Sink {
    fn of(kind: &str) -> Sink {
        let mut table = Table::default();
        table.set("inputs", Value::Array(Vec::new()));
        table.set("type", kind);
        Sink(table)
    }

    /// A file (relative to the pipeline file, or absolute), one value a line.
    pub fn file(path: impl AsRef<Path>) -> Sink {
        Sink::of("file").key("path", path_value(path))
    }

    /// Publishes to `subject` at `url` (a stream must capture it).
    pub fn nats(url: &str, subject: &str) -> Sink {
        Sink::of("nats").key("url", url).key("subject", subject)
    }

    pub fn stdout() -> Sink {
        Sink::of("stdout")
    }

    pub fn null() -> Sink {
        Sink::of("null")
    }

    pub fn inputs(self, inputs: &[&str]) -> Sink {
        self.key("inputs", names(inputs))
    }

    /// One JSON object a line: key, value, headers (the version headers among them).
    pub fn json(self) -> Sink {
        self.key("encoding", "json")
    }

    pub fn key(mut self, key: &str, value: impl Into<Value>) -> Sink {
        self.0.set(key, value);
        self
    }
}
