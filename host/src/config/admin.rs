//! The `[admin]` table: where the admin API listens and its bearer token.

use crate::config::error::{ConfigError, Ctx};
use crate::config::raw::{RawAdmin, Sp};
use crate::config::{Admin, DEFAULT_ADMIN_LISTEN, MIN_TOKEN_LEN};

pub(crate) fn check_admin(cx: &Ctx, raw: &Sp<RawAdmin>) -> Result<Admin, ConfigError> {
    let raw_admin = raw.get_ref();
    let listen = match &raw_admin.listen {
        Some(l) => l.get_ref().parse().map_err(|_| {
            cx.err(
                &l.span(),
                "admin.listen",
                format!(
                    "`{}` is not an address: write IP:PORT, such as `127.0.0.1:7878`",
                    l.get_ref()
                ),
            )
        })?,
        None => DEFAULT_ADMIN_LISTEN
            .parse()
            .expect("the default address parses"),
    };
    let token = match (&raw_admin.token, &raw_admin.token_env) {
        (Some(t), None) => (t.get_ref().clone(), t.span()),
        (None, Some(var)) => match std::env::var(var.get_ref()) {
            Ok(t) => (t, var.span()),
            Err(_) => {
                return Err(cx.err(
                    &var.span(),
                    "admin.token_env",
                    format!("the environment variable `{}` is not set", var.get_ref()),
                ));
            }
        },
        (Some(t), Some(_)) => {
            return Err(cx.err(
                &t.span(),
                "admin.token",
                "give `token` or `token_env`, not both",
            ));
        }
        (None, None) => {
            return Err(cx.err(
                &raw.span(),
                "admin.token",
                "the admin API needs a bearer token: set `token` or `token_env`",
            ));
        }
    };
    let (token, span) = token;
    if token.trim().len() < MIN_TOKEN_LEN {
        return Err(cx.err(
            &span,
            "admin.token",
            format!("the token must be at least {MIN_TOKEN_LEN} characters"),
        ));
    }
    Ok(Admin {
        listen,
        token: token.trim().to_string(),
    })
}
