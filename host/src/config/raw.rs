//! The tables of a pipeline file as written, with the byte span of every value a check may
//! complain about.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

pub(crate) type Sp<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub listen: Option<Sp<String>>,
    pub token: Option<Sp<String>>,
    pub token_env: Option<Sp<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCanary {
    pub events: Option<Sp<u64>>,
    pub max_failure_rate: Option<Sp<f64>>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub pipeline: Option<RawGlobal>,
    #[serde(default)]
    pub sources: BTreeMap<String, Sp<RawSource>>,
    #[serde(default)]
    pub stages: BTreeMap<String, Sp<RawStage>>,
    #[serde(default)]
    pub sinks: BTreeMap<String, Sp<RawSink>>,
    #[serde(default)]
    pub dead_letter: Option<Sp<RawDeadLetter>>,
    // hot loading
    #[serde(default)]
    pub admin: Option<Sp<RawAdmin>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGlobal {
    pub batch_size: Option<Sp<usize>>,
    pub linger: Option<Sp<String>>,
    pub buffer: Option<Sp<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    #[serde(rename = "type")]
    pub kind: Sp<String>,
    pub path: Option<Sp<String>>,
    pub repeat: Option<Sp<u64>>,
    pub count: Option<Sp<u64>>,
    pub size: Option<Sp<usize>>,
    pub batch_size: Option<Sp<usize>>,
    pub linger: Option<Sp<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStage {
    pub inputs: Sp<Vec<Sp<String>>>,
    pub plugin: Sp<String>,
    #[serde(default)]
    pub settings: BTreeMap<String, Sp<toml::Value>>,
    pub workers: Option<Sp<usize>>,
    pub fuel: Option<Sp<u64>>,
    pub timeout: Option<Sp<String>>,
    pub memory: Option<Sp<String>>,
    pub retries: Option<Sp<u32>>,
    pub on_error: Option<Sp<String>>,
    pub max_output_events: Option<Sp<usize>>,
    pub max_output_bytes: Option<Sp<String>>,
    pub max_value_size: Option<Sp<String>>,
    pub breaker: Option<RawBreaker>,
    pub grant: Option<RawGrant>,
    // hot loading
    pub watch: Option<Sp<bool>>,
    pub canary: Option<Sp<RawCanary>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreaker {
    pub window: Option<Sp<usize>>,
    pub threshold: Option<Sp<f64>>,
    pub cooldown: Option<Sp<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGrant {
    #[serde(default)]
    pub dirs: Vec<Sp<RawDir>>,
    #[serde(default)]
    pub env: Vec<Sp<String>>,
    #[serde(default)]
    pub network: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDir {
    pub host: Sp<String>,
    pub guest: Sp<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSink {
    pub inputs: Sp<Vec<Sp<String>>>,
    #[serde(rename = "type")]
    pub kind: Sp<String>,
    pub path: Option<Sp<String>>,
    pub encoding: Option<Sp<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDeadLetter {
    #[serde(rename = "type")]
    pub kind: Sp<String>,
    pub path: Option<Sp<String>>,
}
