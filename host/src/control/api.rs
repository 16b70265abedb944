//! The admin API's answers, shared by the server (which builds them) and the command-line
//! client (which reads them): one definition, so the two cannot drift apart.
//!
//! Every error answer is `{"error": "..."}` ([`ErrorBody`]) with a status that says what kind
//! it is (404 unknown stage, 409 nothing to roll back to, 422 version refused, 400 bad
//! settings, 401 no valid token). `GET /stages` answers a JSON array of [`StageInfo`];
//! `GET /stages/{name}/state` a [`StatePage`] of [`StateEntry`]s; the shadow's routes a
//! [`ShadowStatus`].

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::pipeline::stage::ReloadCounts;
pub use crate::pipeline::stage::shadow::{Sample, ShadowState, ShadowStatus, ShownEvent};

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Loaded when the pipeline started.
    Startup,
    /// Read from the watched plugin file.
    File,
    /// Uploaded through the admin API.
    Api,
    /// The live plugin with new settings.
    Settings,
}

/// Where a version stands in its stage's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VersionState {
    /// New batches go to it.
    Live,
    /// A rollback can return to it.
    Standby,
    /// It was live and was rolled back.
    RolledBack,
    /// Kept, but no rollback returns to it.
    Retired,
}

/// Where the canary guard of the latest swap stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CanaryState {
    Watching,
    Passed,
    RolledBack,
    /// A later change replaced the version before the guard decided.
    Superseded,
}

/// A version as the admin API reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionInfo {
    pub id: u64,
    pub digest: String,
    pub short_digest: String,
    pub origin: Origin,
    pub plugin: String,
    pub size: u64,
    /// `0.1` or `0.2`.
    pub contract: String,
    /// Milliseconds since the Unix epoch.
    pub loaded_at_ms: u64,
    pub settings: BTreeMap<String, String>,
    pub state: VersionState,
    /// Trigger to swapped in, in milliseconds.
    pub ready_ms: f64,
    /// Trigger to its first finished batch, in milliseconds.
    pub serving_ms: Option<f64>,
    pub rolled_back: Option<String>,
}

/// The canary guard of the latest swap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CanaryInfo {
    pub version: u64,
    pub events: u64,
    pub failed: u64,
    pub state: CanaryState,
}

/// Hot-load counters of one stage: its [`ReloadCounts`], as the API reports them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CountersInfo {
    /// New versions made live (rollbacks excluded).
    pub swaps: u64,
    /// Changes refused: the old version kept serving.
    pub refused: u64,
    /// Rollbacks, asked for or made by the canary guard.
    pub rollbacks: u64,
    pub canary_rollbacks: u64,
}

impl From<ReloadCounts> for CountersInfo {
    fn from(c: ReloadCounts) -> CountersInfo {
        CountersInfo {
            swaps: c.swaps,
            refused: c.refused,
            rollbacks: c.rollbacks,
            canary_rollbacks: c.canary_rollbacks,
        }
    }
}

/// A stage as the admin API reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageInfo {
    pub name: String,
    pub reloadable: bool,
    pub watch: bool,
    pub plugin: String,
    pub live: Option<VersionInfo>,
    pub generation: u64,
    /// Events and failures of the live generation so far.
    pub events: u64,
    pub failed: u64,
    /// Events of every version since the start.
    pub events_total: u64,
    pub canary: Option<CanaryInfo>,
    pub versions: Vec<VersionInfo>,
    pub counters: CountersInfo,
    /// The running shadow's counts and samples, or the latest one's (see its `state`).
    #[serde(default)]
    pub shadow: Option<ShadowStatus>,
}

/// Every error answer: `{"error": "..."}`, the same on every listener of weir.
pub use crate::http::ErrorBody;

/// One entry of a stage's state, as `GET /stages/{name}/state` lists it and `weir state
/// export` writes it (a JSON line each): a key or value that is UTF-8 text is given as text,
/// any other as base64 under `key_base64` or `value_base64`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

/// Bytes as text when they are UTF-8 without control characters (a counter's 8 bytes are not
/// text), else as base64.
fn text_or_base64(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => (Some(text.to_string()), None),
        _ => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

/// The bytes of a field given as text or base64 (exactly one of the two).
fn bytes_of(text: &Option<String>, b64: &Option<String>, name: &str) -> Result<Vec<u8>, String> {
    match (text, b64) {
        (Some(t), None) => Ok(t.as_bytes().to_vec()),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("`{name}_base64` is not base64: {e}")),
        _ => Err(format!("give one of `{name}` and `{name}_base64`")),
    }
}

impl StateEntry {
    pub fn new(key: &[u8], value: &[u8]) -> StateEntry {
        let (key, key_base64) = text_or_base64(key);
        let (value, value_base64) = text_or_base64(value);
        StateEntry {
            key,
            key_base64,
            value,
            value_base64,
        }
    }

    /// The key and value as bytes.
    pub fn bytes(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        Ok((
            bytes_of(&self.key, &self.key_base64, "key")?,
            bytes_of(&self.value, &self.value_base64, "value")?,
        ))
    }
}

/// A page of a stage's state: entries by key, and the cursor of the next page (base64 of the
/// last key, to give back as `after`), none at the end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatePage {
    pub entries: Vec<StateEntry>,
    pub next: Option<String>,
}

/// What `PUT /stages/{name}/state` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Imported {
    pub imported: usize,
}
