//! Durable state: the commit rounds that write the stages' state and the sources' positions to
//! the store together ([`Durable`]), and what a source with positions tells them
//! ([`Positioned`]).
//!
//! At the start of a run the store is authoritative: each stage's state is loaded from it, and
//! each file source's checkpoint file is rewritten from the position the store holds (or
//! removed when it holds none), so that a source resumes exactly where the state it matches
//! ends. Then every `checkpoint_interval`, and once more when the run has drained, a round
//! asks each source how far its batches are finished, plans what may be written
//! ([`super::plan`]), takes those deltas from the stages' logs and writes them with the
//! positions in one durable transaction. A round that cannot be written stops the run: what
//! is on disk would no longer match what was acknowledged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::StageState;
use super::plan::plan;
use super::store::{Backing, Store, StoreError};
use crate::pipeline::data_dir::write_atomic;
use crate::pipeline::edge::RunContext;
use crate::pipeline::failure::NodeFailure;

/// What a source that keeps a position tells the commit rounds.
pub trait Positioned: Send + Sync {
    /// The last batch of this run's finished prefix, if any is finished.
    fn done_through(&self) -> Option<u64>;
    /// The bytes of the checkpoint file for the position just past batch `seq`, if the
    /// source still knows it.
    fn checkpoint_through(&self, seq: u64) -> Option<Vec<u8>>;
    /// The batches through `seq` are committed: their positions may be forgotten (and a
    /// source that holds its acknowledgements back for the rounds may send them).
    fn forget_through(&self, seq: u64);
}

/// A registered source: its name, its ledger's identity, its positions.
type Registered = (String, usize, Arc<dyn Positioned>);

/// The commit rounds of a run whose stages keep state in the data folder.
pub struct Durable {
    store: Arc<Store>,
    stages: Vec<(String, Arc<StageState>)>,
    sources: Mutex<Vec<Registered>>,
    /// The positions the store held when it was opened, by source.
    held: HashMap<String, Vec<u8>>,
    /// One round at a time: the periodic one and the last one never overlap.
    round: Mutex<()>,
}

impl Durable {
    /// Opens the store in `dir`, loads each stage's state from it and rewrites each file
    /// source's checkpoint (`checkpoints`: name → file) from the position it holds.
    /// `from_start` forgets both first.
    pub fn open(
        dir: &Path,
        stages: Vec<(String, Arc<StageState>)>,
        checkpoints: &[(String, PathBuf)],
        from_start: bool,
    ) -> Result<Arc<Durable>, StoreError> {
        let store = Arc::new(Store::open(dir)?);
        if from_start {
            let names: Vec<&str> = stages.iter().map(|(n, _)| n.as_str()).collect();
            store.clear(&names)?;
        }
        for (name, state) in &stages {
            state.load(Backing::new(Arc::clone(&store), name))?;
        }
        let held: HashMap<String, Vec<u8>> = store.positions()?.into_iter().collect();
        for (source, path) in checkpoints {
            let written = match held.get(source) {
                Some(bytes) => write_atomic(path, bytes),
                None => match std::fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            };
            written.map_err(|e| StoreError {
                path: path.clone(),
                message: format!("cannot set the checkpoint from the state store: {e}"),
            })?;
        }
        Ok(Arc::new(Durable {
            store,
            stages,
            sources: Mutex::new(Vec::new()),
            held,
            round: Mutex::new(()),
        }))
    }

    /// The position the store held for `source` when the run began.
    pub fn position(&self, source: &str) -> Option<&[u8]> {
        self.held.get(source).map(Vec::as_slice)
    }

    /// A source with positions joins the rounds.
    pub fn register(&self, name: &str, ledger: usize, positions: Arc<dyn Positioned>) {
        lock(&self.sources).push((name.to_string(), ledger, positions));
    }

    /// One commit round.
    pub fn round(&self) -> Result<(), StoreError> {
        let _one = lock(&self.round);
        // A stage that could not read the store may have read a key as absent: nothing of
        // what followed may be committed.
        for (_, state) in &self.stages {
            if let Some(fault) = state.fault() {
                return Err(fault);
            }
        }
        let sources = lock(&self.sources).clone();
        let done: HashMap<usize, Option<u64>> = sources
            .iter()
            .map(|(_, id, p)| (*id, p.done_through()))
            .collect();
        let logs: Vec<_> = self.stages.iter().map(|(_, s)| s.log_tags()).collect();
        let plan = plan(&logs, &done);
        let mut writes = Vec::with_capacity(self.stages.len());
        let mut flushed = Vec::new();
        for ((name, state), n) in self.stages.iter().zip(&plan.prefixes) {
            if *n > 0 {
                let (taken, last) = state.take_logged(*n);
                writes.push((name.as_str(), taken));
                flushed.push((state, last));
            }
        }
        let mut positions = Vec::new();
        for (name, id, p) in &sources {
            if let Some(Some(seq)) = plan.through.get(id)
                && let Some(bytes) = p.checkpoint_through(*seq)
            {
                positions.push((name.as_str(), bytes));
            }
        }
        if writes.is_empty() && positions.is_empty() {
            return Ok(());
        }
        self.store.commit(&writes, &positions)?;
        // Only now may what the round wrote leave the stages' memory: until the store holds
        // it, memory has the only copy.
        for (state, last) in flushed {
            state.flushed(last);
        }
        for (_, id, p) in &sources {
            if let Some(Some(seq)) = plan.through.get(id) {
                p.forget_through(*seq);
            }
        }
        Ok(())
    }

    /// Runs a round every `interval` until `stop`; a round that fails stops the run.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        stop: CancellationToken,
        ctx: Arc<RunContext>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let me = Arc::clone(&self);
            let result = tokio::task::spawn_blocking(move || me.round()).await;
            if let Ok(Err(e)) = result {
                ctx.fail(NodeFailure::State {
                    message: e.to_string(),
                });
                return;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
