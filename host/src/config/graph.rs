//! The graph: one namespace for every node, inputs that exist (fan-in), no cycle, nothing that
//! feeds nothing, and stages in the direction of the flow. Every walk here is a loop, not a
//! recursion, so a long chain of stages cannot exhaust the stack.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::error::{ConfigError, Ctx, Sp, did_you_mean, join, shown};
use crate::config::names;
use crate::config::ranges::MAX_NODES;
use crate::config::raw::{RawFile, RawStage};
use crate::config::reader::Place;
use crate::config::{Sink, Stage};

/// Every node's name and what it is ("source", "stage" or "sink").
pub(crate) type Names<'a> = BTreeMap<&'a str, &'static str>;

/// Every node with its section, what it is and where it was written, sources first.
fn places(raw: &RawFile) -> impl Iterator<Item = (&'static str, &'static str, &str, &Place)> {
    let sources = raw
        .sources
        .iter()
        .map(|(n, s)| ("sources", "source", n, &s.at));
    let stages = raw
        .stages
        .iter()
        .map(|(n, s)| ("stages", "stage", n, &s.at));
    let sinks = raw.sinks.iter().map(|(n, s)| ("sinks", "sink", n, &s.at));
    sources
        .chain(stages)
        .chain(sinks)
        .map(|(section, what, name, at)| (section, what, name.as_str(), at))
}

/// The names of every node: at least one source and one sink, at most [`MAX_NODES`] nodes,
/// each name well formed and used once across sources, stages and sinks, so that `inputs` is
/// never ambiguous.
pub(crate) fn names<'a>(cx: &Ctx, raw: &'a RawFile) -> Result<Names<'a>, ConfigError> {
    if raw.sources.is_empty() {
        return Err(cx.err_file(
            "sources",
            "the pipeline has no source: add a `[sources.NAME]` table",
        ));
    }
    if raw.sinks.is_empty() {
        return Err(cx.err_file(
            "sinks",
            "the pipeline has no sink: add a `[sinks.NAME]` table",
        ));
    }
    let mut names: Names = BTreeMap::new();
    for (i, (section, what, name, at)) in places(raw).enumerate() {
        let key = join(section, name);
        if i == MAX_NODES {
            return Err(cx.err(
                &at.table,
                key,
                format!("a pipeline has at most {MAX_NODES} sources, stages and sinks in all"),
            ));
        }
        names::node(name).map_err(|m| cx.err(&at.name.span(), key.clone(), m))?;
        if let Some(other) = names.insert(name, what) {
            return Err(cx.err(
                &at.table,
                key,
                format!("the name `{name}` is already used by a {other}: names must be unique"),
            ));
        }
    }
    Ok(names)
}

/// The `inputs` of a stage or sink: at least one, each a source or stage, none twice.
pub(crate) fn inputs(
    cx: &Ctx,
    names: &Names,
    section: &str,
    name: &str,
    inputs: &Sp<Vec<Sp<String>>>,
) -> Result<Vec<String>, ConfigError> {
    let key = join(&join(section, name), "inputs");
    if inputs.get_ref().is_empty() {
        return Err(cx.err(
            &inputs.span(),
            key,
            "needs at least one input: name a source or stage, such as `inputs = [\"auth_log\"]`",
        ));
    }
    let feeders: Vec<&str> = (names.iter())
        .filter(|(_, what)| **what != "sink")
        .map(|(name, _)| *name)
        .collect();
    let mut seen = BTreeSet::new();
    for input in inputs.get_ref() {
        let input_name = input.get_ref().as_str();
        let problem = match names.get(input_name) {
            None => Some(format!(
                "unknown input {}: no source or stage has that name{}",
                shown(input_name),
                did_you_mean(input_name, &feeders)
            )),
            Some(&"sink") => Some(format!(
                "`{input_name}` is a sink: a sink cannot be an input"
            )),
            Some(_) if !seen.insert(input_name) => {
                Some(format!("input `{input_name}` is listed twice"))
            }
            Some(_) => None,
        };
        if let Some(message) = problem {
            return Err(cx.err(&input.span(), key, message));
        }
    }
    Ok(inputs
        .get_ref()
        .iter()
        .map(|i| i.get_ref().clone())
        .collect())
}

/// Upstream stages first, so that reports and logs read in the direction of the flow: each
/// round takes the first stage whose stage inputs are all placed. When none is left to take,
/// the rest holds a cycle, which would make a batch circle for ever: that is an error naming
/// the cycle, at the `inputs` of its first stage.
pub(crate) fn upstream_first(
    cx: &Ctx,
    raw: &BTreeMap<String, RawStage>,
    stages: Vec<Stage>,
) -> Result<Vec<Stage>, ConfigError> {
    let mut ordered = Vec::with_capacity(stages.len());
    let mut rest = stages;
    let mut waiting: BTreeSet<String> = rest.iter().map(|s| s.name.clone()).collect();
    while !rest.is_empty() {
        let ready = (rest.iter()).position(|s| s.inputs.iter().all(|i| !waiting.contains(i)));
        let Some(ready) = ready else {
            let cycle = cycle(&rest);
            let first = cycle.first().copied().unwrap_or_default();
            let span = raw.get(first).map(|s| s.inputs.span()).unwrap_or_default();
            return Err(cx.err(
                &span,
                join(&join("stages", first), "inputs"),
                format!(
                    "the stages form a cycle: {}; a stage may only read from stages upstream",
                    cycle.join(" -> ")
                ),
            ));
        };
        let stage = rest.remove(ready);
        waiting.remove(&stage.name);
        ordered.push(stage);
    }
    Ok(ordered)
}

/// A cycle among `rest`, stages each of which has an input among `rest`: following inputs from
/// the first must come back to a stage already seen.
fn cycle(rest: &[Stage]) -> Vec<&str> {
    let by_name: BTreeMap<&str, &Stage> = rest.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut path: Vec<&str> = rest.iter().take(1).map(|s| s.name.as_str()).collect();
    let mut seen: BTreeMap<&str, usize> = path.iter().map(|n| (*n, 0)).collect();
    while let Some(current) = path.last().and_then(|n| by_name.get(n)) {
        let Some(next) = (current.inputs.iter())
            .map(String::as_str)
            .find(|i| by_name.contains_key(i))
        else {
            break;
        };
        if let Some(&at) = seen.get(next) {
            let mut cycle = path[at..].to_vec();
            cycle.push(next);
            return cycle;
        }
        seen.insert(next, path.len());
        path.push(next);
    }
    path
}

/// A source or stage whose output nobody reads would drop every event it makes.
pub(crate) fn check_consumed(
    cx: &Ctx,
    raw: &RawFile,
    stages: &[Stage],
    sinks: &[Sink],
) -> Result<(), ConfigError> {
    let consumed: BTreeSet<&str> = (stages.iter())
        .flat_map(|s| &s.inputs)
        .chain(sinks.iter().flat_map(|s| &s.inputs))
        .map(String::as_str)
        .collect();
    for (section, _, name, at) in places(raw).filter(|(section, ..)| *section != "sinks") {
        if !consumed.contains(name) {
            return Err(cx.err(
                &at.table,
                join(section, name),
                format!("`{name}` feeds nothing: name it in the `inputs` of a stage or sink"),
            ));
        }
    }
    Ok(())
}
