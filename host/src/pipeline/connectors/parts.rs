//! [`SourceParts`]: what every source needs from the run (its outputs, metrics, dead-letter
//! channel and checkpoint), and how a source hands it a batch, an over-long line or its dead
//! letters. The `file`, `stdin`, generator and NATS sources all take it.

use std::sync::Arc;

use weir_sandbox::Events;

use crate::pipeline::ack::Ledger;
use crate::pipeline::batch::Batch;
use crate::pipeline::checkpoint::Positions;
use crate::pipeline::connectors::lines::{Flow, MAX_LINE, OVERSIZED_KEPT};
use crate::pipeline::dead_letter::{DeadLetters, Reason};
use crate::pipeline::edge::{DeadLetterTx, Outputs, RunContext};
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
    /// For a source that keeps a position: its ledger, and whether to ignore where it was.
    pub checkpoint: Option<SourceCheckpoint>,
    /// Whether its batches carry their events' origins (a NATS sink is in the pipeline).
    pub tracked: bool,
}

/// A source's checkpoint: where it commits, and the ledger it commits from.
pub(crate) struct SourceCheckpoint {
    pub path: std::path::PathBuf,
    pub positions: Arc<Positions>,
    /// `weir run --from-start`: read from the start, whatever the checkpoint says.
    pub from_start: bool,
}

impl SourceParts {
    pub(crate) fn emit(&self, events: Events) -> Batch {
        self.emit_acked(events, None, None)
    }

    /// A batch whose acknowledgement also tells `ledger` when batch `seq` is done; `source`,
    /// in a tracked pipeline, says where its events are in the source.
    pub(crate) fn emit_acked(
        &self,
        events: Events,
        ledger: Option<(Arc<dyn Ledger>, u64)>,
        source: Option<SourceBatch>,
    ) -> Batch {
        let n = events.len() as u64;
        let bytes = events.value_bytes();
        NodeMetrics::add(&self.metrics.events_in, n);
        NodeMetrics::add(&self.metrics.events_out, n);
        NodeMetrics::add(&self.metrics.bytes_in, bytes);
        NodeMetrics::add(&self.metrics.bytes_out, bytes);
        let origin = source.map(|s| Origin::fresh(Arc::new(s), events.len()));
        let batch = Batch::new(events, self.ctx.tracker.emit_to(n, ledger), origin);
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
        tracing::error!(
            source,
            line,
            len,
            "line over {MAX_LINE} bytes; dead-lettered"
        );
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
                    "line {line} is {len} bytes, over the {MAX_LINE}-byte limit; its first {OVERSIZED_KEPT} bytes are kept"
                )),
                attempts: 0,
            },
            None,
        );
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
