//! `weir plugin new NAME --lang L [--template T]`: a stage project from the templates the
//! binary carries.
//!
//! The project gets the template's files with `{{name}}` (and, for Rust, `{{crate_name}}`)
//! filled in, and a copy of its language's SDK: the layer and the build and test scripts and
//! the contract (`wit/stage.wit`, from `wit/0.3`) for Python, JavaScript, C and Go, the
//! `weir-plugin` crate (with its copy of the contract) and the `weir-wire` crate it depends on
//! for Rust. So it builds and tests with nothing from this repository.

use std::path::{Path, PathBuf};

use super::embedded;
use super::lang::Lang;

/// The embedded folder of the contract a project is written against: `wit/0.3`.
const CONTRACT: &str = "wit/0.3";

/// The SDK manifest's dependency on `weir-wire` in this repository, and in a project.
const WIRE_IN_REPOSITORY: &str = r#"weir-wire = { path = "../../wire" }"#;
const WIRE_IN_PROJECT: &str = r#"weir-wire = { path = "../weir-wire" }"#;

/// Why a project was not made.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    #[error(
        "`{0}` is not a stage name: 1 to 64 lower-case letters, digits and dashes, starting with a letter"
    )]
    Name(String),
    #[error("no template `{template}` for {lang}; its templates: {known}")]
    Template {
        lang: &'static str,
        template: String,
        known: String,
    },
    #[error("{0} exists and is not empty")]
    NotEmpty(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Makes the project; returns the folder it made.
pub fn new(
    name: &str,
    lang: Lang,
    template: &str,
    dir: Option<&Path>,
) -> Result<PathBuf, NewError> {
    check_name(name)?;
    let folder = format!("sdk/templates/{}/{template}", lang.as_str());
    if !embedded::has(&folder) {
        return Err(NewError::Template {
            lang: lang.as_str(),
            template: template.to_string(),
            known: embedded::templates(lang.as_str()).join(", "),
        });
    }
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(NewError::NotEmpty(dir));
    }
    let write_err = |source| NewError::Write {
        path: dir.clone(),
        source,
    };
    let crate_name = name.replace('-', "_");
    let fill = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(text) => text
            .replace("{{name}}", name)
            .replace("{{crate_name}}", &crate_name)
            .into_bytes(),
        Err(_) => bytes.to_vec(),
    };
    embedded::write_out(&folder, &dir, &fill).map_err(write_err)?;
    // A Rust template keeps its manifest as `Cargo.toml.template`: a `Cargo.toml` naming the
    // package `{{name}}` in this repository would break a git dependency on the SDK, since
    // cargo reads every manifest of a repository it checks out.
    let manifest = dir.join("Cargo.toml.template");
    if manifest.is_file() {
        std::fs::rename(&manifest, dir.join("Cargo.toml")).map_err(write_err)?;
    }
    // The SDK goes in as it is (but for where it finds `weir-wire`): its text holds no
    // placeholder.
    let keep = |bytes: &[u8]| bytes.to_vec();
    match lang {
        Lang::Rust => {
            // The SDK depends on `weir-wire` by a path inside this repository (`../../wire`);
            // in the project the wire crate sits beside it.
            let sdk = dir.join("weir-plugin");
            let relocate = |bytes: &[u8]| match std::str::from_utf8(bytes) {
                Ok(text) if text.contains(WIRE_IN_REPOSITORY) => text
                    .replace(WIRE_IN_REPOSITORY, WIRE_IN_PROJECT)
                    .into_bytes(),
                _ => bytes.to_vec(),
            };
            embedded::write_out("plugins/sdk", &sdk, &relocate).map_err(write_err)?;
            embedded::write_out("wire", &dir.join("weir-wire"), &keep).map_err(write_err)?;
        }
        _ => {
            embedded::write_out(&format!("sdk/{}", lang.as_str()), &dir, &keep)
                .map_err(write_err)?;
            // The contract, which the language's build script reads from `wit/stage.wit`:
            // the templates carry no copy, so it is the one in the repository's `wit/`.
            embedded::write_out(CONTRACT, &dir.join("wit"), &keep).map_err(write_err)?;
        }
    }
    Ok(dir)
}

fn check_name(name: &str) -> Result<(), NewError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(NewError::Name(name.to_string()))
    }
}

/// What to run next, as `weir plugin new` prints it: from inside the project.
pub fn next_steps(lang: Lang, name: &str) -> Vec<String> {
    let (test, wasm) = match lang {
        Lang::Rust => (
            "cargo test".to_string(),
            format!(
                "target/wasm32-wasip2/release/{}.wasm",
                name.replace('-', "_")
            ),
        ),
        _ => ("./test.sh".to_string(), format!("target/{name}.wasm")),
    };
    vec![
        format!("{test:<20} # the golden test, natively"),
        format!(
            "{:<20} # the component, checked as the host loads it",
            "weir plugin build"
        ),
        format!("weir plugin test {wasm} --input golden/input.txt --expect golden/expected.jsonl"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_manifest_names_the_wire_crate_as_the_project_writer_expects() {
        let (_, manifest) = embedded::under("plugins/sdk")
            .find(|(path, _)| *path == "Cargo.toml")
            .expect("the SDK's manifest is embedded");
        let manifest = std::str::from_utf8(manifest).unwrap();
        assert!(manifest.contains(WIRE_IN_REPOSITORY), "{manifest}");
        assert!(embedded::has("wire/src") && embedded::has("wit/0.3"));
    }
}
