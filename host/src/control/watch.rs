//! The plugin file watcher: one debouncer over the folders of the watched stages' plugin
//! files, telling each stage's actor when its file has settled.
//!
//! A file replaced by a rename is only seen by watching its folder. A plugin file is often
//! written in several steps (truncate, write, write, close); loading it halfway would fail,
//! or worse, succeed with the wrong code, so a change is passed on only once the file has been
//! quiet for [`WATCH_DEBOUNCE`]. The actor then compares the file's metadata and digest with
//! what it last saw, so an event for an unchanged file costs a `stat`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, DebouncedEventKind, Debouncer, new_debouncer};
use tokio::sync::mpsc;

use crate::control::StartError;
use crate::control::actor::Command;

/// Quiet time after the last change of a watched file before it is loaded.
pub const WATCH_DEBOUNCE: Duration = Duration::from_millis(300);

/// Starts watching `targets` (a stage's plugin path and its actor's channel); dropping the
/// returned debouncer stops its thread.
pub(crate) fn start(
    targets: Vec<(String, PathBuf, mpsc::Sender<Command>)>,
) -> Result<Debouncer<RecommendedWatcher>, StartError> {
    let watch_err = |stage: &str, path: &Path, message: String| StartError::Watch {
        stage: stage.to_string(),
        path: path.to_path_buf(),
        message,
    };
    let mut files: Vec<(PathBuf, mpsc::Sender<Command>)> = Vec::new();
    let mut folders: Vec<(PathBuf, String, PathBuf)> = Vec::new();
    for (stage, plugin, commands) in targets {
        let path = plugin
            .canonicalize()
            .map_err(|e| watch_err(&stage, &plugin, e.to_string()))?;
        let folder = path
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| watch_err(&stage, &plugin, "the file has no folder".into()))?;
        if !folders.iter().any(|(f, _, _)| f == &folder) {
            folders.push((folder, stage.clone(), plugin.clone()));
        }
        files.push((path, commands));
    }
    let mut debouncer = new_debouncer(WATCH_DEBOUNCE, move |result: DebounceEventResult| {
        let events = match result {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!("plugin file watcher: {e}");
                return;
            }
        };
        for event in events {
            // `AnyContinuous` means the file is still being written: wait for it to settle.
            if event.kind != DebouncedEventKind::Any {
                continue;
            }
            for (path, commands) in &files {
                if &event.path == path {
                    let trigger = Instant::now();
                    // A full queue makes the watcher wait; a closed one means the run ended.
                    let _ = commands.blocking_send(Command::FileChanged { trigger });
                }
            }
        }
    })
    .map_err(|e| StartError::Watch {
        stage: folders[0].1.clone(),
        path: folders[0].2.clone(),
        message: e.to_string(),
    })?;
    for (folder, stage, plugin) in &folders {
        debouncer
            .watcher()
            .watch(folder, RecursiveMode::NonRecursive)
            .map_err(|e| watch_err(stage, plugin, e.to_string()))?;
    }
    Ok(debouncer)
}
