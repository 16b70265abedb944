//! `sshd-parse`: turns an sshd syslog line into a JSON object.
//!
//! A line has the shape `MON DD HH:MM:SS HOST PROC[PID]: MESSAGE`, where the day may be padded
//! with a space (`Dec  1`). It becomes the compact JSON object
//! `{"ts":"MON DD HH:MM:SS","host":HOST,"proc":PROC,"pid":PID,"msg":MESSAGE}`: keys in that
//! order, `pid` a number, `ts` with the line's own spacing. A line of another shape, or one
//! that is not UTF-8, is rejected with a reason naming the part that did not match.

use serde::Serialize;
use weir_plugin::{Event, Failure, Outcome, Settings, Stage};

/// The fields of one sshd line, borrowed from it.
///
/// Serialising it with `serde_json` gives the stage's output: the field order is the key order,
/// and the compact writer escapes exactly `"`, `\` and control characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SshdLine<'a> {
    /// `MON DD HH:MM:SS`, spacing as in the line.
    pub ts: &'a str,
    /// The host name.
    pub host: &'a str,
    /// The program name before `[PID]`.
    pub proc: &'a str,
    /// The process id.
    pub pid: u64,
    /// Everything after `]: `, possibly empty.
    pub msg: &'a str,
}

const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// The length of `MON DD HH:MM:SS`.
const TS_LEN: usize = 15;

/// Splits a line into its fields, or says which part does not match.
pub fn parse_fields(line: &[u8]) -> Result<SshdLine<'_>, String> {
    let line = std::str::from_utf8(line)
        .map_err(|e| format!("line is not UTF-8 (invalid byte at {})", e.valid_up_to()))?;
    let bytes = line.as_bytes();

    let ts = bytes
        .get(..TS_LEN)
        .ok_or("line is too short for a `MON DD HH:MM:SS` timestamp")?;
    check_timestamp(ts)?;
    // The timestamp is all ASCII, so byte offsets up to TS_LEN + 1 are char boundaries.
    let rest = match bytes.get(TS_LEN) {
        Some(b' ') => &line[TS_LEN + 1..],
        _ => return Err("expected a space after the timestamp".to_string()),
    };

    let (host, rest) = rest
        .split_once(' ')
        .ok_or("expected `HOST PROC[PID]: ` after the timestamp")?;
    if host.is_empty() {
        return Err("HOST is empty".to_string());
    }

    let (tag, msg) = rest
        .split_once(' ')
        .ok_or("expected `PROC[PID]: ` after HOST")?;
    let tag = tag
        .strip_suffix("]:")
        .ok_or("expected `PROC[PID]: ` after HOST (no `]:` followed by a space)")?;
    let (proc, pid) = tag
        .split_once('[')
        .ok_or("expected `PROC[PID]: ` after HOST (no `[`)")?;
    if proc.is_empty() {
        return Err("PROC is empty".to_string());
    }
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("PID {pid:?} is not a number"));
    }
    let pid = pid
        .parse()
        .map_err(|_| format!("PID {pid:?} is out of range"))?;

    Ok(SshdLine {
        ts: &line[..TS_LEN],
        host,
        proc,
        pid,
        msg,
    })
}

/// Checks `MON DD HH:MM:SS` (day `DD` or ` D`). Digits are not range-checked: the stage
/// recognises the shape of a line and leaves calendar checks to whoever reads `ts`.
fn check_timestamp(ts: &[u8]) -> Result<(), String> {
    if !MONTHS.contains(&&ts[..3]) {
        return Err("timestamp: MON is not a month abbreviation (`Jan`..`Dec`)".to_string());
    }
    let day_ok = ts[3] == b' '
        && (ts[4] == b' ' || ts[4].is_ascii_digit())
        && ts[5].is_ascii_digit()
        && ts[6] == b' ';
    if !day_ok {
        return Err("timestamp: expected a day `DD` or ` D` after the month".to_string());
    }
    let time = &ts[7..];
    let time_ok = time.iter().enumerate().all(|(i, b)| match i {
        2 | 5 => *b == b':',
        _ => b.is_ascii_digit(),
    });
    if !time_ok {
        return Err("timestamp: expected `HH:MM:SS` after the day".to_string());
    }
    Ok(())
}

/// Parses a line and writes the stage's JSON object, or says which part does not match.
pub fn parse_line(line: &[u8]) -> Result<Vec<u8>, String> {
    let fields = parse_fields(line)?;
    // Room for the keys and punctuation, so that most lines need a single allocation.
    let mut json = Vec::with_capacity(line.len() + 48);
    serde_json::to_writer(&mut json, &fields).map_err(|e| e.to_string())?;
    Ok(json)
}

