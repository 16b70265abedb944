//! The NATS source's ledger: which messages each batch holds, and when to ack them.
//!
//! The source registers each batch with the reply (ack) subjects of its messages before it
//! sends the batch on. When the batch's acknowledgement is released (every event derived
//! from it written, dead-lettered or dropped, and flushed), [`Acks::done`] hands the entry to
//! the settler task, which acks each message, or ends it with `Term` when the dead-letter
//! writer reported it ([`Acks::dead_lettered`]): a dead-lettered message must not come back.
//! Batches finish in any order, and each message is acked on its own, so no batch waits for
//! an earlier one.
//!
//! With stages that keep state in the data folder the ledger holds the acks back instead
//! ([`Acks::holding`]): a message acked before the round that holds its effect is durable
//! would, after a crash, be gone from the server while its effect is gone from the state. So
//! a finished batch waits; the ledger tells the commit rounds how far the batches are
//! finished without a gap ([`Positioned`]), gives them the source's position
//! ([`committed::Positions`]: per consumer, the stream sequences committed), and once a round
//! is durable it hands the batches the round covered to the settler. A redelivered message
//! the position says is committed is acked at once and not run; one this run still holds
//! is acked with the message it repeats.
//!
//! A batch still in flight after half of `ack_wait` gets a progress ack (`+WPI`) for each of
//! its messages, and again every half `ack_wait`, so a slow stage or sink (or a batch waiting
//! for its round) does not make the server redeliver what is being worked on. A batch whose
//! acknowledgement is never released (its sink failed) is never acked: the server redelivers
//! it after `ack_wait`, to this process after a restart or to another one sharing the
//! consumer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::Subject;
use async_nats::jetstream::consumer::PullConsumer;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::committed::{Delivery, Positions, Taken};
use crate::pipeline::ack::Ledger;
use crate::pipeline::state::Positioned;

/// A batch's messages, until it is settled.
struct InFlight {
    /// Each message's reply subject, in batch order.
    replies: Vec<Subject>,
    /// Later deliveries of its messages, by index, acked (or ended) with them.
    again: Vec<(u32, Subject)>,
    /// Indices of messages that were dead-lettered.
    terms: Vec<u32>,
    /// When the server last heard of the batch (emitted, or a progress ack).
    heard: Instant,
}

/// A finished batch, on its way to the settler; or messages to ack at once.
struct Settle {
    replies: Vec<Subject>,
    again: Vec<(u32, Subject)>,
    terms: Vec<u32>,
}

impl From<InFlight> for Settle {
    fn from(entry: InFlight) -> Settle {
        Settle {
            replies: entry.replies,
            again: entry.again,
            terms: entry.terms,
        }
    }
}

/// What a ledger that holds its acks for the commit rounds keeps beside its batches.
struct Held {
    /// The first batch not finished: every one before it is.
    unfinished: u64,
    /// Finished batches from `unfinished` on.
    finished: BTreeSet<u64>,
    /// The last batch a round committed.
    committed: Option<u64>,
    positions: Positions,
    /// Redelivered messages found committed and acked without running, this run.
    skipped: u64,
}

struct Inner {
    in_flight: BTreeMap<u64, InFlight>,
    held: Option<Held>,
}

/// The ledger of one NATS source.
pub(crate) struct Acks {
    inner: Mutex<Inner>,
    /// To the settler. Unbounded because `done` is called wherever a last acknowledgement
    /// drops (a sink's thread) and must not wait; what it holds is bounded by the batches in
    /// flight, which `max_ack_pending` and the pipeline's buffers bound.
    tx: mpsc::UnboundedSender<Settle>,
}

impl Acks {
    /// A ledger that acks each batch when it is done, and the receiving end its settler reads.
    pub(crate) fn new() -> (Arc<Acks>, Settler) {
        Acks::with(None)
    }

    /// A ledger that holds each batch's acks until a commit round of the state covers it,
    /// starting from `positions`.
    pub(crate) fn holding(positions: Positions) -> (Arc<Acks>, Settler) {
        Acks::with(Some(Held {
            unfinished: 0,
            finished: BTreeSet::new(),
            committed: None,
            positions,
            skipped: 0,
        }))
    }

