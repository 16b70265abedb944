//! `weir-bindgen c|go WIT_DIR OUT_DIR`: the bindings `wit-bindgen c|go WIT_DIR --world stage
//! --out-dir OUT_DIR` writes, with the generators as libraries.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use wit_bindgen_core::wit_parser::Resolve;
use wit_bindgen_core::{Files, WorldGenerator};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [lang, wit, out] = args.as_slice() else {
        bail!("usage: weir-bindgen c|go WIT_DIR OUT_DIR");
    };
    let mut generator: Box<dyn WorldGenerator> = match lang.as_str() {
        "c" => wit_bindgen_c::Opts::default().build(),
        "go" => wit_bindgen_go::Opts::default().build(),
        other => bail!("no generator for {other}"),
    };
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve.push_path(wit)?;
    let world = resolve.select_world(&[pkg], Some("stage"))?;
    let mut files = Files::default();
    generator.generate(&mut resolve, world, &mut files)?;
    for (name, contents) in files.iter() {
        let dst = PathBuf::from(out).join(name);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&dst, contents).with_context(|| format!("{}", dst.display()))?;
    }
    Ok(())
}
