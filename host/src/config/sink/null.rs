//! `type = "null"`: counts events and bytes, writes nothing. It takes no keys beyond the
//! common ones.

use crate::config::error::ConfigError;
use crate::config::reader::Table;
use crate::config::sink::SinkKind;

/// The keys of a `null` sink beyond the common ones: none.
pub(crate) const KEYS: &[&str] = &[];

/// A `null` sink as written: nothing of its own.
pub(crate) struct Raw;

pub(crate) fn read(_: &Table) -> Result<Raw, ConfigError> {
    Ok(Raw)
}

pub(crate) fn check(_: &Raw) -> SinkKind {
    SinkKind::Null
}
