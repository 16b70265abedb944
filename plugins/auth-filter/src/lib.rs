//! `auth-filter`: keeps the parsed sshd events that record an authentication failure.
//!
//! The input value is a JSON object with a string `msg` (what `sshd-parse` emits). The event
//! is kept, unchanged, when `msg` contains one of [`PATTERNS`], and dropped otherwise (no
//! output, not a failure). A value that is not such an object is rejected.
//!
//! A value takes one of two paths. The fast one: when it is exactly the compact object
//! `sshd-parse` writes and its strings needed no escape (`plain_msg`, from `sshd-parse`'s
//! `object` module), `msg` is a slice of the value, searched in place with the searchers of
//! the [`PATTERNS`], built once per instance. The general one, for anything else:
//! `serde_json` reads `msg`, unescaped, and rejects what is not a JSON object with a string
//! `msg`. Both give the same answer wherever the fast path answers; a kept event is emitted
//! as it came.

#[path = "../../sshd-parse/src/object.rs"]
mod object;

use std::borrow::Cow;

use memchr::memmem::Finder;
use serde::Deserialize;
use weir_plugin::{Emitter, EventView, Failure, Settings, Transform};

use object::plain_msg;

/// Substrings of `msg` that mark an authentication failure; matching is case-sensitive.
pub const PATTERNS: [&str; 4] = [
    "Failed password",
    "Invalid user",
    "authentication failure",
    "POSSIBLE BREAK-IN ATTEMPT",
];

/// The one field the general path reads; other keys are allowed and ignored.
#[derive(Deserialize)]
struct Message<'a> {
    // Borrowed unless the JSON string has escapes, which then need an owned, unescaped copy.
    #[serde(borrow)]
    msg: Cow<'a, str>,
}

/// Reads the unescaped `msg` of any JSON object, or says why the value is not such an object.
pub fn message(value: &[u8]) -> Result<Cow<'_, str>, String> {
    // serde would also read a struct from a JSON array; only an object is acceptable here.
    if value.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("value is not a JSON object".to_string());
    }
    serde_json::from_slice::<Message>(value)
        .map(|m| m.msg)
        .map_err(|e| format!("value is not a JSON object with a string `msg`: {e}"))
}

/// The filter, and the stage: one substring searcher per pattern, built once.
#[derive(Debug)]
pub struct AuthFilter {
    finders: [Finder<'static>; 4],
}

impl Default for AuthFilter {
    fn default() -> Self {
        AuthFilter::new()
    }
}

impl AuthFilter {
    /// Builds the searchers.
    pub fn new() -> AuthFilter {
        AuthFilter {
            finders: PATTERNS.map(Finder::new),
        }
    }

    /// Whether a message records an authentication failure (contains one of [`PATTERNS`]).
    pub fn is_auth_failure(&self, msg: &[u8]) -> bool {
        self.finders.iter().any(|f| f.find(msg).is_some())
    }

    /// Whether to keep an event with this value: `Ok(true)` if its `msg` records an
    /// authentication failure, `Ok(false)` to drop it, `Err` with a reason to reject it.
    pub fn keep(&self, json: &[u8]) -> Result<bool, String> {
        match plain_msg(json) {
            Some(msg) => Ok(self.is_auth_failure(&json[msg])),
            None => Ok(self.is_auth_failure(message(json)?.as_bytes())),
        }
    }
}

impl Transform for AuthFilter {
    fn init(_settings: &Settings) -> Result<Self, String> {
        Ok(AuthFilter::new())
    }

    fn process(&mut self, event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
        if self.keep(event.value()).map_err(Failure::Reject)? {
            out.pass();
        }
        Ok(())
    }
}

weir_plugin::export_stage!(AuthFilter);

#[cfg(test)]
mod tests {
    use std::io::BufRead;

    use weir_plugin::{Event, native};

    use super::*;

    fn keep(value: &[u8]) -> Result<bool, String> {
        AuthFilter::new().keep(value)
    }

    fn object(msg: &str) -> Vec<u8> {
        format!(r#"{{"ts":"Dec 10 06:55:46","host":"LabSZ","proc":"sshd","pid":1,"msg":{msg}}}"#)
            .into_bytes()
    }

    #[test]
    fn keeps_each_pattern() {
        for pattern in PATTERNS {
            let value = object(&format!("\"x {pattern} y\""));
            assert_eq!(keep(&value), Ok(true), "{pattern}");
        }
    }

    #[test]
    fn drops_other_messages() {
        assert_eq!(keep(&object(r#""Accepted password for root""#)), Ok(false));
        // Matching is case-sensitive, like the specification's substrings.
        assert_eq!(keep(&object(r#""failed password for root""#)), Ok(false));
        assert_eq!(keep(&object(r#""""#)), Ok(false));
    }

    #[test]
    fn matches_the_unescaped_message() {
        // `\u0020` is a space: only the unescaped text contains "Invalid user".
        assert_eq!(keep(&object(r#""Invalid\u0020user admin""#)), Ok(true));
        assert_eq!(keep(br#"{"msg":"Failed password"}"#), Ok(true));
    }

    #[test]
    fn rejects_values_that_are_not_objects_with_a_string_msg() {
        let cases: [&[u8]; 7] = [
            b"",
            b"Dec 10 06:55:46 LabSZ sshd[1]: Invalid user",
            br#"["Invalid user"]"#,
            br#"{"message":"Invalid user"}"#,
            br#"{"msg":42}"#,
            br#"{"msg":"Invalid user"} trailing"#,
            b"{\"msg\":\"Invalid user \xff\"}",
        ];
        for value in cases {
            let reason = keep(value).unwrap_err();
            assert!(
                reason.starts_with("value is not a JSON object"),
                "{:?}: {reason}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn the_stage_keeps_drops_and_rejects() {
        let mut stage = AuthFilter::init(&Settings::default()).unwrap();
        let kept = Event::new(object(r#""Invalid user admin from 1.2.3.4""#));
        let dropped = Event::new(object(r#""Accepted publickey""#));
        let rejected = Event::new("not json");
        let outcomes = native::process_events(&mut stage, &[kept.clone(), dropped, rejected]);
        assert_eq!(outcomes.len(), 3);
        assert_eq!(outcomes[0], Ok(vec![kept]));
        assert_eq!(outcomes[1], Ok(Vec::new()));
        assert!(matches!(outcomes[2], Err(Failure::Reject(_))));
    }

    /// Over every parsed line of the OpenSSH sample, the fast path answers, and answers as the
    /// general path does.
    #[test]
    fn the_fast_path_agrees_with_serde_json_over_the_sample() {
        let sample = std::fs::File::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/auth-log/data/OpenSSH_2k.log"
        ))
        .expect("open the OpenSSH sample");
        let filter = AuthFilter::new();
        let mut kept = 0;
        for line in std::io::BufReader::new(sample).lines() {
            let json = sshd_parse::parse_line(line.unwrap().as_bytes()).unwrap();
            let msg = plain_msg(&json).expect("the sample needs no escapes");
            let general = message(&json).unwrap();
            assert_eq!(&json[msg.clone()], general.as_bytes());
            let fast = filter.is_auth_failure(&json[msg]);
            assert_eq!(fast, PATTERNS.iter().any(|p| general.contains(p)));
            kept += usize::from(fast);
        }
        assert_eq!(kept, 1225);
    }
}
