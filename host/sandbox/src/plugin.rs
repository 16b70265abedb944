//! Plugins: a component file in, a checked, pre-instantiated [`Plugin`] out.
//!
//! [`Plugin::load`] reads the file, refuses what is not a WebAssembly component, compiles it
//! (or maps it from the [`CompileCache`]), checks that every import is one the host provides,
//! finds which version of the contract it implements (`weir:stage@0.2` or `@0.1`), and
//! pre-instantiates it once; every instance of the stage is made from that. A 0.2 plugin is
//! asked to [`describe`](Description) itself once, here; its declarations are checked
//! ([`settings::check_declared`]) and every text of its description (name, version, each
//! setting's name, help and default) is made guest text ([`guest_text`]: cut, escaped, one
//! line) before the plugin is kept, so whatever prints a description later prints it as it
//! is. [`inspect`] reports the same facts for `weir plugin inspect` without refusing. A
//! plugin is a version: path, sha256 digest, load time.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre};

use crate::cache::CompileCache;
use crate::contract::{Description, Setting, v01, v02, v03};
use crate::engine::Sandbox;
use crate::host::{HostState, LogQuota};
use crate::limits::{Grant, Limits};
use crate::settings::{self, DeclarationError};
use crate::store::{self, INIT_FUEL_EVENTS};
use crate::text::guest_text;

/// Largest plugin file accepted. Blocks a huge file from costing the host the memory and
/// minutes of compiling it; real stages are well under a few MiB.
pub const MAX_PLUGIN_SIZE: u64 = 64 << 20;

/// The contract versions this host speaks, as a plugin's imports name them.
const CONTRACTS: &str = "weir:stage@0.3, @0.2 or @0.1";

/// Which version of the contract a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ContractVersion {
    #[serde(rename = "0.1")]
    V01,
    #[serde(rename = "0.2")]
    V02,
    #[serde(rename = "0.3")]
    V03,
}

impl ContractVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V01 => "0.1",
            ContractVersion::V02 => "0.2",
            ContractVersion::V03 => "0.3",
        }
    }
}

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
    #[error("plugin {path}: does not implement the `stage` world of {CONTRACTS}: {message}")]
    World { path: PathBuf, message: String },
    #[error("plugin {path}: its `describe` failed: {message}")]
    Describe { path: PathBuf, message: String },
    #[error("plugin {path}: {declaration}")]
    Declaration {
        path: PathBuf,
        declaration: DeclarationError,
    },
}

/// The pre-instantiated component, by contract version.
pub(crate) enum Pre {
    V01(v01::StagePre<HostState>),
    V02(v02::StagePre<HostState>),
    V03(v03::StagePre<HostState>),
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
    /// The imports whose functions the component calls. A 0.3 component imports `time` (and
    /// so `state`) for the type of `on-timer`'s argument alone; only a function import makes
    /// a stage keep state or time.
    called: Vec<String>,
    pub contract: ContractVersion,
    /// What a 0.2 or 0.3 plugin says of itself; `None` for 0.1.
    pub description: Option<Description>,
    pre: Pre,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("digest", &self.digest)
            .field("size", &self.size)
            .field("contract", &self.contract)
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
        let compile_err = |e: wasmtime::Error| PluginError::Compile {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let component = match cache {
            Some(cache) => cache
                .get_or_compile(sandbox.engine(), bytes, &digest)
                .map(|(component, _)| component)
                .map_err(compile_err)?,
            None => Component::new(sandbox.engine(), bytes).map_err(compile_err)?,
        };
        let mut imports = Vec::new();
        let mut called = Vec::new();
        for (name, item) in component.component_type().imports(sandbox.engine()) {
            imports.push(name.to_string());
            let calls = match &item.ty {
                ComponentItem::ComponentInstance(instance) => instance
                    .exports(sandbox.engine())
                    .any(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_))),
                ComponentItem::ComponentFunc(_) => true,
                _ => false,
            };
            if calls {
                called.push(name.to_string());
            }
            if let Err(reason) = provided(name) {
                return Err(PluginError::Import {
                    path: path.to_path_buf(),
                    import: name.to_string(),
                    reason,
                });
            }
        }
        let world = |message: String| PluginError::World {
            path: path.to_path_buf(),
            message,
        };
        let exports = function_exports(sandbox, &component);
        check_exports(&exports).map_err(world)?;
        let pre: InstancePre<HostState> = sandbox
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| world(format!("{e:#}")))?;
        let (contract, pre) = typecheck(pre, &exports, &imports).map_err(world)?;
        let mut plugin = Plugin {
            path: path.to_path_buf(),
            digest,
            size: bytes.len() as u64,
            loaded_at: SystemTime::now(),
            imports,
            called,
            contract,
            description: None,
            pre,
        };
        let described = match &plugin.pre {
            Pre::V01(_) => None,
            Pre::V02(pre) => Some(describe(sandbox, pre)),
            Pre::V03(pre) => Some(describe_v03(sandbox, pre)),
        };
        if let Some(described) = described {
            let description = described.map_err(|message| PluginError::Describe {
                path: path.to_path_buf(),
                message,
            })?;
            settings::check_declared(&description.settings).map_err(|declaration| {
                PluginError::Declaration {
                    path: path.to_path_buf(),
                    declaration,
                }
            })?;
            plugin.description = Some(cleaned(&description));
        }
        Ok(plugin)
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

    /// Whether the plugin imports `weir:stage/state` or `weir:stage/time` (whose timers live
    /// in the state): only then does its stage keep state.
    pub fn uses_state(&self) -> bool {
        self.called
            .iter()
            .any(|i| i.starts_with("weir:stage/state@") || i.starts_with("weir:stage/time@"))
    }

    /// Whether the plugin imports `weir:stage/time`: only then can it set timers.
    pub fn uses_time(&self) -> bool {
        self.called
            .iter()
            .any(|i| i.starts_with("weir:stage/time@"))
    }

    pub(crate) fn pre(&self) -> &Pre {
        &self.pre
    }

    /// The first 12 hex digits of the digest: enough to tell versions apart in logs.
    pub fn short_digest(&self) -> &str {
        &self.digest[..12]
    }
}

