//! Reading back, fast, the object this stage writes: the `msg` of
//! `{"ts":"…","host":"…","proc":"…","pid":N,"msg":"…"}` when the value is exactly in that
//! compact form and none of its strings needed an escape.
//!
//! The stages after `sshd-parse` (`auth-filter`, `redact-ip`) compile this file into their
//! own crates (`#[path]`): a plugin crate cannot depend on another, since both would export a
//! component. They use it as a fast path and fall back to a full JSON parser when it declines,
//! so the fast path has to accept only values whose meaning it knows for certain; see
//! [`plain_msg`]. It reads each byte once: the strings, which are most of the object, sixteen
//! bytes at a time with wasm SIMD in the components (built with `simd128`), eight at a time in
//! a `u64` elsewhere.

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
    let (end, ascii) = first_special(text)?;
    let plain = text[end] == b'"' && (ascii || std::str::from_utf8(&text[..end]).is_ok());
    plain.then_some(start + end)
}

/// The index of the first `"`, `\` or control character of `text`, and whether every byte
/// before it is ASCII; `None` if there is none.
pub(crate) fn first_special(text: &[u8]) -> Option<(usize, bool)> {
    let (mut offset, mut ascii) = (0, true);
    while let Some(block) = text.get(offset..offset + BLOCK) {
        let (special, high) = block_flags(block);
        if special != 0 {
            // The lowest flag marks the first special byte (the first in memory).
            let i = special.trailing_zeros() as usize / FLAG_BITS;
            let before = (1 << (i * FLAG_BITS)) - 1;
            return Some((offset + i, ascii && high & before == 0));
        }
        ascii &= high == 0;
        offset += BLOCK;
    }
    let tail = &text[offset..];
    let i = tail
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    Some((offset + i, ascii && tail[..i].is_ascii()))
}

/// Bytes looked at together.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
const BLOCK: usize = 16;
/// Bits of a block's flags per byte.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
const FLAG_BITS: usize = 1;

/// A flag per byte of a 16-byte block: one for each byte that is `"`, `\` or a control
/// character, one for each byte that is not ASCII.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn block_flags(block: &[u8]) -> (u32, u32) {
    use core::arch::wasm32::{u8x16_bitmask, u8x16_eq, u8x16_lt, u8x16_splat, v128, v128_or};
    // SAFETY: `block` holds exactly 16 bytes, read without assuming any alignment.
    let v = unsafe { std::ptr::read_unaligned(block.as_ptr().cast::<v128>()) };
    let special = v128_or(
        v128_or(
            u8x16_eq(v, u8x16_splat(b'"')),
            u8x16_eq(v, u8x16_splat(b'\\')),
        ),
        u8x16_lt(v, u8x16_splat(0x20)),
    );
    (
        u32::from(u8x16_bitmask(special)),
        u32::from(u8x16_bitmask(v)),
    )
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
const BLOCK: usize = 8;
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
const FLAG_BITS: usize = 8;

/// The top bit of each byte of an 8-byte block that is `"`, `\` or a control character, and
/// of each byte that is not ASCII.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn block_flags(block: &[u8]) -> (u64, u64) {
    let x = u64::from_le_bytes(block.try_into().expect("8 bytes"));
    (special_bytes(x), x & splat(0x80))
}

/// Eight copies of a byte.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
const fn splat(b: u8) -> u64 {
    u64::from_le_bytes([b; 8])
}

/// The top bit of every byte of `x` that is `"`, `\` or a control character. A flag can be
/// wrong only above a byte that is rightly flagged (a borrow runs upwards), so the lowest one
/// is always right.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn special_bytes(x: u64) -> u64 {
    let zero_byte = |v: u64| v.wrapping_sub(splat(0x01)) & !v & splat(0x80);
    let quote = zero_byte(x ^ splat(b'"'));
    let backslash = zero_byte(x ^ splat(b'\\'));
    let control = x.wrapping_sub(splat(0x20)) & !x & splat(0x80);
    quote | backslash | control
}
