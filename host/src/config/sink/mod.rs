//! `[sinks.NAME]` and `[dead_letter]`: where events and failed events go.
//!
//! This file holds what every sink has (its name, `inputs`, `type` and `encoding`), the list
//! of kinds, and the dispatch: [`read`] reads the common keys and, through [`Kinds::read`],
//! the keys of the kind `type` names; [`check`] checks the common keys and hands the kind's raw
//! keys to that kind's check. Each kind has a file of its own holding its keys, its raw
//! table, its reader and its check: `stdout`, `file` (with the write and sync modes the
//! dead-letter file shares), `null`, `nats`. `dead_letter` holds `[dead_letter]`. A new kind
//! is a new file, a row of [`KINDS`], a variant of [`RawKind`] and of [`SinkKind`].

mod dead_letter;
mod file;
mod nats;
mod null;
mod stdout;

use std::path::PathBuf;

use crate::config::error::{ConfigError, Ctx, Sp, did_you_mean, join, list, shown};
use crate::config::kinds::{Kind, Kinds};
use crate::config::reader::{Place, Table};

pub use dead_letter::DeadLetterConfig;
pub(crate) use dead_letter::{
    KEYS as DEAD_LETTER_KEYS, RawDeadLetter, check as check_dead_letter, read as read_dead_letter,
};
pub use file::{SyncMode, WriteMode};

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
        /// With `partitions = P` (in [`ranges::PARTITIONS`](crate::config::ranges::PARTITIONS)):
        /// each event goes to `SUBJECT.p`, `p` the partition of its key.
        partitions: Option<u32>,
    },
}

/// How a sink writes an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The value, then a newline.
    Text,
    /// A JSON object with key, value, headers and timestamp, then a newline.
    Json,
}

/// A sink as written: the common keys, and the keys of its kind.
pub(crate) struct RawSink {
    pub at: Place,
    pub inputs: Sp<Vec<Sp<String>>>,
    /// `type`, where an error about a missing key of the kind points.
    pub kind: Sp<String>,
    pub encoding: Option<Sp<String>>,
    pub keys: RawKind,
}

/// The keys of each kind as written.
pub(crate) enum RawKind {
    Stdout(stdout::Raw),
    File(file::Raw),
    Null(null::Raw),
    Nats(nats::Raw),
}

/// The keys every sink takes, whatever its kind.
const COMMON_KEYS: &[&str] = &["inputs", "type", "encoding"];

/// Every kind, in the order a message lists them.
const KINDS: Kinds<RawKind> = Kinds {
    what: "sink",
    common: COMMON_KEYS,
    kinds: &[
        Kind {
            name: "stdout",
            keys: stdout::KEYS,
            read: |t| stdout::read(t).map(RawKind::Stdout),
        },
        Kind {
            name: "file",
            keys: file::KEYS,
            read: |t| file::read(t).map(RawKind::File),
        },
        Kind {
            name: "null",
            keys: null::KEYS,
            read: |t| null::read(t).map(RawKind::Null),
        },
        Kind {
            name: "nats",
            keys: nats::KEYS,
            read: |t| nats::read(t).map(RawKind::Nats),
        },
    ],
};

const ENCODINGS: &[&str] = &["text", "json"];

/// One `[sinks.NAME]` table, whose keys are those of its `type`.
pub(crate) fn read(t: &Table, at: Place) -> Result<RawSink, ConfigError> {
    let inputs = t.texts("inputs", "[\"parse\"]")?;
    let (kind, keys) = KINDS.read(t)?;
    Ok(RawSink {
        inputs: t.required(
            inputs,
            "inputs",
            "a sink needs `inputs`, the sources or stages it writes, such as `inputs = [\"parse\"]`",
        )?,
        kind,
        encoding: t.text("encoding")?,
        keys,
        at,
    })
}

/// One sink, whose `inputs` the graph checks have already checked.
pub(crate) fn check(
    cx: &Ctx,
    name: &str,
    raw: &RawSink,
    inputs: Vec<String>,
) -> Result<Sink, ConfigError> {
    let node = join("sinks", name);
    let at = raw.kind.span();
    let kind = match &raw.keys {
        RawKind::Stdout(r) => stdout::check(r),
        RawKind::File(r) => file::check(cx, &node, &at, r)?,
        RawKind::Null(r) => null::check(r),
        RawKind::Nats(r) => nats::check(cx, &node, &at, r)?,
    };
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
