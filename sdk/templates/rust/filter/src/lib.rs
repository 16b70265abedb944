//! `{{name}}`: a weir stage that drops the events whose value contains a word.
//!
//! An event whose value is empty is rejected (the host dead-letters it with the reason);
//! every other event passes through unchanged, or is filtered out when it contains the word.

use weir_plugin::{Declare, Emitter, EventView, Failure, Settings, Transform};

/// The stage, built from its settings.
pub struct Stage {
    word: Vec<u8>,
    ignore_case: bool,
}

impl Transform for Stage {
    /// What `weir plugin inspect` shows and `weir check` holds a pipeline file to; the SDK
    /// applies the defaults before `init`.
    const SETTINGS: &'static [Declare] = &[
        Declare::text("drop")
            .default("DEBUG")
            .help("drop the events whose value contains this"),
        Declare::boolean("ignore-case")
            .default("false")
            .help("match the word in any case"),
    ];

    fn init(settings: &Settings) -> Result<Self, String> {
        let ignore_case: bool = settings.parse_or("ignore-case", false)?;
        let mut word = settings.require("drop")?.as_bytes().to_vec();
        if ignore_case {
            word.make_ascii_lowercase();
        }
        Ok(Stage { word, ignore_case })
    }

    fn process(&mut self, event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
        let value = event.value();
        if value.is_empty() {
            return Err(Failure::reject("empty value"));
        }
        if !self.contains_word(value) {
            out.pass();
        }
        Ok(())
    }
}

impl Stage {
    fn contains_word(&self, value: &[u8]) -> bool {
        if self.word.is_empty() {
            return true;
        }
        value.windows(self.word.len()).any(|w| {
            if self.ignore_case {
                w.eq_ignore_ascii_case(&self.word)
            } else {
                w == self.word.as_slice()
            }
        })
    }
}

weir_plugin::export_stage!(Stage);
