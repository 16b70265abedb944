//! The admin API's server: HTTP requests in, commands to the stages' actors (through
//! [`Control`]) and JSON answers ([`crate::control::api`]) out. Connections, TLS and their
//! limits are `listener`'s; this module holds the routes and what each request is held to.
//!
//! Routes (every one but the metrics routes needs `Authorization: Bearer TOKEN`):
//!
//! - `GET /stages`: every stage, its live version (digest, origin, load time, swap latency),
//!   its history, its canary guard and its counters; `GET /stages/{name}`: one stage.
//! - `PUT /stages/{name}/plugin`: the body is a component; it becomes the stage's version.
//! - `PUT /stages/{name}/settings`: the body is a JSON object of settings; the live plugin
//!   runs with them on new instances.
//! - `POST /stages/{name}/rollback`: back to the version live before the current one.
//! - The routes it is handed: `GET /nodes` and `GET /tap/{node}` (the observe module's),
//!   behind the token too; and, when `[metrics]` shares this address, `/metrics`, `/health`,
//!   `/snapshot` and `/`, open to all.
//!
//! The token check runs before a body is read, so a request without the token costs neither
//! the upload nor a change: it gets 401 and nothing else happens. The check compares the
//! SHA-256 of both tokens in constant time, so neither the token's contents nor its length
//! leak through timing. Then the request waits for one of [`MAX_CONCURRENT_REQUESTS`] slots,
//! and its body must arrive within `body_timeout` and the route's cap. Errors are
//! `{"error": "..."}` with 404 (unknown stage), 409 (nothing to roll back to, or a native
//! stage), 422 (the version was refused: not a component, another world, an import the host
//! does not grant, `init` failed), 400 (bad settings), 408 (the body came too slowly) or 413
//! (the body is over the route's cap).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use weir_sandbox::MAX_PLUGIN_SIZE;

use crate::config::Admin;
use crate::control::api::{ErrorBody, Origin};
use crate::control::listener::{self, Serving};
use crate::control::{Control, ReloadError};

/// Largest request body for a plugin upload: the plugin size limit plus slack. Blocks an
/// upload from making the host buffer more than any plugin it would accept.
const MAX_UPLOAD: usize = MAX_PLUGIN_SIZE as usize + 4096;
/// Largest settings body. Settings are a few short strings; this blocks a huge JSON body.
const MAX_SETTINGS_BODY: usize = 64 << 10;
/// Requests handled at once. Each upload may buffer up to [`MAX_UPLOAD`] and compile a
/// plugin; this bounds the memory and CPU that parallel requests can take from the pipeline.
const MAX_CONCURRENT_REQUESTS: usize = 4;

#[derive(Clone)]
struct AppState {
    control: Arc<Control>,
    token_digest: [u8; 32],
    permits: Arc<Semaphore>,
}

/// How a route reads its body: at most `cap` bytes, all within `timeout`.
#[derive(Clone, Copy)]
struct BodyRule {
    cap: usize,
    timeout: Duration,
}

/// Serves the admin API on a bound listener until `stop` is cancelled; returns the server
/// task.
pub(crate) fn serve(
    listener: TcpListener,
    config: &Admin,
    control: Arc<Control>,
    extra: crate::control::ExtraRoutes,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let state = AppState {
        control,
        token_digest: Sha256::digest(config.token.as_bytes()).into(),
        permits: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
    };
    let body = |cap| {
        let rule = BodyRule {
            cap,
            timeout: config.limits.body_timeout,
        };
        middleware::from_fn_with_state(rule, read_body)
    };
    let app = Router::new()
        .route("/stages", get(list))
        .route("/stages/{name}", get(one))
        .route(
            "/stages/{name}/plugin",
            put(upload)
                .layer(DefaultBodyLimit::max(MAX_UPLOAD))
                .layer(body(MAX_UPLOAD)),
        )
        .route(
            "/stages/{name}/settings",
            put(settings)
                .layer(DefaultBodyLimit::max(MAX_SETTINGS_BODY))
                .layer(body(MAX_SETTINGS_BODY)),
        )
        .route("/stages/{name}/rollback", post(rollback))
        .with_state(state.clone())
        .merge(extra.authorized)
        .route_layer(middleware::from_fn_with_state(state, authorize))
        .merge(extra.open);
    let serving = Serving {
        app,
        tls: config
            .tls
            .as_ref()
            .map(|tls| tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.config))),
        limits: config.limits,
        stop,
    };
    tokio::spawn(listener::accept_loop(listener, serving))
}

/// The bearer token check, then a permit from the concurrency bound; before any body is read.
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !token_ok(request.headers(), &state.token_digest) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            error_body("a valid bearer token is required"),
        )
            .into_response();
    }
    let Ok(_permit) = state.permits.acquire().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, error_body("shutting down")).into_response();
    };
    next.run(request).await
}

/// Reads the whole body before the handler runs, within the route's cap and the body
/// timeout. Blocks a body trickled byte by byte from holding a request slot (taken in
/// [`authorize`], before this) for longer than `body_timeout`.
async fn read_body(State(rule): State<BodyRule>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(rule.timeout, axum::body::to_bytes(body, rule.cap)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if over_cap(&e) => {
            let message = format!("the body is over this route's {}-byte cap", rule.cap);
            return (StatusCode::PAYLOAD_TOO_LARGE, error_body(message)).into_response();
        }
        Ok(Err(e)) => {
            let message = format!("the body could not be read: {e}");
            return (StatusCode::BAD_REQUEST, error_body(message)).into_response();
        }
        Err(_) => {
            let message = format!(
                "the body did not arrive within {} (the admin API's `body_timeout`)",
                crate::config::fmt_duration(rule.timeout)
            );
            return (StatusCode::REQUEST_TIMEOUT, error_body(message)).into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Whether a body failed because it went over its cap.
fn over_cap(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

fn token_ok(headers: &HeaderMap, expected: &[u8; 32]) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let given: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
    given.ct_eq(expected).into()
}

fn error_body(message: impl std::fmt::Display) -> axum::Json<ErrorBody> {
    axum::Json(ErrorBody {
        error: message.to_string(),
    })
}

fn error_response(e: ReloadError) -> Response {
    let status = match &e {
        ReloadError::UnknownStage(_) => StatusCode::NOT_FOUND,
        ReloadError::NotReloadable(_) | ReloadError::NoPrevious(_) => StatusCode::CONFLICT,
        ReloadError::Plugin(_) | ReloadError::Init { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadError::Setting { .. } => StatusCode::BAD_REQUEST,
        ReloadError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, error_body(e)).into_response()
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
    fn only_the_exact_bearer_token_passes() {
        let expected: [u8; 32] = Sha256::digest(b"0123456789abcdef").into();
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            token_ok(&headers, &expected)
        };
        assert!(with("Bearer 0123456789abcdef"));
        assert!(!with("Bearer 0123456789abcdeF"));
        assert!(!with("Bearer 0123456789abcde"));
        assert!(!with("Basic 0123456789abcdef"));
        assert!(!token_ok(&HeaderMap::new(), &expected));
    }

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
