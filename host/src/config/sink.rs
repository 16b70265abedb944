//! `[sinks.NAME]` and `[dead_letter]`: where events and failed events go.

use crate::config::error::{ConfigError, Ctx};
use crate::config::raw::{RawDeadLetter, RawSink, Sp};
use crate::config::{DeadLetterConfig, Encoding, Sink, SinkKind};

pub(crate) fn check_sink(
    cx: &Ctx,
    name: &str,
    raw: &RawSink,
    inputs: Vec<String>,
) -> Result<Sink, ConfigError> {
    let key = |k: &str| format!("sinks.{name}.{k}");
    let kind = match raw.kind.get_ref().as_str() {
        "stdout" => SinkKind::Stdout,
        "null" => SinkKind::Null,
        "file" => match &raw.path {
            Some(p) => SinkKind::File {
                path: cx.path(p.get_ref()),
            },
            None => {
                return Err(cx.err(&raw.kind.span(), key("path"), "a `file` sink needs `path`"));
            }
        },
        other => {
            return Err(cx.err(
                &raw.kind.span(),
                key("type"),
                format!("unknown sink type `{other}`: use `stdout`, `file` or `null`"),
            ));
        }
    };
    if !matches!(kind, SinkKind::File { .. })
        && let Some(p) = &raw.path
    {
        return Err(cx.err(
            &p.span(),
            key("path"),
            format!("a `{}` sink has no `path`", raw.kind.get_ref()),
        ));
    }
    let encoding = match &raw.encoding {
        None => Encoding::Text,
        Some(e) => match e.get_ref().as_str() {
            "text" => Encoding::Text,
            "json" => Encoding::Json,
            other => {
                return Err(cx.err(
                    &e.span(),
                    key("encoding"),
                    format!("unknown encoding `{other}`: use `text` or `json`"),
                ));
            }
        },
    };
    Ok(Sink {
        name: name.to_string(),
        inputs,
        kind,
        encoding,
    })
}

/// `[dead_letter]`: stderr unless the file names a file.
pub(crate) fn check_dead_letter(
    cx: &Ctx,
    raw: Option<&Sp<RawDeadLetter>>,
) -> Result<DeadLetterConfig, ConfigError> {
    let Some(dl) = raw else {
        return Ok(DeadLetterConfig::Stderr);
    };
    let dl = dl.get_ref();
    match dl.kind.get_ref().as_str() {
        "stderr" => {
            if let Some(p) = &dl.path {
                return Err(cx.err(
                    &p.span(),
                    "dead_letter.path",
                    "a `stderr` dead-letter sink takes no path",
                ));
            }
            Ok(DeadLetterConfig::Stderr)
        }
        "file" => match &dl.path {
            Some(p) => Ok(DeadLetterConfig::File {
                path: cx.path(p.get_ref()),
            }),
            None => Err(cx.err(
                &dl.kind.span(),
                "dead_letter.path",
                "a `file` dead-letter sink needs `path`",
            )),
        },
        other => Err(cx.err(
            &dl.kind.span(),
            "dead_letter.type",
            format!("unknown dead-letter type `{other}`: use `file` or `stderr`"),
        )),
    }
}
