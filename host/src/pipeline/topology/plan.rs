//! Planning: which stages run together as a chain, and who consumes what.
//!
//! A stage continues the chain of the stage before it when it has exactly that one input,
//! it is that stage's only consumer, and both have the same number of workers (and
//! `[pipeline] chain` is not off), and it is not routed by key. Everything else starts a chain
//! of its own. A stage routed by key (its plugin keeps state, on several workers) heads its
//! chain: its input is split by key among the workers there, and a stage before it may change
//! the keys. The plan is a pure function of the pipeline, tested below.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Pipeline;

/// Stages run together, in order; the first is the chain's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPlan {
    pub stages: Vec<String>,
    pub workers: usize,
    /// Whether the head is routed by key: each worker gets the events whose keys it owns.
    pub keyed: bool,
}

impl ChainPlan {
    pub fn head(&self) -> &str {
        &self.stages[0]
    }

    pub fn tail(&self) -> &str {
        self.stages.last().expect("a chain has a stage")
    }
}

/// The chains of a pipeline, in the order of its stages, with no stage routed by key.
pub fn chains(pipeline: &Pipeline) -> Vec<ChainPlan> {
    keyed_chains(pipeline, &BTreeSet::new())
}

/// The chains of a pipeline, in the order of its stages, where the stages in `keyed` are
/// routed by key.
pub fn keyed_chains(pipeline: &Pipeline, keyed: &BTreeSet<String>) -> Vec<ChainPlan> {
    let consumers = consumers(pipeline);
    let workers: BTreeMap<&str, usize> = pipeline
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s.workers))
        .collect();
    // The stage each stage continues, if it does.
    let continues = |name: &str| -> Option<String> {
        if !pipeline.chain || keyed.contains(name) {
            return None;
        }
        let stage = pipeline.stages.iter().find(|s| s.name == name)?;
        let [input] = stage.inputs.as_slice() else {
            return None;
        };
        let upstream = workers.get(input.as_str())?;
        let only = consumers.get(input.as_str()).is_some_and(|c| c.len() == 1);
        (only && *upstream == stage.workers).then(|| input.clone())
    };
    let mut plans = Vec::new();
    for stage in &pipeline.stages {
        if continues(&stage.name).is_some() {
            continue;
        }
        let mut stages = vec![stage.name.clone()];
        loop {
            let tail = stages.last().expect("not empty");
            let next = consumers
                .get(tail.as_str())
                .and_then(|c| match c.as_slice() {
                    [only] if continues(only).as_deref() == Some(tail.as_str()) => {
                        Some(only.clone())
                    }
                    _ => None,
                });
            match next {
                Some(next) => stages.push(next),
                None => break,
            }
        }
        plans.push(ChainPlan {
            keyed: keyed.contains(&stage.name),
            stages,
            workers: stage.workers,
        });
    }
    plans
}

/// Every node's consumers (stages and sinks that name it as an input), in file order.
pub fn consumers(pipeline: &Pipeline) -> BTreeMap<&str, Vec<String>> {
    let mut consumers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let named = pipeline
        .stages
        .iter()
        .map(|s| (&s.name, &s.inputs))
        .chain(pipeline.sinks.iter().map(|s| (&s.name, &s.inputs)));
    for (name, inputs) in named {
        for input in inputs {
            consumers
                .entry(input.as_str())
                .or_default()
                .push(name.clone());
        }
    }
    consumers
}
