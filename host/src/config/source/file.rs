//! `type = "file"`: one event per line of a file, read `repeat` times in a row.

use std::ops::Range;

use crate::config::error::{ConfigError, Ctx, Sp, join, plain};
use crate::config::ranges::REPEAT;
use crate::config::reader::Table;
use crate::config::source::SourceKind;
use crate::config::units;

/// The keys of a `file` source beyond the common ones.
pub(crate) const KEYS: &[&str] = &["path", "repeat"];

/// A `file` source as written.
pub(crate) struct Raw {
    pub path: Option<Sp<String>>,
    pub repeat: Option<Sp<i128>>,
}

pub(crate) fn read(t: &Table) -> Result<Raw, ConfigError> {
    Ok(Raw {
        path: t.text("path")?,
        repeat: t.whole("repeat")?,
    })
}

/// The file must exist now, so that a typo fails at load rather than at run; `kind` is the
/// span of `type`, where a missing `path` is blamed.
pub(crate) fn check(
    cx: &Ctx,
    node: &str,
    kind: &Range<usize>,
    raw: &Raw,
) -> Result<SourceKind, ConfigError> {
    let path = existing_file(
        cx,
        node,
        kind,
        raw.path.as_ref(),
        "a `file` source needs `path`, the file to read one event per line from",
    )?;
    let repeat = match &raw.repeat {
        Some(v) => units::whole(cx, v, &join(node, "repeat"), &REPEAT)?,
        None => 1,
    };
    Ok(SourceKind::File { path, repeat })
}

/// The file a source's `path` names, which must exist now (so that a typo fails at load, not
/// at run): `needs` says what is missing when `path` is not given, blamed on `kind`, the span
/// of `type`.
pub(crate) fn existing_file(
    cx: &Ctx,
    node: &str,
    kind: &Range<usize>,
    written: Option<&Sp<String>>,
    needs: &str,
) -> Result<std::path::PathBuf, ConfigError> {
    let Some(written) = written else {
        return Err(cx.err(kind, join(node, "path"), needs));
    };
    let path = cx.path(written.get_ref());
    if !path.is_file() {
        return Err(cx.err(
            &written.span(),
            join(node, "path"),
            format!("no such file: {}", plain(&path.display().to_string())),
        ));
    }
    Ok(path)
}
