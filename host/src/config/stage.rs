//! `[stages.NAME]`: the plugin, its settings, limits, breaker, grant and canary.

use crate::config::error::{ConfigError, Ctx};
use crate::config::raw::{RawCanary, RawStage, Sp};
use crate::config::units::parse_size;
use crate::config::{Breaker, Canary, DirGrant, Grant, Limits, OnError, Stage};

pub(crate) fn check_stage(
    cx: &Ctx,
    name: &str,
    raw: &RawStage,
    inputs: Vec<String>,
) -> Result<Stage, ConfigError> {
    let key = |k: &str| format!("stages.{name}.{k}");
    let plugin = cx.path(raw.plugin.get_ref());
    if !plugin.is_file() {
        return Err(cx.err(
            &raw.plugin.span(),
            key("plugin"),
            format!(
                "plugin file not found: {} (build it first, or fix the path)",
                plugin.display()
            ),
        ));
    }
    let mut settings = Vec::with_capacity(raw.settings.len());
    for (k, v) in &raw.settings {
        let text = match v.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            toml::Value::Array(_) | toml::Value::Table(_) => {
                return Err(cx.err(
                    &v.span(),
                    format!("stages.{name}.settings.{k}"),
                    "a setting must be a string, number or boolean",
                ));
            }
        };
        settings.push((k.clone(), text));
    }
    let defaults = Limits::default();
    let limits = Limits {
        fuel: match &raw.fuel {
            Some(f) if *f.get_ref() == 0 => {
                return Err(cx.err(&f.span(), key("fuel"), "must be at least 1"));
            }
            Some(f) => *f.get_ref(),
            None => defaults.fuel,
        },
        timeout: match &raw.timeout {
            Some(t) => {
                let d = cx.duration(t, key("timeout"))?;
                if d.is_zero() {
                    return Err(cx.err(&t.span(), key("timeout"), "must be more than zero"));
                }
                d
            }
            None => defaults.timeout,
        },
        memory: match &raw.memory {
            Some(m) => {
                let bytes =
                    parse_size(m.get_ref()).map_err(|e| cx.err(&m.span(), key("memory"), e))?;
                // Below one wasm page nothing can run; above 4 GiB a 32-bit guest cannot
                // address it anyway.
                if !(64 << 10..=4 << 30).contains(&bytes) {
                    return Err(cx.err(&m.span(), key("memory"), "must be between 64KiB and 4GiB"));
                }
                bytes
            }
            None => defaults.memory,
        },
        max_output_events: match &raw.max_output_events {
            Some(v) => cx.positive(v, key("max_output_events"))?,
            None => defaults.max_output_events,
        },
        max_output_bytes: match &raw.max_output_bytes {
            Some(v) => parse_size(v.get_ref())
                .map_err(|e| cx.err(&v.span(), key("max_output_bytes"), e))?,
            None => defaults.max_output_bytes,
        },
        max_value_size: match &raw.max_value_size {
            Some(v) => {
                parse_size(v.get_ref()).map_err(|e| cx.err(&v.span(), key("max_value_size"), e))?
            }
            None => defaults.max_value_size,
        },
    };
    let mut breaker = Breaker::default();
    if let Some(b) = &raw.breaker {
        if let Some(w) = &b.window {
            breaker.window = cx.positive(w, key("breaker.window"))?;
        }
        if let Some(t) = &b.threshold {
            if !(*t.get_ref() > 0.0 && *t.get_ref() <= 1.0) {
                return Err(cx.err(
                    &t.span(),
                    key("breaker.threshold"),
                    "must be a fraction above 0 and at most 1",
                ));
            }
            breaker.threshold = *t.get_ref();
        }
        if let Some(c) = &b.cooldown {
            breaker.cooldown = cx.duration(c, key("breaker.cooldown"))?;
        }
    }
    let mut grant = Grant::default();
    if let Some(g) = &raw.grant {
        for dir in &g.dirs {
            let dir = dir.get_ref();
            let host = cx.path(dir.host.get_ref());
            if !host.is_dir() {
                return Err(cx.err(
                    &dir.host.span(),
                    key("grant.dirs"),
                    format!("no such directory: {}", host.display()),
                ));
            }
            if !dir.guest.get_ref().starts_with('/') {
                return Err(cx.err(
                    &dir.guest.span(),
                    key("grant.dirs"),
                    "the guest path must be absolute, such as `/data`",
                ));
            }
            grant.dirs.push(DirGrant {
                host,
                guest: dir.guest.get_ref().clone(),
            });
        }
        grant.env = g.env.iter().map(|e| e.get_ref().clone()).collect();
        grant.network = g.network;
    }
    let on_error = match &raw.on_error {
        None => OnError::DeadLetter,
        Some(v) => match v.get_ref().as_str() {
            "dead-letter" => OnError::DeadLetter,
            "drop" => OnError::Drop,
            "stop" => OnError::Stop,
            other => {
                return Err(cx.err(
                    &v.span(),
                    key("on_error"),
                    format!("unknown policy `{other}`: use `dead-letter`, `drop` or `stop`"),
                ));
            }
        },
    };
    Ok(Stage {
        name: name.to_string(),
        inputs,
        plugin,
        settings,
        workers: match &raw.workers {
            Some(w) => cx.positive(w, key("workers"))?,
            None => 1,
        },
        limits,
        retries: raw.retries.as_ref().map(|r| *r.get_ref()).unwrap_or(3),
        on_error,
        breaker,
        grant,
        watch: raw.watch.as_ref().is_some_and(|w| *w.get_ref()),
        canary: check_canary(cx, name, raw.canary.as_ref())?,
    })
}

fn check_canary(cx: &Ctx, name: &str, raw: Option<&Sp<RawCanary>>) -> Result<Canary, ConfigError> {
    let mut canary = Canary::default();
    let Some(raw) = raw else {
        return Ok(canary);
    };
    if let Some(events) = &raw.get_ref().events {
        canary.events = *events.get_ref();
    }
    if let Some(rate) = &raw.get_ref().max_failure_rate {
        let r = *rate.get_ref();
        if !(0.0..=1.0).contains(&r) {
            return Err(cx.err(
                &rate.span(),
                format!("stages.{name}.canary.max_failure_rate"),
                "must be between 0 and 1",
            ));
        }
        canary.max_failure_rate = r;
    }
    Ok(canary)
}
