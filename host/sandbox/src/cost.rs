//! What a guest's output costs the host, and the bounded passes that find out before anything
//! is copied, stripped, validated or encoded: [`weir_wire::cost`], which the Rust SDK checks
//! with too, here over the host's [`Events`].
//!
//! ```text
//! charge = Σ events            (EVENT_COST  + value length + key length)
//!        + Σ header entries    (HEADER_COST + name length)            the column, each name checked once
//!        + Σ header references (HEADER_COST + name length + value length), shared or not
//! ```

pub use weir_wire::cost::{
    Breach, Charge, EVENT_COST, HEADER_COST, MAX_EVENTS_PER_CALL, MAX_HEADERS_PER_CALL,
    MAX_HEADERS_PER_EVENT, Metered, RESERVED_PREFIX,
};

use crate::events::Events;

/// Charges `batch` against `cap` bytes; see [`weir_wire::cost`] for the passes.
pub fn charge(batch: &Events, cap: u64) -> Result<Charge, Breach> {
    weir_wire::cost::charge(batch.columns(), cap)
}

/// [`charge`], and what its passes counted even when they refused the batch.
#[doc(hidden)]
pub fn metered(batch: &Events, cap: u64) -> (Result<Charge, Breach>, Metered) {
    weir_wire::cost::metered(batch.columns(), cap)
}

/// Removes every header reference whose name starts with [`RESERVED_PREFIX`] from a charged
/// batch, and returns how many. The header column is rewritten (one entry per kept
/// reference, so at most the references the charge paid for); the data buffer, and so every
/// value, is left as it is.
pub fn strip_reserved(batch: &mut Events) -> u64 {
    let Events {
        data,
        events,
        headers,
        ..
    } = batch;
    weir_wire::cost::strip_reserved(data, events, headers)
}

// The passes themselves are tested in `weir-wire`; these hold the wrappers over `Events`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_honest_batch_costs_its_bytes_and_its_columns() {
        let mut batch = Events::new();
        batch.push_value(b"abc");
        batch.push_parts(
            Some(b"k"),
            b"v",
            [(b"n".as_slice(), b"xy".as_slice())],
            None,
        );
        let charge = charge(&batch, u64::MAX).unwrap();
        // Two events, one header entry (name 1), one reference (name 1 + value 2).
        let expected = 2 * EVENT_COST + 3 + 2 + HEADER_COST + 1 + HEADER_COST + 3;
        assert_eq!(charge.bytes, expected);
        assert!(!charge.reserved);
    }

    #[test]
    fn reserved_headers_are_stripped_without_touching_the_buffer() {
        let mut batch = Events::new();
        batch.push_parts(
            None,
            b"value",
            [
                (b"weir.src".as_slice(), b"forged".as_slice()),
                (b"trace", b"1"),
                (b"weir.version.x", b"forged"),
            ],
            None,
        );
        batch.push_parts(
            None,
            b"other",
            [(b"weir.a".as_slice(), b"".as_slice())],
            None,
        );
        let charged = charge(&batch, u64::MAX).unwrap();
        assert!(charged.reserved);
        let data = batch.data.clone();
        assert_eq!(strip_reserved(&mut batch), 3);
        assert_eq!(batch.data, data);
        let headers: Vec<_> = batch.get(0).headers().collect();
        assert_eq!(headers, [(b"trace".as_slice(), b"1".as_slice())]);
        assert_eq!(batch.get(1).header_count(), 0);
        assert_eq!(batch.get(0).value(), b"value");
        assert!(charge(&batch, u64::MAX).is_ok());
    }

    #[test]
    fn malformed_columns_are_told_apart_from_caps() {
        let mut batch = Events::new();
        batch.push_value(b"abc");
        batch.events[1] = 4;
        assert!(matches!(
            charge(&batch, u64::MAX),
            Err(Breach::Malformed(_))
        ));
        let mut batch = Events::new();
        batch.push_parts(None, b"v", [(b"n".as_slice(), b"x".as_slice())], None);
        batch.data[1] = 0xff;
        let err = charge(&batch, u64::MAX).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
