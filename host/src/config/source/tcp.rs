//! `type = "tcp"`: newline-delimited lines from TCP connections to `listen`, TLS when
//! `tls_cert` and `tls_key` are set; held to `max_connections`, `max_line` and
//! `idle_timeout`, each in its range (see `ranges`). `peer_header` names a header that carries
//! each event's peer address; none unless set.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::error::{ConfigError, Ctx, Sp, join, shown};
use crate::config::ranges::{HEADER_NAME_LEN, TCP_IDLE_TIMEOUT, TCP_MAX_CONNECTIONS, TCP_MAX_LINE};
use crate::config::reader::Table;
use crate::config::source::SourceKind;
use crate::config::tls::{ServerTls, load_tls};
use crate::config::units;

/// Connections a TCP source reads at once, unless the file says otherwise. Blocks a flood of
/// connections from exhausting file descriptors and memory (each may hold a line being
/// gathered), while leaving room for a fleet of shippers.
pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 64;
/// How long a TCP connection may send nothing before it is closed, unless the file says
/// otherwise. Blocks connections opened and left silent from holding their slots, while a
/// shipper that sends a line a minute keeps its connection.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A TCP source: where it listens, and what each connection is held to.
#[derive(Debug, Clone)]
pub struct TcpSource {
    pub listen: SocketAddr,
    /// The pipeline file and the line of `listen`: an address that cannot be bound when the
    /// run starts is refused there.
    pub file: PathBuf,
    pub listen_line: usize,
    /// In [`ranges::TCP_MAX_CONNECTIONS`](crate::config::ranges::TCP_MAX_CONNECTIONS); [`DEFAULT_TCP_MAX_CONNECTIONS`] unless set.
    pub max_connections: usize,
    /// In [`ranges::TCP_MAX_LINE`](crate::config::ranges::TCP_MAX_LINE); the line sources' `MAX_LINE` (16 MiB) unless set.
    pub max_line: usize,
    /// In [`ranges::TCP_IDLE_TIMEOUT`](crate::config::ranges::TCP_IDLE_TIMEOUT); [`DEFAULT_TCP_IDLE_TIMEOUT`] unless set.
    pub idle_timeout: Duration,
    /// `tls_cert` and `tls_key`, loaded.
    pub tls: Option<ServerTls>,
    /// The header each event carries its peer's address in.
    pub peer_header: Option<String>,
}

/// The keys of a `tcp` source beyond the common ones.
pub(crate) const KEYS: &[&str] = &[
    "listen",
    "max_connections",
    "max_line",
    "idle_timeout",
    "tls_cert",
    "tls_key",
    "peer_header",
];

/// A `tcp` source as written.
pub(crate) struct Raw {
    pub listen: Option<Sp<String>>,
    pub max_connections: Option<Sp<i128>>,
    pub max_line: Option<Sp<String>>,
    pub idle_timeout: Option<Sp<String>>,
    pub tls_cert: Option<Sp<String>>,
    pub tls_key: Option<Sp<String>>,
    pub peer_header: Option<Sp<String>>,
}

pub(crate) fn read(t: &Table) -> Result<Raw, ConfigError> {
    Ok(Raw {
        listen: t.text("listen")?,
        max_connections: t.whole("max_connections")?,
        max_line: t.size("max_line")?,
        idle_timeout: t.duration("idle_timeout")?,
        tls_cert: t.text("tls_cert")?,
        tls_key: t.text("tls_key")?,
        peer_header: t.text("peer_header")?,
    })
}

