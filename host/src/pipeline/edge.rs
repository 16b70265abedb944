//! Edges: the bounded channels between nodes, fan-out, and what every task of a run shares.
//!
//! In front of every consumer (a stage chain or a sink) runs one bounded channel of batches
//! ([`channel`]); every node that names it as an input holds a sender (fan-in). A producer's
//! [`Outputs`] holds one sender per consumer and gives each its own copy of a batch
//! (fan-out). A full channel makes the producer wait: that wait is the backpressure that
//! travels back to the source. Channels close by dropping senders: a node ends when its input
//! is closed and drained, and drops its outputs, which closes the next channel in turn.
//!
//! A producer that must not wait (a source answering a client, which can come back later)
//! asks for a slot in every consumer's channel at once with [`Outputs::try_reserve`], and
//! sends into the slots it got; a full channel is then its answer instead of a wait.
//!
//! Each sender carries the consumer's [`NodeMetrics`]: a producer adds a batch's events to the
//! consumer's `queued` gauge before it sends, and the consumer takes them away as it receives
//! ([`taken`]), so the gauge reads the events waiting in front of each node, one atomic add per
//! batch on each side.
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
use crate::pipeline::failure::NodeFailure;
use crate::pipeline::report::NodeMetrics;

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

/// The senders towards every consumer of one node, each with the consumer's metrics.
#[derive(Clone, Default)]
pub struct Outputs {
    /// The producing node's number in the run, stamped on every batch it sends.
    id: u32,
    senders: Vec<(Sender, Arc<NodeMetrics>)>,
}

impl Outputs {
    pub fn new(id: u32, senders: Vec<(Sender, Arc<NodeMetrics>)>) -> Outputs {
        Outputs { id, senders }
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Sends a batch to every consumer, waiting while a consumer's channel is full.
    pub async fn send(&self, mut batch: Batch) {
        batch.from = self.id;
        if let Some(((last, to), rest)) = self.senders.split_last() {
            for (sender, to) in rest {
                queue(to, &batch);
                if let Err(lost) = sender.send(batch.clone()).await {
                    unwritten(to, lost.0);
                }
            }
            queue(to, &batch);
            if let Err(lost) = last.send(batch).await {
                unwritten(to, lost.0);
            }
        }
    }

    /// [`Outputs::send`] from a thread outside the runtime.
    pub fn send_blocking(&self, mut batch: Batch) {
        batch.from = self.id;
        if let Some(((last, to), rest)) = self.senders.split_last() {
            for (sender, to) in rest {
                queue(to, &batch);
                if let Err(lost) = sender.blocking_send(batch.clone()) {
                    unwritten(to, lost.0);
                }
            }
            queue(to, &batch);
            if let Err(lost) = last.blocking_send(batch) {
                unwritten(to, lost.0);
            }
        }
    }
}

/// Why [`Outputs::try_reserve`] got no slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// A consumer's channel is full: it cannot take a batch now.
    Full,
    /// A consumer has stopped for good: the run is being torn down.
    Closed,
}

impl Outputs {
    /// A slot in every consumer's channel, all taken at once without waiting, or none: a batch
    /// then goes to every consumer or to none. The slots are given back if never used.
    pub fn try_reserve(&self) -> Result<Reserved<'_>, NoRoom> {
        let mut permits = Vec::with_capacity(self.senders.len());
        for (sender, to) in &self.senders {
            match sender.try_reserve() {
                Ok(permit) => permits.push((permit, to.as_ref())),
                Err(mpsc::error::TrySendError::Full(())) => return Err(NoRoom::Full),
                Err(mpsc::error::TrySendError::Closed(())) => return Err(NoRoom::Closed),
            }
        }
        Ok(Reserved {
            id: self.id,
            permits,
        })
    }
}

/// A slot in every consumer's channel, from [`Outputs::try_reserve`].
pub struct Reserved<'a> {
    id: u32,
    permits: Vec<(mpsc::Permit<'a, Batch>, &'a NodeMetrics)>,
}

impl Reserved<'_> {
    /// Sends a batch into the slots: a copy to each consumer, without waiting.
    pub fn send(mut self, mut batch: Batch) {
        batch.from = self.id;
        let Some((last, to)) = self.permits.pop() else {
            return;
        };
        for (permit, to) in self.permits {
            queue(to, &batch);
            permit.send(batch.clone());
        }
        queue(to, &batch);
        last.send(batch);
    }
}

/// Counts a batch into the consumer's queue before it is sent: the count never goes below
/// zero, since the consumer takes it away only after receiving.
fn queue(to: &NodeMetrics, batch: &Batch) {
    NodeMetrics::shift(&to.queued, batch.len() as i64);
}

/// A consumer received `batch`: it is no longer queued in front of it.
pub fn taken(metrics: &NodeMetrics, batch: &Batch) {
    NodeMetrics::shift(&metrics.queued, -(batch.len() as i64));
}

/// A consumer's channel closes only once it has stopped for good (the run is being torn
/// down): what could not be sent was never written, so its acknowledgement is never released.
fn unwritten(to: &NodeMetrics, batch: Batch) {
    NodeMetrics::shift(&to.queued, -(batch.len() as i64));
    batch.ack.forget();
}

/// What every task of a running pipeline shares.
pub struct RunContext {
    /// Cancelled to stop the sources: on a signal, or when the run has failed.
    pub stop: CancellationToken,
    pub tracker: Arc<Tracker>,
    failure: Mutex<Option<NodeFailure>>,
}

impl RunContext {
    pub fn new(stop: CancellationToken) -> Arc<RunContext> {
        RunContext::with_tracker(stop, Arc::new(Tracker::default()))
    }

    /// A context whose acknowledgements count into `tracker`, which others may read while
    /// the run goes on.
    pub fn with_tracker(stop: CancellationToken, tracker: Arc<Tracker>) -> Arc<RunContext> {
        Arc::new(RunContext {
            stop,
            tracker,
            failure: Mutex::new(None),
        })
    }

    /// Records the first fatal failure and stops the sources; what is in flight drains.
    pub fn fail(&self, failure: NodeFailure) {
        tracing::error!("{failure}");
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(failure);
        self.stop.cancel();
    }

    /// The first fatal failure, if any.
    pub fn failure(&self) -> Option<NodeFailure> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
