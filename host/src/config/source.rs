//! `[sources.NAME]`: stdin, a file read `repeat` times, or `count` generated events.

use std::ops::Range;
use std::time::Duration;

use crate::config::error::{ConfigError, Ctx, did_you_mean, join, list, plain, shown};
use crate::config::ranges::{BATCH_SIZE, COUNT, GENERATE_SIZE, LINGER, REPEAT};
use crate::config::raw::RawSource;
use crate::config::units;
use crate::config::{DEFAULT_GENERATE_SIZE, Source, SourceKind};

const KINDS: &[&str] = &["stdin", "file", "generate"];

/// One source; `batch_size` and `linger` are the pipeline's, for a source that sets neither.
pub(crate) fn check(
    cx: &Ctx,
    name: &str,
    raw: &RawSource,
    batch_size: usize,
    linger: Duration,
) -> Result<Source, ConfigError> {
    let node = join("sources", name);
    let key = |k: &str| join(&node, k);
    let kind = match raw.kind.get_ref().as_str() {
        "stdin" => {
            unused(
                cx,
                &node,
                raw,
                "stdin",
                &["path", "repeat", "count", "size"],
            )?;
            SourceKind::Stdin
        }
        "file" => file(cx, &node, raw)?,
        "generate" => generate(cx, &node, raw)?,
        other => {
            return Err(cx.err(
                &raw.kind.span(),
                key("type"),
                format!(
                    "unknown source type {}: use {}{}",
                    shown(other),
                    list(KINDS, "or"),
                    did_you_mean(other, KINDS)
                ),
            ));
        }
    };
    Ok(Source {
        name: name.to_string(),
        kind,
        batch_size: match &raw.batch_size {
            Some(v) => units::whole(cx, v, &key("batch_size"), &BATCH_SIZE)?,
            None => batch_size,
        },
        linger: match &raw.linger {
            Some(v) => units::duration(cx, v, &key("linger"), &LINGER)?,
            None => linger,
        },
    })
}

/// Keys a source type does not use are refused, not ignored: a typo'd setup must not run
/// quietly with defaults.
fn unused(
    cx: &Ctx,
    node: &str,
    raw: &RawSource,
    kind: &str,
    keys: &[&str],
) -> Result<(), ConfigError> {
    let present: [(&str, Option<Range<usize>>); 4] = [
        ("path", raw.path.as_ref().map(|v| v.span())),
        ("repeat", raw.repeat.as_ref().map(|v| v.span())),
        ("count", raw.count.as_ref().map(|v| v.span())),
        ("size", raw.size.as_ref().map(|v| v.span())),
    ];
    for (key, span) in present {
        if let Some(span) = span.filter(|_| keys.contains(&key)) {
            return Err(cx.err(
                &span,
                join(node, key),
                format!("a `{kind}` source has no `{key}`: remove it, or change `type`"),
            ));
        }
    }
    Ok(())
}

fn file(cx: &Ctx, node: &str, raw: &RawSource) -> Result<SourceKind, ConfigError> {
    unused(cx, node, raw, "file", &["count", "size"])?;
    let Some(written) = &raw.path else {
        return Err(cx.err(
            &raw.kind.span(),
            join(node, "path"),
            "a `file` source needs `path`, the file to read one event per line from",
        ));
    };
    let path = cx.path(written.get_ref());
    if !path.is_file() {
        return Err(cx.err(
            &written.span(),
            join(node, "path"),
            format!("no such file: {}", plain(&path.display().to_string())),
        ));
    }
    let repeat = match &raw.repeat {
        Some(v) => units::whole(cx, v, &join(node, "repeat"), &REPEAT)?,
        None => 1,
    };
    Ok(SourceKind::File { path, repeat })
}

fn generate(cx: &Ctx, node: &str, raw: &RawSource) -> Result<SourceKind, ConfigError> {
    unused(cx, node, raw, "generate", &["path", "repeat"])?;
    let Some(count) = &raw.count else {
        return Err(cx.err(
            &raw.kind.span(),
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
