//! `{{name}}`: a weir stage that upper-cases the ASCII letters of every value.
//!
//! Bytes other than `a`..=`z` (UTF-8 multi-byte sequences included) are left as they are; the
//! key, headers and timestamp pass through unchanged.

use weir_plugin::{Emitter, EventView, Failure, Settings, Transform};

/// The stage. Declare settings in `SETTINGS` (see the `filter` template) and read them in
/// `init`.
pub struct Stage;

impl Transform for Stage {
    fn init(_settings: &Settings) -> Result<Self, String> {
        Ok(Stage)
    }

    /// Writes the upper-cased value straight into the output buffer.
    fn process(&mut self, event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
        let value = event.value();
        out.emit_with(|buf| buf.extend(value.iter().map(u8::to_ascii_uppercase)));
        Ok(())
    }
}

weir_plugin::export_stage!(Stage);
