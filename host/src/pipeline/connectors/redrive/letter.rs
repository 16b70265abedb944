//! One dead letter read back: a line of a dead-letter file parsed into the event it holds and
//! what a redrive selects it by (the node, the kind, the time it was written).
//!
//! A letter is read as `encode::dead_letter` writes it; fields it does not know are ignored,
//! so older and newer letter files read alike. The event's version headers
//! (`weir.version.…`) are the host's record of the path the event took; they are dropped, as
//! the stages it goes through again stamp their own.

use base64::Engine as _;
use serde::Deserialize;
use weir_sandbox::Events;

use crate::config::{Selection, plain};
use crate::pipeline::provenance::VERSION_HEADER;

/// Bytes of one letter line at most: a value of the largest size a stage may output
/// (`max_value_size` up to 1 GiB) would not fit, but a letter that large would pin that much
/// memory per line read; 64 MiB holds a 16 MiB value in base64 with room for its headers.
pub const MAX_LETTER_LINE: u64 = 64 << 20;

/// Why a letter line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LetterError {
    #[error("not a dead letter: {0}")]
    Json(#[from] serde_json::Error),
    #[error("`{field}` is not valid base64: {cause}")]
    Base64 {
        field: &'static str,
        cause: base64::DecodeError,
    },
    #[error("the letter's event has no `value` (nor `value_base64`)")]
    NoValue,
}

/// A letter line as written.
#[derive(Debug, Deserialize)]
struct Line {
    stage: String,
    kind: String,
    #[serde(default)]
    at: Option<u64>,
    event: EventLine,
}

#[derive(Debug, Deserialize)]
struct EventLine {
    key: Option<String>,
    key_base64: Option<String>,
    value: Option<String>,
    value_base64: Option<String>,
    #[serde(default)]
    headers: Vec<(String, HeaderValue)>,
    timestamp: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HeaderValue {
    Text(String),
    Bytes { base64: String },
}

/// One letter, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    /// The node that failed it.
    pub stage: String,
    pub kind: String,
    /// When it was written (ms since the Unix epoch), if the letter says.
    pub at: Option<u64>,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// Its own headers, the version headers left out.
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: Option<u64>,
}

fn decode(field: &'static str, text: &str) -> Result<Vec<u8>, LetterError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|cause| LetterError::Base64 { field, cause })
}

impl Letter {
    /// Parses one line (without its line ending).
    pub fn parse(line: &[u8]) -> Result<Letter, LetterError> {
        let line: Line = serde_json::from_slice(line)?;
        let e = line.event;
        let key = match (e.key, e.key_base64) {
            (Some(k), _) => Some(k.into_bytes()),
            (None, Some(b)) => Some(decode("event.key_base64", &b)?),
            (None, None) => None,
        };
        let value = match (e.value, e.value_base64) {
            (Some(v), _) => v.into_bytes(),
            (None, Some(b)) => decode("event.value_base64", &b)?,
            (None, None) => return Err(LetterError::NoValue),
        };
        let mut headers = Vec::with_capacity(e.headers.len());
        for (name, value) in e.headers {
            if name.starts_with(VERSION_HEADER) {
                continue;
            }
            let value = match value {
                HeaderValue::Text(t) => t.into_bytes(),
                HeaderValue::Bytes { base64 } => decode("event.headers", &base64)?,
            };
            headers.push((name, value));
        }
        Ok(Letter {
            stage: line.stage,
            kind: line.kind,
            at: line.at,
            key,
            value,
            headers,
            timestamp: e.timestamp,
        })
    }

    /// Whether the selection takes it (its `limit` aside, which counts letters taken).
    pub fn selected(&self, select: &Selection) -> bool {
        (select.kinds.is_empty() || select.kinds.contains(&self.kind))
            && (select.nodes.is_empty() || select.nodes.contains(&self.stage))
            && select
                .since
                .is_none_or(|since| self.at.is_some_and(|at| at >= since))
    }

    /// Appends its event to a batch.
    pub fn push_to(&self, events: &mut Events) {
        events.push_parts(
            self.key.as_deref(),
            &self.value,
            self.headers
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_slice())),
            self.timestamp,
        );
    }

    /// One line for `--dry-run`: where it goes and what it holds, guest text escaped (no
    /// control or invisible character reaches the terminal as it is).
    pub fn describe(&self, line: u64, into: &str) -> String {
        let text = |b: &[u8]| match std::str::from_utf8(b) {
            Ok(t) => format!("{t:?}"),
            Err(_) => format!(
                "base64:{}",
                base64::engine::general_purpose::STANDARD.encode(b)
            ),
        };
        // The node and kind come from the file too: a hand-edited one may hold anything.
        let (kind, stage) = (plain(&self.kind), plain(&self.stage));
        let mut out = format!("line {line}: into `{into}` ({kind} at `{stage}`)");
        if let Some(key) = &self.key {
            out.push_str(&format!(" key {}", text(key)));
        }
        out.push_str(&format!(" value {}", text(&self.value)));
        for (name, value) in &self.headers {
            out.push_str(&format!(" header {:?}={}", name, text(value)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_reads_back_its_event_without_the_version_headers() {
        let line = br#"{"stage":"parse","plugin_digest":"ab","kind":"reject","message":"m","attempts":1,"at":5,"event":{"key_base64":"/w==","value":"v\n","headers":[["trace",{"base64":"AA=="}],["weir.version.parse","abc"]],"timestamp":7}}"#;
        let l = Letter::parse(line).unwrap();
        assert_eq!(l.key.as_deref(), Some(&[0xff][..]));
        assert_eq!(l.value, b"v\n");
        assert_eq!(l.headers, vec![("trace".to_string(), vec![0])]);
        assert_eq!((l.at, l.timestamp), (Some(5), Some(7)));
        let old = br#"{"stage":"s","plugin_digest":"","kind":"panic","message":"m","attempts":1,"event":{"value":"x"}}"#;
        let l = Letter::parse(old).unwrap();
        assert!(l.selected(&Selection::default()));
        let since = Selection {
            since: Some(1),
            ..Selection::default()
        };
        assert!(
            !l.selected(&since),
            "a letter without its time is not selected by since"
        );
        assert!(Letter::parse(b"{\"stage\":1}").is_err());
    }

    #[test]
    fn a_dry_run_line_escapes_guest_text() {
        let line = br#"{"stage":"s","kind":"reject","event":{"value":"\u001b[31mred\u202e"}}"#;
        let shown = Letter::parse(line).unwrap().describe(3, "s");
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{202e}'),
            "{shown}"
        );
    }
}
