//! The NATS source: a durable pull consumer of a JetStream stream, read as batches.
//!
//! [`prepare_source`] connects, finds the stream and binds the durable consumer (created with
//! the `subject` filter, explicit acks, `ack_wait` and `max_ack_pending` if it does not
//! exist). The source task pulls messages continuously, `batch` at a time, and groups them
//! into batches by the source's batch size and linger, as the stdin source does. Each
//! message becomes an event: the payload as value, the NATS headers as headers, the time the
//! stream stored it as timestamp (milliseconds), the header `key_header` names as key. Each
//! batch is registered with the [`Acks`] ledger and carries its messages' stream sequences as
//! its origin, so the ledger can `Term` dead-lettered messages and a NATS sink can name what
//! it publishes.
//!
//! Backpressure: while the first channel is full the task stops taking messages; the client
//! holds at most one pull's worth, and the server stops delivering at `max_ack_pending`
//! unacked messages. When the run stops, the task sends on what it has taken and leaves the
//! rest unacked on the server, to be redelivered.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_sandbox::Events;

use super::ledger::{Acks, Settler};
use super::{NatsError, connect};
use crate::config::{NatsSource, Source};
use crate::pipeline::ack::Ledger;
use crate::pipeline::connectors::parts::SourceParts;
use crate::pipeline::connectors::seam::{BoxFuture, ConnectorError, RunningSource};
use crate::pipeline::origin::{Place, SourceBatch};

/// How long one pull request waits on the server for messages before it is renewed. Idle
/// heartbeats at a tenth of it tell the client the connection is alive.
const PULL_EXPIRES: Duration = Duration::from_secs(10);

/// The longest pause before a pull is set up again after it failed (the consumer deleted, the
/// server gone). Blocks a busy loop against a server that refuses.
const MAX_PULL_BACKOFF: Duration = Duration::from_secs(2);

/// A NATS source, connected and bound to its consumer.
pub(crate) struct NatsInput {
    client: async_nats::Client,
    consumer: PullConsumer,
    config: NatsSource,
}

/// Connects to the server and binds the durable consumer, creating it if need be.
pub(crate) async fn prepare_source(
    source: &Source,
    config: &NatsSource,
) -> Result<NatsInput, NatsError> {
    let client = connect(&config.url, &config.servers, &source.name).await?;
    let js = async_nats::jetstream::new(client.clone());
    let stream = js
        .get_stream(&config.stream)
        .await
        .map_err(|e| NatsError::Stream {
            url: config.url.clone(),
            stream: config.stream.clone(),
            message: e.to_string(),
        })?;
    let wanted = pull::Config {
        durable_name: Some(config.consumer.clone()),
        filter_subject: config.subject.clone().unwrap_or_default(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: config.ack_wait,
        max_ack_pending: config.max_ack_pending as i64,
        ..Default::default()
    };
    let consumer = stream
        .get_or_create_consumer(&config.consumer, wanted)
        .await
        .map_err(|e| NatsError::Consumer {
            url: config.url.clone(),
            stream: config.stream.clone(),
            consumer: config.consumer.clone(),
            message: e.to_string(),
        })?;
    Ok(NatsInput {
        client,
        consumer,
        config: config.clone(),
    })
}

/// What ends a NATS source's settler once the run is drained.
pub(crate) struct Finisher {
    finish: CancellationToken,
    settler: tokio::task::JoinHandle<()>,
}

impl Finisher {
    /// Every acknowledgement is released or forgotten: sends the last acks and flushes.
    pub(crate) async fn finish(self) {
        self.finish.cancel();
        let _ = self.settler.await;
    }
}

/// Starts the source task (it returns whether the run stopped it) and its settler.
pub(crate) fn spawn_source(
    source: &Source,
    input: NatsInput,
    parts: SourceParts,
) -> (tokio::task::JoinHandle<bool>, Finisher) {
    let (acks, settler): (Arc<Acks>, Settler) = Acks::new();
    let finish = CancellationToken::new();
    let settler =
        tokio::spawn(settler.run(input.client.clone(), input.config.ack_wait, finish.clone()));
    let reader = Reader {
        name: Arc::from(source.name.as_str()),
        stream: Arc::from(input.config.stream.as_str()),
        batch_size: source.batch_size,
        linger: source.linger,
        acks,
        parts,
        seq: 0,
        pending: Pending::default(),
    };
    let task = tokio::spawn(reader.run(input));
    (task, Finisher { finish, settler })
}

/// Messages taken, not yet sent on as a batch.
#[derive(Default)]
struct Pending {
    events: Events,
    replies: Vec<async_nats::Subject>,
    sequences: Vec<u64>,
}

struct Reader {
    name: Arc<str>,
    stream: Arc<str>,
    batch_size: usize,
    linger: Duration,
    acks: Arc<Acks>,
    parts: SourceParts,
    /// The next batch's number in the ledger.
    seq: u64,
    pending: Pending,
}

type Messages = async_nats::jetstream::consumer::pull::Stream;

impl Reader {
    /// Takes messages until the run stops; returns that it was stopped.
    async fn run(mut self, input: NatsInput) -> bool {
        let stop = self.parts.ctx.stop.clone();
        let mut messages: Option<Messages> = None;
        let mut failures = 0u32;
        let mut deadline: Option<Instant> = None;
        loop {
            let Some(stream) = messages.as_mut() else {
                if failures > 0 && !pause(failures, &stop).await {
                    break;
                }
                match pull(&input).await {
                    Ok(stream) => messages = Some(stream),
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(source = %self.name, "NATS: cannot pull from the consumer ({e}); trying again");
                    }
                }
                continue;
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    deadline = None;
                    self.send().await;
                }
                next = stream.next() => match next {
                    Some(Ok(message)) => {
                        failures = 0;
                        self.take(message, &input.config);
                        if self.pending.replies.len() >= self.batch_size {
                            deadline = None;
                            self.send().await;
                        } else if deadline.is_none() {
                            deadline = Some(Instant::now() + self.linger);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(source = %self.name, "NATS: {e}");
                        if ends_the_pull(&e) {
                            messages = None;
                            failures += 1;
                        }
                    }
                    None => {
                        messages = None;
                        failures += 1;
                    }
                },
            }
        }
        // What was taken is accepted: it goes on even though the run is stopping. What the
        // client holds beyond it stays unacked, and the server redelivers it.
        drop(messages);
        self.send().await;
        true
    }

    /// Adds a message to the pending batch.
    fn take(&mut self, message: async_nats::jetstream::Message, config: &NatsSource) {
        let (sequence, timestamp) = match message.info() {
            Ok(info) => (
                info.stream_sequence,
                Some((info.published.unix_timestamp_nanos() / 1_000_000).max(0) as u64),
            ),
            Err(_) => (0, None),
        };
        let headers = message.headers.as_ref();
        let key = config
            .key_header
            .as_ref()
            .and_then(|name| headers?.get(name.as_str()))
            .map(|v| v.as_str().as_bytes());
        let pairs = headers.into_iter().flat_map(|h| {
            h.iter().flat_map(|(name, values)| {
                let name: &str = name.as_ref();
                values
                    .iter()
                    .map(move |v| (name.as_bytes(), v.as_str().as_bytes()))
            })
        });
        self.pending
            .events
            .push_parts(key, &message.payload, pairs, timestamp);
        self.pending.sequences.push(sequence);
        self.pending
            .replies
            .push(message.reply.clone().unwrap_or_else(|| "".into()));
    }

    /// Registers the pending batch with the ledger and sends it on.
    async fn send(&mut self) {
        if self.pending.replies.is_empty() {
            return;
        }
        let Pending {
            events,
            replies,
            sequences,
        } = std::mem::take(&mut self.pending);
        let seq = self.seq;
        self.seq += 1;
        self.acks.emitted(seq, replies);
        let source = SourceBatch {
            source: Arc::clone(&self.name),
            place: Place::Stream {
                stream: Arc::clone(&self.stream),
                sequences,
            },
        };
        let ledger = Some((Arc::clone(&self.acks) as Arc<dyn Ledger>, seq));
        let batch = self.parts.emit_acked(events, ledger, Some(source));
        self.parts.outputs.send(batch).await;
    }
}

