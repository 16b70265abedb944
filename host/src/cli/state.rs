//! `weir state ls|get|export|import STAGE`: a running pipeline's keyed state, through its admin
//! API. Entries travel as JSON lines (`key`/`value` as text, or `key_base64`/`value_base64`
//! for bytes that are not UTF-8), the same for export and import, so an export can be read,
//! edited and imported into another run.

use std::io::Write;
use std::path::Path;

use super::admin::{client_failed, connect};
use super::{AdminArgs, CommandResult};
use crate::control::api::StateEntry;

/// Entries asked for per page by `export` and `ls`.
const PAGE: usize = 1_000;

/// Prints each entry of the stage's state (those with keys starting with `prefix`), as JSON
/// lines (`values`) or keys only, page after page, at most `limit` in all.
pub(super) fn list(
    stage: &str,
    prefix: &str,
    limit: Option<usize>,
    values: bool,
    admin: &AdminArgs,
) -> CommandResult {
    let client = connect(admin.admin.as_deref(), &admin.auth)?;
    let mut after: Option<String> = None;
    let mut left = limit.unwrap_or(usize::MAX);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while left > 0 {
        let page = client
            .state_page(stage, prefix, after.as_deref(), left.min(PAGE))
            .map_err(client_failed)?;
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

/// A key as text, or `base64:…` for bytes that are not UTF-8.
fn key_text(entry: &StateEntry) -> String {
    match (&entry.key, &entry.key_base64) {
        (Some(k), _) => k.clone(),
        (None, Some(b)) => format!("base64:{b}"),
        (None, None) => String::new(),
    }
}

/// Prints one entry as a JSON line; a missing key exits 1.
pub(super) fn get(stage: &str, key: &str, admin: &AdminArgs) -> CommandResult {
    let entry = connect(admin.admin.as_deref(), &admin.auth)?
        .state_key(stage, key)
        .map_err(client_failed)?;
    out!(
        "{}",
        serde_json::to_string(&entry).map_err(|e| (1, e.to_string()))?
    );
    Ok(())
}

/// Writes the JSON lines of `file` into the stage's state.
pub(super) fn import(stage: &str, file: &Path, admin: &AdminArgs) -> CommandResult {
    let lines =
        std::fs::read(file).map_err(|e| (2, format!("{}: cannot read it: {e}", file.display())))?;
    let imported = connect(admin.admin.as_deref(), &admin.auth)?
        .state_import(stage, &lines)
        .map_err(client_failed)?;
    out!("stage `{stage}`: {} entries imported", imported.imported);
    Ok(())
}