/// `kind` is the span of `type`, where a missing `listen` is blamed.
pub(crate) fn check(
    cx: &Ctx,
    node: &str,
    kind: &Range<usize>,
    t: &Raw,
) -> Result<SourceKind, ConfigError> {
    let key = |k: &str| join(node, k);
    let Some(written) = &t.listen else {
        return Err(cx.err(
            kind,
            key("listen"),
            "a `tcp` source needs `listen`, the address to take connections on, such as \
             `127.0.0.1:5140`",
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
    // No ALPN: the lines are the protocol.
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

/// A header name a source may set: visible ASCII without `:`, and no reserved `weir.` name
/// in any case (those are the host's provenance, which no source or plugin may forge).
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
            "{} is reserved: `weir.` headers are the host's provenance; choose another name, \
             such as `peer`",
            shown(name),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::tests::{Fixture, Row, run};
    use crate::config::*;

    /// A TCP source that sets every key but the TLS pair. The line numbers of the rows below
    /// refer to it.
    const TCP: &str = r#"[sources.net]
type = "tcp"
listen = "127.0.0.1:5140"
max_connections = 8
max_line = "64KiB"
idle_timeout = "30s"
peer_header = "peer"
batch_size = 100

[sinks.out]
type = "stdout"
inputs = ["net"]
"#;

    fn tcp(p: &Pipeline) -> &TcpSource {
        match &p.sources[0].kind {
            SourceKind::Tcp(tcp) => tcp,
            other => panic!("not a TCP source: {other:?}"),
        }
    }

    #[test]
    fn a_tcp_source_reads_every_key_and_defaults_the_rest() {
        let fx = Fixture::new();
        let p = fx.parse(TCP).unwrap();
        let t = tcp(&p);
        assert_eq!(t.listen.to_string(), "127.0.0.1:5140");
        assert_eq!((t.file.as_path(), t.listen_line), (fx.file().as_path(), 3));
        assert_eq!((t.max_connections, t.max_line), (8, 64 << 10));
        assert_eq!(t.idle_timeout, Duration::from_secs(30));
        assert_eq!(t.peer_header.as_deref(), Some("peer"));
        assert!(t.tls.is_none());
        assert_eq!(p.sources[0].batch_size, 100);

        let bare = "[sources.net]\ntype = \"tcp\"\nlisten = \"127.0.0.1:0\"\n\
                    [sinks.out]\ntype = \"stdout\"\ninputs = [\"net\"]\n";
        let p = fx.parse(bare).unwrap();
        let t = tcp(&p);
        assert_eq!(t.max_connections, DEFAULT_TCP_MAX_CONNECTIONS);
        assert_eq!(t.max_line, 16 << 20);
        assert_eq!(t.idle_timeout, DEFAULT_TCP_IDLE_TIMEOUT);
        assert_eq!(t.peer_header, None);
    }

    /// A TCP source's address, limits, header name and TLS pair, and the keys of other kinds.
    #[rustfmt::skip]
    const ROWS: &[Row] = &[
        ("listen = \"127.0.0.1:5140\"\n", "", 2, "sources.net.listen", "a `tcp` source needs `listen`"),
        ("\"127.0.0.1:5140\"", "\"localhost:5140\"", 3, "sources.net.listen", "is not an address: write IP:PORT"),
        ("max_connections = 8", "max_connections = 0", 4, "sources.net.max_connections", "from 1 to 4096"),
        ("max_connections = 8", "max_connections = 5000", 4, "sources.net.max_connections", "from 1 to 4096"),
        ("\"64KiB\"", "\"17MiB\"", 5, "sources.net.max_line", "16MiB"),
        ("\"30s\"", "\"500ms\"", 6, "sources.net.idle_timeout", "from 1s to 24h"),
        ("\"30s\"", "\"25h\"", 6, "sources.net.idle_timeout", "from 1s to 24h"),
        ("\"peer\"", "\"weir.peer\"", 7, "sources.net.peer_header", "reserved"),
        ("\"peer\"", "\"Weir.Peer\"", 7, "sources.net.peer_header", "reserved"),
        ("\"peer\"", "\"peer:addr\"", 7, "sources.net.peer_header", "not a usable header name"),
        ("batch_size = 100", "tls_cert = \"cert.pem\"", 8, "sources.net.tls_cert", "needs `tls_key` too"),
        ("batch_size = 100", "tls_key = \"key.pem\"", 8, "sources.net.tls_key", "needs `tls_cert` too"),
        ("batch_size = 100", "path = \"in.log\"", 8, "sources.net.path", "a `tcp` source has no `path`: only a `file`, `http` or `dead_letters` source has it"),
        ("batch_size = 100", "url = \"nats://x\"", 8, "sources.net.url", "a `tcp` source has no `url`"),
        ("type = \"tcp\"", "type = \"stdin\"", 6, "sources.net.idle_timeout", "a `stdin` source has no `idle_timeout`: only a `tcp` or `http` source has it"),
        ("type = \"tcp\"", "type = \"tpc\"", 2, "sources.net.type", "did you mean `tcp`?"),
    ];

    #[test]
    fn a_tcp_source_checks_its_address_limits_header_and_tls_pair() {
        run(TCP, ROWS);
    }
}
