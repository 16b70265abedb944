//! The HTTP source: events POSTed to an address, one per line of the body, each request
//! answered once its events are written.
//!
//! [`Source::connect`](super::Source::connect) binds the address (a taken port stops the run
//! before anything is read, refused at `sources.NAME.listen`); `start` serves one route on it
//! through the shared listener ([`crate::http`]: connection cap, header and idle timeouts,
//! TLS, the bearer token checked before the body is read, the body read whole within
//! `max_body` and `body_timeout`). A `POST` at `path` goes through `intake`: split into
//! batches (`split`), sent into the pipeline if it has room now (else 429), and answered 200
//! only once every batch is written by every sink or dead-lettered. Other methods get 405,
//! other paths 404.
//!
//! Requests are batched each on its own (a request of 10 lines is a batch of 10, one of 1,000
//! is batches of `batch_size`): a client that waits for its answer gains nothing from a
//! linger, so `linger` does not apply.
//!
//! Stopping: when the run stops, the listener stops accepting and each connection finishes the
//! request it is handling (for at most [`crate::http::CLOSE_GRACE`]); a request not yet taken
//! gets 503. The source task waits until no request is sending, then drops its outputs, so the
//! graph drains what was taken and those requests get their 200. Once the run has drained, the
//! source's finish answers 503 to any request still waiting (its events may or may not have
//! been written: a sink failed) and waits at most [`crate::http::STOP_GRACE`] for the
//! connections to close.

mod intake;
mod split;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use super::parts::SourceParts;
use super::seam::{BoxFuture, ConnectorError, RunningSource};
use crate::config::{self, ConfigError};
use crate::http::{self, BodyRule, Bound, Server, Token};
use intake::Intake;

/// `type = "http"`.
pub(crate) struct HttpSource {
    name: String,
    batch_size: usize,
    config: Box<config::HttpSource>,
    /// Bound by `connect`.
    bound: Option<Bound>,
}

impl HttpSource {
    pub(crate) fn new(source: &config::Source, config: &config::HttpSource) -> HttpSource {
        HttpSource {
            name: source.name.clone(),
            batch_size: source.batch_size,
            config: Box::new(config.clone()),
            bound: None,
        }
    }

    fn listener(&self) -> http::Config {
        http::Config {
            name: Arc::from(format!("source `{}`", self.name)),
            listen: self.config.listen,
            tls: self.config.tls.as_ref().map(|tls| Arc::clone(&tls.config)),
            limits: self.config.limits,
            token: self.config.token.as_deref().map(Token::new),
        }
    }

    fn url(&self, addr: std::net::SocketAddr) -> String {
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{addr}{}", self.config.path)
    }
}

impl super::Source for HttpSource {
    fn ends(&self) -> bool {
        false
    }

    /// Each request being taken may hold one batch it has emitted and not yet sent, and a
    /// connection handles one request at a time.
    fn batches_held(&self) -> u64 {
        self.config.limits.max_connections as u64
    }

    fn describe(&self) -> String {
        let token = match self.config.token {
            Some(_) => ", bearer token required",
            None => "",
        };
        format!(
            "HTTP POST at {} (lines of at most {} bytes, bodies of at most {} bytes{token})",
            self.url(self.config.listen),
            self.config.max_line,
            self.config.max_body
        )
    }

    fn connect(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async move {
            let bound = Server::bind(&self.listener()).await.map_err(|e| {
                ConnectorError::Config(ConfigError {
                    file: self.config.file.clone(),
                    line: Some(self.config.listen_line),
                    key: Some(format!("sources.{}.listen", self.name)),
                    message: e.to_string(),
                })
            })?;
            self.bound = Some(bound);
            Ok(())
        })
    }

    fn start(mut self: Box<Self>, parts: SourceParts) -> Result<RunningSource, ConnectorError> {
        let bound = self.bound.take().ok_or_else(not_bound)?;
        let stop = parts.ctx.stop.clone();
        let intake = Arc::new(Intake {
            name: self.name.clone(),
            batch_size: self.batch_size,
            max_line: self.config.max_line,
            headers: self.config.headers.clone(),
            key_header: self.config.key_header.clone(),
            parts: Arc::new(RwLock::new(Some(parts))),
            ended: CancellationToken::new(),
        });
        let said: Arc<str> = Arc::from(format!(
            "{} (source `{}`'s `body_timeout`)",
            config::fmt_duration(self.config.limits.body_timeout),
            self.name
        ));
        let rule = BodyRule {
            cap: self.config.max_body,
            timeout: self.config.limits.body_timeout,
            said,
        };
        let guarded = Router::new()
            .route(&self.config.path, rule.apply(post(intake::accept)))
            .with_state(Arc::clone(&intake));
        let open = Router::new().fallback(not_found);
        let url = self.url(bound.addr);
        let server = bound.serve(guarded, open, stop.clone());
        crate::notice::info(&format!("source `{}` listening on {url}", self.name));
        let task = tokio::spawn(run(Arc::clone(&intake), stop));
        Ok(RunningSource {
            task,
            finish: Some(Box::pin(finish(intake, server))),
        })
    }
}

/// The source task: once the run stops, waits until no request is sending, then drops the
/// source's parts (its outputs among them), so that the graph can drain. Returns that it was
/// stopped: its input never ends by itself.
async fn run(intake: Arc<Intake>, stop: CancellationToken) -> bool {
    stop.cancelled().await;
    intake.parts.write().await.take();
    true
}

/// Once every acknowledgement is released or forgotten: the requests still waiting get 503,
/// and the connections close.
async fn finish(intake: Arc<Intake>, server: Server) {
    intake.ended.cancel();
    server.stop().await;
}

async fn not_found() -> axum::response::Response {
    http::error(
        StatusCode::NOT_FOUND,
        "no such path: POST events to this source's `path`",
    )
}

/// A source started before it was bound: a fault of the topology, refused.
fn not_bound() -> ConnectorError {
    ConnectorError::Io {
        what: "cannot start".into(),
        source: std::io::Error::other("it was never bound"),
    }
}
