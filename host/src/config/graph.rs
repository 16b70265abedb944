//! The graph: one namespace for every node, inputs that exist, no cycle, nothing that feeds
//! nothing, and stages in the direction of the flow.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::error::{ConfigError, Ctx};
use crate::config::raw::{RawFile, RawStage, Sp};
use crate::config::{Sink, Stage};

/// Every node's name and what it is ("source", "stage" or "sink").
pub(crate) type Names<'a> = BTreeMap<&'a str, &'static str>;

/// Every name lives in one namespace, so that `inputs` is never ambiguous.
pub(crate) fn names<'a>(cx: &Ctx, raw: &'a RawFile) -> Result<Names<'a>, ConfigError> {
    let mut names: Names = BTreeMap::new();
    for name in raw.sources.keys() {
        names.insert(name, "source");
    }
    for (name, stage) in &raw.stages {
        if let Some(other) = names.insert(name, "stage") {
            return Err(cx.err(
                &stage.span(),
                format!("stages.{name}"),
                format!("the name `{name}` is already used by a {other}: names must be unique"),
            ));
        }
    }
    for (name, sink) in &raw.sinks {
        if let Some(other) = names.insert(name, "sink") {
            return Err(cx.err(
                &sink.span(),
                format!("sinks.{name}"),
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
    if inputs.get_ref().is_empty() {
        return Err(cx.err(
            &inputs.span(),
            format!("{section}.{name}.inputs"),
            "needs at least one input",
        ));
    }
    let mut seen = BTreeSet::new();
    for input in inputs.get_ref() {
        let key = format!("{section}.{name}.inputs");
        match names.get(input.get_ref().as_str()) {
            None => {
                return Err(cx.err(
                    &input.span(),
                    key,
                    format!(
                        "unknown input `{}`: no source or stage has that name",
                        input.get_ref()
                    ),
                ));
            }
            Some(&"sink") => {
                return Err(cx.err(
                    &input.span(),
                    key,
                    format!("`{}` is a sink: a sink cannot be an input", input.get_ref()),
                ));
            }
            Some(_) => {}
        }
        if !seen.insert(input.get_ref().as_str()) {
            return Err(cx.err(
                &input.span(),
                key,
                format!("input `{}` is listed twice", input.get_ref()),
            ));
        }
    }
    Ok(inputs
        .get_ref()
        .iter()
        .map(|i| i.get_ref().clone())
        .collect())
}

/// Stages may only feed forward: a cycle would make a batch circle forever.
pub(crate) fn check_acyclic(
    cx: &Ctx,
    stages: &BTreeMap<String, Sp<RawStage>>,
) -> Result<(), ConfigError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        stages: &'a BTreeMap<String, Sp<RawStage>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        match marks.get(name) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(name);
                return Some(cycle);
            }
            None => {}
        }
        let stage = stages.get(name)?;
        marks.insert(name, Mark::Visiting);
        path.push(name);
        for input in stage.get_ref().inputs.get_ref() {
            if let Some(cycle) = visit(input.get_ref(), stages, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(name, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in stages.keys() {
        if let Some(cycle) = visit(name, stages, &mut marks, &mut Vec::new()) {
            let first = cycle[0];
            let stage = stages[first].get_ref();
            return Err(cx.err(
                &stage.inputs.span(),
                format!("stages.{first}.inputs"),
                format!("the stages form a cycle: {}", cycle.join(" -> ")),
            ));
        }
    }
    Ok(())
}
/// Upstream stages first, so that reports and logs read in the direction of the flow.
pub(crate) fn upstream_first(mut stages: Vec<Stage>) -> Vec<Stage> {
    let mut ordered = Vec::with_capacity(stages.len());
    while !stages.is_empty() {
        let ready = stages
            .iter()
            .position(|s: &Stage| {
                s.inputs
                    .iter()
                    .all(|i| !stages.iter().any(|o| &o.name == i))
            })
            .expect("an acyclic graph always has a stage whose inputs are placed");
        ordered.push(stages.remove(ready));
    }
    ordered
}

/// A source or stage whose output nobody reads would drop every event it makes.
pub(crate) fn check_consumed(
    cx: &Ctx,
    raw: &RawFile,
    stages: &[Stage],
    sinks: &[Sink],
) -> Result<(), ConfigError> {
    let consumed: BTreeSet<&str> = stages
        .iter()
        .flat_map(|s| &s.inputs)
        .chain(sinks.iter().flat_map(|s| &s.inputs))
        .map(String::as_str)
        .collect();
    for (section, name, span) in raw
        .sources
        .iter()
        .map(|(n, s)| ("sources", n, s.span()))
        .chain(raw.stages.iter().map(|(n, s)| ("stages", n, s.span())))
    {
        if !consumed.contains(name.as_str()) {
            return Err(cx.err(
                &span,
                format!("{section}.{name}"),
                format!("`{name}` feeds nothing: name it in the `inputs` of a stage or sink"),
            ));
        }
    }
    Ok(())
}
