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
        println!("{text}");
        return Ok(());
    }
    println!("plugin:  {}", report.path.display());
    println!("size:    {} bytes", report.size);
    println!("sha256:  {}", report.sha256);
    match (&report.loadable, report.contract) {
        (Ok(()), Some(contract)) => println!(
            "world:   weir:stage/stage@{}.0 (loads on this host)",
            contract.as_str()
        ),
        (Ok(()), None) => println!("world:   loads on this host"),
        (Err(why), _) => println!("world:   not loadable on this host: {why}"),
    }
    if let Some(d) = &report.description {
        println!("stage:   {} {}", d.name, d.version);
        if d.settings.is_empty() {
            println!("settings: none");
        } else {
            println!("settings:");
        }
        for s in &d.settings {
            let default = s
                .default
                .as_deref()
                .map(|d| format!(", default {d}"))
                .unwrap_or_default();
            let required = if s.required { ", required" } else { "" };
            println!("  {} ({}{required}{default}): {}", s.name, s.ty, s.help);
        }
    }
    println!("imports:");
    for import in &report.imports {
        match &import.refused {
            None => println!("  {}  (granted)", import.name),
            Some(why) => println!("  {}  (refused: {why})", import.name),
        }
    }
    println!("exports:");
    for export in &report.exports {
        println!("  {export}");
    }
    if let Some(running) = running {
        println!("running:");
        if running.is_empty() {
            println!("  in no stage of the pipeline");
        }
        for (stage, state) in running {
            println!("  stage `{stage}`: {state}");
        }
    }
    Ok(())
}
