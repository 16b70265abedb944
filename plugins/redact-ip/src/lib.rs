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
//!
//! [`redact_into`] writes the output straight into a buffer (the call's output buffer, in the
//! stage), by one of two paths. The fast one: when the value is exactly the compact object
//! `sshd-parse` writes and its strings needed no escape (`plain_msg`, from `sshd-parse`'s
//! `object` module), re-emitting it would give the same bytes, so everything but `msg` is
//! copied as it is and `msg` is redacted on the way ([`redact_ipv4_into`]). The general one,
//! for anything else: `serde_json` reads the object, rejecting what does not fit, and writes
//! it back compactly with `msg` redacted. Both write the same bytes wherever the fast path
//! answers.

#[path = "../../sshd-parse/src/object.rs"]
mod object;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use weir_plugin::{Emitter, EventView, Failure, Settings, Transform};

/// What an IPv4 address is replaced with.
pub const PLACEHOLDER: &str = "<ip>";

/// A parsed sshd event, for the general path. Field order is the output's key order; the
/// strings stay borrowed from the input unless they contain escapes.
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

/// Appends `text` to `out` with every IPv4 address replaced by [`PLACEHOLDER`]; returns how
/// many were replaced.
///
/// "Not preceded or followed by a digit or a dot" means an address is a whole maximal run of
/// digits and dots, and a run with no dot cannot be one: so the search jumps from dot to dot,
/// and each run around a dot is either replaced entirely or kept.
pub fn redact_ipv4_into(text: &[u8], out: &mut Vec<u8>) -> usize {
    let mut copied = 0;
    let mut search = 0;
    let mut replaced = 0;
    while let Some(found) = memchr::memchr(b'.', &text[search..]) {
        let dot = search + found;
        // The previous run ended before a byte that is neither digit nor dot, so walking back
        // never reaches it.
        let mut start = dot;
        while start > 0 && is_digit_or_dot(text[start - 1]) {
            start -= 1;
        }
        let mut end = dot + 1;
        while end < text.len() && is_digit_or_dot(text[end]) {
            end += 1;
        }
        if is_ipv4(&text[start..end]) {
            out.extend_from_slice(&text[copied..start]);
            out.extend_from_slice(PLACEHOLDER.as_bytes());
            copied = end;
            replaced += 1;
        }
        search = end;
    }
    out.extend_from_slice(&text[copied..]);
    replaced
}

/// Replaces every IPv4 address in `text` with [`PLACEHOLDER`]; borrows `text` when there is
/// none.
pub fn redact_ipv4(text: &str) -> Cow<'_, str> {
    let mut out = Vec::new();
    if redact_ipv4_into(text.as_bytes(), &mut out) == 0 {
        return Cow::Borrowed(text);
    }
    // Only runs of ASCII digits and dots were replaced, so the text is still UTF-8.
    Cow::Owned(String::from_utf8(out).expect("redaction keeps UTF-8"))
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

/// Appends the redacted object to `out`, or says why the value is not a parsed sshd event;
/// on error `out` is left as it was.
pub fn redact_into(json: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    match object::plain_msg(json) {
        Some(msg) => {
            // An address (7 bytes or more) becomes 4: the output is never longer.
            out.reserve(json.len());
            out.extend_from_slice(&json[..msg.start]);
            redact_ipv4_into(&json[msg.clone()], out);
            out.extend_from_slice(&json[msg.end..]);
            Ok(())
        }
        None => redact_parsed(json, out),
    }
}

/// The general path: reads the object with `serde_json` and writes it back, redacted.
fn redact_parsed(json: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    // serde would also read a struct from a JSON array; only an object is acceptable here.
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("value is not a JSON object".to_string());
    }
    let mut record: Record = serde_json::from_slice(json).map_err(|e| {
        format!("value is not a JSON object with keys ts, host, proc, pid, msg: {e}")
    })?;
    if let Cow::Owned(msg) = redact_ipv4(&record.msg) {
        record.msg = Cow::Owned(msg);
    }
    let start = out.len();
    serde_json::to_writer(&mut *out, &record).map_err(|e| {
        out.truncate(start);
        e.to_string()
    })
}

/// Redacts a value into a new buffer: [`redact_into`] with a buffer of its own.
pub fn redact(value: &[u8]) -> Result<Vec<u8>, String> {
    let mut json = Vec::with_capacity(value.len());
    redact_into(value, &mut json)?;
    Ok(json)
}

/// The stage; it takes no settings.
#[derive(Debug, Default)]
pub struct RedactIp;

impl Transform for RedactIp {
    fn init(_settings: &Settings) -> Result<Self, String> {
        Ok(RedactIp)
    }

    /// Replaces the value with its redacted form; key, headers and timestamp are kept.
    fn process(&mut self, event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
        out.try_emit_with(|buf| redact_into(event.value(), buf))
            .map_err(Failure::Reject)
    }
}

weir_plugin::export_stage!(RedactIp);

#[cfg(test)]
mod tests {
    use std::io::BufRead;

    use weir_plugin::{Event, native};

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
        assert_eq!(
            native::process_event(&mut stage, &event),
            Ok(vec![expected])
        );
        assert!(matches!(
            native::process_event(&mut stage, &Event::new("x")),
            Err(Failure::Reject(_))
        ));
    }

    /// Over every parsed line of the OpenSSH sample, the fast path answers, and writes what
    /// the general path writes.
    #[test]
    fn the_fast_path_writes_what_serde_json_wrote_over_the_sample() {
        let sample = std::fs::File::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/auth-log/data/OpenSSH_2k.log"
        ))
        .expect("open the OpenSSH sample");
        for line in std::io::BufReader::new(sample).lines() {
            let json = sshd_parse::parse_line(line.unwrap().as_bytes()).unwrap();
            assert!(
                object::plain_msg(&json).is_some(),
                "the sample needs no escapes"
            );
            let mut fast = Vec::new();
            redact_into(&json, &mut fast).unwrap();
            let mut general = Vec::new();
            redact_parsed(&json, &mut general).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&general)
            );
        }
    }

    #[test]
    fn a_rejected_value_leaves_the_buffer_as_it_was() {
        let mut out = b"before".to_vec();
        assert!(redact_into(br#"{"msg":"1.2.3.4"}"#, &mut out).is_err());
        assert_eq!(out, b"before");
    }
}
