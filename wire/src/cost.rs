//! What a guest's output costs the host, and the bounded passes that find out before anything
//! is copied, stripped, validated or encoded.
//!
//! A packed batch lets a guest say much in few bytes: a thousand events may point at the same
//! 8 MiB value, every event may reference the same 20,000 headers, a header column may hold
//! millions of entries that nobody references. Everything the host does later (strip reserved
//! headers, adapt to 0.1, encode for a sink, copy into a dead letter) walks what the events
//! reference, not the buffer, so the size the host charges a call is that walk:
//!
//! ```text
//! charge = Σ events            (EVENT_COST  + value length + key length)
//!        + Σ header entries    (HEADER_COST + name length)            the column, each name checked once
//!        + Σ header references (HEADER_COST + name length + value length), shared or not
//! ```
//!
//! [`charge`] computes it in passes that each stop as soon as the running total passes the
//! cap, so the work done on a refused call is bounded by the cap, and the work done on an
//! accepted one by its charge:
//! 1. the columns' shapes and the hard limits, from their lengths alone (constant time);
//! 2. the events (each span inside the buffer, each header range inside the column);
//! 3. the header column (each span inside the buffer);
//! 4. the header references (at most `cap / HEADER_COST` of them reach this pass);
//! 5. each header name's UTF-8, once per column entry (at most the charged name bytes).
//!
//! A refusal is either a broken contract ([`Breach::Malformed`]: a span outside the buffer, a
//! column of the wrong shape) or an output over a limit ([`Breach::OverCap`]).

use crate::{BatchRef, EVENT_STRIDE, HEADER_STRIDE, NO_KEY};

/// What an output event costs beyond its bytes: its six column numbers and a timestamp. Blocks
/// a flood of empty events, which cost the host columns, views and sink lines, not bytes.
pub const EVENT_COST: u64 = 32;
/// What a header costs beyond its bytes, for each column entry and each reference: its four
/// column numbers. Blocks empty headers referenced many times, which cost the host a column
/// entry each in every copy (the 0.1 adapter, a slow-path copy, a sink line) but no bytes.
pub const HEADER_COST: u64 = 16;
/// Output events one call may return, whatever the caps. Blocks a column so long that a
/// single pass over it, before any cap can be judged, costs real time.
pub const MAX_EVENTS_PER_CALL: usize = 1 << 20;
/// Header-column entries one call may return, referenced or not. Blocks the same, for the
/// header column.
pub const MAX_HEADERS_PER_CALL: usize = 1 << 20;
/// Headers one output event may reference. Blocks an event whose every copy (the 0.1
/// adapter makes two allocations per header) costs far more than its bytes.
pub const MAX_HEADERS_PER_EVENT: u32 = 1024;

/// Why a guest's output was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breach {
    /// The output breaks the contract's encoding.
    Malformed(String),
    /// The output is over the stage's `max_output_bytes` or one of the hard limits above.
    OverCap(String),
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Breach::Malformed(message) | Breach::OverCap(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Breach {}

/// What an accepted output was found to hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    /// The bytes charged, as the formula in the module doc.
    pub bytes: u64,
    /// Whether any header entry's name starts with `weir.`: the caller strips them.
    pub reserved: bool,
    /// Items the passes looked at (columns entries, references, name bytes / 64): what a
    /// property test holds against the charge.
    pub work: u64,
}

/// Header names the host keeps for itself.
pub const RESERVED_PREFIX: &[u8] = b"weir.";

/// Checks `batch` as [`charge`] does with no cap, less the pass that only adds up the header
/// references' bytes (pass 4): it can refuse nothing that pass 2 let through.
pub fn check(batch: BatchRef<'_>) -> Result<(), Breach> {
    let mut meter = Meter {
        cap: u64::MAX,
        bytes: 0,
        work: 0,
    };
    shapes(batch, &mut meter)?;
    events(batch, &mut meter)?;
    let names = header_entries(batch, &mut meter)?;
    validate_names(batch, names, &mut meter)?;
    Ok(())
}

/// Charges `batch` against `cap` bytes; see the module doc for the passes.
pub fn charge(batch: BatchRef<'_>, cap: u64) -> Result<Charge, Breach> {
    metered(batch, cap).0
}

/// What the passes of a charge counted, whether they accepted the batch or not.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metered {
    /// Bytes charged when the passes stopped; over the cap by the last item's cost when
    /// they stopped there.
    pub bytes: u64,
    /// Items the passes looked at, as [`Charge::work`].
    pub work: u64,
}

