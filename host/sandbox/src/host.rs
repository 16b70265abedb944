//! What one plugin instance's store holds, and the host side of the guest's imports.
//!
//! [`HostState`] owns the instance's WASI context (no directories, no environment, no
//! network, empty stdin, unless the stage grants them), its memory limiter, and a
//! [`GuestLog`]: the one funnel through
//! which the guest's `log` calls, stdout and stderr reach the host's log. The funnel is
//! rate-limited by a [`LogQuota`] shared by every instance of a stage (an instance replaced
//! after each trap does not start a fresh quota), and every line is cut and escaped as guest
//! text ([`crate::text`]), so a noisy guest costs a counter, never host memory, a flooded
//! log or a forged log line; it also keeps the guest's last stderr lines, which name a
//! panic's cause.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::contract::v01::weir::stage::log as log01;
use crate::contract::v02::weir::stage::log::{Host as LogHost, Level};
use crate::keyed::KeyedState;
use crate::limits::Grant;
use crate::text::guest_text;

/// Guest log lines forwarded per second, per stage, after a burst of the same size.
/// Blocks a guest from flooding the host log (and the disk behind it).
pub const LOG_LINES_PER_SECOND: u32 = 100;
/// Longest guest log line kept; the rest is cut. Blocks one huge line from being copied
/// into the host log.
const MAX_LOG_LINE: usize = 1024;
/// Stderr lines kept to explain a trap (a Rust panic prints its message there first).
const RECENT_STDERR_LINES: usize = 8;
/// Table elements an instance may grow to. Blocks a guest from making the host allocate an
/// unbounded table (each element is a pointer on the host).
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The store data of one plugin instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) log: Arc<GuestLog>,
    /// The stage's keyed state, for a plugin that imports it.
    pub(crate) state: Option<Arc<dyn KeyedState>>,
    /// State writes refused by a limit during the current call.
    pub(crate) state_refusals: u64,
    /// The watermark each event of the current call saw; empty when the stage has none.
    pub(crate) watermarks: Vec<u64>,
}

impl HostState {
    /// The state of a new instance: WASI grants exactly what `grant` names.
    pub fn new(
        stage: Arc<str>,
        memory_cap: u64,
        grant: &Grant,
        quota: Arc<LogQuota>,
    ) -> Result<HostState, String> {
        let log = Arc::new(GuestLog::new(stage, quota));
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(GuestStream {
            log: Arc::clone(&log),
            stream: Stream::Stdout,
        })
        .stderr(GuestStream {
            log: Arc::clone(&log),
            stream: Stream::Stderr,
        });
        for dir in &grant.dirs {
            // Read-only: a stage transforms events; writing to the host is not its business.
            wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)
                .map_err(|e| {
                    format!(
                        "cannot open the granted directory {}: {e}",
                        dir.host.display()
                    )
                })?;
        }
        for name in &grant.env {
            if let Ok(value) = std::env::var(name) {
                wasi.env(name, value);
            }
        }
        if grant.network {
            wasi.inherit_network()
                .allow_ip_name_lookup(true)
                .allow_tcp(true)
                .allow_udp(true);
        }
        let wasi = wasi.build();
        Ok(HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                cap: usize::try_from(memory_cap).unwrap_or(usize::MAX),
                peak: 0,
                hit: None,
            },
            log,
            state: None,
            state_refusals: 0,
            watermarks: Vec::new(),
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl LogHost for HostState {
    fn log(&mut self, level: Level, message: String) {
        self.log.line(Stream::Log(level), message.as_bytes());
    }
}

/// A 0.1 plugin's `log` import: the same funnel, its levels mapped one to one.
impl log01::Host for HostState {
    fn log(&mut self, level: log01::Level, message: String) {
        let level = match level {
            log01::Level::Trace => Level::Trace,
            log01::Level::Debug => Level::Debug,
            log01::Level::Info => Level::Info,
            log01::Level::Warn => Level::Warn,
            log01::Level::Error => Level::Error,
        };
        self.log.line(Stream::Log(level), message.as_bytes());
    }
}

/// Caps linear memory per store and remembers when the cap was hit, so that the trap that
/// follows is reported as `memory-limit` and not as whatever the guest did next.
pub struct MemoryLimiter {
    cap: usize,
    /// The largest linear memory the instance has grown to.
    pub(crate) peak: usize,
    /// Set when the cap was hit, with what was asked for.
    pub(crate) hit: Option<String>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = Some(format!(
                "memory limit reached: the instance asked for {desired} bytes, the cap is {}",
                self.cap
            ));
            // An error (not `Ok(false)`) turns the failed growth into a trap: a guest that
            // cannot get memory must stop now, not carry on with an allocator in a bad state.
            return Err(wasmtime::format_err!(
                "memory limit reached: the instance asked for {desired} bytes, the cap is {}",
                self.cap
            ));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
    Log(Level),
}

/// The log lines a stage's instances may still write this second, shared by all of them.
#[derive(Debug)]
pub struct LogQuota {
    inner: Mutex<Quota>,
}

#[derive(Debug)]
struct Quota {
    tokens: u32,
    refilled: Instant,
    /// Lines dropped since the last report of them, and in all.
    dropped_unreported: u64,
    dropped: u64,
}

impl LogQuota {
    pub fn new() -> Arc<LogQuota> {
        Arc::new(LogQuota {
            inner: Mutex::new(Quota {
                tokens: LOG_LINES_PER_SECOND,
                refilled: Instant::now(),
                dropped_unreported: 0,
                dropped: 0,
            }),
        })
    }

