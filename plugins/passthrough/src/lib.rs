//! `passthrough`: a stage that emits every event unchanged.
//!
//! It measures the cost of the host and the component boundary alone, with no work in the
//! stage, and is the smallest complete example of a weir plugin.

use weir_plugin::{Event, Outcome, Settings, Stage};

/// The whole transform: one input event becomes the same single output event.
pub fn pass(event: Event) -> Outcome {
    Ok(vec![event])
}

/// The stage; it takes no settings and ignores any it is given.
#[derive(Debug, Default)]
pub struct Passthrough;

impl Stage for Passthrough {
    fn init(_settings: &Settings) -> Result<Self, String> {
        Ok(Passthrough)
    }

    fn process(&mut self, event: Event) -> Outcome {
        pass(event)
    }
}

weir_plugin::export_stage!(Passthrough);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_the_event_unchanged() {
        let event = Event {
            key: Some(b"k".to_vec()),
            value: b"\xffnot utf-8".to_vec(),
            headers: vec![("h".to_string(), b"v".to_vec())],
            timestamp: Some(42),
        };
        assert_eq!(pass(event.clone()), Ok(vec![event]));
    }

    #[test]
    fn one_outcome_per_input() {
        let mut stage = Passthrough::init(&Settings::default()).unwrap();
        let batch: Vec<Event> = (0..3).map(|i| Event::new(vec![i])).collect();
        let outcomes = stage.process_batch(batch.clone());
        let expected: Vec<Outcome> = batch.into_iter().map(|e| Ok(vec![e])).collect();
        assert_eq!(outcomes, expected);
    }
}
