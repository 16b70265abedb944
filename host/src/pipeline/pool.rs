//! A pool of batch buffers, so that a steady pipeline reuses its memory instead of
//! allocating for every batch.
//!
//! A sink hands the buffers of each batch it has written back to the pool, and so does a stage
//! for the input it has finished with; a source takes buffers from the pool for the batches it
//! fills. The pool keeps at most [`MAX_POOLED`] batches, and none with a data buffer larger
//! than [`MAX_POOLED_BYTES`] or a column larger than [`MAX_POOLED_COLUMN_BYTES`]: a burst of
//! huge values, or a plugin returning long columns on every call (each within its call's
//! charge), cannot pin that memory for the rest of the run.

use std::sync::Mutex;

use weir_sandbox::Events;

/// Buffers the pool keeps. Bounds the memory it holds to this many batches' worth.
pub const MAX_POOLED: usize = 32;
/// The largest data buffer kept; larger ones are freed.
pub const MAX_POOLED_BYTES: usize = 1 << 20;
/// The largest column (events, headers or timestamps) kept, in bytes; a batch with a larger
/// one is freed. A batch of 16,384 events fits (24 bytes of event column each), which is far
/// more than any batch size a source closes.
pub const MAX_POOLED_COLUMN_BYTES: usize = 384 << 10;

/// Whether a batch's buffers are small enough to keep: the pool's memory stays under
/// `MAX_POOLED` × (`MAX_POOLED_BYTES` + 3 × `MAX_POOLED_COLUMN_BYTES`), about 68 MiB.
fn keepable(events: &Events) -> bool {
    let column = |capacity: usize, width: usize| capacity.saturating_mul(width);
    (1..=MAX_POOLED_BYTES).contains(&events.data.capacity())
        && column(events.events.capacity(), 4) <= MAX_POOLED_COLUMN_BYTES
        && column(events.headers.capacity(), 4) <= MAX_POOLED_COLUMN_BYTES
        && column(events.timestamps.capacity(), 8) <= MAX_POOLED_COLUMN_BYTES
}

static POOL: Mutex<Vec<Events>> = Mutex::new(Vec::new());

/// An empty batch, with the capacity of a recycled one when there is one: the largest, so
/// that a source filling it rarely has to grow it. Buffers come back in every size (a stage's
/// output is exactly as large as it was, a filter's much smaller than its input), and which
/// one is on top depends on timing; taking the largest makes a steady run's allocations not
/// depend on it. At most `MAX_POOLED` entries are looked at.
pub fn take() -> Events {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let largest = (pool.iter().enumerate())
        .max_by_key(|(_, e)| e.data.capacity())
        .map(|(i, _)| i);
    largest.map(|i| pool.swap_remove(i)).unwrap_or_default()
}

/// Gives a batch's buffers back, emptied, for a later batch.
pub fn recycle(mut events: Events) {
    if !keepable(&events) {
        return;
    }
    events.clear();
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < MAX_POOLED {
        pool.push(events);
        return;
    }
    // Full: a larger buffer takes the place of the smallest.
    if let Some((i, smallest)) = (pool.iter().enumerate()).min_by_key(|(_, e)| e.data.capacity())
        && smallest.data.capacity() < events.data.capacity()
    {
        pool[i] = events;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_with_any_large_column_is_not_kept() {
        assert!(keepable(&Events::with_capacity(256, 4096)));
        for grow in [
            |e: &mut Events| e.headers.reserve(1 << 20),
            |e: &mut Events| e.events.reserve(1 << 20),
            |e: &mut Events| e.timestamps.reserve(1 << 20),
            |e: &mut Events| e.data.reserve(2 << 20),
        ] {
            let mut big = Events::with_capacity(256, 4096);
            grow(&mut big);
            assert!(!keepable(&big));
        }
        assert!(!keepable(&Events::new()), "nothing to keep");
    }
}
