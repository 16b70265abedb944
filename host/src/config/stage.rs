//! `[stages.NAME]`: the plugin file, its settings, its limits, breaker, grant and canary, and
//! the lines later checks need to name a place.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use crate::config::error::{ConfigError, Ctx, Sp, did_you_mean, join, list, plain, shown};
use crate::config::names;
use crate::config::ranges::{
    BREAKER_COOLDOWN, BREAKER_WINDOW, CANARY_EVENTS, FUEL, MAX_OUTPUT_BYTES, MAX_OUTPUT_EVENTS,
    MAX_VALUE_SIZE, MEMORY, RETRIES, TIMEOUT, WORKERS,
};
use crate::config::raw::{RawBreaker, RawCanary, RawGrant, RawStage};
use crate::config::units;
use crate::config::{
    Breaker, Canary, DEFAULT_RETRIES, DEFAULT_WORKERS, DirGrant, Grant, Limits, OnError, Stage,
    StageLines,
};

const POLICIES: &[&str] = &["dead-letter", "drop", "stop"];

/// Longest guest path of a directory grant, in bytes (as `PATH_MAX`).
const GUEST_PATH_MAX: usize = 4096;

/// One stage, whose `inputs` the graph checks have already checked.
pub(crate) fn check(
    cx: &Ctx,
    name: &str,
    raw: &RawStage,
    inputs: Vec<String>,
) -> Result<Stage, ConfigError> {
    let node = join("stages", name);
    let key = |k: &str| join(&node, k);
    let plugin = cx.path(raw.plugin.get_ref());
    if !plugin.is_file() {
        return Err(cx.err(
            &raw.plugin.span(),
            key("plugin"),
            format!(
                "plugin file not found: {} (build it first, or fix the path)",
                plain(&plugin.display().to_string())
            ),
        ));
    }
    Ok(Stage {
        name: name.to_string(),
        inputs,
        plugin,
        settings: settings(cx, &node, raw)?,
        workers: (raw.workers.as_ref())
            .map(|v| units::whole(cx, v, &key("workers"), &WORKERS))
            .transpose()?
            .unwrap_or(DEFAULT_WORKERS),
        limits: limits(cx, &node, raw)?,
        retries: (raw.retries.as_ref())
            .map(|v| units::whole(cx, v, &key("retries"), &RETRIES))
            .transpose()?
            .unwrap_or(DEFAULT_RETRIES),
        on_error: on_error(cx, &node, raw)?,
        breaker: breaker(cx, &join(&node, "breaker"), raw.breaker.as_ref())?,
        grant: grant(cx, &join(&node, "grant"), raw.grant.as_ref())?,
        watch: raw.watch.as_ref().is_some_and(|w| *w.get_ref()),
        canary: canary(cx, &join(&node, "canary"), raw.canary.as_ref())?,
        lines: lines(cx, raw),
    })
}

/// Settings reach the plugin as text; their keys must be plain names.
fn settings(cx: &Ctx, node: &str, raw: &RawStage) -> Result<Vec<(String, String)>, ConfigError> {
    let path = join(node, "settings");
    let mut out = Vec::with_capacity(raw.settings.len());
    for (key, value) in &raw.settings {
        names::setting_key(key.get_ref())
            .map_err(|m| cx.err(&key.span(), join(&path, key.get_ref()), m))?;
        out.push((key.get_ref().clone(), value.get_ref().clone()));
    }
    Ok(out)
}

fn lines(cx: &Ctx, raw: &RawStage) -> StageLines {
    StageLines {
        file: cx.file.to_path_buf(),
        table: cx.line_of(&raw.at.table),
        plugin: cx.line_of(&raw.plugin.span()),
        settings: (raw.settings.iter())
            .map(|(k, _)| (k.get_ref().clone(), cx.line_of(&k.span())))
            .collect(),
    }
}

fn limits(cx: &Ctx, node: &str, raw: &RawStage) -> Result<Limits, ConfigError> {
    let key = |k: &str| join(node, k);
    let d = Limits::default();
    let size = |v: &Option<Sp<String>>, k: &str, range: &RangeInclusive<u64>, default: u64| {
        (v.as_ref())
            .map(|v| units::size(cx, v, &key(k), range))
            .transpose()
            .map(|v| v.unwrap_or(default))
    };
    Ok(Limits {
        fuel: (raw.fuel.as_ref())
            .map(|v| units::whole(cx, v, &key("fuel"), &FUEL))
            .transpose()?
            .unwrap_or(d.fuel),
        timeout: (raw.timeout.as_ref())
            .map(|v| units::duration(cx, v, &key("timeout"), &TIMEOUT))
            .transpose()?
            .unwrap_or(d.timeout),
        memory: size(&raw.memory, "memory", &MEMORY, d.memory)?,
        max_output_events: (raw.max_output_events.as_ref())
            .map(|v| units::whole(cx, v, &key("max_output_events"), &MAX_OUTPUT_EVENTS))
            .transpose()?
            .unwrap_or(d.max_output_events),
        max_output_bytes: size(
            &raw.max_output_bytes,
            "max_output_bytes",
            &MAX_OUTPUT_BYTES,
            d.max_output_bytes,
        )?,
        max_value_size: size(
            &raw.max_value_size,
            "max_value_size",
            &MAX_VALUE_SIZE,
            d.max_value_size,
        )?,
    })
}

