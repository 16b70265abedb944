//! `weir check --graph dot|mermaid`: a planned pipeline's topology as text for Graphviz or
//! Mermaid, for docs and reviews.
//!
//! A checked [`Topology`] comes in (the chains as planned, `workers = "auto"` resolved); the
//! text goes out: sources, stages and sinks as nodes, an edge from each input to its consumer,
//! each chain of more than one stage drawn as a box around its stages with its workers, and the
//! dead-letter sink fed by every stage with a dashed edge. Nodes are named `n0`, `n1`, … in
//! the pipeline's order and labelled with their names, so that no name can break the syntax
//! (names are letters, digits, `_` and `-`, which Mermaid would read as an edge).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::pipeline::Topology;

/// The two languages `--graph` speaks.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Graph {
    /// Graphviz (`dot -Tsvg`).
    Dot,
    /// A Mermaid flowchart (renders in GitHub's Markdown).
    Mermaid,
}

/// One node: its id, its label and its shape's kind.
struct Node {
    id: String,
    label: String,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Source,
    Stage,
    Sink,
}

/// The topology as `graph` text.
pub fn render(topology: &Topology, graph: Graph) -> String {
    let pipeline = topology.pipeline();
    let mut nodes = Vec::new();
    let mut ids = BTreeMap::new();
    let mut add = |name: &str, label: String, kind: Kind| {
        let id = format!("n{}", ids.len());
        ids.insert(name.to_string(), id.clone());
        nodes.push(Node { id, label, kind });
    };
    for source in &pipeline.sources {
        add(
            &source.name,
            format!("source {}", source.name),
            Kind::Source,
        );
    }
    for stage in &pipeline.stages {
        let label = match stage.workers {
            1 => stage.name.clone(),
            n => format!("{} ({n} workers)", stage.name),
        };
        add(&stage.name, label, Kind::Stage);
    }
    for sink in &pipeline.sinks {
        add(&sink.name, format!("sink {}", sink.name), Kind::Sink);
    }
    let mut edges = Vec::new();
    let inputs = (pipeline.stages.iter().map(|s| (&s.name, &s.inputs)))
        .chain(pipeline.sinks.iter().map(|s| (&s.name, &s.inputs)));
    for (to, from) in inputs {
        for input in from {
            if let (Some(a), Some(b)) = (ids.get(input), ids.get(to)) {
                edges.push((a.clone(), b.clone()));
            }
        }
    }
    let chains: Vec<(usize, bool, Vec<String>)> = (topology.chains())
        .filter(|c| c.stages.len() > 1 || c.keyed)
        .map(|c| {
            let members = c
                .stages
                .iter()
                .filter_map(|s| ids.get(s).cloned())
                .collect();
            (c.workers, c.keyed, members)
        })
        .collect();
    let stages: Vec<String> = (pipeline.stages.iter())
        .filter_map(|s| ids.get(&s.name).cloned())
        .collect();
    match graph {
        Graph::Dot => dot(&nodes, &edges, &chains, &stages),
        Graph::Mermaid => mermaid(&nodes, &edges, &chains, &stages),
    }
}

/// What a chain's box says.
fn chain_label(workers: usize, keyed: bool) -> String {
    let plural = if workers == 1 { "" } else { "s" };
    let routed = if keyed { ", routed by key" } else { "" };
    format!("chain, {workers} worker{plural}{routed}")
}

fn dot(
    nodes: &[Node],
    edges: &[(String, String)],
    chains: &[(usize, bool, Vec<String>)],
    stages: &[String],
) -> String {
    let mut out =
        String::from("digraph weir {\n  rankdir=LR;\n  node [fontname=\"sans-serif\"];\n");
    for node in nodes {
        let shape = match node.kind {
            Kind::Source => "cylinder",
            Kind::Stage => "box",
            Kind::Sink => "folder",
        };
        let _ = writeln!(
            out,
            "  {} [label=\"{}\", shape={shape}];",
            node.id, node.label
        );
    }
    for (i, (workers, keyed, members)) in chains.iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph cluster_{i} {{\n    label=\"{}\";\n    style=dashed;\n    {};\n  }}",
            chain_label(*workers, *keyed),
            members.join("; ")
        );
    }
    for (a, b) in edges {
        let _ = writeln!(out, "  {a} -> {b};");
    }
    if !stages.is_empty() {
        let _ = writeln!(
            out,
            "  dead [label=\"dead letters\", shape=folder, style=dashed];"
        );
        for stage in stages {
            let _ = writeln!(out, "  {stage} -> dead [style=dashed];");
        }
    }
    out.push_str("}\n");
    out
}

fn mermaid(
    nodes: &[Node],
    edges: &[(String, String)],
    chains: &[(usize, bool, Vec<String>)],
    stages: &[String],
) -> String {
    let mut out = String::from("flowchart LR\n");
    for node in nodes {
        let (open, close) = match node.kind {
            Kind::Source => ("[(", ")]"),
            Kind::Stage => ("[", "]"),
            Kind::Sink => ("[/", "/]"),
        };
        let _ = writeln!(out, "  {}{open}\"{}\"{close}", node.id, node.label);
    }
    for (i, (workers, keyed, members)) in chains.iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph chain{i} [\"{}\"]",
            chain_label(*workers, *keyed)
        );
        for member in members {
            let _ = writeln!(out, "    {member}");
        }
        out.push_str("  end\n");
    }
    for (a, b) in edges {
        let _ = writeln!(out, "  {a} --> {b}");
    }
    if !stages.is_empty() {
        out.push_str("  dead[/\"dead letters\"/]\n");
        for stage in stages {
            let _ = writeln!(out, "  {stage} -.-> dead");
        }
    }
    out
}
