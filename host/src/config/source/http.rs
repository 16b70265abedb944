//! `type = "http"`: events POSTed to an address, one per line of the request body. Its token,
//! TLS and connection limits are a listener's (`config::listener`, shared with `[admin]`); its
//! own keys are where it listens (`listen`, `path`), the size caps of a request (`max_body`,
//! `max_line`) and which request headers go onto its events (`headers`, `key_header`).

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use crate::config::error::{ConfigError, Ctx, Sp, join, shown};
use crate::config::listener::{self, RawListener};
use crate::config::ranges::{HTTP_MAX_BODY, HTTP_MAX_LINE};
use crate::config::reader::Table;
use crate::config::source::SourceKind;
use crate::config::tls::ServerTls;
use crate::config::units;

/// Largest request body unless the file says otherwise. Blocks one request from making the
/// host hold more than a few batches' worth of text; with `max_connections` it bounds the
/// bodies held at once.
pub const DEFAULT_HTTP_MAX_BODY: usize = 1 << 20;
/// Longest line unless the file says otherwise. Blocks single events far longer than a log
/// line or a JSON record from reaching the stages.
pub const DEFAULT_HTTP_MAX_LINE: usize = 64 << 10;

/// An `http` source.
#[derive(Clone)]
pub struct HttpSource {
    pub listen: SocketAddr,
    /// The pipeline file and the line of `listen`: an address that cannot be bound is refused
    /// there, when the run starts.
    pub file: PathBuf,
    pub listen_line: usize,
    /// The one path it takes events at; `/` unless set.
    pub path: String,
    /// In [`ranges::HTTP_MAX_BODY`](crate::config::ranges::HTTP_MAX_BODY); 1 MiB unless set.
    pub max_body: usize,
    /// In [`ranges::HTTP_MAX_LINE`](crate::config::ranges::HTTP_MAX_LINE); 64 KiB unless set.
    pub max_line: usize,
    /// Each connection's limits: `[admin]`'s keys and defaults.
    pub limits: crate::http::Limits,
    /// The bearer token every request needs; without one, requests need none.
    pub token: Option<String>,
    pub tls: Option<ServerTls>,
    /// Request headers copied onto each event, under the names as written.
    pub headers: Vec<String>,
    /// The request header whose value becomes each event's key.
    pub key_header: Option<String>,
}

impl fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token stays out of logs and error messages.
        f.debug_struct("HttpSource")
            .field("listen", &self.listen)
            .field("path", &self.path)
            .field("max_body", &self.max_body)
            .field("max_line", &self.max_line)
            .field("limits", &self.limits)
            .field("tls", &self.tls)
            .field("headers", &self.headers)
            .field("key_header", &self.key_header)
            .finish_non_exhaustive()
    }
}

/// The keys of an `http` source beyond the common ones: its own, then a listener's.
pub(crate) const KEYS: &[&str] = &[
    "listen",
    "path",
    "max_body",
    "max_line",
    "headers",
    "key_header",
    "token",
    "token_env",
    "token_file",
    "tls_cert",
    "tls_key",
    "header_timeout",
    "idle_timeout",
    "body_timeout",
    "max_connections",
];

/// An `http` source as written.
pub(crate) struct Raw {
    pub listen: Option<Sp<String>>,
    pub path: Option<Sp<String>>,
    pub max_body: Option<Sp<String>>,
    pub max_line: Option<Sp<String>>,
    pub headers: Option<Sp<Vec<Sp<String>>>>,
    pub key_header: Option<Sp<String>>,
    pub listener: RawListener,
}

pub(crate) fn read(t: &Table) -> Result<Raw, ConfigError> {
    Ok(Raw {
        listen: t.text("listen")?,
        path: t.text("path")?,
        max_body: t.size("max_body")?,
        max_line: t.size("max_line")?,
        headers: t.texts("headers", "[\"X-Request-Id\"]")?,
        key_header: t.text("key_header")?,
        listener: listener::read(t)?,
    })
}