    fn with(held: Option<Held>) -> (Arc<Acks>, Settler) {
        let (tx, rx) = mpsc::unbounded_channel();
        let acks = Arc::new(Acks {
            inner: Mutex::new(Inner {
                in_flight: BTreeMap::new(),
                held,
            }),
            tx,
        });
        let settler = Settler {
            rx,
            acks: Arc::clone(&acks),
            consumers: Vec::new(),
        };
        (acks, settler)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether it holds acks for the commit rounds.
    pub(crate) fn holds(&self) -> bool {
        self.lock().held.is_some()
    }

    /// A message delivered by consumer `consumer`, about to be message `index` of batch
    /// `batch` (the one being gathered): whether it runs. A committed one is acked here; one
    /// that repeats a message of an emitted batch is acked with it. A ledger that does not
    /// hold its acks runs everything.
    pub(crate) fn take(
        &self,
        consumer: usize,
        delivery: Delivery,
        reply: &Subject,
        batch: u64,
        index: u32,
    ) -> Taken {
        let mut inner = self.lock();
        let Inner { in_flight, held } = &mut *inner;
        let Some(held) = held else {
            return Taken::New;
        };
        let taken = held.positions.track(consumer).take(delivery, batch, index);
        match taken {
            Taken::New => {}
            Taken::Committed => {
                held.skipped += 1;
                let _ = self.tx.send(Settle {
                    replies: vec![reply.clone()],
                    again: Vec::new(),
                    terms: Vec::new(),
                });
            }
            Taken::Holding { batch, index } => {
                if let Some(entry) = in_flight.get_mut(&batch) {
                    entry.again.push((index, reply.clone()));
                }
                // Else the batch is the one being gathered: the reader keeps the reply.
            }
        }
        taken
    }

    /// Registers batch `seq`, its messages' reply subjects and later deliveries of them,
    /// before it is sent on.
    pub(crate) fn emitted(&self, seq: u64, replies: Vec<Subject>, again: Vec<(u32, Subject)>) {
        let entry = InFlight {
            replies,
            again,
            terms: Vec::new(),
            heard: Instant::now(),
        };
        self.lock().in_flight.insert(seq, entry);
    }

    /// The reply subjects of every batch the server has not heard of for `quiet`; marks them
    /// heard now.
    fn stale(&self, quiet: Duration) -> Vec<Subject> {
        let now = Instant::now();
        let mut due = Vec::new();
        for entry in self.lock().in_flight.values_mut() {
            if now.duration_since(entry.heard) >= quiet {
                entry.heard = now;
                due.extend(entry.replies.iter().cloned());
                due.extend(entry.again.iter().map(|(_, r)| r.clone()));
            }
        }
        due
    }

    /// The server's ack floor of consumer `consumer`: every message at or below it is acked.
    fn ack_floor(&self, consumer: usize, floor: u64) {
        if let Some(held) = &mut self.lock().held {
            held.positions.track(consumer).raise_floor(floor);
        }
    }

    /// Redelivered messages found committed and skipped, and ranges the position holds.
    pub(crate) fn skipped(&self) -> Option<(u64, usize)> {
        let inner = self.lock();
        let held = inner.held.as_ref()?;
        Some((held.skipped, held.positions.ranges()))
    }

    /// Batches not yet settled.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.lock().in_flight.len()
    }
}

impl Ledger for Acks {
    fn done(&self, seq: u64) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        match &mut inner.held {
            None => {
                if let Some(entry) = inner.in_flight.remove(&seq) {
                    let _ = self.tx.send(entry.into());
                }
            }
            Some(held) => {
                if seq < held.unfinished {
                    return;
                }
                held.finished.insert(seq);
                while held.finished.remove(&held.unfinished) {
                    held.unfinished += 1;
                }
            }
        }
    }

    fn dead_lettered(&self, seq: u64, indices: &[u32]) {
        if let Some(entry) = self.lock().in_flight.get_mut(&seq) {
            entry.terms.extend_from_slice(indices);
        }
    }
}

