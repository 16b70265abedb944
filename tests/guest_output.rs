//! The property test of everything the host does with a guest's output, over random hostile
//! outputs: `guest_output::the_host_survives_any_output_within_its_charge`.
//!
//! Each case is an output a plugin could return: a data buffer (small, or up to 64 KiB read
//! by many events at once), events, headers and timestamps columns whose spans are in range,
//! past the buffer, `u32::MAX`, shared or never referenced, header names in the host's `weir.`
//! prefix, with separators JSON and NATS treat specially, or not UTF-8; counts and failures
//! that add up or do not; a cap. The host's sequence runs on it as a stage's call does:
//! [`accept_output`] (charge against the cap, check, strip reserved headers, bound reasons),
//! the output caps, every sink encoder on every output event (text, JSON, dead letter, NATS
//! headers), the 0.1 adapter both ways (the output as the input of a 0.1 stage), and the slow
//! path's copy of the kept outputs. It asserts:
//!
//! - no panic;
//! - the charge's passes walk at most `6 + bytes / 4` items, where `bytes` is the charge of
//!   an accepted output and, for a refused one, the least of the cap and what was charged when
//!   the passes stopped (`WORK_PER_BYTE` says why);
//! - each sink encoder writes at most a fixed multiple of the charge in bytes and in write
//!   calls, plus, per event, what it writes for an empty event (`JSON_PER_BYTE`);
//! - no step of the host holds more than a fixed multiple of the charge plus a constant at
//!   once (`PEAK_PER_BYTE`), all of them allocate at most another in all (`TOTAL_PER_BYTE`),
//!   a refused output costs almost nothing, and the batch passed on holds at most
//!   `KEPT_PER_BYTE` times the charge and 4 KiB;
//! - what the host makes of the output is what it said, made safe: the 0.1 adapter and the
//!   slow path keep every event as it was, no reserved header is left, every reason is cut
//!   and escaped, NATS gets only headers it can carry.
//!
//! Work is counted (items walked, bytes and calls written, bytes allocated), never timed. The
//! allocations are counted by a global allocator per thread, so this is a test binary of its
//! own. The seed is fixed and the CI count modest (1,024 cases, about 3 seconds);
//! `PROPTEST_CASES` and `PROPTEST_RNG_SEED` change them for a long run (100,000 cases take
//! about 3 minutes), which prints the largest figures per byte charged it saw:
//! `PROPTEST_CASES=100000 cargo test --release -p weir --test guest_output -- --nocapture`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use weir::config::Limits;
use weir::pipeline::FailureKind;
use weir::pipeline::ack::Tracker;
use weir::pipeline::connectors::nats_headers;
use weir::pipeline::dead_letter::{DeadLetters, Reason};
use weir::pipeline::encode;
use weir::pipeline::provenance::{Provenance, Stamp, VersionHeader};
use weir::pipeline::stage::violations;
use weir::sandbox::cost::{self, RESERVED_PREFIX};
use weir::sandbox::events::{EVENT_STRIDE, HEADER_STRIDE, NO_KEY};
use weir::sandbox::text::MAX_GUEST_TEXT;
use weir::sandbox::{
    EventRef, Events, GuestFailure, GuestFailureKind, Output, accept_output, adapter,
};

// ---------------------------------------------------------------------------------------
// Counting allocations, per thread: the test harness runs tests on threads of their own.

struct Counting;

#[derive(Clone, Copy, Default, Debug)]
struct Counts {
    /// Allocations made (`alloc`, `alloc_zeroed`, `realloc`).
    allocations: u64,
    /// Bytes asked for, a `realloc` counting its new size.
    bytes: u64,
    /// Bytes live now, from the thread's start (negative after freeing older blocks).
    live: i64,
    /// The most `live` has been since the last [`Probe`] began.
    peak: i64,
}

thread_local! {
    static COUNTS: Cell<Counts> = const {
        Cell::new(Counts { allocations: 0, bytes: 0, live: 0, peak: 0 })
    };
}

fn count(allocated: usize, freed: usize) {
    // `try_with`: never fails for a constant without a destructor, and never panics here.
    let _ = COUNTS.try_with(|c| {
        let mut n = c.get();
        if allocated > 0 {
            n.allocations += 1;
            n.bytes += allocated as u64;
        }
        n.live += allocated as i64 - freed as i64;
        n.peak = n.peak.max(n.live);
        c.set(n);
    });
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 0);
        // SAFETY: the caller upholds `alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 0);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(0, layout.size());
        // SAFETY: `ptr` came from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size, layout.size());
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What one step of the host allocated.
#[derive(Clone, Copy, Default, Debug)]
struct Used {
    allocations: u64,
    bytes: u64,
    /// The most bytes live during the step beyond those live when it began.
    peak: u64,
}

/// Counts a step's allocations from its creation to [`Probe::end`].
struct Probe(Counts);

