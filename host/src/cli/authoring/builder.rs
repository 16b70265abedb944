//! `weir plugin build [DIR]`: runs the project's toolchain, then loads the component as the
//! host would and prints its path, size and digest.
//!
//! Rust is built by cargo (`cargo build --target wasm32-wasip2 --release`), the component
//! found in cargo's own account of what it built. Python, JavaScript, C and Go are built by
//! the language's `build.sh`, which the binary carries: it is written into a scratch folder
//! with the rest of the language's layer and run on the project (a project's own copy of a
//! layer file wins, as the scripts look in the project first). The result is then checked
//! against the `weir:stage` world with `weir-sandbox`: a missing export, a wrong signature or
//! an import a stage granting nothing is refused is named as the host would name it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use weir_sandbox::{Grant, Plugin, Sandbox};

use super::embedded;
use super::lang::Lang;
use super::toolchain;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Project(String),
    #[error("{0}")]
    Toolchain(String),
    #[error("the {lang} build failed ({status}); its output is above")]
    Failed {
        lang: &'static str,
        status: std::process::ExitStatus,
    },
    #[error("cannot run {what}: {source}")]
    Run {
        what: String,
        source: std::io::Error,
    },
    #[error("the build made no component: {0}")]
    NoComponent(String),
    #[error("the build made {path}, but weir refuses it: {reason}")]
    Refused { path: PathBuf, reason: String },
}

impl BuildError {
    /// The exit status: 2 when the component was refused, 1 otherwise.
    pub fn code(&self) -> u8 {
        match self {
            BuildError::Refused { .. } => 2,
            _ => 1,
        }
    }
}

/// A built and checked component.
pub struct Built {
    pub lang: Lang,
    pub plugin: Plugin,
}

/// Builds the project in `dir` into `out` (for Rust, where cargo puts it unless `out` is
/// given), then loads it as the host would.
pub fn build(dir: &Path, out: Option<&Path>) -> Result<Built, BuildError> {
    let lang = Lang::detect(dir).map_err(BuildError::Project)?;
    let path = match lang {
        Lang::Rust => {
            let built = cargo(dir)?;
            match out {
                Some(out) => copy(&built, out)?,
                None => built,
            }
        }
        _ => {
            let out = out.map_or_else(|| default_out(dir), Path::to_path_buf);
            script(lang, dir, &out)?;
            out
        }
    };
    let plugin = check(&path)?;
    Ok(Built { lang, plugin })
}

/// `DIR/target/NAME.wasm`, NAME being the project folder's name.
fn default_out(dir: &Path) -> PathBuf {
    let absolute = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let name = absolute
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("stage");
    dir.join("target").join(format!("{name}.wasm"))
}

fn copy(from: &Path, to: &Path) -> Result<PathBuf, BuildError> {
    let run = |source| BuildError::Run {
        what: format!("a copy of {} to {}", from.display(), to.display()),
        source,
    };
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(run)?;
    }
    std::fs::copy(from, to).map_err(run)?;
    Ok(to.to_path_buf())
}

/// The flags a Rust stage is built with for wasm32-wasip2, as cargo's variable for them.
const SIMD_FLAGS: (&str, &str) = (
    "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
    "-C target-feature=+simd128",
);

