//! The admin API's server: HTTP requests in, commands to the stages' actors (through
//! [`Control`]) and JSON answers ([`crate::control::api`]) out. The listener (connections,
//! TLS, their limits, the token check, the body rule) is [`crate::http`]'s; this module holds
//! the routes and what each request is held to.
//!
//! Routes (every one but the metrics routes needs `Authorization: Bearer TOKEN`):
//!
//! - `GET /stages`: every stage, its live version (digest, origin, load time, swap latency),
//!   its history, its canary guard and its counters; `GET /stages/{name}`: one stage.
//! - `PUT /stages/{name}/plugin`: the body is a component; it becomes the stage's version.
//! - `PUT /stages/{name}/settings`: the body is a JSON object of settings; the live plugin
//!   runs with them on new instances.
//! - `POST /stages/{name}/rollback`: back to the version live before the current one.
//! - `PUT /stages/{name}/shadow?sample=RATE`: the body is a component; it runs beside the
//!   live version on RATE (default 1) of its input batches, compared, never sent on.
//!   `GET /stages/{name}/shadow`: its counts and samples; `POST /stages/{name}/shadow/promote`
//!   makes it live (a swap like any reload); `POST /stages/{name}/shadow/stop` ends it (409
//!   when none runs).
//! - `GET /stages/{name}/state?prefix=TEXT&after=CURSOR&limit=N`: a page of the stage's state
//!   as its last completed call left it; `GET /stages/{name}/state/key?key=TEXT` (or
//!   `key_base64=`): one entry; `PUT /stages/{name}/state`: JSON lines of entries written
//!   into it (409 for a stage that keeps no state).
//! - The routes it is handed: `GET /nodes` and `GET /tap/{node}` (the observe module's),
//!   behind the token too; and, when `[metrics]` shares this address, `/metrics`, `/health`,
//!   `/snapshot` and `/`, open to all.
//!
//! The token check ([`crate::http::Token`]) runs before a body is read, so a request without
//! the token costs neither the upload nor a change: it gets 401 and nothing else happens.
//! Then the request waits for one of [`MAX_CONCURRENT_REQUESTS`] slots, and its body must
//! arrive within `body_timeout` and the route's cap. Errors are `{"error": "..."}` with 404
//! (unknown stage), 409 (nothing to roll back to, or a native stage), 422 (the version was
//! refused: not a component, another world, an import the host does not grant, `init`
//! failed), 400 (bad settings), 408 (the body came too slowly) or 413 (the body is over the
//! route's cap).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use weir_sandbox::MAX_PLUGIN_SIZE;

use crate::config::Admin;
use crate::control::api::{Imported, Origin, StateEntry, StatePage};
use crate::control::{Control, ReloadError};
use crate::http::{self, BindError, BodyRule, Server, Token};

/// Largest request body for a plugin upload: the plugin size limit plus slack. Blocks an
/// upload from making the host buffer more than any plugin it would accept.
const MAX_UPLOAD: usize = MAX_PLUGIN_SIZE as usize + 4096;
/// Largest settings body. Settings are a few short strings; this blocks a huge JSON body.
const MAX_SETTINGS_BODY: usize = 64 << 10;
/// Largest state import body (JSON lines). Blocks an import from making the host buffer more
/// than the default `state_max_bytes` and its JSON's weight; a larger state goes in parts.
const MAX_STATE_IMPORT: usize = 256 << 20;
/// Most entries of a state page, whatever the request asks. Blocks one request from making
/// the host copy a whole state into one answer.
const MAX_STATE_PAGE: usize = 10_000;

/// Requests handled at once. Each upload may buffer up to [`MAX_UPLOAD`] and compile a
/// plugin; this bounds the memory and CPU that parallel requests can take from the pipeline.
const MAX_CONCURRENT_REQUESTS: usize = 4;

#[derive(Clone)]
struct AppState {
    control: Arc<Control>,
    permits: Arc<Semaphore>,
}

/// The admin API as a listener: its address, TLS, limits and token.
fn listener(config: &Admin) -> http::Config {
    http::Config {
        name: "admin API".into(),
        listen: config.listen,
        tls: config.tls.as_ref().map(|tls| Arc::clone(&tls.config)),
        limits: config.limits,
        token: Some(Token::new(&config.token)),
    }
}

