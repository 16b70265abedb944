//! A type that implements only [`Transform`] exports and runs: through the same packed path as
//! a component, with declared settings, filtering, fan-out and failures.

use weir_plugin::{
    Batch, Declare, Emitter, Event, EventView, Failure, Settings, Transform, native,
};

/// Splits a value on `sep` (setting, default `,`) into one output per part; drops empty
/// values; rejects a value that starts with `sep`.
pub struct Split {
    sep: u8,
}

impl Transform for Split {
    const SETTINGS: &'static [Declare] = &[Declare::text("sep")
        .default(",")
        .help("the byte values are split on")];

    fn init(settings: &Settings) -> Result<Self, String> {
        match settings.require("sep")?.as_bytes() {
            [sep] => Ok(Split { sep: *sep }),
            _ => Err("`sep` must be one byte".into()),
        }
    }

    fn process(&mut self, event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
        let value = event.value();
        if value.first() == Some(&self.sep) {
            return Err(Failure::reject("starts with the separator"));
        }
        if !value.is_empty() {
            for part in value.split(|&b| b == self.sep) {
                out.emit_value(part);
            }
        }
        Ok(())
    }
}

weir_plugin::export_stage!(Split);

#[test]
fn a_transform_only_type_runs_through_the_packed_path() {
    let mut split: Split = native::init(Settings::default()).unwrap();
    let inputs = [
        Event {
            key: Some(b"k".to_vec()),
            headers: vec![("h".into(), b"v".to_vec())],
            timestamp: Some(9),
            ..Event::new("a,b")
        },
        Event::new("c"),
        Event::new(""),
        Event::new(",x"),
    ];
    let batch = Batch::from_events(&inputs);
    let output = native::process(&mut split, &batch);
    output.check(inputs.len()).unwrap();
    assert_eq!(output.counts, [2, 1, 0, 0]);
    let outcomes = output.outcomes();
    let first = outcomes[0].as_ref().unwrap();
    assert_eq!(first[1].value, b"b");
    assert_eq!(first[1].key.as_deref(), Some(b"k".as_slice()));
    assert_eq!(first[1].header("h"), Some(b"v".as_slice()));
    assert_eq!(first[1].timestamp, Some(9));
    assert_eq!(outcomes[1], Ok(vec![Event::new("c")]));
    assert_eq!(outcomes[2], Ok(vec![]));
    assert_eq!(
        outcomes[3],
        Err(Failure::reject("starts with the separator"))
    );
}

#[test]
fn one_output_per_input_takes_the_fast_path() {
    let mut split: Split = native::init(Settings::from_iter([("sep", ";")])).unwrap();
    let outcomes = native::process_events(&mut split, &[Event::new("a,b"), Event::new("c")]);
    assert_eq!(
        outcomes,
        vec![Ok(vec![Event::new("a,b")]), Ok(vec![Event::new("c")])]
    );
    let output = native::process(&mut split, &Batch::from_events(&[Event::new("x")]));
    assert!(output.counts.is_empty() && output.failures.is_empty());
}
