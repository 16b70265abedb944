//! `redact-ip`: replaces the IPv4 addresses in a parsed sshd event's `msg` with `<ip>`.
//!
//! The input value is the JSON object that `sshd-parse` emits, with exactly the keys `ts`,
//! `host`, `proc`, `pid` and `msg`. The output is the same object, compact, keys in that order,
//! with every IPv4 address in the unescaped `msg` replaced by [`PLACEHOLDER`]. A value that is
//! not such an object is rejected.
//!
//! An IPv4 address is four groups of 1 to 3 digits, each at most 255, joined by dots, and not
//! preceded or followed by a digit or a dot. So `1.2.3.4:22` and the `1.2.3.4` in `a1.2.3.4`
//! are addresses, while `256.1.1.1`, `1.2.3.4.5` and a sentence-final `1.2.3.4.` are not.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use weir_plugin::{Event, Failure, Outcome, Settings, Stage};

/// What an IPv4 address is replaced with.
pub const PLACEHOLDER: &str = "<ip>";

/// A parsed sshd event. Field order is the output's key order; the strings stay borrowed from
/// the input unless they contain escapes.
#[derive(Deserialize, Serialize)]
// A key the stage does not know would be lost on re-emission, so it is an error instead.
#[serde(deny_unknown_fields)]
struct Record<'a> {
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow)]
    host: Cow<'a, str>,
    #[serde(borrow)]
    proc: Cow<'a, str>,
    pid: u64,
    #[serde(borrow)]
    msg: Cow<'a, str>,
}

/// Replaces every IPv4 address in `text` with [`PLACEHOLDER`]; borrows `text` when there is
/// none.
pub fn redact_ipv4(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut redacted: Option<String> = None;
    // End of the part of `text` already copied into `redacted`.
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !is_digit_or_dot(bytes[i]) {
            i += 1;
            continue;
        }
        // "Not preceded or followed by a digit or a dot" means an address is a whole maximal
        // run of digits and dots, so each run is either replaced entirely or kept.
        let start = i;
        while i < bytes.len() && is_digit_or_dot(bytes[i]) {
            i += 1;
        }
        if is_ipv4(&bytes[start..i]) {
            let out = redacted.get_or_insert_with(|| String::with_capacity(text.len()));
            // Runs are ASCII, so `start` and `i` are char boundaries.
            out.push_str(&text[copied..start]);
            out.push_str(PLACEHOLDER);
            copied = i;
        }
    }
    match redacted {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

fn is_digit_or_dot(b: u8) -> bool {
    b.is_ascii_digit() || b == b'.'
}

/// Whether a run of digits and dots is exactly four dot-separated groups of 1 to 3 digits,
/// each at most 255.
fn is_ipv4(run: &[u8]) -> bool {
    let mut groups = 0;
    for group in run.split(|&b| b == b'.') {
        groups += 1;
        if groups > 4 || group.is_empty() || group.len() > 3 {
            return false;
        }
        let value = group
            .iter()
            .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
        if value > 255 {
            return false;
        }
    }
    groups == 4
}

/// Redacts the `msg` of a parsed sshd event and re-emits the compact JSON object, or says why
/// the value is not such an object.
pub fn redact(value: &[u8]) -> Result<Vec<u8>, String> {
    // serde would also read a struct from a JSON array; only an object is acceptable here.
    if value.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("value is not a JSON object".to_string());
    }
    let mut record: Record = serde_json::from_slice(value).map_err(|e| {
        format!("value is not a JSON object with keys ts, host, proc, pid, msg: {e}")
    })?;
    if let Cow::Owned(msg) = redact_ipv4(&record.msg) {
        record.msg = Cow::Owned(msg);
    }
    let mut json = Vec::with_capacity(value.len());
    serde_json::to_writer(&mut json, &record).map_err(|e| e.to_string())?;
    Ok(json)
}

/// The stage; it takes no settings and ignores any it is given.
#[derive(Debug, Default)]
pub struct RedactIp;

impl Stage for RedactIp {
    fn init(_settings: &Settings) -> Result<Self, String> {
        Ok(RedactIp)
    }

    /// Replaces the value with its redacted form; key, headers and timestamp are kept.
    fn process(&mut self, mut event: Event) -> Outcome {
        match redact(&event.value) {
            Ok(json) => {
                event.value = json;
                Ok(vec![event])
            }
            Err(reason) => Err(Failure::Reject(reason)),
        }
    }
}

