//! The client side of the admin API, for `weir reload`, `weir rollback`, `weir stages` and
//! `weir plugin inspect --admin`: where the API is ([`Endpoint`], from `--admin` or
//! `WEIR_ADMIN`), a command's arguments in, one HTTP request out, the server's answer, typed
//! as [`crate::control::api`] defines it (or its error message), back.
//!
//! The HTTP client is `ureq`: a command line call makes one blocking request, so a blocking
//! client fits without starting an async runtime; hyper's client would need a runtime and
//! connection plumbing for the same single request. An `https://` address is spoken to over
//! TLS (rustls with the `ring` provider, as the server), trusting the system's root
//! certificates and, for a private CA, the certificates of `--tls-ca` (or `WEIR_ADMIN_CA`).
//! A failure says what went wrong and, where it can tell, how to fix it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::control::api::{
    ErrorBody, Imported, ShadowStatus, StageInfo, StateEntry, StatePage, VersionInfo,
};

/// How long a request may take in all. A plugin upload is compiled and initialised before
/// the answer comes; this bounds a command waiting on a server that hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a stream (`weir tap`) may wait for its answer's head. Its body has no end in
/// time: the server sends a line at least every second, and the command ends when it ends.
const STREAM_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read. Blocks a wrong server from making the command buffer without end.
const MAX_ANSWER: u64 = 16 << 20;
/// Where a bare port number points.
const LOOPBACK: &str = "127.0.0.1";
/// How to turn the admin API on, for a command that found nothing listening.
const TURN_IT_ON: &str = "a pipeline serves the admin API when its file has an `[admin]` \
    table with `listen` (default 127.0.0.1:7878) and one of `token_env`, `token_file` or \
    `token`";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the admin API at {addr}: {message}")]
    Unreachable { addr: String, message: String },
    /// The server answered with an error; `message` is its own.
    #[error("{message} (HTTP {status})")]
    Refused { status: u16, message: String },
    #[error("the admin API at {addr} gave an answer that is not JSON: {message}")]
    BadAnswer { addr: String, message: String },
    /// The certificates to trust could not be read.
    #[error("{what}: {message}")]
    Trust { what: String, message: String },
}

/// Where an admin API listens: a host and port, over TLS or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    /// `HOST:PORT`, with an IPv6 host in brackets.
    pub authority: String,
}

impl Endpoint {
    /// `PORT` (on 127.0.0.1), `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT` (a
    /// trailing `/` is allowed). Anything else is refused with what to write.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let bad = || {
            format!(
                "{} is not an admin address: write PORT (on {LOOPBACK}), HOST:PORT, \
                 http://HOST:PORT or https://HOST:PORT",
                crate::config::shown(text)
            )
        };
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let port = port(text).ok_or_else(bad)?;
            return Ok(Endpoint {
                tls: false,
                authority: format!("{LOOPBACK}:{port}"),
            });
        }
        let lower = text.to_ascii_lowercase();
        let (tls, rest) = if lower.starts_with("https://") {
            (true, &text["https://".len()..])
        } else if lower.starts_with("http://") {
            (false, &text["http://".len()..])
        } else if text.contains("://") {
            return Err(bad());
        } else {
            (false, text)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port_text) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port = port(port_text).ok_or_else(bad)?;
        if !host_ok(host) {
            return Err(bad());
        }
        Ok(Endpoint {
            tls,
            authority: format!("{host}:{port}"),
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority)
    }
}

/// A port from 1 to 65535, in digits.
fn port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&p| p != 0)
}

/// An IPv4 address, an IPv6 address in brackets, or a host name: nothing that could carry a
/// path, a user or a second URL into the request.
fn host_ok(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !host.starts_with(['-', '.'])
}

/// A connection to one admin API.
pub struct Client {
    endpoint: Endpoint,
    token: String,
    agent: ureq::Agent,
    /// For streams: no limit on the whole request, only on its head.
    streaming: ureq::Agent,
}

impl Client {
    /// A client for `endpoint`; over TLS it trusts the system's roots and the certificates in
    /// `ca` (a PEM file), if given.
    pub fn new(endpoint: &Endpoint, token: &str, ca: Option<&Path>) -> Result<Client, ClientError> {
        let tls = if endpoint.tls {
            Some(tls_config(ca)?)
        } else {
            None
        };
        let agent = |global: Option<Duration>, head: Option<Duration>| {
            let mut config = ureq::Agent::config_builder()
                .http_status_as_error(false)
                // A redirect could carry the bearer token elsewhere.
                .max_redirects(0)
                .timeout_global(global)
                .timeout_recv_response(head);
            if let Some(tls) = &tls {
                config = config.tls_config(tls.clone());
            }
            ureq::Agent::from(config.build())
        };
        Ok(Client {
            endpoint: endpoint.clone(),
            token: token.to_string(),
            agent: agent(Some(REQUEST_TIMEOUT), None),
            streaming: agent(None, Some(STREAM_HEAD_TIMEOUT)),
        })
    }

