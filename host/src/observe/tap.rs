//! A tap's HTTP stream: the JSON lines a node's tap hook hands over, as they come.
//!
//! Between the events come status lines, `{"weir_tap":{"sent":N,"lost":L,"end":null}}`, each
//! time the tap has lost more samples (its reader was behind: a tap never makes the pipeline
//! wait), and a last one whose `end` says why the stream ended: `limit` (as many events as
//! asked), `stopped` (the run ended) or `closed`. When nothing else goes out within a
//! [`HEARTBEAT`], a blank line does: the admin API closes connections on which no byte moves
//! for its idle timeout (100 ms at the least), and a tap on a quiet node must not look idle.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use crate::pipeline::tap::{TapReader, TapSpec};

/// How often a quiet tap sends a blank line (or a status line, when it lost samples): under
/// the admin API's shortest idle timeout (100 ms is its least, 5 s its default), so that a
/// tap is never cut for idling; about 11 bytes a second.
const HEARTBEAT: Duration = Duration::from_millis(90);

struct Streaming {
    reader: TapReader,
    limit: Option<u64>,
    ended: CancellationToken,
    tick: tokio::time::Interval,
    /// Lost samples already reported.
    reported: u64,
    done: bool,
}

impl Streaming {
    fn status(&self, end: Option<&str>) -> Bytes {
        let line = serde_json::json!({
            "weir_tap": {
                "sent": self.reader.tap.sent(),
                "lost": self.reader.tap.lost(),
                "end": end,
            }
        });
        Bytes::from(format!("{line}\n"))
    }

    fn limit_reached(&self) -> bool {
        self.limit.is_some_and(|l| self.reader.tap.sent() >= l) && self.reader.rx.is_empty()
    }

    /// The next piece of the stream; `None` once the last status line went out.
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        if self.limit_reached() {
            return Some(self.finish("limit"));
        }
        tokio::select! {
            biased;
            chunk = self.reader.rx.recv() => Some(match chunk {
                Some(chunk) => Bytes::from(chunk),
                None => self.finish("closed"),
            }),
            () = self.ended.cancelled() => Some(self.finish("stopped")),
            _ = self.tick.tick() => {
                let lost = self.reader.tap.lost();
                if lost > self.reported {
                    self.reported = lost;
                    Some(self.status(None))
                } else {
                    Some(Bytes::from_static(b"\n"))
                }
            }
        }
    }

    fn finish(&mut self, why: &str) -> Bytes {
        self.done = true;
        self.status(Some(why))
    }
}

/// The response of `GET /tap/{node}`: JSON lines until the tap ends.
pub(crate) fn stream(reader: TapReader, spec: TapSpec, ended: CancellationToken) -> Response {
    let state = Streaming {
        reader,
        limit: spec.limit,
        ended,
        tick: tokio::time::interval(HEARTBEAT),
        reported: 0,
        done: false,
    };
    let body = futures::stream::unfold(state, |mut state| async move {
        let piece = state.next().await?;
        Some((Ok::<_, Infallible>(piece), state))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response()
}
