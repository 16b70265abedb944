//! One request's way into the pipeline, and its answer.
//!
//! The handler splits the body (`split`), then, in a task of its own (so that a client that
//! hangs up cannot leave a batch half sent), takes a read lock on the source's
//! [`SourceParts`]: while any request holds it, the source has not stopped, and the graph
//! cannot drain past what it sends. The first batch goes in only if every first channel has
//! a slot now ([`Outputs::try_reserve`](crate::pipeline::edge::Outputs::try_reserve)): a full
//! one answers 429 with `Retry-After`, and nothing of the request was taken. Once the first
//! batch is in, the request is taken whole: its other batches wait for room as any source's
//! batches do. Nothing is buffered beyond the pipeline's own channels: a request holds at
//! most its body (`max_body`) and one batch, and requests are bounded by `max_connections`.
//!
//! Every batch of a request is registered with the request's [`Waiter`], a [`Ledger`] that
//! counts the batches done (written by every sink, or dead-lettered). When the last is done
//! the handler answers 200 with the events taken. When the run ends first (it stopped, or a
//! sink failed and some acknowledgement will never come), the source's finish wakes it and
//! it answers 503: the events may or may not have been written, and a client that sends them
//! again gets them at least once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::{Notify, OwnedRwLockReadGuard, RwLock};
use tokio_util::sync::CancellationToken;
use weir_sandbox::Events;

use super::split::{Fields, TooLong, split};
use crate::http;
use crate::pipeline::ack::Ledger;
use crate::pipeline::connectors::parts::SourceParts;
use crate::pipeline::edge::NoRoom;

/// What a client that got 429 is told to wait before it tries again. The first channel
/// drains at the pipeline's pace, typically many batches a second; a second keeps a client
/// that obeys from hammering a pipeline that is full, without making it wait long.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What every request of one source shares.
pub(super) struct Intake {
    pub name: String,
    pub batch_size: usize,
    pub max_line: usize,
    /// Request headers copied onto each event, as the file names them.
    pub headers: Vec<String>,
    pub key_header: Option<String>,
    /// The source's outputs and the rest of its parts, until it stops: then `None`, taken
    /// once no request is sending.
    pub parts: Arc<RwLock<Option<SourceParts>>>,
    /// Cancelled once the run has ended: every acknowledgement is released or forgotten.
    pub ended: CancellationToken,
}

/// The answer to a request whose events were all acknowledged.
#[derive(Serialize)]
struct Accepted {
    accepted: u64,
}

/// `POST` at the source's path.
pub(super) async fn accept(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = fields(&intake, &headers);
    let batches = match split(&body, intake.batch_size, intake.max_line, &fields) {
        Ok(batches) => batches,
        Err(TooLong { line, len }) => {
            let message = format!(
                "line {line} is {len} bytes, over this source's `max_line` of {} bytes; \
                 nothing of this request was taken",
                intake.max_line
            );
            return http::error(StatusCode::PAYLOAD_TOO_LARGE, message);
        }
    };
    drop(body);
    let events: u64 = batches.iter().map(|b| b.len() as u64).sum();
    if events == 0 {
        return axum::Json(Accepted { accepted: 0 }).into_response();
    }
    let waiter = Arc::new(Waiter::new(batches.len()));
    take_and_answer(intake, batches, waiter, events).await
}

/// Sends the batches in, then waits for their acknowledgements and answers.
async fn take_and_answer(
    intake: Arc<Intake>,
    batches: Vec<Events>,
    waiter: Arc<Waiter>,
    events: u64,
) -> Response {
    let ledger = Arc::clone(&waiter) as Arc<dyn Ledger>;
    let parts = Arc::clone(&intake.parts);
    // A task of its own: the batches go in whole even if the client hangs up meanwhile.
    let taken = tokio::spawn(async move { take(parts.read_owned().await, batches, ledger).await });
    let taken = taken.await;
    match taken {
        Ok(Ok(())) => {}
        Ok(Err(refusal)) => return refusal.answer(&intake.name),
        Err(_) => return Refusal::Stopping.answer(&intake.name),
    }
    tokio::select! {
        biased;
        () = waiter.done() => {}
        () = intake.ended.cancelled() => {}
    }
    if waiter.is_done() {
        return axum::Json(Accepted { accepted: events }).into_response();
    }
    let message = format!(
        "the run ended before the {events} events of this request were all written: they \
         may or may not have been; send them again"
    );
    http::error(StatusCode::SERVICE_UNAVAILABLE, message)
}

/// Why nothing of a request was taken.
enum Refusal {
    Full,
    Stopping,
}

impl Refusal {
    fn answer(&self, name: &str) -> Response {
        match self {
            Refusal::Full => {
                let mut answer = http::error(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "source `{name}`: the pipeline is full; nothing of this request was \
                         taken: send it again after the time `Retry-After` gives"
                    ),
                );
                let seconds = HeaderValue::from(RETRY_AFTER.as_secs());
                answer.headers_mut().insert(header::RETRY_AFTER, seconds);
                answer
            }
            Refusal::Stopping => http::error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "source `{name}`: the pipeline is stopping; nothing of this request was taken"
                ),
            ),
        }
    }
}

/// Emits the batches and sends them on: the first only if every first channel has room now.
async fn take(
    parts: OwnedRwLockReadGuard<Option<SourceParts>>,
    batches: Vec<Events>,
    ledger: Arc<dyn Ledger>,
) -> Result<(), Refusal> {
    let Some(parts) = parts.as_ref() else {
        return Err(Refusal::Stopping);
    };
    if parts.ctx.stop.is_cancelled() {
        return Err(Refusal::Stopping);
    }
    let mut batches = batches.into_iter();
    let Some(first) = batches.next() else {
        return Ok(());
    };
    let slots = parts.outputs.try_reserve().map_err(|no| match no {
        NoRoom::Full => Refusal::Full,
        NoRoom::Closed => Refusal::Stopping,
    })?;
    slots.send(parts.emit_acked(first, Some((Arc::clone(&ledger), 0)), None));
    for (seq, events) in (1..).zip(batches) {
        let batch = parts.emit_acked(events, Some((Arc::clone(&ledger), seq)), None);
        parts.outputs.send(batch).await;
    }
    Ok(())
}

/// The key, headers and arrival time every event of a request carries.
fn fields<'a>(intake: &'a Intake, headers: &'a HeaderMap) -> Fields<'a> {
    let key = (intake.key_header.as_ref())
        .and_then(|name| headers.get(name.as_str()))
        .map(HeaderValue::as_bytes);
    let copied = intake.headers.iter().flat_map(|name| {
        (headers.get_all(name.as_str()).iter())
            .map(move |value| (name.as_bytes(), value.as_bytes()))
    });
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok();
    Fields {
        key,
        headers: copied.collect(),
        timestamp: now.map(|t| t.as_millis() as u64),
    }
}

/// One request's ledger: how many of its batches are not yet done.
struct Waiter {
    left: AtomicUsize,
    notify: Notify,
}

impl Waiter {
    fn new(batches: usize) -> Waiter {
        Waiter {
            left: AtomicUsize::new(batches),
            notify: Notify::new(),
        }
    }

    fn is_done(&self) -> bool {
        self.left.load(Ordering::Acquire) == 0
    }

    /// Returns once every batch is done.
    async fn done(&self) {
        while !self.is_done() {
            // A wake-up before this wait is kept as a permit: none is lost.
            self.notify.notified().await;
        }
    }
}

impl Ledger for Waiter {
    fn done(&self, _seq: u64) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.notify.notify_one();
        }
    }
}
