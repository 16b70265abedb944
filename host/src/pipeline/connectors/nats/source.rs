//! The NATS source: a durable pull consumer of a JetStream stream, read as batches.
//!
//! [`prepare_source`] connects, finds the stream and binds the durable consumer (created with
//! the `subject` filter, explicit acks, `ack_wait` and `max_ack_pending` if it does not
//! exist). A partitioned source (`partitions = [0, 1]`, `partition_count = P`) binds one
//! durable consumer per partition it owns, `CONSUMER-p` filtering on `SUBJECT.p`: JetStream
//! 2.9 takes one filter subject per consumer, and a consumer per partition keeps each
//! partition's place on the server its own, so that a partition can later move to another
//! process whole. An existing consumer that filters on another subject is refused: it would
//! deliver another partition's messages.
//!
//! Each consumer is pulled by a task of its own, continuously, `batch` messages at a time;
//! the pulls hand their messages, tagged with their consumer, to one reader, which groups
//! them into batches by the source's batch size and linger, as the stdin source does. Each
//! message becomes an event: the payload as value, the NATS headers as headers, the time the
//! stream stored it as timestamp (milliseconds), the header `key_header` names as key. Each
//! batch is registered with the [`Acks`] ledger and carries its messages' stream sequences as
//! its origin, so the ledger can `Term` dead-lettered messages and a NATS sink can name what
//! it publishes.
//!
//! With stages that keep state in the data folder the ledger holds the acks for the state's
//! commit rounds and starts from the position the store holds (see [`super::ledger`]); the
//! reader then shows it each message before taking it, and drops those it says are committed
//! (acked at once) or held already by this run (acked with the first delivery). A consumer
//! that delivered past the committed floor (the last run crashed, or stopped with messages
//! unacked) is first made again from just past the floor: JetStream redelivers unacked
//! messages after newer ones, and a stage keeping event time must see them again in stream
//! order, as the first time, or later events would move its watermark past them and make
//! them late. The consumer therefore belongs to this process alone, as its state does.
//!
//! Backpressure: while the first channel is full the reader stops taking messages; each pull
//! then holds at most [`HANDED_OVER`] messages in the hand-over and one pull's worth in the
//! client, and the server stops delivering at `max_ack_pending` unacked messages per
//! consumer. When the run stops, the reader sends on what it has taken and leaves the rest
//! unacked on the server, to be redelivered.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_sandbox::Events;

use super::committed::{Delivery, Positions, Taken};
use super::ledger::{Acks, Settler};
use super::{NatsError, connect};
use crate::config::{NatsSource, Source};
use crate::pipeline::ack::{Ledger, ledger_id};
use crate::pipeline::connectors::parts::SourceParts;
use crate::pipeline::connectors::seam::{BoxFuture, ConnectorError, RunningSource};
use crate::pipeline::origin::{Place, SourceBatch};
use crate::pipeline::partition;

/// How long one pull request waits on the server for messages before it is renewed. Idle
/// heartbeats at a tenth of it tell the client the connection is alive.
const PULL_EXPIRES: Duration = Duration::from_secs(10);

/// The longest pause before a pull is set up again after it failed (the consumer deleted, the
/// server gone). Blocks a busy loop against a server that refuses.
const MAX_PULL_BACKOFF: Duration = Duration::from_secs(2);

/// Messages each pull may have handed to the reader and the reader not yet taken. Small:
/// what waits here is delivered and not yet in a batch, so it gets no progress acks, and on
/// a stop it is left to be redelivered.
const HANDED_OVER: usize = 64;

/// One durable consumer a source reads: the whole subject, or one partition of it.
pub(crate) struct Bound {
    /// The consumer's name.
    name: String,
    consumer: PullConsumer,
    /// How it is made, should it be made again from a position.
    config: pull::Config,
}

/// A NATS source, connected and bound to its consumers.
pub(crate) struct NatsInput {
    client: async_nats::Client,
    consumers: Vec<Bound>,
    config: NatsSource,
    /// When the stream was made, in nanoseconds since the epoch: what a position names it by.
    created: String,
}

/// Each consumer a source reads: its name and filter subject. Unpartitioned, `CONSUMER`
/// filtering on `subject` (none: the whole stream); partitioned, `CONSUMER-p` filtering on
/// `SUBJECT.p` for each partition `p` it owns.
pub(crate) fn consumers(config: &NatsSource) -> Vec<(String, String)> {
    match &config.partitions {
        None => vec![(
            config.consumer.clone(),
            config.subject.clone().unwrap_or_default(),
        )],
        Some(partitions) => {
            let subject = config.subject.as_deref().unwrap_or_default();
            (partitions.owned.iter())
                .map(|&p| {
                    (
                        format!("{}-{p}", config.consumer),
                        partition::subject(subject, p),
                    )
                })
                .collect()
        }
    }
}

