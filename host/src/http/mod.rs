//! Every HTTP listener of weir: the admin API, the metrics listener, and whatever else serves
//! HTTP. What they share lives here; what each serves (its routes) lives with its owner.
//!
//! A listener is described by a [`Config`]: where it listens, its TLS when it has any, the
//! [`Limits`] each connection is held to, and the bearer token its guarded routes need.
//! [`Server::start`] binds the address (a failure says why, for a person: [`BindError`]) and
//! serves two routers on it: the guarded routes, behind the token, and the open ones. An owner
//! that must bind before its routes can exist (a source binds when the run connects, and gets
//! what its routes send to when it starts) calls [`Server::bind`], then [`Bound::serve`].
//!
//! - `listener`: the accept loop and each connection: the connection cap, the TLS handshake,
//!   the header and idle timeouts, the head size cap, and the close at stop.
//! - `tls`: a certificate chain and key, PEM files, loaded into a rustls server config.
//! - `token`: the bearer token check, in constant time, run before any body is read.
//! - `body`: a route's body, read whole within its cap and its deadline before the handler
//!   runs.
//!
//! Requests flow: accepted connection → (TLS) → hyper HTTP/1.1 under the limits → the router:
//! token check on guarded routes → the owner's layers (a body rule, a concurrency bound) →
//! the handler. A handler may hold its request open as long as it needs (until what it was
//! given is acknowledged, say): a connection with a request being handled is never idle, and
//! at stop it has [`CLOSE_GRACE`] to answer. Errors are JSON: [`ErrorBody`], built by
//! [`error`].
//!
//! Nothing here knows of pipelines, stages or the control plane.

mod body;
mod listener;
mod tls;
mod token;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use body::BodyRule;
pub use listener::CLOSE_GRACE;
pub use tls::{TlsError, load_tls};
pub use token::{Token, TokenFileError, read_token_file};

/// How long a server may take to finish its requests once it is told to stop. Blocks a
/// client that holds a request open from holding the pipeline's exit.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long a client has to send a request's head (request line and headers), counted from
/// when the connection is ready for it. Blocks a head sent a byte at a time ("slowloris").
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may stay open with no byte moving and no request being handled.
/// Blocks connections opened and left silent, or kept alive and forgotten, from holding a
/// file descriptor and a connection slot.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request's body may take to arrive, from the end of its head. Blocks a body
/// trickled byte by byte from holding one of the few request slots (and a buffer) for ever.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections open at once. Blocks a flood of connections, each within its timeouts, from
/// exhausting the host's file descriptors and memory.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// What each connection to a listener is held to; each default says the threat it blocks.
/// The pipeline file sets them (`[admin]`'s keys of the same names), each within its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `header_timeout`; also bounds a TLS handshake.
    pub header_timeout: Duration,
    /// `idle_timeout`.
    pub idle_timeout: Duration,
    /// `body_timeout`: the deadline of a route's [`BodyRule`].
    pub body_timeout: Duration,
    /// `max_connections`.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// One listener: where, with what TLS, under what limits, behind what token.
#[derive(Clone)]
pub struct Config {
    /// What the listener is, for logs and answers: `admin API`, `metrics`, `source \`web\``.
    pub name: Arc<str>,
    pub listen: SocketAddr,
    /// The server's TLS settings ([`load_tls`]); plain HTTP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: Limits,
    /// The token every guarded route needs; without one, guarded routes are open.
    pub token: Option<Token>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("name", &self.name)
            .field("listen", &self.listen)
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .field("token", &self.token.is_some())
            .finish()
    }
}

/// An address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("{}", bind_message(*.addr, .source))]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Why an address could not be bound, and what to do, for a person.
pub fn bind_message(addr: SocketAddr, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::AddrInUse => format!(
            "`{addr}` is in use: another program (or another weir) listens there; choose \
             another port, or port 0 for any free one"
        ),
        ErrorKind::AddrNotAvailable => {
            format!("`{addr}` is not an address of this machine: {e}")
        }
        ErrorKind::PermissionDenied => format!(
            "cannot listen on `{addr}`: permission denied (ports below 1024 need privileges)"
        ),
        _ => format!("cannot listen on `{addr}`: {e}"),
    }
}

/// A listener being served; [`Server::stop`] ends it.
pub struct Server {
    /// The bound address (with port 0, the port the system chose).
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds `config.listen` and serves `guarded` (behind `config.token`) and `open` on it
    /// until [`Server::stop`], or until `stop` (the owner's) is cancelled.
    pub async fn start(
        config: &Config,
        guarded: Router,
        open: Router,
        stop: CancellationToken,
    ) -> Result<Server, BindError> {
        Ok(Server::bind(config).await?.serve(guarded, open, stop))
    }

    /// Binds `config.listen`, serving nothing yet: a connection waits in the system's
    /// backlog until [`Bound::serve`].
    pub async fn bind(config: &Config) -> Result<Bound, BindError> {
        let error = |source| BindError {
            addr: config.listen,
            source,
        };
        let tcp = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(error)?;
        let addr = tcp.local_addr().map_err(error)?;
        Ok(Bound {
            config: config.clone(),
            tcp,
            addr,
        })
    }

    /// Stops accepting; waits at most [`STOP_GRACE`] for the open connections to close.
    pub async fn stop(self) {
        self.stop.cancel();
        let abort = self.task.abort_handle();
        if tokio::time::timeout(STOP_GRACE, self.task).await.is_err() {
            abort.abort();
        }
    }
}

/// A listener bound by [`Server::bind`], not yet serving.
pub struct Bound {
    config: Config,
    tcp: tokio::net::TcpListener,
    /// The bound address (with port 0, the port the system chose).
    pub addr: SocketAddr,
}

impl Bound {
    /// Serves `guarded` (behind the token) and `open` until [`Server::stop`], or until `stop`
    /// (the owner's) is cancelled.
    pub fn serve(self, guarded: Router, open: Router, stop: CancellationToken) -> Server {
        let Bound { config, tcp, addr } = self;
        let guarded = match &config.token {
            Some(token) => token.guard(guarded),
            None => guarded,
        };
        let stop = stop.child_token();
        let serving = listener::Serving {
            name: config.name,
            app: guarded.merge(open),
            tls: config
                .tls
                .as_ref()
                .map(|tls| tokio_rustls::TlsAcceptor::from(Arc::clone(tls))),
            limits: config.limits,
            stop: stop.clone(),
        };
        let task = tokio::spawn(listener::accept_loop(tcp, serving));
        Server { addr, stop, task }
    }
}

/// Every error answer: `{"error": "..."}`, with a status that says what kind it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// An error answer: `status` with `{"error": message}`.
pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = ErrorBody {
        error: message.to_string(),
    };
    (status, axum::Json(body)).into_response()
}
