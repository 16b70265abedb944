//! `type = "generate"`: `count` made-up events of `size` bytes each (benchmark workload W1).

use std::ops::Range;

use crate::config::error::{ConfigError, Ctx, Sp, join};
use crate::config::ranges::{COUNT, GENERATE_SIZE};
use crate::config::reader::Table;
use crate::config::source::SourceKind;
use crate::config::units;

/// Bytes per value of a `generate` source, unless the file says otherwise (workload W1).
pub const DEFAULT_GENERATE_SIZE: usize = 100;

/// The keys of a `generate` source beyond the common ones.
pub(crate) const KEYS: &[&str] = &["count", "size", "keys", "event_time"];

/// A `generate` source as written.
pub(crate) struct Raw {
    pub count: Option<Sp<i128>>,
    pub size: Option<Sp<String>>,
    pub keys: Option<Sp<i128>>,
    pub event_time: Option<Sp<i128>>,
}

pub(crate) fn read(t: &Table) -> Result<Raw, ConfigError> {
    Ok(Raw {
        count: t.whole("count")?,
        size: t.size("size")?,
        keys: t.whole("keys")?,
        event_time: t.whole("event_time")?,
    })
}

/// `keys` of a `generate` source: distinct keys. At least 1; at most 10^12, as `count`.
const KEY_COUNT: std::ops::RangeInclusive<u64> = 1..=1_000_000_000_000;
/// `event_time` of a `generate` source: the first event's time, in milliseconds since the
/// Unix epoch, up to the year 9999 (a later one leaves no room for the events after it).
const EVENT_TIME: std::ops::RangeInclusive<u64> = 0..=253_402_300_799_000;

/// `kind` is the span of `type`, where a missing `count` is blamed.
pub(crate) fn check(
    cx: &Ctx,
    node: &str,
    kind: &Range<usize>,
    raw: &Raw,
) -> Result<SourceKind, ConfigError> {
    let Some(count) = &raw.count else {
        return Err(cx.err(
            kind,
            join(node, "count"),
            "a `generate` source needs `count`, the number of events to make",
        ));
    };
    let count = units::whole(cx, count, &join(node, "count"), &COUNT)?;
    let size = match &raw.size {
        // At most 16 MiB (GENERATE_SIZE), so the conversion to usize is exact.
        Some(v) => units::size(cx, v, &join(node, "size"), &GENERATE_SIZE)? as usize,
        None => DEFAULT_GENERATE_SIZE,
    };
    let keys = (raw.keys.as_ref())
        .map(|v| units::whole(cx, v, &join(node, "keys"), &KEY_COUNT))
        .transpose()?;
    let event_time = (raw.event_time.as_ref())
        .map(|v| units::whole(cx, v, &join(node, "event_time"), &EVENT_TIME))
        .transpose()?;
    Ok(SourceKind::Generate {
        count,
        size,
        keys,
        event_time,
    })
}