/// [`charge`], and what its passes counted even when they refused the batch: the property
/// test of guest outputs (`tests/guest_output.rs`) holds a refused call's work against it.
#[doc(hidden)]
pub fn metered(batch: BatchRef<'_>, cap: u64) -> (Result<Charge, Breach>, Metered) {
    let mut meter = Meter {
        cap,
        bytes: 0,
        work: 0,
    };
    let result = passes(batch, &mut meter);
    let counted = Metered {
        bytes: meter.bytes,
        work: meter.work,
    };
    let result = result.map(|reserved| Charge {
        bytes: meter.bytes,
        reserved,
        work: meter.work,
    });
    (result, counted)
}

/// The five passes; returns whether any header name is reserved.
fn passes(batch: BatchRef<'_>, meter: &mut Meter) -> Result<bool, Breach> {
    shapes(batch, meter)?;
    events(batch, meter)?;
    let names = header_entries(batch, meter)?;
    references(batch, meter)?;
    validate_names(batch, names, meter)
}

/// The running total, refused as soon as it passes the cap.
struct Meter {
    cap: u64,
    bytes: u64,
    work: u64,
}

impl Meter {
    fn add(&mut self, bytes: u64) -> Result<(), Breach> {
        self.bytes = self.bytes.saturating_add(bytes);
        self.work += 1;
        if self.bytes > self.cap {
            return Err(Breach::OverCap(format!(
                "the call's output costs more than {} bytes (max_output_bytes); \
                 each event costs {EVENT_COST} bytes and each header reference \
                 {HEADER_COST} bytes beyond their contents",
                self.cap
            )));
        }
        Ok(())
    }
}

fn malformed<T>(message: String) -> Result<T, Breach> {
    Err(Breach::Malformed(message))
}

/// Pass 1: the columns' shapes and the hard limits, from their lengths.
fn shapes(batch: BatchRef<'_>, meter: &mut Meter) -> Result<(), Breach> {
    if !batch.events.len().is_multiple_of(EVENT_STRIDE) {
        return malformed(format!(
            "the events column has {} numbers, not a multiple of {EVENT_STRIDE}",
            batch.events.len()
        ));
    }
    if !batch.headers.len().is_multiple_of(HEADER_STRIDE) {
        return malformed(format!(
            "the headers column has {} numbers, not a multiple of {HEADER_STRIDE}",
            batch.headers.len()
        ));
    }
    let n = batch.len();
    let h = batch.headers.len() / HEADER_STRIDE;
    if !batch.timestamps.is_empty() && batch.timestamps.len() != n {
        return malformed(format!(
            "{} timestamps for {n} events (there must be none or one per event)",
            batch.timestamps.len()
        ));
    }
    if n > MAX_EVENTS_PER_CALL {
        return Err(Breach::OverCap(format!(
            "the call returned {n} events; a call may return at most {MAX_EVENTS_PER_CALL}"
        )));
    }
    if h > MAX_HEADERS_PER_CALL {
        return Err(Breach::OverCap(format!(
            "the call returned {h} headers; a call may return at most {MAX_HEADERS_PER_CALL}"
        )));
    }
    meter.add(n as u64 * EVENT_COST + h as u64 * HEADER_COST)
}

/// Pass 2: each event's spans and header range, its bytes and its references' fixed cost.
fn events(batch: BatchRef<'_>, meter: &mut Meter) -> Result<(), Breach> {
    let size = batch.data.len() as u64;
    let inside = |start: u32, len: u32| u64::from(start) + u64::from(len) <= size;
    let entries = (batch.headers.len() / HEADER_STRIDE) as u64;
    for (i, e) in batch.events.chunks_exact(EVENT_STRIDE).enumerate() {
        if !inside(e[0], e[1]) {
            return malformed(format!(
                "event {i}: its value ({} bytes at {}) is outside the {size}-byte buffer",
                e[1], e[0]
            ));
        }
        let key = if e[3] == NO_KEY {
            0
        } else if inside(e[2], e[3]) {
            e[3]
        } else {
            return malformed(format!(
                "event {i}: its key ({} bytes at {}) is outside the {size}-byte buffer",
                e[3], e[2]
            ));
        };
        if e[5] > 0 && u64::from(e[4]) + u64::from(e[5]) > entries {
            return malformed(format!(
                "event {i}: its headers {}..{} are outside the {entries} headers",
                e[4],
                u64::from(e[4]) + u64::from(e[5])
            ));
        }
        if e[5] > MAX_HEADERS_PER_EVENT {
            return Err(Breach::OverCap(format!(
                "event {i} references {} headers; an event may reference at most \
                 {MAX_HEADERS_PER_EVENT}",
                e[5]
            )));
        }
        meter.add(u64::from(e[1]) + u64::from(key) + u64::from(e[5]) * HEADER_COST)?;
    }
    Ok(())
}

