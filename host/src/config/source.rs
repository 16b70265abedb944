//! `[sources.NAME]`: stdin, a file, or generated events.

use std::ops::Range;
use std::time::Duration;

use crate::config::error::{ConfigError, Ctx};
use crate::config::raw::RawSource;
use crate::config::{Source, SourceKind};

pub(crate) fn check_source(
    cx: &Ctx,
    name: &str,
    raw: &RawSource,
    batch_size: usize,
    linger: Duration,
) -> Result<Source, ConfigError> {
    let key = |k: &str| format!("sources.{name}.{k}");
    // Fields a source type does not use are refused, not ignored: a typo'd setup must not
    // run quietly with defaults.
    let unused = |fields: &[(&str, Option<Range<usize>>)], kind: &str| -> Result<(), ConfigError> {
        match fields.iter().find(|(_, sp)| sp.is_some()) {
            Some((k, Some(sp))) => {
                Err(cx.err(sp, key(k), format!("a `{kind}` source has no `{k}`")))
            }
            _ => Ok(()),
        }
    };
    let path_span = raw.path.as_ref().map(|f| f.span());
    let repeat_span = raw.repeat.as_ref().map(|f| f.span());
    let count_span = raw.count.as_ref().map(|f| f.span());
    let size_span = raw.size.as_ref().map(|f| f.span());
    let kind = match raw.kind.get_ref().as_str() {
        "stdin" => {
            unused(
                &[
                    ("path", path_span),
                    ("repeat", repeat_span),
                    ("count", count_span),
                    ("size", size_span),
                ],
                "stdin",
            )?;
            SourceKind::Stdin
        }
        "file" => {
            unused(&[("count", count_span), ("size", size_span)], "file")?;
            let path = match &raw.path {
                Some(p) => cx.path(p.get_ref()),
                None => {
                    return Err(cx.err(
                        &raw.kind.span(),
                        key("path"),
                        "a `file` source needs `path`",
                    ));
                }
            };
            if !path.is_file() {
                let span = raw
                    .path
                    .as_ref()
                    .map(|p| p.span())
                    .unwrap_or(raw.kind.span());
                return Err(cx.err(
                    &span,
                    key("path"),
                    format!("no such file: {}", path.display()),
                ));
            }
            let repeat = raw.repeat.as_ref().map(|r| *r.get_ref()).unwrap_or(1);
            SourceKind::File { path, repeat }
        }
        "generate" => {
            unused(&[("path", path_span), ("repeat", repeat_span)], "generate")?;
            let count = match &raw.count {
                Some(c) => *c.get_ref(),
                None => {
                    return Err(cx.err(
                        &raw.kind.span(),
                        key("count"),
                        "a `generate` source needs `count`",
                    ));
                }
            };
            let size = raw.size.as_ref().map(|s| *s.get_ref()).unwrap_or(100);
            SourceKind::Generate { count, size }
        }
        other => {
            return Err(cx.err(
                &raw.kind.span(),
                key("type"),
                format!("unknown source type `{other}`: use `stdin`, `file` or `generate`"),
            ));
        }
    };
    Ok(Source {
        name: name.to_string(),
        kind,
        batch_size: match &raw.batch_size {
            Some(v) => cx.positive(v, key("batch_size"))?,
            None => batch_size,
        },
        linger: match &raw.linger {
            Some(v) => cx.duration(v, key("linger"))?,
            None => linger,
        },
    })
}
