//! The range every number and duration of a pipeline file must fall in, each with the threat
//! it blocks. A value out of range is a [`ConfigError`](crate::config::ConfigError) naming the
//! file, line, key and range; nothing is clamped. The README's pipeline-file reference lists
//! the same ranges.
//!
//! Two fractions have no constant: `breaker.threshold` is above 0 and at most 1 (a threshold
//! of 0 would trip on a window without failures), and `canary.max_failure_rate` is from 0 to 1.
//! NaN is refused in both.

use std::ops::RangeInclusive;
use std::time::Duration;

/// `batch_size` (pipeline and source): events per batch. Blocks a batch so large that its
/// buffers, reserved up front, or the in-flight bound (batches × batch size) exhaust memory.
pub const BATCH_SIZE: RangeInclusive<usize> = 1..=65_536;

/// `linger` (pipeline and source): how long a partly filled batch waits. Blocks a deadline
/// past the clock's range (`Instant + linger` overflows) and batches that wait for hours.
pub const LINGER: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(60);

/// `buffer`: batches each channel holds. Blocks an in-flight bound (channels × buffer × batch
/// size events) beyond what the host can hold while a slow sink applies backpressure.
pub const BUFFER: RangeInclusive<usize> = 1..=1024;

/// `repeat` of a file source. Blocks a run of practically endless length from a typo, and keeps
/// the events read (repeat × lines) within the `u64` counters.
pub const REPEAT: RangeInclusive<u64> = 1..=1_000_000;

/// `count` of a generate source; 0 makes no events. With [`GENERATE_SIZE`], keeps the bytes made
/// (count × size, at most 1.7 × 10^19) within the `u64` byte counters.
pub const COUNT: RangeInclusive<u64> = 0..=1_000_000_000_000;

/// `size` of a generate source, in bytes. Blocks one allocation per event of whatever size the
/// file names (and the arithmetic on it overflowing); the same cap as a source's longest line.
pub const GENERATE_SIZE: RangeInclusive<u64> = 0..=16 << 20;

/// `workers` of a stage. Each worker is a thread and a live instance whose slot in the pooling
/// allocator is reserved up front; blocks one stage from taking the host's threads and slots.
pub const WORKERS: RangeInclusive<usize> = 1..=64;

/// `fuel` per event. A call gets events × fuel, which stays well within `u64` at the largest
/// batch; 10^12 is minutes of CPU per event, past which `timeout` is the only limit left.
pub const FUEL: RangeInclusive<u64> = 1..=1_000_000_000_000;

/// `timeout` per call. Blocks a deadline past the clock's range (a panic in `Instant + d`) and
/// a stuck call holding a worker, and the acknowledgements of its batch, for days.
pub const TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(3600);

/// `memory` per instance. Below one wasm page (64 KiB) nothing runs; above 4 GiB a 32-bit guest
/// cannot address it, and the pooling allocator reserves no more.
pub const MEMORY: RangeInclusive<u64> = 64 << 10..=4 << 30;

/// `retries` of an event that asks for one. Retries are at most 1 s apart, so this bounds how
/// long one event can hold its batch's acknowledgement (and the backpressure behind it).
pub const RETRIES: RangeInclusive<u32> = 0..=100;

/// `max_output_events` per input event. Blocks an amplification bomb: with the largest batch,
/// a call still hands the host at most 2^32 events.
pub const MAX_OUTPUT_EVENTS: RangeInclusive<usize> = 1..=65_536;

/// `max_output_bytes` per call. Blocks one call from handing the host more data to hold and
/// pass on than a guest's whole memory could.
pub const MAX_OUTPUT_BYTES: RangeInclusive<u64> = 1..=1 << 30;

/// `max_value_size` per output value. Blocks single values that every later stage and sink
/// must copy from being larger than a guest's memory could hold.
pub const MAX_VALUE_SIZE: RangeInclusive<u64> = 1..=1 << 30;

/// `state_max_keys` of a stage. Blocks a state whose key count the host cannot track; the
/// upper end is far beyond what fits in memory, for a state kept on disk.
pub const STATE_MAX_KEYS: RangeInclusive<usize> = 1..=1_000_000_000;

/// `state_max_bytes` of a stage (keys and values). Blocks a plugin from filling the host's
/// memory (or disk) with state; 1 TiB at most.
pub const STATE_MAX_BYTES: RangeInclusive<u64> = 1..=1 << 40;

/// `state_cache_bytes` of a stage with its state on disk: what the entries it keeps in memory
/// may cost. Bounds the memory a state larger than memory takes; at least 1 MiB, since a cache
/// that holds almost nothing sends every read of a hot key to the disk; at most 1 TiB.
pub const STATE_CACHE_BYTES: RangeInclusive<u64> = 1 << 20..=1 << 40;

/// `allowed_lateness` of a stage: how far behind the highest event time seen its watermark
/// stays. Up to 30 days: beyond that a window would keep its state open for longer than any
/// sensible retention, which is a state the host must carry for nothing.
pub const ALLOWED_LATENESS: RangeInclusive<Duration> =
    Duration::ZERO..=Duration::from_secs(30 * 86_400);

/// `idle_timeout` of a stage: how long an input may send nothing before it stops holding the
/// stage's watermark back. At least 10 ms (a shorter one would declare every input idle between
/// two batches), at most a day.
pub const IDLE_TIMEOUT: RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(86_400);

