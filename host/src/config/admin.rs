//! The `[admin]` table: where the admin API listens; its bearer token, given in the file
//! (`token`), through an environment variable (`token_env`) or in a file of its own
//! (`token_file`, which [`read_token_file`] reads, for the command line too); the certificate
//! and key it serves TLS with (`tls_cert`, `tls_key`), which an address beyond loopback
//! requires; and the limits each connection is held to. Errors name the key written.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;

use crate::config::error::{ConfigError, Ctx, Sp, plain, shown};
use crate::config::raw::RawAdmin;
use crate::config::tls::{ServerTls, load_tls};
use crate::config::{names, ranges, units};

/// Where the admin API listens, unless the file says otherwise. Loopback only: the API can
/// replace the code that runs on every event, so it is not offered to the network by default.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7878";
/// Shortest admin token accepted. Blocks a token short enough to be guessed over the API.
pub const MIN_TOKEN_LEN: usize = 16;
/// The admin API's limits are a listener's ([`crate::http::Limits`]: each default's comment
/// there names the threat it blocks); the file sets each within [`ranges::ADMIN_TIMEOUT`] or
/// [`ranges::ADMIN_MAX_CONNECTIONS`].
pub use crate::http::{
    DEFAULT_BODY_TIMEOUT as DEFAULT_ADMIN_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT as DEFAULT_ADMIN_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT as DEFAULT_ADMIN_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS as DEFAULT_ADMIN_MAX_CONNECTIONS, Limits as AdminLimits,
};
pub use crate::http::{TokenFileError, read_token_file};

/// The admin API: where it listens, the bearer token every request must carry, TLS when it
/// listens beyond loopback, and the limits each connection is served under.
#[derive(Clone)]
pub struct Admin {
    pub listen: std::net::SocketAddr,
    /// The line of `listen` (of `[admin]` when the default is used): an address that cannot
    /// be bound is refused there.
    pub listen_line: usize,
    /// At least [`MIN_TOKEN_LEN`] characters, all visible ASCII (it travels in a header).
    pub token: String,
    /// `tls_cert` and `tls_key`, loaded; required when `listen` is beyond loopback.
    pub tls: Option<ServerTls>,
    pub limits: AdminLimits,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token stays out of logs and error messages.
        f.debug_struct("Admin")
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Reads the process environment when the file names `token_env`.
pub(crate) fn check(cx: &Ctx, raw: &RawAdmin) -> Result<Admin, ConfigError> {
    check_with(cx, raw, &|name| std::env::var(name).ok())
}

/// The admin table, with `env` standing in for the process environment.
pub(crate) fn check_with(
    cx: &Ctx,
    raw: &RawAdmin,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Admin, ConfigError> {
    let (listen, listen_span) = listen(cx, raw)?;
    let tls = tls(cx, raw)?;
    // Over plain HTTP the token and every uploaded plugin would cross the network in clear.
    if !listen.ip().is_loopback() && tls.is_none() {
        return Err(cx.err(
            &listen_span,
            "admin.listen",
            format!(
                "`{listen}` is beyond loopback, where plain HTTP would show the bearer token \
                 and the plugins to the network: set `tls_cert` and `tls_key` (PEM files) to \
                 serve the admin API over TLS, or listen on `127.0.0.1`"
            ),
        ));
    }
    let (token, span, key) = token(cx, raw, env)?;
    let token = token.trim();
    let from = match key {
        "admin.token_env" => "the token in that variable",
        "admin.token_file" => "the token in that file",
        _ => "the token",
    };
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err(cx.err(
            &span,
            key,
            format!("{from} must be at least {MIN_TOKEN_LEN} characters"),
        ));
    }
    // The token travels in an `Authorization` header and on command lines.
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(cx.err(
            &span,
            key,
            format!("{from} must be visible ASCII characters only, without spaces"),
        ));
    }
    Ok(Admin {
        listen,
        listen_line: cx.line_of(&listen_span),
        token: token.to_string(),
        tls,
        limits: limits(cx, raw)?,
    })
}

