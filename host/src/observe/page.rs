//! The live page: one HTML file, its style and script inline, compiled into the binary, so it
//! needs no network and no files beside the binary.
//!
//! The script polls `GET /snapshot` and `GET /history` every second (and, when it knows the
//! admin token and shares the admin API's address, `GET /reasons`). It lays the graph out in
//! columns (sources, stages by depth, sinks), draws it as SVG, and writes on each node its
//! rate in and out (from the last two snapshots), queue depth, failures, live version and a
//! sparkline of its rate. Below, hand-drawn SVG charts of the host's history: each node's
//! rates, each stage's call latency p50/p99 and fuel per event, the events in flight against
//! their bound, a timeline of the hot loads, and the last failure reasons. A hidden panel
//! (`id="shadow"`) is kept for a shadow version's comparison.
//!
//! Guest text (failure reasons) and node names are written with `textContent` and
//! `setAttribute`, never as markup. Each node is a `<g class="node">` with `data-node`,
//! `data-kind` and `data-rate` attributes, and each chart an `<svg data-chart=…>` with the
//! number of points it drew in `data-points`, which the browser tests read from the rendered
//! DOM.

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
