//! A listener's connections: the accept loop, TLS, and the limits that keep clients which
//! open connections and then send slowly, or nothing, from exhausting the host.
//!
//! axum's `serve` has no timeouts and no cap, so connections are accepted here and each is
//! served with hyper's HTTP/1.1 connection under these limits ([`Limits`]: for the admin API
//! the keys of `[admin]`; their defaults are in the parent module):
//!
//! - **Connection cap** (`max_connections`): a connection over the cap is closed as soon as it
//!   is accepted, so a flood of connections cannot exhaust file descriptors or memory.
//! - **TLS handshake** (bounded by `header_timeout`): a client that connects and never
//!   finishes its handshake loses its slot.
//! - **Header-read timeout** (`header_timeout`, hyper's own): a request's head must arrive
//!   within it, counted from when the connection is ready for a request, so a head trickled a
//!   byte at a time (slowloris) ends.
//! - **Idle timeout** (`idle_timeout`): a connection on which no byte moves while no request
//!   is being handled (a silent one, or one kept alive and forgotten) is closed.
//! - **Head size** ([`MAX_HEAD`]): a request line and headers larger than this are refused.
//!
//! The body's deadline and cap (`body`) and the token check (`token`) are per route, layers
//! of the router; a bound on requests handled at once is the owner's (the admin API's is in
//! `control::server`). On stop every connection finishes the request it is handling
//! (for at most [`CLOSE_GRACE`]) and closes; an idle one closes at once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::Limits;

/// Largest request head (request line and headers) hyper buffers. Blocks a client from
/// making the host hold megabytes of headers; the API's requests need a few hundred bytes.
const MAX_HEAD: usize = 16 << 10;
/// How long a connection being closed (idle, or at stop) may take to finish the request it
/// is handling and send the answer. Blocks a client that never reads its answer from keeping
/// the connection, and the pipeline's exit, waiting.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (such as running out of file descriptors), so that a pending
/// connection the host cannot take does not spin the accept loop.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What every connection is served with.
#[derive(Clone)]
pub(super) struct Serving {
    /// What the listener is, for its log lines.
    pub name: Arc<str>,
    pub app: Router,
    pub tls: Option<TlsAcceptor>,
    pub limits: Limits,
    pub stop: CancellationToken,
}

/// Accepts connections until `stop` is cancelled, then waits for the open ones to close.
pub(super) async fn accept_loop(listener: TcpListener, serving: Serving) {
    let slots = Arc::new(Semaphore::new(serving.limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = serving.stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        tracing::debug!(
                            %peer,
                            "{}: {} connections open already; closing this one",
                            serving.name,
                            serving.limits.max_connections
                        );
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection(stream, serving.clone(), slot));
                }
                Err(e) => {
                    tracing::warn!("{}: cannot accept a connection: {e}", serving.name);
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    // Each connection saw `stop` too: it finishes its request and closes.
    while connections.join_next().await.is_some() {}
}

/// One connection, holding its slot until it closes: the TLS handshake if any, then HTTP.
async fn connection(stream: tokio::net::TcpStream, serving: Serving, _slot: OwnedSemaphorePermit) {
    let Some(acceptor) = serving.tls.clone() else {
        return serve_http(stream, serving).await;
    };
    let handshake = tokio::select! {
        done = tokio::time::timeout(serving.limits.header_timeout, acceptor.accept(stream)) => done,
        () = serving.stop.cancelled() => return,
    };
    match handshake {
        Ok(Ok(tls)) => serve_http(tls, serving).await,
        Ok(Err(e)) => tracing::debug!("{}: TLS handshake failed: {e}", serving.name),
        Err(_) => tracing::debug!("{}: TLS handshake not done in time; closed", serving.name),
    }
}

/// Serves HTTP/1.1 on one connection until the client closes it, it is idle for too long, or
/// `stop` is cancelled.
async fn serve_http<I>(io: I, serving: Serving)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: io,
        activity: Arc::clone(&activity),
    });
    let app = serving.app.clone();
    let busy = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let app = app.clone();
        let handling = busy.begin();
        async move {
            let answer = app.oneshot(request).await;
            drop(handling);
            answer
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(serving.limits.header_timeout)
        .max_buf_size(MAX_HEAD)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let idle_timeout = serving.limits.idle_timeout;
    let mut closing_since: Option<Instant> = None;
    loop {
        let wake = match closing_since {
            Some(since) => since + CLOSE_GRACE,
            None if activity.busy() => Instant::now() + idle_timeout,
            None => activity.last() + idle_timeout,
        };
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!("{}: connection ended: {e}", serving.name);
                }
                return;
            }
            () = serving.stop.cancelled(), if closing_since.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing_since = Some(Instant::now());
            }
            () = tokio::time::sleep_until(wake) => {
                if closing_since.is_some() {
                    tracing::debug!("{}: connection still busy {CLOSE_GRACE:?} after it was closed; dropped", serving.name);
                    return;
                }
                if !activity.busy() && activity.last() + idle_timeout <= Instant::now() {
                    conn.as_mut().graceful_shutdown();
                    closing_since = Some(Instant::now());
                }
            }
        }
    }
}

/// When a connection last moved a byte, and how many of its requests are being handled.
struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last byte read or written, or the last answer.
    last_ms: AtomicU64,
    handling: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            handling: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn busy(&self) -> bool {
        self.handling.load(Ordering::Relaxed) > 0
    }

    /// A request is being handled until the guard drops.
    fn begin(self: &Arc<Self>) -> Handling {
        self.handling.fetch_add(1, Ordering::Relaxed);
        Handling(Arc::clone(self))
    }
}

struct Handling(Arc<Activity>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.touch();
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that records in [`Activity`] when it last moved a byte.
struct Tracked<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