impl Probe {
    fn begin() -> Probe {
        let mut n = COUNTS.with(Cell::get);
        n.peak = n.live;
        COUNTS.with(|c| c.set(n));
        Probe(n)
    }

    fn end(self) -> Used {
        let n = COUNTS.with(Cell::get);
        Used {
            allocations: n.allocations - self.0.allocations,
            bytes: n.bytes - self.0.bytes,
            peak: (n.peak - self.0.live).max(0) as u64,
        }
    }
}

/// A writer that keeps nothing: the bytes and the calls an encoder made.
#[derive(Default)]
struct Tally {
    bytes: u64,
    calls: u64,
}

impl Write for Tally {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes += buf.len() as u64;
        self.calls += 1;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The bounds.

/// Items the charge's passes walk per byte charged: each event is charged `EVENT_COST` (32)
/// and walked once (pass 2); each header entry charged `HEADER_COST` (16) and walked twice
/// (passes 3 and 5); each reference charged 16 and walked once (pass 4); each name byte
/// charged once (pass 3) and walked in 64-byte steps (pass 5): 1/32 + 2/16 + 1/16 + 1/64 =
/// 15/64 < 1/4. The constant: one item for pass 1's lengths, one per pass that stops.
const WORK_PER_BYTE: u64 = 4;
const WORK_CONSTANT: u64 = 6;

/// JSON bytes per byte charged: JSON escapes a control byte as `\u00XX`, 6 bytes for one,
/// and base64 writes 4 for 3; the syntax around an event (at most about 90 bytes: braces,
/// `"key_base64":`, `"headers":[`, a 20-digit timestamp) is under 6 × `EVENT_COST`, and
/// around a header (at most 20 bytes: brackets, commas, `{"base64":…}`) under 6 ×
/// `HEADER_COST`. Write calls per byte charged: one per escaped byte, one per run between
/// them, and fewer than 32 for the syntax of an event or 16 of a header.
const JSON_PER_BYTE: u64 = 6;

/// Bytes one step holds at once per byte charged. The largest is the 0.1 adapter's: for a
/// flood of empty events (32 bytes charged each), the 88-byte record of each, the outcome
/// lists a 0.1 plugin hands back (32 bytes and a one-record list of 88 each) and the packed
/// batch they become (24 bytes of columns per event, doubled as they grow), about 210 bytes
/// an event, 6.5×; a header costs its record 48 bytes for 16 charged and its bytes are
/// copied once. Then a NATS message: its JSON payload (a vector of the event's size, doubled
/// once, beside the base64 of a value that is not UTF-8) and its headers (a value that is
/// not UTF-8 may triple as lossy UTF-8), about 5×.
const PEAK_PER_BYTE: u64 = 8;

/// Bytes allocated in all per byte charged, the steps one after the other: every sink
/// encoder (a real sink runs one), the adapter both ways, the caps and the slow path. The
/// worst is again a flood of the smallest events, for which the host's work is per event,
/// not per byte: the NATS client's header map is a hash table per message (about 500 bytes
/// with a version header, 16× an empty event's charge), the adapter's records and lists
/// about 300 (10×), a cap's refusal line about 150 for an input of one 2-byte value (4.5×),
/// the copies about 100 (3×). Measured, at most 30× over 100,000 cases; 48× leaves room.
const TOTAL_PER_BYTE: u64 = 48;

/// What the host passes on per byte charged: the output's buffer and columns, by capacity.
/// Its columns are charged (an event 32 bytes for its 24 bytes of numbers and 8 of timestamp,
/// a header entry 16 for 16, a kept reference 16 again for its entry in a stripped column);
/// its buffer, unless the sandbox copied it, is at most the charge and `KEPT_SLACK`.
const KEPT_PER_BYTE: u64 = 2;

/// What the host passes on beyond `KEPT_PER_BYTE` times the charge: the buffer's bytes that
/// no event references, which the sandbox keeps up to 4 KiB (`UNREFERENCED_SLACK`).
const KEPT_SLACK: u64 = 4 << 10;

/// Bytes that do not grow with the output: error messages, a JSON `…_base64` field name.
const SLACK_BYTES: u64 = 16 << 10;

/// What a refused output may cost in allocations: its error message.
const REFUSED_BYTES: u64 = 4 << 10;
const REFUSED_ALLOCATIONS: u64 = 16;

// ---------------------------------------------------------------------------------------
// Hostile outputs.

/// Words at the start of every buffer, for spans to point at: the host's prefix, what JSON
/// and NATS headers treat specially (quotes, controls, `:`, spaces, CR LF), bytes that are not
/// UTF-8 or a cut character, Unicode separators and overrides.
const WORDS: &[&[u8]] = &[
    b"",
    b"weir.",
    b"weir.version.parse",
    b"weir",
    b"trace",
    b"Nats-Msg-Id",
    b"a:b",
    b"two words",
    b"line\r\nbreak",
    b"\n",
    b"\x00\x01\x1b[31m\x7f",
    b"\"\\",
    b"%",
    b"\xff\xfe",
    b"caf\xc3\xa9",
    b"\xc3",
    b"\xe2\x80\xa8",
    b"\xe2\x80\xae",
    b"{\"value\":1}",
    b"x",
];

fn words() -> (Vec<u8>, Vec<(u32, u32)>) {
    let mut data = Vec::new();
    let mut spans = Vec::new();
    for w in WORDS {
        spans.push((data.len() as u32, w.len() as u32));
        data.extend_from_slice(w);
    }
    (data, spans)
}

/// A span of the buffer, chosen before the buffer's size is known.
#[derive(Debug, Clone, Copy)]
enum Span {
    Word(usize),
    /// In range: start and length as fractions of the buffer (in 1/65536).
    Inside(u16, u16),
    Whole,
    /// Ending this many bytes past the buffer.
    Past(u8),
    /// A start of `u32::MAX` (start + length overflows a `u32`).
    Max(u32),
    Raw(u32, u32),
}

fn span() -> impl Strategy<Value = Span> {
    prop_oneof![
        8 => (0..WORDS.len()).prop_map(Span::Word),
        4 => (any::<u16>(), any::<u16>()).prop_map(|(s, l)| Span::Inside(s, l)),
        2 => Just(Span::Whole),
        1 => (1u8..=255).prop_map(Span::Past),
        1 => prop_oneof![Just(1u32), Just(u32::MAX), any::<u32>()].prop_map(Span::Max),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(s, l)| Span::Raw(s, l)),
    ]
}

