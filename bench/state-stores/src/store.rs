//! The seam between the count logic and an embedded store: point reads, and one atomic commit
//! of a delta (puts and deletes) together with the source's position. The two candidates,
//! fjall (an LSM tree with a journal) and redb (a copy-on-write B-tree), implement it here;
//! the scenarios in `w5` and `load` only ever see the trait, so they run the same logic on both.

use std::path::Path;
use std::time::{Duration, Instant};

/// The key of the source's position, written in every commit beside the delta.
pub const CHECKPOINT_KEY: &[u8] = b"checkpoint/w5";

/// How often the relaxed modes make their commits durable against power loss: weir's default
/// `checkpoint_interval`, so at most one interval of commits is exposed to it.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[cfg(feature = "fjall")]
    #[error("fjall: {0}")]
    Fjall(#[from] fjall::Error),
    #[cfg(feature = "redb")]
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    #[error("store `{0}` is not built into this binary")]
    NotBuilt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One write of a delta: a put, or a delete when the value is `None`.
pub type Write<'a> = (&'a [u8], Option<&'a [u8]>);

/// What a commit promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The store's durable commit: fsync (or fdatasync) before the commit returns.
    Sync,
    /// Hand the commit to the OS (it survives kill -9 for fjall, see `open`), and fsync at most
    /// once per `SYNC_INTERVAL`.
    Relaxed,
}

pub trait Store {
    /// Copies the value of `key` into `out`; false when the key is absent.
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool>;
    /// Applies every write and sets `CHECKPOINT_KEY` to `position`, all in one transaction.
    fn commit(&mut self, writes: &mut dyn Iterator<Item = Write<'_>>, position: u64) -> Result<()>;
    /// Makes every commit so far durable (fsync), as at the end of the input.
    fn sync(&mut self) -> Result<()>;
    /// Counts the keys present (a full scan: for the checks only).
    fn count_keys(&mut self) -> Result<u64>;
}

/// fjall's default memtable size (64 MiB); up to 4 sealed memtables wait for their flush
/// beside the active one before fjall stalls writes, so this sets most of its memory.
const FJALL_MEMTABLE_DEFAULT: u64 = 64 << 20;

/// The stores this binary can run, with their durability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `BTreeMap` in memory: no disk, no durability; shows what the host logic costs alone.
    Memory,
    Fjall {
        durability: Durability,
        memtable_bytes: u64,
    },
    Redb(Durability),
}

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "memory" => Kind::Memory,
            "fjall" => Kind::Fjall {
                durability: Durability::Sync,
                memtable_bytes: FJALL_MEMTABLE_DEFAULT,
            },
            "fjall-relaxed" => Kind::Fjall {
                durability: Durability::Relaxed,
                memtable_bytes: FJALL_MEMTABLE_DEFAULT,
            },
            "fjall-mt8" => Kind::Fjall {
                durability: Durability::Sync,
                memtable_bytes: 8 << 20,
            },
            "redb" => Kind::Redb(Durability::Sync),
            "redb-relaxed" => Kind::Redb(Durability::Relaxed),
            _ => return None,
        })
    }
}

/// Opens (or creates) the store of `kind` in the folder `dir`, its block or page cache limited
/// to `cache_bytes`.
pub fn open(kind: Kind, dir: &Path, cache_bytes: u64) -> Result<Box<dyn Store>> {
    match kind {
        Kind::Memory => Ok(Box::new(MemoryStore::default())),
        #[cfg(feature = "fjall")]
        Kind::Fjall {
            durability,
            memtable_bytes,
        } => Ok(Box::new(fjall_store::FjallStore::open(
            dir,
            cache_bytes,
            memtable_bytes,
            durability,
        )?)),
        #[cfg(feature = "redb")]
        Kind::Redb(d) => Ok(Box::new(redb_store::RedbStore::open(dir, cache_bytes, d)?)),
        #[allow(unreachable_patterns)]
        other => Err(StoreError::NotBuilt(format!("{other:?}"))),
    }
}

