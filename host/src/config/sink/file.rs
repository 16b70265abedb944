//! `type = "file"`: events appended to (or written over) a file, flushed or `fsync`ed before
//! their acknowledgement is released. [`WriteMode`] and [`SyncMode`] are shared with the
//! `[dead_letter]` file.

use std::ops::Range;

use crate::config::error::{ConfigError, Ctx, Sp, did_you_mean, join, list, shown};
use crate::config::reader::Table;
use crate::config::sink::SinkKind;

/// What a file sink does with what the file already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Keep it and write after it (the default: a second run never destroys the first's).
    Append,
    /// Start empty.
    Truncate,
}

/// How far written events must have gone before their acknowledgement is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Flushed to the operating system: a crash of the process loses nothing acknowledged.
    Flush,
    /// Flushed and `fsync`ed: a crash of the machine loses nothing acknowledged.
    Fsync,
}

/// The keys of a `file` sink beyond the common ones.
pub(crate) const KEYS: &[&str] = &["path", "mode", "sync"];

const MODES: &[&str] = &["append", "truncate"];
const SYNCS: &[&str] = &["flush", "fsync"];

/// A `file` sink as written.
pub(crate) struct Raw {
    pub path: Option<Sp<String>>,
    pub mode: Option<Sp<String>>,
    pub sync: Option<Sp<String>>,
}

pub(crate) fn read(t: &Table) -> Result<Raw, ConfigError> {
    Ok(Raw {
        path: t.text("path")?,
        mode: t.text("mode")?,
        sync: t.text("sync")?,
    })
}

/// `kind` is the span of `type`, where a missing `path` is blamed.
pub(crate) fn check(
    cx: &Ctx,
    node: &str,
    kind: &Range<usize>,
    raw: &Raw,
) -> Result<SinkKind, ConfigError> {
    match &raw.path {
        Some(p) => Ok(SinkKind::File {
            path: cx.path(p.get_ref()),
            mode: mode(cx, node, raw.mode.as_ref())?,
            sync: sync(cx, node, raw.sync.as_ref())?,
        }),
        None => Err(cx.err(
            kind,
            join(node, "path"),
            "a `file` sink needs `path`, the file to write",
        )),
    }
}

/// `mode`: `append` (the default) or `truncate`.
pub(crate) fn mode(
    cx: &Ctx,
    node: &str,
    raw: Option<&Sp<String>>,
) -> Result<WriteMode, ConfigError> {
    let Some(v) = raw else {
        return Ok(WriteMode::Append);
    };
    match v.get_ref().as_str() {
        "append" => Ok(WriteMode::Append),
        "truncate" => Ok(WriteMode::Truncate),
        other => Err(cx.err(
            &v.span(),
            join(node, "mode"),
            format!(
                "unknown mode {}: use {} (`append` keeps what the file holds){}",
                shown(other),
                list(MODES, "or"),
                did_you_mean(other, MODES)
            ),
        )),
    }
}

/// `sync`: `flush` (the default) or `fsync`.
pub(crate) fn sync(
    cx: &Ctx,
    node: &str,
    raw: Option<&Sp<String>>,
) -> Result<SyncMode, ConfigError> {
    let Some(v) = raw else {
        return Ok(SyncMode::Flush);
    };
    match v.get_ref().as_str() {
        "flush" => Ok(SyncMode::Flush),
        "fsync" => Ok(SyncMode::Fsync),
        other => Err(cx.err(
            &v.span(),
            join(node, "sync"),
            format!(
                "unknown sync {}: use {} (`fsync` survives a power loss, at a cost){}",
                shown(other),
                list(SYNCS, "or"),
                did_you_mean(other, SYNCS)
            ),
        )),
    }
}
