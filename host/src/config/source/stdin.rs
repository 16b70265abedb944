//! `type = "stdin"`: one event per line of the standard input. It takes no keys beyond the
//! common ones.

use crate::config::error::ConfigError;
use crate::config::reader::Table;
use crate::config::source::SourceKind;

/// The keys of a `stdin` source beyond the common ones: none.
pub(crate) const KEYS: &[&str] = &[];

/// A `stdin` source as written: nothing of its own.
pub(crate) struct Raw;

pub(crate) fn read(_: &Table) -> Result<Raw, ConfigError> {
    Ok(Raw)
}

pub(crate) fn check(_: &Raw) -> SourceKind {
    SourceKind::Stdin
}
