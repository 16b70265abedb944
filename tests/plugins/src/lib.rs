//! Where the test plugins are: every example plugin and fixture, built as a component by this
//! crate's build script.

use std::path::{Path, PathBuf};

/// The folder holding the built components.
pub fn dir() -> &'static Path {
    Path::new(env!("WEIR_PLUGIN_DIR"))
}

/// The component of a plugin package, by package name (`sshd-parse`, `fixture-poison`).
pub fn plugin(package: &str) -> PathBuf {
    let path = dir().join(format!("{}.wasm", package.replace('-', "_")));
    assert!(path.is_file(), "no built plugin at {}", path.display());
    path
}
