//! What a NATS source whose stages keep durable state has committed, per consumer: the
//! position the state's commit rounds write beside the state, and what a restart compares
//! each delivered message to.
//!
//! A consumer cannot be rewound; after a crash the server redelivers what was not acked. Since
//! a message is acked only after the round that holds its effect is durable, a redelivered
//! message is either not committed (it runs again, against state without its effect) or
//! committed and its ack lost with the process (it must be acked and skipped). [`Committed`]
//! tells the two apart: a floor and ranges of stream sequences, meaning "every message ever
//! delivered to this consumer with a sequence at or below the floor, or within a range, is
//! committed". Sequences a consumer never delivers (another subject's, on a stream that holds
//! several partitions) may sit inside a range: they are never asked about.
//!
//! How the ranges stay few. A consumer delivers each message the first time in stream order,
//! and numbers every delivery (the consumer sequence). So two first deliveries with no
//! delivery missed between them (consecutive consumer sequences on the way) leave no message
//! of this consumer between their stream sequences: once both are committed, the range
//! between them is. A run of messages makes one range however sparse its sequences; a lost
//! delivery, a redelivery or a restart starts another. The server's ack floor (every message
//! at or below it acked, so committed, or never ours) is fetched now and then and raises the
//! floor, absorbing the ranges below it.
//!
//! [`Track`] follows one consumer through a run: what it has committed, the messages taken
//! and not yet committed (by stream sequence, with their batch), and the log of taken
//! messages in the order they came, which a commit round folds into the ranges up to the
//! batch it covers. [`Positions`] holds a source's tracks and the bytes of its position.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Stream sequences committed for one consumer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Committed {
    /// Every message delivered at or below it is committed (0: none).
    floor: u64,
    /// Further ranges, first → last, above `floor + 1`, apart (never adjacent).
    ranges: BTreeMap<u64, u64>,
}

impl Committed {
    /// Whether a message delivered with sequence `seq` is committed.
    pub(crate) fn contains(&self, seq: u64) -> bool {
        seq <= self.floor
            || self
                .ranges
                .range(..=seq)
                .next_back()
                .is_some_and(|(_, &last)| seq <= last)
    }

    /// Every message delivered with a sequence in `first..=last` is committed.
    pub(crate) fn insert(&mut self, first: u64, last: u64) {
        let (mut first, mut last) = (first.min(last), first.max(last));
        // Absorb every range that overlaps or touches the new one.
        let touching: Vec<u64> = self
            .ranges
            .range(..=last.saturating_add(1))
            .rev()
            .take_while(|(_, l)| l.saturating_add(1) >= first)
            .map(|(f, _)| *f)
            .collect();
        for f in touching {
            let l = self.ranges.remove(&f).expect("just seen");
            first = first.min(f);
            last = last.max(l);
        }
        self.ranges.insert(first, last);
        self.settle();
    }

    /// Every message delivered at or below `floor` is committed (the server's ack floor).
    pub(crate) fn raise_floor(&mut self, floor: u64) {
        self.floor = self.floor.max(floor);
        self.settle();
    }

    /// Moves the ranges that reach the floor into it.
    fn settle(&mut self) {
        while let Some((&f, &l)) = self.ranges.first_key_value() {
            if f > self.floor.saturating_add(1) {
                break;
            }
            self.ranges.remove(&f);
            self.floor = self.floor.max(l);
        }
    }

    /// How many ranges it holds beside the floor.
    pub(crate) fn ranges(&self) -> usize {
        self.ranges.len()
    }

    /// Every message delivered at or below it is committed.
    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }
}

/// One message taken in this run, in the order taken.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    /// The source batch it is in: it is committed with that batch.
    batch: u64,
    /// Its first delivery: it can close a range with the previous first delivery.
    first: bool,
    /// No delivery was missed since the previous first delivery taken.
    linked: bool,
}

/// What the reader does with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Not seen in this run, not committed: it runs.
    New,
    /// Its effect is committed (its ack was lost with a process): ack it, do not run it.
    Committed,
    /// Redelivered while this run still holds it, as message `index` of batch `batch`: ack it
    /// with that one.
    Holding { batch: u64, index: u32 },
}

/// A delivered message, as its metadata describes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery {
    pub seq: u64,
    /// The consumer's number for this delivery: one more than the delivery before it.
    pub delivery: u64,
    /// Whether it is the message's first delivery.
    pub first: bool,
}