/// The address, and the span to blame for it (the table's when the default is used).
fn listen(cx: &Ctx, raw: &RawAdmin) -> Result<(SocketAddr, Range<usize>), ConfigError> {
    match &raw.listen {
        Some(l) => {
            let addr = l.get_ref().parse().map_err(|_| {
                cx.err(
                    &l.span(),
                    "admin.listen",
                    format!(
                        "{} is not an address: write IP:PORT, such as `127.0.0.1:7878`",
                        shown(l.get_ref())
                    ),
                )
            })?;
            Ok((addr, l.span()))
        }
        None => {
            let addr = DEFAULT_ADMIN_LISTEN.parse().map_err(|_| {
                cx.err(
                    &raw.table,
                    "admin.listen",
                    "the default address is unusable",
                )
            })?;
            Ok((addr, raw.table.clone()))
        }
    }
}

/// The token, the span to blame for it, and the key that gave it.
fn token(
    cx: &Ctx,
    raw: &RawAdmin,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Range<usize>, &'static str), ConfigError> {
    let given: Vec<(&Sp<String>, &'static str)> = [
        (&raw.token, "admin.token"),
        (&raw.token_env, "admin.token_env"),
        (&raw.token_file, "admin.token_file"),
    ]
    .into_iter()
    .filter_map(|(value, key)| value.as_ref().map(|v| (v, key)))
    .collect();
    match given.as_slice() {
        [] => Err(cx.err(
            &raw.table,
            "admin.token",
            "missing: the admin API needs a bearer token: set `token_env` or `token_file` \
             (or `token`)",
        )),
        [(t, "admin.token")] => Ok((t.get_ref().clone(), t.span(), "admin.token")),
        [(var, "admin.token_env")] => {
            names::env(var.get_ref()).map_err(|m| cx.err(&var.span(), "admin.token_env", m))?;
            match env(var.get_ref()) {
                Some(t) => Ok((t, var.span(), "admin.token_env")),
                None => Err(cx.err(
                    &var.span(),
                    "admin.token_env",
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
                    *key,
                    format!("{}: {e}", plain(&path.display().to_string())),
                )
            })?;
            Ok((token, file.span(), "admin.token_file"))
        }
        [.., (last, key)] => Err(cx.err(
            &last.span(),
            *key,
            "give one of `token`, `token_env` and `token_file`, not several",
        )),
    }
}

/// `tls_cert` and `tls_key`, both or neither; loaded and checked against each other.
fn tls(cx: &Ctx, raw: &RawAdmin) -> Result<Option<ServerTls>, ConfigError> {
    let (cert, key) = (raw.tls_cert.as_ref(), raw.tls_key.as_ref());
    load_tls(cx, "admin", (cert, key), &[b"http/1.1"])
}

/// The timeouts and the connection cap, each in its range.
fn limits(cx: &Ctx, raw: &RawAdmin) -> Result<AdminLimits, ConfigError> {
    let mut limits = AdminLimits::default();
    let timeouts = [
        (
            &raw.header_timeout,
            "admin.header_timeout",
            &mut limits.header_timeout,
        ),
        (
            &raw.idle_timeout,
            "admin.idle_timeout",
            &mut limits.idle_timeout,
        ),
        (
            &raw.body_timeout,
            "admin.body_timeout",
            &mut limits.body_timeout,
        ),
    ];
    for (value, key, slot) in timeouts {
        if let Some(v) = value {
            *slot = units::duration(cx, v, key, &ranges::ADMIN_TIMEOUT)?;
        }
    }
    if let Some(v) = &raw.max_connections {
        limits.max_connections = units::whole(
            cx,
            v,
            "admin.max_connections",
            &ranges::ADMIN_MAX_CONNECTIONS,
        )?;
    }
    Ok(limits)
}