/// The in-memory stand-in: it is dropped with the process (so the reopen check does not apply).
#[derive(Default)]
pub struct MemoryStore {
    map: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Store for MemoryStore {
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        out.clear();
        match self.map.get(key) {
            Some(v) => {
                out.extend_from_slice(v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn commit(&mut self, writes: &mut dyn Iterator<Item = Write<'_>>, position: u64) -> Result<()> {
        for (key, value) in writes {
            match value {
                Some(v) => self.map.insert(key.to_vec(), v.to_vec()),
                None => self.map.remove(key),
            };
        }
        self.map
            .insert(CHECKPOINT_KEY.to_vec(), position.to_be_bytes().to_vec());
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        Ok(())
    }

    fn count_keys(&mut self) -> Result<u64> {
        Ok(self.map.len() as u64)
    }
}

/// Whether a relaxed store is due its periodic fsync.
fn sync_due(last: &mut Instant) -> bool {
    if last.elapsed() >= SYNC_INTERVAL {
        *last = Instant::now();
        true
    } else {
        false
    }
}

#[cfg(feature = "fjall")]
mod fjall_store {
    //! fjall: a batch is written to the journal as one record (atomic on recovery) and then to
    //! the memtable. `Sync` persists the journal with `SyncAll` (fsync) in the commit;
    //! `Relaxed` with `Buffer` (its buffered writer flushed to the OS, which is what survives
    //! kill -9; fjall's own default, no durability on the batch, leaves the record in a
    //! user-space buffer), and `Database::persist(SyncAll)` at most once per interval.
    use super::{CHECKPOINT_KEY, Durability, Result, Store, Write};
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
    use std::path::Path;
    use std::time::Instant;

    pub struct FjallStore {
        db: Database,
        state: Keyspace,
        durability: Durability,
        last_sync: Instant,
    }

    impl FjallStore {
        pub fn open(
            dir: &Path,
            cache_bytes: u64,
            memtable_bytes: u64,
            durability: Durability,
        ) -> Result<Self> {
            let db = Database::builder(dir).cache_size(cache_bytes).open()?;
            let options = || KeyspaceCreateOptions::default().max_memtable_size(memtable_bytes);
            let state = db.keyspace("state", options)?;
            Ok(FjallStore {
                db,
                state,
                durability,
                last_sync: Instant::now(),
            })
        }
    }

    impl Store for FjallStore {
        fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
            out.clear();
            match self.state.get(key)? {
                Some(v) => {
                    out.extend_from_slice(&v);
                    Ok(true)
                }
                None => Ok(false),
            }
        }

        fn commit(
            &mut self,
            writes: &mut dyn Iterator<Item = Write<'_>>,
            position: u64,
        ) -> Result<()> {
            let mode = match self.durability {
                Durability::Sync => PersistMode::SyncAll,
                Durability::Relaxed => PersistMode::Buffer,
            };
            let mut batch = self.db.batch().durability(Some(mode));
            for (key, value) in writes {
                match value {
                    Some(v) => batch.insert(&self.state, key, v),
                    None => batch.remove(&self.state, key),
                }
            }
            batch.insert(&self.state, CHECKPOINT_KEY, &position.to_be_bytes()[..]);
            batch.commit()?;
            if self.durability == Durability::Relaxed && super::sync_due(&mut self.last_sync) {
                self.db.persist(PersistMode::SyncAll)?;
            }
            Ok(())
        }

        fn sync(&mut self) -> Result<()> {
            Ok(self.db.persist(PersistMode::SyncAll)?)
        }

        fn count_keys(&mut self) -> Result<u64> {
            Ok(self.state.len()? as u64)
        }
    }
}

#[cfg(feature = "redb")]
mod redb_store {
    //! redb: a write transaction copies the B-tree pages it changes and commits by writing a
    //! new header slot. `Sync` is `Durability::Immediate` (pages and header, then one
    //! fdatasync: the header is checksummed, so no second phase); `Relaxed` is
    //! `Durability::None` (visible, not durable: a kill -9 returns the file to the last
    //! `Immediate` commit) with an `Immediate` commit at most once per interval. Reads go
    //! through one read transaction, renewed after each commit.
    use super::{CHECKPOINT_KEY, Durability, Result, Store, Write};
    use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTableMetadata, TableDefinition};
    use std::path::Path;
    use std::time::Instant;

    const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");

    pub struct RedbStore {
        db: Database,
        read: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
        durability: Durability,
        last_sync: Instant,
    }

    impl RedbStore {
        pub fn open(dir: &Path, cache_bytes: u64, durability: Durability) -> Result<Self> {
            let db = Database::builder()
                .set_cache_size(cache_bytes as usize)
                .create(dir.join("state.redb"))
                .map_err(redb::Error::from)?;
            let tx = db.begin_write().map_err(redb::Error::from)?;
            tx.open_table(STATE).map_err(redb::Error::from)?;
            tx.commit().map_err(redb::Error::from)?;
            let mut store = RedbStore {
                db,
                read: None,
                durability,
                last_sync: Instant::now(),
            };
            store.renew_read()?;
            Ok(store)
        }

        fn renew_read(&mut self) -> Result<()> {
            let tx = self.db.begin_read().map_err(redb::Error::from)?;
            self.read = Some(tx.open_table(STATE).map_err(redb::Error::from)?);
            Ok(())
        }
    }

    impl Store for RedbStore {
        fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
            use redb::ReadableTable;
            out.clear();
            let table = self
                .read
                .as_ref()
                .expect("a read table is open between commits");
            match table.get(key).map_err(redb::Error::from)? {
                Some(v) => {
                    out.extend_from_slice(v.value());
                    Ok(true)
                }
                None => Ok(false),
            }
        }

        fn commit(
            &mut self,
            writes: &mut dyn Iterator<Item = Write<'_>>,
            position: u64,
        ) -> Result<()> {
            // An open read transaction would keep the pages this commit replaces from reuse.
            self.read = None;
            let mut tx = self.db.begin_write().map_err(redb::Error::from)?;
            let durable =
                self.durability == Durability::Sync || super::sync_due(&mut self.last_sync);
            let level = if durable {
                redb::Durability::Immediate
            } else {
                redb::Durability::None
            };
            tx.set_durability(level).map_err(redb::Error::from)?;
            {
                let mut table = tx.open_table(STATE).map_err(redb::Error::from)?;
                for (key, value) in writes {
                    match value {
                        Some(v) => {
                            table.insert(key, v).map_err(redb::Error::from)?;
                        }
                        None => {
                            table.remove(key).map_err(redb::Error::from)?;
                        }
                    }
                }
                let pos = position.to_be_bytes();
                table
                    .insert(CHECKPOINT_KEY, &pos[..])
                    .map_err(redb::Error::from)?;
            }
            tx.commit().map_err(redb::Error::from)?;
            self.renew_read()
        }

        fn sync(&mut self) -> Result<()> {
            self.read = None;
            let mut tx = self.db.begin_write().map_err(redb::Error::from)?;
            tx.set_durability(redb::Durability::Immediate)
                .map_err(redb::Error::from)?;
            tx.commit().map_err(redb::Error::from)?;
            self.renew_read()
        }

        fn count_keys(&mut self) -> Result<u64> {
            let table = self
                .read
                .as_ref()
                .expect("a read table is open between commits");
            Ok(table.len().map_err(redb::Error::from)?)
        }
    }
}
