//! Reading back, fast, the object this stage writes: the `msg` of
//! `{"ts":"…","host":"…","proc":"…","pid":N,"msg":"…"}` when the value is exactly in that
//! compact form and none of its strings needed an escape.
//!
//! The stages after `sshd-parse` (`auth-filter`, `redact-ip`) compile this file into their
//! own crates (`#[path]`): a plugin crate cannot depend on another, since both would export a
//! component. They use it as a fast path and fall back to a full JSON parser when it declines,
//! so the fast path has to accept only values whose meaning it knows for certain; see
//! [`plain_msg`].

use std::ops::Range;

/// Where the text of `msg` is in `json`, if `json` is exactly the object `sshd-parse` writes
/// for a line whose strings needed no escape.
///
/// When it answers, `json` is valid UTF-8 and a valid JSON object with the keys `ts`, `host`,
/// `proc`, `pid` and `msg` in that order, no whitespace, no backslash or control character in
/// any string, and `pid` an integer without leading zeros that fits a `u64`. So the span holds
/// `msg`'s text exactly (nothing to unescape), and writing the object back compactly gives
/// `json` again, byte for byte. When it declines, the value may still be valid JSON of
/// another form: the caller parses it in full.
pub fn plain_msg(json: &[u8]) -> Option<Range<usize>> {
    std::str::from_utf8(json).ok()?;
    let mut at = 0;
    for key in [&b"{\"ts\":\""[..], b"\",\"host\":\"", b"\",\"proc\":\""] {
        at = after(json, at, key)?;
        at = string_end(json, at)?;
    }
    at = after(json, at, b"\",\"pid\":")?;
    let digits = json[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    let pid = &json[at..at + digits];
    let leading_zero = pid.len() > 1 && pid[0] == b'0';
    // The digits are ASCII, hence UTF-8; a pid past u64 is left to the full parser.
    let fits = std::str::from_utf8(pid).ok()?.parse::<u64>().is_ok();
    if leading_zero || !fits {
        return None;
    }
    let start = after(json, at + digits, b",\"msg\":\"")?;
    let end = string_end(json, start)?;
    (&json[end..] == b"\"}").then_some(start..end)
}

/// The position after `expected`, if `json` has it at `at`.
fn after(json: &[u8], at: usize, expected: &[u8]) -> Option<usize> {
    json.get(at..)?
        .starts_with(expected)
        .then_some(at + expected.len())
}

/// The position of the quote that ends a string starting at `start`, if the string has no
/// backslash (so that quote is not escaped) and no control character (which JSON forbids).
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    let end = start + memchr::memchr(b'"', &json[start..])?;
    let plain = json[start..end].iter().all(|&b| b != b'\\' && b >= 0x20);
    plain.then_some(end)
}
