//! Output caps: what one input event may become.
//!
//! A plugin's output passes the contract's checks in the sandbox; the caps are the stage's
//! policy on top: at most `max_output_events` outputs per input (an amplification bomb), no
//! output value over `max_value_size` (one huge value copied by every later node), and at most
//! `max_output_bytes` per call (the data one call hands the host). An input whose outputs
//! break a cap fails as `output-cap`; the others pass. [`violations`] is a pure function of
//! the output and the limits, and allocates nothing when every input is within them.

use weir_sandbox::Output;

use crate::config::Limits;

/// The inputs (index within the call) whose outputs break a cap, with why.
pub(crate) fn violations(output: &Output, inputs: usize, limits: &Limits) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut call_bytes = 0u64;
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
        let mut bytes = 0u64;
        let mut big = None;
        for o in range {
            let event = output.events.get(o);
            let value = event.value().len() as u64;
            if value > limits.max_value_size {
                big = Some(value);
                break;
            }
            bytes += event.size() as u64;
        }
        if let Some(value) = big {
            found.push((
                i,
                format!(
                    "the plugin made a {value}-byte value; the cap is {} (max_value_size)",
                    limits.max_value_size
                ),
            ));
        } else if call_bytes + bytes > limits.max_output_bytes {
            found.push((
                i,
                format!(
                    "the call's output would pass {} bytes (max_output_bytes)",
                    limits.max_output_bytes
                ),
            ));
        } else {
            call_bytes += bytes;
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
    fn each_cap_fails_only_the_inputs_that_break_it() {
        let limits = Limits {
            max_output_events: 2,
            max_value_size: 4,
            max_output_bytes: 6,
            ..Limits::default()
        };
        // Input 0: three outputs; input 1: a 5-byte value; input 2: 4 bytes; input 3: 4 more.
        let out = output(
            &[b"a", b"b", b"c", b"12345", b"abcd", b"efgh"],
            vec![3, 1, 1, 1],
        );
        let found: Vec<(usize, bool)> = violations(&out, 4, &limits)
            .into_iter()
            .map(|(i, m)| (i, m.contains("max_")))
            .collect();
        assert_eq!(found, [(0, true), (1, true), (3, true)]);
    }
}
