//! A request body split into batches of line events: one event per line (`\n` or `\r\n`),
//! empty lines skipped, the last line counted without a line ending. Every event of a request
//! carries the same key and headers (copied from the request), and the time it arrived.
//!
//! A line over the source's `max_line` refuses the whole request, before any of it is taken:
//! the client learns at once which line is too long, and a request is taken whole or not at
//! all, so a client that sends it again cannot duplicate part of it.

use weir_sandbox::Events;

/// What every event of one request carries beside its value.
#[derive(Default)]
pub(super) struct Fields<'a> {
    pub key: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    /// Milliseconds since the Unix epoch when the request arrived.
    pub timestamp: Option<u64>,
}

/// A line over the cap: its number (from 1, counting empty lines) and its length.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TooLong {
    pub line: u64,
    pub len: usize,
}

/// The events of `body`, in batches of at most `batch_size`.
pub(super) fn split(
    body: &[u8],
    batch_size: usize,
    max_line: usize,
    fields: &Fields,
) -> Result<Vec<Events>, TooLong> {
    let mut batches = Vec::new();
    let mut events = Events::new();
    let plain = fields.key.is_none() && fields.headers.is_empty() && fields.timestamp.is_none();
    for (i, line) in lines(body).enumerate() {
        if line.len() > max_line {
            return Err(TooLong {
                line: i as u64 + 1,
                len: line.len(),
            });
        }
        if line.is_empty() {
            continue;
        }
        if plain {
            events.push_value(line);
        } else {
            let headers = fields.headers.iter().copied();
            events.push_parts(fields.key, line, headers, fields.timestamp);
        }
        if events.len() >= batch_size {
            batches.push(std::mem::take(&mut events));
        }
    }
    if !events.is_empty() {
        batches.push(events);
    }
    Ok(batches)
}

/// The lines of `body` without their line endings; a body ending with `\n` has no empty line
/// after it.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    body.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(move |_| !body.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(batches: &[Events]) -> Vec<Vec<String>> {
        batches
            .iter()
            .map(|b| {
                b.iter()
                    .map(|e| String::from_utf8_lossy(e.value()).into_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn lines_become_batches_without_empty_lines_and_with_a_last_line_unended() {
        let body = b"a\r\nb\n\n\r\nc\nd";
        let batches = split(body, 2, 10, &Fields::default()).unwrap();
        assert_eq!(values(&batches), [vec!["a", "b"], vec!["c", "d"]]);
        assert!(split(b"", 2, 10, &Fields::default()).unwrap().is_empty());
        assert!(
            split(b"\n\n", 2, 10, &Fields::default())
                .unwrap()
                .is_empty()
        );
        let one = split(b"x\n", 2, 10, &Fields::default()).unwrap();
        assert_eq!(values(&one), [vec!["x"]]);
    }

    #[test]
    fn a_line_over_the_cap_refuses_the_request_naming_it() {
        let body = b"ok\n\n0123456789a\nok";
        let err = split(body, 2, 10, &Fields::default()).unwrap_err();
        assert_eq!(err, TooLong { line: 3, len: 11 });
        assert!(split(b"0123456789\r\n", 2, 10, &Fields::default()).is_ok());
    }

    #[test]
    fn every_event_carries_the_key_headers_and_time() {
        let fields = Fields {
            key: Some(b"k"),
            headers: vec![(b"X-Id", b"7")],
            timestamp: Some(42),
        };
        let batches = split(b"a\nb", 8, 10, &fields).unwrap();
        for event in batches[0].iter() {
            assert_eq!(event.key(), Some(&b"k"[..]));
            assert_eq!(event.timestamp(), Some(42));
            let headers: Vec<_> = event.headers().collect();
            assert_eq!(headers, [(&b"X-Id"[..], &b"7"[..])]);
        }
    }
}
