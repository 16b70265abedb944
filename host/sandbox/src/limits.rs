//! What one instance may use and reach: CPU, time and memory limits, and capability grants.
//!
//! Each default blocks a threat named beside it; a pipeline file may raise them per stage.

use std::path::PathBuf;
use std::time::Duration;

/// The limits of one instance's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) per event; a call gets `events × fuel`. Blocks a
    /// plugin that burns CPU on every event and starves the other stages of the core.
    pub fuel: u64,
    /// Wall-clock limit per call, enforced by epoch interruption. Blocks endless loops: a
    /// stuck call costs one deadline, never a stuck pipeline.
    pub timeout: Duration,
    /// Linear-memory cap per instance. Blocks a memory bomb from taking the host's memory.
    pub memory: u64,
    /// What one call's output may cost the host, in bytes as [`crate::cost`] charges them
    /// (contents, plus a fixed cost per event and per header reference). Blocks a call from
    /// handing the host more to hold, copy and walk than this, however its columns alias.
    pub output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 10_000_000,
            timeout: Duration::from_secs(1),
            memory: 64 << 20,
            output_bytes: 64 << 20,
        }
    }
}

/// Capabilities a stage grants its plugin; nothing by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grant {
    /// Host directories the guest may read (never write), each under a guest path.
    pub dirs: Vec<DirGrant>,
    /// Names of host environment variables the guest may read.
    pub env: Vec<String>,
    /// Outbound network and name lookup.
    pub network: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
}
