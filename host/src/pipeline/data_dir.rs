//! The data folder of a run: where sources keep their checkpoints (and, later, stages their
//! state), locked for the run (`weir.lock`, naming its holder) so that two processes never
//! share it.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The data folder of a run, locked while the value lives.
pub struct DataDir {
    path: PathBuf,
    /// Holds the lock; released when dropped (and by the kernel if the process dies).
    _lock: File,
}

/// Why the data folder could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data_dir {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(
        "data_dir {path} is in use by another weir run ({holder}); two runs must not share checkpoints"
    )]
    Busy { path: PathBuf, holder: String },
}

impl DataDir {
    /// Creates (if need be) and locks the folder.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        let io = |e: std::io::Error| DataDirError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(path).map_err(io)?;
        let lock = match lock_file(&path.join("weir.lock")).map_err(io)? {
            Ok(lock) => lock,
            Err(holder) => {
                return Err(DataDirError::Busy {
                    path: path.to_path_buf(),
                    holder,
                });
            }
        };
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where source `name` keeps its checkpoint.
    pub fn checkpoint(&self, source: &str) -> PathBuf {
        self.path.join(format!("source-{source}.checkpoint.json"))
    }
}

/// Writes `bytes` to `path` atomically and durably: a temporary file, `fsync`, a rename over
/// the old file, and an `fsync` of the folder. Each write has a temporary file of its own:
/// two writers of one path at once (a periodic checkpoint and the last one) must not write
/// into each other's file, nor rename it away from under the other.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // A bare file name's parent is the empty path: the current folder.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    let temp = dir.join(name);
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Takes the exclusive lock of the file at `lock_path` (created if need be) without waiting,
/// and writes this process's description into it: `Ok(Err(holder))` when another process
/// holds it, with what that one wrote. The kernel releases the lock when the file is closed,
/// or when the process dies, so a crash leaves nothing to clean up.
pub(crate) fn lock_file(lock_path: &Path) -> std::io::Result<Result<File, String>> {
    let mut lock = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path)?;
    if lock.try_lock().is_err() {
        let mut holder = String::new();
        let _ = lock.read_to_string(&mut holder);
        return Ok(Err(holder.trim().to_string()));
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    lock.set_len(0)?;
    writeln!(
        lock,
        "pid {} on {} since {since} (seconds since the epoch)",
        std::process::id(),
        host.trim()
    )?;
    Ok(Ok(lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_of_a_data_dir_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path()).unwrap();
        let err = DataDir::open(dir.path()).err().expect("locked");
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DataDir::open(dir.path()).expect("free again");
    }
}
