//! A route's body, read whole before its handler runs, within the route's cap and deadline.
//!
//! The body is read here rather than by the handler's extractor so that its deadline holds:
//! a body trickled byte by byte is cut at the deadline (408) instead of holding a request
//! slot, taken by an earlier layer, for as long as the client likes. A body over the cap gets
//! 413 as soon as the cap is passed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::MethodRouter;

/// How a route reads its body: at most `cap` bytes, all within `timeout`.
#[derive(Clone)]
pub struct BodyRule {
    pub cap: usize,
    pub timeout: Duration,
    /// How a 408 answer names the deadline, such as ``1m (the admin API's `body_timeout`)``.
    pub said: Arc<str>,
}

impl BodyRule {
    /// `route`, its body read under this rule (and its extractors held to the same cap).
    pub fn apply<S>(self, route: MethodRouter<S>) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        route
            .layer(DefaultBodyLimit::max(self.cap))
            .layer(middleware::from_fn_with_state(self, read_body))
    }
}

/// Reads the whole body before the handler runs, within the route's cap and its timeout.
/// Blocks a body trickled byte by byte from holding a request slot (taken by a layer before
/// this one) for longer than the timeout.
pub async fn read_body(State(rule): State<BodyRule>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(rule.timeout, axum::body::to_bytes(body, rule.cap)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if over_cap(&e) => {
            let message = format!("the body is over this route's {}-byte cap", rule.cap);
            return super::error(StatusCode::PAYLOAD_TOO_LARGE, message);
        }
        Ok(Err(e)) => {
            let message = format!("the body could not be read: {e}");
            return super::error(StatusCode::BAD_REQUEST, message);
        }
        Err(_) => {
            let message = format!("the body did not arrive within {}", rule.said);
            return super::error(StatusCode::REQUEST_TIMEOUT, message);
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
