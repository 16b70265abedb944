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
//! A batch still in flight after half of `ack_wait` gets a progress ack (`+WPI`) for each of
//! its messages, and again every half `ack_wait`, so a slow stage or sink does not make the
//! server redeliver what is being worked on. A batch whose acknowledgement is never released
//! (its sink failed) is never acked: the server redelivers it after `ack_wait`, to this
//! process after a restart or to another one sharing the consumer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::Subject;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pipeline::ack::Ledger;

/// A batch's messages, until it is done.
struct InFlight {
    /// Each message's reply subject, in batch order.
    replies: Vec<Subject>,
    /// Indices of messages that were dead-lettered.
    terms: Vec<u32>,
    /// When the server last heard of the batch (emitted, or a progress ack).
    heard: Instant,
}

/// A finished batch, on its way to the settler.
struct Settle {
    replies: Vec<Subject>,
    terms: Vec<u32>,
}

/// The ledger of one NATS source.
pub(crate) struct Acks {
    in_flight: Mutex<HashMap<u64, InFlight>>,
    /// To the settler. Unbounded because `done` is called wherever a last acknowledgement
    /// drops (a sink's thread) and must not wait; what it holds is bounded by the batches in
    /// flight, which `max_ack_pending` and the pipeline's buffers bound.
    tx: mpsc::UnboundedSender<Settle>,
}

impl Acks {
    /// A ledger and the receiving end its settler reads.
    pub(crate) fn new() -> (Arc<Acks>, Settler) {
        let (tx, rx) = mpsc::unbounded_channel();
        let acks = Arc::new(Acks {
            in_flight: Mutex::new(HashMap::new()),
            tx,
        });
        let settler = Settler {
            rx,
            acks: Arc::clone(&acks),
        };
        (acks, settler)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, InFlight>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers batch `seq` and its messages' reply subjects, before it is sent on.
    pub(crate) fn emitted(&self, seq: u64, replies: Vec<Subject>) {
        let entry = InFlight {
            replies,
            terms: Vec::new(),
            heard: Instant::now(),
        };
        self.lock().insert(seq, entry);
    }

    /// The reply subjects of every batch the server has not heard of for `quiet`; marks them
    /// heard now.
    fn stale(&self, quiet: Duration) -> Vec<Subject> {
        let now = Instant::now();
        let mut due = Vec::new();
        for entry in self.lock().values_mut() {
            if now.duration_since(entry.heard) >= quiet {
                entry.heard = now;
                due.extend(entry.replies.iter().cloned());
            }
        }
        due
    }

    /// Batches not yet done.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.lock().len()
    }
}

impl Ledger for Acks {
    fn done(&self, seq: u64) {
        let Some(entry) = self.lock().remove(&seq) else {
            return;
        };
        let _ = self.tx.send(Settle {
            replies: entry.replies,
            terms: entry.terms,
        });
    }

    fn dead_lettered(&self, seq: u64, indices: &[u32]) {
        if let Some(entry) = self.lock().get_mut(&seq) {
            entry.terms.extend_from_slice(indices);
        }
    }
}

/// The task that sends acks, terms and progress acks for one source.
pub(crate) struct Settler {
    rx: mpsc::UnboundedReceiver<Settle>,
    acks: Arc<Acks>,
}

const ACK: Bytes = Bytes::from_static(b"+ACK");
const TERM: Bytes = Bytes::from_static(b"+TERM");
const PROGRESS: Bytes = Bytes::from_static(b"+WPI");

impl Settler {
    /// Settles finished batches until `finish` is cancelled, then settles what is left and
    /// flushes. `finish` is cancelled once every acknowledgement of the run is released or
    /// forgotten, so nothing done is left unacked.
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
}

/// Acks each message of a finished batch, or ends it with `Term` if it was dead-lettered.
async fn send(client: &async_nats::Client, mut settle: Settle) {
    settle.terms.sort_unstable();
    for (i, reply) in settle.replies.into_iter().enumerate() {
        let kind = if settle.terms.binary_search(&(i as u32)).is_ok() {
            TERM
        } else {
            ACK
        };
        publish(client, reply, kind).await;
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
        acks.emitted(7, vec![Subject::from("a"), Subject::from("b")]);
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

    #[test]
    fn a_batch_quiet_for_half_the_ack_wait_is_due_for_progress() {
        let (acks, _settler) = Acks::new();
        acks.emitted(1, vec![Subject::from("a")]);
        assert!(acks.stale(Duration::from_secs(60)).is_empty());
        assert_eq!(acks.stale(Duration::ZERO).len(), 1);
    }
}
