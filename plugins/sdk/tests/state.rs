//! The `state` API off wasm, on the in-memory store that stands in for the host's: the same
//! calls a component makes, so a stage's logic can be tested natively. Each test empties its
//! thread's store first.

use std::time::Duration;

use weir_plugin::state::{self, Entry, SCAN_PAGE, StateError};
use weir_plugin::{Event, Failure, Outcome, Settings, Stage, native};

#[test]
fn a_scan_pages_through_every_key_of_its_prefix_in_order() {
    native::reset_state();
    // More than two pages, written out of order, between keys of other prefixes.
    let count = 2 * SCAN_PAGE as usize + 7;
    for i in (0..count).rev() {
        state::set(format!("p/{i:04}"), i.to_string()).expect("set");
    }
    state::set("o", "before").expect("set");
    state::set("p0", "after").expect("set");
    let scanned: Vec<(Vec<u8>, Vec<u8>)> = state::scan("p/").collect();
    let expected: Vec<(Vec<u8>, Vec<u8>)> = (0..count)
        .map(|i| (format!("p/{i:04}").into_bytes(), i.to_string().into_bytes()))
        .collect();
    assert_eq!(scanned, expected);
    assert_eq!(state::scan("none/").count(), 0);
    assert_eq!(state::scan("").count(), count + 2);
}

#[test]
fn a_scan_ends_after_exactly_a_full_page() {
    native::reset_state();
    for i in 0..SCAN_PAGE {
        state::set(format!("k{i:04}"), "v").expect("set");
    }
    assert_eq!(state::scan("k").count(), SCAN_PAGE as usize);
}

#[test]
fn increment_counts_from_zero_and_refuses_what_is_not_a_counter() {
    native::reset_state();
    assert_eq!(state::increment("n", 5), Ok(5));
    assert_eq!(state::increment("n", -7), Ok(-2));
    assert_eq!(state::get("n"), Some((-2i64).to_le_bytes().to_vec()));
    state::set("text", "abc").expect("set");
    assert_eq!(state::increment("text", 1), Err(StateError::NotACounter));
    assert_eq!(
        state::get("text"),
        Some(b"abc".to_vec()),
        "nothing was written"
    );
    state::set("max", i64::MAX.to_le_bytes()).expect("set");
    assert_eq!(state::increment("max", 1), Err(StateError::Overflow));
    let many = state::increment_many(&[(b"n".to_vec(), 2), (b"text".to_vec(), 1)]);
    assert_eq!(many, vec![Ok(0), Err(StateError::NotACounter)]);
}

#[test]
fn a_ttl_is_stored_rounded_up_and_kept_by_increment() {
    native::reset_state();
    state::set_with_ttl("t", 1i64.to_le_bytes(), Duration::from_secs(60)).expect("set");
    assert_eq!(native::state_ttl("t"), Some(Duration::from_secs(60)));
    assert_eq!(state::increment("t", 1), Ok(2));
    assert_eq!(native::state_ttl("t"), Some(Duration::from_secs(60)));
    state::set("t", "v").expect("set");
    assert_eq!(
        native::state_ttl("t"),
        None,
        "a write without a TTL lives for ever"
    );
    let entry = Entry::new("u", "v").with_ttl(Duration::from_micros(1500));
    assert_eq!(entry.ttl_ms, Some(2));
    // A TTL of zero has expired by the next read.
    state::set_with_ttl("gone", "v", Duration::ZERO).expect("set");
    assert_eq!(state::get("gone"), None);
    assert_eq!(state::scan("gone").count(), 0);
}

#[test]
fn many_at_once_and_delete() {
    native::reset_state();
    let results = state::set_many(&[Entry::new("a", "1"), Entry::new("b", "2")]);
    assert_eq!(results, vec![Ok(()), Ok(())]);
    state::delete("a");
    state::delete("absent");
    let values = state::get_many(&[b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(values, vec![None, Some(b"2".to_vec())]);
}

#[test]
fn a_state_error_says_what_and_fails_the_event_with_its_kind() {
    let limit = StateError::Limit("a key of 2048 bytes is over 1024".into());
    assert_eq!(
        limit.to_string(),
        "state limit reached: a key of 2048 bytes is over 1024"
    );
    assert_eq!(
        StateError::NotACounter.to_string(),
        "the value under the key is not a counter (8 bytes)"
    );
    assert!(StateError::Overflow.to_string().contains("signed 64-bit"));
    assert_eq!(
        Failure::from_state(limit),
        Failure::reject("state-limit: a key of 2048 bytes is over 1024")
    );
    let other = Failure::from(StateError::Overflow);
    assert!(other.reason().starts_with("state: "), "{other}");
}

/// Remembers each value it sees and drops the ones seen before.
struct Dedup;

impl Stage for Dedup {
    fn init(_: &Settings) -> Result<Self, String> {
        Ok(Dedup)
    }

    fn process(&mut self, event: Event) -> Outcome {
        if state::get(&event.value).is_some() {
            return Ok(Vec::new());
        }
        state::set(event.value.clone(), "")?;
        Ok(vec![event])
    }
}

#[test]
fn a_stage_keeps_its_state_across_calls_natively() {
    native::reset_state();
    let mut stage: Dedup = native::init(Settings::default()).expect("init");
    let first = native::process_events(&mut stage, &[Event::new("a"), Event::new("a")]);
    assert_eq!(first, vec![Ok(vec![Event::new("a")]), Ok(Vec::new())]);
    let second = native::process_events(&mut stage, &[Event::new("a"), Event::new("b")]);
    assert_eq!(second, vec![Ok(Vec::new()), Ok(vec![Event::new("b")])]);
}
