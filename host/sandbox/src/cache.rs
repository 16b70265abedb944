//! The compile cache: compiled components kept on disk, so that a restart does not recompile.
//!
//! Compiling is most of a plugin's load time (tens to hundreds of milliseconds per component).
//! [`CompileCache`] hashes the plugin's bytes; the hash and the engine's settings name a file
//! of machine code under the cache folder, and a later load of the same bytes by an engine
//! with the same settings loads that file instead of compiling. The folder is
//! `$WEIR_CACHE_DIR` (set but empty turns the cache off), else `$XDG_CACHE_HOME/weir`, else
//! `~/.cache/weir`.
//!
//! Loading an entry runs its machine code unchecked, so the cache trusts nothing it has not
//! proved. An entry is only loaded when:
//!
//! - the folder, and every folder above it, belongs to this user (or root) and no one else
//!   may write to it (a sticky folder such as `/tmp` excepted above the cache), and no part of
//!   its path is a link someone else owns;
//! - the entry is a regular file of this user that no one else may write to;
//! - its last 32 bytes are an HMAC-SHA256, under a key only this user can read (`key`, mode
//!   0600, made on first use), over the plugin's digest, the engine's settings and the
//!   compiled bytes. A file renamed from another plugin's entry, or written by anyone without
//!   the key, fails the check.
//!
//! The bytes are read once, checked, and deserialized from memory, so the file cannot change
//! between the check and the load. Anything that fails a check is compiled again, never
//! loaded, and a warning says why. The folder is bounded ([`MAX_CACHE_BYTES`], or
//! `$WEIR_CACHE_MAX_BYTES`): past it, the least recently used entries are removed.

use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bytes the cache folder may hold before the least recently used entries go. Blocks a
/// stream of distinct plugins (hot loads, tests) from filling the disk.
pub const MAX_CACHE_BYTES: u64 = 1 << 30;

/// Bytes of the tag at the end of an entry.
const TAG: usize = 32;

/// Largest entry read. A compiled component is a few times its plugin, which is at most
/// 64 MiB; blocks a planted huge file from being read whole into memory.
const MAX_ENTRY: u64 = 512 << 20;

/// Where a component came from in [`CompileCache::get_or_compile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Loaded from a checked entry of the cache.
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
    max_bytes: u64,
}

impl CompileCache {
    /// A cache in `dir`, created (private to this user) on first write.
    pub fn at(dir: impl Into<PathBuf>) -> CompileCache {
        CompileCache {
            dir: dir.into(),
            max_bytes: MAX_CACHE_BYTES,
        }
    }

    /// The same cache, bounded to `bytes`.
    pub fn with_max_bytes(mut self, bytes: u64) -> CompileCache {
        self.max_bytes = bytes;
        self
    }

    /// The cache the environment names: `$WEIR_CACHE_DIR` (none when set but empty), else
    /// `$XDG_CACHE_HOME/weir`, else `$HOME/.cache/weir`, else none; bounded by
    /// `$WEIR_CACHE_MAX_BYTES` when it is set to a number.
    pub fn from_env() -> Option<CompileCache> {
        CompileCache::from_vars(|name| std::env::var_os(name))
    }