    /// `GET path`, its JSON answer typed.
    pub fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let request = self.agent.get(self.url(path));
        self.finish(request.header("Authorization", self.bearer()).call())
    }

    /// `GET path` as a stream: its body to read as it comes. An error answer is read whole
    /// and returned as [`ClientError::Refused`].
    pub fn stream(&self, path: &str) -> Result<impl std::io::Read + use<>, ClientError> {
        let request = self.streaming.get(self.url(path));
        let response = request
            .header("Authorization", self.bearer())
            .call()
            .map_err(|e| ClientError::Unreachable {
                addr: self.endpoint.to_string(),
                message: why_unreachable(e, self.endpoint.tls),
            })?;
        if !response.status().is_success() {
            return match self.finish::<serde_json::Value>(Ok(response)) {
                Err(e) => Err(e),
                Ok(_) => Err(ClientError::BadAnswer {
                    addr: self.endpoint.to_string(),
                    message: "an answer that is neither a stream nor an error".to_string(),
                }),
            };
        }
        Ok(response.into_body().into_reader())
    }

    /// `GET /stages`.
    pub fn stages(&self) -> Result<Vec<StageInfo>, ClientError> {
        let request = self.agent.get(self.url("/stages"));
        self.finish(request.header("Authorization", self.bearer()).call())
    }

    /// `PUT /stages/{stage}/plugin` with the component's bytes.
    pub fn put_plugin(&self, stage: &str, bytes: &[u8]) -> Result<VersionInfo, ClientError> {
        let request = self.agent.put(self.url(&format!("/stages/{stage}/plugin")));
        self.finish(
            request
                .header("Authorization", self.bearer())
                .header("Content-Type", "application/wasm")
                .send(bytes),
        )
    }

    /// `PUT /stages/{stage}/settings` with a JSON object.
    pub fn put_settings(
        &self,
        stage: &str,
        settings: &serde_json::Value,
    ) -> Result<VersionInfo, ClientError> {
        let request = self
            .agent
            .put(self.url(&format!("/stages/{stage}/settings")));
        self.finish(
            request
                .header("Authorization", self.bearer())
                .header("Content-Type", "application/json")
                .send(settings.to_string().as_bytes()),
        )
    }

    /// `PUT /stages/{stage}/shadow?sample=RATE` with the component's bytes.
    pub fn put_shadow(
        &self,
        stage: &str,
        bytes: &[u8],
        sample: f64,
    ) -> Result<ShadowStatus, ClientError> {
        let request = self
            .agent
            .put(self.url(&format!("/stages/{stage}/shadow")))
            .query("sample", sample.to_string());
        self.finish(
            request
                .header("Authorization", self.bearer())
                .header("Content-Type", "application/wasm")
                .send(bytes),
        )
    }

    /// `GET /stages/{stage}/shadow`.
    pub fn shadow(&self, stage: &str) -> Result<ShadowStatus, ClientError> {
        self.get(&format!("/stages/{stage}/shadow"))
    }

    /// `POST /stages/{stage}/shadow/promote`.
    pub fn promote_shadow(&self, stage: &str) -> Result<VersionInfo, ClientError> {
        let request = self
            .agent
            .post(self.url(&format!("/stages/{stage}/shadow/promote")));
        self.finish(request.header("Authorization", self.bearer()).send_empty())
    }

    /// `POST /stages/{stage}/shadow/stop`.
    pub fn stop_shadow(&self, stage: &str) -> Result<ShadowStatus, ClientError> {
        let request = self
            .agent
            .post(self.url(&format!("/stages/{stage}/shadow/stop")));
        self.finish(request.header("Authorization", self.bearer()).send_empty())
    }

    /// `POST /stages/{stage}/rollback`.
    pub fn rollback(&self, stage: &str) -> Result<VersionInfo, ClientError> {
        let request = self
            .agent
            .post(self.url(&format!("/stages/{stage}/rollback")));
        self.finish(request.header("Authorization", self.bearer()).send_empty())
    }

    /// `GET /stages/{stage}/state`: a page of at most `limit` entries with keys starting with
    /// `prefix`, after the cursor `after`.
    pub fn state_page(
        &self,
        stage: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<StatePage, ClientError> {
        let mut request = self
            .agent
            .get(self.url(&format!("/stages/{stage}/state")))
            .query("prefix", prefix)
            .query("limit", limit.to_string());
        if let Some(after) = after {
            request = request.query("after", after);
        }
        self.finish(request.header("Authorization", self.bearer()).call())
    }

    /// `GET /stages/{stage}/state/key?key=KEY`.
    pub fn state_key(&self, stage: &str, key: &str) -> Result<StateEntry, ClientError> {
        let request = self
            .agent
            .get(self.url(&format!("/stages/{stage}/state/key")))
            .query("key", key);
        self.finish(request.header("Authorization", self.bearer()).call())
    }

    /// `PUT /stages/{stage}/state` with JSON lines of entries.
    pub fn state_import(&self, stage: &str, lines: &[u8]) -> Result<Imported, ClientError> {
        let request = self.agent.put(self.url(&format!("/stages/{stage}/state")));
        self.finish(
            request
                .header("Authorization", self.bearer())
                .header("Content-Type", "application/x-ndjson")
                .send(lines),
        )
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn finish<T: serde::de::DeserializeOwned>(
        &self,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut response = sent.map_err(|e| ClientError::Unreachable {
            addr: self.endpoint.to_string(),
            message: why_unreachable(e, self.endpoint.tls),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| ClientError::BadAnswer {
                addr: self.endpoint.to_string(),
                message: e.to_string(),
            })?;
        let bad = |e: serde_json::Error| ClientError::BadAnswer {
            addr: self.endpoint.to_string(),
            message: e.to_string(),
        };
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(bad);
        }
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_else(|_| text.trim().to_string());
        Err(ClientError::Refused { status, message })
    }
}

/// TLS with the `ring` provider, trusting the system's roots and the certificates in `ca`.
fn tls_config(ca: Option<&Path>) -> Result<ureq::tls::TlsConfig, ClientError> {
    let mut roots: Vec<ureq::tls::Certificate<'static>> = Vec::new();
    // A system without a certificate store still works with `--tls-ca`.
    let system = rustls_native_certs::load_native_certs();
    for cert in &system.certs {
        roots.push(ureq::tls::Certificate::from_der(cert.as_ref()).to_owned());
    }
    if let Some(path) = ca {
        let what = format!(
            "the CA file {}",
            crate::config::plain(&path.display().to_string())
        );
        let trust = |message: String| ClientError::Trust {
            what: what.clone(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| trust(format!("cannot read it: {e}")))?;
        let before = roots.len();
        for item in ureq::tls::parse_pem(&pem) {
            match item.map_err(|e| trust(format!("not a PEM file: {e}")))? {
                ureq::tls::PemItem::Certificate(cert) => roots.push(cert),
                _ => continue,
            }
        }
        if roots.len() == before {
            return Err(trust(
                "no certificate in it: write the CA's certificate as PEM \
                 (`-----BEGIN CERTIFICATE-----`)"
                    .to_string(),
            ));
        }
    }
    Ok(ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .build())
}

/// Why a request got no answer, and how to fix it where that can be told.
fn why_unreachable(e: ureq::Error, tls: bool) -> String {
    use std::io::ErrorKind;
    match e {
        ureq::Error::Io(e) if e.kind() == ErrorKind::ConnectionRefused => {
            format!("connection refused: nothing listens there; {TURN_IT_ON}")
        }
        // A TLS server answers a plain request with a TLS alert, or closes.
        ureq::Error::Io(e)
            if !tls
                && matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                ) =>
        {
            format!("{e}; if the admin API serves TLS, write https://HOST:PORT")
        }
        ureq::Error::Protocol(e) if !tls => {
            format!("{e}; if the admin API serves TLS, write https://HOST:PORT")
        }
        ureq::Error::Rustls(e) => tls_failure(&e.to_string()),
        ureq::Error::Io(e)
            if tls && e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) =>
        {
            tls_failure(&e.to_string())
        }
        ureq::Error::HostNotFound => "no such host".to_string(),
        ureq::Error::Timeout(_) => format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
        other => other.to_string(),
    }
}

