//! One connection of the TCP source: the TLS handshake if any, then reads split into lines
//! and handed to the batcher, until the client closes, the connection is idle for too long,
//! or the run stops.
//!
//! A connection reads a buffer, splits it ([`Lines::push`]), and hands the lines to the
//! batcher, waiting while the batcher's channel is full (backpressure), before it reads
//! again. A line gathered across reads is held to `max_line`; a longer one is handed over as
//! `oversized` and the rest of it skipped to its end, so the connection's later lines still
//! arrive.
//!
//! When the run stops, a connection reads on what its client has already sent: it stops at
//! the first moment the client has been quiet for [`STOP_QUIET`] at a line's end, or when
//! the client closes; a line begun is read to its end. All of it is bounded by
//! [`STOP_GRACE`]: a client that keeps writing, or never ends its line, cannot hold the
//! shutdown; when the grace runs out in the middle of a line, what came of that line goes on
//! as a line of its own (as the stdin source does) and a notice says so.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::Piece;
use crate::config::{self, TcpSource as TcpConfig};
use crate::pipeline::connectors::SourceParts;
use crate::pipeline::connectors::lines::{Chunk, Flow, Lines};
use crate::pipeline::report::NodeMetrics;

/// Bytes read from a socket at a time: what a connection holds besides the line it gathers
/// and the lines it hands over.
const READ_BUFFER: usize = 64 << 10;

/// How long a client has to finish its TLS handshake. Blocks a client that connects and
/// never completes the handshake (or trickles it) from holding a connection slot.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a stop, how long a connection is read on for what its client already sent. Blocks a
/// client that keeps writing, or never ends its line, from holding the shutdown for ever.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// After a stop, how long a connection at a line's end may send nothing before all it had
/// sent counts as read. Long enough for bytes already in flight on the host (a loopback
/// client's last writes), short against the grace.
const STOP_QUIET: Duration = Duration::from_millis(50);

/// What every connection of one source shares.
pub(super) struct Shared {
    pub name: Arc<str>,
    pub max_connections: usize,
    pub max_line: usize,
    idle_timeout: Duration,
    batch_size: usize,
    tls: Option<TlsAcceptor>,
    /// Whether events carry their peer's address (`peer_header`).
    peer_header: bool,
    pub stop: CancellationToken,
    metrics: Arc<NodeMetrics>,
    /// Bytes read from every connection so far.
    bytes: AtomicU64,
}

impl Shared {
    pub(super) fn new(source: &config::Source, config: &TcpConfig, parts: &SourceParts) -> Shared {
        Shared {
            name: Arc::from(source.name.as_str()),
            max_connections: config.max_connections,
            max_line: config.max_line,
            idle_timeout: config.idle_timeout,
            batch_size: source.batch_size,
            tls: config
                .tls
                .as_ref()
                .map(|tls| TlsAcceptor::from(Arc::clone(&tls.config))),
            peer_header: config.peer_header.is_some(),
            stop: parts.ctx.stop.clone(),
            metrics: Arc::clone(&parts.metrics),
            bytes: AtomicU64::new(0),
        }
    }

    pub(super) fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// A connection over the cap, closed at once. Logged at doubling counts (the 1st, 2nd,
    /// 4th…), so that a flood of connections does not flood the log too.
    pub(super) fn refused(&self, peer: SocketAddr) {
        let n = self
            .metrics
            .connections
            .refused
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                source = %self.name,
                %peer,
                "{} connections open already; closed this one ({n} closed so far)",
                self.max_connections
            );
        }
    }
}

/// Counts a connection open while it lives.
struct Open<'a>(&'a NodeMetrics);

