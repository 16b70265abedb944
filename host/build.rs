//! Embeds what `weir plugin new` and `weir plugin build` write out: the stage templates of
//! every language (`sdk/templates/`), the Python, JavaScript, C and Go layers with their
//! build and test scripts (`sdk/<lang>/`), the Rust SDK crate (`plugins/sdk/`) with the
//! `weir-wire` crate it depends on (`wire/`), and the
//! contract (`wit/0.3/stage.wit`), which a non-Rust project gets as its `wit/stage.wit`. The
//! binary then makes and builds a project anywhere, with no path back into this repository.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The folders embedded, relative to the workspace root.
const ROOTS: &[&str] = &[
    "sdk/templates",
    "sdk/python",
    "sdk/js",
    "sdk/c",
    "sdk/go",
    "plugins/sdk/src",
    "plugins/sdk/wit",
    "wire/src",
];

/// Single files embedded beside them.
const FILES: &[&str] = &[
    "plugins/sdk/Cargo.toml",
    "wire/Cargo.toml",
    "wit/0.3/stage.wit",
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.join("..");
    let mut files = Vec::new();
    for dir in ROOTS {
        println!("cargo:rerun-if-changed=../{dir}");
        walk(&root, &root.join(dir), &mut files);
    }
    for file in FILES {
        println!("cargo:rerun-if-changed=../{file}");
        files.push(file.to_string());
    }
    files.sort();
    let mut code = String::from("/// Embedded files: path from the workspace root, bytes.\n");
    code.push_str("pub static FILES: &[(&str, &[u8])] = &[\n");
    for file in &files {
        let full = root.join(file).canonicalize().expect("embedded file");
        writeln!(
            code,
            "    ({file:?}, include_bytes!({:?})),",
            full.display().to_string()
        )
        .expect("write to a string");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("embedded.rs");
    std::fs::write(out, code).expect("write embedded.rs");
}

/// Every file under `dir`, as a path relative to `root`, leaving out what a language's tools
/// leave behind (caches, installed packages).
fn walk(root: &Path, dir: &Path, files: &mut Vec<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if matches!(name, "__pycache__" | "node_modules" | "target") || name.ends_with(".pyc") {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, files);
        } else {
            let relative = path.strip_prefix(root).expect("under the root");
            files.push(relative.to_str().expect("a UTF-8 path").to_string());
        }
    }
}