/// `cargo build --target wasm32-wasip2 --release` in `dir`; the component is the cdylib
/// artifact cargo reports (wherever `CARGO_TARGET_DIR` puts it).
fn cargo(dir: &Path) -> Result<PathBuf, BuildError> {
    if toolchain::which("cargo").is_none() {
        return Err(BuildError::Toolchain(
            "building a Rust stage needs cargo: install Rust with rustup (https://rustup.rs), then `rustup target add wasm32-wasip2`".into(),
        ));
    }
    if !has_wasip2_target() {
        return Err(BuildError::Toolchain(
            "building a Rust stage needs the wasm32-wasip2 target: install it with `rustup target add wasm32-wasip2`".into(),
        ));
    }
    let mut command = Command::new("cargo");
    // wasm's 128-bit SIMD, which wasmtime compiles by default, so that memchr and the like take
    // their vector paths; unless the user says which flags to build with.
    if ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", SIMD_FLAGS.0]
        .iter()
        .all(|v| std::env::var_os(v).is_none())
    {
        command.env(SIMD_FLAGS.0, SIMD_FLAGS.1);
    }
    let mut child = command
        .args(["build", "--target", "wasm32-wasip2", "--release"])
        .args(["--message-format", "json-render-diagnostics"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| BuildError::Run {
            what: "cargo".into(),
            source,
        })?;
    let stdout = child.stdout.take().expect("piped stdout");
    let component = component_artifact(std::io::BufReader::new(stdout));
    let status = child.wait().map_err(|source| BuildError::Run {
        what: "cargo".into(),
        source,
    })?;
    if !status.success() {
        return Err(BuildError::Failed {
            lang: "rust",
            status,
        });
    }
    component.ok_or_else(|| {
        BuildError::NoComponent(
            "cargo built no cdylib for wasm32-wasip2: the crate needs `crate-type = [\"cdylib\", \"rlib\"]` under [lib]".into(),
        )
    })
}

/// The `.wasm` file of the last cdylib in cargo's JSON messages.
fn component_artifact(messages: impl std::io::BufRead) -> Option<PathBuf> {
    let mut found = None;
    for line in messages.lines().map_while(Result::ok) {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let cdylib = message["target"]["crate_types"]
            .as_array()
            .is_some_and(|types| types.iter().any(|t| t == "cdylib"));
        let wasm = message["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"));
        if let (true, Some(wasm)) = (cdylib, wasm) {
            found = Some(PathBuf::from(wasm));
        }
    }
    found
}

/// Whether rustup (or the sysroot) has the standard library for wasm32-wasip2.
fn has_wasip2_target() -> bool {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    sysroot.is_some_and(|root| Path::new(&root).join("lib/rustlib/wasm32-wasip2").is_dir())
}

/// Runs the language's `build.sh DIR OUT`, from a scratch copy of its layer.
fn script(lang: Lang, dir: &Path, out: &Path) -> Result<(), BuildError> {
    let folder = toolchain::folder(dir);
    toolchain::check(lang, folder.as_deref()).map_err(BuildError::Toolchain)?;
    let scratch = tempfile::tempdir().map_err(|source| BuildError::Run {
        what: "a scratch folder".into(),
        source,
    })?;
    let layer = format!("sdk/{}", lang.as_str());
    embedded::write_out(&layer, scratch.path(), &|b: &[u8]| b.to_vec()).map_err(|source| {
        BuildError::Run {
            what: "a scratch folder".into(),
            source,
        }
    })?;
    let mut command = Command::new("bash");
    command
        .arg(scratch.path().join("build.sh"))
        .arg(dir)
        .arg(out);
    // The scripts look for their tools in WEIR_TOOLCHAINS, then on PATH: never beside the
    // scratch copy.
    command.env(
        "WEIR_TOOLCHAINS",
        folder.unwrap_or_else(|| scratch.path().join("no-toolchains")),
    );
    let status = command.status().map_err(|source| BuildError::Run {
        what: "bash".into(),
        source,
    })?;
    if !status.success() {
        return Err(BuildError::Failed {
            lang: lang.as_str(),
            status,
        });
    }
    if !out.is_file() {
        return Err(BuildError::NoComponent(format!(
            "{} is not there",
            out.display()
        )));
    }
    Ok(())
}

/// Loads the component as the host does, for a stage that grants nothing.
pub fn check(path: &Path) -> Result<Plugin, BuildError> {
    let refused = |reason: String| BuildError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    let sandbox = Sandbox::new().map_err(|e| refused(format!("no engine: {e}")))?;
    let plugin = Plugin::load(&sandbox, path).map_err(|e| refused(e.to_string()))?;
    plugin
        .check_grants(&Grant::default())
        .map_err(|e| refused(e.to_string()))?;
    Ok(plugin)
}
