//! `[sinks.NAME]` and `[dead_letter]`: where events and failed events go.

use crate::config::error::Sp;
use crate::config::error::{ConfigError, Ctx, did_you_mean, join, list, shown};
use crate::config::raw::{RawDeadLetter, RawSink};
use std::path::PathBuf;

use crate::config::nats_url;

#[derive(Debug, Clone)]
pub struct Sink {
    pub name: String,
    pub inputs: Vec<String>,
    pub kind: SinkKind,
    pub encoding: Encoding,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Stdout,
    File {
        path: PathBuf,
        mode: WriteMode,
        sync: SyncMode,
    },
    /// Counts events and bytes, writes nothing.
    Null,
    /// Publishes each event to a NATS JetStream subject, with a message id for deduplication.
    Nats {
        /// As written: one server URL or a comma-separated list of seeds.
        url: String,
        /// The servers of `url`, checked.
        servers: Vec<async_nats::ServerAddr>,
        subject: String,
    },
}

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

/// How a sink writes an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The value, then a newline.
    Text,
    /// A JSON object with key, value, headers and timestamp, then a newline.
    Json,
}

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

const KINDS: &[&str] = &["stdout", "file", "null", "nats"];
const MODES: &[&str] = &["append", "truncate"];
const SYNCS: &[&str] = &["flush", "fsync"];
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
    let kind = kind(cx, &node, raw)?;
    refuse_foreign_keys(cx, &node, raw, &kind)?;
    Ok(Sink {
        name: name.to_string(),
        inputs,
        kind,
        encoding: encoding(cx, &node, raw)?,
    })
}

/// The sink's `type` and the keys that type needs.
fn kind(cx: &Ctx, node: &str, raw: &RawSink) -> Result<SinkKind, ConfigError> {
    let key = |k: &str| join(node, k);
    Ok(match raw.kind.get_ref().as_str() {
        "stdout" => SinkKind::Stdout,
        "null" => SinkKind::Null,
        "file" => match &raw.path {
            Some(p) => SinkKind::File {
                path: cx.path(p.get_ref()),
                mode: mode(cx, node, raw.mode.as_ref())?,
                sync: sync(cx, node, raw.sync.as_ref())?,
            },
            None => {
                return Err(cx.err(
                    &raw.kind.span(),
                    key("path"),
                    "a `file` sink needs `path`, the file to write",
                ));
            }
        },
        "nats" => match &raw.subject {
            Some(subject) => {
                let (url, servers) = nats_url::check(cx, raw.url.as_ref(), &key("url"))?;
                let subject = subject.get_ref().clone();
                SinkKind::Nats {
                    url,
                    servers,
                    subject,
                }
            }
            None => {
                return Err(cx.err(
                    &raw.kind.span(),
                    key("subject"),
                    "a `nats` sink needs `subject`, the subject to publish to (a stream must capture it)",
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
    })
}

/// A key of another sink type is an error rather than ignored: it shows a misunderstanding
/// (a `path` on a `stdout` sink writes nothing to that path).
fn refuse_foreign_keys(
    cx: &Ctx,
    node: &str,
    raw: &RawSink,
    kind: &SinkKind,
) -> Result<(), ConfigError> {
    let key = |k: &str| join(node, k);
    let only = |present: &Option<Sp<String>>, what: &str, kinds: &str| -> Result<(), ConfigError> {
        match present {
            Some(v) => Err(cx.err(
                &v.span(),
                key(what),
                format!(
                    "a `{}` sink has no `{what}`: it is for {kinds} sinks",
                    raw.kind.get_ref()
                ),
            )),
            None => Ok(()),
        }
    };
    if !matches!(kind, SinkKind::File { .. }) {
        only(&raw.mode, "mode", "`file`")?;
        only(&raw.sync, "sync", "`file`")?;
    }
    if !matches!(kind, SinkKind::Nats { .. }) {
        only(&raw.url, "url", "`nats`")?;
        only(&raw.subject, "subject", "`nats`")?;
    }
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
    Ok(())
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
                list(DEAD_LETTER_KINDS, "or"),
                did_you_mean(other, DEAD_LETTER_KINDS)
            ),
        )),
    }
}

/// `mode`: `append` (the default) or `truncate`.
fn mode(cx: &Ctx, node: &str, raw: Option<&Sp<String>>) -> Result<WriteMode, ConfigError> {
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
fn sync(cx: &Ctx, node: &str, raw: Option<&Sp<String>>) -> Result<SyncMode, ConfigError> {
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