fn resolve(span: Span, size: u32, words: &[(u32, u32)], clean: bool) -> (u32, u32) {
    let frac = |f: u16, of: u32| (u64::from(f) * u64::from(of) / 65536) as u32;
    match span {
        Span::Past(_) | Span::Max(_) | Span::Raw(..) if clean => (0, size),
        Span::Word(i) => words[i],
        Span::Inside(s, l) => {
            let start = frac(s, size);
            (start, frac(l, size - start))
        }
        Span::Whole => (0, size),
        Span::Past(d) => (size / 2, size - size / 2 + u32::from(d)),
        Span::Max(len) => (u32::MAX, len),
        Span::Raw(s, l) => (s, l),
    }
}

/// An event's header range, chosen before the header column's length is known.
#[derive(Debug, Clone, Copy)]
enum Range {
    None,
    /// A count of 0 with a first header far out of range: no headers, whatever `first` says.
    Empty(u32),
    /// In range: first as a fraction of the column, then up to this many.
    Inside(u16, u16),
    All,
    /// More than an event may reference.
    TooMany(u32),
    Past(u8),
    Raw(u32, u32),
}

fn range() -> impl Strategy<Value = Range> {
    prop_oneof![
        3 => Just(Range::None),
        1 => any::<u32>().prop_map(Range::Empty),
        6 => (any::<u16>(), 0u16..=64).prop_map(|(f, c)| Range::Inside(f, c)),
        2 => Just(Range::All),
        1 => (1025u32..=4096).prop_map(Range::TooMany),
        1 => (1u8..=8).prop_map(Range::Past),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(f, c)| Range::Raw(f, c)),
    ]
}

fn resolve_range(range: Range, entries: u32, clean: bool) -> (u32, u32) {
    match range {
        Range::Past(_) | Range::Raw(..) | Range::TooMany(_) if clean => (0, entries.min(8)),
        Range::None => (0, 0),
        Range::Empty(first) => (first, 0),
        Range::Inside(f, c) => {
            let first = (u64::from(f) * u64::from(entries) / 65536) as u32;
            (first, u32::from(c).min(entries - first))
        }
        Range::All => (0, entries),
        Range::TooMany(c) => (0, c),
        Range::Past(d) => (entries / 2, entries - entries / 2 + u32::from(d)),
        Range::Raw(f, c) => (f, c),
    }
}

/// One event's numbers before resolution: value, key (none, or a span), header range.
type EventPlan = (Span, Option<Span>, Range);

#[derive(Debug, Clone)]
enum TimestampPlan {
    None,
    /// One per event, cycling through these (`u64::MAX` is "none").
    Each(Vec<u64>),
    /// A wrong number of them.
    Wrong(usize),
}

#[derive(Debug, Clone)]
enum CountPlan {
    /// No counts: one output per input.
    Empty,
    /// Counts that add up, outputs spread over the inputs by this seed.
    Spread(u64),
    Raw(Vec<u32>),
}

#[derive(Debug, Clone)]
enum FailurePlan {
    None,
    /// Failures at inputs with no outputs, in order, kinds and reasons by index.
    Fitting(Vec<(bool, String)>),
    Raw(Vec<(u32, bool, String)>),
}

