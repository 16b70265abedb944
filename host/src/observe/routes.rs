//! The observe module's HTTP routes.
//!
//! On the metrics listener (`[metrics] listen`), read-only and without a token, as Prometheus
//! scrapes:
//!
//! - `GET /metrics`: the Prometheus text exposition (version 0.0.4).
//! - `GET /health`: 200 and `{"state": "running"}` or `"draining"` while the pipeline runs or
//!   drains; 503 and `"stopped"` once it has ended (while `[metrics] linger` keeps answering).
//! - `GET /snapshot`: the [`Snapshot`](super::api::Snapshot) as JSON, which the page polls.
//! - `GET /history`: the [`History`](super::api::History) of the last five minutes, with the
//!   hot-load changes and the last failure reasons (without their messages, which may quote
//!   events), which the page polls for its charts. Serving these routes starts its sampler.
//! - `GET /`: the live page.
//!
//! On the admin API, behind its bearer token (the admin API serves them; its listener checks
//! the token):
//!
//! - `GET /nodes`: the same snapshot, for `weir top`.
//! - `GET /reasons`: the nodes' last failure reasons with their messages (guest text that may
//!   quote events, hence behind the token), which the live page shows when given the token.
//! - `GET /tap/{node}?limit=N&sample=RATE&dead_letters=true`: the events leaving a node (or
//!   its dead letters) as a stream of JSON lines, for `weir tap`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::Observer;
use crate::http;
use crate::pipeline::tap::{TapSpec, TapWhat};

/// The routes of the metrics listener. The page they serve charts the last minutes, so its
/// sampler starts with them (once, however many times they are built).
pub fn metrics_routes(observer: &Arc<Observer>) -> Router {
    super::history::start(observer);
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/snapshot", get(snapshot))
        .route("/history", get(history))
        .route("/", get(super::page::page))
        .with_state(Arc::clone(observer))
}

/// The routes the admin API serves behind its token.
pub fn admin_routes(observer: &Arc<Observer>) -> Router {
    Router::new()
        .route("/nodes", get(snapshot))
        .route("/reasons", get(reasons))
        .route("/tap/{node}", get(tap))
        .with_state(Arc::clone(observer))
}

async fn metrics(State(observer): State<Arc<Observer>>) -> Response {
    match super::prometheus::exposition(&observer) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn health(State(observer): State<Arc<Observer>>) -> Response {
    let state = observer.state();
    let status = if state == "stopped" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(serde_json::json!({ "state": state }))).into_response()
}

async fn snapshot(State(observer): State<Arc<Observer>>) -> Response {
    axum::Json(observer.snapshot()).into_response()
}

async fn history(State(observer): State<Arc<Observer>>) -> Response {
    axum::Json(super::history::history(&observer)).into_response()
}

async fn reasons(State(observer): State<Arc<Observer>>) -> Response {
    axum::Json(super::history::reasons(&observer, true)).into_response()
}

/// The query of `GET /tap/{node}`.
#[derive(Debug, Deserialize)]
struct TapQuery {
    limit: Option<u64>,
    sample: Option<f64>,
    #[serde(default)]
    dead_letters: bool,
}

async fn tap(
    State(observer): State<Arc<Observer>>,
    Path(node): Path<String>,
    Query(query): Query<TapQuery>,
) -> Response {
    let Some(metrics) = observer.node(&node) else {
        return http::error(
            StatusCode::NOT_FOUND,
            format!("no source, stage or sink is named `{node}`"),
        );
    };
    let sample = query.sample.unwrap_or(1.0);
    if !(sample > 0.0 && sample <= 1.0) {
        return http::error(
            StatusCode::BAD_REQUEST,
            format!("`sample` must be above 0 and at most 1, not {sample}"),
        );
    }
    let spec = TapSpec {
        what: if query.dead_letters {
            TapWhat::DeadLetters
        } else {
            TapWhat::Events
        },
        limit: query.limit,
        sample,
    };
    match metrics.tap.open(spec) {
        Ok(reader) => super::tap::stream(reader, spec, observer.ended.clone()),
        Err(e) => http::error(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
    }
}
