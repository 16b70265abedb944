//! The memory scenario: load `keys` keys of 100-byte values in commits of 100,000 (each commit
//! sorted by key, as the host sorts its delta), then read 1,000,000 keys drawn at random and
//! check each value. Keys are 16 bytes: a window start of 0 and a mixed 64-bit number, so the
//! commits land all over the key space as hashed user keys would.

use crate::store::{Result, Store, Write};
use std::time::{Duration, Instant};

pub const COMMIT_KEYS: u64 = 100_000;
pub const READS: u64 = 1_000_000;
const VALUE_BYTES: usize = 100;

/// splitmix64: a bijection, so key `i` is unique and found again from `i`.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[8..].copy_from_slice(&mix(i).to_be_bytes());
    k
}

fn value(i: u64) -> [u8; VALUE_BYTES] {
    let mut v = [0x5a; VALUE_BYTES];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

pub struct Loaded {
    pub keys: u64,
    pub load_time: Duration,
    pub commit_latencies: Vec<Duration>,
}

/// Loads up to `keys` keys; stops early (at a commit boundary) once `budget` has passed.
pub fn load(store: &mut dyn Store, keys: u64, budget: Duration) -> Result<Loaded> {
    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut rows: Vec<([u8; 16], [u8; VALUE_BYTES])> = Vec::with_capacity(COMMIT_KEYS as usize);
    let mut done = 0;
    while done < keys && start.elapsed() < budget {
        let end = keys.min(done + COMMIT_KEYS);
        rows.clear();
        rows.extend((done..end).map(|i| (key(i), value(i))));
        rows.sort_unstable_by_key(|r| r.0);
        let commit_start = Instant::now();
        let mut iter = rows
            .iter()
            .map(|(k, v)| -> Write<'_> { (&k[..], Some(&v[..])) });
        store.commit(&mut iter, end)?;
        latencies.push(commit_start.elapsed());
        done = end;
    }
    store.sync()?;
    Ok(Loaded {
        keys: done,
        load_time: start.elapsed(),
        commit_latencies: latencies,
    })
}

/// Reads `READS` keys drawn at random among the `keys` loaded; returns the time and how many
/// were missing or wrong.
pub fn read(store: &mut dyn Store, keys: u64) -> Result<(Duration, u64)> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut bad = 0;
    for r in 0..READS {
        let i = mix(r ^ 0x5eed) % keys;
        if !store.get(&key(i), &mut out)? || out[..] != value(i)[..] {
            bad += 1;
        }
    }
    Ok((start.elapsed(), bad))
}
