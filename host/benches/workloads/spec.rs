//! The workloads as `WORKLOADS.md` defines them: sizes, values, the W3 reference output, the
//! pipeline files weir runs, and the checks every run must pass.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

/// W1 and W2: events from the source, and bytes per value.
pub const W12_EVENTS: u64 = 2_000_000;
pub const W12_SIZE: u64 = 100;
/// W3: copies of the 2,000-line log read in a row (1,000,000 lines).
pub const W3_REPEAT: u64 = 500;
/// Events per batch, in weir (its default) and in the ceiling.
pub const BATCH: usize = 256;
/// The three stages of W1 and W2.
pub const W12_STAGES: [&str; 3] = ["s1", "s2", "s3"];
pub const W3_STAGES: [&str; 3] = ["parse", "filter", "redact"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    W1,
    W2,
    W3,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
        }
    }

    /// Issue 8's target for weir's events/s over the ceiling's.
    pub fn target(self) -> f64 {
        match self {
            Workload::W1 => 0.6,
            Workload::W2 => 0.5,
            Workload::W3 => 0.75,
        }
    }

    /// The target for the Go pipeline's time over weir's (weir at least this many times as
    /// fast), where one is set.
    pub fn go_target(self) -> Option<f64> {
        match self {
            Workload::W1 => Some(2.0),
            Workload::W2 => None,
            Workload::W3 => Some(1.5),
        }
    }

    /// The target for the Go pipeline's CPU time over weir's, where one is set: W3's is 1.0,
    /// weir using no more CPU than Go for the same work.
    pub fn go_cpu_target(self) -> Option<f64> {
        match self {
            Workload::W3 => Some(1.0),
            _ => None,
        }
    }

    pub fn stages(self) -> [&'static str; 3] {
        match self {
            Workload::W3 => W3_STAGES,
            _ => W12_STAGES,
        }
    }

    /// The plugin of every stage, by package name.
    pub fn plugins(self) -> [&'static str; 3] {
        match self {
            Workload::W1 => ["passthrough"; 3],
            Workload::W2 => ["uppercase"; 3],
            Workload::W3 => ["sshd-parse", "auth-filter", "redact-ip"],
        }
    }

    /// Source events of a run of `size` (W1/W2 events, W3 copies of the log).
    pub fn events(self, size: u64) -> u64 {
        match self {
            Workload::W3 => size * 2000,
            _ => size,
        }
    }
}

/// The W3 log, in the repository.
pub fn w3_log() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/auth-log/data/OpenSSH_2k.log")
}

/// The values of one copy of the W3 log, as weir's file source reads them: split at `\n`, a
/// `\r` before it removed (the log's lines end with `\r\n`), the last line without ending.
pub fn w3_lines() -> Result<Vec<Vec<u8>>> {
    let log = std::fs::read(w3_log())?;
    ensure!(
        !log.ends_with(b"\n"),
        "the log's last line has no line ending"
    );
    Ok(log
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line).to_vec())
        .collect())
}

/// The value the W1/W2 sink must see as event `i`: W1's generated value, upper case for W2.
pub fn expected_value(workload: Workload, i: u64) -> Vec<u8> {
    let mut value: Vec<u8> = (0..W12_SIZE).map(|j| b'a' + ((i + j) % 26) as u8).collect();
    if workload == Workload::W2 {
        value.make_ascii_uppercase();
    }
    value
}

/// What a weir run's pipeline file looks like, beyond the workload itself.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// `[pipeline] chain = false`.
    pub unchained: bool,
    /// `workers` of every stage, when not the default.
    pub workers: Option<usize>,
    /// Every stage's plugin, when not the workload's own (W2 on the 0.1 contract).
    pub plugin: Option<&'static str>,
    /// More lines for `[pipeline]` and for every stage, as given on the command line.
    pub pipeline: String,
    pub stage: String,
}

/// Where a weir pipeline writes its events.
pub enum Sink<'a> {
    /// Counts events and bytes, writes nothing (W1 and W2).
    Null,
    /// Each value and a newline into this file.
    File(&'a Path),
    Stdout,
}

/// A workload's pipeline file.
pub fn pipeline_text(
    workload: Workload,
    size: u64,
    shape: &Shape,
    sink: Sink,
    dead_letters: &Path,
) -> String {
    let mut text = format!("[pipeline]\n{}\n", shape.pipeline);
    if shape.unchained {
        text.push_str("chain = false\n");
    }
    let source = match workload {
        Workload::W3 => format!(
            "type = \"file\"\npath = {:?}\nrepeat = {size}",
            w3_log().display().to_string()
        ),
        _ => format!("type = \"generate\"\ncount = {size}\nsize = {W12_SIZE}"),
    };
    text.push_str(&format!("\n[sources.input]\n{source}\n"));
    let mut input = "input";
    for (name, plugin) in workload.stages().into_iter().zip(workload.plugins()) {
        let path = weir_test_plugins::plugin(shape.plugin.unwrap_or(plugin));
        text.push_str(&format!(
            "\n[stages.{name}]\ninputs = [{input:?}]\nplugin = {:?}\n{}\n",
            path.display().to_string(),
            shape.stage
        ));
        if let Some(n) = shape.workers {
            text.push_str(&format!("workers = {n}\n"));
        }
        input = name;
    }
    let sink = match sink {
        Sink::Null => "type = \"null\"".to_string(),
        Sink::Stdout => "type = \"stdout\"".to_string(),
        // Each content run starts the file empty: file sinks append by default.
        Sink::File(path) => format!(
            "type = \"file\"\npath = {:?}\nmode = \"truncate\"",
            path.display().to_string()
        ),
    };
    text.push_str(&format!("\n[sinks.out]\ninputs = [{input:?}]\n{sink}\n"));
    text.push_str(&format!(
        "\n[dead_letter]\ntype = \"file\"\npath = {:?}\nmode = \"truncate\"\n",
        dead_letters.display().to_string()
    ));
    text
}

