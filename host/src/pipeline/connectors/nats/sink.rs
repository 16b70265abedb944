//! The NATS sink: every event published to a subject that a JetStream stream captures, with
//! a message id, acknowledged upstream only once the server has stored it.
//!
//! With `partitions = P` the sink publishes each event to `SUBJECT.p`, `p` the partition of
//! its key ([`crate::pipeline::partition`]), and checks at start that a stream captures each
//! of the `P` subjects. An event without a key goes to partition 0: whether an event has a key
//! is up to the stages at run time, so `weir check` cannot refuse it; dead-lettering it would
//! lose data over a routing choice; and a fixed partition keeps its place the same every time
//! it is computed again. The partition depends only on the key, and the message id (below)
//! not on the subject, so an event computed again goes to the same subject under the same id.
//!
//! Each event's message id (`Nats-Msg-Id`) is made of the sink's name, its source event's
//! position (a stream sequence, or a file's identity, round and offset: see
//! [`crate::pipeline::origin`]) and the path it took there. A replayed event (a file read
//! again from its last checkpoint) or a redelivered one (a message whose ack was lost, or
//! whose process died) is published under the same id, and the server drops the copy within
//! its stream's duplicate window. Events of sources without a position (stdin, generate) are
//! published without an id. An event a timer made is published under the sink's name and a
//! digest of the stage and the event, the same whenever the timer fires again (after a
//! restart, in another batch or on a tick).
//!
//! The sink runs on a thread of its own driving an async loop on the runtime. It publishes a
//! batch's events without waiting, keeps up to `buffer` batches whose PubAcks are outstanding
//! (their acknowledgements held), and settles the oldest when the window is full or its input
//! is idle. An event the server did not confirm (a timeout, a lost connection) is published
//! again, under the same id, with backoff, until it is: the batch's acknowledgement is
//! released only then. An event the server can never take (over its payload limit) fails
//! the run: nothing of that batch is acknowledged.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use weir_sandbox::EventRef;

use super::{NatsError, connect};
use crate::config::{Encoding, Sink};
use crate::pipeline::batch::Batch;
use crate::pipeline::connectors::parts::SinkParts;
use crate::pipeline::connectors::seam::{BoxFuture, ConnectorError, RunningSink};
use crate::pipeline::edge::{Receiver, RunContext};
use crate::pipeline::encode;
use crate::pipeline::failure::NodeFailure;
use crate::pipeline::partition::{self, partition_of};
use crate::pipeline::pool;
use crate::pipeline::provenance::Provenance;
use crate::pipeline::report::NodeMetrics;

/// The longest pause between two attempts to publish what the server did not confirm.
/// Blocks a storm of publishes at a server that is down, while one that comes back is used
/// within a second or two.
const MAX_REPUBLISH_BACKOFF: Duration = Duration::from_secs(2);

/// How long a published event's PubAck may take before the event is published again. Blocks
/// a PubAck lost with a connection from holding its batch (and the source's messages) for
/// ever; the JetStream context's own request timeout, as long.
const CONFIRM_WAIT: Duration = Duration::from_secs(5);

/// An event's headers as NATS headers, the batch's version headers after its own.
///
/// An event's header may hold what NATS cannot carry (a name with `:`, a space or a byte
/// that is not ASCII, a value with a line break: the client refuses them with a panic), or
/// be one NATS reads as an order (`Nats-Msg-Id` would make the server drop the sink's other
/// events as duplicates, `Nats-Rollup` purge the stream). So each is percent-encoded where it
/// must be ([`header_name`], [`header_value`]); a plain header is passed as it is.
pub fn headers(event: EventRef<'_>, provenance: &Provenance) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in event.headers() {
        headers.append(header_name(name).as_ref(), header_value(value));
    }
    for h in provenance.headers() {
        headers.append(&*h.name, &*h.value);
    }
    headers
}

/// The prefix of the header names NATS keeps for itself, in any case.
const NATS_PREFIX: &[u8] = b"nats-";