/// `breaker.window`, in events. The window is allocated up front: blocks a window that takes
/// the host's memory, and a breaker that would need millions of failures to trip.
pub const BREAKER_WINDOW: RangeInclusive<usize> = 1..=1_000_000;

/// `breaker.cooldown`. Blocks a reopening time past the clock's range (`Instant + cooldown`
/// overflows), and a breaker that stays open for days.
pub const BREAKER_COOLDOWN: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(3600);

/// `canary.events`; 0 turns the guard off. Blocks a guard that never reaches its verdict and
/// so keeps a bad version on probation for the whole run.
pub const CANARY_EVENTS: RangeInclusive<u64> = 0..=10_000_000;

/// `header_timeout`, `idle_timeout` and `body_timeout` of `[admin]` and of an `http` source.
/// Blocks a deadline past the clock's range, a wait so long that it no longer limits anything,
/// and one so short that no client could meet it.
pub const LISTENER_TIMEOUT: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(3600);

/// `linger` of `[metrics]`: how long `/metrics` keeps answering after the run ended. Blocks a
/// finished run from holding its process (and its port) for longer than a scrape needs.
pub const METRICS_LINGER: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(600);

/// `max_connections` of `[admin]` and of an `http` source. Each connection holds a file
/// descriptor and buffers (and, on an `http` source, a request body of up to `max_body`):
/// blocks a cap above what a process's descriptor limit commonly allows.
pub const LISTENER_MAX_CONNECTIONS: RangeInclusive<usize> = 1..=4096;

/// `max_body` of an `http` source: the largest request body, in bytes, which the source holds
/// whole while it splits it. Blocks one request (times `max_connections`) from making the host
/// buffer more than it can hold; a larger upload is split by the client.
pub const HTTP_MAX_BODY: RangeInclusive<u64> = 1..=64 << 20;

/// `max_line` of an `http` source: the longest line taken as one event. The same ceiling as a
/// file's longest line: blocks single events that every stage and sink must copy from growing
/// without bound.
pub const HTTP_MAX_LINE: RangeInclusive<u64> = 1..=16 << 20;

/// Length of a node name (sources, stages, sinks), made of `A-Z a-z 0-9 _ -`. Names go into
/// log lines, metrics, admin API paths (`/stages/NAME`) and header names
/// (`weir.version.NAME`): other characters could forge a log line or break a path or header.
pub const NAME_LEN: RangeInclusive<usize> = 1..=64;

/// Length of a setting key, made of `A-Z a-z 0-9 _ - .`. Keys reach logs, the admin API and
/// the plugin's `init`.
pub const SETTING_KEY_LEN: RangeInclusive<usize> = 1..=64;

/// Sources, stages and sinks in one pipeline. Each is a task with a channel of `buffer`
/// batches; blocks a file that makes the host spawn and reserve without end.
pub const MAX_NODES: usize = 1024;

/// `checkpoint_interval`: how often a source's position may be committed. Blocks an fsync
/// storm (each commit is a write, an fsync and a rename) and a commit so rare that a crash
/// replays hours of input.
pub const CHECKPOINT_INTERVAL: RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(3600);

/// `batch` of a NATS source: messages fetched per request. Blocks a fetch larger than the
/// largest batch the pipeline would make of it.
pub const NATS_BATCH: RangeInclusive<usize> = 1..=65_536;

/// `ack_wait` of a NATS source: how long the server waits for an ack before redelivering.
/// Below a second, batches still in the stages would be redelivered to others; past a day, a
/// crashed process's messages wait that long.
pub const ACK_WAIT: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(86_400);

/// `max_ack_pending` of a NATS source: unacknowledged messages the server lets the consumer
/// hold. Bounds what one process can take from a work queue and hold in flight.
pub const MAX_ACK_PENDING: RangeInclusive<usize> = 1..=1_000_000;

/// `max_connections` of a TCP source: connections read at once. Each holds a file descriptor,
/// a read buffer and a line being gathered (up to `max_line`): blocks a cap above what a
/// process's descriptor limit commonly allows, and the memory many connections could pin.
pub const TCP_MAX_CONNECTIONS: RangeInclusive<usize> = 1..=4096;

/// `max_line` of a TCP source, in bytes: the longest line kept as an event. Each connection
/// may gather one line this long, so the memory clients can pin is `max_connections` ×
/// `max_line`: blocks a line (or a connection that never sends `\n`) larger than a line
/// source accepts anywhere else.
pub const TCP_MAX_LINE: RangeInclusive<u64> = 1..=16 << 20;

/// `idle_timeout` of a TCP source: how long a connection may send nothing before it is
/// closed. Blocks a timeout so short that a client pausing between lines loses its connection,
/// and one so long (or a deadline past the clock's range) that silent connections hold their
/// slots for ever.
pub const TCP_IDLE_TIMEOUT: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(86_400);

/// Length of a TCP source's `peer_header`. Header names reach sinks and plugins with every
/// event: blocks a name that costs more than the address it carries.
pub const HEADER_NAME_LEN: RangeInclusive<usize> = 1..=64;

/// `partitions` of a NATS sink and `partition_count` of a NATS source: how many partitions a
/// subject is split into. A source consumes each partition it owns through a durable consumer
/// of its own (JetStream 2.9 takes one filter subject per consumer) with a pull of its own, and
/// a sink checks at start that a stream captures each partition's subject: blocks a typo that
/// would make one process create a million consumers on the server, or make a sink's start
/// wait on a million requests. 1024 is far more partitions than processes a pipeline would
/// spread over.
pub const PARTITIONS: RangeInclusive<u32> = 1..=1024;