    /// The choice of [`CompileCache::from_env`], over any source of variables.
    fn from_vars(get: impl Fn(&str) -> Option<OsString>) -> Option<CompileCache> {
        let set = |name| get(name).filter(|v| !v.is_empty());
        let cache = if let Some(dir) = get("WEIR_CACHE_DIR") {
            (!dir.is_empty()).then(|| CompileCache::at(dir))
        } else if let Some(xdg) = set("XDG_CACHE_HOME") {
            Some(CompileCache::at(Path::new(&xdg).join("weir")))
        } else {
            set("HOME").map(|home| CompileCache::at(Path::new(&home).join(".cache").join("weir")))
        }?;
        let max = get("WEIR_CACHE_MAX_BYTES")
            .and_then(|v| v.to_str()?.parse().ok())
            .unwrap_or(MAX_CACHE_BYTES);
        Some(cache.with_max_bytes(max))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The engine's settings as the name and the tag of an entry see them.
    fn engine_hash(engine: &Engine) -> String {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{:x}", hasher.0.finalize())
    }

    /// The file that holds (or will hold) the compiled form of the plugin with `digest`.
    pub fn entry(&self, engine: &Engine, digest: &str) -> PathBuf {
        let engine_hash = Self::engine_hash(engine);
        self.dir
            .join(format!("{digest}-{}.cwasm", &engine_hash[..16]))
    }

    /// The compiled component for `bytes` (whose sha256 is `digest`): loaded from the cache
    /// when an entry passes every check, else compiled and written to the cache. Only a failure
    /// to compile is an error; a cache that cannot be trusted, read or written costs a compile
    /// and a warning.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(Component, Origin), wasmtime::Error> {
        let entry = self.entry(engine, digest);
        let trusted = match trusted_folder(&self.dir) {
            Ok(t) => t,
            Err(why) => {
                tracing::warn!(dir = %self.dir.display(), "compile cache: not used: {why}");
                false
            }
        };
        if trusted && let Some(component) = self.load(engine, &entry, digest) {
            return Ok((component, Origin::Cached));
        }
        let component = Component::new(engine, bytes)?;
        let writable = trusted || !self.dir.exists();
        if writable && let Err(e) = self.store(engine, &entry, digest, &component) {
            tracing::warn!(dir = %self.dir.display(), "compile cache: cannot write an entry: {e:#}");
        }
        Ok((component, Origin::Compiled))
    }

    /// A checked entry, deserialized; `None` (with a warning when one was there) otherwise.
    fn load(&self, engine: &Engine, entry: &Path, digest: &str) -> Option<Component> {
        if !entry.exists() {
            return None;
        }
        let checked = self.read_checked(engine, entry, digest);
        let compiled = match checked {
            Ok(bytes) => bytes,
            Err(why) => {
                tracing::warn!(entry = %entry.display(),
                    "compile cache: entry refused ({why}); compiling the plugin again");
                return None;
            }
        };
        // SAFETY: `deserialize` runs the machine code in these bytes without checking it. They
        // are proved to be what this user's weir wrote for this plugin and these engine
        // settings: the tag over them verifies under a key no one else can read, and they are
        // the very bytes that were checked (read once into memory, not mapped).
        match unsafe { Component::deserialize(engine, &compiled) } {
            Ok(component) => {
                // Recently used: the size bound removes the oldest entries first.
                let _ = std::fs::File::options()
                    .write(true)
                    .open(entry)
                    .and_then(|f| f.set_modified(SystemTime::now()));
                tracing::debug!(entry = %entry.display(), "compiled plugin taken from the cache");
                Some(component)
            }
            Err(e) => {
                tracing::warn!(entry = %entry.display(),
                    "compile cache: cannot load an entry ({e:#}); compiling the plugin again");
                None
            }
        }
    }