/// The W1/W2 checks on a run's report (`weir run --report json`, or the library's report as
/// JSON): the source emitted `events`, every stage passed every event and failed none, and
/// the sink counted `events` events and `events × 100` bytes.
pub fn check_report_counts(
    workload: Workload,
    report: &serde_json::Value,
    events: u64,
) -> Result<()> {
    let number = |v: &serde_json::Value, key: &str| v[key].as_u64().unwrap_or(u64::MAX);
    ensure!(
        number(report, "events_in") == events && number(report, "dead_lettered") == 0,
        "the source emitted {} events and {} were dead-lettered; expected {events} and none",
        report["events_in"],
        report["dead_lettered"]
    );
    let nodes = report["nodes"]
        .as_array()
        .context("no nodes in the report")?;
    let node = |name: &str| {
        nodes
            .iter()
            .find(|n| n["name"] == name)
            .with_context(|| format!("no node `{name}` in the report"))
    };
    for stage in workload.stages() {
        let n = node(stage)?;
        ensure!(
            number(n, "events_in") == events
                && number(n, "events_out") == events
                && number(n, "failed") == 0,
            "stage {stage}: {} in, {} out, {} failed; expected {events} in and out",
            n["events_in"],
            n["events_out"],
            n["failed"]
        );
    }
    let sink = node("out")?;
    ensure!(
        number(sink, "events_out") == events && number(sink, "bytes_out") == events * W12_SIZE,
        "the sink counted {} events and {} bytes; expected {events} and {}",
        sink["events_out"],
        sink["bytes_out"],
        events * W12_SIZE
    );
    Ok(())
}

/// W1/W2 content: line `i` of a text file is event `i`'s value (upper case for W2).
pub fn check_lines(workload: Workload, file: &Path, events: u64) -> Result<()> {
    let bytes = std::fs::read(file)?;
    let mut i = 0u64;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let expected = expected_value(workload, i);
        ensure!(
            line.strip_suffix(b"\n") == Some(expected.as_slice()),
            "line {i} is {:?}",
            String::from_utf8_lossy(line)
        );
        i += 1;
    }
    ensure!(i == events, "{i} lines, expected {events}");
    Ok(())
}

/// What every W3 run must produce: the output of one copy of the log, written `repeat` times,
/// and as many dead letters as the copies hold lines that do not parse.
pub struct W3Expected {
    one: Vec<u8>,
    repeat: u64,
    pub lines: u64,
    pub dead_letters: u64,
}

impl W3Expected {
    /// Computed without any pipeline: the plain functions of the three stages called in turn
    /// on each line of the log.
    pub fn new(repeat: u64) -> Result<W3Expected> {
        let filter = auth_filter::AuthFilter::new();
        let mut one = Vec::new();
        let (mut rejects, mut parsed, mut lines) = (0u64, Vec::new(), 0u64);
        for line in w3_lines()? {
            let line = line.as_slice();
            parsed.clear();
            let kept = sshd_parse::parse_into(line, &mut parsed)
                .map_err(|e| e.to_string())
                .and_then(|()| filter.keep(&parsed))
                .and_then(|keep| match keep {
                    true => redact_ip::redact_into(&parsed, &mut one).map(|()| true),
                    false => Ok(false),
                });
            match kept {
                Ok(true) => {
                    one.push(b'\n');
                    lines += 1;
                }
                Ok(false) => {}
                Err(_) => rejects += 1,
            }
        }
        Ok(W3Expected {
            one,
            repeat,
            lines: lines * repeat,
            dead_letters: rejects * repeat,
        })
    }

    /// The expected output values in order (without line endings): one copy's, `repeat` times.
    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        let one = self.one.strip_suffix(b"\n").unwrap_or(&self.one);
        (0..self.repeat).flat_map(move |_| one.split(|&b| b == b'\n'))
    }

    /// The output file is the expected output, byte for byte.
    pub fn check_output(&self, path: &Path) -> Result<()> {
        let mut file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
        let mut copy = vec![0; self.one.len()];
        for i in 0..self.repeat {
            file.read_exact(&mut copy)
                .with_context(|| format!("the output ends within copy {i} of the log"))?;
            ensure!(copy == self.one, "copy {i} of the log's output differs");
        }
        ensure!(
            file.read(&mut [0])? == 0,
            "the output goes on past the expected end"
        );
        Ok(())
    }

    pub fn check_dead_letters(&self, count: u64) -> Result<()> {
        ensure!(
            count == self.dead_letters,
            "{count} dead letters, expected {}",
            self.dead_letters
        );
        Ok(())
    }
}
