//! The state on disk: one redb database, `state.redb` in the data folder, holding a table per
//! stage (`stage/NAME`: key → expiry and value) and one of source positions (`positions`:
//! source → its checkpoint file's bytes). A commit round writes both in one transaction,
//! made durable (`fsync`) before it returns, so that after a crash the store holds the state
//! and the positions of the same round. redb was chosen by measurement (BENCHMARKS.md,
//! "Choosing the state store").

use std::path::{Path, PathBuf};

use std::ops::Bound;

use redb::{Builder, Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use weir_sandbox::{Page, wall_ms};

/// Source positions: a source's name → the bytes of its checkpoint file.
const POSITIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("positions");

/// The store's file in the data folder.
pub const FILE: &str = "state.redb";

/// The store's own page cache. redb's default (1 GiB) would let the process grow with a state
/// on disk until it held most of it twice, once here and once in the stages' caches, which
/// `state_cache_bytes` bound; reads past both go to the kernel's page cache, not to weir's.
const PAGE_CACHE: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
#[error("the state store {}: {message}", path.display())]
pub struct StoreError {
    pub path: PathBuf,
    pub message: String,
}

/// A row as the store keeps it: when it expires (milliseconds since the epoch), if ever, and
/// its value.
pub type Row = (Option<u64>, Vec<u8>);

/// What one round writes for a stage: each key's value after the round, or `None` (deleted).
pub type Writes = Vec<(Vec<u8>, Option<(Option<u64>, Vec<u8>)>)>;

pub struct Store {
    path: PathBuf,
    db: Database,
}

/// What a stage's state reads from the store when an entry is not in memory: the store and the
/// stage's table.
pub struct Backing {
    pub store: std::sync::Arc<Store>,
    table: String,
}

impl Backing {
    pub fn new(store: std::sync::Arc<Store>, stage: &str) -> Backing {
        Backing {
            store,
            table: table_name(stage),
        }
    }

    /// The row under `key`, expired or not.
    pub fn get(&self, key: &[u8]) -> Result<Option<Row>, StoreError> {
        self.store.get(&self.table, key)
    }

    /// Calls `f` with each row from `start` on, in key order, until it returns `false`.
    pub fn walk(
        &self,
        start: Bound<&[u8]>,
        f: impl FnMut(&[u8], Option<u64>, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.store.walk(&self.table, start, f)
    }
}

fn table_name(stage: &str) -> String {
    format!("stage/{stage}")
}

/// Expiry first (8 bytes, `u64::MAX` for none), then the value.
fn encode(expires: Option<u64>, value: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + value.len());
    bytes.extend_from_slice(&expires.unwrap_or(u64::MAX).to_le_bytes());
    bytes.extend_from_slice(value);
    bytes
}

fn decode(bytes: &[u8]) -> Option<(Option<u64>, &[u8])> {
    let (head, value) = bytes.split_first_chunk::<8>()?;
    let expires = u64::from_le_bytes(*head);
    Some(((expires != u64::MAX).then_some(expires), value))
}

impl Store {
    /// Opens (or makes) the store in the data folder `dir`. After a crash redb finds its last
    /// durable transaction.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(FILE);
        let db = Builder::new()
            .set_cache_size(PAGE_CACHE)
            .create(&path)
            .map_err(|e| StoreError {
                path: path.clone(),
                message: e.to_string(),
            })?;
        Ok(Store { path, db })
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// The row under `key` in `table`, expired or not.
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Row>, StoreError> {
        let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(table);
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match read.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        match table.get(key).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => decode(v.value())
                .map(|(expires, value)| Some((expires, value.to_vec())))
                .ok_or_else(|| self.err("a short row")),
        }
    }

    /// Calls `f` with each row of `table` from `start` on, in key order, until it returns
    /// `false`.
    fn walk(
        &self,
        table: &str,
        start: Bound<&[u8]>,
        mut f: impl FnMut(&[u8], Option<u64>, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(table);
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match read.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(self.err(e)),
        };
        let range = (table.range((start, Bound::<&[u8]>::Unbounded))).map_err(|e| self.err(e))?;
        for item in range {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let (expires, value) = decode(v.value()).ok_or_else(|| self.err("a short row"))?;
            if !f(k.value(), expires, value) {
                break;
            }
        }
        Ok(())
    }

    /// Every source position the store holds.
    pub fn positions(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match read.open_table(POSITIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Writes one round: each stage's writes and each source's position, in one durable
    /// transaction.
    pub fn commit(
        &self,
        stages: &[(&str, Writes)],
        positions: &[(&str, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(|e| self.err(e))?;
        tx.set_durability(Durability::Immediate)
            .map_err(|e| self.err(e))?;
        for (stage, writes) in stages {
            let name = table_name(stage);
            let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
            let mut table = tx.open_table(def).map_err(|e| self.err(e))?;
            for (key, written) in writes {
                match written {
                    Some((expires, value)) => {
                        table
                            .insert(key.as_slice(), encode(*expires, value).as_slice())
                            .map_err(|e| self.err(e))?;
                    }
                    None => {
                        table.remove(key.as_slice()).map_err(|e| self.err(e))?;
                    }
                }
            }
        }
        {
            let mut table = tx.open_table(POSITIONS).map_err(|e| self.err(e))?;
            for (source, bytes) in positions {
                table
                    .insert(*source, bytes.as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Up to `limit` live entries of a stage's state whose keys start with `prefix`, after
    /// `after`, and whether more remain (`weir state` on a data folder, offline).
    pub fn page(
        &self,
        stage: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let now = wall_ms();
        let mut page = Page::default();
        self.walk(&table_name(stage), start, |key, expires, value| {
            if !key.starts_with(prefix) {
                return false;
            }
            if expires.is_some_and(|t| t <= now) {
                return true;
            }
            if page.entries.len() == limit {
                page.more = true;
                return false;
            }
            page.entries.push((key.to_vec(), value.to_vec()));
            true
        })?;
        Ok(page)
    }

    /// Writes entries into a stage's state, with no expiry, in one durable transaction
    /// (`weir state import` on a data folder, offline).
    pub fn import(&self, stage: &str, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        let writes: Writes = entries
            .iter()
            .map(|(k, v)| (k.clone(), Some((None, v.clone()))))
            .collect();
        self.commit(&[(stage, writes)], &[])
    }

    /// Forgets every stage's state and every position (`weir run --from-start`).
    pub fn clear(&self, stages: &[&str]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        for stage in stages {
            let name = table_name(stage);
            let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
            tx.delete_table(def).map_err(|e| self.err(e))?;
        }
        tx.delete_table(POSITIONS).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }
}