impl Positioned for Acks {
    /// The last batch finished without a gap, unless a round already committed it.
    fn done_through(&self) -> Option<u64> {
        let inner = self.lock();
        let held = inner.held.as_ref()?;
        let last = held.unfinished.checked_sub(1)?;
        (Some(last) > held.committed).then_some(last)
    }

    fn checkpoint_through(&self, seq: u64) -> Option<Vec<u8>> {
        let inner = self.lock();
        Some(inner.held.as_ref()?.positions.bytes_through(seq))
    }

    /// The round is durable: the batches through `seq` are settled.
    fn forget_through(&self, seq: u64) {
        let mut inner = self.lock();
        let Inner { in_flight, held } = &mut *inner;
        let Some(held) = held else {
            return;
        };
        held.positions.commit_through(seq);
        held.committed = held.committed.max(Some(seq));
        let later = in_flight.split_off(&(seq + 1));
        for (_, entry) in std::mem::replace(in_flight, later) {
            let _ = self.tx.send(entry.into());
        }
    }
}

/// The task that sends acks, terms and progress acks for one source.
pub(crate) struct Settler {
    rx: mpsc::UnboundedReceiver<Settle>,
    acks: Arc<Acks>,
    /// With held acks: each consumer, whose ack floor it asks for now and then.
    consumers: Vec<PullConsumer>,
}

const ACK: Bytes = Bytes::from_static(b"+ACK");
const TERM: Bytes = Bytes::from_static(b"+TERM");
const PROGRESS: Bytes = Bytes::from_static(b"+WPI");

impl Settler {
    /// The consumers whose ack floors raise the position's floors (held acks only).
    pub(crate) fn asking(mut self, consumers: Vec<PullConsumer>) -> Settler {
        self.consumers = consumers;
        self
    }

    /// Settles finished batches until `finish` is cancelled, then settles what is left and
    /// flushes. `finish` is cancelled once every acknowledgement of the run is released or
    /// forgotten (and with held acks, after the last round), so nothing done is left unacked.
    pub(crate) async fn run(
        mut self,
        client: async_nats::Client,
        ack_wait: Duration,
        finish: CancellationToken,
    ) {
        // Progress acks are due after half of ack_wait; looking every quarter keeps each
        // one within three quarters of it.
        let mut tick = tokio::time::interval(ack_wait / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                settle = self.rx.recv() => match settle {
                    Some(settle) => send(&client, settle).await,
                    None => break,
                },
                _ = tick.tick() => {
                    for reply in self.acks.stale(ack_wait / 2) {
                        publish(&client, reply, PROGRESS).await;
                    }
                    self.ask_floors().await;
                }
                _ = finish.cancelled() => {
                    while let Ok(settle) = self.rx.try_recv() {
                        send(&client, settle).await;
                    }
                    break;
                }
            }
        }
        // The last acks leave the client's buffer before the process may exit. A server that
        // is gone gets them redelivered instead: bounded, so that a dead server cannot hold
        // the exit.
        let flushed = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!(
                "NATS: the last acks may not have reached the server; those messages will be redelivered"
            );
        }
    }

    /// Raises each consumer's committed floor to the server's ack floor, so that the ranges
    /// a position holds stay few. A consumer that does not answer is asked again next time.
    async fn ask_floors(&mut self) {
        for (i, consumer) in self.consumers.iter_mut().enumerate() {
            match consumer.info().await {
                Ok(info) => self.acks.ack_floor(i, info.ack_floor.stream_sequence),
                Err(e) => tracing::debug!("NATS: no ack floor for now ({e})"),
            }
        }
    }
}

