//! The `[admin]` table: where the admin API listens; its bearer token, given in the file
//! (`token`), through an environment variable (`token_env`) or in a file of its own
//! (`token_file`, which [`read_token_file`] reads, for the command line too); the certificate
//! and key it serves TLS with (`tls_cert`, `tls_key`), which an address beyond loopback
//! requires; and the limits each connection is held to. The keys it shares with every
//! listener are read and checked by `config::listener`; the admin API requires the token.
//! Errors name the key written.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;

use crate::config::error::{ConfigError, Ctx, shown};
use crate::config::listener;
use crate::config::raw::RawAdmin;
use crate::config::tls::ServerTls;

/// Where the admin API listens, unless the file says otherwise. Loopback only: the API can
/// replace the code that runs on every event, so it is not offered to the network by default.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7878";
pub use crate::config::listener::MIN_TOKEN_LEN;
/// The admin API's limits are a listener's ([`crate::http::Limits`]: each default's comment
/// there names the threat it blocks); the file sets each within
/// [`ranges::LISTENER_TIMEOUT`](crate::config::ranges::LISTENER_TIMEOUT) or
/// [`ranges::LISTENER_MAX_CONNECTIONS`](crate::config::ranges::LISTENER_MAX_CONNECTIONS).
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
    let tls = listener::tls(cx, "admin", &raw.listener)?;
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
    let token = listener::token(cx, "admin", &raw.listener, env)?.ok_or_else(|| {
        cx.err(
            &raw.listener.table,
            "admin.token",
            "missing: the admin API needs a bearer token: set `token_env` or `token_file` \
             (or `token`)",
        )
    })?;
    Ok(Admin {
        listen,
        listen_line: cx.line_of(&listen_span),
        token,
        tls,
        limits: listener::limits(cx, "admin", &raw.listener)?,
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
                    &raw.listener.table,
                    "admin.listen",
                    "the default address is unusable",
                )
            })?;
            Ok((addr, raw.listener.table.clone()))
        }
    }
}
