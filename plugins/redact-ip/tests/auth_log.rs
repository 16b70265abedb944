//! The three W3 stages chained natively over the Loghub OpenSSH sample, one pass.
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
use weir_plugin::{Event, Outcome, Settings, Stage};

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

fn fnv1a(events: &[Event]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for event in events {
        for &b in event.value.iter().chain(b"\n") {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

fn lines_of(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        out.extend_from_slice(&event.value);
        out.push(b'\n');
    }
    out
}

/// Lines as `BufRead::lines` yields them: without `\n` or `\r\n`.
fn sample_events() -> Vec<Event> {
    let file = File::open(Path::new(SAMPLE)).expect("open the OpenSSH sample");
    BufReader::new(file)
        .lines()
        .map(|line| Event::new(line.expect("read a line")))
        .collect()
}

/// Runs one stage over a batch and splits its outcomes into outputs and reject reasons.
fn run<S: Stage>(batch: Vec<Event>) -> (Vec<Event>, Vec<String>) {
    let mut stage = S::init(&Settings::default()).expect("init");
    let inputs = batch.len();
    let outcomes: Vec<Outcome> = stage.process_batch(batch);
    assert_eq!(outcomes.len(), inputs, "one outcome per input");
    let mut outputs = Vec::new();
    let mut rejects = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(events) => outputs.extend(events),
            Err(failure) => rejects.push(failure.to_string()),
        }
    }
    (outputs, rejects)
}

#[test]
fn chained_w3_stages_keep_1225_events_without_rejects() {
    let lines = sample_events();
    assert_eq!(lines.len(), 2000);

    let (parsed, rejects) = run::<SshdParse>(lines);
    assert_eq!(rejects, Vec::<String>::new(), "sshd-parse rejects");
    assert_eq!(parsed.len(), 2000);

    assert_eq!(fnv1a(&parsed), PARSED_FNV, "sshd-parse output changed");

    let (kept, rejects) = run::<AuthFilter>(parsed);
    assert_eq!(rejects, Vec::<String>::new(), "auth-filter rejects");
    assert_eq!(fnv1a(&kept), KEPT_FNV, "auth-filter output changed");

    let (redacted, rejects) = run::<RedactIp>(kept);
    assert_eq!(rejects, Vec::<String>::new(), "redact-ip rejects");
    assert_eq!(redacted.len(), 1225);
    let output = lines_of(&redacted);
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
}