/// The stage; it takes no settings and ignores any it is given.
#[derive(Debug, Default)]
pub struct SshdParse;

impl Stage for SshdParse {
    fn init(_settings: &Settings) -> Result<Self, String> {
        Ok(SshdParse)
    }

    /// Replaces the value with its JSON object; key, headers and timestamp are kept.
    fn process(&mut self, mut event: Event) -> Outcome {
        match parse_line(&event.value) {
            Ok(json) => {
                event.value = json;
                Ok(vec![event])
            }
            Err(reason) => Err(Failure::Reject(reason)),
        }
    }
}

weir_plugin::export_stage!(SshdParse);

#[cfg(test)]
mod tests {
    use super::*;

    fn json(line: &str) -> String {
        String::from_utf8(parse_line(line.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn parses_a_real_line() {
        assert_eq!(
            json(
                "Dec 10 06:55:46 LabSZ sshd[24200]: reverse mapping checking getaddrinfo for \
                 ns.marryaldkfaczcz.com [173.234.31.186] failed - POSSIBLE BREAK-IN ATTEMPT!"
            ),
            r#"{"ts":"Dec 10 06:55:46","host":"LabSZ","proc":"sshd","pid":24200,"msg":"reverse mapping checking getaddrinfo for ns.marryaldkfaczcz.com [173.234.31.186] failed - POSSIBLE BREAK-IN ATTEMPT!"}"#
        );
    }

    #[test]
    fn keeps_the_padded_day() {
        assert_eq!(
            json("Dec  1 00:00:01 h sshd[1]: x"),
            r#"{"ts":"Dec  1 00:00:01","host":"h","proc":"sshd","pid":1,"msg":"x"}"#
        );
    }

    #[test]
    fn escapes_quotes_backslashes_and_control_characters() {
        assert_eq!(
            json("Jan 02 03:04:05 h sshd[7]: a \"b\" c\\d\te\u{1}f\r é"),
            r#"{"ts":"Jan 02 03:04:05","host":"h","proc":"sshd","pid":7,"msg":"a \"b\" c\\d\te\u0001f\r é"}"#
        );
    }

    #[test]
    fn keeps_message_spacing_and_accepts_an_empty_message() {
        assert_eq!(
            parse_fields(b"Jan 02 03:04:05 h p[7]:  two").unwrap().msg,
            " two"
        );
        assert_eq!(parse_fields(b"Jan 02 03:04:05 h p[7]: ").unwrap().msg, "");
    }

    #[test]
    fn rejects_lines_that_do_not_match() {
        let cases: [(&[u8], &str); 11] = [
            (b"", "too short"),
            (b"hello world, this is not syslog", "month"),
            (b"Dec 1 06:55:46 LabSZ sshd[1]: x", "day"),
            (b"Dec 10 06:55-46 LabSZ sshd[1]: x", "HH:MM:SS"),
            (
                b"Dec 10 06:55:46LabSZ sshd[1]: x",
                "space after the timestamp",
            ),
            (b"Dec 10 06:55:46  sshd[1]: x", "HOST is empty"),
            (b"Dec 10 06:55:46 LabSZ sshd: x", "PROC[PID]"),
            (b"Dec 10 06:55:46 LabSZ sshd[1]:", "PROC[PID]"),
            (b"Dec 10 06:55:46 LabSZ [1]: x", "PROC is empty"),
            (b"Dec 10 06:55:46 LabSZ sshd[1a]: x", "PID"),
            (b"Dec 10 06:55:46 LabSZ sshd[1]: \xff", "UTF-8"),
        ];
        for (line, expected) in cases {
            let reason = parse_line(line).unwrap_err();
            assert!(
                reason.contains(expected),
                "{:?}: {reason:?} should mention {expected:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn rejects_through_the_stage_and_keeps_metadata_on_success() {
        let mut stage = SshdParse::init(&Settings::default()).unwrap();
        assert!(matches!(
            stage.process(Event::new("nope")),
            Err(Failure::Reject(_))
        ));

        let event = Event {
            key: Some(b"k".to_vec()),
            value: b"Dec 10 06:55:46 LabSZ sshd[24200]: hi".to_vec(),
            headers: vec![("h".to_string(), b"v".to_vec())],
            timestamp: Some(9),
        };
        let out = stage.process(event.clone()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, event.key);
        assert_eq!(out[0].headers, event.headers);
        assert_eq!(out[0].timestamp, event.timestamp);
        assert_eq!(
            out[0].value,
            br#"{"ts":"Dec 10 06:55:46","host":"LabSZ","proc":"sshd","pid":24200,"msg":"hi"}"#
        );
    }
}
