//! The three W3 stages chained natively over the Loghub OpenSSH sample, one pass, two ways:
//! through the SDK's packed entry point (the plugins' own code path, batch by batch, as in
//! the sandbox) and through their plain functions (what a native pipeline calls).
//!
//! The expected count comes from the benchmark specification: 1,225 of the 2,000 lines record
//! an authentication failure, and every line parses. The output must equal, byte for byte, the
//! golden file `tests/golden/w3_2k.jsonl`; the outputs of the first two stages must hash to
//! the digests recorded beside it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use auth_filter::AuthFilter;
use redact_ip::RedactIp;
use sshd_parse::SshdParse;
use weir_plugin::{Batch, Event, Settings, Transform, native};

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/auth-log/data/OpenSSH_2k.log"
);

/// The W3 output over the sample, one JSON line per kept event.
const GOLDEN: &[u8] = include_bytes!("golden/w3_2k.jsonl");

/// FNV-1a (64-bit) of the values that `sshd-parse` and `auth-filter` emit over the sample,
/// each followed by `\n`: recorded with the same stages as the golden file.
const PARSED_FNV: u64 = 0x460a_e847_7aa9_4e9a;
const KEPT_FNV: u64 = 0x8ec0_c36a_99af_13c6;

/// Batches of the size the host uses by default.
const BATCH: usize = 256;

/// Lines as `BufRead::lines` yields them: without `\n` or `\r\n`.
fn sample_lines() -> Vec<Vec<u8>> {
    let file = File::open(Path::new(SAMPLE)).expect("open the OpenSSH sample");
    BufReader::new(file)
        .lines()
        .map(|line| line.expect("read a line").into_bytes())
        .collect()
}

/// Each value followed by `\n`.
fn lines_of<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn assert_golden(output: &[u8]) {
    if output != GOLDEN {
        let line = output
            .split(|&b| b == b'\n')
            .zip(GOLDEN.split(|&b| b == b'\n'))
            .position(|(a, b)| a != b)
            .map(|i| i + 1);
        panic!(
            "the W3 output differs from tests/golden/w3_2k.jsonl, first at line {line:?} (1-based)"
        );
    }
}

/// Runs one stage over packed batches and returns its outputs, packed, and its failures.
fn run<T: Transform>(input: &[Batch]) -> (Vec<Batch>, Vec<String>) {
    let mut stage: T = native::init(Settings::default()).expect("init");
    let mut outputs = Vec::new();
    let mut failures = Vec::new();
    for batch in input {
        let output = native::process(&mut stage, batch);
        output
            .check(batch.len())
            .expect("the output keeps the contract");
        failures.extend(output.failures.iter().map(|f| f.failure.to_string()));
        outputs.push(output.events);
    }
    (outputs, failures)
}

fn values(batches: &[Batch]) -> Vec<u8> {
    let views = batches.iter().flat_map(|b| b.iter());
    lines_of(views.map(|e| e.value()))
}

#[test]
fn chained_w3_stages_keep_1225_events_without_rejects() {
    let lines = sample_lines();
    assert_eq!(lines.len(), 2000);
    let batches: Vec<Batch> = lines
        .chunks(BATCH)
        .map(|chunk| {
            Batch::from_events(
                &chunk
                    .iter()
                    .map(|l| Event::new(l.clone()))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();

    let (parsed, rejects) = run::<SshdParse>(&batches);
    assert_eq!(rejects, Vec::<String>::new(), "sshd-parse rejects");
    assert_eq!(parsed.iter().map(Batch::len).sum::<usize>(), 2000);
    assert_eq!(
        fnv1a(&values(&parsed)),
        PARSED_FNV,
        "sshd-parse output changed"
    );

    let (kept, rejects) = run::<AuthFilter>(&parsed);
    assert_eq!(rejects, Vec::<String>::new(), "auth-filter rejects");
    assert_eq!(
        fnv1a(&values(&kept)),
        KEPT_FNV,
        "auth-filter output changed"
    );

    let (redacted, rejects) = run::<RedactIp>(&kept);
    assert_eq!(rejects, Vec::<String>::new(), "redact-ip rejects");
    let redacted: Vec<Event> = redacted.iter().flat_map(Batch::to_events).collect();
    assert_eq!(redacted.len(), 1225);

    for event in &redacted {
        let text = std::str::from_utf8(&event.value).expect("UTF-8 output");
        assert_eq!(
            redact_ip::redact_ipv4(text),
            text,
            "an address is left in {text}"
        );
    }
    assert_eq!(
        std::str::from_utf8(&redacted[0].value).unwrap(),
        r#"{"ts":"Dec 10 06:55:46","host":"LabSZ","proc":"sshd","pid":24200,"msg":"reverse mapping checking getaddrinfo for ns.marryaldkfaczcz.com [<ip>] failed - POSSIBLE BREAK-IN ATTEMPT!"}"#
    );
    assert_golden(&lines_of(redacted.iter().map(|e| e.value.as_slice())));
}

/// The plain functions, chained as a native pipeline would call them, with one buffer per
/// stage reused for every line.
#[test]
fn the_plain_functions_give_the_same_output() {
    let filter = AuthFilter::new();
    let (mut parsed, mut redacted) = (Vec::new(), Vec::new());
    let mut output = Vec::new();
    for line in sample_lines() {
        parsed.clear();
        sshd_parse::parse_into(&line, &mut parsed).expect("every line parses");
        if filter.keep(&parsed).expect("a parsed object") {
            redacted.clear();
            redact_ip::redact_into(&parsed, &mut redacted).expect("a parsed object");
            output.extend_from_slice(&redacted);
            output.push(b'\n');
        }
    }
    assert_golden(&output);
}