/// Acks each message of a finished batch (and its later deliveries), or ends it with `Term`
/// if it was dead-lettered.
async fn send(client: &async_nats::Client, mut settle: Settle) {
    settle.terms.sort_unstable();
    let kind = |i: u32| {
        if settle.terms.binary_search(&i).is_ok() {
            TERM
        } else {
            ACK
        }
    };
    for (i, reply) in settle.replies.into_iter().enumerate() {
        publish(client, reply, kind(i as u32)).await;
    }
    for (i, reply) in settle.again {
        publish(client, reply, kind(i)).await;
    }
}

/// Publishes an ack. A failure (the client is closed) loses only the ack: the server
/// redelivers the message after `ack_wait`, and a NATS sink's message ids drop the copy.
async fn publish(client: &async_nats::Client, reply: Subject, kind: Bytes) {
    if let Err(e) = client.publish(reply, kind).await {
        tracing::debug!("NATS: an ack was not sent ({e}); the message will be redelivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_done_batch_reaches_the_settler_with_its_dead_lettered_messages() {
        let (acks, mut settler) = Acks::new();
        acks.emitted(7, vec![Subject::from("a"), Subject::from("b")], Vec::new());
        acks.dead_lettered(7, &[1]);
        assert_eq!(acks.pending(), 1);
        acks.done(7);
        assert_eq!(acks.pending(), 0);
        let settle = settler.rx.recv().await.expect("settled");
        assert_eq!(settle.replies.len(), 2);
        assert_eq!(settle.terms, [1]);
        acks.done(7);
        assert!(settler.rx.try_recv().is_err(), "done once only");
    }

    fn first(seq: u64) -> Delivery {
        Delivery {
            seq,
            delivery: seq,
            first: true,
        }
    }

    #[tokio::test]
    async fn held_acks_wait_for_the_round_that_covers_their_batch() {
        let names = vec!["c".to_string()];
        let (positions, _) = Positions::load("IN", "1", &names, None);
        let (acks, mut settler) = Acks::holding(positions);
        for batch in 0..3u64 {
            let reply = Subject::from(format!("r{batch}"));
            assert_eq!(acks.take(0, first(batch + 1), &reply, batch, 0), Taken::New);
            acks.emitted(batch, vec![reply], Vec::new());
        }
        acks.done(1);
        assert_eq!(acks.done_through(), None, "batch 0 is not done");
        acks.done(0);
        assert_eq!(acks.done_through(), Some(1));
        assert!(
            settler.rx.try_recv().is_err(),
            "nothing acked before a round"
        );
        assert!(acks.checkpoint_through(1).is_some());
        acks.forget_through(1);
        for expected in ["r0", "r1"] {
            let settle = settler.rx.try_recv().expect("settled after the round");
            assert_eq!(settle.replies, [Subject::from(expected)]);
        }
        assert!(settler.rx.try_recv().is_err(), "batch 2 is not done");
        assert_eq!(acks.done_through(), None, "nothing new since the round");
        assert_eq!(acks.pending(), 1);

        // Message 1 comes again: committed, so acked at once and not run. Message 3 comes
        // again while batch 2 holds it: acked with it.
        let reply = Subject::from("again-1");
        let again = |seq| Delivery {
            seq,
            delivery: 10 + seq,
            first: false,
        };
        assert_eq!(acks.take(0, again(1), &reply, 3, 0), Taken::Committed);
        assert_eq!(settler.rx.try_recv().expect("acked").replies, [reply]);
        let reply = Subject::from("again-3");
        assert_eq!(
            acks.take(0, again(3), &reply, 3, 0),
            Taken::Holding { batch: 2, index: 0 }
        );
        acks.done(2);
        acks.forget_through(2);
        let settle = settler.rx.try_recv().expect("settled");
        assert_eq!(settle.again, [(0, reply)]);
        assert_eq!(acks.skipped(), Some((1, 0)));
    }

    #[test]
    fn a_batch_quiet_for_half_the_ack_wait_is_due_for_progress() {
        let (acks, _settler) = Acks::new();
        acks.emitted(1, vec![Subject::from("a")], Vec::new());
        assert!(acks.stale(Duration::from_secs(60)).is_empty());
        assert_eq!(acks.stale(Duration::ZERO).len(), 1);
    }
}