fn on_error(cx: &Ctx, node: &str, raw: &RawStage) -> Result<OnError, ConfigError> {
    let Some(v) = &raw.on_error else {
        return Ok(OnError::DeadLetter);
    };
    match v.get_ref().as_str() {
        "dead-letter" => Ok(OnError::DeadLetter),
        "drop" => Ok(OnError::Drop),
        "stop" => Ok(OnError::Stop),
        other => Err(cx.err(
            &v.span(),
            join(node, "on_error"),
            format!(
                "unknown policy {}: use {}{}",
                shown(other),
                list(POLICIES, "or"),
                did_you_mean(other, POLICIES)
            ),
        )),
    }
}

/// `path` is the breaker's key path, `stages.NAME.breaker`.
fn breaker(cx: &Ctx, path: &str, raw: Option<&RawBreaker>) -> Result<Breaker, ConfigError> {
    let mut breaker = Breaker::default();
    let Some(raw) = raw else {
        return Ok(breaker);
    };
    if let Some(w) = &raw.window {
        breaker.window = units::whole(cx, w, &join(path, "window"), &BREAKER_WINDOW)?;
    }
    if let Some(t) = &raw.threshold {
        breaker.threshold = units::fraction(cx, t, &join(path, "threshold"), false)?;
    }
    if let Some(c) = &raw.cooldown {
        breaker.cooldown = units::duration(cx, c, &join(path, "cooldown"), &BREAKER_COOLDOWN)?;
    }
    Ok(breaker)
}

/// `path` is the grant's key path, `stages.NAME.grant`.
fn grant(cx: &Ctx, path: &str, raw: Option<&RawGrant>) -> Result<Grant, ConfigError> {
    let mut grant = Grant::default();
    let Some(raw) = raw else {
        return Ok(grant);
    };
    let mut guests = BTreeSet::new();
    for dir in &raw.dirs {
        let host = cx.path(dir.host.get_ref());
        if !host.is_dir() {
            return Err(cx.err(
                &dir.host.span(),
                join(&dir.path, "host"),
                format!("no such directory: {}", plain(&host.display().to_string())),
            ));
        }
        let guest = dir.guest.get_ref();
        guest_path(guest).map_err(|m| cx.err(&dir.guest.span(), join(&dir.path, "guest"), m))?;
        if !guests.insert(guest.as_str()) {
            return Err(cx.err(
                &dir.guest.span(),
                join(&dir.path, "guest"),
                format!(
                    "{} is granted twice: each guest path names one directory",
                    shown(guest)
                ),
            ));
        }
        grant.dirs.push(DirGrant {
            host,
            guest: guest.clone(),
        });
    }
    for var in &raw.env {
        names::env(var.get_ref()).map_err(|m| cx.err(&var.span(), join(path, "env"), m))?;
        grant.env.push(var.get_ref().clone());
    }
    grant.network = raw.network.as_ref().is_some_and(|n| *n.get_ref());
    Ok(grant)
}

/// A guest path: absolute, without `.` or `..` parts or control characters, at most 4096
/// bytes. It is the name the plugin sees the directory under; a relative or dotted name would
/// resolve differently in every guest.
fn guest_path(guest: &str) -> Result<(), String> {
    let fits = guest.starts_with('/')
        && guest.len() <= GUEST_PATH_MAX
        && !guest.chars().any(char::is_control)
        && !guest.split('/').any(|part| part == "." || part == "..");
    if fits {
        return Ok(());
    }
    Err(format!(
        "{} is not a usable guest path: write an absolute path without `.` or `..` parts, \
         such as `/data`",
        shown(guest)
    ))
}

/// `path` is the canary's key path, `stages.NAME.canary`.
fn canary(cx: &Ctx, path: &str, raw: Option<&RawCanary>) -> Result<Canary, ConfigError> {
    let mut canary = Canary::default();
    let Some(raw) = raw else {
        return Ok(canary);
    };
    if let Some(events) = &raw.events {
        canary.events = units::whole(cx, events, &join(path, "events"), &CANARY_EVENTS)?;
    }
    if let Some(rate) = &raw.max_failure_rate {
        canary.max_failure_rate = units::fraction(cx, rate, &join(path, "max_failure_rate"), true)?;
    }
    Ok(canary)
}
