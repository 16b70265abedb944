//! Which partition a key belongs to: the one place that decides it.
//!
//! A NATS sink with `partitions = P` publishes an event to `SUBJECT.p`, `p` =
//! [`partition_of`]`(key, P)`; a NATS source with `partitions = [..]` consumes those subjects,
//! and the process that consumes a partition keeps the keyed state of its keys. The same
//! function will route keys to a stage's workers inside one process. So the answer decides
//! where a key's state lives, and it must never change: not between runs, processes,
//! platforms, compilers or weir versions. It is a fixed algorithm, written out here rather
//! than taken from a hash crate or the standard library (whose `Hasher`s may change between
//! releases), and pinned by the known values in the tests below: a change to it is a change
//! to where every key's state lives, and must fail them.
//!
//! The algorithm: 64-bit FNV-1a over the key's bytes, then the 64-bit finalizer of
//! MurmurHash3 (`fmix64`), then the remainder by the number of partitions. FNV-1a alone mixes
//! its low bits poorly (the low `k` bits of its result depend only on the low `k` bits of each
//! byte, so with 2 partitions a key's partition would follow the parity of its bytes); the
//! finalizer spreads every input bit over every output bit before the remainder takes the low
//! ones.

/// FNV-1a's 64-bit offset basis and prime (the FNV specification).
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// MurmurHash3's 64-bit finalizer: every input bit affects every output bit.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The partition of `key` among `partitions` (at least 1; 0 is taken as 1), in
/// `0..partitions`. Stable across runs, processes, platforms and weir versions: see the
/// module's documentation.
pub fn partition_of(key: &[u8], partitions: u32) -> u32 {
    let partitions = u64::from(partitions.max(1));
    // The remainder is below `partitions`, itself a u32.
    (fmix64(fnv1a(key)) % partitions) as u32
}

/// The subject of partition `partition` of `base`: `base.partition`, as a NATS sink publishes
/// to it and a NATS source filters on it.
pub fn subject(base: &str, partition: u32) -> String {
    format!("{base}.{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The FNV specification's own test vectors: the first half of the algorithm is FNV-1a.
    #[test]
    fn fnv1a_is_the_specified_one() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// Where keys live. These values are a promise: a stored state is found by them. If this
    /// test fails, the change moved keys between partitions; undo it.
    #[test]
    fn partitions_of_known_keys_never_change() {
        let known: [(&[u8], u32, u32); 10] = [
            (b"", 3, 2),
            (b"k0", 3, 1),
            (b"k1", 3, 0),
            (b"k2", 3, 1),
            (b"user-42", 16, 13),
            (b"user-43", 16, 1),
            (b"\xff\x00binary", 1024, 760),
            (b"k0", 1, 0),
            (b"k0", 2, 1),
            (b"k1", 2, 1),
        ];
        let got: Vec<(&[u8], u32, u32)> = known
            .iter()
            .map(|&(k, p, _)| (k, p, partition_of(k, p)))
            .collect();
        assert_eq!(got, known);
    }

    #[test]
    fn every_partition_is_in_range_and_one_partition_takes_everything() {
        for i in 0..10_000u32 {
            let key = i.to_le_bytes();
            assert!(partition_of(&key, 7) < 7);
            assert_eq!(partition_of(&key, 1), 0);
            assert_eq!(partition_of(&key, 0), 0);
        }
    }

    /// Keys that differ only in their last character spread evenly, even over a power of two
    /// (where FNV-1a's low bits alone would not).
    #[test]
    fn keys_spread_evenly() {
        for partitions in [2u32, 3, 4, 16, 1024] {
            let keys = 100 * partitions;
            let mut counts = vec![0u32; partitions as usize];
            for i in 0..keys {
                counts[partition_of(format!("key-{i}").as_bytes(), partitions) as usize] += 1;
            }
            let (min, max) = (
                *counts.iter().min().expect("some"),
                *counts.iter().max().expect("some"),
            );
            // 100 keys per partition on average: a fair hash stays well within 50..160.
            assert!(min >= 50 && max <= 160, "{partitions}: {min}..{max}");
        }
    }
}
