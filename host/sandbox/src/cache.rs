//! The compile cache: compiled components kept on disk, so that a restart does not recompile.
//!
//! Compiling is most of a plugin's load time (tens to hundreds of milliseconds per component).
//! [`CompileCache`] hashes the plugin's bytes; the hash and the engine's settings name a file
//! of machine code under the cache folder, and a later load of the same bytes by an engine
//! with the same settings maps that file instead of compiling. The folder is
//! `$WEIR_CACHE_DIR` (set but empty turns the cache off), else `$XDG_CACHE_HOME/weir`, else
//! `~/.cache/weir`.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a component came from in [`CompileCache::get_or_compile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Mapped from a file of the cache.
    Cached,
    /// Compiled now (and written to the cache, unless that failed).
    Compiled,
}

/// An on-disk cache of compiled components, keyed by the plugin's sha256 and the engine's
/// compilation settings.
///
/// An entry is `<sha256 of the plugin>-<first 16 hex digits of the engine hash>.cwasm`. The
/// engine hash is the sha256 of [`Engine::precompile_compatibility_hash`], which covers the
/// target, the compiler's flags, the engine's tunables and wasm features, and the wasmtime
/// version: any change there is a different file, never a stale one.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// A cache in `dir`, created (private to this user) on first write.
    pub fn at(dir: impl Into<PathBuf>) -> CompileCache {
        CompileCache { dir: dir.into() }
    }

    /// The cache the environment names: `$WEIR_CACHE_DIR` (none when set but empty), else
    /// `$XDG_CACHE_HOME/weir`, else `$HOME/.cache/weir`, else none.
    pub fn from_env() -> Option<CompileCache> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
            return (!dir.is_empty()).then(|| CompileCache::at(dir));
        }
        if let Some(xdg) = var("XDG_CACHE_HOME") {
            return Some(CompileCache::at(Path::new(&xdg).join("weir")));
        }
        var("HOME").map(|home| CompileCache::at(Path::new(&home).join(".cache").join("weir")))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds (or will hold) the compiled form of the plugin with `digest`.
    pub fn entry(&self, engine: &Engine, digest: &str) -> PathBuf {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = format!("{:x}", hasher.0.finalize());
        self.dir
            .join(format!("{digest}-{}.cwasm", &engine_hash[..16]))
    }

    /// The compiled component for `bytes` (whose sha256 is `digest`): mapped from the cache
    /// when an entry loads, else compiled and written to the cache. Only a failure to compile
    /// is an error; a cache that cannot be read or written costs a compile and a warning.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(Component, Origin), wasmtime::Error> {
        let entry = self.entry(engine, digest);
        let usable = self.usable();
        if usable && entry.is_file() {
            // SAFETY: `deserialize_file` runs the machine code in the file without checking
            // it, and maps the file, so the file must be wasmtime's output and must not change
            // while mapped. Both hold: only weir writes into this folder, which it makes private
            // to the user (`usable` refuses one that others may write to); an entry is named by
            // the digest of the plugin it was compiled from and by the engine's settings (and
            // wasmtime checks its own header and version on top); and an entry is only ever
            // replaced by renaming a new file over it, never rewritten in place, so a mapped
            // file keeps its contents.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => {
                    tracing::debug!(entry = %entry.display(), "compiled plugin taken from the cache");
                    return Ok((component, Origin::Cached));
                }
                Err(e) => tracing::warn!(entry = %entry.display(),
                    "compile cache: cannot load an entry ({e:#}); compiling the plugin again"),
            }
        }
        let component = Component::new(engine, bytes)?;
        if usable && let Err(e) = self.store(&entry, &component) {
            tracing::warn!(dir = %self.dir.display(), "compile cache: cannot write an entry: {e:#}");
        }
        Ok((component, Origin::Compiled))
    }

    /// Whether the folder can be trusted: absent (it is made private when first written), or
    /// a folder that no other user may write to.
    fn usable(&self) -> bool {
        match std::fs::metadata(&self.dir) {
            Err(_) => true,
            Ok(meta) if meta.is_dir() && meta.permissions().mode() & 0o022 == 0 => true,
            Ok(_) => {
                tracing::warn!(dir = %self.dir.display(),
                    "compile cache: not a folder private to this user; compiling without it");
                false
            }
        }
    }

    /// Writes an entry atomically: a private temporary file in the same folder, renamed over
    /// the entry, so a reader sees the old file or the whole new one, never a part. There is
    /// no fsync: an entry a crash leaves empty fails to load and is compiled again.
    fn store(&self, entry: &Path, component: &Component) -> Result<(), wasmtime::Error> {
        let bytes = component.serialize()?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let name = entry.file_name().unwrap_or_default().to_string_lossy();
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let temp = self
            .dir
            .join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut file| file.write_all(&bytes))
            .and_then(|()| std::fs::rename(&temp, entry));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        Ok(written?)
    }
}