    /// The compiled bytes of an entry whose file and tag pass every check.
    fn read_checked(&self, engine: &Engine, entry: &Path, digest: &str) -> Result<Vec<u8>, String> {
        let meta = std::fs::symlink_metadata(entry).map_err(|e| e.to_string())?;
        if !meta.file_type().is_file() {
            return Err("not a regular file".into());
        }
        if meta.uid() != current_uid() || meta.mode() & 0o022 != 0 {
            return Err("not a file of this user that only this user may write".into());
        }
        if meta.len() > MAX_ENTRY || meta.len() < TAG as u64 {
            return Err(format!("{} bytes is not the size of an entry", meta.len()));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        std::fs::File::open(entry)
            .and_then(|f| f.take(MAX_ENTRY).read_to_end(&mut bytes))
            .map_err(|e| e.to_string())?;
        let split = bytes.len().checked_sub(TAG).ok_or("too short")?;
        let key = self.key(false).map_err(|e| format!("no key: {e}"))?;
        let mut mac = tag_mac(&key, engine, digest);
        mac.update(&bytes[..split]);
        mac.verify_slice(&bytes[split..])
            .map_err(|_| "its tag does not match this plugin and this engine".to_string())?;
        bytes.truncate(split);
        Ok(bytes)
    }

    /// The cache's key; made (random, mode 0600) when `create` and there is none.
    fn key(&self, create: bool) -> std::io::Result<[u8; 32]> {
        let path = self.dir.join("key");
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => {
                if !meta.file_type().is_file()
                    || meta.uid() != current_uid()
                    || meta.mode() & 0o077 != 0
                    || meta.len() != 32
                {
                    return Err(std::io::Error::other(
                        "the key file is not a 32-byte file only this user may read",
                    ));
                }
                let mut key = [0u8; 32];
                std::fs::File::open(&path)?.read_exact(&mut key)?;
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
                let temp = self.temp_name("key");
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&temp)
                    .and_then(|mut f| f.write_all(&key))?;
                // Another process may have made one meanwhile: `hard_link` fails then, and
                // that key is the one to use.
                let linked = std::fs::hard_link(&temp, &path);
                let _ = std::fs::remove_file(&temp);
                match linked {
                    Ok(()) => Ok(key),
                    Err(_) => self.key(false),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn temp_name(&self, what: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        self.dir
            .join(format!(".{what}.{}.{nanos}.tmp", std::process::id()))
    }

    /// Writes an entry atomically: a private temporary file in the same folder (the compiled
    /// bytes, then their tag), renamed over the entry, so a reader sees the old file or the
    /// whole new one, never a part. There is no fsync: an entry a crash leaves short fails
    /// its tag and is compiled again. Then the folder is brought back under its bound.
    fn store(
        &self,
        engine: &Engine,
        entry: &Path,
        digest: &str,
        component: &Component,
    ) -> Result<(), wasmtime::Error> {
        let mut bytes = component.serialize()?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        if !trusted_folder(&self.dir).map_err(wasmtime::Error::msg)? {
            return Ok(());
        }
        let key = self.key(true)?;
        let mut mac = tag_mac(&key, engine, digest);
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        let temp = self.temp_name("entry");
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
        written?;
        self.evict();
        Ok(())
    }

    /// Removes the least recently used entries until the folder holds at most its bound.
    fn evict(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = dir
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                tracing::debug!(entry = %path.display(), "compile cache: least recently used entry removed");
                total -= len;
            }
        }
    }
}

/// The MAC of an entry, before its compiled bytes are fed in: the plugin's digest and the
/// engine's settings are bound into the tag, so an entry cannot stand for another plugin.
fn tag_mac(key: &[u8; 32], engine: &Engine, digest: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key size");
    mac.update(b"weir compile cache entry\0");
    mac.update(digest.as_bytes());
    mac.update(b"\0");
    mac.update(CompileCache::engine_hash(engine).as_bytes());
    mac.update(b"\0");
    mac
}

fn current_uid() -> u32 {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether a cache folder can be trusted: absent (`Ok(false)`: it is made private when first
/// written), or owned by this user, not writable by others, on a path no one else controls.
fn trusted_folder(dir: &Path) -> Result<bool, String> {
    let me = current_uid();
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.to_string()),
    };
    if meta.file_type().is_symlink() && meta.uid() != me && meta.uid() != 0 {
        return Err("it is a link someone else owns".into());
    }
    let real = dir.canonicalize().map_err(|e| e.to_string())?;
    let meta = std::fs::metadata(&real).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err("not a folder".into());
    }
    if meta.uid() != me {
        return Err(format!(
            "owned by user {}, not by this user ({me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err("other users may write to it".into());
    }
    for parent in real.ancestors().skip(1) {
        let meta = std::fs::metadata(parent).map_err(|e| e.to_string())?;
        let owner_ok = meta.uid() == me || meta.uid() == 0;
        let sticky = meta.mode() & 0o1000 != 0;
        if !owner_ok || (meta.mode() & 0o022 != 0 && !sticky) {
            return Err(format!(
                "{} above it is not safe: another user could replace the cache folder",
                parent.display()
            ));
        }
    }
    Ok(true)
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
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::{Plugin, Sandbox};

    /// The smallest component: the header alone (version 0x0d, layer 1).
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn digest(bytes: &[u8]) -> String {
        format!("{:x}", Sha256::digest(bytes))
    }

    #[test]
    fn the_folder_is_weir_cache_dir_else_xdg_else_home() {
        let choose = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, OsString)> = (vars.iter())
                .map(|(k, v)| (k.to_string(), OsString::from(v)))
                .collect();
            CompileCache::from_vars(|name| {
                (vars.iter())
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
            .map(|c| (c.dir().to_path_buf(), c.max_bytes))
        };
        let all = [
            ("WEIR_CACHE_DIR", "/w"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(choose(&all), Some((PathBuf::from("/w"), MAX_CACHE_BYTES)));
        assert_eq!(choose(&all[1..]).unwrap().0, PathBuf::from("/x/weir"));
        assert_eq!(
            choose(&all[2..]).unwrap().0,
            PathBuf::from("/h/.cache/weir")
        );
        // Set but empty: WEIR_CACHE_DIR turns the cache off; XDG_CACHE_HOME is as if unset.
        assert_eq!(choose(&[("WEIR_CACHE_DIR", ""), ("HOME", "/h")]), None);
        let xdg_empty = choose(&[("XDG_CACHE_HOME", ""), ("HOME", "/h")]).unwrap();
        assert_eq!(xdg_empty.0, PathBuf::from("/h/.cache/weir"));
        assert_eq!(choose(&[]), None);
        let bounded = choose(&[("HOME", "/h"), ("WEIR_CACHE_MAX_BYTES", "4096")]).unwrap();
        assert_eq!(bounded.1, 4096);
        let unreadable = choose(&[("HOME", "/h"), ("WEIR_CACHE_MAX_BYTES", "lots")]).unwrap();
        assert_eq!(unreadable.1, MAX_CACHE_BYTES);
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

    /// The attack that once worked: one plugin's compiled entry copied over another's. The
    /// tag binds an entry to its plugin's digest, so the copy is refused and compiled again.
    #[test]
    fn an_entry_copied_from_another_plugin_is_refused() {
        let sandbox = Sandbox::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::at(dir.path().join("cache"));
        let engine = sandbox.engine();
        let (a, b) = (EMPTY_COMPONENT, b"\0asm\x0d\0\x01\0".as_slice());
        let (da, db) = (digest(a), format!("{:0>64}", "b"));
        cache.get_or_compile(engine, a, &da).unwrap();
        std::fs::copy(cache.entry(engine, &da), cache.entry(engine, &db)).unwrap();
        let (_, origin) = cache.get_or_compile(engine, b, &db).unwrap();
        assert_eq!(origin, Origin::Compiled, "the copied entry must not load");
        let (_, origin) = cache.get_or_compile(engine, b, &db).unwrap();
        assert_eq!(origin, Origin::Cached, "the rewritten entry is its own");
    }

    #[test]
    fn an_entry_that_is_a_link_or_writable_by_others_is_refused() {
        let sandbox = Sandbox::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::at(dir.path().join("cache"));
        let engine = sandbox.engine();
        let d = digest(EMPTY_COMPONENT);
        cache.get_or_compile(engine, EMPTY_COMPONENT, &d).unwrap();
        let entry = cache.entry(engine, &d);
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (_, origin) = cache.get_or_compile(engine, EMPTY_COMPONENT, &d).unwrap();
        assert_eq!(origin, Origin::Compiled);
        let elsewhere = dir.path().join("elsewhere.cwasm");
        std::fs::rename(&entry, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
        let (_, origin) = cache.get_or_compile(engine, EMPTY_COMPONENT, &d).unwrap();
        assert_eq!(origin, Origin::Compiled, "a link is never followed");
    }

    #[test]
    fn the_least_recently_used_entries_go_past_the_bound() {
        let sandbox = Sandbox::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let engine = sandbox.engine();
        let probe = CompileCache::at(dir.path().join("probe"));
        probe
            .get_or_compile(engine, EMPTY_COMPONENT, &digest(b"probe"))
            .unwrap();
        let size = std::fs::metadata(probe.entry(engine, &digest(b"probe")))
            .unwrap()
            .len();
        // Room for two entries.
        let cache = CompileCache::at(dir.path().join("cache")).with_max_bytes(2 * size + 1);
        let digests: Vec<String> = (0..3).map(|i| digest(&[i])).collect();
        for d in &digests {
            cache.get_or_compile(engine, EMPTY_COMPONENT, d).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            !cache.entry(engine, &digests[0]).exists(),
            "the oldest went"
        );
        assert!(cache.entry(engine, &digests[2]).exists());
    }
}
