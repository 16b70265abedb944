//! The ceiling: the workloads as a plain native pipeline, with no weir host at all.
//!
//! This is what a good engineer would write by hand for the same work: a reader thread, the
//! stages as plain Rust functions (the plugins' own logic: `upper_into`, `parse_into`,
//! `AuthFilter::keep`, `redact_into`), a writer thread, and between them bounded channels
//! (`std::sync::mpsc::sync_channel`, four batches) of batches of 256 events. A batch is two
//! flat buffers: every value's bytes in one `Vec<u8>` and the end offset of each value in a
//! `Vec<u32>`. Two shapes, so that each shape of weir has its counterpart: one thread per
//! stage (weir with `chain = false`), and the three stages chained on one thread (weir's
//! default chaining).
//!
//! The writer does what weir's sink does: W1 and W2 count events and bytes and write nothing
//! (and check the value of the first event of every batch against what it must be); W3 writes
//! each value and a newline to a file through a 64 KiB buffer.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::spec::{self, BATCH, W12_SIZE, Workload};

/// Batches each channel holds, as weir's default `buffer`.
const CHANNEL: usize = 4;

/// Events of one batch: value `i` is `data[ends[i - 1]..ends[i]]` (from 0 for the first).
#[derive(Default)]
pub struct Flat {
    data: Vec<u8>,
    ends: Vec<u32>,
}

impl Flat {
    fn with_capacity(events: usize, bytes: usize) -> Flat {
        Flat {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(events),
        }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn push(&mut self, value: &[u8]) {
        self.data.extend_from_slice(value);
        self.end();
    }

    /// Closes the value whose bytes were appended to `data` since the last one.
    fn end(&mut self) {
        self.ends.push(self.data.len() as u32);
    }

    fn values(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let value = &self.data[start..end as usize];
            start = end as usize;
            value
        })
    }
}

/// One stage's logic on a batch; rejected events are counted, not written.
enum Step {
    Pass,
    Upper,
    Parse,
    Filter(Box<auth_filter::AuthFilter>),
    Redact,
}

impl Step {
    fn of(workload: Workload) -> [Step; 3] {
        match workload {
            Workload::W1 => [Step::Pass, Step::Pass, Step::Pass],
            Workload::W2 => [Step::Upper, Step::Upper, Step::Upper],
            Workload::W3 => [
                Step::Parse,
                Step::Filter(Box::new(auth_filter::AuthFilter::new())),
                Step::Redact,
            ],
        }
    }

    fn run(&self, input: Flat, rejects: &mut u64) -> Flat {
        // Outputs are never longer than their input but for `parse`'s (JSON adds keys and
        // quotes): one reservation per batch, never a regrowth.
        let bytes = match self {
            // The batch itself moves on: nothing to copy.
            Step::Pass => return input,
            Step::Parse => input.data.len() * 2,
            _ => input.data.len(),
        };
        let mut out = Flat::with_capacity(input.len(), bytes);
        match self {
            Step::Pass => unreachable!("returned above"),
            Step::Upper => input.values().for_each(|v| {
                uppercase::upper_into(v, &mut out.data);
                out.end();
            }),
            Step::Parse => {
                input
                    .values()
                    .for_each(|v| match sshd_parse::parse_into(v, &mut out.data) {
                        Ok(()) => out.end(),
                        Err(_) => *rejects += 1,
                    })
            }
            Step::Filter(filter) => input.values().for_each(|v| match filter.keep(v) {
                Ok(true) => out.push(v),
                Ok(false) => {}
                Err(_) => *rejects += 1,
            }),
            Step::Redact => {
                input
                    .values()
                    .for_each(|v| match redact_ip::redact_into(v, &mut out.data) {
                        Ok(()) => out.end(),
                        Err(_) => *rejects += 1,
                    })
            }
        }
        out
    }
}

/// The two shapes of the ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One thread per stage.
    Threads,
    /// The three stages one after the other on one thread.
    Chained,
}

/// What a run of the ceiling did.
pub struct CeilingRun {
    pub events_in: u64,
    pub events_out: u64,
    pub bytes_out: u64,
    pub rejects: u64,
    pub elapsed: Duration,
}

