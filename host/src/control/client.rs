//! The client side of the admin API, for `weir reload`, `weir rollback`, `weir stages` and
//! `weir plugin inspect --admin`: a command's arguments in, one HTTP request out, the
//! server's answer, typed as [`crate::control::api`] defines it (or its error message), back.
//!
//! The HTTP client is `ureq`, built without TLS: a command line call makes one blocking
//! request to a plain-HTTP server on loopback, so a blocking client fits without starting an
//! async runtime, and without TLS it adds little to the build. hyper's client would need a
//! runtime and connection plumbing for the same single request.

use std::time::Duration;

use crate::control::api::{ErrorBody, StageInfo, VersionInfo};

/// How long a request may take in all. A plugin upload is compiled and initialised before
/// the answer comes; this bounds a command waiting on a server that hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer read. Blocks a wrong server from making the command buffer without end.
const MAX_ANSWER: u64 = 16 << 20;

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
}

/// A connection to one admin API.
pub struct Client {
    addr: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(addr: &str, token: &str) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        Client {
            addr: addr.to_string(),
            token: token.to_string(),
            agent,
        }
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

    /// `POST /stages/{stage}/rollback`.
    pub fn rollback(&self, stage: &str) -> Result<VersionInfo, ClientError> {
        let request = self
            .agent
            .post(self.url(&format!("/stages/{stage}/rollback")));
        self.finish(request.header("Authorization", self.bearer()).send_empty())
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn finish<T: serde::de::DeserializeOwned>(
        &self,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut response = sent.map_err(|e| ClientError::Unreachable {
            addr: self.addr.clone(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| ClientError::BadAnswer {
                addr: self.addr.clone(),
                message: e.to_string(),
            })?;
        let bad = |e: serde_json::Error| ClientError::BadAnswer {
            addr: self.addr.clone(),
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
