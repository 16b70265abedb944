//! `type = "tcp"`: newline-delimited lines from many TCP connections, TLS optional, one event
//! per line.
//!
//! [`TcpSource::connect`] binds `listen` before anything is read: an address that is taken
//! stops the run as an error of the pipeline file's `sources.NAME.listen` (exit status 2).
//! Once started, the accept task (`accept`) takes connections, up to `max_connections` at
//! once, and runs one task per connection (`connection`): it does the TLS handshake if the
//! source has a certificate, reads the socket into a buffer, splits what it read into lines
//! ([`Lines`](super::lines::Lines), held to the source's `max_line`) and hands them to the
//! batcher ([`gather`], here) over a small bounded channel. The batcher gathers the lines of
//! every connection into batches by `batch_size` and `linger` and sends them on, as the
//! stdin source does. A line's value is the line without `\n` or `\r\n`; a connection that
//! closes in the middle of a line ends that line. Events have no key; with `peer_header`,
//! each carries its connection's peer address in that header.
//!
//! **Backpressure.** While the pipeline's first channel is full, the batcher waits to send;
//! the channel from the connections fills, and each connection task waits to hand over what it
//! read before it reads again. So weir holds at most one read buffer, one line being gathered
//! and one handed-over piece per connection: the rest stays in the kernel's socket buffers,
//! and once those are full the clients' writes block.
//!
//! **Limits** (each names the threat it blocks where it is defined): the connection cap
//! (`max_connections`; a connection over it is closed as soon as it is accepted, and counted),
//! the line length (`max_line`; a longer line is dead-lettered as `oversized` with its first
//! bytes, and the connection's later lines still arrive), the idle timeout (`idle_timeout`;
//! a connection that sends nothing for that long is closed, counted only while weir is
//! waiting to read, never while backpressure holds it), and the TLS handshake's deadline.
//!
//! **Stop.** When the run stops, the accept task stops accepting and each connection reads
//! on for a short, bounded grace what its client has already sent, up to the end of a line
//! (see `connection`), hands it over and closes. The batcher sends on everything it was
//! handed, then the source ends, reporting that it was interrupted (its input never ends by
//! itself).

mod accept;
mod connection;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use weir_sandbox::Events;

use super::lines::Chunk;
use super::parts::SourceParts;
use super::seam::{BoxFuture, ConnectorError, RunningSource};
use crate::config::{self, ConfigError, SourceKind, TcpSource as TcpConfig};
use crate::pipeline::report::ByteInput;

/// Pieces waiting in the channel from the connections to the batcher. A piece is one read's
/// lines (at most a read buffer's worth), so this bounds what weir holds beyond what each
/// connection holds while the pipeline applies backpressure.
const PIECES_QUEUED: usize = 4;

// A TCP source's `max_line` defaults to the end of its range: the longest line any line
// source accepts.
const _: () = assert!(*config::ranges::TCP_MAX_LINE.end() as usize == super::MAX_LINE);

/// What a connection hands the batcher: the lines of one read (or an over-long line), and the
/// peer address when the source names it in a header.
pub(crate) struct Piece {
    chunk: Chunk,
    peer: Option<Arc<str>>,
}

/// `type = "tcp"`: bound by [`super::Source::connect`].
pub(crate) struct TcpSource {
    source: config::Source,
    config: TcpConfig,
    listener: Option<tokio::net::TcpListener>,
}

impl TcpSource {
    pub(crate) fn new(source: &config::Source) -> TcpSource {
        let SourceKind::Tcp(config) = &source.kind else {
            unreachable!("the registry makes a TCP source of a TCP source's configuration")
        };
        TcpSource {
            source: source.clone(),
            config: config.clone(),
            listener: None,
        }
    }

    /// An address that cannot be bound: the pipeline file's error, at `sources.NAME.listen`.
    fn bind_error(&self, e: &std::io::Error) -> ConnectorError {
        ConnectorError::Config(ConfigError {
            file: self.config.file.clone(),
            line: Some(self.config.listen_line),
            key: Some(format!("sources.{}.listen", self.source.name)),
            message: crate::http::bind_message(self.config.listen, e),
        })
    }
}

impl super::seam::Source for TcpSource {
    fn ends(&self) -> bool {
        false
    }

