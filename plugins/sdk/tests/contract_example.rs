//! The worked example of `docs/contract.md`, checked: the two-event batch as the host packs
//! it, and the output of a stage that filters the first event out and upper-cases the second.

use weir_plugin::{Batch, Emitter, Event, EventView, Failure, Settings, Transform, native};

fn example() -> Vec<Event> {
    vec![
        Event::new("hello"),
        Event {
            key: Some(b"k1".to_vec()),
            value: b"world".to_vec(),
            headers: vec![("trace".into(), b"abc".to_vec())],
            timestamp: Some(1_700_000_000_000),
        },
    ]
}

#[test]
fn the_two_event_batch_is_packed_as_the_document_shows() {
    let batch = Batch::from_events(&example());
    assert_eq!(batch.data, b"hellok1worldtraceabc");
    assert_eq!(batch.events, [0, 5, 0, 0xffff_ffff, 0, 0, 7, 5, 5, 2, 0, 1]);
    assert_eq!(batch.headers, [12, 5, 17, 3]);
    assert_eq!(batch.timestamps, [u64::MAX, 1_700_000_000_000]);
}

/// Drops `hello`, upper-cases anything else.
struct Example;

impl Transform for Example {
    fn init(_: &Settings) -> Result<Self, String> {
        Ok(Example)
    }

    fn process(&mut self, event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
        if event.value() != b"hello" {
            out.emit_with(|buf| buf.extend(event.value().iter().map(u8::to_ascii_uppercase)));
        }
        Ok(())
    }
}

#[test]
fn the_output_is_packed_as_the_document_shows() {
    let output = native::process(&mut Example, &Batch::from_events(&example()));
    assert_eq!(output.events.data, b"k1WORLDtraceabc");
    assert_eq!(output.events.events, [2, 5, 0, 2, 0, 1]);
    assert_eq!(output.events.headers, [7, 5, 12, 3]);
    assert_eq!(output.events.timestamps, [1_700_000_000_000]);
    assert_eq!(output.counts, [0, 1]);
    assert!(output.failures.is_empty());
}
