//! What every HTTP listener of a pipeline file shares: `[admin]` and an `http` source alike
//! take a bearer token (`token`, `token_env` or `token_file`), a certificate and key to serve
//! TLS with (`tls_cert`, `tls_key`), and the limits each connection is held to
//! (`header_timeout`, `idle_timeout`, `body_timeout`, `max_connections`).
//!
//! [`read`] reads those keys of a table as written ([`RawListener`]); [`token`], [`tls`] and
//! [`limits`] check them, each error naming the key written under the table's path (`node`,
//! such as `admin` or `sources.web`). Whether a token is required, and what an address beyond
//! loopback needs, is for the owner to say.

use std::ops::Range;

use crate::config::error::{ConfigError, Ctx, Sp, join, plain, shown};
use crate::config::reader::Table;
use crate::config::tls::{ServerTls, load_tls};
use crate::config::{names, ranges, units};
use crate::http::{Limits, read_token_file};

/// Shortest bearer token accepted. Blocks a token short enough to be guessed over the API.
pub const MIN_TOKEN_LEN: usize = 16;

/// The keys every listener takes beside its address; each owner lists them among its own
/// (a test holds it to that).
#[cfg(test)]
pub(crate) const KEYS: &[&str] = &[
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

/// A listener's shared keys as written.
pub(crate) struct RawListener {
    /// The table, where an error about a missing key points.
    pub table: Range<usize>,
    pub token: Option<Sp<String>>,
    pub token_env: Option<Sp<String>>,
    pub token_file: Option<Sp<String>>,
    pub tls_cert: Option<Sp<String>>,
    pub tls_key: Option<Sp<String>>,
    pub header_timeout: Option<Sp<String>>,
    pub idle_timeout: Option<Sp<String>>,
    pub body_timeout: Option<Sp<String>>,
    pub max_connections: Option<Sp<i128>>,
}

pub(crate) fn read(t: &Table) -> Result<RawListener, ConfigError> {
    Ok(RawListener {
        table: t.span(),
        token: t.text("token")?,
        token_env: t.text("token_env")?,
        token_file: t.text("token_file")?,
        tls_cert: t.text("tls_cert")?,
        tls_key: t.text("tls_key")?,
        header_timeout: t.duration("header_timeout")?,
        idle_timeout: t.duration("idle_timeout")?,
        body_timeout: t.duration("body_timeout")?,
        max_connections: t.whole("max_connections")?,
    })
}

/// The token, if one of `token`, `token_env` and `token_file` is given: at least
/// [`MIN_TOKEN_LEN`] visible ASCII characters, without the spaces around it. `env` stands in
/// for the process environment.
pub(crate) fn token(
    cx: &Ctx,
    node: &str,
    raw: &RawListener,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    let Some((token, span, key)) = given_token(cx, node, raw, env)? else {
        return Ok(None);
    };
    let token = token.trim();
    let from = match key {
        "token_env" => "the token in that variable",
        "token_file" => "the token in that file",
        _ => "the token",
    };
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err(cx.err(
            &span,
            join(node, key),
            format!("{from} must be at least {MIN_TOKEN_LEN} characters"),
        ));
    }
    // The token travels in an `Authorization` header and on command lines.
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(cx.err(
            &span,
            join(node, key),
            format!("{from} must be visible ASCII characters only, without spaces"),
        ));
    }
    Ok(Some(token.to_string()))
}

/// A token as given: the token, the span to blame for it, and the key that gave it.
type Given = (String, Range<usize>, &'static str);

/// The token as given, if any.
fn given_token(
    cx: &Ctx,
    node: &str,
    raw: &RawListener,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Given>, ConfigError> {
    let given: Vec<(&Sp<String>, &'static str)> = [
        (&raw.token, "token"),
        (&raw.token_env, "token_env"),
        (&raw.token_file, "token_file"),
    ]
    .into_iter()
    .filter_map(|(value, key)| value.as_ref().map(|v| (v, key)))
    .collect();
    match given.as_slice() {
        [] => Ok(None),
        [(t, "token")] => Ok(Some((t.get_ref().clone(), t.span(), "token"))),
        [(var, "token_env")] => {
            let key = join(node, "token_env");
            names::env(var.get_ref()).map_err(|m| cx.err(&var.span(), &key, m))?;
            match env(var.get_ref()) {
                Some(t) => Ok(Some((t, var.span(), "token_env"))),
                None => Err(cx.err(
                    &var.span(),
                    key,
                    format!(
                        "the environment variable {} is not set (or not UTF-8)",
                        shown(var.get_ref())
                    ),
                )),
            }
        }
        [(file, key)] => {
            let path = cx.path(file.get_ref());
            let token = read_token_file(&path).map_err(|e| {
                cx.err(
                    &file.span(),
                    join(node, key),
                    format!("{}: {e}", plain(&path.display().to_string())),
                )
            })?;
            Ok(Some((token, file.span(), "token_file")))
        }
        [.., (last, key)] => Err(cx.err(
            &last.span(),
            join(node, key),
            "give one of `token`, `token_env` and `token_file`, not several",
        )),
    }
}

/// `tls_cert` and `tls_key`, both or neither; loaded and checked against each other. An HTTP
/// listener offers HTTP/1.1 by ALPN.
pub(crate) fn tls(
    cx: &Ctx,
    node: &str,
    raw: &RawListener,
) -> Result<Option<ServerTls>, ConfigError> {
    let (cert, key) = (raw.tls_cert.as_ref(), raw.tls_key.as_ref());
    load_tls(cx, node, (cert, key), &[b"http/1.1"])
}

/// The timeouts and the connection cap, each in its range ([`ranges::LISTENER_TIMEOUT`],
/// [`ranges::LISTENER_MAX_CONNECTIONS`]); each default is [`Limits`]'s.
pub(crate) fn limits(cx: &Ctx, node: &str, raw: &RawListener) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    let timeouts = [
        (
            &raw.header_timeout,
            "header_timeout",
            &mut limits.header_timeout,
        ),
        (&raw.idle_timeout, "idle_timeout", &mut limits.idle_timeout),
        (&raw.body_timeout, "body_timeout", &mut limits.body_timeout),
    ];
    for (value, key, slot) in timeouts {
        if let Some(v) = value {
            *slot = units::duration(cx, v, &join(node, key), &ranges::LISTENER_TIMEOUT)?;
        }
    }
    if let Some(v) = &raw.max_connections {
        limits.max_connections = units::whole(
            cx,
            v,
            &join(node, "max_connections"),
            &ranges::LISTENER_MAX_CONNECTIONS,
        )?;
    }
    Ok(limits)
}
