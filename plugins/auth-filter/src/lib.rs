//! `auth-filter`: keeps the parsed sshd events that record an authentication failure.
//!
//! The input value is a JSON object with a string `msg` (what `sshd-parse` emits). The event
//! is kept, unchanged, when `msg` contains one of [`PATTERNS`], and dropped otherwise (an
//! empty outcome, not a failure). A value that is not such an object is rejected.

use std::borrow::Cow;

use serde::Deserialize;
use weir_plugin::{Event, Failure, Outcome, Settings, Stage};

/// Substrings of `msg` that mark an authentication failure; matching is case-sensitive.
pub const PATTERNS: [&str; 4] = [
    "Failed password",
    "Invalid user",
    "authentication failure",
    "POSSIBLE BREAK-IN ATTEMPT",
];

/// The one field the filter reads; other keys are allowed and ignored.
#[derive(Deserialize)]
struct Message<'a> {
    // Borrowed unless the JSON string has escapes, which then need an owned, unescaped copy.
    #[serde(borrow)]
    msg: Cow<'a, str>,
}

/// Whether a message records an authentication failure (contains one of [`PATTERNS`]).
pub fn is_auth_failure(msg: &str) -> bool {
    PATTERNS.iter().any(|pattern| msg.contains(pattern))
}

/// Reads the unescaped `msg` of a JSON object, or says why the value is not such an object.
pub fn message(value: &[u8]) -> Result<Cow<'_, str>, String> {
    // serde would also read a struct from a JSON array; only an object is acceptable here.
    if value.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("value is not a JSON object".to_string());
    }
    serde_json::from_slice::<Message>(value)
        .map(|m| m.msg)
        .map_err(|e| format!("value is not a JSON object with a string `msg`: {e}"))
}

/// Whether to keep an event with this value: `Ok(true)` if its `msg` records an
/// authentication failure, `Ok(false)` to drop it, `Err` with a reason to reject it.
pub fn keep(value: &[u8]) -> Result<bool, String> {
    Ok(is_auth_failure(&message(value)?))
}

/// The stage; it takes no settings and ignores any it is given.
#[derive(Debug, Default)]
pub struct AuthFilter;

impl Stage for AuthFilter {
    fn init(_settings: &Settings) -> Result<Self, String> {
        Ok(AuthFilter)
    }

    fn process(&mut self, event: Event) -> Outcome {
        match keep(&event.value) {
            Ok(true) => Ok(vec![event]),
            Ok(false) => Ok(Vec::new()),
            Err(reason) => Err(Failure::Reject(reason)),
        }
    }
}

weir_plugin::export_stage!(AuthFilter);

#[cfg(test)]
mod tests {
    use super::*;

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
        let outcomes = stage.process_batch(vec![kept.clone(), dropped, rejected]);
        assert_eq!(outcomes.len(), 3);
        assert_eq!(outcomes[0], Ok(vec![kept]));
        assert_eq!(outcomes[1], Ok(Vec::new()));
        assert!(matches!(outcomes[2], Err(Failure::Reject(_))));
    }
}
