//! `[sources.NAME]`: stdin, a file read `repeat` times, `count` generated events, or a NATS
//! JetStream durable consumer.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::error::{ConfigError, Ctx, did_you_mean, join, list, plain, shown};
use crate::config::ranges::{
    ACK_WAIT, BATCH_SIZE, COUNT, GENERATE_SIZE, LINGER, MAX_ACK_PENDING, NATS_BATCH, REPEAT,
};
use crate::config::raw::{NATS_KEYS, RawSource, SOURCE_TYPE_KEYS};
use crate::config::{nats_url, units};

/// Bytes per value of a `generate` source, unless the file says otherwise (workload W1).
pub const DEFAULT_GENERATE_SIZE: usize = 100;

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
    Generate {
        count: u64,
        size: usize,
    },
    /// A durable pull consumer of a NATS JetStream stream.
    Nats(NatsSource),
}

/// A NATS JetStream source.
#[derive(Debug, Clone)]
pub struct NatsSource {
    /// As written: one server URL or a comma-separated list of seeds.
    pub url: String,
    /// The servers of `url`, checked; the client connects to one and learns the cluster.
    pub servers: Vec<async_nats::ServerAddr>,
    pub stream: String,
    /// The durable consumer's name; created with `subject` as its filter if it does not exist.
    pub consumer: String,
    pub subject: Option<String>,
    /// Messages fetched per request, in [`ranges::NATS_BATCH`](super::ranges::NATS_BATCH); the source's batch size unless set.
    pub batch: usize,
    /// In [`ranges::ACK_WAIT`](super::ranges::ACK_WAIT): 1 s to a day; 30 s unless set.
    pub ack_wait: Duration,
    /// In [`ranges::MAX_ACK_PENDING`](super::ranges::MAX_ACK_PENDING); 4 × the fetch batch unless set.
    pub max_ack_pending: usize,
    /// The header whose value becomes the event's key.
    pub key_header: Option<String>,
}

const KINDS: &[&str] = &["stdin", "file", "generate", "nats"];

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
    if raw.kind.get_ref() != "nats" {
        no_nats_keys(cx, &node, raw)?;
    }
    let kind = match raw.kind.get_ref().as_str() {
        "stdin" => {
            unused(cx, &node, raw, "stdin", &SOURCE_TYPE_KEYS)?;
            SourceKind::Stdin
        }
        "file" => file(cx, &node, raw)?,
        "generate" => generate(cx, &node, raw)?,
        "nats" => nats(cx, &node, raw, batch_size)?,
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
        batch_size,
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
    // In the order of SOURCE_TYPE_KEYS.
    let spans: [Option<Range<usize>>; SOURCE_TYPE_KEYS.len()] = [
        raw.path.as_ref().map(|v| v.span()),
        raw.repeat.as_ref().map(|v| v.span()),
        raw.count.as_ref().map(|v| v.span()),
        raw.size.as_ref().map(|v| v.span()),
    ];
    let present = SOURCE_TYPE_KEYS.into_iter().zip(spans);
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

/// The NATS keys are refused on other source types.
fn no_nats_keys(cx: &Ctx, node: &str, raw: &RawSource) -> Result<(), ConfigError> {
    let n = &raw.nats;
    // In the order of NATS_KEYS.
    let spans: [Option<Range<usize>>; NATS_KEYS.len()] = [
        n.url.as_ref().map(|v| v.span()),
        n.stream.as_ref().map(|v| v.span()),
        n.consumer.as_ref().map(|v| v.span()),
        n.subject.as_ref().map(|v| v.span()),
        n.batch.as_ref().map(|v| v.span()),
        n.ack_wait.as_ref().map(|v| v.span()),
        n.max_ack_pending.as_ref().map(|v| v.span()),
        n.key_header.as_ref().map(|v| v.span()),
    ];
    let present = NATS_KEYS.into_iter().zip(spans);
    for (key, span) in present {
        if let Some(span) = span {
            return Err(cx.err(
                &span,
                join(node, key),
                format!("only a `nats` source has `{key}`: remove it, or use `type = \"nats\"`"),
            ));
        }
    }
    Ok(())
}

fn nats(
    cx: &Ctx,
    node: &str,
    raw: &RawSource,
    batch_size: usize,
) -> Result<SourceKind, ConfigError> {
    unused(cx, node, raw, "nats", &SOURCE_TYPE_KEYS)?;
    let n = &raw.nats;
    let required = |value: &Option<crate::config::error::Sp<String>>, key: &str, what: &str| {
        value.as_ref().map(|v| v.get_ref().clone()).ok_or_else(|| {
            cx.err(
                &raw.kind.span(),
                join(node, key),
                format!("a `nats` source needs `{key}`, {what}"),
            )
        })
    };
    let stream = required(&n.stream, "stream", "the JetStream stream to read")?;
    let consumer = required(
        &n.consumer,
        "consumer",
        "the name of its durable pull consumer",
    )?;
    let batch = match &n.batch {
        Some(v) => units::whole(cx, v, &join(node, "batch"), &NATS_BATCH)?,
        None => batch_size,
    };
    let ack_wait = match &n.ack_wait {
        Some(v) => units::duration(cx, v, &join(node, "ack_wait"), &ACK_WAIT)?,
        None => Duration::from_secs(30),
    };
    let max_ack_pending = match &n.max_ack_pending {
        Some(v) => units::whole(cx, v, &join(node, "max_ack_pending"), &MAX_ACK_PENDING)?,
        None => (4 * batch).clamp(*MAX_ACK_PENDING.start(), *MAX_ACK_PENDING.end()),
    };
    let (url, servers) = nats_url::check(cx, n.url.as_ref(), &join(node, "url"))?;
    Ok(SourceKind::Nats(NatsSource {
        url,
        servers,
        stream,
        consumer,
        subject: n.subject.as_ref().map(|s| s.get_ref().clone()),
        batch,
        ack_wait,
        max_ack_pending,
        key_header: n.key_header.as_ref().map(|s| s.get_ref().clone()),
    }))
}
