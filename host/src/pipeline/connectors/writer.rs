//! The line writer behind the `stdout`, `file` and `null` sinks and the dead-letter writer,
//! each on its own thread.
//!
//! A sink takes batches from its channel, writes each event (the value and a newline, or a
//! JSON object), and holds the batches' acknowledgements until it flushes, which it does as
//! soon as its channel is empty, and at the latest every `buffer` batches: under load that is
//! one flush per burst, at rest one per batch, and the events held unflushed stay bounded. A
//! sink that fails to write reports why, stops the sources, and keeps draining so that the
//! stages can finish; the acknowledgements of what it could not write are never released.
//!
//! File sinks append to what the file holds unless `mode = "truncate"`; with `sync =
//! "fsync"` a flush also waits for the disk before it releases acknowledgements.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::{RunningSink, SinkParts};
use crate::config::{Encoding, SyncMode, WriteMode};
use crate::pipeline::ack::Ack;
use crate::pipeline::batch::Batch;
use crate::pipeline::edge::{self, RunContext};
use crate::pipeline::encode;
use crate::pipeline::failure::NodeFailure;
use crate::pipeline::pool;
use crate::pipeline::report::NodeMetrics;

/// Write buffer of a sink: large enough that a batch is one write call or a few.
const WRITE_BUFFER: usize = 64 << 10;

/// Where a sink writes, and how far a write must go before its acknowledgement is released.
pub(super) enum Out {
    Stdout(BufWriter<std::io::Stdout>),
    Stderr(BufWriter<std::io::Stderr>),
    File(BufWriter<File>, SyncMode),
}

impl Out {
    pub(super) fn stdout() -> Out {
        Out::Stdout(BufWriter::with_capacity(WRITE_BUFFER, std::io::stdout()))
    }

    pub(super) fn stderr() -> Out {
        Out::Stderr(BufWriter::new(std::io::stderr()))
    }

    pub(super) fn open(path: &Path, mode: WriteMode, sync: SyncMode) -> std::io::Result<Out> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = File::options();
        match mode {
            // What an earlier run wrote stays: its events were acknowledged, perhaps committed.
            // Read too: to see whether an earlier run's last line was cut.
            WriteMode::Append => options.append(true).create(true).read(true),
            WriteMode::Truncate => options.write(true).create(true).truncate(true),
        };
        let mut file = options
            .open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        if mode == WriteMode::Append {
            close_a_cut_line(&mut file)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        }
        Ok(Out::File(
            BufWriter::with_capacity(WRITE_BUFFER, file),
            sync,
        ))
    }

    pub(super) fn writer(&mut self) -> &mut dyn Write {
        match self {
            Out::Stdout(w) => w,
            Out::Stderr(w) => w,
            Out::File(w, _) => w,
        }
    }

    /// Makes what was written as durable as the sink's `sync` asks: in the operating system,
    /// or on the disk.
    fn commit(&mut self) -> std::io::Result<()> {
        match self {
            Out::Stdout(w) => w.flush(),
            Out::Stderr(w) => w.flush(),
            Out::File(w, sync) => {
                w.flush()?;
                if *sync == SyncMode::Fsync {
                    w.get_ref().sync_data()?;
                }
                Ok(())
            }
        }
    }
}

/// Ends the file with a line ending if it does not end with one. A crash (`kill -9`, a power
/// cut) can leave the last line half written: the write buffer goes out whenever it fills,
/// not only at line ends. That line's events were never acknowledged and come again; closing
/// the cut line keeps the first line this run appends whole, instead of glued to it.
fn close_a_cut_line(file: &mut File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] != b'\n' {
        file.write_all(b"\n")?;
    }
    Ok(())
}

/// A line sink: its name, where it writes (nothing, for `null`) and how.
pub(super) struct LineSink {
    pub name: String,
    pub out: Option<Out>,
    pub encoding: Encoding,
}

