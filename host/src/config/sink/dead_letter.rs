//! `[dead_letter]`: where failed events go, as JSON lines: stderr unless the file names a
//! file. Its table is read here too, with the file sink's `mode` and `sync`.

use std::path::PathBuf;

use crate::config::error::{ConfigError, Ctx, Sp, did_you_mean, list, shown};
use crate::config::reader::Table;
use crate::config::sink::file::{SyncMode, WriteMode, mode, sync};

/// Where dead letters go: JSON lines, one per failed event.
#[derive(Debug, Clone)]
pub enum DeadLetterConfig {
    Stderr,
    File {
        path: PathBuf,
        mode: WriteMode,
        sync: SyncMode,
    },
}

/// The keys of `[dead_letter]`.
pub(crate) const KEYS: &[&str] = &["type", "path", "mode", "sync"];

const KINDS: &[&str] = &["file", "stderr"];

/// `[dead_letter]` as written.
pub(crate) struct RawDeadLetter {
    pub kind: Sp<String>,
    pub path: Option<Sp<String>>,
    pub mode: Option<Sp<String>>,
    pub sync: Option<Sp<String>>,
}

pub(crate) fn read(t: &Table) -> Result<RawDeadLetter, ConfigError> {
    let kind = t.text("type")?;
    Ok(RawDeadLetter {
        kind: t.required(
            kind,
            "type",
            "`[dead_letter]` needs `type`: `\"file\"` or `\"stderr\"`",
        )?,
        path: t.text("path")?,
        mode: t.text("mode")?,
        sync: t.text("sync")?,
    })
}

/// `[dead_letter]`: stderr unless the file names a file.
pub(crate) fn check(
    cx: &Ctx,
    raw: Option<&RawDeadLetter>,
) -> Result<DeadLetterConfig, ConfigError> {
    let Some(dl) = raw else {
        return Ok(DeadLetterConfig::Stderr);
    };
    match dl.kind.get_ref().as_str() {
        "stderr" => match dl.path.as_ref().or(dl.mode.as_ref()).or(dl.sync.as_ref()) {
            Some(p) => Err(cx.err(
                &p.span(),
                "dead_letter.path",
                "a `stderr` dead-letter sink takes no path, mode or sync: remove it, or use `type = \"file\"`",
            )),
            None => Ok(DeadLetterConfig::Stderr),
        },
        "file" => match &dl.path {
            Some(p) => Ok(DeadLetterConfig::File {
                path: cx.path(p.get_ref()),
                mode: mode(cx, "dead_letter", dl.mode.as_ref())?,
                sync: sync(cx, "dead_letter", dl.sync.as_ref())?,
            }),
            None => Err(cx.err(
                &dl.kind.span(),
                "dead_letter.path",
                "a `file` dead-letter sink needs `path`, the file to write",
            )),
        },
        other => Err(cx.err(
            &dl.kind.span(),
            "dead_letter.type",
            format!(
                "unknown dead-letter type {}: use {}{}",
                shown(other),
                list(KINDS, "or"),
                did_you_mean(other, KINDS)
            ),
        )),
    }
}