/// Pass 3: each header entry's spans and its name's bytes; returns whether any entry has a
/// name (pass 5 has work only then).
fn header_entries(batch: BatchRef<'_>, meter: &mut Meter) -> Result<bool, Breach> {
    let size = batch.data.len() as u64;
    let inside = |start: u32, len: u32| u64::from(start) + u64::from(len) <= size;
    let mut names = false;
    for (h, f) in batch.headers.chunks_exact(HEADER_STRIDE).enumerate() {
        if !inside(f[0], f[1]) || !inside(f[2], f[3]) {
            return malformed(format!(
                "header {h}: its name or value is outside the {size}-byte buffer"
            ));
        }
        names |= f[1] > 0;
        meter.add(u64::from(f[1]))?;
    }
    Ok(names)
}

/// Pass 4: every header reference's bytes. Pass 2 charged `HEADER_COST` for each, so at most
/// `cap / HEADER_COST` references are walked.
fn references(batch: BatchRef<'_>, meter: &mut Meter) -> Result<(), Breach> {
    if batch.headers.is_empty() {
        return Ok(());
    }
    for e in batch.events.chunks_exact(EVENT_STRIDE) {
        let first = e[4] as usize;
        for h in first..first + e[5] as usize {
            let f = &batch.headers[h * HEADER_STRIDE..h * HEADER_STRIDE + HEADER_STRIDE];
            meter.add(u64::from(f[1]) + u64::from(f[3]))?;
        }
    }
    Ok(())
}

/// Pass 5: each entry's name is UTF-8, checked once per entry (pass 3 charged its bytes);
/// returns whether any name is reserved.
fn validate_names(batch: BatchRef<'_>, any: bool, meter: &mut Meter) -> Result<bool, Breach> {
    let mut reserved = false;
    if !any {
        return Ok(false);
    }
    for (h, f) in batch.headers.chunks_exact(HEADER_STRIDE).enumerate() {
        let name = &batch.data[f[0] as usize..(f[0] + f[1]) as usize];
        meter.work += 1 + name.len() as u64 / 64;
        if std::str::from_utf8(name).is_err() {
            return malformed(format!("header {h}: its name is not UTF-8"));
        }
        reserved |= name.starts_with(RESERVED_PREFIX);
    }
    Ok(reserved)
}

