//! The third attack round, on text, through the `weir` binary: what a plugin says of itself
//! in `describe` reaches people through `weir plugin inspect` and `weir check`, so a hostile
//! description (colour escapes, a bell, a line break followed by a forged `world:` line, a
//! 10 KiB help) must come out escaped, on the lines the host means, and cut; and a plugin
//! whose setting declarations break the rules (a bad name, the host's `weir.` prefix, a name
//! declared twice, a required setting with a default) is refused at load, naming the plugin,
//! the setting and the rule.

mod support;

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use support::{Dir, PipelineFile, Sink, Source, Stage, plugin};

/// The real `world:` line of `weir plugin inspect` for a loadable 0.2 plugin.
const WORLD: &str = "world:   weir:stage/stage@0.2.0 (loads on this host)";

/// A token for the admin API in these tests.
const TOKEN: &str = "attack-text-token-0123456789";

/// The rule a setting name must follow, as the host's errors quote it.
const NAME_RULE: &str = "a setting name must match [a-z][a-z0-9_-]{0,63}";

/// Panics when `bytes` holds a control byte other than a line break (ESC, BEL, a carriage
/// return, DEL) or a C1 control character.
fn assert_no_control(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Some(c) = text.chars().find(|&c| c.is_control() && c != '\n') {
        panic!("{what} holds the control character {c:?}: {text}");
    }
}

/// `weir plugin inspect ARGS PLUGIN`: exit code, stdout and stderr as bytes.
fn inspect(args: &[&str], package: &str) -> Result<(i32, Vec<u8>, Vec<u8>)> {
    let out = support::weir()
        .args(["plugin", "inspect"])
        .args(args)
        .arg(plugin(package))
        .output()?;
    Ok((out.status.code().unwrap_or(-1), out.stdout, out.stderr))
}

/// A pipeline file with one stage of `package`, given `settings`.
fn pipeline(dir: &Dir, package: &str, settings: &[(&str, &str)]) -> Result<std::path::PathBuf> {
    let mut stage = Stage::plugin(plugin(package)).inputs(&["in"]);
    for (key, value) in settings {
        stage = stage.setting(key, *value);
    }
    PipelineFile::new()
        .source("in", Source::stdin())
        .stage("s", stage)
        .sink("out", Sink::null().inputs(&["s"]))
        .write(dir)
}

mod describe {
    use super::*;

