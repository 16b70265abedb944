//! Builds the example plugins and the test fixtures as components, so that `cargo test`
//! needs no manual step. The nested cargo uses a target folder of its own: the outer build
//! holds the lock on the usual one.

use std::path::PathBuf;
use std::process::Command;

mod evil_table_grow;

/// Every plugin the tests load.
const PACKAGES: &[&str] = &[
    "passthrough",
    "uppercase",
    "sshd-parse",
    "auth-filter",
    "redact-ip",
    "fixture-poison",
    "fixture-flaky",
    "fixture-bad-init",
    "fixture-evil-loop-one",
    "fixture-evil-loop-every",
    "fixture-evil-loop-init",
    "fixture-evil-sleep",
    "fixture-evil-reason",
    "fixture-evil-memory-bomb",
    "fixture-evil-recursion",
    "fixture-evil-wrong-count",
    "fixture-evil-fanout",
    "fixture-evil-huge-value",
    "fixture-evil-stderr-flood",
    "fixture-evil-log-flood",
    "fixture-evil-fs",
    "fixture-evil-env",
    "fixture-evil-net",
    "fixture-evil-busy-wait",
    "fixture-evil-trap-every",
    "fixture-evil-other-world",
    "fixture-evil-unknown-version",
    "fixture-evil-bad-spans",
    "fixture-evil-alias",
    "fixture-evil-shared-headers",
    "fixture-evil-columns",
    "fixture-evil-reserved",
    "fixture-evil-extra-count",
    "fixture-evil-describe",
    "fixture-evil-settings",
    "fixture-tag-a",
    "fixture-tag-b",
    "fixture-fail-all",
    "fixture-seq",
    "fixture-other-world",
    "fixture-trap-init",
    "fixture-v01-upper",
    "fixture-v01-retry",
    "fixture-stage-passthrough",
    "fixture-burn",
    "fixture-count-keys",
    "fixture-evil-state",
    "fixture-stamp",
    "fixture-shadow-diff",
    "fixture-slow",
    "fixture-reject-match",
    "window-count",
    "brute-force",
];

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists");
    for dir in ["wit", "plugins", "tests/fixtures", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let target = root.join("target").join("plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            "plugin",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target);
    for package in PACKAGES {
        cmd.args(["-p", package]);
    }
    // Settings meant for the outer (native) build must not leak into the wasm one.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cannot run cargo to build the plugins");
    assert!(
        status.success(),
        "building the plugins for wasm32-wasip2 failed; is the target installed? (rustup target add wasm32-wasip2)"
    );
    let dir = target.join("wasm32-wasip2").join("plugin");
    // The fixture written instruction by instruction, beside the built ones.
    let table_grow = evil_table_grow::component(&root.join("wit").join("0.2"))
        .expect("the evil-table-grow fixture encodes");
    std::fs::write(dir.join("fixture_evil_table_grow.wasm"), table_grow)
        .expect("the evil-table-grow fixture is written");
    println!("cargo:rustc-env=WEIR_PLUGIN_DIR={}", dir.display());
}
