//! `uppercase`: a stage that upper-cases the ASCII letters of every value.
//!
//! Bytes other than `a`..=`z` (including UTF-8 multi-byte sequences and invalid UTF-8) are
//! left as they are, so the stage never fails and never changes a value's length. The value
//! is copied once into the call's output buffer ([`upper_into`]) and upper-cased there, eight
//! bytes at a time: the component is built without SIMD, so a word-at-a-time loop is the
//! fastest portable form.

use weir_plugin::{Emitter, EventView, Failure, Settings, Transform};

/// Eight copies of a byte, one per byte of a `u64`.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// Upper-cases the ASCII letters among eight bytes at once.
///
/// With every byte's top bit cleared first (so that no addition carries into the next byte),
/// adding `0x80 - b'a'` sets a byte's top bit exactly when it is at least `a`, and adding
/// `0x80 - (b'z' + 1)` exactly when it is past `z`. A lower-case ASCII letter is at least `a`,
/// not past `z`, and had its top bit clear; its `0x20` bit is then cleared.
fn upper_word(x: u64) -> u64 {
    let low = x & splat(0x7f);
    let at_least_a = low + splat(0x80 - b'a');
    let past_z = low + splat(0x80 - (b'z' + 1));
    let lower = at_least_a & !past_z & !x & splat(0x80);
    x ^ (lower >> 2)
}

/// Upper-cases the ASCII letters of `value` in place.
pub fn uppercase_in_place(value: &mut [u8]) {
    let mut words = value.chunks_exact_mut(8);
    for word in &mut words {
        let x = u64::from_ne_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]);
        word.copy_from_slice(&upper_word(x).to_ne_bytes());
    }
    words.into_remainder().make_ascii_uppercase();
}

/// Appends `value` to `out` with its ASCII letters upper-cased.
pub fn upper_into(value: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(value);
    uppercase_in_place(&mut out[start..]);
}

/// The stage; it takes no settings.
#[derive(Debug, Default)]
pub struct Uppercase;

impl Transform for Uppercase {
    fn init(_settings: &Settings) -> Result<Self, String> {
        Ok(Uppercase)
    }

    /// Emits the upper-cased value; key, headers and timestamp are kept.
    fn process(&mut self, event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
        let value = event.value();
        out.emit_with(|buf| upper_into(value, buf));
        Ok(())
    }
}

weir_plugin::export_stage!(Uppercase);

#[cfg(test)]
mod tests {
    use weir_plugin::{Batch, Event, native};

    use super::*;

    fn upper(value: &[u8]) -> Vec<u8> {
        let mut out = b"kept".to_vec();
        upper_into(value, &mut out);
        assert_eq!(&out[..4], b"kept", "appends");
        out.split_off(4)
    }

    #[test]
    fn upper_cases_ascii_letters_only() {
        assert_eq!(
            upper("sshd: héllo, World 42 \u{ff}".as_bytes()),
            "SSHD: HéLLO, WORLD 42 \u{ff}".as_bytes()
        );
    }

    #[test]
    fn leaves_invalid_utf8_alone() {
        assert_eq!(upper(b"a\xffb\xc3"), b"A\xffB\xc3");
    }

    /// Every byte value at every position of a word and of the tail agrees with the standard
    /// library's per-byte rule.
    #[test]
    fn agrees_with_to_ascii_uppercase_for_every_byte_in_every_position() {
        for b in 0..=255u8 {
            for position in 0..19 {
                let mut value: Vec<u8> = (0..19u8).map(|i| b'a' + i).collect();
                value[position] = b;
                let expected: Vec<u8> = value.iter().map(u8::to_ascii_uppercase).collect();
                assert_eq!(upper(&value), expected, "byte {b:#x} at {position}");
            }
        }
    }

    #[test]
    fn keeps_everything_but_the_value() {
        let mut stage = Uppercase::init(&Settings::default()).unwrap();
        let event = Event {
            key: Some(b"key".to_vec()),
            value: b"abc".to_vec(),
            headers: vec![("h".to_string(), b"v".to_vec())],
            timestamp: Some(7),
        };
        let expected = Event {
            value: b"ABC".to_vec(),
            ..event.clone()
        };
        assert_eq!(
            native::process_event(&mut stage, &event),
            Ok(vec![expected])
        );
    }

    #[test]
    fn writes_into_the_reserved_output_buffer_without_growing_it() {
        let mut stage = Uppercase;
        let input = Batch::from_events(&vec![Event::new(vec![b'a'; 100]); 256]);
        let output = native::process(&mut stage, &input);
        assert!(output.counts.is_empty());
        assert_eq!(output.events.data, vec![b'A'; 256 * 100]);
        assert_eq!(
            output.events.data.capacity(),
            256 * 150,
            "reserved once, not grown"
        );
    }
}
