//! `weir plugin inspect`: what a component is, and whether this host loads it.

use std::path::Path;

use weir_sandbox::Sandbox;

use super::admin::{client_failed, connect, stages_running};
use super::{AuthArgs, CommandResult, refused};

pub(super) fn inspect(
    file: &Path,
    json: bool,
    admin: Option<&str>,
    auth: &AuthArgs,
) -> CommandResult {
    // The address and token are checked before the plugin is compiled.
    let client = admin.map(|addr| connect(Some(addr), auth)).transpose()?;
    let sandbox =
        Sandbox::new().map_err(|e| (1, format!("cannot start the WebAssembly engine: {e}")))?;
    let report = weir_sandbox::inspect(&sandbox, file).map_err(refused)?;
    // Which stages of a running pipeline hold this plugin, and in what state.
    let running = match &client {
        Some(client) => {
            let stages = client.stages().map_err(client_failed)?;
            Some(stages_running(&stages, &report.sha256))
        }
        None => None,
    };
    if json {
        return print_json(&report, running.as_deref());
    }
    out!("plugin:  {}", report.path.display());
    out!("size:    {} bytes", report.size);
    out!("sha256:  {}", report.sha256);
    match (&report.loadable, report.contract) {
        (Ok(()), Some(contract)) => out!(
            "world:   weir:stage/stage@{}.0 (loads on this host)",
            contract.as_str()
        ),
        (Ok(()), None) => out!("world:   loads on this host"),
        (Err(why), _) => out!("world:   not loadable on this host: {why}"),
    }
    if let Some(d) = &report.description {
        out!("stage:   {} {}", d.name, d.version);
        if d.settings.is_empty() {
            out!("settings: none");
        } else {
            out!("settings:");
        }
        for s in &d.settings {
            let line = setting_line(&s.name, s.ty, s.required, s.default.as_deref(), &s.help);
            out!("  {line}");
        }
    }
    out!("imports:");
    for import in &report.imports {
        match &import.refused {
            None => out!("  {}  (granted)", import.name),
            Some(why) => out!("  {}  (refused: {why})", import.name),
        }
    }
    out!("exports:");
    for export in &report.exports {
        out!("  {export}");
    }
    if let Some(running) = running {
        out!("running:");
        if running.is_empty() {
            out!("  in no stage of the pipeline");
        }
        for (stage, state) in running {
            out!("  stage `{stage}`: {state}");
        }
    }
    Ok(())
}

/// The report as one JSON object, with the stages that run the plugin when asked.
fn print_json(
    report: &weir_sandbox::Inspection,
    running: Option<&[(String, String)]>,
) -> CommandResult {
    let mut value = serde_json::to_value(report).map_err(|e| (1, e.to_string()))?;
    if let Some(running) = running {
        value["running"] = serde_json::json!(
            running
                .iter()
                .map(|(stage, state)| serde_json::json!({ "stage": stage, "state": state }))
                .collect::<Vec<_>>()
        );
    }
    let text = serde_json::to_string_pretty(&value).map_err(|e| (1, e.to_string()))?;
    out!("{text}");
    Ok(())
}

/// A declared setting as the plugin commands print it: `name (type, required, default D): help`.
pub(super) fn setting_line(
    name: &str,
    ty: &str,
    required: bool,
    default: Option<&str>,
    help: &str,
) -> String {
    let required = if required { ", required" } else { "" };
    let default = default
        .map(|d| format!(", default {d}"))
        .unwrap_or_default();
    format!("{name} ({ty}{required}{default}): {help}")
}
