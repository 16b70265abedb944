//! `weir state ls|get|export|import STAGE`: a stage's keyed state, from a running pipeline
//! through its admin API, or with `--data-dir DIR` from the store a stopped pipeline left in
//! its data folder (locked meanwhile, so no run can start on it). Entries travel as JSON lines
//! (`key`/`value` as text, or `key_base64`/`value_base64` for bytes that are not text), the
//! same for export and import, so an export can be read, edited and imported elsewhere.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;

use super::admin::{client_failed, connect};
use super::{AdminArgs, CommandResult, one_line};
use crate::control::api::{StateEntry, StatePage};
use crate::control::client::Client;
use crate::pipeline::data_dir::DataDir;
use crate::pipeline::state::Store;

/// Entries asked for per page by `export` and `ls`.
const PAGE: usize = 1_000;

/// Where the state is read: a running pipeline, or a data folder.
enum Place {
    Running(Client),
    /// The folder's lock is held while the store is open.
    Folder {
        store: Store,
        _lock: DataDir,
    },
}

impl Place {
    fn open(data_dir: Option<&Path>, admin: &AdminArgs) -> Result<Place, (u8, String)> {
        let Some(dir) = data_dir else {
            return Ok(Place::Running(connect(
                admin.admin.as_deref(),
                &admin.auth,
            )?));
        };
        let locked = DataDir::open(dir).map_err(|e| {
            (
                2,
                format!("{} (while it runs, give `--admin` instead)", one_line(e)),
            )
        })?;
        let store = Store::open(dir).map_err(|e| (2, one_line(e)))?;
        Ok(Place::Folder {
            store,
            _lock: locked,
        })
    }

    fn page(
        &self,
        stage: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<StatePage, (u8, String)> {
        match self {
            Place::Running(client) => client
                .state_page(stage, prefix, after, limit)
                .map_err(client_failed),
            Place::Folder { store, .. } => {
                let after = after
                    .map(|a| base64::engine::general_purpose::STANDARD.decode(a))
                    .transpose()
                    .map_err(|e| (1, format!("a bad cursor: {e}")))?;
                let weir_sandbox::Page { entries, more } = store
                    .page(stage, prefix.as_bytes(), after.as_deref(), limit)
                    .map_err(|e| (1, one_line(e)))?;
                let next = (more)
                    .then(|| entries.last())
                    .flatten()
                    .map(|(k, _)| base64::engine::general_purpose::STANDARD.encode(k));
                Ok(StatePage {
                    entries: entries.iter().map(|(k, v)| StateEntry::new(k, v)).collect(),
                    next,
                })
            }
        }
    }
}

/// Prints each entry of the stage's state (those with keys starting with `prefix`), as JSON
/// lines (`values`) or keys only, page after page, at most `limit` in all.
pub(super) fn list(
    stage: &str,
    prefix: &str,
    limit: Option<usize>,
    values: bool,
    (data_dir, admin): (Option<&Path>, &AdminArgs),
) -> CommandResult {
    let place = Place::open(data_dir, admin)?;
    let mut after: Option<String> = None;
    let mut left = limit.unwrap_or(usize::MAX);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while left > 0 {
        let page = place.page(stage, prefix, after.as_deref(), left.min(PAGE))?;
        for entry in &page.entries {
            let line = if values {
                serde_json::to_string(entry).map_err(|e| (1, e.to_string()))?
            } else {
                key_text(entry)
            };
            // A closed pipe (`| head`) ends the listing quietly.
            if writeln!(out, "{line}").is_err() {
                return Ok(());
            }
        }
        left = left.saturating_sub(page.entries.len());
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(())
}

/// A key as text, or `base64:…` for bytes that are not text.
fn key_text(entry: &StateEntry) -> String {
    match (&entry.key, &entry.key_base64) {
        (Some(k), _) => k.clone(),
        (None, Some(b)) => format!("base64:{b}"),
        (None, None) => String::new(),
    }
}

/// Prints one entry as a JSON line; a missing key exits 1.
pub(super) fn get(
    stage: &str,
    key: &str,
    (data_dir, admin): (Option<&Path>, &AdminArgs),
) -> CommandResult {
    let entry = match Place::open(data_dir, admin)? {
        Place::Running(client) => client.state_key(stage, key).map_err(client_failed)?,
        Place::Folder { store, .. } => {
            let page = store
                .page(stage, key.as_bytes(), None, 1)
                .map_err(|e| (1, one_line(e)))?;
            match page.entries.into_iter().next() {
                Some((k, v)) if k == key.as_bytes() => StateEntry::new(&k, &v),
                _ => return Err((1, format!("stage `{stage}`: no such key"))),
            }
        }
    };
    out!(
        "{}",
        serde_json::to_string(&entry).map_err(|e| (1, e.to_string()))?
    );
    Ok(())
}

/// Writes the JSON lines of `file` into the stage's state.
pub(super) fn import(
    stage: &str,
    file: &Path,
    (data_dir, admin): (Option<&Path>, &AdminArgs),
) -> CommandResult {
    let lines =
        std::fs::read(file).map_err(|e| (2, format!("{}: cannot read it: {e}", file.display())))?;
    let imported = match Place::open(data_dir, admin)? {
        Place::Running(client) => {
            client
                .state_import(stage, &lines)
                .map_err(client_failed)?
                .imported
        }
        Place::Folder { store, .. } => {
            let mut entries = Vec::new();
            for (i, line) in lines.split(|&b| b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let pair = serde_json::from_slice::<StateEntry>(line)
                    .map_err(|e| e.to_string())
                    .and_then(|entry| entry.bytes())
                    .map_err(|e| (1, format!("{}: line {}: {e}", file.display(), i + 1)))?;
                entries.push(pair);
            }
            store
                .import(stage, &entries)
                .map_err(|e| (1, one_line(e)))?;
            entries.len()
        }
    };
    out!("stage `{stage}`: {imported} entries imported");
    Ok(())
}
