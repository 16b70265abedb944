//! A stage's hot-load record: the number of its live version in the stage's history, and
//! counts of what hot loading did to it. The control plane's actor for the stage writes it
//! as each change lands; readers (the admin API's answers, the observer's metrics and
//! snapshots) read it without asking the control plane. Without hot loading nobody writes
//! it: there is no number, and every count stays 0.

use std::sync::atomic::{AtomicU64, Ordering};

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

    /// A new version went live.
    pub fn swapped(&self) {
        self.swaps.fetch_add(1, Ordering::Relaxed);
    }

    /// A change was refused; the old version kept serving.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The stage went back to an earlier version.
    pub fn rolled_back(&self) {
        self.rollbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// The rollback just counted was the canary guard's.
    pub fn canary_rolled_back(&self) {
        self.canary_rollbacks.fetch_add(1, Ordering::Relaxed);
    }
}
