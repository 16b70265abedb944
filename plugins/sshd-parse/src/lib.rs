//! `sshd-parse`: turns an sshd syslog line into a JSON object.
//!
//! A line has the shape `MON DD HH:MM:SS HOST PROC[PID]: MESSAGE`, where the day may be padded
//! with a space (`Dec  1`). It becomes the compact JSON object
//! `{"ts":"MON DD HH:MM:SS","host":HOST,"proc":PROC,"pid":PID,"msg":MESSAGE}`: keys in that
//! order, `pid` a number, `ts` with the line's own spacing. A line of another shape, or one
//! that is not UTF-8, is rejected with a reason naming the part that did not match.
//!
//! A line goes through two steps: [`parse_fields`] finds the fields as slices of the line
//! (nothing is copied), then [`SshdLine::write_json`] appends the object to a buffer, each
//! byte once. [`parse_into`] does both; the stage hands it the call's output buffer, so the
//! JSON is written where the host will read it. [`object::plain_msg`] reads such an object
//! back, for the stages that come after this one.

mod json;
pub mod object;
mod text;

use weir_plugin::{Emitter, EventView, Failure, Settings, Transform};

/// The fields of one sshd line, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// Splits `text` at the first space.
fn split_at_space(text: &str) -> Option<(&str, &str)> {
    // A space is ASCII, so both sides of it are char boundaries.
    memchr::memchr(b' ', text.as_bytes()).map(|i| (&text[..i], &text[i + 1..]))
}

/// Splits a line into its fields, or says which part does not match.
pub fn parse_fields(line: &[u8]) -> Result<SshdLine<'_>, &'static str> {
    let line = text::text(line).ok_or("line is not UTF-8")?;
    let bytes = line.as_bytes();

    let ts = bytes
        .get(..TS_LEN)
        .ok_or("line is too short for a `MON DD HH:MM:SS` timestamp")?;
    check_timestamp(ts)?;
    // The timestamp is all ASCII, so byte offsets up to TS_LEN + 1 are char boundaries.
    let rest = match bytes.get(TS_LEN) {
        Some(b' ') => &line[TS_LEN + 1..],
        _ => return Err("expected a space after the timestamp"),
    };

    let (host, rest) =
        split_at_space(rest).ok_or("expected `HOST PROC[PID]: ` after the timestamp")?;
    if host.is_empty() {
        return Err("HOST is empty");
    }

    let (tag, msg) = split_at_space(rest).ok_or("expected `PROC[PID]: ` after HOST")?;
    let tag = tag
        .strip_suffix("]:")
        .ok_or("expected `PROC[PID]: ` after HOST (no `]:` followed by a space)")?;
    let (proc, pid) = tag
        .split_once('[')
        .ok_or("expected `PROC[PID]: ` after HOST (no `[`)")?;
    if proc.is_empty() {
        return Err("PROC is empty");
    }
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return Err("PID is not a number");
    }
    let pid = pid.parse().map_err(|_| "PID is out of range")?;

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
fn check_timestamp(ts: &[u8]) -> Result<(), &'static str> {
    if !MONTHS.contains(&&ts[..3]) {
        return Err("timestamp: MON is not a month abbreviation (`Jan`..`Dec`)");
    }
    let day_ok = ts[3] == b' '
        && (ts[4] == b' ' || ts[4].is_ascii_digit())
        && ts[5].is_ascii_digit()
        && ts[6] == b' ';
    if !day_ok {
        return Err("timestamp: expected a day `DD` or ` D` after the month");
    }
    let time = &ts[7..];
    let time_ok = time.iter().enumerate().all(|(i, b)| match i {
        2 | 5 => *b == b':',
        _ => b.is_ascii_digit(),
    });
    if !time_ok {
        return Err("timestamp: expected `HH:MM:SS` after the day");
    }
    Ok(())
}