impl<'a> Open<'a> {
    fn new(metrics: &'a NodeMetrics) -> Open<'a> {
        metrics.connections.accepted.fetch_add(1, Ordering::Relaxed);
        metrics.connections.open.fetch_add(1, Ordering::Relaxed);
        Open(metrics)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.connections.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection, holding its slot until it ends.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Piece>,
    _slot: OwnedSemaphorePermit,
) {
    let _open = Open::new(&shared.metrics);
    let reader = Reader::new(peer, &shared, tx);
    let Some(acceptor) = shared.tls.clone() else {
        return reader.run(stream).await;
    };
    // A handshake under way when the run stops may finish within the stop's grace: its client
    // may have written lines behind it already.
    let stopped = async {
        shared.stop.cancelled().await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    let handshake = tokio::select! {
        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => done,
        () = stopped => return,
    };
    match handshake {
        Ok(Ok(tls)) => reader.run(tls).await,
        Ok(Err(e)) => tracing::debug!(source = %shared.name, %peer, "TLS handshake failed: {e}"),
        Err(_) => tracing::debug!(
            source = %shared.name, %peer,
            "TLS handshake not done within {HANDSHAKE_TIMEOUT:?}; closed"
        ),
    }
}

/// How a read after a stop went.
enum Drained {
    /// The client closed, or was quiet at a line's end: all it sent is read.
    Done,
    /// The grace ran out in the middle of a line.
    GraceOut,
}

/// A connection's reading: its splitter, its buffer, and where its lines go.
struct Reader<'a> {
    peer: SocketAddr,
    shared: &'a Shared,
    lines: Lines,
    buf: Vec<u8>,
    /// The peer's address, when events carry it.
    tag: Option<Arc<str>>,
    tx: mpsc::Sender<Piece>,
    /// Lines split from the last read, not yet handed over.
    out: Vec<Chunk>,
}

impl<'a> Reader<'a> {
    fn new(peer: SocketAddr, shared: &'a Shared, tx: mpsc::Sender<Piece>) -> Reader<'a> {
        Reader {
            peer,
            shared,
            lines: Lines::new(shared.batch_size).max_line(shared.max_line),
            buf: vec![0; READ_BUFFER],
            tag: shared.peer_header.then(|| Arc::from(peer.to_string())),
            tx,
            out: Vec::new(),
        }
    }

    /// Reads until the client closes, the connection is idle for `idle_timeout`, a read
    /// fails or the run stops; what was read goes on, a line begun included.
    async fn run<I: AsyncRead + Unpin>(mut self, mut io: I) {
        let (name, peer) = (&self.shared.name, self.peer);
        let idle = self.shared.idle_timeout;
        loop {
            let read = tokio::select! {
                biased;
                () = self.shared.stop.cancelled() => {
                    if let Drained::GraceOut = self.drain(&mut io).await {
                        crate::notice::warn(&format!(
                            "source `{name}`: the rest of a line from {peer} did not come within {STOP_GRACE:?} of the stop; what came of it goes on as a line"
                        ));
                    }
                    break;
                }
                read = tokio::time::timeout(idle, io.read(&mut self.buf)) => read,
            };
            match read {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => {
                    if !self.hand_over(n).await {
                        return;
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(source = %name, %peer, "connection ended: {e}");
                    break;
                }
                Err(_) => {
                    tracing::debug!(source = %name, %peer, "nothing sent for {idle:?}; closed");
                    break;
                }
            }
        }
        self.end().await;
    }

    /// After a stop: reads what the client already sent (see the module's notes).
    async fn drain<I: AsyncRead + Unpin>(&mut self, io: &mut I) -> Drained {
        let grace = Instant::now() + STOP_GRACE;
        loop {
            let wait = if self.lines.in_line() {
                grace
            } else {
                grace.min(Instant::now() + STOP_QUIET)
            };
            match tokio::time::timeout_at(wait, io.read(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    if !self.hand_over(n).await {
                        return Drained::Done;
                    }
                }
                Ok(_) => return Drained::Done,
                Err(_) if self.lines.in_line() => return Drained::GraceOut,
                Err(_) => return Drained::Done,
            }
        }
    }

    /// Splits the `n` bytes just read and hands their lines over, waiting while the batcher's
    /// channel is full; false once the batcher is gone.
    async fn hand_over(&mut self, n: usize) -> bool {
        self.shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let out = &mut self.out;
        let mut hand = |chunk| {
            out.push(chunk);
            Flow::Continue
        };
        self.lines.push(&self.buf[..n], &mut hand);
        self.lines.finish(&mut hand);
        self.send_out().await
    }

    /// The connection ends: a line begun goes on as a line.
    async fn end(mut self) {
        let out = &mut self.out;
        let mut hand = |chunk| {
            out.push(chunk);
            Flow::Continue
        };
        self.lines.end_input(&mut hand);
        self.lines.finish(&mut hand);
        self.send_out().await;
    }

    async fn send_out(&mut self) -> bool {
        for chunk in self.out.drain(..) {
            let piece = Piece {
                chunk,
                peer: self.tag.clone(),
            };
            if self.tx.send(piece).await.is_err() {
                return false;
            }
        }
        true
    }
}
