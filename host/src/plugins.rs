//! Plugins: a component file in, a checked, pre-instantiated [`Plugin`] out.
//!
//! [`Plugin::load`] reads the file, refuses what is not a WebAssembly component, compiles it,
//! checks that every import is one the host provides and that it exports the `stage` world
//! of `weir:stage@0.1`, then pre-instantiates it once; every instance of the stage is made
//! from that. [`inspect`] reports the same facts for `weir plugin inspect` without refusing.
//! A plugin is a version: path, sha256 digest, load time.
//!
//! Compiling is most of a plugin's load time (tens to hundreds of milliseconds per component),
//! so compiled components are kept on disk by [`CompileCache`]: the plugin's bytes are hashed,
//! the hash and the engine's settings name a file of machine code under the cache folder, and
//! a later load of the same bytes by an engine with the same settings maps that file instead
//! of compiling. The folder is `$WEIR_CACHE_DIR` (set but empty turns the cache off), else
//! `$XDG_CACHE_HOME/weir`, else `~/.cache/weir`.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre};

use crate::config::Grant;
use crate::sandbox::{HostState, Sandbox, StagePre};

/// Largest plugin file accepted. Blocks a huge file from costing the host the memory and
/// minutes of compiling it; real stages are well under a few MiB.
pub const MAX_PLUGIN_SIZE: u64 = 64 << 20;

/// The contract this host speaks, as a plugin imports it.
const CONTRACT: &str = "weir:stage@0.1";

/// Why a plugin was refused.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {path}: {size} bytes is over the {MAX_PLUGIN_SIZE}-byte limit")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("plugin {path}: not a WebAssembly file")]
    NotWasm { path: PathBuf },
    #[error(
        "plugin {path}: a core WebAssembly module, not a component (build for wasm32-wasip2, or wrap it with `wasm-tools component new`)"
    )]
    CoreModule { path: PathBuf },
    #[error("plugin {path}: cannot compile it: {message}")]
    Compile { path: PathBuf, message: String },
    #[error("plugin {path}: imports `{import}`, which this host does not grant: {reason}")]
    Import {
        path: PathBuf,
        import: String,
        reason: String,
    },
    #[error("plugin {path}: does not implement the `stage` world of {CONTRACT}: {message}")]
    World { path: PathBuf, message: String },
}

/// A loaded, checked plugin version.
pub struct Plugin {
    pub path: PathBuf,
    /// Hex sha256 of the file.
    pub digest: String,
    pub size: u64,
    pub loaded_at: SystemTime,
    /// The names of the component's imports.
    pub imports: Vec<String>,
    pre: StagePre<HostState>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("digest", &self.digest)
            .field("size", &self.size)
            .finish()
    }
}

impl Plugin {
    /// Reads, compiles (or takes from the compile cache of [`CompileCache::from_env`]) and
    /// checks a plugin file.
    pub fn load(sandbox: &Sandbox, path: &Path) -> Result<Plugin, PluginError> {
        Plugin::load_with(sandbox, path, CompileCache::from_env().as_ref())
    }

    /// Like [`Plugin::load`], with the given compile cache, or none.
    pub fn load_with(
        sandbox: &Sandbox,
        path: &Path,
        cache: Option<&CompileCache>,
    ) -> Result<Plugin, PluginError> {
        let (bytes, digest) = read(path)?;
        Plugin::compile_checked(sandbox, path, &bytes, digest, cache)
    }

    /// Compiles and checks a plugin that is already in memory (a hot load); `path` names it
    /// in errors and reports.
    pub fn from_bytes(sandbox: &Sandbox, path: &Path, bytes: &[u8]) -> Result<Plugin, PluginError> {
        let digest = check_bytes(path, bytes)?;
        Plugin::compile_checked(
            sandbox,
            path,
            bytes,
            digest,
            CompileCache::from_env().as_ref(),
        )
    }

