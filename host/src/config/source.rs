//! `[sources.NAME]`: stdin, a file read `repeat` times, `count` generated events, a NATS
//! JetStream durable consumer, or lines from TCP connections.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::DEFAULT_NATS_URL;
use crate::config::admin::{AdminTls, load_tls};
use crate::config::error::{ConfigError, Ctx, did_you_mean, join, list, plain, shown};
use crate::config::ranges::{
    ACK_WAIT, BATCH_SIZE, COUNT, GENERATE_SIZE, HEADER_NAME_LEN, LINGER, MAX_ACK_PENDING,
    NATS_BATCH, REPEAT, TCP_IDLE_TIMEOUT, TCP_MAX_CONNECTIONS, TCP_MAX_LINE,
};
use crate::config::raw::{NATS_KEYS, RawSource, SOURCE_TYPE_KEYS, TCP_KEYS};
use crate::config::units;

/// Bytes per value of a `generate` source, unless the file says otherwise (workload W1).
pub const DEFAULT_GENERATE_SIZE: usize = 100;
/// Connections a TCP source reads at once, unless the file says otherwise. Blocks a flood of
/// connections from exhausting file descriptors and memory (each may hold a line being
/// gathered), while leaving room for a fleet of shippers.
pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 64;
/// How long a TCP connection may send nothing before it is closed, unless the file says
/// otherwise. Blocks connections opened and left silent from holding their slots, while a
/// shipper that sends a line a minute keeps its connection.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

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
    /// Newline-delimited lines from TCP connections.
    Tcp(TcpSource),
}

/// A TCP source: where it listens, and what each connection is held to.
#[derive(Debug, Clone)]
pub struct TcpSource {
    pub listen: SocketAddr,
    /// The pipeline file and the line of `listen`: an address that cannot be bound when the
    /// run starts is refused there.
    pub file: PathBuf,
    pub listen_line: usize,
    /// In [`ranges::TCP_MAX_CONNECTIONS`](super::ranges::TCP_MAX_CONNECTIONS); [`DEFAULT_TCP_MAX_CONNECTIONS`] unless set.
    pub max_connections: usize,
    /// In [`ranges::TCP_MAX_LINE`](super::ranges::TCP_MAX_LINE); the line sources' `MAX_LINE` (16 MiB) unless set.
    pub max_line: usize,
    /// In [`ranges::TCP_IDLE_TIMEOUT`](super::ranges::TCP_IDLE_TIMEOUT); [`DEFAULT_TCP_IDLE_TIMEOUT`] unless set.
    pub idle_timeout: Duration,
    /// `tls_cert` and `tls_key`, loaded.
    pub tls: Option<AdminTls>,
    /// The header each event carries its peer's address in (none unless set).
    pub peer_header: Option<String>,
}