/// Connects to the server and binds each durable consumer, creating it if need be.
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
    let mut bound = Vec::new();
    for (name, filter) in consumers(config) {
        let refused = |message: String| NatsError::Consumer {
            url: config.url.clone(),
            stream: config.stream.clone(),
            consumer: name.clone(),
            message,
        };
        let wanted = pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: filter.clone(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: config.ack_wait,
            max_ack_pending: config.max_ack_pending as i64,
            ..Default::default()
        };
        let consumer: PullConsumer = stream
            .get_or_create_consumer(&name, wanted.clone())
            .await
            .map_err(|e| refused(e.to_string()))?;
        let filters = &consumer.cached_info().config.filter_subject;
        if config.subject.is_some() && *filters != filter {
            return Err(refused(format!(
                "it exists and filters on `{filters}`, not `{filter}`: delete it, or name \
                 another consumer"
            )));
        }
        bound.push(Bound {
            name,
            consumer,
            config: wanted,
        });
    }
    let created = stream
        .cached_info()
        .created
        .unix_timestamp_nanos()
        .to_string();
    Ok(NatsInput {
        client,
        consumers: bound,
        config: config.clone(),
        created,
    })
}

/// What ends a NATS source's settler once the run is drained.
pub(crate) struct Finisher {
    name: Arc<str>,
    acks: Arc<Acks>,
    finish: CancellationToken,
    settler: tokio::task::JoinHandle<()>,
}

impl Finisher {
    /// Every acknowledgement is released or forgotten (and with held acks, the last round is
    /// done): sends the last acks and flushes.
    pub(crate) async fn finish(self) {
        self.finish.cancel();
        let _ = self.settler.await;
        if let Some((skipped, ranges)) = self.acks.skipped() {
            if skipped > 0 {
                crate::notice::info(&format!(
                    "source `{}`: {skipped} redelivered messages were already in the state and \
                     were acked without running again",
                    self.name
                ));
            }
            tracing::debug!(source = %self.name, ranges, "NATS: ranges beside the floors of the position");
        }
    }
}

/// The ledger of a source: with stages that keep state in the data folder, one that holds
/// the acks for the commit rounds, starting from the position the store holds, and joined to
/// the rounds; else one that acks each batch when it is done.
/// Also returns, with held acks, each consumer's committed floor: where it is made again from
/// if it delivered past it.
fn ledger(
    source: &Source,
    input: &NatsInput,
    parts: &SourceParts,
) -> (Arc<Acks>, Settler, Vec<Option<u64>>) {
    let Some(durable) = parts.state.as_ref().and_then(|s| s.durable.as_ref()) else {
        let (acks, settler) = Acks::new();
        return (acks, settler, vec![None; input.consumers.len()]);
    };
    let names: Vec<String> = input.consumers.iter().map(|b| b.name.clone()).collect();
    let stored = durable.position(&source.name);
    let (mut positions, unused) =
        Positions::load(&input.config.stream, &input.created, &names, stored);
    if let Some(why) = unused {
        tracing::warn!(source = %source.name, "NATS: the position in the state store is not used: {why}");
    }
    let mut floors = Vec::with_capacity(input.consumers.len());
    for (i, bound) in input.consumers.iter().enumerate() {
        let floor = bound.consumer.cached_info().ack_floor.stream_sequence;
        positions.track(i).raise_floor(floor);
        floors.push(Some(positions.track(i).floor()));
    }
    let (acks, settler) = Acks::holding(positions);
    let ledger: Arc<dyn Ledger> = acks.clone();
    durable.register(&source.name, ledger_id(&ledger), acks.clone());
    let consumers = input.consumers.iter().map(|b| b.consumer.clone());
    (acks, settler.asking(consumers.collect()), floors)
}

