//! `weir plugin inspect`: what a component is, and whether this host loads it.

use std::path::Path;

use weir_sandbox::Sandbox;

use super::admin::{client_failed, stages_running};
use super::{CommandResult, refused};
use crate::control::client::Client;

pub(super) fn inspect(
    file: &Path,
    json: bool,
    admin: Option<String>,
    token: Option<String>,
) -> CommandResult {
    let admin = match (admin, token) {
        (Some(addr), Some(token)) => Some((addr, token)),
        (Some(_), None) => {
            return Err((2, "`--admin` needs `--token` or WEIR_ADMIN_TOKEN".into()));
        }
        (None, _) => None,
    };
    let sandbox =
        Sandbox::new().map_err(|e| (1, format!("cannot start the WebAssembly engine: {e}")))?;
    let report = weir_sandbox::inspect(&sandbox, file).map_err(refused)?;
    // Which stages of a running pipeline hold this plugin, and in what state.
    let running = match &admin {
        Some((addr, token)) => {
            let stages = Client::new(addr, token).stages().map_err(client_failed)?;
            Some(stages_running(&stages, &report.sha256))
        }
        None => None,
    };
    if json {
        let mut value = serde_json::to_value(&report).map_err(|e| (1, e.to_string()))?;
        if let Some(running) = &running {
            value["running"] = serde_json::json!(
                running
                    .iter()
                    .map(|(stage, state)| serde_json::json!({ "stage": stage, "state": state }))
                    .collect::<Vec<_>>()
            );
        }
        let text = serde_json::to_string_pretty(&value).map_err(|e| (1, e.to_string()))?;
        out!("{text}");
        return Ok(());
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
            let default = s
                .default
                .as_deref()
                .map(|d| format!(", default {d}"))
                .unwrap_or_default();
            let required = if s.required { ", required" } else { "" };
            out!("  {} ({}{required}{default}): {}", s.name, s.ty, s.help);
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
