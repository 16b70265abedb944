//! Events and dead letters as JSON lines.
//!
//! An event is `{"key": …, "value": …, "headers": [[name, value], …], "timestamp": …}`:
//! `key`, `headers` and `timestamp` only when present, the batch's version headers after the
//! event's own. Bytes that are not UTF-8 appear base64-encoded under `key_base64` and
//! `value_base64`, or as `{"base64": …}` for a header value. A dead letter is
//! `{"stage", "plugin_digest", "kind", "message", "attempts", "at", "source", "position",
//! "event"}`: `source` and `position` where its source event's position is tracked (a NATS
//! source or sink in the pipeline); else, for a file source, `source` and `batch_position`,
//! the position past the last line of the batch the event came in. The writer streams
//! into the sink's buffer: no intermediate JSON tree per event.

use std::io::{self, Write};

use base64::Engine as _;
use weir_sandbox::EventRef;

use crate::pipeline::dead_letter::DeadLetters;
use crate::pipeline::origin::TIMER;
use crate::pipeline::provenance::Provenance;

/// Writes a JSON string.
fn string(w: &mut dyn Write, text: &str) -> io::Result<()> {
    serde_json::to_writer(w, text).map_err(io::Error::from)
}

/// Writes `"name":"text"` or `"name_base64":"…"` for bytes that are not UTF-8.
fn bytes_field(w: &mut dyn Write, name: &str, bytes: &[u8]) -> io::Result<()> {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            string(w, name)?;
            w.write_all(b":")?;
            string(w, text)
        }
        Err(_) => {
            string(w, &format!("{name}_base64"))?;
            w.write_all(b":")?;
            string(w, &base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

fn header_value(w: &mut dyn Write, value: &[u8]) -> io::Result<()> {
    match std::str::from_utf8(value) {
        Ok(text) => string(w, text),
        Err(_) => {
            w.write_all(b"{\"base64\":")?;
            string(w, &base64::engine::general_purpose::STANDARD.encode(value))?;
            w.write_all(b"}")
        }
    }
}

/// Writes one event as a JSON object (no newline).
pub fn event(w: &mut dyn Write, event: EventRef<'_>, provenance: &Provenance) -> io::Result<()> {
    w.write_all(b"{")?;
    if let Some(key) = event.key() {
        bytes_field(w, "key", key)?;
        w.write_all(b",")?;
    }
    bytes_field(w, "value", event.value())?;
    let versions = provenance.headers();
    if event.header_count() > 0 || !versions.is_empty() {
        w.write_all(b",\"headers\":[")?;
        let mut first = true;
        let own = event.headers();
        let host = versions
            .iter()
            .map(|h| (h.name.as_bytes(), h.value.as_bytes()));
        for (name, value) in own.chain(host) {
            if !first {
                w.write_all(b",")?;
            }
            first = false;
            w.write_all(b"[")?;
            string(w, &String::from_utf8_lossy(name))?;
            w.write_all(b",")?;
            header_value(w, value)?;
            w.write_all(b"]")?;
        }
        w.write_all(b"]")?;
    }
    if let Some(ts) = event.timestamp() {
        write!(w, ",\"timestamp\":{ts}")?;
    }
    w.write_all(b"}")
}

/// Writes letter `i` of `letters` as a JSON object (no newline), written at `at` (ms since
/// the Unix epoch). Where the letter's batch is tracked, it also says which source event it
/// came from (`source`, `position`), so that it can be found again in its input.
pub fn dead_letter(w: &mut dyn Write, letters: &DeadLetters, i: usize, at: u64) -> io::Result<()> {
    let reason = &letters.reasons[i];
    w.write_all(b"{\"stage\":")?;
    string(w, &letters.stage)?;
    w.write_all(b",\"plugin_digest\":")?;
    string(w, &letters.digest)?;
    w.write_all(b",\"kind\":")?;
    string(w, reason.kind.as_str())?;
    w.write_all(b",\"message\":")?;
    string(w, &reason.message)?;
    write!(w, ",\"attempts\":{},\"at\":{at}", reason.attempts)?;
    if let Some(source) = &letters.source
        && let Some(&index) = letters.origins.get(i)
        && index != TIMER
    {
        w.write_all(b",\"source\":")?;
        string(w, &source.source)?;
        w.write_all(b",\"position\":")?;
        string(w, &source.position(index).to_string())?;
    } else if let Some(place) = letters.ack.place() {
        // Untracked: where its source batch ends, not the event itself.
        w.write_all(b",\"source\":")?;
        string(w, &place.source)?;
        w.write_all(b",\"batch_position\":")?;
        string(w, &place.to_string())?;
    }
    w.write_all(b",\"event\":")?;
    event(w, letters.events.get(i), &letters.provenance)?;
    w.write_all(b"}")
}

/// Now, in milliseconds since the Unix epoch: a letter's `at`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::provenance::{Stamp, VersionHeader};
    use weir_sandbox::Events;

    fn json(batch: &Events, provenance: &Provenance) -> serde_json::Value {
        let mut out = Vec::new();
        event(&mut out, batch.get(0), provenance).unwrap();
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn a_letter_names_its_source_event_where_it_is_tracked() {
        use crate::pipeline::ack::{BatchPlace, Tracker};
        use crate::pipeline::dead_letter::Reason;
        use crate::pipeline::failure::FailureKind;
        use crate::pipeline::origin::{Place, SourceBatch};
        use std::sync::Arc;
        let mut batch = Events::new();
        batch.push_value(b"v");
        let tracker = Arc::new(Tracker::default());
        let place = BatchPlace {
            source: Arc::from("in"),
            file: Arc::from("1-2-ab"),
            round: 0,
            end: 40,
        };
        let letter = |source: Option<SourceBatch>, origin: Option<u32>| {
            let ack = tracker.emit_placed(1, None, Some(place.clone()));
            let mut letters = DeadLetters::new(
                Arc::from("parse"),
                Arc::from("digest"),
                Provenance::default(),
                ack,
            )
            .from_source(source.map(Arc::new));
            let reason = Reason {
                kind: FailureKind::Reject,
                message: Arc::from("no"),
                attempts: 1,
            };
            letters.push(batch.get(0), reason, origin);
            let mut out = Vec::new();
            dead_letter(&mut out, &letters, 0, 5).unwrap();
            serde_json::from_slice::<serde_json::Value>(&out).unwrap()
        };
        let tracked = letter(
            Some(SourceBatch {
                source: Arc::from("in"),
                place: Place::Stream {
                    stream: Arc::from("IN"),
                    sequences: vec![12],
                },
            }),
            Some(0),
        );
        assert_eq!(tracked["source"], "in");
        assert_eq!(tracked["position"], "IN:12");
        assert_eq!(tracked["at"], 5);
        let untracked = letter(None, None);
        assert_eq!(untracked["batch_position"], "1-2-ab:0:40");
        assert!(untracked.get("position").is_none());
    }

    #[test]
    fn bytes_that_are_not_utf8_are_base64_in_json() {
        let mut batch = Events::new();
        batch.push_parts(None, &[0xff, 0x00], [], Some(7));
        let v = json(&batch, &Provenance::default());
        assert_eq!(v["value_base64"], "/wA=");
        assert_eq!(v["timestamp"], 7);
        assert!(v.get("headers").is_none());
    }

    #[test]
    fn version_headers_follow_the_event_headers() {
        let mut batch = Events::new();
        batch.push_parts(
            Some(b"k"),
            b"v\n\"x\"",
            [(b"trace".as_slice(), b"1".as_slice())],
            None,
        );
        let provenance = Stamp::default().stamp(
            &Provenance::default(),
            &VersionHeader::new("parse", "abcdef0123456789"),
        );
        let v = json(&batch, &provenance);
        assert_eq!(v["key"], "k");
        assert_eq!(v["value"], "v\n\"x\"");
        assert_eq!(
            v["headers"],
            serde_json::json!([["trace", "1"], ["weir.version.parse", "abcdef012345"]])
        );
    }
}
