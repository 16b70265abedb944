//! A call's allocations do not grow with its number of events: the same stage over 8 and over
//! 1,024 events makes the same number, counted by a global allocator that counts.
//!
//! `native::process` is the component's `process` without the bindings, which move the
//! vectors in and out without allocating. One difference: when every input passes unchanged,
//! the component returns its input batch itself, while `native::process` (which only borrows
//! it) returns a copy; that copy is four allocations here, none in the component.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use weir_plugin::{Batch, Emitter, Event, EventView, Failure, Settings, Transform, native};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, that is from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Every shape of outcome at once: values rewritten in place, filtered, doubled, failed.
struct Mixed;

impl Transform for Mixed {
    fn init(_: &Settings) -> Result<Self, String> {
        Ok(Mixed)
    }

    fn process(&mut self, event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
        let value = event.value();
        match event.index() % 4 {
            0 => out.emit_with(|buf| buf.extend(value.iter().map(u8::to_ascii_uppercase))),
            1 => {}
            2 => {
                out.pass();
                out.emit_value(b"copy");
            }
            _ => return Err(Failure::Reject(String::new())),
        }
        Ok(())
    }
}

/// Upper-cases every value: one output per input, the contract's fast path.
struct Upper;

impl Transform for Upper {
    fn init(_: &Settings) -> Result<Self, String> {
        Ok(Upper)
    }

    fn process(&mut self, event: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
        let value = event.value();
        out.emit_with(|buf| buf.extend(value.iter().map(u8::to_ascii_uppercase)));
        Ok(())
    }
}

/// Passes every event.
struct Pass;

impl Transform for Pass {
    fn init(_: &Settings) -> Result<Self, String> {
        Ok(Pass)
    }

    fn process(&mut self, _: &EventView<'_>, out: &mut Emitter<'_>) -> Result<(), Failure> {
        out.pass();
        Ok(())
    }
}

fn batch(events: usize) -> Batch {
    let events: Vec<Event> = (0..events)
        .map(|i| Event {
            key: (i % 3 == 0).then(|| b"key".to_vec()),
            headers: vec![("h".into(), b"v".to_vec())],
            timestamp: Some(i as u64),
            ..Event::new(vec![b'a'; 100])
        })
        .collect();
    Batch::from_events(&events)
}

/// Allocations made by one call of `stage` on a batch of `events` events.
fn allocations<T: Transform>(stage: &mut T, events: usize) -> usize {
    let input = batch(events);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let output = native::process(stage, &input);
    let made = ALLOCATIONS.load(Ordering::Relaxed) - before;
    output.check(events).unwrap();
    made
}

// One test only: the counter is global, and tests of one binary run in parallel.
#[test]
fn a_call_allocates_the_same_whatever_its_number_of_events() {
    // Data, events, headers and timestamps: reserved once from the input's sizes.
    let upper = (allocations(&mut Upper, 8), allocations(&mut Upper, 1024));
    assert_eq!(upper, (4, 4), "upper-case: (8 events, 1024 events)");
    // The same four, plus counts and failures; reasons are empty strings, which allocate
    // nothing, as a stage's own reasons would.
    let mixed = (allocations(&mut Mixed, 8), allocations(&mut Mixed, 1024));
    assert_eq!(mixed, (6, 6), "mixed: (8 events, 1024 events)");
    // The copy of the input that native::process returns; nothing else.
    let pass = (allocations(&mut Pass, 8), allocations(&mut Pass, 1024));
    assert_eq!(pass, (4, 4), "pass: (8 events, 1024 events)");
}