/// One consumer through a run.
#[derive(Debug, Default)]
pub(crate) struct Track {
    committed: Committed,
    /// Taken and not yet committed: sequence → batch and index in it.
    taken: HashMap<u64, (u64, u32)>,
    /// Taken, oldest first, until a round folds them in.
    log: VecDeque<Entry>,
    /// The consumer sequence of the last delivery seen.
    last_delivery: Option<u64>,
    /// Whether a first delivery was taken this run, and none missed since.
    chained: bool,
    /// The sequence of the last first delivery folded into `committed`: the open end of the
    /// range a linked first delivery extends.
    open_end: Option<u64>,
}

impl Track {
    fn with(committed: Committed) -> Track {
        Track {
            committed,
            ..Track::default()
        }
    }

    /// Takes a delivery into batch `batch` (the one being gathered) as its message `index`.
    pub(crate) fn take(&mut self, d: Delivery, batch: u64, index: u32) -> Taken {
        if self
            .last_delivery
            .is_none_or(|last| d.delivery != last.wrapping_add(1))
        {
            // A delivery between was missed (or this run just began): nothing can be said
            // about what lies between the last first delivery and the next.
            self.chained = false;
        }
        self.last_delivery = Some(d.delivery);
        if let Some(&(batch, index)) = self.taken.get(&d.seq) {
            return Taken::Holding { batch, index };
        }
        let committed = self.committed.contains(d.seq);
        if !committed {
            self.taken.insert(d.seq, (batch, index));
        }
        if d.first || !committed {
            // A committed first delivery (a consumer made again) still links the chain.
            self.log.push_back(Entry {
                seq: d.seq,
                batch,
                first: d.first,
                linked: d.first && self.chained,
            });
            if d.first {
                self.chained = true;
            }
        }
        if committed {
            Taken::Committed
        } else {
            Taken::New
        }
    }

    /// Folds the entries of batches through `batch` into `committed`; returns how many.
    fn fold(
        log: &VecDeque<Entry>,
        committed: &mut Committed,
        open_end: &mut Option<u64>,
        batch: u64,
    ) -> usize {
        let mut n = 0;
        for e in log.iter().take_while(|e| e.batch <= batch) {
            match (e.first, e.linked, *open_end) {
                (true, true, Some(end)) => committed.insert(end, e.seq),
                _ => committed.insert(e.seq, e.seq),
            }
            if e.first {
                *open_end = Some(e.seq);
            }
            n += 1;
        }
        n
    }

    /// What is committed once the batches through `batch` are.
    fn committed_through(&self, batch: u64) -> Committed {
        let mut committed = self.committed.clone();
        let mut open_end = self.open_end;
        Track::fold(&self.log, &mut committed, &mut open_end, batch);
        committed
    }

    /// The batches through `batch` are committed.
    fn commit_through(&mut self, batch: u64) {
        let n = Track::fold(&self.log, &mut self.committed, &mut self.open_end, batch);
        for e in self.log.drain(..n) {
            self.taken.remove(&e.seq);
        }
    }

    pub(crate) fn raise_floor(&mut self, floor: u64) {
        self.committed.raise_floor(floor);
    }

    /// Every message delivered at or below it is committed.
    pub(crate) fn floor(&self) -> u64 {
        self.committed.floor()
    }

    #[cfg(test)]
    fn committed(&self) -> &Committed {
        &self.committed
    }
}

/// One consumer's position as the store keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Stored {
    floor: u64,
    ranges: Vec<(u64, u64)>,
}

impl From<&Committed> for Stored {
    fn from(c: &Committed) -> Stored {
        Stored {
            floor: c.floor,
            ranges: c.ranges.iter().map(|(&f, &l)| (f, l)).collect(),
        }
    }
}

impl From<&Stored> for Committed {
    fn from(s: &Stored) -> Committed {
        let mut c = Committed {
            floor: s.floor,
            ranges: BTreeMap::new(),
        };
        for &(first, last) in &s.ranges {
            c.insert(first, last);
        }
        c
    }
}

/// A NATS source's position as the store keeps it: the stream it belongs to, and each
/// consumer's committed sequences.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Position {
    stream: String,
    /// When the stream was made (nanoseconds since the epoch): a stream deleted and made again
    /// under the same name numbers its messages from 1 again, and the old position means
    /// nothing there.
    created: String,
    consumers: BTreeMap<String, Stored>,
}