impl SshdLine<'_> {
    /// Appends the stage's JSON object for these fields to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Room for the keys and punctuation: one reservation for the whole object.
        out.reserve(self.ts.len() + self.host.len() + self.proc.len() + self.msg.len() + 64);
        out.extend_from_slice(b"{\"ts\":\"");
        // The timestamp was checked to hold only letters, digits, spaces and colons.
        out.extend_from_slice(self.ts.as_bytes());
        out.extend_from_slice(b"\",\"host\":\"");
        json::write_escaped(out, self.host.as_bytes());
        out.extend_from_slice(b"\",\"proc\":\"");
        json::write_escaped(out, self.proc.as_bytes());
        out.extend_from_slice(b"\",\"pid\":");
        json::write_u64(out, self.pid);
        out.extend_from_slice(b",\"msg\":\"");
        json::write_escaped(out, self.msg.as_bytes());
        out.extend_from_slice(b"\"}");
    }
}

/// Parses a line and appends its JSON object to `out`, or says which part does not match;
/// on error `out` is left as it was.
pub fn parse_into(line: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    parse_fields(line)?.write_json(out);
    Ok(())
}

/// Parses a line into a new JSON object: [`parse_into`] with a buffer of its own.
pub fn parse_line(line: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut json = Vec::new();
    parse_into(line, &mut json)?;
    Ok(json)
}

/// The stage; it takes no settings.
#[derive(Debug, Default)]
pub struct SshdParse;

impl Transform for SshdParse {
    fn init(_settings: &Settings) -> Result<Self, String> {
        Ok(SshdParse)
    }

    /// Replaces the value with its JSON object; key, headers and timestamp are kept.
    fn process(&mut self, event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
        out.try_emit_with(|buf| parse_into(event.value(), buf))
            .map_err(Failure::reject)
    }
}

weir_plugin::export_stage!(SshdParse);

#[cfg(test)]
mod tests {
    use std::io::BufRead;

    use weir_plugin::{Event, native};

    use super::*;