    /// `weir plugin inspect` of a plugin whose name, version, help and default hold ESC, BEL
    /// and `\nworld: …` prints none of those bytes, one `world:` line (the host's), each
    /// hostile text escaped on its own line, the 10 KiB help cut to its first KiB.
    #[test]
    fn plugin_inspect_prints_a_hostile_description_escaped_on_its_own_lines() -> Result<()> {
        let (code, stdout, stderr) = inspect(&[], "fixture-evil-describe")?;
        ensure!(code == 0, "{}", String::from_utf8_lossy(&stderr));
        assert_no_control("the output of `weir plugin inspect`", &stdout);
        let text = String::from_utf8(stdout)?;
        let worlds: Vec<&str> = text.lines().filter(|l| l.starts_with("world:")).collect();
        assert_eq!(worlds, [WORLD], "{text}");
        // Nothing forged starts a line of its own, indented or not.
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("world:") && l != WORLD),
            "{text}"
        );
        let stage = text
            .lines()
            .find(|l| l.starts_with("stage:"))
            .expect("a stage line");
        assert!(
            stage.starts_with("stage:   fixture-evil-describe\\u{1b}[31m\\u{7}\\nworld:"),
            "{stage}"
        );
        let level = text
            .lines()
            .find(|l| l.starts_with("  level "))
            .expect("a line for `level`");
        assert!(
            level.starts_with("  level (text, required): the level\\u{1b}[31m\\u{7}\\nworld:"),
            "{level}"
        );
        assert!(level.contains("more bytes]"), "the help is cut: {level}");
        assert!(level.len() < 1200, "{} bytes: {level}", level.len());
        let mode = text
            .lines()
            .find(|l| l.starts_with("  mode "))
            .expect("a line for `mode`");
        assert!(
            mode.starts_with("  mode (text, default \\u{1b}[2J\\u{1b}[H\\u{1b}[31m"),
            "{mode}"
        );
        assert!(text.len() < 8 << 10, "{} bytes of output", text.len());
        Ok(())
    }

    /// `weir plugin inspect --json` gives the same texts already escaped: a program that
    /// decodes the JSON gets no control character back, and no text over a KiB.
    #[test]
    fn plugin_inspect_json_gives_the_description_escaped_and_cut() -> Result<()> {
        let (code, stdout, stderr) = inspect(&["--json"], "fixture-evil-describe")?;
        ensure!(code == 0, "{}", String::from_utf8_lossy(&stderr));
        ensure!(stdout.len() < 16 << 10, "{} bytes of JSON", stdout.len());
        let report: Value = serde_json::from_slice(&stdout)?;
        let description = &report["description"];
        let mut texts = vec![&description["name"], &description["version"]];
        for setting in description["settings"].as_array().expect("settings") {
            texts.extend([&setting["name"], &setting["help"], &setting["default"]]);
        }
        let texts: Vec<&str> = texts.into_iter().filter_map(Value::as_str).collect();
        assert_eq!(texts.len(), 7, "{description}");
        for text in texts {
            assert_no_control("a text of the description", text.as_bytes());
            assert!(text.len() <= 1024, "{} bytes: {text}", text.len());
        }
        assert!(
            description["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("fixture-evil-describe\\u{1b}[31m")),
            "{description}"
        );
        Ok(())
    }

    /// `weir check` of a stage that leaves out the hostile plugin's required setting quotes
    /// the setting's help escaped and cut, on one line, and exits 2.
    #[test]
    fn weir_check_quotes_a_hostile_help_escaped_and_cut() -> Result<()> {
        let dir = Dir::new()?;
        let file = pipeline(&dir, "fixture-evil-describe", &[])?;
        let out = dir.weir().arg("check").arg(&file).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_no_control("the error of `weir check`", &out.stderr);
        assert!(
            stderr.contains(
                "the plugin requires setting `level` (the level\\u{1b}[31m\\u{7}\\nworld:"
            ),
            "{stderr}"
        );
        assert!(stderr.contains("more bytes])"), "the help is cut: {stderr}");
        assert!(
            !stderr.lines().any(|l| l.trim_start().starts_with("world:")),
            "{stderr}"
        );
        assert!(stderr.len() < 4 << 10, "{} bytes: {stderr}", stderr.len());

        // Given its setting, the plugin loads: its description is only ever text to print.
        let file = pipeline(&dir, "fixture-evil-describe", &[("level", "high")])?;
        let (code, _, stderr) = dir.check(&file)?;
        assert_eq!(code, 0, "{stderr}");
        Ok(())
    }
}

mod declarations {
    use super::*;

    /// A plugin whose declarations break every rule (a name against the rule and holding an
    /// ESC, then a `weir.` name, an empty name, a name twice, a required setting with a
    /// default) is refused by `weir check` with exit 2, the error naming the plugin file, the
    /// first bad setting escaped, and the rule it breaks; `weir plugin inspect` says the same.
    #[test]
    fn a_plugin_whose_declarations_break_the_rules_is_refused_naming_the_first() -> Result<()> {
        let dir = Dir::new()?;
        let path = plugin("fixture-evil-settings");
        let file = pipeline(&dir, "fixture-evil-settings", &[])?;
        let out = dir.weir().arg("check").arg(&file).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_no_control("the error of `weir check`", &out.stderr);
        let refusal = format!(
            "plugin {}: setting \"Bad Name\\u{{1b}}[31m\": {NAME_RULE}",
            path.display()
        );
        assert!(stderr.contains(&refusal), "{stderr}");
        assert!(!stderr.contains("weir.secret"), "only the first: {stderr}");

        let (code, stdout, stderr) = inspect(&[], "fixture-evil-settings")?;
        ensure!(code == 0, "{}", String::from_utf8_lossy(&stderr));
        assert_no_control("the output of `weir plugin inspect`", &stdout);
        let text = String::from_utf8(stdout)?;
        assert!(
            text.contains(&format!("world:   not loadable on this host: {refusal}")),
            "{text}"
        );
        Ok(())
    }
}

mod admin {
    use super::*;

    /// A hot load through the admin API goes through the same load: a plugin with bad
    /// declarations is refused (HTTP 422) naming the setting and the rule, and one whose
    /// required setting the stage does not give is refused (HTTP 400) quoting its help
    /// escaped and cut; `weir
    /// reload` prints both without a control character, and the live version keeps serving.
    #[test]
    fn the_admin_api_refuses_bad_declarations_and_quotes_a_hostile_help_escaped() -> Result<()> {
        let dir = Dir::new()?;
        let file = PipelineFile::new()
            .source("in", Source::stdin())
            .stage("s", Stage::plugin(plugin("passthrough")).inputs(&["in"]))
            .sink("out", Sink::file("out.txt").inputs(&["s"]))
            .admin_table({
                let mut t = support::Table::default();
                t.set("listen", "127.0.0.1:0");
                t.set("token", TOKEN);
                t
            })
            .write(&dir)?;
        let mut p = dir.start(&file)?;
        let line = p.wait_for_stderr("admin API listening on http://")?;
        let addr = line
            .rsplit("http://")
            .next()
            .context("an address")?
            .trim()
            .to_string();
        let reload = |package: &str| -> Result<(i32, String)> {
            let out = dir
                .weir()
                .args(["reload", "--admin", &addr, "--stage", "s", "--plugin"])
                .arg(plugin(package))
                .env("WEIR_ADMIN_TOKEN", TOKEN)
                .output()?;
            assert_no_control("the error of `weir reload`", &out.stderr);
            Ok((
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ))
        };
        let (code, said) = reload("fixture-evil-settings")?;
        assert_eq!(code, 2, "{said}");
        assert!(said.contains("HTTP 422"), "{said}");
        assert!(
            said.contains(&format!("setting \"Bad Name\\u{{1b}}[31m\": {NAME_RULE}")),
            "{said}"
        );
        // A missing setting is the request's fault (HTTP 400), not the plugin's.
        let (code, said) = reload("fixture-evil-describe")?;
        assert_ne!(code, 0, "{said}");
        assert!(
            said.contains("requires setting `level` (the level\\u{1b}[31m\\u{7}\\nworld:"),
            "{said}"
        );
        assert!(said.len() < 4 << 10, "{} bytes: {said}", said.len());

        // The first version still serves.
        p.stdin().write_all(b"still here\n")?;
        p.close_stdin();
        let ran = p.finish(Duration::from_secs(60))?;
        assert_eq!(ran.code(), 0, "{}", ran.stderr());
        assert_eq!(support::read_lines(&dir.path("out.txt"))?, ["still here"]);
        Ok(())
    }
}