/// Why a stored position was not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unused {
    #[error("it is not valid ({0}); every redelivered message runs again")]
    Invalid(String),
    #[error(
        "it belongs to stream `{stream}` made at {created}, not to this one: the stream was made \
         again, so its sequences start over; the position is dropped"
    )]
    OtherStream { stream: String, created: String },
}

/// A source's tracks, one per consumer it reads, in the source's order.
#[derive(Debug)]
pub(crate) struct Positions {
    stream: String,
    created: String,
    names: Vec<String>,
    tracks: Vec<Track>,
    /// Consumers of the stored position this run does not read (partitions another run
    /// owned), written back as they were.
    others: BTreeMap<String, Stored>,
}

impl Positions {
    /// The tracks of `names`, starting from the stored position `stored` (if any, and if it
    /// belongs to this stream); why a stored position was not used, if it was not.
    pub(crate) fn load(
        stream: &str,
        created: &str,
        names: &[String],
        stored: Option<&[u8]>,
    ) -> (Positions, Option<Unused>) {
        let (mut held, unused) = match stored.map(serde_json::from_slice::<Position>) {
            None => (BTreeMap::new(), None),
            Some(Err(e)) => (BTreeMap::new(), Some(Unused::Invalid(e.to_string()))),
            Some(Ok(p)) if p.stream != stream || p.created != created => (
                BTreeMap::new(),
                Some(Unused::OtherStream {
                    stream: p.stream,
                    created: p.created,
                }),
            ),
            Some(Ok(p)) => (p.consumers, None),
        };
        let tracks = names
            .iter()
            .map(|n| {
                Track::with(
                    held.remove(n)
                        .as_ref()
                        .map(Committed::from)
                        .unwrap_or_default(),
                )
            })
            .collect();
        let positions = Positions {
            stream: stream.to_string(),
            created: created.to_string(),
            names: names.to_vec(),
            tracks,
            others: held,
        };
        (positions, unused)
    }

    pub(crate) fn track(&mut self, consumer: usize) -> &mut Track {
        &mut self.tracks[consumer]
    }

    /// The position's bytes once the batches through `batch` are committed.
    pub(crate) fn bytes_through(&self, batch: u64) -> Vec<u8> {
        let mut consumers = self.others.clone();
        for (name, track) in self.names.iter().zip(&self.tracks) {
            consumers.insert(name.clone(), Stored::from(&track.committed_through(batch)));
        }
        let position = Position {
            stream: self.stream.clone(),
            created: self.created.clone(),
            consumers,
        };
        serde_json::to_vec(&position).expect("a position always serialises")
    }

    /// The batches through `batch` are committed.
    pub(crate) fn commit_through(&mut self, batch: u64) {
        for track in &mut self.tracks {
            track.commit_through(batch);
        }
    }

