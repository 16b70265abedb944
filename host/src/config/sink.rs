//! `[sinks.NAME]` and `[dead_letter]`: where events and failed events go.

use crate::config::error::{ConfigError, Ctx, did_you_mean, join, list, shown};
use crate::config::raw::{RawDeadLetter, RawSink};
use crate::config::{DeadLetterConfig, Encoding, Sink, SinkKind};

const KINDS: &[&str] = &["stdout", "file", "null"];
const ENCODINGS: &[&str] = &["text", "json"];
const DEAD_LETTER_KINDS: &[&str] = &["file", "stderr"];

/// One sink, whose `inputs` the graph checks have already checked.
pub(crate) fn check(
    cx: &Ctx,
    name: &str,
    raw: &RawSink,
    inputs: Vec<String>,
) -> Result<Sink, ConfigError> {
    let node = join("sinks", name);
    let key = |k: &str| join(&node, k);
    let kind = match raw.kind.get_ref().as_str() {
        "stdout" => SinkKind::Stdout,
        "null" => SinkKind::Null,
        "file" => match &raw.path {
            Some(p) => SinkKind::File {
                path: cx.path(p.get_ref()),
            },
            None => {
                return Err(cx.err(
                    &raw.kind.span(),
                    key("path"),
                    "a `file` sink needs `path`, the file to write",
                ));
            }
        },
        other => {
            return Err(cx.err(
                &raw.kind.span(),
                key("type"),
                format!(
                    "unknown sink type {}: use {}{}",
                    shown(other),
                    list(KINDS, "or"),
                    did_you_mean(other, KINDS)
                ),
            ));
        }
    };
    if !matches!(kind, SinkKind::File { .. })
        && let Some(p) = &raw.path
    {
        return Err(cx.err(
            &p.span(),
            key("path"),
            format!(
                "a `{}` sink has no `path`: remove it, or use `type = \"file\"`",
                raw.kind.get_ref()
            ),
        ));
    }
    Ok(Sink {
        name: name.to_string(),
        inputs,
        kind,
        encoding: encoding(cx, &node, raw)?,
    })
}

fn encoding(cx: &Ctx, node: &str, raw: &RawSink) -> Result<Encoding, ConfigError> {
    let Some(e) = &raw.encoding else {
        return Ok(Encoding::Text);
    };
    match e.get_ref().as_str() {
        "text" => Ok(Encoding::Text),
        "json" => Ok(Encoding::Json),
        other => Err(cx.err(
            &e.span(),
            join(node, "encoding"),
            format!(
                "unknown encoding {}: use {}{}",
                shown(other),
                list(ENCODINGS, "or"),
                did_you_mean(other, ENCODINGS)
            ),
        )),
    }
}

/// `[dead_letter]`: stderr unless the file names a file.
pub(crate) fn check_dead_letter(
    cx: &Ctx,
    raw: Option<&RawDeadLetter>,
) -> Result<DeadLetterConfig, ConfigError> {
    let Some(dl) = raw else {
        return Ok(DeadLetterConfig::Stderr);
    };
    match dl.kind.get_ref().as_str() {
        "stderr" => match &dl.path {
            Some(p) => Err(cx.err(
                &p.span(),
                "dead_letter.path",
                "a `stderr` dead-letter sink takes no path: remove it, or use `type = \"file\"`",
            )),
            None => Ok(DeadLetterConfig::Stderr),
        },
        "file" => match &dl.path {
            Some(p) => Ok(DeadLetterConfig::File {
                path: cx.path(p.get_ref()),
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
                list(DEAD_LETTER_KINDS, "or"),
                did_you_mean(other, DEAD_LETTER_KINDS)
            ),
        )),
    }
}