/// An event's header name as a NATS header name: each byte that is not printable ASCII,
/// `:` and `%` percent-encoded (`%3A`), and the first byte of a name NATS keeps for itself
/// (`%4Eats-Msg-Id`). Decoding the `%XX` gives the name back.
fn header_name(name: &[u8]) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_graphic() && b != b':' && b != b'%';
    let ours = name.len() >= NATS_PREFIX.len()
        && name[..NATS_PREFIX.len()].eq_ignore_ascii_case(NATS_PREFIX);
    let escaped = |i: usize, b: u8| !plain(b) || (ours && i == 0);
    let count = (name.iter().enumerate())
        .filter(|&(i, &b)| escaped(i, b))
        .count();
    if count == 0
        && let Ok(text) = std::str::from_utf8(name)
    {
        return Cow::Borrowed(text);
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(name.len() + 2 * count);
    for (i, &b) in name.iter().enumerate() {
        if escaped(i, b) {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push(char::from(b));
        }
    }
    Cow::Owned(out)
}

/// An event's header value as a NATS header value: lossy UTF-8, CR and LF percent-encoded
/// (`%0D`, `%0A`), since a NATS header is one line. Sized before it is written: a value of
/// bytes that are not UTF-8 may triple.
fn header_value(value: &[u8]) -> String {
    const BREAKS: [char; 2] = ['\r', '\n'];
    let replacement = char::REPLACEMENT_CHARACTER.len_utf8();
    let size: usize = (value.utf8_chunks())
        .map(|chunk| {
            let valid = chunk.valid();
            let invalid = if chunk.invalid().is_empty() {
                0
            } else {
                replacement
            };
            valid.len() + 2 * valid.matches(BREAKS).count() + invalid
        })
        .sum();
    let mut out = String::with_capacity(size);
    for chunk in value.utf8_chunks() {
        let mut rest = chunk.valid();
        while let Some(i) = rest.find(BREAKS) {
            out.push_str(&rest[..i]);
            out.push_str(if rest.as_bytes()[i] == b'\r' {
                "%0D"
            } else {
                "%0A"
            });
            rest = &rest[i + 1..];
        }
        out.push_str(rest);
        if !chunk.invalid().is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    out
}

/// A NATS sink, connected, each of its subjects known to be captured by a stream.
pub(crate) struct NatsOutput {
    js: async_nats::jetstream::Context,
    /// The subject, or with `partitions = P` the subject of each partition, by number.
    subjects: Vec<async_nats::Subject>,
}

impl NatsOutput {
    /// Where an event with `key` goes: the subject, or its key's partition's (partition 0
    /// for an event without a key).
    fn subject(&self, key: Option<&[u8]>) -> &async_nats::Subject {
        match self.subjects.as_slice() {
            [one] => one,
            all => {
                let p = key.map_or(0, |k| partition_of(k, all.len() as u32));
                &all[p as usize]
            }
        }
    }
}

/// How many partitions' subjects are checked at once at start: enough to overlap the round
/// trips of the largest partition count, few enough not to flood the server with requests.
const CHECKS_AT_ONCE: usize = 32;

/// Connects and checks that a stream captures `subject`, or each partition's subject.
pub(crate) async fn prepare_sink(
    sink: &Sink,
    url: &str,
    servers: &[async_nats::ServerAddr],
    subject: &str,
    partitions: Option<u32>,
) -> Result<NatsOutput, NatsError> {
    let client = connect(url, servers, &sink.name).await?;
    let js = async_nats::jetstream::new(client);
    let subjects: Vec<String> = match partitions {
        None => vec![subject.to_string()],
        Some(count) => (0..count).map(|p| partition::subject(subject, p)).collect(),
    };
    for chunk in subjects.chunks(CHECKS_AT_ONCE) {
        let checks = chunk.iter().map(|subject| captured(&js, url, subject));
        for checked in futures::future::join_all(checks).await {
            checked?;
        }
    }
    Ok(NatsOutput {
        js,
        subjects: subjects
            .into_iter()
            .map(async_nats::Subject::from)
            .collect(),
    })
}

/// Checks that a stream captures `subject`.
async fn captured(
    js: &async_nats::jetstream::Context,
    url: &str,
    subject: &str,
) -> Result<(), NatsError> {
    js.stream_by_subject(subject)
        .await
        .map(drop)
        .map_err(|e| NatsError::Subject {
            url: url.to_string(),
            subject: subject.to_string(),
            message: e.to_string(),
        })
}

/// Starts the sink's thread; it returns why it failed, if it did.
pub(crate) fn spawn_sink(
    sink: &Sink,
    output: NatsOutput,
    rx: Receiver,
    metrics: Arc<NodeMetrics>,
    ctx: Arc<RunContext>,
    buffer: usize,
) -> std::io::Result<RunningSink> {
    let runtime = tokio::runtime::Handle::current();
    let publisher = Publisher {
        name: Arc::from(sink.name.as_str()),
        encoding: sink.encoding,
        output,
        metrics,
        ctx,
        buffer,
        window: VecDeque::with_capacity(buffer + 1),
        failure: None,
        duplicates: 0,
    };
    std::thread::Builder::new()
        .name(format!("weir-sink-{}", sink.name))
        .spawn(move || runtime.block_on(publisher.run(rx)))
}

/// A batch whose PubAcks are outstanding: its acknowledgement is held until they all came.
struct Unconfirmed {
    batch: Batch,
    acks: Vec<Option<PublishAckFuture>>,
    /// When its events were (last) published: their PubAcks are due by [`CONFIRM_WAIT`] after.
    sent: tokio::time::Instant,
}

struct Publisher {
    name: Arc<str>,
    encoding: Encoding,
    output: NatsOutput,
    metrics: Arc<NodeMetrics>,
    ctx: Arc<RunContext>,
    buffer: usize,
    window: VecDeque<Unconfirmed>,
    failure: Option<NodeFailure>,
    /// Events the server had already stored under the same id (replayed or redelivered).
    duplicates: u64,
}

impl Publisher {
    async fn run(mut self, mut rx: Receiver) -> Result<(), NodeFailure> {
        while let Some(batch) = rx.recv().await {
            NodeMetrics::add(&self.metrics.events_in, batch.len() as u64);
            if self.failure.is_some() {
                // Never published, so never acknowledged.
                batch.ack.forget();
                continue;
            }
            match self.publish(batch).await {
                Ok(unconfirmed) => self.window.push_back(unconfirmed),
                Err(failure) => self.fail(failure),
            }
            while self.window.len() >= self.buffer || (rx.is_empty() && !self.window.is_empty()) {
                let oldest = self.window.pop_front().expect("not empty");
                self.confirm(oldest).await;
            }
        }
        while let Some(oldest) = self.window.pop_front() {
            self.confirm(oldest).await;
        }
        if self.duplicates > 0 {
            tracing::info!(sink = %self.name, duplicates = self.duplicates,
                "NATS: the server dropped events it already held under the same message id");
        }
        match self.failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    fn fail(&mut self, failure: NodeFailure) {
        for unconfirmed in self.window.drain(..) {
            unconfirmed.batch.ack.forget();
        }
        self.ctx.fail(failure.clone());
        self.failure = Some(failure);
    }

    /// Publishes every event of a batch, without waiting for the server.
    async fn publish(&self, batch: Batch) -> Result<Unconfirmed, NodeFailure> {
        let mut acks = Vec::with_capacity(batch.len());
        for i in 0..batch.len() {
            match self.publish_one(&batch, i).await {
                Ok(ack) => acks.push(Some(ack)),
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    batch.ack.forget();
                    return Err(NodeFailure::Publish {
                        node: Arc::clone(&self.name),
                        message: e.to_string(),
                    });
                }
                // Not sent (the connection is down): published again when confirmed.
                Err(_) => acks.push(None),
            }
        }
        Ok(Unconfirmed {
            batch,
            acks,
            sent: tokio::time::Instant::now(),
        })
    }

    async fn publish_one(
        &self,
        batch: &Batch,
        i: usize,
    ) -> Result<PublishAckFuture, async_nats::jetstream::context::PublishError> {
        let event = batch.events.get(i);
        let payload = match self.encoding {
            Encoding::Text => Bytes::copy_from_slice(event.value()),
            Encoding::Json => {
                let mut out = Vec::with_capacity(event.size() + 64);
                encode::event(&mut out, event, &batch.provenance)
                    .expect("writing to a Vec cannot fail");
                Bytes::from(out)
            }
        };
        let headers = headers(event, &batch.provenance);
        let mut message = PublishMessage::build().payload(payload).headers(headers);
        if let Some(origin) = &batch.origin
            && origin.index[i] == crate::pipeline::origin::TIMER
        {
            // What a timer made is the same whatever batch or tick fired it: its id names
            // only the stage and the event (the path's digest).
            message = message.message_id(format!("{}/timer/{:016x}", self.name, origin.path[i]));
        } else if let Some(origin) = &batch.origin {
            message = message.message_id(format!(
                "{}/{}/{}/{:016x}",
                self.name,
                origin.source.source,
                origin.source.position(origin.index[i]),
                origin.path[i]
            ));
        }
        let subject = self.output.subject(event.key()).clone();
        self.output.js.send_publish(subject, message).await
    }

    /// Waits for every PubAck of a batch, publishing again (same ids) what was not
    /// confirmed, then releases the batch's acknowledgement.
    async fn confirm(&mut self, mut unconfirmed: Unconfirmed) {
        let mut attempt = 0u32;
        // The events still to be confirmed: all of them at first, then those published again.
        let mut waiting: Vec<usize> = (0..unconfirmed.acks.len()).collect();
        loop {
            // All at once, against one deadline from the publish: a PubAck lost with a
            // connection costs the batch one wait, not one wait per event.
            let deadline = unconfirmed.sent + CONFIRM_WAIT;
            let waits = waiting.iter().map(|&i| {
                let future = unconfirmed.acks[i].take();
                async move {
                    let Some(future) = future else {
                        return Err("not sent".to_string());
                    };
                    match tokio::time::timeout_at(deadline, future.into_future()).await {
                        Ok(confirmed) => confirmed.map_err(|e| e.to_string()),
                        Err(_) => Err("no PubAck in time".to_string()),
                    }
                }
            });
            let results = futures::future::join_all(waits).await;
            let mut missing = Vec::new();
            for (&i, confirmed) in waiting.iter().zip(results) {
                match confirmed {
                    Ok(ack) if ack.duplicate => self.duplicates += 1,
                    Ok(_) => {}
                    Err(e) => missing.push((i, e)),
                }
            }
            if missing.is_empty() {
                break;
            }
            attempt += 1;
            tracing::warn!(sink = %self.name, events = missing.len(), attempt,
                "NATS: not confirmed ({}); publishing again", missing[0].1);
            tokio::time::sleep(
                Duration::from_millis(100)
                    .saturating_mul(1 << attempt.min(8))
                    .min(MAX_REPUBLISH_BACKOFF),
            )
            .await;
            unconfirmed.sent = tokio::time::Instant::now();
            waiting = missing.iter().map(|&(i, _)| i).collect();
            for (i, _) in missing {
                unconfirmed.acks[i] = match self.publish_one(&unconfirmed.batch, i).await {
                    Ok(ack) => Some(ack),
                    Err(e) => {
                        tracing::debug!(sink = %self.name, "NATS: not published: {e}");
                        None
                    }
                };
            }
        }
        let Unconfirmed { batch, .. } = unconfirmed;
        NodeMetrics::add(&self.metrics.events_out, batch.len() as u64);
        NodeMetrics::add(&self.metrics.bytes_out, batch.events.value_bytes());
        let Batch { events, ack, .. } = batch;
        pool::recycle(events);
        drop(ack);
    }
}

/// `type = "nats"` as a sink: connected by [`Sink::connect`](crate::pipeline::connectors::seam::Sink::connect).
pub(crate) struct JetStreamSink {
    sink: Sink,
    url: String,
    servers: Vec<async_nats::ServerAddr>,
    subject: String,
    partitions: Option<u32>,
    output: Option<NatsOutput>,
}

impl JetStreamSink {
    pub(crate) fn new(sink: &Sink) -> JetStreamSink {
        let crate::config::SinkKind::Nats {
            url,
            servers,
            subject,
            partitions,
        } = &sink.kind
        else {
            unreachable!("the registry makes a NATS sink of a NATS sink's configuration")
        };
        JetStreamSink {
            sink: sink.clone(),
            url: url.clone(),
            servers: servers.clone(),
            subject: subject.clone(),
            partitions: *partitions,
            output: None,
        }
    }
}

impl crate::pipeline::connectors::seam::Sink for JetStreamSink {
    fn needs_origins(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        match self.partitions {
            None => format!("NATS subject `{}` at {}", self.subject, self.url),
            Some(count) => format!(
                "NATS subjects `{}` to `{}` at {}: {count} partitions by the hash of each \
                 event's key (an event without a key goes to partition 0)",
                partition::subject(&self.subject, 0),
                partition::subject(&self.subject, count - 1),
                self.url
            ),
        }
    }

    fn connect(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async move {
            let output = prepare_sink(
                &self.sink,
                &self.url,
                &self.servers,
                &self.subject,
                self.partitions,
            );
            self.output = Some(
                output
                    .await
                    .map_err(|e| ConnectorError::Connect(e.into()))?,
            );
            Ok(())
        })
    }

    fn start(self: Box<Self>, parts: SinkParts) -> Result<RunningSink, ConnectorError> {
        let JetStreamSink { sink, output, .. } = *self;
        let output = output.ok_or_else(super::source::not_connected)?;
        let SinkParts {
            input,
            metrics,
            ctx,
            buffer,
        } = parts;
        spawn_sink(&sink, output, input, metrics, ctx, buffer)
            .map_err(ConnectorError::io("cannot start its thread"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sandbox::Events;

    fn names(name: &[u8], value: &[u8]) -> Vec<(String, String)> {
        let mut batch = Events::new();
        batch.push_parts(None, b"v", [(name, value)], None);
        let map = headers(batch.get(0), &Provenance::default());
        (map.iter())
            .flat_map(|(n, values)| {
                let n: &str = n.as_ref();
                values
                    .iter()
                    .map(|v| (n.to_string(), v.as_str().to_string()))
            })
            .collect()
    }

    #[test]
    fn values_that_are_not_utf8_are_lossy_in_one_allocation() {
        let value = header_value(b"a\xff\r\n\xc3");
        assert_eq!(value, "a\u{fffd}%0D%0A\u{fffd}");
        assert_eq!(value.capacity(), value.len());
    }

    #[test]
    fn plain_headers_pass_as_they_are() {
        assert_eq!(
            names(b"trace-id", b"a b%c"),
            [("trace-id".into(), "a b%c".into())]
        );
    }

    /// Found by `tests/guest_output.rs`: a header named `a:b` panicked in the NATS client,
    /// and so did a name with a space or a byte not ASCII, and a value with a line break.
    #[test]
    fn what_nats_cannot_carry_is_percent_encoded() {
        assert_eq!(names(b"a:b", b""), [("a%3Ab".into(), "".into())]);
        assert_eq!(
            names("two wörds%".as_bytes(), b"line\r\nbreak"),
            [("two%20w%C3%B6rds%25".into(), "line%0D%0Abreak".into())]
        );
    }

    #[test]
    fn a_name_nats_keeps_for_itself_is_not_passed_on() {
        assert_eq!(
            names(b"Nats-Msg-Id", b"1"),
            [("%4Eats-Msg-Id".into(), "1".into())]
        );
        assert_eq!(
            names(b"nats-rollup", b"all"),
            [("%6Eats-rollup".into(), "all".into())]
        );
        assert_eq!(names(b"Nats", b"x"), [("Nats".into(), "x".into())]);
    }
}
