//! `uppercase`: a stage that upper-cases the ASCII letters of every value.
//!
//! Bytes other than `a`..=`z` (including UTF-8 multi-byte sequences and invalid UTF-8) are
//! left as they are, so the stage never fails and never changes a value's length.

use weir_plugin::{Event, Outcome, Settings, Stage};

/// Upper-cases the ASCII letters of `value` in place, without reallocating.
pub fn uppercase_in_place(value: &mut [u8]) {
    value.make_ascii_uppercase();
}

/// The stage; it takes no settings and ignores any it is given.
#[derive(Debug, Default)]
pub struct Uppercase;

impl Stage for Uppercase {
    fn init(_settings: &Settings) -> Result<Self, String> {
        Ok(Uppercase)
    }

    fn process(&mut self, mut event: Event) -> Outcome {
        uppercase_in_place(&mut event.value);
        Ok(vec![event])
    }
}

weir_plugin::export_stage!(Uppercase);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_cases_ascii_letters_only() {
        let mut value = "sshd: héllo, World 42 \u{ff}".as_bytes().to_vec();
        uppercase_in_place(&mut value);
        assert_eq!(value, "SSHD: HéLLO, WORLD 42 \u{ff}".as_bytes());
    }

    #[test]
    fn leaves_invalid_utf8_alone() {
        let mut value = b"a\xffb\xc3".to_vec();
        uppercase_in_place(&mut value);
        assert_eq!(value, b"A\xffB\xc3");
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
        assert_eq!(stage.process(event), Ok(vec![expected]));
    }

    #[test]
    fn does_not_reallocate() {
        let mut stage = Uppercase;
        let event = Event::new(b"abc".to_vec());
        let before = event.value.as_ptr();
        let out = stage.process(event).unwrap();
        assert_eq!(out[0].value.as_ptr(), before);
    }
}
