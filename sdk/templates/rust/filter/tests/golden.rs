//! The stage's golden test, run natively (`cargo test`): every line of `golden/input.txt` is
//! an input event's value, every line of `golden/output.txt` an output event's value, in
//! order. The same code runs in the component; `weir plugin test` runs that one.

use weir_plugin::{Event, Failure, Settings, native};
use {{crate_name}}::Stage;

fn lines(name: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn run(settings: &[(&str, &str)], values: &[Vec<u8>]) -> Vec<Result<Vec<Event>, Failure>> {
    let pairs = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut stage: Stage = native::init(Settings::new(pairs)).expect("init");
    let events: Vec<Event> = values.iter().map(|v| Event::new(v.clone())).collect();
    native::process_events(&mut stage, &events)
}

fn values(outcomes: &[Result<Vec<Event>, Failure>]) -> Vec<Vec<u8>> {
    outcomes
        .iter()
        .flat_map(|o| o.as_ref().expect("no failure").iter().map(|e| e.value.clone()))
        .collect()
}

#[test]
fn golden() {
    assert_eq!(values(&run(&[], &lines("input.txt"))), lines("output.txt"));
}

#[test]
fn keeps_key_headers_and_timestamp() {
    let mut stage: Stage = native::init(Settings::new(Vec::new())).expect("init");
    let mut event = Event::new(lines("input.txt")[0].clone());
    event.key = Some(b"k".to_vec());
    event.headers = vec![("h".to_string(), b"v".to_vec())];
    event.timestamp = Some(1000);
    let out = native::process_event(&mut stage, &event).expect("no failure");
    for e in out {
        assert_eq!(e.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(e.headers, event.headers);
        assert_eq!(e.timestamp, Some(1000));
    }
}

#[test]
fn rejects_an_empty_value() {
    let outcomes = run(&[], &[b"a".to_vec(), Vec::new(), b"DEBUG x".to_vec()]);
    assert_eq!(outcomes[0].as_ref().map(Vec::len), Ok(1));
    assert_eq!(outcomes[1], Err(Failure::reject("empty value")));
    assert_eq!(outcomes[2].as_ref().map(Vec::len), Ok(0));
}

#[test]
fn settings() {
    let outcomes = run(&[("ignore-case", "true")], &[b"Debug x".to_vec(), b"y".to_vec()]);
    assert_eq!(values(&outcomes), vec![b"y".to_vec()]);
}

#[test]
fn a_bad_boolean_fails_init() {
    let settings = Settings::new(vec![("ignore-case".into(), "yes".into())]);
    assert!(native::init::<Stage>(settings).is_err());
}
