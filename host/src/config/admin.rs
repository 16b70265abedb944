//! The `[admin]` table: where the admin API listens, its bearer token, given in the file
//! (`token`) or through an environment variable (`token_env`), and the limits each
//! connection is held to. Errors name the key written.

use std::ops::Range;

use crate::config::error::{ConfigError, Ctx, shown};
use crate::config::raw::RawAdmin;
use crate::config::{Admin, AdminLimits, DEFAULT_ADMIN_LISTEN, MIN_TOKEN_LEN};
use crate::config::{names, ranges, units};

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
    let listen = match &raw.listen {
        Some(l) => l.get_ref().parse().map_err(|_| {
            cx.err(
                &l.span(),
                "admin.listen",
                format!(
                    "{} is not an address: write IP:PORT, such as `127.0.0.1:7878`",
                    shown(l.get_ref())
                ),
            )
        })?,
        None => DEFAULT_ADMIN_LISTEN.parse().map_err(|_| {
            cx.err(
                &raw.table,
                "admin.listen",
                "the default address is unusable",
            )
        })?,
    };
    let (token, span, key) = token(cx, raw, env)?;
    let token = token.trim();
    let from = if key == "admin.token_env" {
        "the token in that variable"
    } else {
        "the token"
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
        token: token.to_string(),
        limits: limits(cx, raw)?,
    })
}

/// The token, the span to blame for it, and the key that gave it.
fn token(
    cx: &Ctx,
    raw: &RawAdmin,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Range<usize>, &'static str), ConfigError> {
    match (&raw.token, &raw.token_env) {
        (Some(t), None) => Ok((t.get_ref().clone(), t.span(), "admin.token")),
        (None, Some(var)) => {
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
        (Some(_), Some(var)) => Err(cx.err(
            &var.span(),
            "admin.token_env",
            "give `token` or `token_env`, not both",
        )),
        (None, None) => Err(cx.err(
            &raw.table,
            "admin.token",
            "missing: the admin API needs a bearer token: set `token_env` (or `token`)",
        )),
    }
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
