//! What a run leaves to read: the report of `weir run --report json`, dead letters and the
//! events of a JSON sink, as typed values.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The one JSON object `weir run --report json` prints on stderr when the run ends. Every
/// field is required: a report without one fails to parse.
#[derive(Debug, Clone, Deserialize)]
pub struct Report {
    pub events_in: u64,
    pub events_out: u64,
    pub dead_lettered: u64,
    pub in_flight_max: u64,
    pub in_flight_bound: u64,
    pub interrupted: bool,
    pub elapsed_s: f64,
    pub total_s: f64,
    pub nodes: Vec<NodeReport>,
}

/// One node's counters in a [`Report`].
#[derive(Debug, Clone, Deserialize)]
pub struct NodeReport {
    pub name: String,
    /// `source`, `stage` or `sink`.
    pub kind: String,
    pub events_in: u64,
    pub events_out: u64,
    /// Bytes of event values in and out.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub failed: u64,
    pub filtered: u64,
    pub traps: u64,
    pub retries: u64,
    pub calls: u64,
    pub fuel: u64,
    /// Header references with a reserved `weir.` name a plugin wrote and the host removed.
    pub reserved_headers_stripped: u64,
    /// Failed events by kind; kinds with none are left out.
    pub failures: BTreeMap<String, u64>,
}

impl Report {
    /// Finds the report in a run's stderr: it must be the last line, and the only one.
    pub fn from_stderr(stderr: &str) -> Result<Report> {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .context("stderr is empty: no report")?;
        let report: Report = serde_json::from_str(last)
            .with_context(|| format!("the last line of stderr is not a report: {last}"))?;
        let reports = stderr
            .lines()
            .filter(|l| serde_json::from_str::<Report>(l).is_ok())
            .count();
        if reports != 1 {
            bail!("{reports} reports on stderr, expected one:\n{stderr}");
        }
        Ok(report)
    }

    /// The node called `name`; panics naming the nodes there are.
    pub fn node(&self, name: &str) -> &NodeReport {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
                panic!("no node `{name}` in the report; there are {names:?}")
            })
    }
}

impl NodeReport {
    /// Failed events of `kind` (such as `panic` or `breaker-open`).
    pub fn failures_of(&self, kind: &str) -> u64 {
        self.failures.get(kind).copied().unwrap_or(0)
    }
}

/// An event as a JSON sink writes it, and as a dead letter carries it.
#[derive(Debug, Clone, Deserialize)]
pub struct JsonEvent {
    pub key: Option<String>,
    pub value: Option<String>,
    pub value_base64: Option<String>,
    /// Absent when the event has none.
    #[serde(default)]
    pub headers: Vec<(String, serde_json::Value)>,
    pub timestamp: Option<u64>,
}

impl JsonEvent {
    /// The value as text; panics when it was not UTF-8 (it is then under `value_base64`).
    pub fn value(&self) -> &str {
        self.value
            .as_deref()
            .unwrap_or_else(|| panic!("the value is not UTF-8: {self:?}"))
    }

    /// The values of every header called `name`.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect()
    }

    /// The version header of `stage`, which must be there exactly once.
    pub fn version_of(&self, stage: &str) -> String {
        let found = self.header(&format!("weir.version.{stage}"));
        assert_eq!(
            found.len(),
            1,
            "not exactly one version header of `{stage}`: {self:?}"
        );
        found[0].clone()
    }
}

/// One dead letter.
#[derive(Debug, Clone, Deserialize)]
pub struct DeadLetter {
    pub stage: String,
    pub plugin_digest: String,
    pub kind: String,
    pub message: String,
    pub attempts: u32,
    pub event: JsonEvent,
}

impl DeadLetter {
    pub fn value(&self) -> &str {
        self.event.value()
    }
}

/// The JSON lines of a file as `T`s, none when it was never written. The file is read a line
/// at a time, not whole.
pub fn json_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    use std::io::BufRead;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: {line}", path.display(), i + 1))?,
        );
    }
    Ok(out)
}

/// The dead letters in a JSON-lines file; none when it was never written.
pub fn dead_letters(path: &Path) -> Result<Vec<DeadLetter>> {
    json_lines(path)
}

/// The events of a JSON sink's file; none when it was never written.
pub fn json_events(path: &Path) -> Result<Vec<JsonEvent>> {
    json_lines(path)
}

/// The lines of a text file, without their line endings; none when it was never written.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    use std::io::BufRead;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()?)
}

/// The number of lines of a file so far (0 when it does not exist yet).
pub fn count_lines(path: &Path) -> u64 {
    match std::fs::read(path) {
        Ok(bytes) => bytes.iter().filter(|&&b| b == b'\n').count() as u64,
        Err(_) => 0,
    }
}