    /// The batch it sends, and the one it gathers.
    fn batches_held(&self) -> u64 {
        2
    }

    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "lines over TCP{} on {}, at most {} connections, lines up to {} bytes, idle timeout {:?}",
            if c.tls.is_some() { " with TLS" } else { "" },
            c.listen,
            c.max_connections,
            c.max_line,
            c.idle_timeout,
        )
    }

    fn connect(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(self.config.listen)
                .await
                .map_err(|e| self.bind_error(&e))?;
            let addr: SocketAddr = listener.local_addr().map_err(|e| self.bind_error(&e))?;
            let scheme = if self.config.tls.is_some() {
                "tls"
            } else {
                "tcp"
            };
            crate::notice::info(&format!(
                "source `{}` listening on {scheme}://{addr}",
                self.source.name
            ));
            self.listener = Some(listener);
            Ok(())
        })
    }

    fn start(self: Box<Self>, parts: SourceParts) -> Result<RunningSource, ConnectorError> {
        let TcpSource {
            source,
            config,
            listener,
        } = *self;
        let listener = listener.ok_or_else(super::nats::source::not_connected)?;
        let (tx, rx) = mpsc::channel(PIECES_QUEUED);
        let shared = Arc::new(connection::Shared::new(&source, &config, &parts));
        parts.metrics.read_bytes(ByteInput::Tcp, 0);
        tokio::spawn(accept::accept(listener, Arc::clone(&shared), tx));
        let peer_header = config.peer_header.clone();
        Ok(RunningSource {
            task: tokio::spawn(gather(source, peer_header, rx, parts, shared)),
            finish: None,
        })
    }
}

/// Events read, not yet sent on.
struct Pending {
    events: Events,
    deadline: Option<Instant>,
}

/// The batcher: groups the connections' lines into batches by size and linger until every
/// connection and the accept task have hung up (they do once the run stops); returns that
/// it was stopped.
async fn gather(
    source: config::Source,
    peer_header: Option<String>,
    mut rx: mpsc::Receiver<Piece>,
    parts: SourceParts,
    shared: Arc<connection::Shared>,
) -> bool {
    let mut pending = Pending {
        events: Events::new(),
        deadline: None,
    };
    loop {
        let next = tokio::select! {
            biased;
            _ = tokio::time::sleep_until(pending.deadline.unwrap_or_else(Instant::now)), if pending.deadline.is_some() => {
                send(&mut pending, &parts, &shared).await;
                continue;
            }
            next = rx.recv() => next,
        };
        let Some(Piece { chunk, peer }) = next else {
            break;
        };
        match chunk {
            Chunk::Events(chunk, _, _) => {
                if pending.events.is_empty()
                    && chunk.len() >= source.batch_size
                    && peer_header.is_none()
                {
                    // A full batch from one read: on as it is, without a copy.
                    parts.outputs.send(parts.emit(chunk)).await;
                    continue;
                }
                for event in chunk.iter() {
                    match (&peer_header, &peer) {
                        (Some(name), Some(peer)) => pending.events.push_parts(
                            None,
                            event.value(),
                            [(name.as_bytes(), peer.as_bytes())],
                            None,
                        ),
                        _ => pending.events.push_event(event),
                    }
                    if pending.events.len() >= source.batch_size {
                        send(&mut pending, &parts, &shared).await;
                    }
                }
                crate::pipeline::pool::recycle(chunk);
                if !pending.events.is_empty() && pending.deadline.is_none() {
                    pending.deadline = Some(Instant::now() + source.linger);
                }
            }
            Chunk::Oversized {
                line, kept, len, ..
            } => {
                let what = (line, kept, len);
                let letters = parts.oversized_over(&source.name, what, shared.max_line, None);
                parts.metrics.tap.offer_dead(&letters);
                if let Err(lost) = parts.dead_letters.send(letters).await {
                    lost.0.ack.forget();
                }
            }
        }
    }
    send(&mut pending, &parts, &shared).await;
    true
}

/// Sends the pending events on as a batch, if there are some.
async fn send(pending: &mut Pending, parts: &SourceParts, shared: &connection::Shared) {
    pending.deadline = None;
    parts
        .metrics
        .read_bytes(ByteInput::Tcp, shared.bytes_read());
    if pending.events.is_empty() {
        return;
    }
    let events = std::mem::take(&mut pending.events);
    parts.outputs.send(parts.emit(events)).await;
}
