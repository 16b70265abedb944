//! A pool of batch buffers, so that a steady pipeline reuses its memory instead of
//! allocating for every batch.
//!
//! A sink hands the buffers of each batch it has written back to the pool, and so does a stage
//! for the input it has finished with; a source takes buffers from the pool for the batches it
//! fills. The pool keeps at most [`MAX_POOLED`] buffers, and none larger than
//! [`MAX_POOLED_BYTES`]: a burst of huge values cannot pin their memory for the rest of the
//! run.

use std::sync::Mutex;

use weir_sandbox::Events;

/// Buffers the pool keeps. Bounds the memory it holds to this many batches' worth.
pub const MAX_POOLED: usize = 32;
/// The largest data buffer kept; larger ones are freed.
pub const MAX_POOLED_BYTES: usize = 1 << 20;

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
    if events.data.capacity() == 0 || events.data.capacity() > MAX_POOLED_BYTES {
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
