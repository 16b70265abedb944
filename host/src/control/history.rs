//! A stage's versions: the live one, those a rollback can return to, and what became of the
//! others. Owned by the stage's actor; readers see published [`StageInfo`] snapshots.
//!
//! A stage keeps its last [`MAX_KEPT_VERSIONS`] versions, each with its compiled plugin, so a
//! rollback, or a swap back to a digest seen recently, costs no compile.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use weir_sandbox::{Plugin, ProcessorFactory};

use crate::control::api::{
    CanaryInfo, CanaryState, CountersInfo, Origin, StageInfo, VersionInfo, VersionState,
};
use crate::pipeline::stage::GenerationCounts;

/// Versions a stage keeps (the live one, those a rollback can return to, and the last ones
/// refused by a rollback). Each holds its compiled code, so this bounds the memory that a
/// stream of uploads can make the host keep: at most this many plugins per stage.
pub const MAX_KEPT_VERSIONS: usize = 8;

/// One version of a stage: plugin and settings, and what became of it.
pub(crate) struct Version {
    pub id: u64,
    pub plugin: Arc<Plugin>,
    pub settings: Vec<(String, String)>,
    pub factory: Arc<dyn ProcessorFactory>,
    pub origin: Origin,
    pub loaded_at: SystemTime,
    /// When the change that last made this version live was asked for.
    pub trigger: Instant,
    /// Trigger to swapped in: prepared, checked, initialised, live for new batches.
    pub ready_after: Duration,
    /// The stage generation in which it was last made live.
    pub generation: u64,
    pub rolled_back: Option<String>,
}

#[derive(Default)]
pub(crate) struct History {
    versions: VecDeque<Version>,
    pub live: u64,
    /// Versions a rollback returns to, the most recent last.
    previous: Vec<u64>,
    next_id: u64,
    pub canary: Option<CanaryInfo>,
}

impl History {
    /// A history whose first version is live.
    pub fn new(first: Version) -> History {
        let mut history = History {
            live: first.id,
            next_id: first.id + 1,
            ..History::default()
        };
        history.versions.push_back(first);
        history
    }

    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn live_version(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.id == self.live)
    }

    /// The compiled plugins kept, to reuse when the same digest comes back.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.versions.iter().map(|v| &v.plugin)
    }

    /// Makes `version` live; the one it replaces becomes the rollback target.
    pub fn push_live(&mut self, version: Version) {
        self.previous.push(self.live);
        self.live = version.id;
        self.versions.push_back(version);
        self.evict();
    }

    /// The version a rollback returns to.
    pub fn rollback_target(&self) -> Option<&Version> {
        let id = *self.previous.last()?;
        self.versions.iter().find(|v| v.id == id)
    }

    /// Returns to the rollback target (made live in `generation` at `trigger`).
    pub fn roll_back(&mut self, reason: &str, trigger: Instant, generation: u64) {
        let Some(target) = self.previous.pop() else {
            return;
        };
        let from = std::mem::replace(&mut self.live, target);
        if let Some(v) = self.versions.iter_mut().find(|v| v.id == from) {
            v.rolled_back = Some(reason.to_string());
        }
        if let Some(v) = self.versions.iter_mut().find(|v| v.id == target) {
            v.trigger = trigger;
            v.ready_after = trigger.elapsed();
            v.generation = generation;
        }
    }

    /// Drops the oldest versions past the bound, never the live one; a dropped version can no
    /// longer be rolled back to.
    fn evict(&mut self) {
        while self.versions.len() > MAX_KEPT_VERSIONS {
            let Some(pos) = self.versions.iter().position(|v| v.id != self.live) else {
                return;
            };
            if let Some(v) = self.versions.remove(pos) {
                self.previous.retain(|&id| id != v.id);
            }
        }
    }

    fn state(&self, v: &Version) -> VersionState {
        if v.id == self.live {
            VersionState::Live
        } else if self.previous.contains(&v.id) {
            VersionState::Standby
        } else if v.rolled_back.is_some() {
            VersionState::RolledBack
        } else {
            VersionState::Retired
        }
    }

    /// A version as the API reports it; `counts` (of the live generation) tells when the live
    /// version first served.
    pub fn describe(&self, v: &Version, counts: &GenerationCounts) -> VersionInfo {
        let serving = (v.id == self.live && counts.generation == v.generation)
            .then_some(counts.first_batch)
            .flatten()
            .map(|first| millis(first.saturating_duration_since(v.trigger)));
        VersionInfo {
            id: v.id,
            digest: v.plugin.digest.clone(),
            short_digest: v.plugin.short_digest().to_string(),
            origin: v.origin,
            plugin: v.plugin.path.display().to_string(),
            size: v.plugin.size,
            contract: v.plugin.contract.as_str().to_string(),
            loaded_at_ms: v
                .loaded_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            settings: v.settings.iter().cloned().collect::<BTreeMap<_, _>>(),
            state: self.state(v),
            ready_ms: millis(v.ready_after),
            serving_ms: serving,
            rolled_back: v.rolled_back.clone(),
        }
    }

    pub fn info_of(&self, id: u64, counts: &GenerationCounts) -> Option<VersionInfo> {
        let v = self.versions.iter().find(|v| v.id == id)?;
        Some(self.describe(v, counts))
    }

    /// The stage as the API reports it, with its hot-load `counters` (kept on its handle).
    pub fn stage_info(
        &self,
        name: &str,
        watch: bool,
        plugin: &str,
        counts: &GenerationCounts,
        counters: CountersInfo,
    ) -> StageInfo {
        let versions: Vec<VersionInfo> = self
            .versions
            .iter()
            .map(|v| self.describe(v, counts))
            .collect();
        let mut canary = self.canary.clone();
        if let Some(c) = canary.as_mut().filter(|c| {
            c.state == CanaryState::Watching
                && c.version == self.live
                && counts.generation == self.live_generation()
        }) {
            c.events = counts.events;
            c.failed = counts.failed;
        }
        StageInfo {
            name: name.to_string(),
            reloadable: true,
            watch,
            plugin: plugin.to_string(),
            live: versions
                .iter()
                .find(|v| v.state == VersionState::Live)
                .cloned(),
            generation: counts.generation,
            events: counts.events,
            failed: counts.failed,
            events_total: counts.total_events,
            canary,
            versions,
            counters,
            shadow: None,
        }
    }

    fn live_generation(&self) -> u64 {
        self.live_version().map_or(0, |v| v.generation)
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
