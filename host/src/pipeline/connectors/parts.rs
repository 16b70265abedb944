//! What the run gives a connector: [`SourceParts`] (a source's outputs, metrics, dead-letter
//! channel and the place for its state), with how a source hands on a batch, an over-long
//! line or its dead letters; and [`SinkParts`] (a sink's input channel, metrics and flush
//! bound).

use std::sync::Arc;

use weir_sandbox::Events;

use crate::pipeline::ack::{BatchPlace, Ledger};
use crate::pipeline::batch::Batch;
use crate::pipeline::connectors::lines::{Flow, MAX_LINE, OVERSIZED_KEPT};
use crate::pipeline::dead_letter::{DeadLetters, Reason};
use crate::pipeline::edge::{DeadLetterTx, Outputs, Receiver, RunContext};
use crate::pipeline::failure::FailureKind;
use crate::pipeline::origin::{Origin, SourceBatch};
use crate::pipeline::provenance::Provenance;
use crate::pipeline::report::NodeMetrics;

/// What a source needs from the run.
pub(crate) struct SourceParts {
    pub outputs: Outputs,
    pub metrics: Arc<NodeMetrics>,
    pub ctx: Arc<RunContext>,
    pub dead_letters: DeadLetterTx,
    /// With a data folder: where the source may keep what it must find again after a
    /// restart.
    pub state: Option<SourceState>,
    /// Whether its batches carry their events' origins (a NATS source or sink is in the
    /// pipeline).
    pub tracked: bool,
    /// An output to each consumer alone, by its name: for a source that sends each event to
    /// one consumer of its choosing (a redrive, to the stage that failed it) instead of
    /// every event to all.
    pub routes: Vec<(String, Outputs)>,
}

/// A source's place in the data folder.
pub(crate) struct SourceState {
    /// Its checkpoint file.
    pub checkpoint: std::path::PathBuf,
    /// How often it commits its position (`checkpoint_interval`).
    pub interval: std::time::Duration,
    /// `weir run --from-start`: read from the start, whatever the checkpoint says.
    pub from_start: bool,
    /// With stages that keep state in the data folder: the commit rounds, which then write
    /// the source's position with the state (its checkpoint file is set from them at start).
    pub durable: Option<std::sync::Arc<crate::pipeline::state::Durable>>,
}

/// What a sink needs from the run.
pub(crate) struct SinkParts {
    pub input: Receiver,
    pub metrics: Arc<NodeMetrics>,
    pub ctx: Arc<RunContext>,
    /// Flush at the latest every this many batches (the pipeline's `buffer`): held
    /// acknowledgements are events in flight.
    pub buffer: usize,
}

impl SourceParts {
    pub(crate) fn emit(&self, events: Events) -> Batch {
        self.emit_acked(events, None, None)
    }

    /// [`SourceParts::emit_acked`] for a batch at `place` in its source.
    pub(crate) fn emit_placed(
        &self,
        events: Events,
        ledger: Option<(Arc<dyn Ledger>, u64)>,
        source: Option<SourceBatch>,
        place: BatchPlace,
    ) -> Batch {
        self.emit_with(events, ledger, source, Some(place))
    }

    /// A batch whose acknowledgement also tells `ledger` when batch `seq` is done; `source`,
    /// in a tracked pipeline, says where its events are in the source.
    pub(crate) fn emit_acked(
        &self,
        events: Events,
        ledger: Option<(Arc<dyn Ledger>, u64)>,
        source: Option<SourceBatch>,
    ) -> Batch {
        self.emit_with(events, ledger, source, None)
    }

    fn emit_with(
        &self,
        events: Events,
        ledger: Option<(Arc<dyn Ledger>, u64)>,
        source: Option<SourceBatch>,
        place: Option<BatchPlace>,
    ) -> Batch {
        let n = events.len() as u64;
        let bytes = events.value_bytes();
        NodeMetrics::add(&self.metrics.events_in, n);
        NodeMetrics::add(&self.metrics.events_out, n);
        NodeMetrics::add(&self.metrics.bytes_in, bytes);
        NodeMetrics::add(&self.metrics.bytes_out, bytes);
        let origin = source.map(|s| Origin::fresh(Arc::new(s), events.len()));
        let ack = self.ctx.tracker.emit_placed(n, ledger, place);
        let batch = Batch::new(events, ack, origin);
        self.metrics.tap.offer(&batch.events, &batch.provenance);
        batch
    }

    /// An over-long line: dead-lettered with its first bytes, counted as a failure here.
    pub(crate) fn oversized(
        &self,
        source: &str,
        line: u64,
        kept: Vec<u8>,
        len: usize,
        ledger: Option<(Arc<dyn Ledger>, u64)>,
    ) -> DeadLetters {
        self.oversized_over(source, (line, kept, len), MAX_LINE, ledger)
    }

    /// A line over `limit` bytes (its number, first bytes and length): dead-lettered with its
    /// first bytes, counted as a failure here.
    pub(crate) fn oversized_over(
        &self,
        source: &str,
        (line, kept, len): (u64, Vec<u8>, usize),
        limit: usize,
        ledger: Option<(Arc<dyn Ledger>, u64)>,
    ) -> DeadLetters {
        tracing::error!(source, line, len, "line over {limit} bytes; dead-lettered");
        self.metrics.fail(FailureKind::Oversized, 1);
        let mut letters = DeadLetters::new(
            Arc::from(source),
            Arc::from(""),
            Provenance::default(),
            self.ctx.tracker.emit_to(1, ledger),
        );
        let mut event = Events::new();
        event.push_value(&kept);
        letters.push(
            event.get(0),
            Reason {
                kind: FailureKind::Oversized,
                message: Arc::from(format!(
                    "line {line} is {len} bytes, over the {limit}-byte limit; its first {OVERSIZED_KEPT} bytes are kept"
                )),
                attempts: 0,
            },
            None,
        );
        self.metrics.reasons.record(&letters);
        letters
    }

    /// Sends dead letters from a blocking thread.
    pub(crate) fn dead_letter_blocking(&self, letters: DeadLetters) {
        self.metrics.tap.offer_dead(&letters);
        if let Err(lost) = self.dead_letters.blocking_send(letters) {
            lost.0.ack.forget();
        }
    }

    /// `Stop` once the run is stopping.
    pub(crate) fn flow(&self) -> Flow {
        if self.ctx.stop.is_cancelled() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}
