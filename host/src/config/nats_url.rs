//! The `url` of a NATS source or sink: one server URL, or a comma-separated list of seed
//! servers (`"nats://a:4222,nats://b:4222"`), as NATS clients take it.
//!
//! [`check`] splits the text on commas, trims each entry and parses it into an
//! [`async_nats::ServerAddr`]; the checked source or sink keeps the text as written (for
//! messages) beside the list (to connect with). The client connects to one seed and learns the
//! rest of the cluster from it, so the list only has to reach one live node. Every entry is
//! checked before the run, so that a typo in the third seed is refused by `weir check` rather
//! than found when the first two are down.

use async_nats::ServerAddr;

use crate::config::DEFAULT_NATS_URL;
use crate::config::error::{ConfigError, Ctx, Sp, shown};

/// The schemes this build can connect with: plain TCP and TLS. The client also names `ws` and
/// `wss`, but without its websocket feature it would open a plain TCP connection to such a
/// server, so they are refused here rather than failing at run time.
const SCHEMES: [&str; 2] = ["nats", "tls"];

/// Why the text of a `url` is not a list of NATS servers. `entry` counts from 1; `shown` is
/// the entry fit to quote, with any credentials hidden.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NatsUrlError {
    #[error(
        "{}is empty: write one server URL, or several separated by commas, such as `nats://a:4222,nats://b:4222`",
        which(*.entry, *.count, "")
    )]
    Empty { entry: usize, count: usize },
    #[error("{}has the scheme {scheme}: use `nats://` (or `tls://`)", which(*.entry, *.count, .shown))]
    Scheme {
        entry: usize,
        count: usize,
        shown: String,
        scheme: String,
    },
    #[error("{}is not a server URL: {reason}", which(*.entry, *.count, .shown))]
    Invalid {
        entry: usize,
        count: usize,
        shown: String,
        reason: String,
    },
    #[error("{}names no host: write `nats://HOST:PORT`", which(*.entry, *.count, .shown))]
    NoHost {
        entry: usize,
        count: usize,
        shown: String,
    },
    #[error("{}has port 0: a server listens on a port from 1 to 65535", which(*.entry, *.count, .shown))]
    PortZero {
        entry: usize,
        count: usize,
        shown: String,
    },
    #[error(
        "{}has a path, query or fragment: a server URL is `nats://HOST:PORT` (separate several with commas)",
        which(*.entry, *.count, .shown)
    )]
    Extra {
        entry: usize,
        count: usize,
        shown: String,
    },
}

/// The start of a message about one entry: `` `nats://b:x` `` when the text holds one URL,
/// ``entry 2 of 3 (`nats://b:x`)`` when it holds several.
fn which(entry: usize, count: usize, shown: &str) -> String {
    match (count, shown.is_empty()) {
        (1, true) => "the URL ".to_string(),
        (1, false) => format!("{shown} "),
        (_, true) => format!("entry {entry} of {count} "),
        (_, false) => format!("entry {entry} of {count} ({shown}) "),
    }
}

/// The servers of a `url`: one, or several separated by commas. An entry without a scheme is
/// taken as `nats://`, one without a port as port 4222, as NATS clients do.
pub(crate) fn servers(text: &str) -> Result<Vec<ServerAddr>, NatsUrlError> {
    let count = text.split(',').count();
    text.split(',')
        .enumerate()
        .map(|(i, entry)| server(entry.trim(), i + 1, count))
        .collect()
}

/// One entry of the list.
fn server(entry: &str, index: usize, count: usize) -> Result<ServerAddr, NatsUrlError> {
    let quoted = shown(&redacted(entry));
    if entry.is_empty() {
        return Err(NatsUrlError::Empty {
            entry: index,
            count,
        });
    }
    if let Some((scheme, _)) = entry.split_once("://")
        && !SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme))
    {
        return Err(NatsUrlError::Scheme {
            entry: index,
            count,
            shown: quoted,
            scheme: shown(&redacted(scheme)),
        });
    }
    let addr: ServerAddr = entry.parse().map_err(|e: std::io::Error| {
        // The client words it "NATS server URL is invalid: invalid port number".
        let reason = e.to_string();
        let mut reason = reason.rsplit(": ").next().unwrap_or(&reason).to_string();
        if entry.contains(char::is_whitespace) {
            reason.push_str(" (separate several servers with commas, not spaces)");
        }
        NatsUrlError::Invalid {
            entry: index,
            count,
            shown: quoted.clone(),
            reason,
        }
    })?;
    let url = addr.clone().into_inner();
    if addr.host().is_empty() {
        return Err(NatsUrlError::NoHost {
            entry: index,
            count,
            shown: quoted,
        });
    }
    if url.port() == Some(0) {
        return Err(NatsUrlError::PortZero {
            entry: index,
            count,
            shown: quoted,
        });
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(NatsUrlError::Extra {
            entry: index,
            count,
            shown: quoted,
        });
    }
    Ok(addr)
}

