//! Plugins: a component file in, a checked, pre-instantiated [`Plugin`] out.
//!
//! [`Plugin::load`] reads the file, refuses what is not a WebAssembly component, compiles it,
//! checks that every import is one the host provides and that it exports the `stage` world
//! of `weir:stage@0.1`, then pre-instantiates it once; every instance of the stage is made
//! from that. [`inspect`] reports the same facts for `weir plugin inspect` without refusing.
//! A plugin is a version: path, sha256 digest, load time.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre};

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
    /// Reads, compiles and checks a plugin file.
    pub fn load(sandbox: &Sandbox, path: &Path) -> Result<Plugin, PluginError> {
        let (bytes, digest) = read(path)?;
        Plugin::compile_checked(sandbox, path, &bytes, digest)
    }

    /// Compiles and checks a plugin that is already in memory (a hot load); `path` names it
    /// in errors and reports.
    pub fn from_bytes(sandbox: &Sandbox, path: &Path, bytes: &[u8]) -> Result<Plugin, PluginError> {
        let digest = check_bytes(path, bytes)?;
        Plugin::compile_checked(sandbox, path, bytes, digest)
    }

    fn compile_checked(
        sandbox: &Sandbox,
        path: &Path,
        bytes: &[u8],
        digest: String,
    ) -> Result<Plugin, PluginError> {
        let component = compile(sandbox, path, bytes)?;
        for (name, _) in component.component_type().imports(sandbox.engine()) {
            if let Err(reason) = grant(name) {
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
            pre,
        })
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

/// Whether the host grants an import. `weir:stage` must be the 0.1 contract. WASI is linked
/// with nothing granted: no preopened directories, no environment, no network (every socket
/// address is refused, name lookup is off), an empty stdin; stdout and stderr go to the host
/// log. Clocks and random numbers are available.
pub fn grant(import: &str) -> Result<(), String> {
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
            refused: grant(name).err(),
        })
        .collect();
    let exports = ty
        .exports(sandbox.engine())
        .map(|(name, _)| name.to_string())
        .collect();
    let loadable = Plugin::load(sandbox, path)
        .map(drop)
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