/// Runs a workload of `size` (W1/W2 events, W3 copies of the log) through the ceiling; W3
/// writes to `output`.
pub fn run(workload: Workload, size: u64, shape: Shape, output: &Path) -> Result<CeilingRun> {
    let started = Instant::now();
    let (tx, mut rx) = sync_channel::<Flat>(CHANNEL);
    let reader = std::thread::spawn(move || read(workload, size, &tx));
    let mut stages: Vec<JoinHandle<u64>> = Vec::new();
    let steps = Step::of(workload);
    let groups: Vec<Vec<Step>> = match shape {
        Shape::Threads => steps.into_iter().map(|s| vec![s]).collect(),
        Shape::Chained => vec![steps.into_iter().collect()],
    };
    for group in groups {
        let (next_tx, next_rx) = sync_channel::<Flat>(CHANNEL);
        stages.push(std::thread::spawn(move || stage(&group, &rx, &next_tx)));
        rx = next_rx;
    }
    let out = match workload {
        Workload::W3 => Some(std::fs::File::create(output)?),
        _ => None,
    };
    let writer = std::thread::spawn(move || write(workload, rx, out));
    let events_in = reader.join().expect("the reader thread")?;
    let mut rejects = 0;
    for s in stages {
        rejects += s.join().expect("a stage thread");
    }
    let (events_out, bytes_out) = writer.join().expect("the writer thread")?;
    Ok(CeilingRun {
        events_in,
        events_out,
        bytes_out,
        rejects,
        elapsed: started.elapsed(),
    })
}

/// A stage thread: each batch through its steps, in order; returns the events it rejected.
fn stage(steps: &[Step], rx: &Receiver<Flat>, tx: &SyncSender<Flat>) -> u64 {
    let mut rejects = 0;
    for mut batch in rx {
        for step in steps {
            batch = step.run(batch, &mut rejects);
        }
        if batch.len() > 0 && tx.send(batch).is_err() {
            break;
        }
    }
    rejects
}

/// The reader thread: W1/W2's generated values, or W3's log read `size` times, line by line.
fn read(workload: Workload, size: u64, tx: &SyncSender<Flat>) -> Result<u64> {
    match workload {
        Workload::W3 => read_log(size, tx),
        _ => {
            // Every value is a window of one repeating alphabet: one copy per value.
            let pattern: Vec<u8> = (0..W12_SIZE + 26).map(|j| b'a' + (j % 26) as u8).collect();
            let mut i = 0;
            while i < size {
                let n = (size - i).min(BATCH as u64);
                let mut batch = Flat::with_capacity(n as usize, n as usize * W12_SIZE as usize);
                for k in i..i + n {
                    let start = (k % 26) as usize;
                    batch.push(&pattern[start..start + W12_SIZE as usize]);
                }
                tx.send(batch).context("the first stage stopped")?;
                i += n;
            }
            Ok(size)
        }
    }
}

/// W3's source: the log read `repeat` times, split on `\n` without a trailing `\r`, straight
/// from the reader's buffer into the batch (a line split by a buffer refill is gathered).
fn read_log(repeat: u64, tx: &SyncSender<Flat>) -> Result<u64> {
    let mut batch = Flat::with_capacity(BATCH, BATCH * 128);
    let mut partial = Vec::new();
    let mut lines = 0u64;
    let mut line = |batch: &mut Flat, bytes: &[u8]| -> Result<()> {
        batch.push(bytes.strip_suffix(b"\r").unwrap_or(bytes));
        lines += 1;
        if batch.len() == BATCH {
            let full = std::mem::replace(batch, Flat::with_capacity(BATCH, BATCH * 128));
            tx.send(full).context("the first stage stopped")?;
        }
        Ok(())
    };
    for _ in 0..repeat {
        let mut reader = BufReader::with_capacity(64 << 10, std::fs::File::open(spec::w3_log())?);
        loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let len = buf.len();
            let mut rest = buf;
            while let Some(pos) = memchr::memchr(b'\n', rest) {
                if partial.is_empty() {
                    line(&mut batch, &rest[..pos])?;
                } else {
                    partial.extend_from_slice(&rest[..pos]);
                    line(&mut batch, &partial)?;
                    partial.clear();
                }
                rest = &rest[pos + 1..];
            }
            partial.extend_from_slice(rest);
            reader.consume(len);
        }
        // The log's last line has no line ending: it ends with the copy.
        if !partial.is_empty() {
            line(&mut batch, &partial)?;
            partial.clear();
        }
    }
    if batch.len() > 0 {
        tx.send(batch).context("the first stage stopped")?;
    }
    Ok(lines)
}

/// The writer thread; returns the events and bytes it took.
fn write(workload: Workload, rx: Receiver<Flat>, out: Option<std::fs::File>) -> Result<(u64, u64)> {
    let mut events = 0u64;
    let mut bytes = 0u64;
    let mut out = out.map(|f| BufWriter::with_capacity(64 << 10, f));
    for batch in rx {
        if let Some(w) = &mut out {
            for value in batch.values() {
                w.write_all(value)?;
                w.write_all(b"\n")?;
            }
        } else if let Some(first) = batch.values().next() {
            // The content check of W1/W2: the first value of every batch, every byte.
            let expected = spec::expected_value(workload, events);
            ensure!(
                first == expected.as_slice(),
                "event {events} is {:?}",
                String::from_utf8_lossy(first)
            );
        }
        events += batch.len() as u64;
        bytes += batch.data.len() as u64;
    }
    if let Some(w) = &mut out {
        w.flush()?;
    }
    Ok((events, bytes))
}
