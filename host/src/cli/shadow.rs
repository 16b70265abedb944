//! `weir reload --shadow` and `weir shadow status|promote|stop`: a stage's shadow through the
//! admin API, and its comparison printed as text (guest text arrives escaped and bounded by
//! the server) or JSON.

use std::path::Path;

use super::admin::{client_failed, connect};
use super::{AdminArgs, CommandResult};
use crate::control::api::{ShadowStatus, ShownEvent};

pub(super) fn start(stage: &str, plugin: &Path, sample: f64, admin: &AdminArgs) -> CommandResult {
    if !(sample > 0.0 && sample <= 1.0) {
        return Err((
            2,
            format!("`--sample {sample}`: give a share above 0 and at most 1"),
        ));
    }
    let client = connect(admin.admin.as_deref(), &admin.auth)?;
    let bytes = std::fs::read(plugin).map_err(|e| {
        (
            2,
            format!("plugin {}: cannot read it: {e}", plugin.display()),
        )
    })?;
    let status = client
        .put_shadow(stage, &bytes, sample)
        .map_err(client_failed)?;
    out!(
        "stage `{stage}`: shadow {} running beside the live version on {} of its input batches",
        short(&status.digest),
        share(status.sample)
    );
    Ok(())
}

pub(super) fn status(stage: &str, json: bool, admin: &AdminArgs) -> CommandResult {
    let status = connect(admin.admin.as_deref(), &admin.auth)?
        .shadow(stage)
        .map_err(client_failed)?;
    if json {
        let text = serde_json::to_string_pretty(&status).map_err(|e| (1, e.to_string()))?;
        out!("{text}");
        return Ok(());
    }
    print_status(stage, &status);
    Ok(())
}

pub(super) fn promote(stage: &str, admin: &AdminArgs) -> CommandResult {
    let v = connect(admin.admin.as_deref(), &admin.auth)?
        .promote_shadow(stage)
        .map_err(client_failed)?;
    out!(
        "stage `{stage}`: shadow promoted: version {} ({}) live, ready in {} ms",
        v.id,
        v.short_digest,
        v.ready_ms
    );
    Ok(())
}

pub(super) fn stop(stage: &str, admin: &AdminArgs) -> CommandResult {
    let status = connect(admin.admin.as_deref(), &admin.auth)?
        .stop_shadow(stage)
        .map_err(client_failed)?;
    out!(
        "stage `{stage}`: shadow {} stopped: {} compared, {} equal, {} different",
        short(&status.digest),
        status.compared,
        status.equal,
        status.different
    );
    Ok(())
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

fn share(sample: f64) -> String {
    format!("{} %", sample * 100.0)
}

fn kinds(failed: &std::collections::BTreeMap<String, u64>) -> String {
    let total: u64 = failed.values().sum();
    if total == 0 {
        return "0".to_string();
    }
    let each: Vec<String> = failed.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!("{total} ({})", each.join(", "))
}

fn print_status(stage: &str, s: &ShadowStatus) {
    let state = serde_json::to_value(s.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    out!(
        "stage `{stage}`: shadow {} ({state}) on {} of the input batches",
        short(&s.digest),
        share(s.sample)
    );
    out!(
        "  batches: {} compared, {} skipped (the shadow was behind)",
        s.batches,
        s.skipped
    );
    out!(
        "  events: {} compared, {} equal, {} different",
        s.compared,
        s.equal,
        s.different
    );
    out!(
        "  failed: live {}, shadow {}",
        kinds(&s.live_failed),
        kinds(&s.shadow_failed)
    );
    out!(
        "  time per event: live {:.2} µs, shadow {:.2} µs",
        s.live_us_per_event,
        s.shadow_us_per_event
    );
    if s.samples.is_empty() {
        return;
    }
    out!("  latest differences ({}):", s.samples.len());
    for sample in &s.samples {
        out!("  - input  {}", event(&sample.input));
        let side = |e: &Option<ShownEvent>| e.as_ref().map_or("(no output)".to_string(), event);
        out!(
            "    live   {} ({} outputs)",
            side(&sample.live),
            sample.live_outputs
        );
        out!(
            "    shadow {} ({} outputs)",
            side(&sample.shadow),
            sample.shadow_outputs
        );
    }
}

/// One event on a line; its text came escaped and bounded from the server, and is quoted
/// here so that where it ends is plain.
fn event(e: &ShownEvent) -> String {
    let mut line = format!("value \"{}\"", e.value);
    if let Some(key) = &e.key {
        line.push_str(&format!(" key \"{key}\""));
    }
    for (name, value) in &e.headers {
        line.push_str(&format!(" {name}=\"{value}\""));
    }
    if e.more_headers > 0 {
        line.push_str(&format!(" (+{} headers)", e.more_headers));
    }
    if let Some(t) = e.timestamp {
        line.push_str(&format!(" ts {t}"));
    }
    line
}
