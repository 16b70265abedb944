//! A stage's hot-load record: the number of its live version in the stage's history, and
//! counts of what hot loading did to it. The control plane's actor for the stage writes it
//! as each change lands; readers (the admin API's answers, the observer's metrics and
//! snapshots) read it without asking the control plane. Without hot loading nobody writes
//! it: there is no number, and every count stays 0.
//!
//! Each change is also kept, with its time, in a short ring ([`Reloads::changes`]) that the
//! live page draws as a timeline.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Changes a stage keeps for the timeline. Blocks a client that reloads without end from
/// growing the host's memory: the oldest are forgotten (the counts keep counting them).
pub const KEPT_CHANGES: usize = 32;

/// What a hot-load change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A new version went live.
    Swap,
    /// The stage went back to an earlier version, when asked.
    Rollback,
    /// The canary guard rolled a version back.
    CanaryRollback,
    /// A change was refused; the old version kept serving.
    Refused,
}

/// One hot-load change of a stage.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Change {
    /// When it landed, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub kind: ChangeKind,
    /// The version live after it (its number in the stage's history; 0 when not known).
    pub version: u64,
}

/// What hot loading did to one stage, so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadCounts {
    /// New versions made live (rollbacks excluded).
    pub swaps: u64,
    /// Changes refused: the old version kept serving.
    pub refused: u64,
    /// Rollbacks, asked for or made by the canary guard.
    pub rollbacks: u64,
    pub canary_rollbacks: u64,
}

/// The live version's number and the counts, each an atomic that the stage's actor alone
/// writes, so that a scrape never waits on a change being made.
#[derive(Debug, Default)]
pub struct Reloads {
    /// 0 until hot loading names the live version.
    live: AtomicU64,
    swaps: AtomicU64,
    refused: AtomicU64,
    rollbacks: AtomicU64,
    canary_rollbacks: AtomicU64,
    /// The last [`KEPT_CHANGES`] changes, oldest first; written by the actor, a lock per
    /// change.
    changes: Mutex<VecDeque<Change>>,
}

impl Reloads {
    /// The live version's number in the stage's history; `None` without hot loading.
    pub fn live(&self) -> Option<u64> {
        match self.live.load(Ordering::Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    pub fn set_live(&self, id: u64) {
        self.live.store(id, Ordering::Relaxed);
    }

    pub fn counts(&self) -> ReloadCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ReloadCounts {
            swaps: get(&self.swaps),
            refused: get(&self.refused),
            rollbacks: get(&self.rollbacks),
            canary_rollbacks: get(&self.canary_rollbacks),
        }
    }

    /// A new version went live (after [`Reloads::set_live`] named it).
    pub fn swapped(&self) {
        self.swaps.fetch_add(1, Ordering::Relaxed);
        self.keep(ChangeKind::Swap);
    }

    /// A change was refused; the old version kept serving.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.keep(ChangeKind::Refused);
    }

    /// The stage went back to an earlier version (after [`Reloads::set_live`] named it).
    pub fn rolled_back(&self) {
        self.rollbacks.fetch_add(1, Ordering::Relaxed);
        self.keep(ChangeKind::Rollback);
    }

    /// The rollback just counted was the canary guard's.
    pub fn canary_rolled_back(&self) {
        self.canary_rollbacks.fetch_add(1, Ordering::Relaxed);
        let mut changes = self.lock();
        if let Some(last) = changes.back_mut()
            && last.kind == ChangeKind::Rollback
        {
            last.kind = ChangeKind::CanaryRollback;
        }
    }

    /// The changes kept, oldest first.
    pub fn changes(&self) -> Vec<Change> {
        self.lock().iter().copied().collect()
    }

    fn keep(&self, kind: ChangeKind) {
        let at_ms = weir_sandbox::wall_ms();
        let version = self.live.load(Ordering::Relaxed);
        let mut changes = self.lock();
        if changes.len() == KEPT_CHANGES {
            changes.pop_front();
        }
        changes.push_back(Change {
            at_ms,
            kind,
            version,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Change>> {
        // Every change is one push: a panic elsewhere cannot leave the ring half-written.
        self.changes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_the_version_they_made_live_and_keep_their_bound() {
        let reloads = Reloads::default();
        reloads.set_live(2);
        reloads.swapped();
        reloads.set_live(1);
        reloads.rolled_back();
        reloads.canary_rolled_back();
        reloads.refused();
        let seen: Vec<(ChangeKind, u64)> = reloads
            .changes()
            .iter()
            .map(|c| (c.kind, c.version))
            .collect();
        assert_eq!(
            seen,
            [
                (ChangeKind::Swap, 2),
                (ChangeKind::CanaryRollback, 1),
                (ChangeKind::Refused, 1)
            ]
        );
        for i in 0..100 {
            reloads.set_live(i + 3);
            reloads.swapped();
        }
        let changes = reloads.changes();
        assert_eq!(changes.len(), KEPT_CHANGES);
        assert_eq!(changes.last().unwrap().version, 102);
        assert_eq!(reloads.counts().swaps, 101);
    }
}