/// `kind` is the span of `type`, where a missing `listen` is blamed.
pub(crate) fn check(
    cx: &Ctx,
    node: &str,
    kind: &Range<usize>,
    raw: &Raw,
) -> Result<SourceKind, ConfigError> {
    let (listen, listen_span) = listen(cx, node, kind, raw)?;
    let tls = listener::tls(cx, node, &raw.listener)?;
    let token = listener::token(cx, node, &raw.listener, &|name| std::env::var(name).ok())?;
    // Over plain HTTP beyond loopback, the token would cross the network in clear.
    if token.is_some() && tls.is_none() && !listen.ip().is_loopback() {
        return Err(cx.err(
            &listen_span,
            join(node, "listen"),
            format!(
                "`{listen}` is beyond loopback, where plain HTTP would show the bearer token \
                 to the network: set `tls_cert` and `tls_key` (PEM files), or listen on \
                 `127.0.0.1`"
            ),
        ));
    }
    let size = |value: &Option<Sp<String>>, key: &str, range, default: usize| match value {
        // Both ranges end far below `usize::MAX`: the conversion is exact.
        Some(v) => units::size(cx, v, &join(node, key), range).map(|n| n as usize),
        None => Ok(default),
    };
    let max_body = size(
        &raw.max_body,
        "max_body",
        &HTTP_MAX_BODY,
        DEFAULT_HTTP_MAX_BODY,
    )?;
    let max_line = size(
        &raw.max_line,
        "max_line",
        &HTTP_MAX_LINE,
        DEFAULT_HTTP_MAX_LINE,
    )?;
    let mut headers: Vec<String> = Vec::new();
    for name in raw.headers.iter().flat_map(|h| h.get_ref()) {
        let key = join(node, "headers");
        header_name(cx, &key, name)?;
        if headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name.get_ref()))
        {
            let message = format!("{} is listed twice", shown(name.get_ref()));
            return Err(cx.err(&name.span(), key, message));
        }
        headers.push(name.get_ref().clone());
    }
    if let Some(name) = &raw.key_header {
        header_name(cx, &join(node, "key_header"), name)?;
    }
    Ok(SourceKind::Http(Box::new(HttpSource {
        listen,
        file: cx.file.to_path_buf(),
        listen_line: cx.line_of(&listen_span),
        path: path(cx, node, raw)?,
        max_body,
        max_line,
        limits: listener::limits(cx, node, &raw.listener)?,
        token,
        tls,
        headers,
        key_header: raw.key_header.as_ref().map(|k| k.get_ref().clone()),
    })))
}

/// The address, required, and its span.
fn listen(
    cx: &Ctx,
    node: &str,
    kind: &Range<usize>,
    raw: &Raw,
) -> Result<(SocketAddr, Range<usize>), ConfigError> {
    let key = join(node, "listen");
    let Some(written) = &raw.listen else {
        return Err(cx.err(
            kind,
            key,
            "an `http` source needs `listen`, the address to take requests at, such as \
             `\"127.0.0.1:8080\"`",
        ));
    };
    let addr = written.get_ref().parse().map_err(|_| {
        cx.err(
            &written.span(),
            &key,
            format!(
                "{} is not an address: write IP:PORT, such as `127.0.0.1:8080`",
                shown(written.get_ref())
            ),
        )
    })?;
    Ok((addr, written.span()))
}

/// The path: `/` and visible ASCII, without a query, a fragment or a route pattern.
fn path(cx: &Ctx, node: &str, raw: &Raw) -> Result<String, ConfigError> {
    let Some(written) = &raw.path else {
        return Ok("/".to_string());
    };
    let p = written.get_ref();
    let fits = p.starts_with('/')
        && p.len() <= 1024
        && p.chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '?' | '#' | '{' | '}' | '*' | '%'));
    if !fits {
        return Err(cx.err(
            &written.span(),
            join(node, "path"),
            format!(
                "{} is not a usable path: write one starting with `/`, such as `/events`, of \
                 visible ASCII without `?`, `#`, `%`, `{{`, `}}` or `*`",
                shown(p)
            ),
        ));
    }
    Ok(p.clone())
}

/// A header name a request can carry, and not one of weir's own (`weir.…`), which only the
/// host sets.
fn header_name(cx: &Ctx, key: &str, name: &Sp<String>) -> Result<(), ConfigError> {
    let text = name.get_ref();
    if text.len() >= 5 && text.as_bytes()[..5].eq_ignore_ascii_case(b"weir.") {
        return Err(cx.err(
            &name.span(),
            key,
            format!(
                "{} is one of weir's own headers (`weir.…`), which only the host sets",
                shown(text)
            ),
        ));
    }
    if axum::http::HeaderName::from_bytes(text.as_bytes()).is_err() {
        return Err(cx.err(
            &name.span(),
            key,
            format!(
                "{} is not a header name: use letters, digits and `-`, such as `X-Request-Id`",
                shown(text)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_http_source_takes_every_key_of_a_listener() {
        for key in crate::config::listener::KEYS {
            assert!(super::KEYS.contains(key), "{key}");
        }
    }
}
