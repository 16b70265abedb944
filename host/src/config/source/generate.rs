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
pub(crate) const KEYS: &[&str] = &["count", "size"];

/// A `generate` source as written.
pub(crate) struct Raw {
    pub count: Option<Sp<i128>>,
    pub size: Option<Sp<String>>,
}

pub(crate) fn read(t: &Table) -> Result<Raw, ConfigError> {
    Ok(Raw {
        count: t.whole("count")?,
        size: t.size("size")?,
    })
}

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
    Ok(SourceKind::Generate { count, size })
}