#[derive(Debug, Clone, Copy)]
enum Cap {
    Fixed(u64),
    /// The output's own charge plus this (so `-1` refuses it by a byte).
    Exact(i8),
}

/// A long run of one byte, with patches: its length, the byte, and (offset, byte) pairs.
type Big = (u32, u8, Vec<(u16, u8)>);

#[derive(Debug, Clone)]
struct Plan {
    /// Random bytes after the words; then perhaps a long run.
    tail: Vec<u8>,
    big: Option<Big>,
    events: Vec<EventPlan>,
    /// The events repeat to this many (floods of events that alias one value).
    repeat: usize,
    headers: Vec<(Span, Span)>,
    /// Unreferenced header entries after the planned ones, all with this name span.
    padding: (usize, Span),
    /// Extra numbers breaking a column's stride (events, headers).
    broken_stride: (u8, u8),
    timestamps: TimestampPlan,
    /// Input events of the call; `None`: as many as the outputs.
    inputs: Option<usize>,
    counts: CountPlan,
    failures: FailurePlan,
    cap: Cap,
    max_output_events: usize,
    max_value_size: u64,
    stamped: bool,
    /// Every span in the buffer, every header range in the column, the columns' shapes
    /// right: the hostile parts of the plan made harmless, so that the output may pass.
    clean: bool,
}

fn reason() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => vec(any::<char>(), 0..24).prop_map(|c| c.into_iter().collect()),
        1 => Just("bad\nweir: error: forged".to_string()),
        1 => Just("\u{202e}desrever\u{1b}[2J".to_string()),
        1 => (1usize..=8192).prop_map(|n| "x".repeat(n)),
    ]
}

fn plan() -> impl Strategy<Value = Plan> {
    let data = (
        vec(any::<u8>(), 0..64),
        prop_oneof![
            3 => Just(None),
            1 => (1u32..=65536, any::<u8>(), vec((any::<u16>(), any::<u8>()), 0..16)).prop_map(Some),
        ],
    );
    let events = (
        vec(
            (span(), prop::option::weighted(0.3, span()), range()),
            0..24,
        ),
        prop_oneof![8 => Just(1usize), 1 => 1usize..=4096],
    );
    let headers = (
        vec((span(), span()), 0..32),
        prop_oneof![4 => Just(0usize), 1 => 1usize..=20_000].prop_flat_map(|n| (Just(n), span())),
        prop_oneof![12 => Just((0u8, 0u8)), 1 => (0u8..=5, 0u8..=3)],
    );
    let timestamps = prop_oneof![
        3 => Just(TimestampPlan::None),
        2 => vec(prop_oneof![any::<u64>(), Just(u64::MAX), Just(0u64)], 1..8).prop_map(TimestampPlan::Each),
        1 => (0usize..=8).prop_map(TimestampPlan::Wrong),
    ];
    let outcomes = (
        prop_oneof![3 => Just(None), 1 => (0usize..=64).prop_map(Some)],
        prop_oneof![
            3 => Just(CountPlan::Empty),
            4 => any::<u64>().prop_map(CountPlan::Spread),
            1 => vec(prop_oneof![0u32..=4, Just(u32::MAX)], 0..16).prop_map(CountPlan::Raw),
        ],
        prop_oneof![
            3 => Just(FailurePlan::None),
            2 => vec((any::<bool>(), reason()), 0..8).prop_map(FailurePlan::Fitting),
            1 => vec((prop_oneof![0u32..=16, Just(u32::MAX)], any::<bool>(), reason()), 0..8)
                .prop_map(FailurePlan::Raw),
        ],
    );
    let limits = (
        prop_oneof![
            2 => (0u64..4096).prop_map(Cap::Fixed),
            2 => (0u64..(1 << 20)).prop_map(Cap::Fixed),
            1 => Just(Cap::Fixed(64 << 20)),
            1 => Just(Cap::Fixed(u64::MAX)),
            1 => (-2i8..=-1).prop_map(Cap::Exact),
            2 => (0i8..=1).prop_map(Cap::Exact),
        ],
        prop_oneof![Just(1usize), Just(2), Just(4), Just(1024)],
        prop_oneof![Just(1u64), Just(16), Just(1024), Just(16 << 20)],
        any::<bool>(),
        prop::bool::weighted(0.75),
    );
    (data, events, headers, timestamps, outcomes, limits).prop_map(
        |(
            (tail, big),
            (events, repeat),
            (headers, padding, broken_stride),
            timestamps,
            (inputs, counts, failures),
            (cap, max_output_events, max_value_size, stamped, clean),
        )| Plan {
            tail,
            big,
            events,
            repeat,
            headers,
            padding,
            broken_stride,
            timestamps,
            inputs,
            counts,
            failures,
            cap,
            max_output_events,
            max_value_size,
            stamped,
            clean,
        },
    )
}