    fn compile_checked(
        sandbox: &Sandbox,
        path: &Path,
        bytes: &[u8],
        digest: String,
        cache: Option<&CompileCache>,
    ) -> Result<Plugin, PluginError> {
        let component = match cache {
            Some(cache) => cache
                .get_or_compile(sandbox.engine(), bytes, &digest)
                .map(|(component, _)| component)
                .map_err(|e| PluginError::Compile {
                    path: path.to_path_buf(),
                    message: format!("{e:#}"),
                })?,
            None => compile(sandbox, path, bytes)?,
        };
        let mut imports = Vec::new();
        for (name, _) in component.component_type().imports(sandbox.engine()) {
            imports.push(name.to_string());
            if let Err(reason) = provided(name) {
                return Err(PluginError::Import {
                    path: path.to_path_buf(),
                    import: name.to_string(),
                    reason,
                });
            }
        }
        check_exports(sandbox, &component).map_err(|message| PluginError::World {
            path: path.to_path_buf(),
            message,
        })?;
        let world = |e: wasmtime::Error| PluginError::World {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let pre: InstancePre<HostState> = sandbox
            .linker()
            .instantiate_pre(&component)
            .map_err(world)?;
        let pre = StagePre::new(pre).map_err(world)?;
        Ok(Plugin {
            path: path.to_path_buf(),
            digest,
            size: bytes.len() as u64,
            loaded_at: SystemTime::now(),
            imports,
            pre,
        })
    }

    /// Refuses the plugin for a stage that does not grant every capability it imports.
    pub fn check_grants(&self, granted: &Grant) -> Result<(), PluginError> {
        for import in &self.imports {
            if let Err(reason) = grant(import, granted) {
                return Err(PluginError::Import {
                    path: self.path.clone(),
                    import: import.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }

    pub(crate) fn pre(&self) -> &StagePre<HostState> {
        &self.pre
    }

    /// The first 12 hex digits of the digest: enough to tell versions apart in logs.
    pub fn short_digest(&self) -> &str {
        &self.digest[..12]
    }
}

/// Reads a plugin file (refusing one over the size limit) and checks its bytes.
pub(crate) fn read(path: &Path) -> Result<(Vec<u8>, String), PluginError> {
    let read_err = |source| PluginError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_PLUGIN_SIZE {
        return Err(PluginError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let digest = check_bytes(path, &bytes)?;
    Ok((bytes, digest))
}

/// Refuses what is too large, not WebAssembly, or a core module; returns the hex sha256.
pub fn check_bytes(path: &Path, bytes: &[u8]) -> Result<String, PluginError> {
    if bytes.len() as u64 > MAX_PLUGIN_SIZE {
        return Err(PluginError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
        });
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(PluginError::NotWasm {
            path: path.to_path_buf(),
        });
    }
    // Bytes 6..8 are the layer: 0 for a core module, 1 for a component.
    if bytes[6..8] == [0, 0] {
        return Err(PluginError::CoreModule {
            path: path.to_path_buf(),
        });
    }
    Ok(format!("{:x}", Sha256::digest(bytes)))
}

fn compile(sandbox: &Sandbox, path: &Path, bytes: &[u8]) -> Result<Component, PluginError> {
    Component::new(sandbox.engine(), bytes).map_err(|e| PluginError::Compile {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    })
}

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

/// Whether a stage with `granted` capabilities gives a plugin this import: the host must
/// provide it, and capability interfaces must be granted. WASI is linked with nothing granted
/// unless the stage says so: no directories (`wasi:filesystem` is refused at load without a
/// `dirs` grant), no environment variables but the named ones, no network (`wasi:sockets` is
/// refused without `network = true`), an empty stdin; stdout and stderr go to the host log.
/// Clocks and random numbers are available to every plugin.
pub fn grant(import: &str, granted: &Grant) -> Result<(), String> {
    provided(import)?;
    if import.starts_with("wasi:filesystem/") && granted.dirs.is_empty() {
        return Err("the stage grants no directories (`grant = { dirs = [{ host = \"...\", guest = \"/data\" }] }` gives read-only access)".into());
    }
    if import.starts_with("wasi:sockets/") && !granted.network {
        return Err("the stage grants no network (`grant = { network = true }`)".into());
    }
    Ok(())
}

/// Whether the host provides an import at all: `weir:stage` must be the 0.1 contract, WASI
/// must be 0.2.
fn provided(import: &str) -> Result<(), String> {
    let (package, version) = import.split_once('@').unwrap_or((import, ""));
    if let Some(interface) = package.strip_prefix("weir:stage/") {
        if !version.starts_with("0.1.") {
            return Err(format!(
                "this host speaks {CONTRACT}; the plugin was built against version {}",
                if version.is_empty() {
                    "(none)"
                } else {
                    version
                }
            ));
        }
        return match interface {
            "log" | "types" => Ok(()),
            other => Err(format!("{CONTRACT} has no interface `{other}`")),
        };
    }
    const WASI: [&str; 6] = [
        "wasi:cli/",
        "wasi:io/",
        "wasi:clocks/",
        "wasi:random/",
        "wasi:filesystem/",
        "wasi:sockets/",
    ];
    if WASI.iter().any(|p| package.starts_with(p)) {
        if !version.starts_with("0.2.") {
            return Err(format!("the host provides WASI 0.2, not {version}"));
        }
        return Ok(());
    }
    Err("no such interface is provided".to_string())
}

fn check_exports(sandbox: &Sandbox, component: &Component) -> Result<(), String> {
    let exports: Vec<(String, bool)> = component
        .component_type()
        .exports(sandbox.engine())
        .map(|(name, item)| {
            (
                name.to_string(),
                matches!(item.ty, ComponentItem::ComponentFunc(_)),
            )
        })
        .collect();
    for wanted in ["init", "process"] {
        if !exports
            .iter()
            .any(|(name, is_func)| name == wanted && *is_func)
        {
            let found: Vec<&str> = exports.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!(
                "it has no `{wanted}` function export (its exports: {})",
                if found.is_empty() {
                    "none".to_string()
                } else {
                    found.join(", ")
                }
            ));
        }
    }
    Ok(())
}

/// What `weir plugin inspect` reports.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// Whether this host would load it, and if not why.
    pub loadable: Result<(), String>,
    pub imports: Vec<InspectedImport>,
    pub exports: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct InspectedImport {
    pub name: String,
    /// `None` when the host grants it, else the reason it does not.
    pub refused: Option<String>,
}

/// Reports a plugin's world, imports, exports, size and digest, and whether it would load.
pub fn inspect(sandbox: &Sandbox, path: &Path) -> Result<Inspection, PluginError> {
    let (bytes, digest) = read(path)?;
    let component = compile(sandbox, path, &bytes)?;
    let ty = component.component_type();
    let imports = ty
        .imports(sandbox.engine())
        .map(|(name, _)| InspectedImport {
            name: name.to_string(),
            refused: grant(name, &Grant::default()).err(),
        })
        .collect();
    let exports = ty
        .exports(sandbox.engine())
        .map(|(name, _)| name.to_string())
        .collect();
    // Loadable as a stage that grants nothing: what a capability needs shows per import.
    let loadable = Plugin::load(sandbox, path)
        .and_then(|p| p.check_grants(&Grant::default()))
        .map_err(|e| e.to_string());
    Ok(Inspection {
        path: path.to_path_buf(),
        size: bytes.len() as u64,
        sha256: digest,
        loadable,
        imports,
        exports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut instance = crate::sandbox::Instance::new(
            &sandbox,
            &plugin,
            &std::sync::Arc::from("up"),
            crate::config::Limits::default(),
            &Grant::default(),
            &[],
        )
        .unwrap();
        let event = crate::Event {
            key: None,
            value: b"abc".to_vec(),
            headers: Vec::new(),
            timestamp: None,
        };
        let out = instance.process(&[event]).unwrap();
        match &out[..] {
            [Ok(events)] => assert_eq!(events[0].value, b"ABC"),
            other => panic!("unexpected outcomes: {other:?}"),
        }
    }
}