/// A continuous pull of `batch` messages at a time.
async fn pull(input: &NatsInput) -> Result<Messages, async_nats::Error> {
    Ok(input
        .consumer
        .stream()
        .max_messages_per_batch(input.config.batch)
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_EXPIRES / 10)
        .messages()
        .await?)
}

/// Whether an error ends the pull, which must then be set up again. A missed heartbeat or a
/// failed request is the client's to recover from (it renews the pull on reconnection).
fn ends_the_pull(e: &async_nats::jetstream::consumer::pull::MessagesError) -> bool {
    use async_nats::jetstream::consumer::pull::MessagesErrorKind as Kind;
    matches!(
        e.kind(),
        Kind::ConsumerDeleted | Kind::PushBasedConsumer | Kind::RequestLimitExceeded
    )
}

/// Waits before the `failures`-th attempt to pull again: 100 ms doubling to
/// [`MAX_PULL_BACKOFF`]. Returns false when the run stops meanwhile.
async fn pause(failures: u32, stop: &CancellationToken) -> bool {
    let delay = Duration::from_millis(100)
        .saturating_mul(1 << failures.min(8))
        .min(MAX_PULL_BACKOFF);
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// `type = "nats"` as a source: connected by [`Source::connect`](crate::pipeline::connectors::seam::Source::connect).
pub(crate) struct JetStreamSource {
    source: Source,
    config: NatsSource,
    input: Option<NatsInput>,
}

impl JetStreamSource {
    pub(crate) fn new(source: &Source, config: &NatsSource) -> JetStreamSource {
        JetStreamSource {
            source: source.clone(),
            config: config.clone(),
            input: None,
        }
    }
}

impl crate::pipeline::connectors::seam::Source for JetStreamSource {
    fn ends(&self) -> bool {
        false
    }

    /// Its messages are acked to the server as their batches finish, not with the state's
    /// commit rounds.
    fn commits_with_state(&self) -> bool {
        false
    }

    /// The batch it sends, and the one it gathers.
    fn batches_held(&self) -> u64 {
        2
    }

    fn needs_origins(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!(
            "NATS stream `{}` through durable consumer `{}` at {}",
            self.config.stream, self.config.consumer, self.config.url
        )
    }

    fn connect(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async move {
            let input = prepare_source(&self.source, &self.config).await;
            self.input = Some(input.map_err(|e| ConnectorError::Connect(e.into()))?);
            Ok(())
        })
    }

    fn start(self: Box<Self>, parts: SourceParts) -> Result<RunningSource, ConnectorError> {
        let JetStreamSource { source, input, .. } = *self;
        let input = input.ok_or_else(not_connected)?;
        let (task, finisher) = spawn_source(&source, input, parts);
        Ok(RunningSource {
            task,
            finish: Some(Box::pin(finisher.finish())),
        })
    }
}

/// A connector started before it was connected: a fault of the topology, refused.
pub(in crate::pipeline::connectors) fn not_connected() -> ConnectorError {
    ConnectorError::Io {
        what: "cannot start".into(),
        source: std::io::Error::other("it was never connected"),
    }
}