/// Bytes the events of one case may reference, value and headers: 64 KiB values aliased
/// by a few dozen events, and the case still runs in milliseconds.
const MAX_REFERENCED: u64 = 4 << 20;
const MAX_REFERENCED_PER_EVENT: usize = 1024;

/// A tiny generator for the choices a plan makes by seed.
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

/// The output, the inputs of its call and its cap, as a plan says.
fn build(plan: &Plan) -> (Output, usize, u64) {
    let (mut data, words) = words();
    data.extend_from_slice(&plan.tail);
    if let Some((len, fill, patches)) = &plan.big {
        let start = data.len();
        data.resize(start + *len as usize, *fill);
        for &(at, byte) in patches {
            let i = start + usize::from(at) % *len as usize;
            data[i] = byte;
        }
    }
    let size = data.len() as u32;
    let planned = plan.headers.len() as u32;
    let entries = planned + plan.padding.0 as u32;
    let mut headers = Vec::with_capacity(entries as usize * HEADER_STRIDE);
    // A clean plan's names are UTF-8: a name that is not becomes "trace".
    let name_of = |span: Span| {
        let (s, l) = resolve(span, size, &words, plan.clean);
        let utf8 = || std::str::from_utf8(&data[s as usize..(s + l) as usize]).is_ok();
        if plan.clean && !utf8() {
            words[4]
        } else {
            (s, l)
        }
    };
    for &(name, value) in &plan.headers {
        let (ns, nl) = name_of(name);
        let (vs, vl) = resolve(value, size, &words, plan.clean);
        headers.extend_from_slice(&[ns, nl, vs, vl]);
    }
    let (ns, nl) = name_of(plan.padding.1);
    for _ in 0..plan.padding.0 {
        headers.extend_from_slice(&[ns, nl, 0, 0]);
    }
    if !plan.clean {
        headers.extend(std::iter::repeat_n(1, usize::from(plan.broken_stride.1)));
    }
    let mut events = Vec::new();
    // What the events reference, bounded so that a case stays cheap: a flood stops there.
    let mut referenced = 0u64;
    if !plan.events.is_empty() {
        for i in 0..plan.events.len() * plan.repeat {
            let (value, key, range) = plan.events[i % plan.events.len()];
            let (vs, vl) = resolve(value, size, &words, plan.clean);
            let (ks, kl) = key.map_or((0, NO_KEY), |k| resolve(k, size, &words, plan.clean));
            let (first, count) = resolve_range(range, planned, plan.clean);
            events.extend_from_slice(&[vs, vl, ks, kl, first, count]);
            referenced += u64::from(vl) + if kl == NO_KEY { 0 } else { u64::from(kl) };
            let refs = (first as usize..(first as usize).saturating_add(count as usize))
                .take(MAX_REFERENCED_PER_EVENT)
                .filter_map(|h| headers.get(h * HEADER_STRIDE..h * HEADER_STRIDE + HEADER_STRIDE));
            referenced += refs.map(|f| u64::from(f[1]) + u64::from(f[3])).sum::<u64>();
            if referenced > MAX_REFERENCED {
                break;
            }
        }
    }
    let n = events.len() / EVENT_STRIDE;
    if !plan.clean {
        events.extend(std::iter::repeat_n(7, usize::from(plan.broken_stride.0)));
    }
    let timestamps = match &plan.timestamps {
        TimestampPlan::None => Vec::new(),
        TimestampPlan::Each(values) => (0..n).map(|i| values[i % values.len()]).collect(),
        TimestampPlan::Wrong(_) if plan.clean => Vec::new(),
        TimestampPlan::Wrong(k) => vec![1; if *k == n { n + 1 } else { *k }],
    };
    let inputs = plan.inputs.unwrap_or(n);
    let counts = match &plan.counts {
        CountPlan::Empty => Vec::new(),
        CountPlan::Spread(seed) => {
            let mut seed = *seed;
            let mut counts = vec![0u32; inputs];
            if inputs > 0 {
                for _ in 0..n {
                    counts[next(&mut seed) as usize % inputs] += 1;
                }
            }
            counts
        }
        CountPlan::Raw(counts) => counts.clone(),
    };
    let kind = |retry: bool| {
        if retry {
            GuestFailureKind::Retry
        } else {
            GuestFailureKind::Reject
        }
    };
    let failures = match &plan.failures {
        FailurePlan::None => Vec::new(),
        FailurePlan::Fitting(wanted) => {
            let empty = (0..inputs).filter(|&i| counts.get(i).is_some_and(|&c| c == 0));
            empty
                .zip(wanted)
                .map(|(index, (retry, reason))| GuestFailure {
                    index: index as u32,
                    kind: kind(*retry),
                    reason: reason.clone(),
                })
                .collect()
        }
        FailurePlan::Raw(raw) => raw
            .iter()
            .map(|(index, retry, reason)| GuestFailure {
                index: *index,
                kind: kind(*retry),
                reason: reason.clone(),
            })
            .collect(),
    };
    let events = Events {
        data,
        events,
        headers,
        timestamps,
    };
    let cap = match plan.cap {
        Cap::Fixed(cap) => cap,
        Cap::Exact(delta) => match cost::charge(&events, u64::MAX) {
            Ok(charge) => charge.bytes.saturating_add_signed(i64::from(delta)),
            Err(_) => 1 << 20,
        },
    };
    let output = Output {
        events,
        counts,
        failures,
    };
    (output, inputs, cap)
}

