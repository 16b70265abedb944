//! The three W3 stages chained natively over the Loghub OpenSSH sample, one pass.
//!
//! The expected count comes from the benchmark specification: 1,225 of the 2,000 lines record
//! an authentication failure, and every line parses.

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

    let (kept, rejects) = run::<AuthFilter>(parsed);
    assert_eq!(rejects, Vec::<String>::new(), "auth-filter rejects");

    let (redacted, rejects) = run::<RedactIp>(kept);
    assert_eq!(rejects, Vec::<String>::new(), "redact-ip rejects");
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
}