    /// Ranges beside the floors, over every consumer.
    pub(crate) fn ranges(&self) -> usize {
        self.tracks.iter().map(|t| t.committed.ranges()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(seq: u64, delivery: u64) -> Delivery {
        Delivery {
            seq,
            delivery,
            first: true,
        }
    }

    fn again(seq: u64, delivery: u64) -> Delivery {
        Delivery {
            seq,
            delivery,
            first: false,
        }
    }

    fn ranges(c: &Committed) -> (u64, Vec<(u64, u64)>) {
        (c.floor, c.ranges.iter().map(|(&f, &l)| (f, l)).collect())
    }

    #[test]
    fn ranges_merge_when_they_touch_and_fall_into_the_floor() {
        let mut c = Committed::default();
        c.insert(10, 12);
        c.insert(14, 20);
        assert_eq!(ranges(&c), (0, vec![(10, 12), (14, 20)]));
        c.insert(13, 13);
        assert_eq!(ranges(&c), (0, vec![(10, 20)]));
        assert!(c.contains(15) && !c.contains(9) && !c.contains(21));
        c.insert(30, 30);
        c.raise_floor(9);
        assert_eq!(ranges(&c), (20, vec![(30, 30)]));
        assert!(c.contains(1) && c.contains(20) && !c.contains(25));
        c.raise_floor(40);
        assert_eq!(ranges(&c), (40, vec![]));
    }

    /// A partition's messages are every third sequence of the stream: consecutive first
    /// deliveries make one range across the others' sequences.
    #[test]
    fn a_run_of_first_deliveries_makes_one_range_however_sparse() {
        let mut t = Track::default();
        for (i, seq) in [3u64, 6, 9, 12, 15].into_iter().enumerate() {
            assert_eq!(
                t.take(first(seq, i as u64 + 1), i as u64 / 2, 0),
                Taken::New
            );
        }
        t.commit_through(1);
        assert_eq!(ranges(t.committed()), (0, vec![(3, 12)]));
        t.commit_through(2);
        assert_eq!(ranges(t.committed()), (0, vec![(3, 15)]));
        assert_eq!(t.take(again(9, 6), 3, 0), Taken::Committed);
        assert_eq!(t.take(first(18, 7), 3, 0), Taken::New);
        assert!(t.taken.contains_key(&18));
    }

    /// A delivery missed between two first deliveries (a pull lost with its messages): the
    /// missed message may lie between them, so no range spans the gap.
    #[test]
    fn a_missed_delivery_breaks_the_range() {
        let mut t = Track::default();
        t.take(first(3, 1), 0, 0);
        t.take(first(6, 2), 0, 1);
        // Delivery 3 (of sequence 9) never arrived.
        t.take(first(12, 4), 0, 2);
        t.commit_through(0);
        assert_eq!(ranges(t.committed()), (0, vec![(3, 6), (12, 12)]));
        assert!(!t.committed().contains(9));
        // Its redelivery runs, and closes nothing across.
        assert_eq!(t.take(again(9, 5), 1, 0), Taken::New);
        t.commit_through(1);
        assert_eq!(ranges(t.committed()), (0, vec![(3, 6), (9, 9), (12, 12)]));
    }

    #[test]
    fn a_redelivery_of_a_message_still_held_joins_it() {
        let mut t = Track::default();
        t.take(first(5, 1), 0, 0);
        t.take(first(6, 2), 0, 1);
        assert_eq!(
            t.take(again(6, 3), 1, 0),
            Taken::Holding { batch: 0, index: 1 }
        );
        // The redelivery does not break the chain: no first delivery was missed.
        t.take(first(7, 4), 1, 0);
        t.commit_through(1);
        assert_eq!(ranges(t.committed()), (0, vec![(5, 7)]));
        assert!(t.taken.is_empty());
    }

    #[test]
    fn only_the_batches_through_the_round_s_are_committed() {
        let mut t = Track::default();
        t.take(first(1, 1), 0, 0);
        t.take(first(2, 2), 1, 0);
        t.take(first(3, 3), 2, 0);
        let through_1 = t.committed_through(1);
        assert_eq!(ranges(&through_1), (2, vec![]));
        assert_eq!(
            ranges(t.committed()),
            (0, vec![]),
            "not before the round commits"
        );
        t.commit_through(1);
        assert!(!t.committed().contains(3));
        assert_eq!(
            t.take(again(3, 4), 3, 0),
            Taken::Holding { batch: 2, index: 0 }
        );
    }

    #[test]
    fn a_position_round_trips_and_another_stream_s_is_dropped() {
        let names = vec!["c-0".to_string(), "c-1".to_string()];
        let (mut p, unused) = Positions::load("IN", "1", &names, None);
        assert!(unused.is_none());
        p.track(0).take(first(4, 1), 0, 0);
        p.track(1).take(first(5, 1), 0, 0);
        p.track(1).take(first(8, 2), 0, 1);
        let bytes = p.bytes_through(0);
        // Partition 1 moves elsewhere: its position is kept as it was.
        let (mut q, unused) = Positions::load("IN", "1", &names[..1], Some(&bytes));
        assert!(unused.is_none());
        assert!(q.track(0).committed().contains(4));
        assert_eq!(q.take_for_test(0, first(4, 9)), Taken::Committed);
        let (r, _) = Positions::load("IN", "1", &names, Some(&q.bytes_through(0)));
        assert_eq!(ranges(r.tracks[1].committed()), (0, vec![(5, 8)]));

        let (again, unused) = Positions::load("IN", "2", &names, Some(&bytes));
        assert!(matches!(unused, Some(Unused::OtherStream { .. })));
        assert!(!again.tracks[0].committed().contains(4));
        let (_, unused) = Positions::load("IN", "1", &names, Some(b"{"));
        assert!(matches!(unused, Some(Unused::Invalid(_))));
    }

    impl Positions {
        fn take_for_test(&mut self, consumer: usize, d: Delivery) -> Taken {
            self.track(consumer).take(d, 0, 0)
        }
    }
}
