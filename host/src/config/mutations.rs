//! A property test: thousands of mutated pipeline files through [`Pipeline::parse`]. Whatever
//! the text, parsing must not panic, and every error must name a line or a key and print as
//! one line without control characters. The generator is `fastrand` with a fixed seed, so a
//! failure names a case that fails the same way on every run.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::config::tests::{BASE, Fixture};
use crate::config::{ConfigError, Pipeline};

const SEED: u64 = 0x7765_6972_0001;
const CASES: usize = 10_000;

/// A second valid file, for the kinds and keys `BASE` leaves out (stdin, stdout, null,
/// stderr, a source's own batch size and linger, fan-in from a source and a stage).
const OTHER: &str = r#"[sources.input]
type = "stdin"
batch_size = 64
linger = "1ms"

[stages.upper]
inputs = ["input"]
plugin = "p.wasm"
on_error = "stop"

[stages.lower]
inputs = ["upper", "input"]
plugin = "p.wasm"
on_error = "drop"
workers = 4

[sinks.screen]
inputs = ["lower"]
type = "stdout"

[sinks.count]
inputs = ["upper", "lower"]
type = "null"
encoding = "text"

[dead_letter]
type = "stderr"
"#;

/// Values that break ranges, types and parsers.
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "65537",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999999999999999999999999",
    "0x7fffffffffffffff",
    "0o777",
    "1e308",
    "-1e308",
    "inf",
    "-inf",
    "nan",
    "0.5",
    "1.5",
    "true",
    "\"\"",
    "\"twice\"",
    "\"20000000000000000000s\"",
    "\"18446744073709551615s\"",
    "\"1e400s\"",
    "\"0.000000000000000000000000000001s\"",
    "\"999999999999GiB\"",
    "\"4GiB\"",
    "\"0ms\"",
    "\"-1s\"",
    "\"a\\u0000b\"",
    "\"a\\u001b[31mb\"",
    "\"line\\nbreak\"",
    "\"/\"",
    "\"..\"",
    "\"/data/../..\"",
    "[]",
    "[[]]",
    "[\"\"]",
    "[1, 2]",
    "{}",
    "{ a = { b = 1 } }",
    "1979-05-27T07:32:00Z",
    "'''multi\nline'''",
];

/// Characters to drop into a line.
const CHARS: &[char] = &[
    '\0', '\x1b', '\n', '\r', '\t', '\x7f', '\u{2028}', '\u{feff}', '"', '\'', '[', ']', '{', '}',
    '=', '.', '#', '\\', ',', ' ', 'é',
];

fn mutate(rng: &mut fastrand::Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for _ in 0..rng.usize(1..=4) {
        if lines.is_empty() {
            break;
        }
        let i = rng.usize(..lines.len());
        match rng.u8(..7) {
            0 | 1 => lines[i] = replace_value(rng, &lines[i]),
            2 => {
                let at = boundary(rng, &lines[i]);
                let c = CHARS[rng.usize(..CHARS.len())];
                lines[i].insert(at, c);
            }
            3 => {
                lines.remove(i);
            }
            4 => {
                let copy = lines[i].clone();
                lines.insert(rng.usize(..=lines.len()), copy);
            }
            5 => {
                let j = rng.usize(..lines.len());
                lines.swap(i, j);
            }
            _ => {
                let mut long = String::from("x");
                long.push_str(&"y".repeat(rng.usize(60..5000)));
                lines[i] = lines[i].replacen("parse", &long, 1);
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    if rng.u8(..8) == 0 {
        out.truncate(boundary(rng, &out));
    }
    out
}

/// Replaces one value of a line (after one of its `=`) by one of [`VALUES`].
fn replace_value(rng: &mut fastrand::Rng, line: &str) -> String {
    let starts: Vec<usize> = line.match_indices("= ").map(|(i, _)| i + 2).collect();
    if starts.is_empty() {
        return line.to_string();
    }
    let start = starts[rng.usize(..starts.len())];
    let rest = &line[start..];
    // The value runs to the next `,` or `}` of an inline table, or to the end of the line.
    let end = start + rest.find([',', '}']).unwrap_or(rest.len());
    let value = VALUES[rng.usize(..VALUES.len())];
    format!("{}{value}{}", &line[..start], &line[end..])
}

/// A random char boundary of `text`.
fn boundary(rng: &mut fastrand::Rng, text: &str) -> usize {
    let mut at = rng.usize(..=text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// What is wrong with an error, if anything.
fn misplaced(err: &ConfigError, text: &str) -> Option<String> {
    let lines = text.lines().count() + 1;
    let shown = err.to_string();
    if err.line.is_none() && err.key.is_none() {
        return Some(format!("no line and no key: {shown}"));
    }
    if err.line.is_some_and(|l| l == 0 || l > lines) {
        return Some(format!("line outside the file ({lines} lines): {shown}"));
    }
    if shown.chars().any(char::is_control) {
        return Some(format!("a control character in the message: {shown:?}"));
    }
    None
}

#[test]
fn mutated_pipeline_files_never_panic_and_every_error_has_a_place() {
    let fx = Fixture::new();
    let mut rng = fastrand::Rng::with_seed(SEED);
    let (mut accepted, mut syntax, mut checked) = (0, 0, 0);
    let mut failures = Vec::new();
    for case in 0..CASES {
        let base = if rng.bool() { BASE } else { OTHER };
        let text = mutate(&mut rng, base);
        match catch_unwind(AssertUnwindSafe(|| fx.parse(&text))) {
            Err(_) => failures.push(format!("case {case} panicked on:\n{text}")),
            Ok(Ok(_)) => accepted += 1,
            Ok(Err(e)) => {
                if e.message.starts_with("not valid TOML") {
                    syntax += 1;
                } else {
                    checked += 1;
                }
                if let Some(problem) = misplaced(&e, &text) {
                    failures.push(format!("case {case}: {problem}\n{text}"));
                }
            }
        }
        if failures.len() >= 5 {
            break;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The mutations must reach past the TOML parser, and leave some files valid.
    assert!(checked > CASES / 4, "only {checked} errors past the parser");
    assert!(accepted > CASES / 50, "only {accepted} files accepted");
    assert!(syntax > 0, "no syntax error at all");
}

#[test]
fn the_unmutated_files_are_valid() {
    let fx = Fixture::new();
    for text in [BASE, OTHER] {
        if let Err(e) = fx.parse(text) {
            panic!("{e}");
        }
    }
    let p: Pipeline = fx.parse(OTHER).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.stages[0].name, "upper", "upstream first");
}