/// Starts the source task (it returns whether the run stopped it), a pull per consumer, and
/// the settler.
pub(crate) fn spawn_source(
    source: &Source,
    input: NatsInput,
    parts: SourceParts,
) -> (tokio::task::JoinHandle<bool>, Finisher) {
    let (acks, settler, floors) = ledger(source, &input, &parts);
    let finish = CancellationToken::new();
    let settler =
        tokio::spawn(settler.run(input.client.clone(), input.config.ack_wait, finish.clone()));
    let name: Arc<str> = Arc::from(source.name.as_str());
    let (tx, rx) = mpsc::channel(HANDED_OVER);
    let stop = parts.ctx.stop.clone();
    for (index, (bound, floor)) in input.consumers.iter().zip(floors).enumerate() {
        let pull = Pull {
            source: Arc::clone(&name),
            name: bound.name.clone(),
            index,
            consumer: bound.consumer.clone(),
            batch: input.config.batch,
            rewind: floor.map(|floor| Rewind {
                js: async_nats::jetstream::new(input.client.clone()),
                stream: input.config.stream.clone(),
                config: bound.config.clone(),
                floor,
            }),
        };
        tokio::spawn(pull.run(tx.clone(), stop.clone()));
    }
    drop(tx);
    let reader = Reader {
        name: Arc::clone(&name),
        stream: Arc::from(input.config.stream.as_str()),
        key_header: input.config.key_header.clone(),
        batch_size: source.batch_size,
        linger: source.linger,
        holds: acks.holds(),
        acks: Arc::clone(&acks),
        parts,
        seq: 0,
        pending: Pending::default(),
    };
    let task = tokio::spawn(reader.run(rx));
    let finisher = Finisher {
        name,
        acks,
        finish,
        settler,
    };
    (task, finisher)
}

/// Messages taken, not yet sent on as a batch.
#[derive(Default)]
struct Pending {
    events: Events,
    replies: Vec<async_nats::Subject>,
    sequences: Vec<u64>,
    /// Later deliveries of its messages (held acks only), by index: acked with them.
    again: Vec<(u32, async_nats::Subject)>,
}

/// A message from one of the source's consumers, by its index.
type Handed = (usize, async_nats::jetstream::Message);

struct Reader {
    name: Arc<str>,
    stream: Arc<str>,
    key_header: Option<String>,
    batch_size: usize,
    linger: Duration,
    acks: Arc<Acks>,
    /// Whether the ledger holds acks for the state's rounds (and so sees every message).
    holds: bool,
    parts: SourceParts,
    /// The next batch's number in the ledger.
    seq: u64,
    pending: Pending,
}

type Messages = async_nats::jetstream::consumer::pull::Stream;

impl Reader {
    /// Takes messages until the run stops; returns that it was stopped.
    async fn run(mut self, mut rx: mpsc::Receiver<Handed>) -> bool {
        let stop = self.parts.ctx.stop.clone();
        let mut deadline: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    deadline = None;
                    self.send().await;
                }
                next = rx.recv() => match next {
                    Some((consumer, message)) => {
                        self.take(consumer, message);
                        if self.pending.replies.len() >= self.batch_size {
                            deadline = None;
                            self.send().await;
                        } else if deadline.is_none() {
                            deadline = Some(Instant::now() + self.linger);
                        }
                    }
                    // Every pull ended: they end only when the run stops.
                    None => break,
                },
            }
        }
        // What was taken is accepted: it goes on even though the run is stopping. What the
        // pulls and the client hold beyond it stays unacked, and the server redelivers it.
        drop(rx);
        self.send().await;
        true
    }

    /// Adds a message of consumer `consumer` to the pending batch, unless the ledger says its
    /// effect is committed or this run holds it already.
    fn take(&mut self, consumer: usize, message: async_nats::jetstream::Message) {
        let info = message.info().ok();
        let reply = message.reply.clone().unwrap_or_else(|| "".into());
        if let Some(info) = &info
            && self.holds
        {
            let delivery = Delivery {
                seq: info.stream_sequence,
                delivery: info.consumer_sequence,
                first: info.delivered == 1,
            };
            let index = self.pending.replies.len() as u32;
            match self.acks.take(consumer, delivery, &reply, self.seq, index) {
                Taken::New => {}
                Taken::Committed => return,
                Taken::Holding { batch, index } => {
                    if batch == self.seq {
                        self.pending.again.push((index, reply));
                    }
                    return;
                }
            }
        }
        let (sequence, timestamp) = match &info {
            Some(info) => (
                info.stream_sequence,
                Some((info.published.unix_timestamp_nanos() / 1_000_000).max(0) as u64),
            ),
            None => (0, None),
        };
        let headers = message.headers.as_ref();
        let key = self
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
        self.pending.replies.push(reply);
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
            again,
        } = std::mem::take(&mut self.pending);
        let seq = self.seq;
        self.seq += 1;
        self.acks.emitted(seq, replies, again);
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