/// Feeds a [`Hash`] into sha256: a digest that is the same in every process, unlike the
/// standard library's randomly keyed hashers.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("a sha256 has 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Plugin, Sandbox};

    /// The smallest component: the header alone (version 0x0d, layer 1).
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn digest(bytes: &[u8]) -> String {
        format!("{:x}", Sha256::digest(bytes))
    }

    #[test]
    fn a_second_load_maps_the_cached_entry() {
        let sandbox = Sandbox::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::at(dir.path().join("cache"));
        let engine = sandbox.engine();
        let d = digest(EMPTY_COMPONENT);
        let (_, origin) = cache.get_or_compile(engine, EMPTY_COMPONENT, &d).unwrap();
        assert_eq!(origin, Origin::Compiled);
        let entry = cache.entry(engine, &d);
        assert!(entry.is_file());
        let mode = std::fs::metadata(cache.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the cache folder is private");
        let (_, origin) = cache.get_or_compile(engine, EMPTY_COMPONENT, &d).unwrap();
        assert_eq!(origin, Origin::Cached);
    }

    #[test]
    fn the_key_is_the_same_for_engines_with_the_same_settings() {
        let (a, b) = (Sandbox::new().unwrap(), Sandbox::new().unwrap());
        let cache = CompileCache::at("/nonexistent");
        let d = digest(EMPTY_COMPONENT);
        assert_eq!(cache.entry(a.engine(), &d), cache.entry(b.engine(), &d));
        assert_ne!(
            cache.entry(a.engine(), &d),
            cache.entry(a.engine(), &digest(b"other"))
        );
    }

    #[test]
    fn a_corrupt_entry_is_compiled_again_and_replaced() {
        let sandbox = Sandbox::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::at(dir.path());
        let engine = sandbox.engine();
        let d = digest(EMPTY_COMPONENT);
        let entry = cache.entry(engine, &d);
        std::fs::write(&entry, b"not a compiled component").unwrap();
        let (_, origin) = cache.get_or_compile(engine, EMPTY_COMPONENT, &d).unwrap();
        assert_eq!(origin, Origin::Compiled);
        let (_, origin) = cache.get_or_compile(engine, EMPTY_COMPONENT, &d).unwrap();
        assert_eq!(origin, Origin::Cached);
    }

    #[test]
    fn a_folder_others_may_write_to_is_not_used() {
        let sandbox = Sandbox::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let cache = CompileCache::at(dir.path());
        let d = digest(EMPTY_COMPONENT);
        let (_, origin) = cache
            .get_or_compile(sandbox.engine(), EMPTY_COMPONENT, &d)
            .unwrap();
        assert_eq!(origin, Origin::Compiled);
        assert!(!cache.entry(sandbox.engine(), &d).exists());
    }

    #[test]
    fn an_unwritable_cache_is_not_an_error() {
        let sandbox = Sandbox::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        // A file where the folder should be: every write fails.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"").unwrap();
        let cache = CompileCache::at(blocked.join("cache"));
        let d = digest(EMPTY_COMPONENT);
        let (_, origin) = cache
            .get_or_compile(sandbox.engine(), EMPTY_COMPONENT, &d)
            .unwrap();
        assert_eq!(origin, Origin::Compiled);
    }

    #[test]
    fn a_plugin_loaded_from_the_cache_runs() {
        let sandbox = Sandbox::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::at(dir.path());
        let path = weir_test_plugins::plugin("uppercase");
        let first = Plugin::load_with(&sandbox, &path, Some(&cache)).unwrap();
        assert!(cache.entry(sandbox.engine(), &first.digest).is_file());
        let plugin = Plugin::load_with(&sandbox, &path, Some(&cache)).unwrap();
        let mut instance = crate::Instance::new(
            &sandbox,
            &plugin,
            &std::sync::Arc::from("up"),
            crate::Limits::default(),
            &crate::Grant::default(),
            &[],
        )
        .unwrap();
        let mut batch = crate::Events::new();
        batch.push_value(b"abc");
        let out = instance.process(&batch).unwrap();
        assert_eq!(out.events.get(0).value(), b"ABC");
    }
}
