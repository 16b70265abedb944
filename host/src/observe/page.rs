//! The live page: one HTML file, its style and script inline, compiled into the binary, so it
//! needs no network and no files beside the binary.
//!
//! The script polls `GET /snapshot` every second, lays the graph out in columns (sources,
//! stages by depth, sinks), draws it as SVG, and writes on each node its rate in and out
//! (from the last two snapshots), queue depth, failures and live version. Each node is a
//! `<g class="node">` with `data-node`, `data-kind` and `data-rate` attributes, which the
//! browser test reads from the rendered DOM.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("page.html");

pub(crate) async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything the page needs is inline or from this server: forbid the rest.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:",
            ),
        ],
        PAGE,
    )
        .into_response()
}