/// Finds the contract version whose `stage` world the component implements. 0.3's exports are
/// 0.2's, so the exports alone cannot tell the two apart: a component that imports anything
/// of `weir:stage@0.2` (its `types`, at least) is a 0.2 plugin.
fn typecheck(
    pre: InstancePre<HostState>,
    exports: &[String],
    imports: &[String],
) -> Result<(ContractVersion, Pre), String> {
    let imports_v02 = imports
        .iter()
        .any(|i| i.starts_with("weir:stage/") && i.contains("@0.2."));
    let v03 = if imports_v02 {
        "it imports weir:stage@0.2".to_string()
    } else {
        match v03::StagePre::new(pre.clone()) {
            Ok(pre) => return Ok((ContractVersion::V03, Pre::V03(pre))),
            Err(e) => format!("{e:#}"),
        }
    };
    let v02 = match v02::StagePre::new(pre.clone()) {
        Ok(pre) => return Ok((ContractVersion::V02, Pre::V02(pre))),
        Err(e) => format!("{e:#}"),
    };
    let v01 = match v01::StagePre::new(pre) {
        Ok(pre) => return Ok((ContractVersion::V01, Pre::V01(pre))),
        Err(e) => format!("{e:#}"),
    };
    // `describe` exists since 0.2: the closer version's complaint is the useful one.
    Err(if exports.iter().any(|e| e == "describe") {
        format!("as 0.3: {v03}; as 0.2: {v02}")
    } else {
        format!("as 0.1: {v01}")
    })
}

/// Asks a 0.2 plugin to describe itself, in a throwaway instance under default limits.
fn describe(sandbox: &Sandbox, pre: &v02::StagePre<HostState>) -> Result<Description, String> {
    let (mut store, timeout) = describing_store(sandbox)?;
    let described = store::drive(timeout, async {
        let bindings = pre.instantiate_async(&mut store).await?;
        bindings.call_describe(&mut store).await
    });
    described.map_err(|stop| store::stopped(&store, stop).to_string())
}

/// Asks a 0.3 plugin to describe itself, as [`describe`]; its store has no state to read.
fn describe_v03(sandbox: &Sandbox, pre: &v03::StagePre<HostState>) -> Result<Description, String> {
    let (mut store, timeout) = describing_store(sandbox)?;
    let described = store::drive(timeout, async {
        let bindings = pre.instantiate_async(&mut store).await?;
        bindings.call_describe(&mut store).await
    });
    described.map_err(|stop| store::stopped(&store, stop).to_string())
}

/// A store under default limits, armed for one `init`'s worth of fuel, and its deadline.
fn describing_store(
    sandbox: &Sandbox,
) -> Result<(wasmtime::Store<HostState>, std::time::Duration), String> {
    let limits = Limits::default();
    let mut store = store::new_store(
        sandbox,
        &Arc::from("describe"),
        limits,
        &Grant::default(),
        LogQuota::new(),
    )?;
    store::arm(
        &mut store,
        limits.fuel.saturating_mul(INIT_FUEL_EVENTS),
        Sandbox::deadline_ticks(limits.timeout),
    );
    Ok((store, limits.timeout))
}

/// The description with each of its texts as guest text: cut at
/// [`MAX_GUEST_TEXT`](crate::text::MAX_GUEST_TEXT), control characters escaped, one line.
/// Done once, here, so that no printer of a description has to remember it.
fn cleaned(description: &Description) -> Description {
    let text = |s: &str| guest_text(s.as_bytes());
    Description {
        name: text(&description.name),
        version: text(&description.version),
        settings: description
            .settings
            .iter()
            .map(|s| Setting {
                name: text(&s.name),
                type_: s.type_,
                required: s.required,
                default: s.default.as_deref().map(text),
                help: text(&s.help),
            })
            .collect(),
    }
}