/// Removes every header reference whose name starts with [`RESERVED_PREFIX`] from a charged
/// batch (its buffer, events and headers columns), and returns how many. The header column is
/// rewritten (one entry per kept reference, so at most the references the charge paid for);
/// the data buffer, and so every value, is left as it is.
pub fn strip_reserved(data: &[u8], events: &mut [u32], headers: &mut Vec<u32>) -> u64 {
    let mut kept: Vec<u32> = Vec::new();
    let mut stripped = 0u64;
    for e in events.chunks_exact_mut(EVENT_STRIDE) {
        let first = kept.len() / HEADER_STRIDE;
        let mut count = 0u32;
        for h in e[4] as usize..e[4] as usize + e[5] as usize {
            let f = &headers[h * HEADER_STRIDE..h * HEADER_STRIDE + HEADER_STRIDE];
            if data[f[0] as usize..(f[0] + f[1]) as usize].starts_with(RESERVED_PREFIX) {
                stripped += 1;
            } else {
                kept.extend_from_slice(f);
                count += 1;
            }
        }
        // `first` fits: the kept entries are at most the references, under the hard limits.
        e[4] = if count == 0 { 0 } else { first as u32 };
        e[5] = count;
    }
    *headers = kept;
    stripped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Batch;

    fn strip(batch: &mut Batch) -> u64 {
        strip_reserved(&batch.data, &mut batch.events, &mut batch.headers)
    }

    fn over(result: Result<Charge, Breach>) -> bool {
        matches!(result, Err(Breach::OverCap(_)))
    }

    #[test]
    fn an_honest_batch_costs_its_bytes_and_its_columns() {
        let mut batch = Batch::new();
        batch.writer().push_value(b"abc");
        batch.writer().push_parts(
            Some(b"k"),
            b"v",
            [(b"n".as_slice(), b"xy".as_slice())],
            None,
        );
        let charge = charge(batch.columns(), u64::MAX).unwrap();
        // Two events, one header entry (name 1), one reference (name 1 + value 2).
        let expected = 2 * EVENT_COST + 3 + 2 + HEADER_COST + 1 + HEADER_COST + 3;
        assert_eq!(charge.bytes, expected);
        assert!(!charge.reserved);
    }

    #[test]
    fn aliased_values_are_charged_once_per_event() {
        let mut batch = Batch::new();
        batch.writer().push_value(&[b'x'; 4096]);
        for _ in 0..255 {
            batch.events.extend_from_slice(&[0, 4096, 0, NO_KEY, 0, 0]);
        }
        assert!(
            over(charge(batch.columns(), 1 << 20)),
            "256 × 4 KiB > 1 MiB"
        );
        assert!(charge(batch.columns(), 2 << 20).is_ok());
    }

    #[test]
    fn shared_empty_headers_are_charged_per_reference() {
        let mut batch = Batch::new();
        batch.data.push(b'v');
        batch.headers = vec![0; 4 * 1000];
        for _ in 0..256 {
            batch.events.extend_from_slice(&[0, 1, 0, NO_KEY, 0, 1000]);
        }
        assert!(
            over(charge(batch.columns(), 1 << 20)),
            "256 × 1000 references"
        );
        let many = batch.clone();
        let mut one = many.clone();
        one.events.truncate(EVENT_STRIDE);
        assert!(charge(one.columns(), 1 << 20).is_ok());
    }

    #[test]
    fn unreferenced_names_over_one_buffer_are_refused_before_validation() {
        let mut batch = Batch::new();
        batch.data = vec![0xff; 1 << 20];
        batch.headers = [0, 1 << 20, 0, 0].repeat(1000);
        let result = charge(batch.columns(), 64 << 20);
        assert!(over(result), "1000 × 1 MiB of names");
    }

    #[test]
    fn the_hard_limits_are_judged_from_lengths() {
        let mut batch = Batch::new();
        batch.headers = vec![0; (MAX_HEADERS_PER_CALL + 1) * HEADER_STRIDE];
        let err = charge(batch.columns(), u64::MAX).unwrap_err();
        assert!(err.to_string().contains("at most 1048576"), "{err}");
        let mut batch = Batch::new();
        batch.headers = vec![0; 2000 * HEADER_STRIDE];
        batch.events = vec![0, 0, 0, NO_KEY, 0, 2000];
        assert!(over(charge(batch.columns(), u64::MAX)));
    }

    #[test]
    fn reserved_headers_are_stripped_without_touching_the_buffer() {
        let mut batch = Batch::new();
        batch.writer().push_parts(
            None,
            b"value",
            [
                (b"weir.src".as_slice(), b"forged".as_slice()),
                (b"trace", b"1"),
                (b"weir.version.x", b"forged"),
            ],
            None,
        );
        batch.writer().push_parts(
            None,
            b"other",
            [(b"weir.a".as_slice(), b"".as_slice())],
            None,
        );
        let charged = charge(batch.columns(), u64::MAX).unwrap();
        assert!(charged.reserved);
        let data = batch.data.clone();
        assert_eq!(strip(&mut batch), 3);
        assert_eq!(batch.data, data);
        let headers: Vec<_> = batch.columns().get(0).unwrap().headers().collect();
        assert_eq!(headers, [(b"trace".as_slice(), b"1".as_slice())]);
        assert_eq!(batch.columns().get(1).unwrap().header_count(), 0);
        assert_eq!(batch.columns().get(0).unwrap().value(), b"value");
        assert!(charge(batch.columns(), u64::MAX).is_ok());
    }

    #[test]
    fn malformed_columns_are_told_apart_from_caps() {
        let mut batch = Batch::new();
        batch.writer().push_value(b"abc");
        batch.events[1] = 4;
        assert!(matches!(
            charge(batch.columns(), u64::MAX),
            Err(Breach::Malformed(_))
        ));
        let mut batch = Batch::new();
        batch
            .writer()
            .push_parts(None, b"v", [(b"n".as_slice(), b"x".as_slice())], None);
        batch.data[1] = 0xff;
        let err = charge(batch.columns(), u64::MAX).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