/// Binds the admin API's address and serves it until `stop` is cancelled.
pub(crate) async fn serve(
    config: &Admin,
    control: Arc<Control>,
    extra: crate::control::ExtraRoutes,
    stop: CancellationToken,
) -> Result<Server, BindError> {
    let state = AppState {
        control,
        permits: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
    };
    let said: Arc<str> = Arc::from(format!(
        "{} (the admin API's `body_timeout`)",
        crate::config::fmt_duration(config.limits.body_timeout)
    ));
    let body = |cap| BodyRule {
        cap,
        timeout: config.limits.body_timeout,
        said: Arc::clone(&said),
    };
    let guarded = Router::new()
        .route("/stages", get(list))
        .route("/stages/{name}", get(one))
        .route("/stages/{name}/plugin", body(MAX_UPLOAD).apply(put(upload)))
        .route(
            "/stages/{name}/settings",
            body(MAX_SETTINGS_BODY).apply(put(settings)),
        )
        .route("/stages/{name}/rollback", post(rollback))
        .route(
            "/stages/{name}/shadow",
            body(MAX_UPLOAD).apply(get(shadow_status).put(shadow_start)),
        )
        .route("/stages/{name}/shadow/promote", post(shadow_promote))
        .route("/stages/{name}/shadow/stop", post(shadow_stop))
        .route(
            "/stages/{name}/state",
            body(MAX_STATE_IMPORT).apply(get(state_page).put(state_import)),
        )
        .route("/stages/{name}/state/key", get(state_key))
        .with_state(state.clone())
        .merge(extra.authorized)
        .route_layer(middleware::from_fn_with_state(state, bound));
    Server::start(&listener(config), guarded, extra.open, stop).await
}