/// The continuous pull of one consumer, handing each message to the reader.
struct Pull {
    source: Arc<str>,
    /// The consumer's name, for what is logged.
    name: String,
    /// The consumer's place in the source's list.
    index: usize,
    consumer: PullConsumer,
    batch: usize,
    /// With held acks: how to make the consumer again from its committed floor.
    rewind: Option<Rewind>,
}

/// What making a consumer again from its committed position takes.
struct Rewind {
    js: async_nats::jetstream::Context,
    stream: String,
    config: pull::Config,
    /// Every message at or below it is committed.
    floor: u64,
}

impl Pull {
    /// Pulls until the run stops or the reader is gone, setting the pull up again (with
    /// backoff) whenever it ends.
    async fn run(mut self, tx: mpsc::Sender<Handed>, stop: CancellationToken) {
        if let Some(rewind) = self.rewind.take()
            && let Err(e) = self.rewind(rewind).await
        {
            // Redelivery still brings every message; only its order may differ.
            tracing::warn!(source = %self.source, consumer = %self.name, "NATS: cannot make the consumer again from its committed position ({e}); its unacked messages come as the server redelivers them");
        }
        let mut messages: Option<Messages> = None;
        let mut failures = 0u32;
        loop {
            let Some(stream) = messages.as_mut() else {
                if failures > 0 && !pause(failures, &stop).await {
                    return;
                }
                match pull(&self.consumer, self.batch).await {
                    Ok(stream) => messages = Some(stream),
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(source = %self.source, consumer = %self.name, "NATS: cannot pull from the consumer ({e}); trying again");
                    }
                }
                continue;
            };
            let next = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    failures = 0;
                    let handed = tokio::select! {
                        biased;
                        _ = stop.cancelled() => return,
                        sent = tx.send((self.index, message)) => sent,
                    };
                    if handed.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(source = %self.source, consumer = %self.name, "NATS: {e}");
                    if ends_the_pull(&e) {
                        messages = None;
                        failures += 1;
                    }
                }
                None => {
                    messages = None;
                    failures += 1;
                }
            }
        }
    }
}

impl Pull {
    /// Makes the consumer again from just past its committed floor when it delivered past
    /// it, so that what comes again comes in stream order.
    async fn rewind(&mut self, rewind: Rewind) -> Result<(), async_nats::Error> {
        let delivered = self.consumer.info().await?.delivered.stream_sequence;
        if delivered <= rewind.floor {
            return Ok(());
        }
        let stream = rewind.js.get_stream(&rewind.stream).await?;
        stream.delete_consumer(&self.name).await?;
        let mut config = rewind.config;
        config.deliver_policy = DeliverPolicy::ByStartSequence {
            start_sequence: rewind.floor + 1,
        };
        self.consumer = stream.create_consumer(config).await?;
        tracing::info!(source = %self.source, consumer = %self.name, from = rewind.floor + 1, "NATS: consumer made again from its committed position");
        Ok(())
    }
}

/// A continuous pull of `batch` messages at a time.
async fn pull(consumer: &PullConsumer, batch: usize) -> Result<Messages, async_nats::Error> {
    Ok(consumer
        .stream()
        .max_messages_per_batch(batch)
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

    /// With stages that keep state in the data folder, its acks wait for the commit round
    /// that covers their batch, and its position (per consumer, the stream sequences
    /// committed) is written with the state.
    fn commits_with_state(&self) -> bool {
        true
    }

    /// The batch it sends, and the one it gathers.
    fn batches_held(&self) -> u64 {
        2
    }

    fn needs_origins(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let c = &self.config;
        match &c.partitions {
            None => format!(
                "NATS stream `{}` through durable consumer `{}` at {}",
                c.stream, c.consumer, c.url
            ),
            Some(partitions) => {
                let bound = consumers(c);
                let owned: Vec<String> = partitions.owned.iter().map(u32::to_string).collect();
                let subjects: Vec<String> = bound.iter().map(|(_, s)| format!("`{s}`")).collect();
                let names: Vec<String> = bound.iter().map(|(n, _)| format!("`{n}`")).collect();
                format!(
                    "NATS stream `{}`, partitions {} of {} of subject `{}` ({}) through durable \
                     consumers {} at {}",
                    c.stream,
                    owned.join(", "),
                    partitions.count,
                    c.subject.as_deref().unwrap_or_default(),
                    subjects.join(", "),
                    names.join(", "),
                    c.url
                )
            }
        }
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
