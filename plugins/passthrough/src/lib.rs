//! `passthrough`: a stage that emits every event unchanged.
//!
//! It measures the cost of the host and the component boundary alone, with no work in the
//! stage, and is the smallest complete example of a weir plugin. It is a
//! [`Transform`]: each input is copied once, whole, from the packed input batch into the
//! call's output buffer, and since every input becomes one output the call writes no counts.

use weir_plugin::{Emitter, EventView, Failure, Settings, Transform};

/// The stage; it takes no settings.
#[derive(Debug, Default)]
pub struct Passthrough;

impl Transform for Passthrough {
    fn init(_settings: &Settings) -> Result<Self, String> {
        Ok(Passthrough)
    }

    fn process(&mut self, _event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
        out.pass();
        Ok(())
    }
}

weir_plugin::export_stage!(Passthrough);

#[cfg(test)]
mod tests {
    use weir_plugin::{Batch, Event, Outcome, native};

    use super::*;

    fn stage() -> Passthrough {
        native::init(Settings::default()).unwrap()
    }

    #[test]
    fn emits_the_event_unchanged() {
        let event = Event {
            key: Some(b"k".to_vec()),
            value: b"\xffnot utf-8".to_vec(),
            headers: vec![("h".to_string(), b"v".to_vec())],
            timestamp: Some(42),
        };
        assert_eq!(native::process_event(&mut stage(), &event), Ok(vec![event]));
    }

    #[test]
    fn one_outcome_per_input_and_no_counts() {
        let batch: Vec<Event> = (0..3).map(|i| Event::new(vec![i])).collect();
        let expected: Vec<Outcome> = batch.iter().map(|e| Ok(vec![e.clone()])).collect();
        assert_eq!(native::process_events(&mut stage(), &batch), expected);

        let packed = Batch::from_events(&batch);
        let output = native::process(&mut stage(), &packed);
        assert!(output.counts.is_empty() && output.failures.is_empty());
        assert_eq!(
            output.events, packed,
            "the output is the input, byte for byte"
        );
    }
}