    /// The object as `serde_json` wrote it before this writer replaced it.
    fn serde_json_object(line: &SshdLine<'_>) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Fields<'a> {
            ts: &'a str,
            host: &'a str,
            proc: &'a str,
            pid: u64,
            msg: &'a str,
        }
        serde_json::to_vec(&Fields {
            ts: line.ts,
            host: line.host,
            proc: line.proc,
            pid: line.pid,
            msg: line.msg,
        })
        .unwrap()
    }

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
            native::process_event(&mut stage, &Event::new("nope")),
            Err(Failure::Reject(_))
        ));

        let event = Event {
            key: Some(b"k".to_vec()),
            value: b"Dec 10 06:55:46 LabSZ sshd[24200]: hi".to_vec(),
            headers: vec![("h".to_string(), b"v".to_vec())],
            timestamp: Some(9),
        };
        let out = native::process_event(&mut stage, &event).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, event.key);
        assert_eq!(out[0].headers, event.headers);
        assert_eq!(out[0].timestamp, event.timestamp);
        assert_eq!(
            out[0].value,
            br#"{"ts":"Dec 10 06:55:46","host":"LabSZ","proc":"sshd","pid":24200,"msg":"hi"}"#
        );
    }

    #[test]
    fn writes_what_serde_json_wrote_for_every_line_of_the_sample() {
        let sample = std::fs::File::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/auth-log/data/OpenSSH_2k.log"
        ))
        .expect("open the OpenSSH sample");
        let mut lines = 0;
        for line in std::io::BufReader::new(sample).lines() {
            let line = line.unwrap();
            let fields = parse_fields(line.as_bytes()).expect("every sample line parses");
            let mut out = Vec::new();
            fields.write_json(&mut out);
            assert_eq!(out, serde_json_object(&fields), "{line}");
            lines += 1;
        }
        assert_eq!(lines, 2000);
    }

    #[test]
    fn a_rejected_line_leaves_the_buffer_as_it_was() {
        let mut out = b"before".to_vec();
        assert!(parse_into(b"Dec 10 06:55:46 LabSZ sshd[x]: m", &mut out).is_err());
        assert_eq!(out, b"before");
        parse_into(b"Dec 10 06:55:46 LabSZ sshd[0012]: m", &mut out).unwrap();
        assert!(out.ends_with(br#""pid":12,"msg":"m"}"#), "no leading zeros");
    }

    #[test]
    fn the_objects_it_writes_read_back_through_the_fast_path() {
        let line = b"Dec  1 00:00:01 h-1 sshd[7]: Failed password for x from 1.2.3.4";
        let json = parse_line(line).unwrap();
        let span = object::plain_msg(&json).expect("a plain object");
        assert_eq!(&json[span], b"Failed password for x from 1.2.3.4");
        // A message with a quote needs an escape: the fast path declines it.
        let json = parse_line(b"Dec  1 00:00:01 h sshd[7]: say \"hi\"").unwrap();
        assert_eq!(object::plain_msg(&json), None);
    }

    #[test]
    fn the_fast_path_declines_every_other_form() {
        let declined: [&[u8]; 9] = [
            br#"{"ts":"t","host":"h","proc":"p","pid":1,"msg":"m"} "#,
            br#"{"ts":"t","host":"h","proc":"p","pid":01,"msg":"m"}"#,
            br#"{"ts":"t","host":"h","proc":"p","pid":99999999999999999999,"msg":"m"}"#,
            br#"{"ts":"t","host":"h","proc":"p","pid":-1,"msg":"m"}"#,
            br#"{"ts":"t","host":"h","proc":"p","pid":1,"msg":"m","x":1}"#,
            br#"{"ts":"t", "host":"h","proc":"p","pid":1,"msg":"m"}"#,
            br#"{"host":"h","ts":"t","proc":"p","pid":1,"msg":"m"}"#,
            b"{\"ts\":\"t\",\"host\":\"h\xff\",\"proc\":\"p\",\"pid\":1,\"msg\":\"m\"}",
            b"{\"ts\":\"t\",\"host\":\"h\",\"proc\":\"p\",\"pid\":1,\"msg\":\"a\tb\"}",
        ];
        for json in declined {
            assert_eq!(
                object::plain_msg(json),
                None,
                "{}",
                String::from_utf8_lossy(json)
            );
        }
        let plain = br#"{"ts":"t","host":"h","proc":"p","pid":0,"msg":""}"#;
        assert_eq!(
            object::plain_msg(plain),
            Some(plain.len() - 2..plain.len() - 2)
        );
    }

    /// The word-at-a-time scan agrees with the byte-at-a-time definition: any byte, at any
    /// position of a word or of the tail, in any field.
    #[test]
    fn the_fast_path_scans_as_the_byte_by_byte_definition_does() {
        fn reference(json: &[u8]) -> Option<std::ops::Range<usize>> {
            std::str::from_utf8(json).ok()?;
            let prefix = br#"{"ts":"t","host":"h","proc":"p","pid":1,"msg":""#;
            let rest = json.strip_prefix(prefix.as_slice())?;
            let end = rest.iter().position(|&b| b == b'"')?;
            let plain = rest[..end].iter().all(|&b| b != b'\\' && b >= 0x20);
            (plain && &rest[end..] == b"\"}").then_some(prefix.len()..prefix.len() + end)
        }
        for len in [0, 1, 7, 8, 9, 16, 19] {
            for position in 0..len {
                for b in 0..=255u8 {
                    let mut msg = vec![b'a'; len];
                    msg[position] = b;
                    let mut json = br#"{"ts":"t","host":"h","proc":"p","pid":1,"msg":""#.to_vec();
                    json.extend_from_slice(&msg);
                    json.extend_from_slice(b"\"}");
                    assert_eq!(
                        object::plain_msg(&json),
                        reference(&json),
                        "{b:#x} at {position}/{len}"
                    );
                }
            }
        }
        let utf8 = "{\"ts\":\"t\",\"host\":\"h\u{e9}\u{e9}\u{e9}\u{e9}\",\"proc\":\"p\",\"pid\":1,\"msg\":\"\u{65e5}\u{672c}\"}";
        let msg = object::plain_msg(utf8.as_bytes()).expect("UTF-8 strings are plain");
        assert_eq!(&utf8[msg], "\u{65e5}\u{672c}");
        let broken = b"{\"ts\":\"t\",\"host\":\"h\",\"proc\":\"p\xc3\",\"pid\":1,\"msg\":\"m\"}";
        assert_eq!(
            object::plain_msg(broken),
            None,
            "a truncated UTF-8 sequence"
        );
    }
}