/// A NATS JetStream source.
#[derive(Debug, Clone)]
pub struct NatsSource {
    pub url: String,
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

const KINDS: &[&str] = &["stdin", "file", "generate", "nats", "tcp"];

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
    // An unknown type is named first: a typo of `tcp` is not a source without its keys.
    if raw.kind.get_ref() != "tcp" && KINDS.contains(&raw.kind.get_ref().as_str()) {
        no_tcp_keys(cx, &node, raw)?;
    }
    let kind = match raw.kind.get_ref().as_str() {
        "stdin" => {
            unused(cx, &node, raw, "stdin", &SOURCE_TYPE_KEYS)?;
            SourceKind::Stdin
        }
        "file" => file(cx, &node, raw)?,
        "generate" => generate(cx, &node, raw)?,
        "nats" => nats(cx, &node, raw, batch_size)?,
        "tcp" => tcp(cx, &node, raw)?,
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
    only_for(cx, node, "nats", NATS_KEYS.into_iter().zip(spans))
}

/// The TCP keys are refused on other source types.
fn no_tcp_keys(cx: &Ctx, node: &str, raw: &RawSource) -> Result<(), ConfigError> {
    let t = &raw.tcp;
    // In the order of TCP_KEYS.
    let spans: [Option<Range<usize>>; TCP_KEYS.len()] = [
        t.listen.as_ref().map(|v| v.span()),
        t.max_connections.as_ref().map(|v| v.span()),
        t.max_line.as_ref().map(|v| v.span()),
        t.idle_timeout.as_ref().map(|v| v.span()),
        t.tls_cert.as_ref().map(|v| v.span()),
        t.tls_key.as_ref().map(|v| v.span()),
        t.peer_header.as_ref().map(|v| v.span()),
    ];
    only_for(cx, node, "tcp", TCP_KEYS.into_iter().zip(spans))
}

/// Refuses the first of the keys of source type `kind` that is written.
fn only_for<'k>(
    cx: &Ctx,
    node: &str,
    kind: &str,
    present: impl Iterator<Item = (&'k str, Option<Range<usize>>)>,
) -> Result<(), ConfigError> {
    for (key, span) in present {
        if let Some(span) = span {
            return Err(cx.err(
                &span,
                join(node, key),
                format!(
                    "only a `{kind}` source has `{key}`: remove it, or use `type = \"{kind}\"`"
                ),
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
    Ok(SourceKind::Nats(NatsSource {
        url: n
            .url
            .as_ref()
            .map_or_else(|| DEFAULT_NATS_URL.to_string(), |u| u.get_ref().clone()),
        stream,
        consumer,
        subject: n.subject.as_ref().map(|s| s.get_ref().clone()),
        batch,
        ack_wait,
        max_ack_pending,
        key_header: n.key_header.as_ref().map(|s| s.get_ref().clone()),
    }))
}

fn tcp(cx: &Ctx, node: &str, raw: &RawSource) -> Result<SourceKind, ConfigError> {
    unused(cx, node, raw, "tcp", &SOURCE_TYPE_KEYS)?;
    let t = &raw.tcp;
    let key = |k: &str| join(node, k);
    let Some(written) = &t.listen else {
        return Err(cx.err(
            &raw.kind.span(),
            key("listen"),
            "a `tcp` source needs `listen`, the address to take connections on, such as `127.0.0.1:5140`",
        ));
    };
    let listen = written.get_ref().parse().map_err(|_| {
        cx.err(
            &written.span(),
            key("listen"),
            format!(
                "{} is not an address: write IP:PORT, such as `127.0.0.1:5140`",
                shown(written.get_ref())
            ),
        )
    })?;
    let max_connections = match &t.max_connections {
        Some(v) => units::whole(cx, v, &key("max_connections"), &TCP_MAX_CONNECTIONS)?,
        None => DEFAULT_TCP_MAX_CONNECTIONS,
    };
    let max_line = match &t.max_line {
        // At most 16 MiB (TCP_MAX_LINE), so the conversion to usize is exact.
        Some(v) => units::size(cx, v, &key("max_line"), &TCP_MAX_LINE)? as usize,
        None => *TCP_MAX_LINE.end() as usize,
    };
    let idle_timeout = match &t.idle_timeout {
        Some(v) => units::duration(cx, v, &key("idle_timeout"), &TCP_IDLE_TIMEOUT)?,
        None => DEFAULT_TCP_IDLE_TIMEOUT,
    };
    let tls = load_tls(cx, node, (t.tls_cert.as_ref(), t.tls_key.as_ref()), &[])?;
    let peer_header = match &t.peer_header {
        Some(name) => {
            header_name(name.get_ref()).map_err(|m| cx.err(&name.span(), key("peer_header"), m))?;
            Some(name.get_ref().clone())
        }
        None => None,
    };
    Ok(SourceKind::Tcp(TcpSource {
        listen,
        file: cx.file.to_path_buf(),
        listen_line: cx.line_of(&written.span()),
        max_connections,
        max_line,
        idle_timeout,
        tls,
        peer_header,
    }))
}

/// A header name a source may set: visible ASCII without `:`, and not a reserved `weir.` name
/// (those are the host's provenance, which no source or plugin may forge).
fn header_name(name: &str) -> Result<(), String> {
    if !HEADER_NAME_LEN.contains(&name.len())
        || !name.chars().all(|c| c.is_ascii_graphic() && c != ':')
    {
        return Err(format!(
            "{} is not a usable header name: write {} to {} visible ASCII characters, without `:`",
            shown(name),
            HEADER_NAME_LEN.start(),
            HEADER_NAME_LEN.end()
        ));
    }
    let reserved = weir_sandbox::cost::RESERVED_PREFIX;
    if name.as_bytes().to_ascii_lowercase().starts_with(reserved) {
        return Err(format!(
            "{} is reserved: `weir.` headers are the host's provenance; choose another name, such as `peer`",
            shown(name),
        ));
    }
    Ok(())
}
