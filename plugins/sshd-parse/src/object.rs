//! Reading back, fast, the object this stage writes: the `msg` of
//! `{"ts":"…","host":"…","proc":"…","pid":N,"msg":"…"}` when the value is exactly in that
//! compact form and none of its strings needed an escape.
//!
//! The stages after `sshd-parse` (`auth-filter`, `redact-ip`) compile this file into their
//! own crates (`#[path]`): a plugin crate cannot depend on another, since both would export a
//! component. They use it as a fast path and fall back to a full JSON parser when it declines,
//! so the fast path has to accept only values whose meaning it knows for certain; see
//! [`plain_msg`]. It reads each byte once: the strings, which are most of the object, eight
//! bytes at a time (the components are built without SIMD).

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
    // Everything outside the strings is matched against ASCII below, so the value is UTF-8
    // exactly when its strings are; `string_end` checks them.
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
/// backslash (so that quote is not escaped), no control character (which JSON forbids), and
/// is UTF-8.
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    let text = json.get(start..)?;
    let mut words = text.chunks_exact(8);
    let mut offset = 0;
    let mut ascii = true;
    let end = loop {
        let Some(word) = words.next() else {
            let tail = words.remainder();
            let i = tail
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            ascii &= tail[..i].is_ascii();
            break offset + i;
        };
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let special = special_bytes(x);
        if special != 0 {
            // The lowest flag marks the first special byte (little-endian: the first in memory).
            let i = special.trailing_zeros() as usize / 8;
            ascii &= word[..i].is_ascii();
            break offset + i;
        }
        ascii &= x & splat(0x80) == 0;
        offset += 8;
    };
    let plain = text[end] == b'"' && (ascii || std::str::from_utf8(&text[..end]).is_ok());
    plain.then_some(start + end)
}

/// Eight copies of a byte.
pub(crate) const fn splat(b: u8) -> u64 {
    u64::from_le_bytes([b; 8])
}

/// The top bit of every byte of `x` that is `"`, `\` or a control character. A flag can be
/// wrong only above a byte that is rightly flagged (a borrow runs upwards), so the lowest one
/// is always right.
pub(crate) fn special_bytes(x: u64) -> u64 {
    let zero_byte = |v: u64| v.wrapping_sub(splat(0x01)) & !v & splat(0x80);
    let quote = zero_byte(x ^ splat(b'"'));
    let backslash = zero_byte(x ^ splat(b'\\'));
    let control = x.wrapping_sub(splat(0x20)) & !x & splat(0x80);
    quote | backslash | control
}