/// Reads a plugin file (refusing one that is not a regular file, or over the size limit) and
/// checks its bytes. The read itself is bounded too: a file that grows while it is read
/// cannot make the host read more than the limit.
pub fn read(path: &Path) -> Result<(Vec<u8>, String), PluginError> {
    let read_err = |source| PluginError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_file() {
        // A FIFO would block the read for ever, `/dev/zero` would never end it.
        return Err(read_err(std::io::Error::other(
            "not a regular file (a pipe, a device or a folder cannot be a plugin)",
        )));
    }
    if meta.len() > MAX_PLUGIN_SIZE {
        return Err(PluginError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PLUGIN_SIZE + 1).read_to_end(&mut bytes))
        .map_err(read_err)?;
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

/// Whether the host provides an import at all: `weir:stage` must be the 0.1, 0.2 or 0.3 contract,
/// WASI must be 0.2.
fn provided(import: &str) -> Result<(), String> {
    let (package, version) = import.split_once('@').unwrap_or((import, ""));
    if let Some(interface) = package.strip_prefix("weir:stage/") {
        if !["0.1.", "0.2.", "0.3."]
            .iter()
            .any(|v| version.starts_with(v))
        {
            return Err(format!(
                "this host speaks {CONTRACTS}; the plugin was built against version {}",
                if version.is_empty() {
                    "(none)"
                } else {
                    version
                }
            ));
        }
        return match interface {
            "log" | "types" => Ok(()),
            "state" | "time" if version.starts_with("0.3.") => Ok(()),
            other => Err(format!("weir:stage has no interface `{other}`")),
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

/// The names of the component's function exports.
fn function_exports(sandbox: &Sandbox, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(sandbox.engine())
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
        .map(|(name, _)| name.to_string())
        .collect()
}

fn check_exports(exports: &[String]) -> Result<(), String> {
    for wanted in ["init", "process"] {
        if !exports.iter().any(|name| name == wanted) {
            return Err(format!(
                "it has no `{wanted}` function export (its function exports: {})",
                if exports.is_empty() {
                    "none".to_string()
                } else {
                    exports.join(", ")
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
    /// The contract version it implements, when it loads.
    pub contract: Option<ContractVersion>,
    /// What a 0.2 plugin says of itself.
    pub description: Option<DescriptionInfo>,
    pub imports: Vec<InspectedImport>,
    pub exports: Vec<String>,
}

/// A plugin's description, for printing.
#[derive(Debug, serde::Serialize)]
pub struct DescriptionInfo {
    pub name: String,
    pub version: String,
    pub settings: Vec<SettingInfo>,
}

#[derive(Debug, serde::Serialize)]
pub struct SettingInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub required: bool,
    pub default: Option<String>,
    pub help: String,
}

impl From<&Description> for DescriptionInfo {
    fn from(d: &Description) -> Self {
        DescriptionInfo {
            name: d.name.clone(),
            version: d.version.clone(),
            settings: d
                .settings
                .iter()
                .map(|s| SettingInfo {
                    name: s.name.clone(),
                    ty: crate::settings::type_name(s.type_),
                    required: s.required,
                    default: s.default.clone(),
                    help: s.help.clone(),
                })
                .collect(),
        }
    }
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
    let component = Component::new(sandbox.engine(), &bytes).map_err(|e| PluginError::Compile {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    })?;
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
    let loaded = Plugin::load(sandbox, path);
    let (contract, description) = match &loaded {
        Ok(p) => (
            Some(p.contract),
            p.description.as_ref().map(DescriptionInfo::from),
        ),
        Err(_) => (None, None),
    };
    let loadable = loaded
        .and_then(|p| p.check_grants(&Grant::default()))
        .map_err(|e| e.to_string());
    Ok(Inspection {
        path: path.to_path_buf(),
        size: bytes.len() as u64,
        sha256: digest,
        loadable,
        contract,
        description,
        imports,
        exports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::SettingType;

    #[test]
    fn every_text_of_a_description_is_made_guest_text() {
        let hostile = "x\x1b[31m\x07\nworld: forged";
        let description = Description {
            name: hostile.into(),
            version: "1\n".repeat(10 << 10),
            settings: vec![Setting {
                name: "level".into(),
                type_: SettingType::Text,
                required: false,
                default: Some(hostile.into()),
                help: hostile.into(),
            }],
        };
        let clean = cleaned(&description);
        let setting = &clean.settings[0];
        let texts = [
            &clean.name,
            &clean.version,
            &setting.name,
            &setting.help,
            setting.default.as_ref().unwrap(),
        ];
        for text in texts {
            assert!(!text.chars().any(char::is_control), "{text:?}");
            assert!(text.len() <= crate::text::MAX_GUEST_TEXT, "{}", text.len());
        }
        assert_eq!(clean.name, "x\\u{1b}[31m\\u{7}\\nworld: forged");
        assert_eq!(setting.name, "level");
        assert_eq!(setting.type_, SettingType::Text);
    }
}