/// A permit from the concurrency bound, once the token has passed and before any body is
/// read.
async fn bound(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.permits.acquire().await else {
        return http::error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    next.run(request).await
}

fn error_response(e: ReloadError) -> Response {
    let status = match &e {
        ReloadError::UnknownStage(_) => StatusCode::NOT_FOUND,
        ReloadError::NotReloadable(_)
        | ReloadError::NoPrevious(_)
        | ReloadError::NoState(_)
        | ReloadError::NoShadow(_) => StatusCode::CONFLICT,
        ReloadError::Plugin(_) | ReloadError::Init { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadError::Setting { .. } | ReloadError::Import { .. } | ReloadError::Sample(_) => {
            StatusCode::BAD_REQUEST
        }
        ReloadError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    http::error(status, e)
}

fn answer<T: serde::Serialize>(result: Result<T, ReloadError>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(e) => error_response(e),
    }
}

async fn list(State(state): State<AppState>) -> Response {
    axum::Json(state.control.stages()).into_response()
}

async fn one(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    answer(state.control.stage_info(&name))
}

async fn upload(State(state): State<AppState>, Path(name): Path<String>, body: Bytes) -> Response {
    // Trigger time: the body has arrived; what follows is the host's part of the latency.
    let trigger = Instant::now();
    answer(
        state
            .control
            .load_plugin(&name, body.to_vec(), Origin::Api, trigger)
            .await,
    )
}

async fn settings(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let trigger = Instant::now();
    let parsed = match parse_settings(&name, &body) {
        Ok(s) => s,
        Err(e) => return error_response(e),
    };
    answer(state.control.set_settings(&name, parsed, trigger).await)
}

async fn rollback(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let trigger = Instant::now();
    answer(state.control.rollback(&name, trigger).await)
}

/// The query of a shadow's start.
#[derive(serde::Deserialize, Default)]
struct ShadowQuery {
    sample: Option<f64>,
}

async fn shadow_start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ShadowQuery>,
    body: Bytes,
) -> Response {
    let sample = q.sample.unwrap_or(1.0);
    answer(
        state
            .control
            .start_shadow(&name, body.to_vec(), sample)
            .await,
    )
}

async fn shadow_status(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    answer(state.control.shadow_status(&name))
}

async fn shadow_promote(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let trigger = Instant::now();
    answer(state.control.promote_shadow(&name, trigger).await)
}

async fn shadow_stop(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    answer(state.control.stop_shadow(&name).await)
}

/// A JSON object of strings, numbers and booleans, as the `settings` of a pipeline file.
fn parse_settings(stage: &str, body: &[u8]) -> Result<Vec<(String, String)>, ReloadError> {
    let bad = |key: &str, message: &str| ReloadError::Setting {
        stage: stage.to_string(),
        key: key.to_string(),
        message: message.to_string(),
    };
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad("(body)", &format!("not JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(bad("(body)", "must be a JSON object of settings"));
    };
    let mut settings = Vec::with_capacity(map.len());
    for (key, value) in map {
        let text = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => return Err(bad(&key, "a setting must be a string, number or boolean")),
        };
        settings.push((key, text));
    }
    settings.sort();
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_strings_numbers_or_booleans() {
        let parsed = parse_settings("s", br#"{"b": true, "a": "x", "n": 3}"#).unwrap();
        assert_eq!(
            parsed,
            vec![
                ("a".to_string(), "x".to_string()),
                ("b".to_string(), "true".to_string()),
                ("n".to_string(), "3".to_string())
            ]
        );
        assert!(parse_settings("s", br#"{"a": [1]}"#).is_err());
        assert!(parse_settings("s", b"[]").is_err());
    }
}

/// The query of a state page or key.
#[derive(serde::Deserialize, Default)]
struct StateQuery {
    prefix: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
    key: Option<String>,
    key_base64: Option<String>,
}

fn bad_request(message: impl std::fmt::Display) -> Response {
    http::error(StatusCode::BAD_REQUEST, message)
}

/// The bytes of a base64 query value, or why not.
fn base64_of(text: &str, what: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("`{what}` is not base64: {e}"))
}

async fn state_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<StateQuery>,
) -> Response {
    use base64::Engine as _;
    let keyed = match state.control.state(&name) {
        Ok(s) => s,
        Err(e) => return error_response(e),
    };
    let after = match q
        .after
        .as_deref()
        .map(|a| base64_of(a, "after"))
        .transpose()
    {
        Ok(a) => a,
        Err(message) => return bad_request(message),
    };
    let prefix = q.prefix.unwrap_or_default().into_bytes();
    let limit = q.limit.unwrap_or(1_000).clamp(1, MAX_STATE_PAGE);
    let page = keyed.listing(&prefix, after.as_deref(), limit);
    let next = (page.more)
        .then(|| page.entries.last())
        .flatten()
        .map(|(k, _)| base64::engine::general_purpose::STANDARD.encode(k));
    axum::Json(StatePage {
        entries: page
            .entries
            .iter()
            .map(|(k, v)| StateEntry::new(k, v))
            .collect(),
        next,
    })
    .into_response()
}

async fn state_key(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<StateQuery>,
) -> Response {
    let keyed = match state.control.state(&name) {
        Ok(s) => s,
        Err(e) => return error_response(e),
    };
    let key = match (q.key, q.key_base64) {
        (Some(k), None) => k.into_bytes(),
        (None, Some(b)) => match base64_of(&b, "key_base64") {
            Ok(k) => k,
            Err(message) => return bad_request(message),
        },
        _ => return bad_request("give one of `key` and `key_base64`"),
    };
    match keyed.committed(&key) {
        Some(value) => axum::Json(StateEntry::new(&key, &value)).into_response(),
        None => http::error(StatusCode::NOT_FOUND, "no such key"),
    }
}

async fn state_import(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let keyed = match state.control.state(&name) {
        Ok(s) => s,
        Err(e) => return error_response(e),
    };
    let refused = |line: usize, message: String| {
        error_response(ReloadError::Import {
            stage: name.clone(),
            line,
            message,
        })
    };
    let mut entries = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = serde_json::from_slice::<StateEntry>(line)
            .map_err(|e| e.to_string())
            .and_then(|entry| entry.bytes());
        match parsed {
            Ok(pair) => entries.push((i + 1, pair)),
            Err(message) => return refused(i + 1, message),
        }
    }
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = entries.iter().map(|(_, p)| p.clone()).collect();
    match keyed.import(&pairs) {
        Ok(()) => axum::Json(Imported {
            imported: pairs.len(),
        })
        .into_response(),
        Err((at, refusal)) => refused(
            entries[at].0,
            format!("{refusal}; the {at} entries before it were written"),
        ),
    }
}