weir_plugin::export_stage!(RedactIp);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_rule() {
        let cases = [
            ("1.2.3.4", "<ip>"),
            (
                "from 173.234.31.186 port 38926 ssh2",
                "from <ip> port 38926 ssh2",
            ),
            ("[173.234.31.186] failed", "[<ip>] failed"),
            ("0.0.0.0 255.255.255.255", "<ip> <ip>"),
            ("1.2.3.4:22", "<ip>:22"),
            ("a1.2.3.4", "a<ip>"),
            ("x1.2.3.4y", "x<ip>y"),
            ("001.002.003.004", "<ip>"),
            ("1.2.3.4,5.6.7.8", "<ip>,<ip>"),
            ("256.1.1.1", "256.1.1.1"),
            ("1.1.1.256", "1.1.1.256"),
            ("1.2.3.4.5", "1.2.3.4.5"),
            ("1.2.3.4.", "1.2.3.4."),
            (".1.2.3.4", ".1.2.3.4"),
            ("11.2.3.4", "<ip>"),
            ("1111.2.3.4", "1111.2.3.4"),
            ("1.2.3.4444", "1.2.3.4444"),
            ("1..2.3.4", "1..2.3.4"),
            ("1.2.3", "1.2.3"),
            ("é1.2.3.4é", "é<ip>é"),
            ("no address here", "no address here"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_ipv4(input), expected, "{input:?}");
        }
    }

    #[test]
    fn borrows_when_there_is_nothing_to_redact() {
        assert!(matches!(redact_ipv4("port 22 v1.2"), Cow::Borrowed(_)));
    }

    #[test]
    fn redacts_msg_only_and_keeps_key_order() {
        let input = br#"{"ts":"Dec 10 06:55:46","host":"10.0.0.1","proc":"sshd","pid":24200,"msg":"Failed password for root from 1.2.3.4 port 22 ssh2"}"#;
        assert_eq!(
            String::from_utf8(redact(input).unwrap()).unwrap(),
            r#"{"ts":"Dec 10 06:55:46","host":"10.0.0.1","proc":"sshd","pid":24200,"msg":"Failed password for root from <ip> port 22 ssh2"}"#
        );
    }

    #[test]
    fn re_emits_in_canonical_compact_form() {
        let input = br#" { "msg" : "a \"q\" \\ \u0001 1.2.3.4" , "pid" : 7, "proc":"p", "host":"h", "ts":"Dec  1 00:00:01" } "#;
        assert_eq!(
            String::from_utf8(redact(input).unwrap()).unwrap(),
            r#"{"ts":"Dec  1 00:00:01","host":"h","proc":"p","pid":7,"msg":"a \"q\" \\ \u0001 <ip>"}"#
        );
    }

    #[test]
    fn rejects_values_that_are_not_parsed_sshd_objects() {
        let cases: [&[u8]; 6] = [
            b"Dec 10 06:55:46 LabSZ sshd[1]: 1.2.3.4",
            br#"["Dec 10 06:55:46","h","p",1,"m"]"#,
            br#"{"ts":"Dec 10 06:55:46","host":"h","proc":"p","pid":1}"#,
            br#"{"ts":"Dec 10 06:55:46","host":"h","proc":"p","pid":"1","msg":"m"}"#,
            br#"{"ts":"Dec 10 06:55:46","host":"h","proc":"p","pid":1,"msg":"m","x":1}"#,
            br#"{"ts":"Dec 10 06:55:46","host":"h","proc":"p","pid":1,"msg":"m"}{}"#,
        ];
        for value in cases {
            let reason = redact(value).unwrap_err();
            assert!(
                reason.starts_with("value is not a JSON object"),
                "{:?}: {reason}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn the_stage_keeps_metadata() {
        let mut stage = RedactIp::init(&Settings::default()).unwrap();
        let event = Event {
            key: Some(b"k".to_vec()),
            value: br#"{"ts":"t","host":"h","proc":"p","pid":1,"msg":"from 1.2.3.4"}"#.to_vec(),
            headers: vec![("h".to_string(), b"v".to_vec())],
            timestamp: Some(3),
        };
        let expected = Event {
            value: br#"{"ts":"t","host":"h","proc":"p","pid":1,"msg":"from <ip>"}"#.to_vec(),
            ..event.clone()
        };
        assert_eq!(stage.process(event), Ok(vec![expected]));
        assert!(matches!(
            stage.process(Event::new("x")),
            Err(Failure::Reject(_))
        ));
    }
}
