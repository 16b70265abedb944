//! What the built components import from the contract. The host keeps a state store only for
//! a plugin whose component imports `weir:stage/state`, so a stage that never calls state must
//! not import it, although the SDK's bindings hold the whole 0.3 world: the component is made
//! with only the imports its code calls.

use wasmparser::{Parser, Payload};

/// The names a component imports at its top level (not those of the modules inside it).
fn imports(package: &str) -> Vec<String> {
    let path = weir_test_plugins::plugin(package);
    let bytes = std::fs::read(&path).expect("read the component");
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(&bytes) {
        match payload.expect("the component parses") {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    names.push(import.expect("an import parses").name.name.to_string());
                }
            }
            _ => {}
        }
    }
    names
}

#[test]
fn a_stage_that_never_calls_state_does_not_import_it() {
    for package in [
        "passthrough",
        "uppercase",
        "sshd-parse",
        "auth-filter",
        "redact-ip",
    ] {
        let names = imports(package);
        assert!(
            names.iter().any(|n| n == "weir:stage/types@0.3.0"),
            "{package} is built against 0.3: {names:?}"
        );
        assert!(
            !names.iter().any(|n| n.starts_with("weir:stage/state")),
            "{package} imports state without calling it: {names:?}"
        );
    }
}

#[test]
fn a_stage_that_calls_state_imports_it() {
    for package in ["fixture-count-keys", "fixture-evil-state"] {
        let names = imports(package);
        assert!(
            names.iter().any(|n| n == "weir:stage/state@0.3.0"),
            "{package} calls state: {names:?}"
        );
    }
}
