//! Edges: the bounded channels between nodes, fan-out, and what every task of a run shares.
//!
//! In front of every consumer (a stage chain or a sink) runs one bounded channel of batches
//! ([`channel`]); every node that names it as an input holds a sender (fan-in). A producer's
//! [`Outputs`] holds one sender per consumer and gives each its own copy of a batch
//! (fan-out). A full channel makes the producer wait: that wait is the backpressure that
//! travels back to the source. Channels close by dropping senders: a node ends when its input
//! is closed and drained, and drops its outputs, which closes the next channel in turn.
//!
//! [`RunContext`] is what every task shares: the stop token (cancelled on a signal or a fatal
//! failure: sources stop reading, everything else drains), the acknowledgement tracker, and
//! the first fatal failure.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pipeline::ack::Tracker;
use crate::pipeline::batch::Batch;
use crate::pipeline::dead_letter::DeadLetters;

// tokio's channels: a task or thread that waits on a full or empty one registers in the
// channel itself, without an allocation per wait, and they work from plain threads too.
pub type Sender = mpsc::Sender<Batch>;
pub type Receiver = mpsc::Receiver<Batch>;

/// A bounded channel of `capacity` batches.
pub fn channel(capacity: usize) -> (Sender, Receiver) {
    mpsc::channel(capacity.max(1))
}

/// The dead-letter channel: every stage and source holds a sender; the writer ends when the
/// last one is dropped.
pub type DeadLetterTx = mpsc::Sender<DeadLetters>;
pub type DeadLetterRx = mpsc::Receiver<DeadLetters>;

/// A bounded dead-letter channel of `capacity` letter batches.
pub fn dead_letter_channel(capacity: usize) -> (DeadLetterTx, DeadLetterRx) {
    mpsc::channel(capacity.max(1))
}

/// The senders towards every consumer of one node.
#[derive(Clone, Default)]
pub struct Outputs {
    senders: Vec<Sender>,
}

impl Outputs {
    pub fn new(senders: Vec<Sender>) -> Outputs {
        Outputs { senders }
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Sends a batch to every consumer, waiting while a consumer's channel is full.
    pub async fn send(&self, batch: Batch) {
        if let Some((last, rest)) = self.senders.split_last() {
            for sender in rest {
                if let Err(lost) = sender.send(batch.clone()).await {
                    unwritten(lost.0);
                }
            }
            if let Err(lost) = last.send(batch).await {
                unwritten(lost.0);
            }
        }
    }

    /// [`Outputs::send`] from a thread outside the runtime.
    pub fn send_blocking(&self, batch: Batch) {
        if let Some((last, rest)) = self.senders.split_last() {
            for sender in rest {
                if let Err(lost) = sender.blocking_send(batch.clone()) {
                    unwritten(lost.0);
                }
            }
            if let Err(lost) = last.blocking_send(batch) {
                unwritten(lost.0);
            }
        }
    }
}

/// A consumer's channel closes only once it has stopped for good (the run is being torn
/// down): what could not be sent was never written, so its acknowledgement is never released.
fn unwritten(batch: Batch) {
    batch.ack.forget();
}

/// What every task of a running pipeline shares.
pub struct RunContext {
    /// Cancelled to stop the sources: on a signal, or when the run has failed.
    pub stop: CancellationToken,
    pub tracker: Arc<Tracker>,
    failure: Mutex<Option<String>>,
}

impl RunContext {
    pub fn new(stop: CancellationToken) -> Arc<RunContext> {
        Arc::new(RunContext {
            stop,
            tracker: Arc::new(Tracker::default()),
            failure: Mutex::new(None),
        })
    }

    /// Records the first fatal failure and stops the sources; what is in flight drains.
    pub fn fail(&self, message: String) {
        tracing::error!("{message}");
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(message);
        self.stop.cancel();
    }

    /// The first fatal failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