/// `entry` with the user and password of `nats://user:pass@host` hidden, so that an error
/// message printed to a terminal or a log never carries a password.
fn redacted(entry: &str) -> String {
    let start = entry.find("://").map_or(0, |i| i + 3);
    match entry.rfind('@') {
        Some(at) if at >= start => format!("{}…{}", &entry[..start], &entry[at..]),
        _ => entry.to_string(),
    }
}

/// The `url` of a source or sink (the default when the file has none): the text as written,
/// and its servers. An error names `key`, the line of the value and the entry that is wrong.
pub(crate) fn check(
    cx: &Ctx,
    written: Option<&Sp<String>>,
    key: &str,
) -> Result<(String, Vec<ServerAddr>), ConfigError> {
    let Some(written) = written else {
        let servers = servers(DEFAULT_NATS_URL).map_err(|e| cx.err_file(key, e.to_string()))?;
        return Ok((DEFAULT_NATS_URL.to_string(), servers));
    };
    match servers(written.get_ref()) {
        Ok(servers) => Ok((written.get_ref().clone(), servers)),
        Err(e) => Err(cx.err(&written.span(), key, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(text: &str) -> Vec<(String, u16, bool)> {
        servers(text)
            .expect("a valid list")
            .iter()
            .map(|s| (s.host().to_string(), s.port(), s.tls_required()))
            .collect()
    }

    #[test]
    fn one_url_or_a_comma_separated_list_with_the_clients_defaults() {
        assert_eq!(hosts("nats://a:4222"), [("a".into(), 4222, false)]);
        assert_eq!(
            hosts("nats://a:4222, tls://b:5222 ,c,127.0.0.1:4333"),
            [
                ("a".into(), 4222, false),
                ("b".into(), 5222, true),
                ("c".into(), 4222, false),
                ("127.0.0.1".into(), 4333, false),
            ]
        );
        assert_eq!(hosts("nats://[::1]:4222"), [("::1".into(), 4222, false)]);
        assert_eq!(hosts("NATS://u:p@a:1/"), [("a".into(), 1, false)]);
        assert_eq!(hosts(DEFAULT_NATS_URL).len(), 1);
    }

    #[test]
    fn the_entry_that_is_wrong_is_named() {
        let err = |text: &str| servers(text).expect_err(text).to_string();
        assert_eq!(
            err("nats://a:4222,nats://b:42x22"),
            "entry 2 of 2 (`nats://b:42x22`) is not a server URL: invalid port number"
        );
        assert_eq!(
            err("nats://a:99999"),
            "`nats://a:99999` is not a server URL: invalid port number"
        );
        assert!(err("nats://a:4222,,nats://c:4222").starts_with("entry 2 of 3 is empty"));
        assert!(err("nats://a:4222,").starts_with("entry 2 of 2 is empty"));
        assert!(err("").starts_with("the URL is empty"));
        assert!(err("  ").starts_with("the URL is empty"));
        assert_eq!(
            err("nats://a:4222,http://b:4222"),
            "entry 2 of 2 (`http://b:4222`) has the scheme `http`: use `nats://` (or `tls://`)"
        );
        assert!(err("ws://a:4222").contains("the scheme `ws`"));
        for no_host in [
            "nats://:4222",
            "nats://",
            "nats:///",
            "nats://u@:1",
            "tls://?",
        ] {
            assert!(err(no_host).contains("host"), "{no_host}: {}", err(no_host));
        }
        assert!(err("nats://a:0").contains("has port 0"));
        assert!(err("nats://a:4222/nats://b:4222").contains("path, query or fragment"));
        assert!(err("nats://a:4222?x=1").contains("path, query or fragment"));
        assert!(err("nats://a b:4222").contains("is not a server URL"));
        assert!(err("nats://a:1 nats://b:1").ends_with("with commas, not spaces)"));
    }

    #[test]
    fn a_password_never_reaches_a_message() {
        let message = servers("nats://a,nats://user:hunter2@b:x")
            .expect_err("a bad port")
            .to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(!message.contains("user"), "{message}");
        assert!(message.contains("`nats://…@b:x`"), "{message}");
    }

    #[test]
    fn a_control_character_is_escaped() {
        let message = servers("nats://a:1,nats://b\n:x")
            .expect_err("bad")
            .to_string();
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn check_names_the_key_and_the_line() {
        let text = "a = 1\nurl = \"nats://a:4222,nats://b:x\"\n";
        let cx = Ctx::new(std::path::Path::new("/x/p.toml"), text);
        let start = text.find('"').expect("a quote");
        let written = Sp::new(
            start..text.len() - 1,
            "nats://a:4222,nats://b:x".to_string(),
        );
        let e = check(&cx, Some(&written), "sources.in.url").expect_err("a bad port");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key.as_deref(), Some("sources.in.url"));
        assert!(e.message.starts_with("entry 2 of 2"), "{}", e.message);
        let (url, servers) = check(&cx, None, "sinks.out.url").expect("the default");
        assert_eq!((url.as_str(), servers.len()), (DEFAULT_NATS_URL, 1));
    }
}
