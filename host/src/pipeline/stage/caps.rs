//! Output caps: what one input event may become.
//!
//! A plugin's output has passed the contract's checks in the sandbox, which also charged the
//! whole call against `max_output_bytes` (`weir_sandbox::cost`: a call over it fails, and its
//! batch is split to find the events that cause it). The caps here are the stage's policy per
//! input on top: at most `max_output_events` outputs per input (an amplification bomb) and no
//! output value over `max_value_size` (one huge value copied by every later node). An input
//! whose outputs break a cap fails as `output-cap`; the others pass. [`violations`] is a pure
//! function of the output and the limits, and allocates nothing when every input is within
//! them. When the output's sizes alone show that no input can break a cap ([`surely_within`]),
//! it does not walk the events at all: that walk was a tenth of the CPU of a W1 run. When it
//! does walk, it reads two numbers per output event, never a header.

use weir_sandbox::Output;

use crate::config::Limits;

/// Whether no input can break a cap, judged in constant time from the output's sizes. The
/// sandbox has checked that every span lies inside the output's buffer, so no value is longer
/// than the buffer and no input has more outputs than the call.
fn surely_within(output: &Output, limits: &Limits) -> bool {
    output.events.len() <= limits.max_output_events
        && output.events.data.len() as u64 <= limits.max_value_size
}

/// The inputs (index within the call) whose outputs break a cap, with why.
pub fn violations(output: &Output, inputs: usize, limits: &Limits) -> Vec<(usize, String)> {
    if surely_within(output, limits) {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (i, range) in output.ranges(inputs).enumerate() {
        if range.len() > limits.max_output_events {
            found.push((
                i,
                format!(
                    "the plugin made {} events from one; the cap is {} (max_output_events)",
                    range.len(),
                    limits.max_output_events
                ),
            ));
            continue;
        }
        let big = range
            .map(|o| output.events.get(o).value().len() as u64)
            .find(|&value| value > limits.max_value_size);
        if let Some(value) = big {
            found.push((
                i,
                format!(
                    "the plugin made a {value}-byte value; the cap is {} (max_value_size)",
                    limits.max_value_size
                ),
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sandbox::Events;

    fn output(values: &[&[u8]], counts: Vec<u32>) -> Output {
        let mut events = Events::new();
        for v in values {
            events.push_value(v);
        }
        Output {
            events,
            counts,
            failures: Vec::new(),
        }
    }

    #[test]
    fn inputs_within_the_caps_cost_nothing() {
        let out = output(&[b"a", b"b"], Vec::new());
        let found = violations(&out, 2, &Limits::default());
        assert!(found.is_empty());
        assert_eq!(found.capacity(), 0, "no allocation on the common path");
    }

    #[test]
    fn a_call_far_below_every_cap_is_judged_without_a_walk() {
        let value = [b'x'; 100];
        let out = output(&[value.as_slice(); 256], Vec::new());
        assert!(surely_within(&out, &Limits::default()));
        let tight = Limits {
            max_value_size: 1000,
            ..Limits::default()
        };
        assert!(
            !surely_within(&out, &tight),
            "the buffer is over the value cap"
        );
        assert!(violations(&out, 256, &tight).is_empty(), "yet no value is");
    }

    #[test]
    fn each_cap_fails_only_the_inputs_that_break_it() {
        let limits = Limits {
            max_output_events: 2,
            max_value_size: 4,
            ..Limits::default()
        };
        // Input 0: three outputs; input 1: a 5-byte value; inputs 2 and 3: 4 bytes each.
        let out = output(
            &[b"a", b"b", b"c", b"12345", b"abcd", b"efgh"],
            vec![3, 1, 1, 1],
        );
        let found: Vec<(usize, bool)> = violations(&out, 4, &limits)
            .into_iter()
            .map(|(i, m)| (i, m.contains("max_")))
            .collect();
        assert_eq!(found, [(0, true), (1, true)]);
    }
}