    /// Whether one more line may go to the host log now; reports the lines dropped in the
    /// last second once the quota refills.
    fn take(&self, stage: &str) -> bool {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(q.refilled).as_secs() >= 1 {
            q.tokens = LOG_LINES_PER_SECOND;
            q.refilled = now;
            if q.dropped_unreported > 0 {
                tracing::warn!(target: "weir::guest", stage, dropped = q.dropped_unreported,
                    "guest output over {LOG_LINES_PER_SECOND} lines/s was dropped");
                q.dropped_unreported = 0;
            }
        }
        if q.tokens == 0 {
            q.dropped_unreported += 1;
            q.dropped += 1;
            return false;
        }
        q.tokens -= 1;
        true
    }

    /// Lines dropped by the rate limit so far.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).dropped
    }
}

/// The rate-limited funnel from a guest to the host log.
pub struct GuestLog {
    stage: Arc<str>,
    quota: Arc<LogQuota>,
    inner: Mutex<LogInner>,
}

struct LogInner {
    partial_out: Vec<u8>,
    partial_err: Vec<u8>,
    /// Whether the current stdout/stderr line was cut at its cap and its rest is dropped.
    cut_out: bool,
    cut_err: bool,
    recent_stderr: VecDeque<String>,
}

impl GuestLog {
    fn new(stage: Arc<str>, quota: Arc<LogQuota>) -> GuestLog {
        GuestLog {
            stage,
            quota,
            inner: Mutex::new(LogInner {
                partial_out: Vec::new(),
                partial_err: Vec::new(),
                cut_out: false,
                cut_err: false,
                recent_stderr: VecDeque::new(),
            }),
        }
    }

    /// Lines the stage's instances wrote that were dropped by the rate limit.
    pub fn dropped(&self) -> u64 {
        self.quota.dropped()
    }

    /// The guest's last stderr lines, oldest first, including an unfinished last line.
    pub fn recent_stderr(&self) -> Vec<String> {
        let inner = self.lock();
        let mut lines: Vec<String> = inner.recent_stderr.iter().cloned().collect();
        if !inner.partial_err.is_empty() {
            lines.push(String::from_utf8_lossy(&inner.partial_err).into_owned());
        }
        lines
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        // A poisoned lock only means a panic elsewhere mid-update of counters; the data is
        // still usable for logging.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends raw output from stdout or stderr, forwarding each complete line.
    fn write(&self, stream: Stream, bytes: &[u8]) {
        let mut guard = self.lock();
        let inner: &mut LogInner = &mut guard;
        for chunk in bytes.split_inclusive(|&b| b == b'\n') {
            let complete = chunk.ends_with(b"\n");
            let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
            let (partial, cut) = match stream {
                Stream::Stderr => (&mut inner.partial_err, &mut inner.cut_err),
                _ => (&mut inner.partial_out, &mut inner.cut_out),
            };
            if *cut {
                // The rest of a line already forwarded at its cap: dropped up to its end.
                *cut = !complete;
                continue;
            }
            let room = MAX_LOG_LINE.saturating_sub(partial.len());
            partial.extend_from_slice(&body[..body.len().min(room)]);
            if complete || partial.len() >= MAX_LOG_LINE {
                *cut = !complete;
                let mut line = std::mem::take(partial);
                if *cut {
                    line.extend_from_slice(b" [cut: the rest of the line is dropped]");
                }
                self.emit(inner, stream, &line);
            }
        }
    }

    /// Forwards one whole line (a `log` call), cut as guest text.
    fn line(&self, stream: Stream, bytes: &[u8]) {
        let mut inner = self.lock();
        self.emit(&mut inner, stream, bytes);
    }

    fn emit(&self, inner: &mut LogInner, stream: Stream, line: &[u8]) {
        // One line, escaped and cut: a guest cannot forge a host log line or flood it.
        let text = guest_text(line);
        if let Stream::Stderr = stream {
            if inner.recent_stderr.len() == RECENT_STDERR_LINES {
                inner.recent_stderr.pop_front();
            }
            inner.recent_stderr.push_back(text.clone());
        }
        let stage = &*self.stage;
        if !self.quota.take(stage) {
            return;
        }
        match stream {
            Stream::Stdout => {
                tracing::info!(target: "weir::guest", stage, stream = "stdout", "{text}")
            }
            Stream::Stderr => {
                tracing::warn!(target: "weir::guest", stage, stream = "stderr", "{text}")
            }
            Stream::Log(Level::Trace) => tracing::trace!(target: "weir::guest", stage, "{text}"),
            Stream::Log(Level::Debug) => tracing::debug!(target: "weir::guest", stage, "{text}"),
            Stream::Log(Level::Info) => tracing::info!(target: "weir::guest", stage, "{text}"),
            Stream::Log(Level::Warn) => tracing::warn!(target: "weir::guest", stage, "{text}"),
            Stream::Log(Level::Error) => tracing::error!(target: "weir::guest", stage, "{text}"),
        }
    }
}

/// A guest's stdout or stderr: every write goes to the [`GuestLog`]; never fails, never
/// blocks, never buffers more than one capped line.
struct GuestStream {
    log: Arc<GuestLog>,
    stream: Stream,
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI 0.3 guests use this path, and the host does not link WASI 0.3.
        Box::new(tokio::io::sink())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(GuestStream {
            log: Arc::clone(&self.log),
            stream: self.stream,
        })
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.log.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}
