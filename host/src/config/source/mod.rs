//! `[sources.NAME]`: stdin, a file read `repeat` times, `count` generated events, a NATS
//! JetStream durable consumer, lines from TCP connections, lines POSTed over HTTP, or the
//! letters of a dead-letter file sent again.
//!
//! This file holds what every source has (its name, `type`, `batch_size` and `linger`), the
//! list of kinds, and the dispatch: [`read`] reads the common keys and, through
//! [`Kinds::read`], the keys of the kind `type` names; [`check`] checks the common keys and
//! hands the kind's raw keys to that kind's check. Each kind has a file of its own holding
//! its keys, its raw table, its reader and its check: `stdin`, `file`, `generate`, `nats`,
//! `tcp`, `http`, `dead_letters`.
//! A new kind is a new file, a row of [`KINDS`], a variant of [`RawKind`] and of
//! [`SourceKind`].

mod dead_letters;
mod file;
mod generate;
mod http;
mod nats;
mod stdin;
mod tcp;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::error::{ConfigError, Ctx, Sp, join};
use crate::config::kinds::{Kind, Kinds};
use crate::config::ranges::{BATCH_SIZE, LINGER};
use crate::config::reader::{Place, Table};
use crate::config::units;

pub use dead_letters::{
    DeadLettersSource, LETTER_KINDS, Selection, check_kind, default_progress, now_ms, parse_since,
};
pub use generate::DEFAULT_GENERATE_SIZE;
pub use http::{DEFAULT_HTTP_MAX_BODY, DEFAULT_HTTP_MAX_LINE, HttpSource};
pub use nats::NatsSource;
pub use tcp::{DEFAULT_TCP_IDLE_TIMEOUT, DEFAULT_TCP_MAX_CONNECTIONS, TcpSource};

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    /// In [`ranges::BATCH_SIZE`](super::ranges::BATCH_SIZE); the pipeline's unless the source sets its own.
    pub batch_size: usize,
    /// In [`ranges::LINGER`](super::ranges::LINGER); the pipeline's unless the source sets its own.
    pub linger: Duration,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    Stdin,
    /// One event per line; `repeat` (in [`ranges::REPEAT`](super::ranges::REPEAT), 1 to 1,000,000) reads the file that
    /// many times in a row.
    File {
        path: PathBuf,
        repeat: u64,
    },
    /// `count` events (in [`ranges::COUNT`](super::ranges::COUNT), 0 to 10^12) whose values are `size` bytes (in
    /// [`ranges::GENERATE_SIZE`](super::ranges::GENERATE_SIZE), 0 to 16 MiB): byte `j` of event `i` is
    /// `b'a' + (i + j) % 26` (benchmark workload W1).
    /// With `keys`, event `i` has the key `k{(i * 7919) % keys}`; with `event_time`, the
    /// timestamp `event_time + i` milliseconds (workload W5).
    Generate {
        count: u64,
        size: usize,
        keys: Option<u64>,
        event_time: Option<u64>,
    },
    /// A durable pull consumer of a NATS JetStream stream.
    Nats(NatsSource),
    /// Newline-delimited lines from TCP connections.
    Tcp(TcpSource),
    /// Lines POSTed to an address. Boxed: far larger than the other kinds.
    Http(Box<HttpSource>),
    /// The letters of a dead-letter file, sent again. Boxed, as `Http`.
    DeadLetters(Box<DeadLettersSource>),
}

/// A source as written: the common keys, and the keys of its kind.
pub(crate) struct RawSource {
    pub at: Place,
    /// `type`, where an error about a missing key of the kind points.
    pub kind: Sp<String>,
    pub batch_size: Option<Sp<i128>>,
    pub linger: Option<Sp<String>>,
    pub keys: RawKind,
}

/// The keys of each kind as written.
pub(crate) enum RawKind {
    Stdin(stdin::Raw),
    File(file::Raw),
    Generate(generate::Raw),
    /// Boxed: eight optional keys, far larger than the other kinds.
    Nats(Box<nats::Raw>),
    /// Boxed, as `Nats`: seven optional keys.
    Tcp(Box<tcp::Raw>),
    /// Boxed, as `Nats`.
    Http(Box<http::Raw>),
    /// Boxed, as `Nats`.
    DeadLetters(Box<dead_letters::Raw>),
}

/// The keys every source takes, whatever its kind.
const COMMON_KEYS: &[&str] = &["type", "batch_size", "linger"];

/// Every kind, in the order a message lists them.
const KINDS: Kinds<RawKind> = Kinds {
    what: "source",
    common: COMMON_KEYS,
    kinds: &[
        Kind {
            name: "stdin",
            keys: stdin::KEYS,
            read: |t| stdin::read(t).map(RawKind::Stdin),
        },
        Kind {
            name: "file",
            keys: file::KEYS,
            read: |t| file::read(t).map(RawKind::File),
        },
        Kind {
            name: "generate",
            keys: generate::KEYS,
            read: |t| generate::read(t).map(RawKind::Generate),
        },
        Kind {
            name: "nats",
            keys: nats::KEYS,
            read: |t| nats::read(t).map(|r| RawKind::Nats(Box::new(r))),
        },
        Kind {
            name: "tcp",
            keys: tcp::KEYS,
            read: |t| tcp::read(t).map(|r| RawKind::Tcp(Box::new(r))),
        },
        Kind {
            name: "http",
            keys: http::KEYS,
            read: |t| http::read(t).map(|r| RawKind::Http(Box::new(r))),
        },
        Kind {
            name: "dead_letters",
            keys: dead_letters::KEYS,
            read: |t| dead_letters::read(t).map(|r| RawKind::DeadLetters(Box::new(r))),
        },
    ],
};

/// One `[sources.NAME]` table, whose keys are those of its `type`.
pub(crate) fn read(t: &Table, at: Place) -> Result<RawSource, ConfigError> {
    let (kind, keys) = KINDS.read(t)?;
    Ok(RawSource {
        at,
        kind,
        batch_size: t.whole("batch_size")?,
        linger: t.duration("linger")?,
        keys,
    })
}

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
    let batch_size = match &raw.batch_size {
        Some(v) => units::whole(cx, v, &key("batch_size"), &BATCH_SIZE)?,
        None => batch_size,
    };
    let at = raw.kind.span();
    let kind = match &raw.keys {
        RawKind::Stdin(r) => stdin::check(r),
        RawKind::File(r) => file::check(cx, &node, &at, r)?,
        RawKind::Generate(r) => generate::check(cx, &node, &at, r)?,
        RawKind::Nats(r) => nats::check(cx, &node, &at, r, batch_size)?,
        RawKind::Tcp(r) => tcp::check(cx, &node, &at, r)?,
        RawKind::Http(r) => http::check(cx, &node, &at, r)?,
        RawKind::DeadLetters(r) => dead_letters::check(cx, &node, &at, r)?,
    };
    Ok(Source {
        name: name.to_string(),
        kind,
        batch_size,
        linger: match &raw.linger {
            Some(v) => units::duration(cx, v, &key("linger"), &LINGER)?,
            None => linger,
        },
    })
}