/// Starts a line sink's thread; it returns why it failed, if it did.
pub(super) fn spawn(sink: LineSink, parts: SinkParts) -> std::io::Result<RunningSink> {
    let LineSink {
        name,
        out,
        encoding,
    } = sink;
    let SinkParts {
        input: mut rx,
        metrics,
        ctx,
        buffer,
    } = parts;
    let stdout = matches!(out, Some(Out::Stdout(_)));
    std::thread::Builder::new()
        .name(format!("weir-sink-{name}"))
        .spawn(move || {
            let mut writer = Writer {
                out,
                held: Vec::with_capacity(buffer + 1),
                buffer,
                failure: None,
                closed: false,
            };
            while let Some(batch) = rx.blocking_recv() {
                let n = batch.len() as u64;
                let bytes = batch.events.value_bytes();
                edge::taken(&metrics, &batch);
                NodeMetrics::add(&metrics.events_in, n);
                NodeMetrics::add(&metrics.bytes_in, bytes);
                if writer.failure.is_some() || writer.closed {
                    // Never written, so never acknowledged: a checkpoint must not pass them.
                    batch.ack.forget();
                    continue;
                }
                let written = writer.write(&batch, encoding).map(|()| {
                    NodeMetrics::add(&metrics.events_out, n);
                    NodeMetrics::add(&metrics.bytes_out, bytes);
                    metrics.tap.offer(&batch.events, &batch.provenance);
                });
                let Batch { ack, events, .. } = batch;
                pool::recycle(events);
                let result = match written {
                    Ok(()) => writer.hold(ack, rx.is_empty()),
                    Err(e) => {
                        ack.forget();
                        Err(e)
                    }
                };
                match result {
                    Ok(()) => {}
                    // The reader of standard output went away (`weir run … | head -1`): stop
                    // reading, as a Unix tool would, without calling it a failure. What
                    // was not written is not acknowledged.
                    Err(e) if stdout && e.kind() == std::io::ErrorKind::BrokenPipe => {
                        writer.forget_held();
                        writer.out = None;
                        writer.closed = true;
                        ctx.stop.cancel();
                    }
                    Err(e) => writer.fail(NodeFailure::write(format!("sink `{name}`"), e), &ctx),
                }
            }
            writer.close(&format!("sink `{name}`"), &ctx)
        })
}

/// A sink's output and the acknowledgements it holds until the next flush.
pub(super) struct Writer {
    pub out: Option<Out>,
    pub held: Vec<Ack>,
    pub buffer: usize,
    pub failure: Option<NodeFailure>,
    /// Set when the reader of standard output went away.
    pub closed: bool,
}

impl Writer {
    fn write(&mut self, batch: &Batch, encoding: Encoding) -> std::io::Result<()> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        let w = out.writer();
        for event in batch.events.iter() {
            match encoding {
                Encoding::Text => w.write_all(event.value())?,
                Encoding::Json => encode::event(w, event, &batch.provenance)?,
            }
            w.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Holds `ack` until written out: flushes when the channel is idle, and at the latest
    /// every `buffer` batches, since held acknowledgements are events in flight.
    pub(super) fn hold(&mut self, ack: Ack, idle: bool) -> std::io::Result<()> {
        self.held.push(ack);
        if idle || self.held.len() >= self.buffer {
            if let Some(out) = &mut self.out {
                out.commit()?;
            }
            self.held.clear();
        }
        Ok(())
    }

    /// Records the sink's failure: nothing it holds is ever acknowledged, the run stops.
    pub(super) fn fail(&mut self, failure: NodeFailure, ctx: &RunContext) {
        self.forget_held();
        ctx.fail(failure.clone());
        self.failure = Some(failure);
    }

    fn forget_held(&mut self) {
        for ack in self.held.drain(..) {
            ack.forget();
        }
    }

    /// The final flush; releases what it covers.
    pub(super) fn close(mut self, what: &str, ctx: &RunContext) -> Result<(), NodeFailure> {
        if self.failure.is_none()
            && let Some(out) = &mut self.out
            && let Err(e) = out.commit()
        {
            let failure = NodeFailure::write(what, e);
            self.forget_held();
            ctx.fail(failure.clone());
            return Err(failure);
        }
        match self.failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}
