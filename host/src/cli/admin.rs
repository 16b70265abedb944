//! `weir reload`, `weir rollback` and `weir stages`: where the admin API is and its token
//! (from the command line or the environment), the client, and printing.

use std::path::Path;

use super::{AdminArgs, AuthArgs, CommandResult, one_line};
use crate::config::DEFAULT_ADMIN_LISTEN;
use crate::control::api::{StageInfo, VersionInfo, VersionState};
use crate::control::client::{Client, ClientError, Endpoint};

/// The admin API's address when `--admin` is not given.
const ADDRESS_VAR: &str = "WEIR_ADMIN";
/// The bearer token when neither `--token` nor `--token-file` is given.
const TOKEN_VAR: &str = "WEIR_ADMIN_TOKEN";

/// A client for the admin API at `addr` (else `WEIR_ADMIN`, else the default address), with
/// the token of `auth`. A bad address, token file or CA file exits 2.
pub(super) fn connect(addr: Option<&str>, auth: &AuthArgs) -> Result<Client, (u8, String)> {
    let endpoint = match (addr, std::env::var(ADDRESS_VAR)) {
        (Some(addr), _) => Endpoint::parse(addr).map_err(|e| (2, format!("`--admin`: {e}")))?,
        (None, Ok(addr)) if !addr.trim().is_empty() => {
            Endpoint::parse(&addr).map_err(|e| (2, format!("{ADDRESS_VAR}: {e}")))?
        }
        _ => Endpoint::parse(DEFAULT_ADMIN_LISTEN).map_err(|e| (2, e))?,
    };
    let token = token(auth)?;
    Client::new(&endpoint, &token, auth.tls_ca.as_deref()).map_err(|e| {
        let from = if std::env::var_os("WEIR_ADMIN_CA").is_some() {
            "`--tls-ca` (or WEIR_ADMIN_CA)"
        } else {
            "`--tls-ca`"
        };
        (2, format!("{from}: {}", one_line(e)))
    })
}

/// The token from `--token` (with a warning), `--token-file` or `WEIR_ADMIN_TOKEN`.
fn token(auth: &AuthArgs) -> Result<String, (u8, String)> {
    if let Some(token) = &auth.token {
        crate::notice::warn(
            "`--token` shows the token to every local user (in the process list): prefer \
             `--token-file FILE` or WEIR_ADMIN_TOKEN",
        );
        return Ok(token.trim().to_string());
    }
    if let Some(file) = &auth.token_file {
        let shown = crate::config::plain(&file.display().to_string());
        return crate::config::read_token_file(file)
            .map_err(|e| (2, format!("`--token-file {shown}`: {e}")));
    }
    match std::env::var(TOKEN_VAR) {
        Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_string()),
        _ => Err((
            2,
            format!(
                "the admin API needs its bearer token: give `--token-file FILE` or set \
                 {TOKEN_VAR} (or give `--token`, which other local users can see)"
            ),
        )),
    }
}

/// Stages whose history holds the digest, with that version's state (`live`, `standby`, ...).
pub(super) fn stages_running(stages: &[StageInfo], digest: &str) -> Vec<(String, String)> {
    let order = [
        VersionState::Live,
        VersionState::Standby,
        VersionState::RolledBack,
        VersionState::Retired,
    ];
    stages
        .iter()
        .filter_map(|stage| {
            let states: Vec<VersionState> = stage
                .versions
                .iter()
                .filter(|v| v.digest == digest)
                .map(|v| v.state)
                .collect();
            let best = order.into_iter().find(|s| states.contains(s))?;
            Some((stage.name.clone(), state_name(best).to_string()))
        })
        .collect()
}

fn state_name(state: VersionState) -> &'static str {
    match state {
        VersionState::Live => "live",
        VersionState::Standby => "standby",
        VersionState::RolledBack => "rolled-back",
        VersionState::Retired => "retired",
    }
}

/// A refused change exits 2, like a refused plugin at start; any other failure exits 1.
pub(super) fn client_failed(e: ClientError) -> (u8, String) {
    match &e {
        ClientError::Refused { status: 422, .. } => (2, one_line(e)),
        _ => (1, one_line(e)),
    }
}

fn describe_version(stage: &str, v: &VersionInfo) -> String {
    format!(
        "stage `{stage}`: version {} ({}) live, ready in {} ms",
        v.id, v.short_digest, v.ready_ms
    )
}

pub(super) fn reload(
    stage: &str,
    plugin: Option<&Path>,
    set: &[String],
    admin: &AdminArgs,
) -> CommandResult {
    let client = connect(admin.admin.as_deref(), &admin.auth)?;
    let answer = match plugin {
        Some(file) => {
            let bytes = std::fs::read(file)
                .map_err(|e| (2, format!("plugin {}: cannot read it: {e}", file.display())))?;
            client.put_plugin(stage, &bytes)
        }
        None => {
            let mut settings = serde_json::Map::new();
            for pair in set {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| (2, format!("`--set {pair}`: write KEY=VALUE")))?;
                settings.insert(key.to_string(), value.into());
            }
            client.put_settings(stage, &serde_json::Value::Object(settings))
        }
    }
    .map_err(client_failed)?;
    out!("{}", describe_version(stage, &answer));
    Ok(())
}

pub(super) fn rollback(stage: &str, admin: &AdminArgs) -> CommandResult {
    let answer = connect(admin.admin.as_deref(), &admin.auth)?
        .rollback(stage)
        .map_err(client_failed)?;
    out!("{}", describe_version(stage, &answer));
    Ok(())
}

pub(super) fn stages(json: bool, admin: &AdminArgs) -> CommandResult {
    let stages = connect(admin.admin.as_deref(), &admin.auth)?
        .stages()
        .map_err(client_failed)?;
    if json {
        let text = serde_json::to_string_pretty(&stages).map_err(|e| (1, e.to_string()))?;
        out!("{text}");
        return Ok(());
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    for stage in &stages {
        let Some(live) = &stage.live else {
            out!("{}: native code, not reloadable", stage.name);
            continue;
        };
        out!(
            "{}: version {} ({}) live: {} events, {} failed since it was swapped in",
            stage.name,
            live.id,
            live.short_digest,
            stage.events,
            stage.failed
        );
        for v in &stage.versions {
            let age = now_ms.saturating_sub(v.loaded_at_ms);
            out!(
                "  version {} {} {:<11} from {:<8} loaded {:.1} s ago, ready {} ms after its trigger{}",
                v.id,
                v.short_digest,
                state_name(v.state),
                serde_json::to_value(v.origin)
                    .ok()
                    .and_then(|o| o.as_str().map(str::to_string))
                    .unwrap_or_default(),
                age as f64 / 1e3,
                v.ready_ms,
                v.rolled_back
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}
