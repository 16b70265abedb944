//! Writing a stage: `weir plugin new`, `weir plugin build` and `weir plugin test`.
//!
//! `new` makes a project from the templates the binary carries (`embedded`), in any of five
//! languages (`lang`); `build` runs the language's toolchain (`builder`, `toolchain`) and
//! loads the result as the host would; `test` runs a component in the real sandbox on events
//! given on the command line or in a file, and compares with a golden file (`tester`).

mod builder;
mod embedded;
mod lang;
mod new;
mod tester;
mod toolchain;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use lang::Lang;

use super::plugin::setting_line;
use super::{CommandResult, one_line};
use crate::config::{parse_duration, parse_size};

/// `weir plugin new`.
pub(super) fn new(name: &str, lang: Lang, template: &str, dir: Option<&Path>) -> CommandResult {
    let made = new::new(name, lang, template, dir).map_err(|e| (2, one_line(e)))?;
    out!(
        "made {} ({} stage from the `{template}` template, contract weir:stage@{})",
        made.display(),
        lang.as_str(),
        lang.contract()
    );
    out!("next, in {}:", made.display());
    for step in new::next_steps(lang, name) {
        out!("  {step}");
    }
    Ok(())
}

/// `weir plugin build`.
pub(super) fn build(dir: &Path, out: Option<&Path>) -> CommandResult {
    let built = builder::build(dir, out).map_err(|e| (e.code(), one_line(&e)))?;
    let plugin = &built.plugin;
    out!("built {}", plugin.path.display());
    out!("  language: {}", built.lang.as_str());
    out!("  size:     {} bytes", plugin.size);
    out!("  sha256:   {}", plugin.digest);
    out!(
        "  world:    weir:stage/stage@{}.0",
        plugin.contract.as_str()
    );
    if let Some(d) = &plugin.description {
        out!("  stage:    {} {}", d.name, d.version);
        for s in &d.settings {
            let ty = weir_sandbox::settings::type_name(s.type_);
            let line = setting_line(&s.name, ty, s.required, s.default.as_deref(), &s.help);
            out!("  setting:  {line}");
        }
    }
    Ok(())
}

/// The arguments of `weir plugin test`, as clap gives them.
pub(super) struct TestArgs<'a> {
    pub plugin: &'a Path,
    pub texts: &'a [String],
    pub input: Option<&'a Path>,
    pub settings: &'a [String],
    pub key: Option<&'a str>,
    pub headers: &'a [String],
    pub expect: Option<&'a Path>,
    pub fuel: Option<u64>,
    pub timeout: Option<&'a str>,
    pub memory: Option<&'a str>,
}

/// `weir plugin test`: exit 0 when every event ran (and matched `--expect`), 1 on a
/// difference.
pub(super) fn test(args: &TestArgs<'_>) -> CommandResult {
    let run = test_run(args)?;
    let ran = tester::run(&run).map_err(|e| (e.code(), one_line(&e)))?;
    let Some(expect) = args.expect else {
        return Ok(());
    };
    let expected = tester::read_lines(expect).map_err(|e| (1, one_line(&e)))?;
    let diff = tester::compare(&expected, &ran.lines);
    if diff.is_empty() {
        eprintln!("matches {}", expect.display());
        return Ok(());
    }
    eprintln!("differs from {} (- expected, + got):", expect.display());
    for d in &diff {
        eprintln!("{d}");
    }
    Err((
        1,
        format!(
            "{} of {} lines differ from {}",
            diff.len(),
            expected.len().max(ran.lines.len()),
            expect.display()
        ),
    ))
}

fn test_run(args: &TestArgs<'_>) -> Result<tester::TestRun, (u8, String)> {
    let mut values: Vec<Vec<u8>> = args.texts.iter().map(|t| t.clone().into_bytes()).collect();
    if let Some(input) = args.input {
        values.extend(tester::read_lines(input).map_err(|e| (1, one_line(&e)))?);
    }
    if values.is_empty() {
        return Err((2, "no events: give --text VALUE or --input FILE".into()));
    }
    let mut limits = weir_sandbox::Limits::default();
    if let Some(fuel) = args.fuel {
        limits.fuel = fuel;
    }
    if let Some(timeout) = args.timeout {
        limits.timeout = duration(timeout)?;
    }
    if let Some(memory) = args.memory {
        limits.memory = parse_size(memory).map_err(|e| (2, format!("--memory: {e}")))?;
    }
    Ok(tester::TestRun {
        plugin: PathBuf::from(args.plugin),
        values,
        settings: pairs("--setting", args.settings)?,
        key: args.key.map(str::to_string),
        headers: pairs("--header", args.headers)?,
        limits,
    })
}

fn duration(text: &str) -> Result<Duration, (u8, String)> {
    match parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err((2, "--timeout: must be above 0".into())),
        Err(e) => Err((2, format!("--timeout: {e}"))),
    }
}

/// `K=V` arguments as pairs.
fn pairs(option: &str, given: &[String]) -> Result<Vec<(String, String)>, (u8, String)> {
    given
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err((2, format!("{option} {kv:?}: expected KEY=VALUE"))),
        })
        .collect()
}