// ---------------------------------------------------------------------------------------
// The host's sequence.

fn same(a: EventRef<'_>, b: EventRef<'_>) -> bool {
    a.key() == b.key()
        && a.value() == b.value()
        && a.timestamp() == b.timestamp()
        && a.headers().eq(b.headers())
}

/// What the sequence found, for the summary of a run: the figures per byte charged.
#[derive(Default, Debug)]
struct Seen {
    accepted: bool,
    events: usize,
    references: usize,
    stripped: u64,
    work: f64,
    peak: f64,
    total: f64,
    kept: f64,
}

fn run(plan: &Plan) -> Seen {
    let (output, inputs, cap) = build(plan);
    let limits = Limits {
        max_output_events: plan.max_output_events,
        max_value_size: plan.max_value_size,
        ..Limits::default()
    };
    sequence(output, inputs, cap, &limits, plan.stamped)
}

/// The host's sequence on an output of a call with `inputs` events, under `cap`; `stamped`:
/// the batch carries a version header, as after a stage.
fn sequence(output: Output, inputs: usize, cap: u64, limits: &Limits, stamped: bool) -> Seen {
    let provenance = if stamped {
        Stamp::default().stamp(
            &Provenance::default(),
            &VersionHeader::new("parse", "0123456789abcdef"),
        )
    } else {
        Provenance::default()
    };
    let (charged, metered) = cost::metered(&output.events, cap);
    let reserved: u64 = match &charged {
        Ok(_) => output
            .events
            .iter()
            .map(|e| {
                e.headers()
                    .filter(|(n, _)| n.starts_with(RESERVED_PREFIX))
                    .count() as u64
            })
            .sum(),
        Err(_) => 0,
    };
    let outcomes_ok = charged.is_ok()
        && (output.counts.is_empty() || output.counts.len() == inputs)
        && output.check_outcomes(inputs).is_ok();

    // 1. Charge, check, strip, bound reasons: what the sandbox hands the host.
    let probe = Probe::begin();
    let accepted = accept_output(output, inputs, cap);
    let used = probe.end();
    let (output, stripped) = match accepted {
        Err(trapped) => {
            assert!(
                !outcomes_ok,
                "refused an output the checks accept: {trapped:?}"
            );
            let bound = metered.bytes.min(cap);
            assert!(
                metered.work <= WORK_CONSTANT + bound / WORK_PER_BYTE,
                "a refused charge walked {} items for {bound} bytes",
                metered.work
            );
            assert!(
                used.bytes <= REFUSED_BYTES && used.allocations <= REFUSED_ALLOCATIONS,
                "a refused output cost {used:?}"
            );
            return Seen::default();
        }
        Ok(accepted) => accepted,
    };
    assert!(outcomes_ok, "accepted an output the checks refuse");
    let charge = charged.expect("accepted, so charged");
    let c = charge.bytes;
    assert!(
        charge.work <= WORK_CONSTANT + c / WORK_PER_BYTE,
        "the charge walked {} items for {c} bytes",
        charge.work
    );
    assert_eq!(stripped, reserved, "every reserved reference stripped");
    let bounded = |r: &str| r.len() <= MAX_GUEST_TEXT && !r.chars().any(char::is_control);
    assert!(
        output.failures.iter().all(|f| bounded(&f.reason)),
        "a reason left whole"
    );
    let events = &output.events;
    let n = events.len() as u64;
    assert!(events.iter().all(|e| {
        e.headers()
            .all(|(name, _)| !name.starts_with(RESERVED_PREFIX))
    }));
    // The most bytes one step holds at once, and what the steps allocate in all.
    let (mut peak, mut total) = (used.peak, used.bytes);
    let mut step = |step: Used| {
        peak = peak.max(step.peak);
        total += step.bytes;
    };

    // 2. The output caps.
    let probe = Probe::begin();
    let broken = violations(&output, inputs, limits);
    step(probe.end());

    // 3. Every sink encoder on every output event.
    let reason = Reason {
        kind: FailureKind::Reject,
        message: Arc::from(
            output
                .failures
                .first()
                .map_or("rejected", |f| f.reason.as_str()),
        ),
        attempts: 1,
    };
    let empty = {
        let mut e = Events::new();
        e.push_value(b"");
        e
    };
    let (mut json_base, mut letter_base) = (Tally::default(), Tally::default());
    encode::event(&mut json_base, empty.get(0), &provenance).unwrap();
    let tracker = Arc::new(Tracker::default());
    let letters_of = |events: &Events| {
        let mut letters = DeadLetters::new(
            Arc::from("stage"),
            Arc::from("digest"),
            provenance.clone(),
            tracker.emit(0),
        );
        for event in events.iter() {
            letters.push(event, reason.clone(), None);
        }
        letters
    };
    encode::dead_letter(&mut letter_base, &letters_of(&empty), 0, 0).unwrap();
    let failed = letters_of(events);
    let (mut text, mut json, mut letters) = (Tally::default(), Tally::default(), Tally::default());
    let mut nats = (0u64, 0u64);
    // Each measured on its own, as a sink runs one.
    let probe = Probe::begin();
    for event in events.iter() {
        text.write_all(event.value()).unwrap();
        text.write_all(b"\n").unwrap();
    }
    step(probe.end());
    let probe = Probe::begin();
    for event in events.iter() {
        encode::event(&mut json, event, &provenance).unwrap();
    }
    step(probe.end());
    let probe = Probe::begin();
    for i in 0..failed.len() {
        encode::dead_letter(&mut letters, &failed, i, 0).unwrap();
    }
    step(probe.end());
    // The NATS sink: a JSON payload in a vector of the event's size, and the headers.
    let probe = Probe::begin();
    for event in events.iter() {
        let mut payload = Vec::with_capacity(event.size() + 64);
        encode::event(&mut payload, event, &provenance).unwrap();
        let headers = nats_headers(event, &provenance);
        for (name, values) in headers.iter() {
            let name: &str = name.as_ref();
            let bytes = name.as_bytes();
            assert!(
                bytes.iter().all(|&b| b.is_ascii_graphic() && b != b':'),
                "{name:?}"
            );
            assert!(
                bytes.len() < 5 || !bytes[..5].eq_ignore_ascii_case(b"nats-"),
                "{name:?}"
            );
            for value in values {
                assert!(!value.as_str().contains(['\r', '\n']), "{value:?}");
                nats.0 += 1;
                nats.1 += (name.len() + value.as_str().len()) as u64;
            }
        }
    }
    step(probe.end());
    assert!(
        text.bytes <= c,
        "text: {} bytes for {c} charged",
        text.bytes
    );
    for (what, tally, base) in [
        ("json", &json, &json_base),
        ("dead letter", &letters, &letter_base),
    ] {
        assert!(
            tally.bytes <= JSON_PER_BYTE * c + n * base.bytes,
            "{what}: {} bytes for {c} charged and {n} events of {}",
            tally.bytes,
            base.bytes
        );
        assert!(
            tally.calls <= c + n * base.calls,
            "{what}: {} write calls for {c} charged and {n} events of {}",
            tally.calls,
            base.calls
        );
    }
    let references: u64 = events.iter().map(|e| e.header_count() as u64).sum();
    // Percent-encoding makes a byte three (and lossy UTF-8 a byte the three of U+FFFD).
    let own: u64 = provenance
        .headers()
        .iter()
        .map(|h| (h.name.len() + h.value.len()) as u64)
        .sum();
    assert_eq!(nats.0, references + n * provenance.headers().len() as u64);
    assert!(
        nats.1 <= 3 * c + n * own,
        "NATS headers: {} bytes for {c} charged",
        nats.1
    );

    // 4. The 0.1 adapter: the output as the input of a 0.1 stage, and back.
    let probe = Probe::begin();
    let records = adapter::to_v01(events);
    let record_bytes = records.bytes();
    let back = records.round_trip();
    let same_events = back.events.len() == events.len()
        && events
            .iter()
            .zip(back.events.iter())
            .all(|(a, b)| same(a, b));
    drop(back);
    step(probe.end());
    assert_eq!(
        record_bytes as u64,
        events.iter().map(|e| e.size() as u64).sum::<u64>()
    );
    assert!(same_events, "the 0.1 adapter changed an event");

    // 5. The slow path: the kept outputs copied into a new batch.
    let mut kept = Vec::with_capacity(events.len());
    let probe = Probe::begin();
    let mut copy = Events::new();
    let mut failures = output.failures.iter().peekable();
    let mut broken = broken.iter().peekable();
    for (j, outs) in output.ranges(inputs).enumerate() {
        if failures.next_if(|f| f.index as usize == j).is_some()
            || broken.next_if(|(i, _)| *i == j).is_some()
        {
            continue;
        }
        for o in outs {
            copy.push_event(events.get(o));
            kept.push(o);
        }
    }
    step(probe.end());
    assert_eq!(copy.len(), kept.len());
    assert!(
        kept.iter()
            .zip(copy.iter())
            .all(|(&o, e)| same(events.get(o), e))
    );
    let recharged = cost::charge(&copy, u64::MAX).expect("a copy is well formed");
    assert!(
        recharged.bytes <= 2 * c,
        "a copy costs {} for {c}",
        recharged.bytes
    );

    assert!(
        peak <= PEAK_PER_BYTE * c + SLACK_BYTES,
        "{peak} bytes live at once for {c} charged"
    );
    assert!(
        total <= TOTAL_PER_BYTE * c + SLACK_BYTES,
        "{total} bytes allocated for {c} charged"
    );
    let kept_bytes = events.data.capacity()
        + events.events.capacity() * 4
        + events.headers.capacity() * 4
        + events.timestamps.capacity() * 8;
    assert!(
        kept_bytes as u64 <= KEPT_PER_BYTE * c + KEPT_SLACK,
        "the host passes on {kept_bytes} bytes for {c} charged"
    );
    // The figures of the summary, from outputs large enough for the constants not to count.
    let per_byte = |x: u64| if c >= 4096 { x as f64 / c as f64 } else { 0.0 };
    Seen {
        accepted: true,
        events: events.len(),
        references: references as usize,
        stripped,
        work: per_byte(charge.work),
        peak: per_byte(peak),
        total: per_byte(total),
        kept: per_byte(kept_bytes as u64),
    }
}