/// A TLS failure, with the fix for the common ones.
fn tls_failure(message: &str) -> String {
    let hint = if message.contains("UnknownIssuer") {
        "; if its certificate comes from a private CA, pass that CA's certificate with \
         --tls-ca FILE (or WEIR_ADMIN_CA)"
    } else if message.contains("NotValidForName") {
        "; the certificate does not name this host: use a name or address it was issued for"
    } else if message.contains("corrupt message") || message.contains("InvalidContentType") {
        "; if the admin API serves plain HTTP (on loopback), write http://HOST:PORT"
    } else {
        ""
    };
    format!("TLS: {message}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_a_port_a_host_and_port_or_a_url() {
        let plain = |authority: &str| Endpoint {
            tls: false,
            authority: authority.to_string(),
        };
        assert_eq!(Endpoint::parse("7878"), Ok(plain("127.0.0.1:7878")));
        assert_eq!(
            Endpoint::parse("127.0.0.1:7878"),
            Ok(plain("127.0.0.1:7878"))
        );
        assert_eq!(Endpoint::parse("localhost:80"), Ok(plain("localhost:80")));
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:7878/"),
            Ok(plain("127.0.0.1:7878"))
        );
        assert_eq!(Endpoint::parse("[::1]:7878"), Ok(plain("[::1]:7878")));
        let tls = Endpoint::parse("HTTPS://admin.example:8443").unwrap();
        assert!(tls.tls);
        assert_eq!(tls.to_string(), "https://admin.example:8443");
        for bad in [
            "",
            "0",
            "65536",
            "127.0.0.1",
            "http://127.0.0.1",
            "ftp://h:1",
            "h:1/path",
            "user@h:1",
            "h:port",
            "[zz]:1",
            "http://h:1/stages",
            "h :1",
        ] {
            let e = Endpoint::parse(bad).unwrap_err();
            assert!(
                e.contains("is not an admin address: write PORT"),
                "{bad}: {e}"
            );
        }
    }
}
