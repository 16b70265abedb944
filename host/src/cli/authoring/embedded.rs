//! The files the binary carries for stage authors (see `host/build.rs`): templates, the
//! language layers and their scripts, the Rust SDK. Written out by `weir plugin new` into a
//! project, and by `weir plugin build` into a scratch folder to run a build script.

use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// The embedded files under `folder` (no trailing slash), as (path relative to it, bytes).
pub fn under(folder: &str) -> impl Iterator<Item = (&'static str, &'static [u8])> + '_ {
    FILES.iter().filter_map(move |(path, bytes)| {
        let rest = path.strip_prefix(folder)?.strip_prefix('/')?;
        Some((rest, *bytes))
    })
}

/// Whether any file is embedded under `folder`.
pub fn has(folder: &str) -> bool {
    under(folder).next().is_some()
}

/// The template names of a language (`map`, `filter`, …), sorted.
pub fn templates(lang: &str) -> Vec<&'static str> {
    let prefix = format!("sdk/templates/{lang}/");
    let mut names: Vec<&'static str> = FILES
        .iter()
        .filter_map(|(path, _)| path.strip_prefix(prefix.as_str())?.split('/').next())
        .collect();
    names.dedup();
    names
}

/// Writes the files under `folder` into `dir`, through `edit` (which may rewrite a file's
/// text), keeping shell scripts executable.
pub fn write_out(
    folder: &str,
    dir: &Path,
    edit: &dyn Fn(&[u8]) -> Vec<u8>,
) -> std::io::Result<usize> {
    let mut written = 0;
    for (relative, bytes) in under(folder) {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, edit(bytes))?;
        if relative.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        written += 1;
    }
    Ok(written)
}
