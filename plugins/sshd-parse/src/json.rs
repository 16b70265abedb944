//! The two pieces of JSON the stage writes: a string's escaped content and an unsigned
//! number, both appended to a byte buffer.
//!
//! The output must stay byte-identical to what `serde_json`'s compact writer made of the same
//! fields before this writer replaced it: `"` and `\` are escaped with a backslash, the
//! control characters with a short form (`\b`, `\t`, `\n`, `\f`, `\r`) have it, the others
//! become `\u00XX` with lower-case hex, and everything else (DEL and non-ASCII included) is
//! copied as it is. The bytes that need an escape are exactly those `object` scans for, so
//! the same block-at-a-time test finds them, and the runs between them are copied whole.

use crate::object::first_special;

/// For each byte, 0 if it is copied as it is, else the letter after the backslash (`u` for
/// `\u00XX`).
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the escaped content of a JSON string (without its quotes), copying the runs that
/// need no escape in one piece.
pub fn write_escaped(out: &mut Vec<u8>, text: &[u8]) {
    let mut copied = 0;
    while let Some(i) = next_escape(text, copied) {
        out.extend_from_slice(&text[copied..i]);
        let b = text[i];
        let escape = ESCAPE[usize::from(b)];
        if escape == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        copied = i + 1;
    }
    out.extend_from_slice(&text[copied..]);
}

/// The position of the first byte at or after `from` that needs an escape: `"`, `\\` or a
/// control character, as [`ESCAPE`] says.
fn next_escape(text: &[u8], from: usize) -> Option<usize> {
    first_special(&text[from..]).map(|(i, _)| from + i)
}

/// Appends `n` in decimal, without leading zeros.
pub fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = Vec::new();
        write_escaped(&mut out, text.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_as_serde_json_does_for_every_ascii_character() {
        for c in (0..=0x7fu8).map(char::from) {
            let text = format!("a{c}b{c}");
            let serde = serde_json::to_string(&text).unwrap();
            assert_eq!(format!("\"{}\"", escaped(&text)), serde, "{c:?}");
        }
        for text in ["", "é ü 日本 \u{ff}", "\u{7f}\u{80}\u{2028}", "\"\\\"\\"] {
            let serde = serde_json::to_string(text).unwrap();
            assert_eq!(format!("\"{}\"", escaped(text)), serde, "{text:?}");
        }
    }

    /// Every byte that needs an escape, at every position of a word and of the tail.
    #[test]
    fn finds_escapes_wherever_they_are() {
        for c in (0..=0x7fu8).map(char::from) {
            for position in 0..19 {
                let mut text: Vec<char> = "abcdefghijklmnopqrs".chars().collect();
                text[position] = c;
                let text: String = text.into_iter().collect();
                let serde = serde_json::to_string(&text).unwrap();
                assert_eq!(
                    format!("\"{}\"", escaped(&text)),
                    serde,
                    "{c:?} at {position}"
                );
            }
        }
    }

    #[test]
    fn writes_numbers_as_serde_json_does() {
        for n in [0, 1, 9, 10, 24200, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, serde_json::to_vec(&n).unwrap());
        }
    }
}