/// The seed of the CI run; `PROPTEST_RNG_SEED` overrides it.
const SEED: u64 = 16;
/// Cases of the CI run; `PROPTEST_CASES` overrides it.
const CASES: u32 = 1024;

fn config() -> Config {
    // Reads the PROPTEST_* variables.
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = CASES;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    // A failure found is kept as a regression case below, by hand.
    config.failure_persistence = None;
    config
}

/// Every case through the host's sequence, shrunk to a smallest failing plan on a failure.
/// The generator must reach past the charge: most cases are refused, but a good share is
/// accepted with events, header references and reserved names, so that the later steps see
/// real work.
#[test]
fn the_host_survives_any_output_within_its_charge() {
    let seen = RefCell::new(Vec::new());
    let mut runner = TestRunner::new(config());
    let result = runner.run(&plan(), |plan| {
        seen.borrow_mut().push(run(&plan));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = seen.into_inner();
    let count = |f: fn(&Seen) -> bool| seen.iter().filter(|s| f(s)).count();
    let accepted = count(|s| s.accepted);
    let with_events = count(|s| s.events > 0);
    let with_headers = count(|s| s.references > 0);
    let stripped = count(|s| s.stripped > 0);
    let most = |f: fn(&Seen) -> f64| seen.iter().map(f).fold(0.0, f64::max);
    eprintln!(
        "{} cases: {accepted} accepted, {with_events} with events, {with_headers} with header \
         references, {stripped} with reserved names stripped; per byte charged, at most: \
         {:.3} items walked, {:.1} bytes held by a step, {:.1} allocated, {:.2} passed on",
        seen.len(),
        most(|s| s.work),
        most(|s| s.peak),
        most(|s| s.total),
        most(|s| s.kept),
    );
    assert!(accepted * 4 >= seen.len(), "at least a quarter accepted");
    assert!(with_events * 8 >= seen.len() && with_headers * 16 >= seen.len() && stripped > 0);
}

fn output(events: Events) -> Output {
    Output {
        events,
        counts: Vec::new(),
        failures: Vec::new(),
    }
}

/// Found by the property test: a header named `a:b` panicked in the NATS client as the NATS
/// sink mapped it, and so would a name with a space or a byte not ASCII, or a value with a
/// line break; a header named `Nats-Msg-Id` reached the server as an order.
#[test]
fn a_header_nats_cannot_carry_reaches_every_sink() {
    let mut events = Events::new();
    let headers = [
        (b"a:b".as_slice(), b"".as_slice()),
        ("two wörds".as_bytes(), b"line\r\nbreak"),
        (b"Nats-Msg-Id", b"1"),
    ];
    events.push_parts(None, b"value", headers, None);
    let seen = sequence(output(events), 1, u64::MAX, &Limits::default(), true);
    assert!(seen.accepted && seen.references == 3);
}

/// Found by the property test: an output of no events over a 4 KiB buffer was passed on
/// whole, though it was charged nothing; so would a 60 MiB buffer under one small event, and
/// the next stage's call would have copied all of it into that plugin's memory.
#[test]
fn a_buffer_no_event_references_is_not_passed_on() {
    let mut events = Events::new();
    events.data = vec![0xc0; 64 << 10];
    events.push_value(b"kept");
    let seen = sequence(
        output(events.clone()),
        1,
        1 << 10,
        &Limits::default(),
        false,
    );
    assert!(seen.accepted);
    let (accepted, _) = accept_output(output(events), 1, 1 << 10).unwrap();
    assert_eq!(accepted.events.data, b"kept");
    assert_eq!(accepted.events.data.capacity(), 4);
}
